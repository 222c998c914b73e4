//! Hostile and unlucky conditions: protocol abuse, slow and silent clients, slowloris,
//! descriptor exhaustion, crashes, shutdown under load, storage faults, and what the logs
//! must never contain. Every test is bounded and talks only to 127.0.0.1.

mod common;

use common::raw::*;
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn protocol_abuse_closes_with_the_right_code_and_spares_others() {
    let s = TestServer::start(&[]);
    let token = s.user("mallory");
    let bystander_token = s.user("bob");
    let mut bystander = s.ws(&bystander_token);
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let mut close_frame_999 = 999u16.to_be_bytes().to_vec();
    close_frame_999.extend_from_slice(b"bad");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", frame(0x81, b"{}", false), 1002),
        ("reserved bits", frame(0x81 | 0x40, b"{}", true), 1002),
        ("frame over the size limit", text(&vec![b'a'; 70_000]), 1009),
        ("fragmented control frame", frame(0x09, b"", true), 1002),
        ("invalid UTF-8", text(&[0x7b, 0xff, 0xfe, 0x7d]), 1007),
        ("binary frame", frame(0x82, b"{}", true), 1007),
        ("100,000 nesting levels", text(&deep(100_000)), 1009),
        (
            "invalid close code",
            frame(0x88, &close_frame_999, true),
            1002,
        ),
        (
            "continuation without a start",
            frame(0x80, b"x", true),
            1002,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut ws = RawWs::open(&s, &token);
        ws.send_raw(&bytes);
        assert_eq!(ws.close_code(), Some(code), "{name}");
        // Everyone else carries on.
        bystander.send(json!({"type": "send", "room": "general", "text": name}));
        assert_eq!(bystander.recv_type("message")["text"], name);
    }
    // Deep nesting that fits in a frame is a bad request, not a reason to close.
    let mut ws = RawWs::open(&s, &token);
    ws.send_raw(&text(&deep(30_000)));
    let (op, reply) = ws.read_frame().unwrap();
    assert_eq!(op, 1);
    let v: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["code"], "bad_request");
    ws.send_raw(&text(
        br#"{"type":"send","room":"general","text":"still open"}"#,
    ));
    let (_, m) = ws.read_frame().unwrap();
    assert!(String::from_utf8_lossy(&m).contains("still open"));
}

#[test]
fn a_ping_flood_does_not_hurt_anyone_else() {
    let s = TestServer::start(&[]);
    let token = s.user("mallory");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let mut ws = RawWs::open(&s, &token);
    let ping = frame(0x89, &[7u8; 125], true);
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 20_000)
        .collect();
    ws.s.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = ws.s.write_all(&flood);
    for i in 0..5 {
        b.send(json!({"type": "send", "room": "general", "text": format!("ok {i}")}));
        assert_eq!(b.recv_type("message")["text"], format!("ok {i}"));
    }
    // The flooder is answered, at the pace of its frame budget (or cut off); no crash.
    let mut pongs = 0;
    while let Some((op, _)) = ws.read_frame() {
        match op {
            10 => pongs += 1,
            8 => break,
            _ => {}
        }
        if pongs == 10 {
            break;
        }
    }
    assert!(pongs > 0);
    assert_eq!(s.http("GET", "/healthz", None, None).status, 200);
}

