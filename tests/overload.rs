//! Overload: more is offered than the server can deliver. Readers that keep reading are
//! never closed, and every message the server acknowledged reaches every one of them.
//! (How much it delivers is a benchmark's business: bench/run.)

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

const READERS: usize = 300;
const SENDERS: usize = 6;
const PER_SENDER: usize = 1500;

#[test]
fn readers_that_keep_reading_are_never_closed_and_lose_nothing_acknowledged() {
    let s = TestServer::start(&[UNBUDGETED, &["--max-sockets-per-user", "1000"]].concat());
    let reader = s.user("reader");
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let mut c = s.ws(&reader);
            thread::spawn(move || {
                let mut got = HashSet::new();
                // Read everything that will be sent (or until nothing came for 20 s);
                // a close or an error fails the test.
                while got.len() < SENDERS * PER_SENDER {
                    let Some(v) = c.try_recv(Duration::from_secs(20)) else {
                        break;
                    };
                    if v["type"] == "message" {
                        got.insert(v["id"].as_i64().unwrap());
                    }
                }
                got
            })
        })
        .collect();
    let start = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let token = s.user(&format!("sender{i}"));
            let mut c = s.ws(&token);
            thread::spawn(move || {
                // Everything at once, as fast as the socket takes it; then the acks.
                for n in 0..PER_SENDER {
                    let text = format!("s{i} n{n}");
                    c.send(json!({"type": "send", "room": "general", "text": text, "client_id": format!("{n}")}));
                }
                let mut acked = HashSet::new();
                let mine = format!("sender{i}");
                while acked.len() < PER_SENDER {
                    let v = c.recv_type("message");
                    if v["user"] == mine.as_str() {
                        acked.insert(v["id"].as_i64().unwrap());
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for h in senders {
        acked.extend(h.join().unwrap());
    }
    let offered = start.elapsed();
    assert_eq!(acked.len(), SENDERS * PER_SENDER);
    for r in readers {
        let got = r.join().expect("a reader was closed or saw an error");
        let missing = acked.difference(&got).count();
        assert_eq!(
            missing, 0,
            "a reader missed {missing} acknowledged messages"
        );
    }
    let metrics = s.http("GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("chatterbox_slow_consumers_total 0\n"),
        "{metrics}"
    );
    eprintln!(
        "{} messages × {READERS} readers offered in {offered:?}",
        SENDERS * PER_SENDER
    );
}
