//! Server core over real sockets: accounts, tokens, the upgrade, broadcast, restart,
//! malformed requests, and a thousand clients.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn two_clients_receive_the_same_message() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let bob = s.user("bob");
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    a.send(json!({"type": "send", "room": "general", "text": "  hello bob  ", "client_id": "c1"}));
    let ma = a.recv_type("message");
    let mb = b.recv_type("message");
    assert_eq!(ma["id"], mb["id"]);
    assert_eq!(ma["text"], "hello bob");
    assert_eq!(mb["user"], "alice");
    assert_eq!(mb["room"], "general");
    assert_eq!(mb["client_id"], "c1");
    assert!(mb["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn register_and_login_errors() {
    let s = TestServer::start(&[]);
    assert_eq!(s.register("alice").status, 201);
    let r = s.register("ALICE");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (409, json!("username_taken"))
    );
    let r = s.post_json(
        "/register",
        &json!({"username": "a b", "password": PASSWORD}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_username"))
    );
    let r = s.post_json(
        "/register",
        &json!({"username": "carol", "password": "short"}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_password"))
    );
    let r = s.http("POST", "/register", None, Some("{not json"));
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("bad_json"))
    );
    let r = s.post_json(
        "/login",
        &json!({"username": "alice", "password": "wrong password"}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_credentials"))
    );
    let r = s.post_json(
        "/login",
        &json!({"username": "nobody", "password": PASSWORD}),
    );
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_credentials"))
    );
    let r = s.post_json(
        "/login",
        &json!({"username": "Alice", "password": PASSWORD}),
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["username"], "alice");
    assert_eq!(v["token"].as_str().unwrap().len(), 64);
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(s.http("POST", "/logout", None, None).status, 401);
    assert_eq!(s.http("POST", "/logout", Some("bogus"), None).status, 401);
}

#[test]
fn login_and_register_are_rate_limited_per_ip() {
    let s = TestServer::start(&["--auth-per-minute", "3"]);
    for _ in 0..3 {
        let r = s.post_json("/login", &json!({"username": "x", "password": "y"}));
        assert_eq!(r.status, 401);
    }
    let r = s.register("alice");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (429, json!("rate_limited"))
    );
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