#[test]
fn a_slow_consumer_is_closed_while_a_hundred_others_keep_up() {
    const MESSAGES: usize = 1500;
    let s = TestServer::start(
        &[
            UNBUDGETED,
            &[
                "--max-sockets-per-user",
                "200",
                "--stall-timeout-ms",
                "3000",
            ],
        ]
        .concat(),
    );
    let sender_token = s.user("sender");
    let reader_token = s.user("reader");
    let slow_token = s.user("sloth");
    // The slow client upgrades and then never reads (with a small receive buffer, or
    // the kernel would hold megabytes for it first).
    let slow = RawWs::open_small(&s, &slow_token, 16 * 1024);
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let mut c = s.ws(&reader_token);
            thread::spawn(move || {
                // Events are skipped; an error fails the test.
                let mut n = 0;
                while n < MESSAGES {
                    c.recv_type("message");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut sender = s.ws(&sender_token);
    let body = "x".repeat(3990);
    let rss_before = s.rss_kib();
    let mut acked = 0;
    for i in 0..MESSAGES {
        sender.send(json!({"type": "send", "room": "general", "text": format!("{i} {body}")}));
        if i % 50 == 49 {
            while acked < i + 1 {
                sender.recv_type("message");
                acked += 1;
            }
        }
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), MESSAGES);
    }
    let rss_after = s.rss_kib();
    // 1500 × 4 KB = 6 MB went to each reader; what waits for the sloth is shared frames,
    // counted once, until it has made no progress for the stall timeout (3 s here).
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    // The kernel holds a few MB for a client that stops reading; past that the sloth's
    // queue stops moving, and the stall timeout ends it.
    // The sender reads its own echoes as it goes (or it would be a slow consumer too).
    for i in 0..3000 {
        sender.send(json!({"type": "send", "room": "general", "text": format!("more {i} {body}")}));
        if i % 50 == 49 {
            for _ in 0..50 {
                sender.recv_type("message");
            }
        }
    }
    // Nothing of it has moved for the stall timeout (3 s): the server ends it. (Reading
    // it before then would be progress, and it would rightly stay.)
    let deadline = Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let m = s.http("GET", "/metrics", None, None).body;
        if m.contains("chatterbox_slow_consumers_total 1\n") || Instant::now() > deadline {
            break m;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics.contains("chatterbox_slow_consumers_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chatterbox_idle_closed_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chatterbox_websockets_open 1\n"),
        "only the sender is left: {metrics}"
    );
    // A client that starts reading that late finds the connection ended: what the
    // kernel held for it, then a close frame or the end of the stream.
    let mut slow = slow;
    slow.s
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let code = slow.close_code();
    assert!(code == Some(1008) || code.is_none(), "{code:?}");
}

#[test]
fn slowloris_connections_are_closed_while_a_normal_client_chats() {
    // 500 from one address: past the default per-address cap, which has its own test.
    let s = TestServer::start(&[
        "--request-timeout-ms",
        "1500",
        "--max-pending-per-ip",
        "1000",
    ]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    let mut lorises: Vec<TcpStream> = (0..500)
        .map(|_| {
            let t = TcpStream::connect(s.addr).unwrap();
            t.set_nonblocking(true).unwrap();
            t
        })
        .collect();
    let request = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
    let start = Instant::now();
    let mut step = 0;
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_millis(3000) {
        for l in &mut lorises {
            let _ = l.write(&request[step % request.len()..step % request.len() + 1]);
        }
        step += 1;
        let t0 = Instant::now();
        c.send(json!({"type": "send", "room": "general", "text": format!("tick {step}")}));
        c.recv_type("message");
        worst = worst.max(t0.elapsed());
        thread::sleep(Duration::from_millis(200));
    }
    assert!(worst < Duration::from_secs(1), "chat stalled for {worst:?}");
    let mut closed = 0;
    for l in &mut lorises {
        l.set_nonblocking(false).unwrap();
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match l.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a slowloris connection is still open: {e}"),
            }
        }
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        closed += 1;
    }
    assert_eq!(closed, 500);
}

#[test]
fn silent_websockets_and_idle_keep_alive_connections_are_closed() {
    let s = TestServer::start(&[
        "--ping-interval-ms",
        "300",
        "--ws-idle-timeout-ms",
        "1200",
        "--keepalive-timeout-ms",
        "500",
    ]);
    let token = s.user("alice");
    // A client that answers pings (tungstenite does while reading) stays.
    let mut live = s.ws(&token);
    let live = thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(2500) {
            live.try_recv(Duration::from_millis(100));
        }
        live.send(json!({"type": "send", "room": "general", "text": "alive"}));
        live.recv_type("message")["text"].clone()
    });
    // A raw client that never answers is closed with 1001 after the idle timeout.
    let mut silent = RawWs::open(&s, &token);
    let started = Instant::now();
    let mut pings = 0;
    let code = loop {
        match silent.read_frame() {
            Some((9, _)) => pings += 1,
            Some((8, p)) => break Some(u16::from_be_bytes([p[0], p[1]])),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(code, Some(1001));
    assert!(pings >= 2, "pings every 300 ms: got {pings}");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(live.join().unwrap(), "alive");
    // An idle keep-alive HTTP connection is closed after 500 ms.
    let mut k = TcpStream::connect(s.addr).unwrap();
    k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    k.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut k).status, 200);
    let t0 = Instant::now();
    let mut rest = Vec::new();
    assert_eq!(k.read_to_end(&mut rest).unwrap(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(300));
}

