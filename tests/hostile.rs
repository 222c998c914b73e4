//! Regression tests for what an attacker did to v0.1.0: one test per finding, each of
//! which failed on that version. Bounded, loopback only.

mod common;

use common::raw::*;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Time to answer `/healthz` on a fresh connection.
fn healthz_time(s: &TestServer) -> Duration {
    let t0 = Instant::now();
    assert_eq!(s.http("GET", "/healthz", None, None).status, 200);
    t0.elapsed()
}

#[test]
fn get_rooms_messages_is_a_404_not_a_crash() {
    let s = TestServer::start(&[]);
    let t = s.user("alice");
    for path in [
        "/rooms/messages",
        "/rooms//messages",
        "/rooms/a/messages/x",
        "/rooms/a/b/messages",
    ] {
        let r = s.http("GET", path, Some(&t), None);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    assert_eq!(s.http("GET", "/healthz", None, None).status, 200);
}

#[test]
fn pipelining_without_reading_is_bounded_and_others_are_served() {
    let s = TestServer::start(&[]);
    let before = s.rss_kib();
    let mut hog = TcpStream::connect(s.addr).unwrap();
    hog.set_nonblocking(true).unwrap();
    let request = b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(3) {
        // Write as much as the socket takes; never read a byte.
        let _ = hog.write(&request);
        worst = worst.max(healthz_time(&s));
    }
    let grown = s.rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    assert!(worst < Duration::from_secs(2), "healthz took {worst:?}");
}

#[test]
fn a_ping_flood_from_clients_that_never_read_is_bounded() {
    let s = TestServer::start(&[]);
    let token = s.user("mallory");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let before = s.rss_kib();
    let deadline = Instant::now() + Duration::from_secs(4);
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let mut ws = RawWs::open(&s, &token);
            thread::spawn(move || {
                let pings = frame(0x89, &[7u8; 125], true).repeat(1000);
                ws.s.set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                while Instant::now() < deadline {
                    // Write as fast as the server reads; never read a pong.
                    let _ = ws.s.write(&pings);
                }
                ws
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut peak = 0;
    let mut i = 0;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        b.send(json!({"type": "send", "room": "general", "text": format!("ok {i}")}));
        assert_eq!(b.recv_type("message")["text"], format!("ok {i}"));
        worst = worst.max(t0.elapsed());
        peak = peak.max(s.rss_kib());
        i += 1;
        // Within bob's own budget of 10 messages a second.
        thread::sleep(Duration::from_millis(150));
    }
    for f in flooders {
        f.join().unwrap();
    }
    let grown = peak.saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    // Not a benchmark (tools/attack measures p99): only "never stalled", which v0.1.0 was
    // for seconds.
    assert!(worst < Duration::from_secs(2), "bob waited {worst:?}");
}

#[test]
fn invitations_cannot_lock_anyone_out() {
    let s = TestServer::start(&[]);
    let mallory = s.user("mallory");
    let bob = s.user("bob");
    let mut m = s.ws(&mallory);
    let mut refused = 0;
    for i in 0..300 {
        let room = format!("trap{i}");
        m.send(json!({"type": "create_room", "room": room, "private": true, "ref": "c"}));
        m.send(json!({"type": "invite", "room": room, "user": "bob", "ref": "i"}));
    }
    // Budget and the cap on rooms owned stop it long before 300.
    let mut invited = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused + invited < 600 && Instant::now() < deadline {
        let Some(v) = m.try_recv(Duration::from_secs(2)) else {
            break;
        };
        match v["type"].as_str() {
            Some("error") => refused += 1,
            Some("invited") => invited += 1,
            _ => {}
        }
    }
    assert!(refused > 400, "refused {refused}, invited {invited}");
    // Bob still gets in, with a hello that is small and lists no trap as a room.
    let (_b, hello) = s.ws_hello(&bob);
    assert_eq!(hello["rooms"], json!(["general"]));
    assert!(hello.to_string().len() < 64 * 1024);
    assert!(hello["invitations"].as_array().unwrap().len() <= 100);
}

#[test]
fn a_large_catch_up_is_paged_not_a_slow_consumer() {
    let s = TestServer::start(UNBUDGETED);
    let writer = s.user("writer");
    let reader = s.user("reader");
    let mut w = s.ws(&writer);
    let text = "雨".repeat(540); // 1,620 bytes of UTF-8
    for i in 0..700 {
        w.send(json!({"type": "send", "room": "general", "text": format!("{i} {text}")}));
    }
    let mut last = 0;
    while last < 700 {
        last = w.recv_type("message")["id"].as_i64().unwrap().max(last);
    }
    let mut r = s.ws(&reader);
    let j = r.request(json!({"type": "join", "room": "general", "since": 0}), "j");
    assert_eq!(j["complete"], false, "700 × 1.6 KB is over one reply");
    let mut got: Vec<i64> = ids(&j["history"]);
    // Page forward with after until has_more is false; nothing is skipped.
    loop {
        let after = *got.last().unwrap();
        let h = r.request(
            json!({"type": "history", "room": "general", "after": after, "limit": 200}),
            "h",
        );
        got.extend(ids(&h["messages"]));
        if h["has_more"] == false {
            break;
        }
    }
    assert_eq!(got, (1..=700).collect::<Vec<i64>>());
    // Still connected and served.
    r.send(json!({"type": "send", "room": "general", "text": "caught up"}));
    assert_eq!(r.recv_type("message")["text"], "caught up");
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn creating_rooms_is_budgeted_and_capped_and_the_room_list_is_paged() {
    let s = TestServer::start(&[]);
    let t = s.user("mallory");
    let mut m = s.ws(&t);
    for i in 0..200 {
        m.send(json!({"type": "create_room", "room": format!("flood{i}"), "ref": "c"}));
    }
    let mut created = 0;
    while let Some(v) = m.try_recv(Duration::from_secs(2)) {
        if v["type"] == "joined" {
            created += 1;
        }
    }
    assert!(created <= 100, "{created} rooms created");
    let r = s.http("GET", "/rooms?limit=10", Some(&t), None);
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 10);
    let after = page[9]["name"].as_str().unwrap();
    let next = s
        .http(
            "GET",
            &format!("/rooms?limit=10&after={after}"),
            Some(&t),
            None,
        )
        .json();
    assert!(next[0]["name"].as_str().unwrap() > after);
    let found = s.http("GET", "/rooms?q=flood1", Some(&t), None).json();
    assert!(found
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["name"].as_str().unwrap().contains("flood1")));
}

#[test]
fn a_join_leave_flood_is_budgeted_and_presence_is_coalesced() {
    let s = TestServer::start(&[]);
    let t = s.user("mallory");
    let listener = s.user("listener");
    let mut l = s.ws(&listener);
    l.request(json!({"type": "join", "room": "busy"}), "j");
    let mut m = s.ws(&t);
    let start = Instant::now();
    for _ in 0..500 {
        m.send(json!({"type": "join", "room": "busy"}));
        m.send(json!({"type": "leave", "room": "busy"}));
    }
    let mut limited = 0;
    while let Some(v) = m.try_recv(Duration::from_millis(500)) {
        if v["code"] == "rate_limited" {
            limited += 1;
            assert!(v["retry_after_ms"].as_u64().unwrap() >= 1);
        }
    }
    assert!(limited > 900, "only {limited} refused");
    let mut presence = 0;
    while let Some(v) = l.try_recv(Duration::from_millis(1500)) {
        if v["type"] == "presence" && v["user"] == "mallory" {
            presence += 1;
        }
    }
    // At most one announcement per second, plus the final state.
    let secs = start.elapsed().as_secs() as usize + 2;
    assert!(presence <= secs, "{presence} presence frames in {secs} s");
}

#[test]
fn one_address_cannot_hold_every_connection() {
    let s = TestServer::start(&["--max-pending-per-ip", "20", "--max-connections", "200"]);
    let t = s.user("alice");
    let from = Ipv4Addr::new(127, 0, 0, 2);
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| connect_from(from, s.addr).unwrap())
        .collect();
    // The 21st from that address is refused at once...
    let mut extra = connect_from(from, s.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = String::new();
    let _ = extra.read_to_string(&mut got);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    // ...while everyone else still gets in.
    let mut c = s.ws(&t);
    c.send(json!({"type": "send", "room": "general", "text": "still here"}));
    assert_eq!(c.recv_type("message")["text"], "still here");
    idle.clear();
}

#[test]
fn one_user_cannot_hold_every_websocket() {
    let s = TestServer::start(&["--max-sockets-per-user", "5"]);
    let t = s.user("alice");
    let _open: Vec<Client> = (0..5).map(|_| s.ws(&t)).collect();
    match s.try_ws(&t) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("a sixth socket: {:?}", other.map(|_| ())),
    }
    let bob = s.user("bob");
    s.ws(&bob);
}