#[test]
fn websocket_needs_a_valid_token() {
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    let upgrade = |extra: &str, path: &str| {
        raw(
            s.addr,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
                s.addr
            )
            .as_bytes(),
        )
    };
    assert_eq!(upgrade("", "/ws").status, 401);
    assert_eq!(upgrade("", "/ws?token=nope").status, 401);
    assert_eq!(upgrade("Authorization: Bearer nope\r\n", "/ws").status, 401);
    let ok = upgrade(&format!("Authorization: Bearer {token}\r\n"), "/ws");
    assert_eq!(ok.status, 101);
    assert_eq!(
        ok.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let same_site = upgrade(
        &format!("Origin: http://{}\r\n", s.addr),
        &format!("/ws?token={token}"),
    );
    assert_eq!(same_site.status, 101);
    let cross = upgrade(
        "Origin: https://evil.example\r\n",
        &format!("/ws?token={token}"),
    );
    assert_eq!(cross.status, 403);
    let v12 = raw(
        s.addr,
        format!("GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    );
    assert_eq!(v12.status, 426);
    assert_eq!(v12.header("sec-websocket-version"), Some("13"));
}

#[test]
fn logout_revokes_the_token_and_closes_its_sockets_with_4001() {
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    let other = s.login("alice");
    let mut c = s.ws(&token);
    let mut keep = s.ws(&other);
    assert_eq!(s.http("POST", "/logout", Some(&token), None).status, 204);
    assert_eq!(c.close_code(), Some(4001));
    assert!(
        s.try_ws(&token).is_err(),
        "a revoked token must not upgrade"
    );
    assert_eq!(s.http("GET", "/rooms", Some(&token), None).status, 401);
    assert_eq!(s.http("POST", "/logout", Some(&token), None).status, 401);
    // The user's other session is untouched.
    keep.send(json!({"type": "send", "room": "general", "text": "still here"}));
    assert_eq!(keep.recv_type("message")["text"], "still here");
}

#[test]
fn history_survives_a_restart() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let token;
    {
        let mut s = TestServer::start_with_db(&db, &[]);
        token = s.user("alice");
        let mut c = s.ws(&token);
        for i in 0..3 {
            c.send(json!({"type": "send", "room": "general", "text": format!("msg {i}")}));
            c.recv_type("message");
        }
        assert!(s.terminate().success());
    }
    let s = TestServer::start_with_db(&db, &[]);
    let mut c = s.ws(&token);
    let j = c.request(json!({"type": "join", "room": "general"}), "j");
    assert_eq!(j["type"], "joined");
    let texts: Vec<&str> = j["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["msg 0", "msg 1", "msg 2"]);
}

#[test]
fn a_thousand_clients_receive_one_broadcast() {
    // One user, a thousand sockets: past the default per-user cap on purpose.
    let s = TestServer::start(&["--max-sockets-per-user", "1000"]);
    let token = s.user("crowd");
    let mut clients: Vec<Client> = (0..1000).map(|_| s.ws(&token)).collect();
    clients[0].send(json!({"type": "send", "room": "general", "text": "to everyone"}));
    let mut ids = std::collections::HashSet::new();
    for c in &mut clients {
        let m = c.recv_type("message");
        assert_eq!(m["text"], "to everyone");
        ids.insert(m["id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 1);
}

#[test]
fn malformed_requests_get_their_status_and_others_are_served() {
    let s = TestServer::start(&[]);
    assert_eq!(
        raw(s.addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").status,
        400
    );
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(raw(s.addr, big.as_bytes()).status, 431);
    let many: String = (0..80).map(|i| format!("H{i}: v\r\n")).collect();
    assert_eq!(
        raw(s.addr, format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).status,
        431
    );
    assert_eq!(
        raw(
            s.addr,
            b"POST /login HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"
        )
        .status,
        413
    );
    // No Content-Length means no body (curl -X POST without data): a JSON error, not 411.
    assert_eq!(raw(s.addr, b"POST /login HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(
        raw(
            s.addr,
            b"POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .status,
        411
    );
    let r = raw(s.addr, b"DELETE /login HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(raw(s.addr, b"GET /nope HTTP/1.1\r\n\r\n").status, 404);
    assert_eq!(raw(s.addr, b"GET / HTTP/2.0\r\n\r\n").status, 505);
    let r = s.http("GET", "/healthz", None, None);
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
}

#[test]
fn keep_alive_serves_pipelined_requests_in_order() {
    let s = TestServer::start(&[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\n\r\nPOST /login HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /nope HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response_buffered(&mut c, &mut buf).status, 200);
    assert_eq!(read_response_buffered(&mut c, &mut buf).status, 400);
    assert_eq!(read_response_buffered(&mut c, &mut buf).status, 404);
    // Still open for more.
    c.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response_buffered(&mut c, &mut buf);
    assert_eq!(r.status, 200);
    let mut rest = Vec::new();
    assert_eq!(
        c.read_to_end(&mut rest).unwrap(),
        0,
        "closed after Connection: close"
    );
}

#[test]
fn metrics_and_ui_are_served() {
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    c.send(json!({"type": "send", "room": "general", "text": "count me"}));
    c.recv_type("message");
    let m = s.http("GET", "/metrics", None, None);
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("chatterbox_websockets_open 1"),
        "{}",
        m.body
    );
    assert!(m.body.contains("chatterbox_messages_stored_total 1"));
    assert!(m
        .body
        .contains("chatterbox_http_responses_total{status=\"201\"} 1"));
    let page = s.http("GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(
        s.http("GET", "/app.js", None, None).header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn sigterm_closes_sockets_with_4002_and_exits_zero() {
    let mut s = TestServer::start(&[]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    let pid = s.child.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert_eq!(c.close_code(), Some(4002));
    assert!(s.child.wait().unwrap().success());
}

#[test]
fn an_unreachable_postgres_at_start_up_is_a_clear_error_and_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        // Port 1: nothing listens there.
        .arg("postgres://chat:hunter2@127.0.0.1:1/chat")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://chat@127.0.0.1:1/chat"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is not printed: {err}"
    );
}

#[test]
fn a_lost_postgres_refuses_writes_reports_unhealthy_and_recovers() {
    let Some(server) = pg::server() else { return };
    let s = TestServer::start(&[]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    let before = c.request(
        json!({"type": "send", "room": "general", "text": "before"}),
        "1",
    );
    assert_eq!(before["type"], "message");
    // The database stops taking connections and ours are cut: PostgreSQL is gone.
    let url = s.db.to_string_lossy().to_string();
    let name = url.rsplit('/').next().unwrap().to_string();
    let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
    let allow = |admin: &mut postgres::Client, on: bool| {
        admin
            .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {on}"))
            .unwrap();
    };
    allow(&mut admin, false);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .unwrap();
    let refused = c.request(
        json!({"type": "send", "room": "general", "text": "during"}),
        "2",
    );
    assert_eq!(refused["code"], "overloaded", "{refused}");
    assert_eq!(s.http("GET", "/healthz", None, None).status, 503);
    allow(&mut admin, true);
    let t0 = std::time::Instant::now();
    while s.http("GET", "/healthz", None, None).status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(15), "never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = c.request(
        json!({"type": "send", "room": "general", "text": "after"}),
        "3",
    );
    assert_eq!(after["type"], "message", "{after}");
    let h = s.all_messages(&token, "general");
    let texts: Vec<&str> = h.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["before", "after"]);
    // Readers come back too (a search is always theirs): at the latest after their
    // backoff, failing fast until then.
    let t0 = std::time::Instant::now();
    loop {
        let r = s.http("GET", "/search?q=aft", Some(&token), None);
        if r.status == 200 {
            assert_eq!(r.json()["messages"][0]["text"], "after", "{}", r.body);
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        after["seq"].as_i64(),
        Some(2),
        "the refused one took no seq"
    );
}

#[test]
fn a_postgres_database_from_a_newer_chatterbox_is_refused() {
    if pg::server().is_none() {
        return;
    }
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    drop(TestServer::start_with_db(&db, &[]));
    let url = pg::url_for(&db);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE schema_version SET version = version + 6")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .args(["--listen", "127.0.0.1:0", "--db", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is newer than this chatterbox"), "{err}");
    assert!(err.contains(&url), "names the database: {err}");
}
