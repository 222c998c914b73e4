//! Cluster mode's bus: Redis pub/sub between nodes (`--bus redis://…`).
//!
//! Two threads of their own, so the reactor never waits on Redis: the publisher takes
//! events from a channel and `PUBLISH`es them in order, reconnecting and retrying the same
//! event until Redis takes it; the subscriber listens on every channel of the cluster and
//! hands other nodes' events to the reactor as `Outcome::Remote` through the same
//! completion channel and waker the store uses. Every (re)connect of the subscriber is
//! reported as `Outcome::BusUp`, since events published meanwhile are lost: the Hub then
//! reads what it missed from the database (see `chat/cluster.rs`).

use crate::store::event::{Envelope, Event};
use crate::store::{Completion, Notifier, Outcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

// Channels are `CLUSTER:room:ID` for a room's events and `CLUSTER:all` for the rest, where
// CLUSTER is `--cluster` (default "chatterbox"): clusters sharing one Redis stay apart.
/// How long the subscriber blocks before looking at the stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// Waits between reconnect attempts: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a stopping node waits for Redis to take what is queued.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The reactor's handle: events to publish.
pub struct Bus {
    tx: Sender<Envelope>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

pub fn channel_of(cluster: &str, event: &Event) -> String {
    match event.room() {
        Some(room) => format!("{cluster}:room:{room}"),
        None => format!("{cluster}:all"),
    }
}

impl Bus {
    /// Connects once (a wrong URL or a Redis that is not there is a start-up error), then
    /// starts the two threads.
    pub fn start(url: &str, cluster: &str, node: String, notify: Notifier) -> Result<Bus, String> {
        let client = redis::Client::open(url).map_err(|e| format!("bad --bus URL: {e}"))?;
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the bus at {url}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let publisher = {
            let client = client.clone();
            let stop = Arc::clone(&stop);
            let cluster = cluster.to_string();
            std::thread::Builder::new()
                .name("bus-publish".into())
                .spawn(move || publish_loop(client, cluster, rx, stop))
                .map_err(|e| e.to_string())?
        };
        let subscriber = {
            let stop = Arc::clone(&stop);
            let pattern = format!("{cluster}:*");
            std::thread::Builder::new()
                .name("bus-subscribe".into())
                .spawn(move || subscribe_loop(client, pattern, node, notify, stop))
                .map_err(|e| e.to_string())?
        };
        Ok(Bus {
            tx,
            stop,
            threads: vec![publisher, subscriber],
        })
    }

    pub fn publish(&self, env: Envelope) {
        if self.tx.send(env).is_err() {
            log::error!("the bus publisher is gone; event not published");
        }
    }

    /// Publishes what is queued (unless Redis is down), then stops both threads.
    pub fn stop(mut self) {
        let (tx, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        // The publisher ends once its queue is empty; a Redis that is down gets
        // `STOP_GRACE`, then the events still queued are dropped.
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while !self.threads[0].is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn backoff(wait: &mut Duration) {
    std::thread::sleep(*wait);
    *wait = (*wait * 2).min(RETRY_MAX);
}

fn publish_loop(
    client: redis::Client,
    cluster: String,
    rx: Receiver<Envelope>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<redis::Connection> = None;
    while let Ok(env) = rx.recv() {
        let channel = channel_of(&cluster, &env.event);
        let payload = match serde_json::to_string(&env) {
            Ok(p) => p,
            Err(e) => {
                log::error!("cannot encode a bus event: {e}");
                continue;
            }
        };
        let mut wait = RETRY_FIRST;
        // Retried until Redis takes it: an event dropped here is one other nodes only
        // recover when the next event of its room shows the gap.
        while !stop.load(Ordering::Relaxed) {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match client.get_connection_with_timeout(Duration::from_secs(2)) {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        log::warn!("bus: cannot connect to publish: {e}");
                        backoff(&mut wait);
                        continue;
                    }
                },
            };
            match redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query::<i64>(c)
            {
                Ok(_) => break,
                Err(e) => {
                    log::warn!("bus: publish failed: {e}");
                    conn = None;
                    backoff(&mut wait);
                }
            }
        }
    }
}

fn subscribe_loop(
    client: redis::Client,
    pattern: String,
    node: String,
    notify: Notifier,
    stop: Arc<AtomicBool>,
) {
    let mut wait = RETRY_FIRST;
    while !stop.load(Ordering::Relaxed) {
        match listen(&client, &pattern, &node, &notify, &stop, &mut wait) {
            Ok(()) => return,
            Err(e) => {
                log::warn!("bus: subscription lost: {e}");
                backoff(&mut wait);
            }
        }
    }
}

/// Listens until stopped (`Ok`) or the connection fails (`Err`).
fn listen(
    client: &redis::Client,
    pattern: &str,
    node: &str,
    notify: &Notifier,
    stop: &AtomicBool,
    wait: &mut Duration,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut sub = conn.as_pubsub();
    sub.psubscribe(pattern)?;
    sub.set_read_timeout(Some(READ_TIMEOUT))?;
    *wait = RETRY_FIRST;
    log::info!("bus: subscribed");
    if !notify.send(Completion {
        reply: None,
        outcome: Outcome::BusUp,
    }) {
        return Ok(());
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let msg = match sub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload: String = match msg.get_payload() {
            Ok(p) => p,
            Err(e) => {
                log::warn!("bus: unreadable message: {e}");
                continue;
            }
        };
        let env: Envelope = match serde_json::from_str(&payload) {
            Ok(env) => env,
            Err(e) => {
                log::warn!("bus: malformed event on {}: {e}", msg.get_channel_name());
                continue;
            }
        };
        if env.node == node {
            continue;
        }
        let c = Completion {
            reply: None,
            outcome: Outcome::Remote(env),
        };
        if !notify.send(c) {
            return Ok(());
        }
    }
}