#[test]
fn connections_past_the_limit_get_503() {
    let s = TestServer::start(&["--max-connections", "20"]);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(200));
    let r = raw(s.addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (503, json!("overloaded"))
    );
    drop(held);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(s.http("GET", "/healthz", None, None).status, 200);
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_crashes() {
    // 64 descriptors: SQLite, the poll, the waker and a few sockets; the limit of
    // connections is set above what the descriptors allow, so accept hits EMFILE.
    let s = TestServer::start_with_nofile(64, &["--max-connections", "1000"]);
    let held: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(s.addr).ok())
        .collect();
    thread::sleep(Duration::from_millis(300));
    let before = s.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let used = s.cpu_ticks() - before;
    assert!(
        used < 30,
        "the server burned {used} ticks in one idle second"
    );
    drop(held);
    thread::sleep(Duration::from_millis(500));
    let r = s.http("GET", "/healthz", None, None);
    assert_eq!(r.status, 200);
}

/// Senders that record what was acknowledged, plus a listener that records everything
/// it received, until the server goes away.
type Seen = Arc<Mutex<HashMap<i64, String>>>;

fn chat_until_gone(s: &TestServer, clients: usize) -> (Seen, Vec<thread::JoinHandle<()>>) {
    let seen: Seen = Arc::default();
    let mut handles = Vec::new();
    // Registered two at a time: each costs two argon2 runs, and the server has two threads.
    let tokens: Vec<String> = thread::scope(|scope| {
        let halves: Vec<_> = [0, 1]
            .map(|half| {
                scope.spawn(move || {
                    (0..clients)
                        .filter(|i| i % 2 == half)
                        .map(|i| (i, s.user(&format!("user{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .into_iter()
            .collect();
        let mut all: Vec<(usize, String)> =
            halves.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        all.into_iter().map(|(_, t)| t).collect()
    });
    for (i, token) in tokens.into_iter().enumerate() {
        let mut c = s.ws(&token);
        let seen = Arc::clone(&seen);
        handles.push(thread::spawn(move || {
            for n in 0.. {
                let t = format!("u{i} n{n}");
                if c.ws.send(tungstenite::Message::Text(json!({"type": "send", "room": "general", "text": t, "client_id": format!("{n}")}).to_string().into())).is_err() {
                    return;
                }
                // Read until our own echo (recording every message seen on the way).
                loop {
                    match c.ws.read() {
                        Ok(tungstenite::Message::Text(m)) => {
                            let v: Value = serde_json::from_str(&m).unwrap();
                            if v["type"] == "message" {
                                let id = v["id"].as_i64().unwrap();
                                let text = v["text"].as_str().unwrap().to_string();
                                let mine = text == t;
                                seen.lock().unwrap().insert(id, text);
                                if mine {
                                    break;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    (seen, handles)
}

fn crash_durability(sync: &str) {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    // Paging tens of thousands of messages back is many history actions.
    let args = [
        &[
            "--sync",
            sync,
            "--action-rate",
            "1000000",
            "--action-burst",
            "1000000",
        ][..],
        UNBUDGETED,
    ]
    .concat();
    let mut s = TestServer::start_with_db(&db, &args);
    let reader = s.user("auditor");
    let (seen, handles) = chat_until_gone(&s, 50);
    thread::sleep(Duration::from_millis(1500));
    s.kill();
    for h in handles {
        h.join().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() > 50,
        "only {} messages before the crash",
        seen.len()
    );
    let s = TestServer::start_with_db(&db, &args);
    let stored = s.all_messages(&reader, "general");
    let ids: Vec<i64> = stored.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids in history");
    let texts: HashSet<&str> = stored.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), stored.len(), "a retry was stored twice");
    let by_id: HashMap<i64, &str> = stored
        .iter()
        .map(|m| (m["id"].as_i64().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    for (id, text) in &seen {
        assert_eq!(
            by_id.get(id),
            Some(&text.as_str()),
            "message {id} was seen by a client but lost"
        );
    }
}

#[test]
fn every_message_a_client_saw_survives_kill_9() {
    crash_durability("normal");
}

#[test]
fn every_message_a_client_saw_survives_kill_9_with_full_sync() {
    crash_durability("full");
}

#[test]
fn sigterm_under_load_closes_with_4002_commits_and_exits_within_5s() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db, UNBUDGETED);
    let reader = s.user("auditor");
    let mut watcher = s.ws(&reader);
    let (seen, handles) = chat_until_gone(&s, 20);
    thread::sleep(Duration::from_millis(800));
    let t0 = Instant::now();
    unsafe {
        libc::kill(s.pid(), libc::SIGTERM);
    }
    assert_eq!(watcher.close_code(), Some(4002));
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    for h in handles {
        h.join().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let s = TestServer::start_with_db(&db, UNBUDGETED);
    let stored: HashSet<i64> = s
        .all_messages(&reader, "general")
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    for id in seen.keys() {
        assert!(stored.contains(id), "message {id} lost in shutdown");
    }
}

#[test]
fn a_full_disk_refuses_writes_reports_unhealthy_and_recovers() {
    if pg::server().is_some() {
        // The fault is the server's file size limit, which PostgreSQL's writes ignore;
        // core.rs has PostgreSQL's own (a lost database).
        return;
    }
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    let before = c.request(
        json!({"type": "send", "room": "general", "text": "before the fault"}),
        "1",
    );
    assert_eq!(before["type"], "message");
    // Any write that grows a file now fails, as on a full disk.
    set_fsize(&s, 1);
    let mut refused = None;
    for i in 0..20 {
        let r = c.request(json!({"type": "send", "room": "general", "text": format!("during {i} {}", "y".repeat(3000))}), &format!("f{i}"));
        if r["type"] == "error" {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("writes must fail while the disk is full");
    assert_eq!(refused["code"], "overloaded");
    assert_eq!(s.http("GET", "/healthz", None, None).status, 503);
    set_fsize(&s, libc::RLIM_INFINITY);
    let t0 = Instant::now();
    while s.http("GET", "/healthz", None, None).status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never recovered");
        thread::sleep(Duration::from_millis(100));
    }
    let after = c.request(
        json!({"type": "send", "room": "general", "text": "after the fault"}),
        "2",
    );
    assert_eq!(after["type"], "message");
    let texts: Vec<String> = s
        .all_messages(&token, "general")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert!(texts.contains(&"before the fault".to_string()));
    assert!(texts.contains(&"after the fault".to_string()));
}

/// Sets the server's largest writable file size: 1 byte is a full disk.
fn set_fsize(s: &TestServer, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child process with a valid rlimit.
    let rc = unsafe { libc::prlimit(s.pid(), libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn rooms_and_memberships_exist_only_once_stored() {
    if pg::server().is_some() {
        // A full disk for SQLite only, as above.
        return;
    }
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db, &[]);
    let alice = s.user("alice");
    s.user("bob");
    let mut c = s.ws(&alice);
    set_fsize(&s, 1);
    // A write that grows the file fails from now on; the first refused one proves it.
    let mut refused = false;
    for i in 0..20 {
        let text = format!("during {i} {}", "y".repeat(3000));
        let r = c.request(
            json!({"type": "send", "room": "general", "text": text}),
            &format!("f{i}"),
        );
        if r["type"] == "error" {
            refused = true;
            break;
        }
    }
    assert!(refused, "writes must fail while the disk is full");
    // Neither a room, nor a membership, nor a conversation is claimed while unstored,
    // and the next request on the socket is answered after it.
    c.send(json!({"type": "join", "room": "lost", "ref": "j"}));
    c.send(json!({"type": "create_room", "room": "lost2", "private": true, "ref": "c"}));
    c.send(json!({"type": "dm", "to": "bob", "text": "lost?", "ref": "d"}));
    c.send(json!({"type": "send", "room": "lost", "text": "after", "ref": "s"}));
    for (r, code) in [
        ("j", "overloaded"),
        ("c", "overloaded"),
        ("d", "overloaded"),
        ("s", "no_such_room"),
    ] {
        let e = c.recv_error();
        assert_eq!(
            (e["ref"].as_str(), e["code"].as_str()),
            (Some(r), Some(code)),
            "{e}"
        );
    }
    let rooms = s.http("GET", "/rooms", Some(&alice), None).json();
    let names: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("lost")), "{names:?}");
    set_fsize(&s, libc::RLIM_INFINITY);
    let t0 = Instant::now();
    while s.http("GET", "/healthz", None, None).status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never recovered");
        thread::sleep(Duration::from_millis(100));
    }
    // Now stored: a join followed at once by a send on the same socket works.
    c.send(json!({"type": "join", "room": "lost", "ref": "j2"}));
    c.send(json!({"type": "send", "room": "lost", "text": "found", "ref": "s2"}));
    assert_eq!(c.recv_type("joined")["ref"], "j2");
    assert_eq!(c.recv_type("message")["ref"], "s2");
    drop(c);
    // What memory said is what the disk says.
    s.terminate();
    let s = TestServer::start_with_db(&db, &[]);
    let alice = s.login("alice");
    let mut c = s.ws(&alice);
    let j = c.request(json!({"type": "join", "room": "lost"}), "again");
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["owner"], "alice");
    assert_eq!(j["history"][0]["text"], "found");
    let e = c.request(json!({"type": "join", "room": "lost2"}), "x");
    assert_eq!(
        e["owner"], "alice",
        "a room that failed to be created is free: {e}"
    );
}

#[test]
fn logs_never_contain_passwords_tokens_or_message_text() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let log_path = dir.0.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut s = TestServer::start_logging(&db, &[], log, "trace");
    let password = "Sup3rSecretPassw0rd";
    assert_eq!(
        s.post_json(
            "/register",
            &json!({"username": "alice", "password": password})
        )
        .status,
        201
    );
    let r = s.post_json(
        "/login",
        &json!({"username": "alice", "password": password}),
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    let mut c = s.ws(&token);
    let secret_text = "ThisMessageTextMustNotBeLogged";
    // Both must succeed, or the text never went anywhere it could be logged.
    let sent = c.request(
        json!({"type": "send", "room": "general", "text": secret_text}),
        "1",
    );
    assert_eq!(sent["type"], "message", "{sent}");
    let edited = c.request(
        json!({"type": "edit", "id": sent["id"], "text": format!("{secret_text} edited")}),
        "2",
    );
    assert_eq!(edited["type"], "edited", "{edited}");
    s.http(
        "GET",
        &format!("/search?q={secret_text}"),
        Some(&token),
        None,
    );
    assert_eq!(s.terminate().code(), Some(0));
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("TRACE") || logged.contains("DEBUG"),
        "trace logging was on"
    );
    let hex = |t: &str| t.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for needle in [
        password.to_string(),
        token.clone(),
        secret_text.to_string(),
        hex(secret_text),
        hex(password),
    ] {
        assert!(!logged.contains(&needle), "the log contains {needle:?}");
    }
}

#[test]
fn nothing_follows_the_close_frame_even_when_a_reply_is_still_pending() {
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    for _ in 0..5 {
        let mut ws = RawWs::open(&s, &token);
        // A send whose stored copy comes back after the client has already said goodbye.
        let mut bytes = text(br#"{"type":"send","room":"general","text":"last words"}"#);
        bytes.extend(frame(0x88, &1000u16.to_be_bytes(), true));
        ws.send_raw(&bytes);
        let mut frames = Vec::new();
        while let Some((op, _)) = ws.read_frame() {
            frames.push(op);
        }
        assert_eq!(
            frames.last(),
            Some(&8),
            "frames after the close: {frames:?}"
        );
        assert_eq!(frames.iter().filter(|op| **op == 8).count(), 1);
    }
}
