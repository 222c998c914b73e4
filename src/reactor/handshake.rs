//! TLS handshakes off the reactor. The costly step of a handshake (on the ClientHello: a
//! key share, the shared secret and a signature, ~0.3 ms of CPU with ECDSA P-256) runs on
//! worker threads, so a burst of new TLS clients neither stalls everyone's chat nor is
//! held to the reactor's one core. The reactor still reads the records (cheap); when a
//! handshaking connection has new ones, its rustls state travels here and comes back with
//! the answer to send. Meanwhile the connection reads and writes nothing (`Stream::away`),
//! and a connection closed meanwhile is recognised by its `ConnId` and its state dropped.

use crate::id::ConnId;
use rustls::ServerConnection;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Job {
    pub conn: ConnId,
    pub tls: Box<ServerConnection>,
    /// When the connection's clock runs out: a job still queued then is not worth the
    /// work (the reactor closes the connection anyway), and skipping it keeps a backlog
    /// of stale handshakes from delaying the fresh ones behind it.
    pub deadline: std::time::Instant,
}

pub struct Done {
    pub conn: ConnId,
    pub tls: Box<ServerConnection>,
    /// A bad handshake: the alert rustls queued goes out with the close.
    pub result: Result<(), rustls::Error>,
}

pub struct Handshakes {
    pub jobs: Sender<Job>,
    pub done: Receiver<Done>,
    pub threads: Vec<JoinHandle<()>>,
}

/// Starts `threads` workers that answer through their own channel and wake the poll.
pub fn start(threads: usize, waker: Arc<mio::Waker>) -> std::io::Result<Handshakes> {
    let (done_tx, done) = std::sync::mpsc::channel();
    let (jobs, threads) = crate::pool::start(
        "tls",
        vec![false; threads.max(1)],
        move |niced: &mut bool, job: Job| {
            if !std::mem::replace(niced, true) {
                lower_priority();
            }
            let Job {
                conn,
                mut tls,
                deadline,
            } = job;
            let result = if std::time::Instant::now() >= deadline {
                Err(rustls::Error::General(
                    "handshake timed out in the queue".into(),
                ))
            } else {
                tls.process_new_packets().map(|_| ())
            };
            let sent = done_tx.send(Done { conn, tls, result }).is_ok();
            let _ = waker.wake();
            sent
        },
    )?;
    Ok(Handshakes {
        jobs,
        done,
        threads,
    })
}

/// Handshakes are background work next to the chat: where they share a core with the
/// reactor (a one-core machine, a pinned process), the scheduler lets the reactor run
/// first. Best effort: a failure leaves the thread at its priority.
fn lower_priority() {
    // SAFETY: nice(2) changes only the calling thread's priority on Linux; no memory.
    unsafe {
        libc::nice(HANDSHAKE_NICE);
    }
}

/// How much lower than the rest of the server the handshake threads run (nice steps).
const HANDSHAKE_NICE: libc::c_int = 10;