#[test]
fn admin_rights_cannot_be_claimed_by_registering_a_name() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let s = TestServer::start_with_db(&db, &["--admin", "boss"]);
    let boss = s.user("BOSS");
    assert_eq!(s.http("GET", "/admin/stats", Some(&boss), None).status, 403);
    assert_eq!(s.http("GET", "/admin/audit", Some(&boss), None).status, 403);
    // Granted to the account in the database: the running server follows within a second.
    s.grant_admin("boss", &boss);
    let audit = s.http("GET", "/admin/audit", Some(&boss), None).json();
    assert_eq!(audit["entries"][0]["action"], "grant_admin");
    // Suspending someone closes their sockets and refuses their logins.
    let mallory = s.user("mallory");
    let mut m = s.ws(&mallory);
    let r = s.http("POST", "/admin/users/mallory/suspend", Some(&boss), None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(m.close_code(), Some(4001));
    let login = s.post_json(
        "/login",
        &json!({"username": "mallory", "password": PASSWORD}),
    );
    assert_eq!(login.status, 403);
    // An unknown name for the admin command is an error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .args(["admin", "grant", "nobody", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn an_author_who_left_a_room_cannot_change_messages_there() {
    let s = TestServer::start(&[]);
    let t = s.user("alice");
    let mut a = s.ws(&t);
    a.request(json!({"type": "join", "room": "ops"}), "j");
    let m = a.request(json!({"type": "send", "room": "ops", "text": "mine"}), "s");
    a.request(json!({"type": "leave", "room": "ops"}), "l");
    let e = a.request(
        json!({"type": "edit", "id": m["id"], "text": "changed"}),
        "e",
    );
    assert_eq!(e["code"], "forbidden");
    let e = a.request(json!({"type": "delete", "id": m["id"]}), "d");
    assert_eq!(e["code"], "forbidden");
}

#[test]
fn content_length_must_be_digits() {
    let s = TestServer::start(&[]);
    // v0.1.0 read "+0" as 0 and answered 200.
    let r = raw(
        s.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n",
    );
    assert_eq!(r.status, 400);
}

#[test]
fn help_exits_zero() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: chatterbox"));
}
