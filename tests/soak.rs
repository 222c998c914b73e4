//! Soak: churn plus chat against one server for SOAK_SECS (default 600), reporting RSS,
//! open descriptors and message latency every SOAK_REPORT_SECS (default 60). Not part of
//! `cargo test` (ignored); `tools/soak` runs it against a release build.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "a 10-minute soak; run with tools/soak"]
fn soak() {
    let total = env_secs("SOAK_SECS", 600);
    let report = env_secs("SOAK_REPORT_SECS", 60);
    const LISTENERS: usize = 100;
    const SENDERS: usize = 10;
    const CHURNERS: usize = 4;
    let s = TestServer::start(UNBUDGETED);
    let stop = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let churned = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mut handles = Vec::new();

    // Listeners: hold a socket in general and time every message (text = send time).
    let listen_token = s.user("listener");
    for _ in 0..LISTENERS {
        let mut c = s.ws(&listen_token);
        let (stop, lat, received) = (stop.clone(), latencies.clone(), received.clone());
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = c.try_recv(Duration::from_millis(200)) {
                    if m["type"] == "message" {
                        if let Some(t) = m["text"].as_str().and_then(|t| t.strip_prefix("t=")) {
                            let sent_us: u64 = t.split(' ').next().unwrap().parse().unwrap();
                            let now_us = epoch.elapsed().as_micros() as u64;
                            lat.lock().unwrap().push((now_us - sent_us) as f64 / 1000.0);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    // Senders: 10 users, about 10 messages a second each.
    for i in 0..SENDERS {
        let mut c = s.ws(&s.user(&format!("sender{i}")));
        let (stop, sent) = (stop.clone(), sent.clone());
        handles.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = epoch.elapsed().as_micros();
                c.send(json!({"type": "send", "room": "general", "text": format!("t={t} n={n}")}));
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
                // Drain what arrived so this socket never becomes a slow consumer.
                let until = Instant::now() + Duration::from_millis(100);
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if c.try_recv(left.max(Duration::from_millis(1))).is_none() {
                        break;
                    }
                }
            }
        }));
    }
    // Churn: open a socket, join a room, send once, close; plus HTTP requests.
    for i in 0..CHURNERS {
        let token = s.user(&format!("churn{i}"));
        let s_addr = s.addr;
        let (stop, churned) = (stop.clone(), churned.clone());
        let server = TestServerRef { addr: s_addr };
        handles.push(thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut c = server.ws(&token);
                let room = format!("churn{}", n % 50);
                let j: Value = c.request(json!({"type": "join", "room": room}), "j");
                assert_eq!(j["type"], "joined");
                drop(c);
                let r = raw(
                    s_addr,
                    b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
                );
                assert_eq!(r.status, 200);
                churned.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }

    let start = Instant::now();
    let base_rss = s.rss_kib();
    let base_fds = open_fds(s.pid());
    println!("soak: {LISTENERS} listeners, {SENDERS} senders at ~10 msg/s each, {CHURNERS} churn loops, {}s", total.as_secs());
    println!("minute | RSS KiB | fds | sent | received | churned | p50 ms | p99 ms | max ms");
    let mut minute = 0;
    while start.elapsed() < total {
        thread::sleep(report.min(total - start.elapsed().min(total)));
        minute += 1;
        let mut l = std::mem::take(&mut *latencies.lock().unwrap());
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{minute:>6} | {:>7} | {:>3} | {:>6} | {:>8} | {:>7} | {:>6.2} | {:>6.2} | {:>6.2}",
            s.rss_kib(),
            open_fds(s.pid()),
            sent.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
            churned.load(Ordering::Relaxed),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(f64::NAN),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    thread::sleep(Duration::from_secs(1));
    let (rss, fds) = (s.rss_kib(), open_fds(s.pid()));
    println!("baseline RSS {base_rss} KiB, {base_fds} fds; after {rss} KiB, {fds} fds (listeners closed)");
    assert!(fds <= base_fds, "descriptors leaked: {base_fds} -> {fds}");
    let expected = sent.load(Ordering::Relaxed) * LISTENERS as u64;
    let got = received.load(Ordering::Relaxed);
    println!("deliveries to listeners: {got} of {expected} sent while listening");
}

/// Opens sockets to a server owned by another thread.
struct TestServerRef {
    addr: std::net::SocketAddr,
}

impl TestServerRef {
    fn ws(&self, token: &str) -> Client {
        let stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let url = format!("ws://{}/ws?token={token}", self.addr);
        let (ws, _) =
            tungstenite::client::client(url, tungstenite::stream::MaybeTlsStream::Plain(stream))
                .unwrap();
        let mut c = Client { ws };
        assert_eq!(c.recv()["type"], "hello");
        c
    }
}
