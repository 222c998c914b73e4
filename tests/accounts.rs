//! Account management over real sockets: sessions (listed with where and what they came
//! from, ended one by one or all at once), password change, per-account login throttle.

mod common;

use common::raw::connect_from;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::Ipv4Addr;

/// A login from `from` with a user agent; returns the response.
fn login_from(s: &TestServer, from: Ipv4Addr, name: &str, password: &str, agent: &str) -> Resp {
    let mut c = connect_from(from, s.addr).unwrap();
    let body = json!({"username": name, "password": password}).to_string();
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    read_response(&mut c)
}

fn token_of(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["token"].as_str().unwrap().to_string()
}

#[test]
fn sessions_say_where_they_came_from_and_end_on_request() {
    let s = TestServer::start(&[]);
    s.register("alice");
    let phone = token_of(&login_from(
        &s,
        Ipv4Addr::new(127, 0, 0, 2),
        "alice",
        PASSWORD,
        "PhoneApp/1.0",
    ));
    let laptop = token_of(&login_from(
        &s,
        Ipv4Addr::new(127, 0, 0, 3),
        "alice",
        PASSWORD,
        "Laptop Browser/2",
    ));
    let mut phone_ws = s.ws(&phone);
    let list = s
        .http("GET", "/account/sessions", Some(&laptop), None)
        .json();
    let list = list["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let mine: Vec<&Value> = list.iter().filter(|x| x["current"] == true).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["ip"], "127.0.0.3");
    let other = list.iter().find(|x| x["current"] == false).unwrap();
    assert_eq!(
        (other["ip"].as_str(), other["user_agent"].as_str()),
        (Some("127.0.0.2"), Some("PhoneApp/1.0"))
    );
    assert!(other["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !list.iter().any(|x| x.to_string().contains(&phone)),
        "never a token"
    );
    let id = other["id"].as_str().unwrap();
    let r = s.http(
        "DELETE",
        &format!("/account/sessions/{id}"),
        Some(&laptop),
        None,
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(phone_ws.close_code(), Some(4001));
    assert_eq!(s.http("GET", "/rooms", Some(&phone), None).status, 401);
    assert_eq!(s.http("GET", "/rooms", Some(&laptop), None).status, 200);
    // Logging out everywhere ends this one too.
    let again = s.login("alice");
    assert_eq!(
        s.http("POST", "/logout?all=1", Some(&laptop), None).status,
        204
    );
    for t in [&laptop, &again] {
        assert_eq!(s.http("GET", "/rooms", Some(t), None).status, 401);
    }
}

#[test]
fn a_password_change_ends_every_other_session_at_once() {
    let s = TestServer::start(&[]);
    s.register("alice");
    let here = s.login("alice");
    let there = s.login("alice");
    let mut there_ws = s.ws(&there);
    let mut here_ws = s.ws(&here);
    let change = |old: &str, new: &str| json!({"old": old, "new": new}).to_string();
    let r = s.http(
        "POST",
        "/account/password",
        Some(&here),
        Some(&change("wrong-password", "n3w-password")),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s.http(
        "POST",
        "/account/password",
        Some(&here),
        Some(&change(PASSWORD, "n3w-password")),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(there_ws.close_code(), Some(4001));
    let sent = here_ws.request(
        json!({"type": "send", "room": "general", "text": "still here"}),
        "1",
    );
    assert_eq!(sent["type"], "message", "this session goes on");
    let old = s.post_json(
        "/login",
        &json!({"username": "alice", "password": PASSWORD}),
    );
    assert_eq!(old.status, 401);
    let new = s.post_json(
        "/login",
        &json!({"username": "alice", "password": "n3w-password"}),
    );
    assert_eq!(new.status, 200);
}

#[test]
fn guessing_one_account_from_many_addresses_is_throttled() {
    let s = TestServer::start(&["--login-failures-per-hour", "5"]);
    s.register("alice");
    s.register("bob");
    for i in 0..5u8 {
        let r = login_from(
            &s,
            Ipv4Addr::new(127, 0, 0, 2 + i),
            "alice",
            "guess-guess",
            "bot",
        );
        assert_eq!(r.status, 401);
    }
    let r = login_from(&s, Ipv4Addr::new(127, 0, 0, 9), "alice", PASSWORD, "me");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"], "rate_limited");
    let r = login_from(&s, Ipv4Addr::new(127, 0, 0, 9), "bob", PASSWORD, "me");
    assert_eq!(r.status, 200, "another account is not affected");
}

/// Runs `chatterbox admin ARGS --db DB` with `stdin`; returns (success, stdout).
fn admin(db: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("admin")
        .args(args)
        .arg("--db")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn a_reset_code_works_once_and_ends_every_session() {
    let s = TestServer::start(&[]);
    s.register("alice");
    let token = s.login("alice");
    let mut ws = s.ws(&token);
    let (ok, code) = admin(&s.db, &["reset-password", "alice"], "");
    assert!(ok && code.len() == 64, "{code}");
    let reset = |code: &str| {
        s.post_json(
            "/account/reset",
            &json!({"name": "alice", "code": code, "new": "reset-password-1"}),
        )
    };
    assert_eq!(reset("0000").status, 403, "a wrong code");
    let r = reset(&code);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(ws.close_code(), Some(4001));
    assert_eq!(s.http("GET", "/rooms", Some(&token), None).status, 401);
    let r = reset(&code);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("invalid_code")),
        "single use"
    );
    let new = s.post_json(
        "/login",
        &json!({"username": "alice", "password": "reset-password-1"}),
    );
    assert_eq!(new.status, 200);
    let (ok, _) = admin(&s.db, &["reset-password", "nobody"], "");
    assert!(!ok);
}

#[test]
fn registration_by_invite_code() {
    let s = TestServer::start(&["--registration", "invite"]);
    assert_eq!(
        s.http("GET", "/registration", None, None).json(),
        json!({"mode": "invite"})
    );
    let r = s.register("alice");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("invite_required"))
    );
    let (ok, code) = admin(&s.db, &["invite", "--uses", "1", "--expires", "7d"], "");
    assert!(ok, "{code}");
    let with = |name: &str, code: &str| {
        s.post_json(
            "/register",
            &json!({"username": name, "password": PASSWORD, "invite": code}),
        )
    };
    assert_eq!(with("alice", &code).status, 201);
    let r = with("bob", &code);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("invalid_invite")),
        "used up"
    );
    assert_eq!(with("bob", "made-up").status, 403);
    // Admins make codes over the API too.
    let boss = s.login("alice");
    s.grant_admin("alice", &boss);
    let r = s.http(
        "POST",
        "/admin/invites",
        Some(&boss),
        Some(r#"{"uses":2,"expires_days":1}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(with("bob", &code).status, 201);
    assert_eq!(with("carol", &code).status, 201);
    assert_eq!(with("dave", &code).status, 403);
}

#[test]
fn closed_registration_and_accounts_made_by_an_admin() {
    let s = TestServer::start(&["--registration", "closed"]);
    let r = s.register("alice");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("registration_closed"))
    );
    let (ok, out) = admin(&s.db, &["add-user", "carol"], "carols-password\n");
    assert!(ok, "{out}");
    // The running server picks the account up within a second or so.
    let t0 = std::time::Instant::now();
    loop {
        let r = s.post_json(
            "/login",
            &json!({"username": "carol", "password": "carols-password"}),
        );
        if r.status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{}",
            r.body
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (ok, _) = admin(&s.db, &["add-user", "CAROL"], "another-password\n");
    assert!(!ok, "names are unique regardless of case");
}

#[test]
fn a_deleted_account_is_gone_and_its_messages_stay_as_placeholders() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db, &[]);
    let alice = s.user("alice");
    let bob = s.user("bob");
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let said = a.request(
        json!({"type": "send", "room": "general", "text": "bye all"}),
        "1",
    );
    let dm = a.request(json!({"type": "dm", "to": "bob", "text": "just you"}), "2");
    assert_eq!(dm["type"], "message", "{dm}");
    let dm_room = dm["room"].as_str().unwrap().to_string();
    b.request(json!({"type": "dm", "to": "alice", "text": "reply"}), "3");
    let r = s.http(
        "DELETE",
        "/account",
        Some(&alice),
        Some(r#"{"password":"wrong-password"}"#),
    );
    assert_eq!(r.status, 403);
    let body = json!({"password": PASSWORD}).to_string();
    let r = s.http("DELETE", "/account", Some(&alice), Some(&body));
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(a.close_code(), Some(4001));
    let login = s.post_json(
        "/login",
        &json!({"username": "alice", "password": PASSWORD}),
    );
    assert_eq!(login.status, 401);
    let check = |s: &TestServer| {
        let h = s
            .http("GET", "/rooms/general/messages", Some(&bob), None)
            .json();
        let m = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == said["id"])
            .unwrap()
            .clone();
        assert_eq!(
            (
                m["user"].as_str(),
                m["text"].as_str(),
                m["deleted"].as_bool()
            ),
            (Some("deleted user"), Some(""), Some(true)),
            "{m}"
        );
        // The conversation stays for bob, with his own words.
        let path = format!("/rooms/{}/messages", dm_room.replace(':', "%3A"));
        let h = s.http("GET", &path, Some(&bob), None).json();
        let texts: Vec<&str> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, vec!["", "reply"], "{h}");
        let r = s.register("alice");
        assert_eq!(r.status, 409, "the name is held for a while: {}", r.body);
        let r = s.http("POST", "/rooms/general/messages", Some(&bob), None);
        assert_ne!(r.status, 500);
    };
    check(&s);
    let dm_again = b.request(json!({"type": "dm", "to": "alice", "text": "hello?"}), "4");
    assert_eq!(
        dm_again["code"], "bad_request",
        "nobody to write to: {dm_again}"
    );
    drop(b);
    // Memory said what the disk says.
    s.terminate();
    let s = TestServer::start_with_db(&db, &[]);
    let bob = s.login("bob");
    let check2 = |bob: &str| {
        let h = s
            .http("GET", "/rooms/general/messages", Some(bob), None)
            .json();
        let m = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == said["id"])
            .unwrap()
            .clone();
        assert_eq!(m["user"], "deleted user");
        assert_eq!(s.register("alice").status, 409);
    };
    check2(&bob);
}

/// Reads a whole chunked HTTP response from `s`, `pause` after the head (a slow reader).
fn read_chunked(s: &mut std::net::TcpStream, pause: std::time::Duration) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    std::thread::sleep(pause);
    s.read_to_end(&mut raw).unwrap();
    let mut body = Vec::new();
    let mut rest = &raw[head_end..];
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
    (head, body)
}

#[test]
fn an_export_streams_every_message_even_to_a_slow_reader() {
    let s = TestServer::start(&[
        "--msg-rate",
        "100000",
        "--msg-burst",
        "100000",
        "--ws-frame-rate",
        "100000",
        "--ws-frame-burst",
        "100000",
    ]);
    let token = s.user("alice");
    let mut c = s.ws(&token);
    // About 10 MB of messages: more than a connection may have queued (4 MiB), so only
    // an export that waits for the reader gets through whole.
    let n = 3000;
    let filler = "x".repeat(3500);
    for batch in 0..n / 100 {
        // Read the echoes every 100 messages, or this sender is the slow consumer.
        for i in batch * 100..batch * 100 + 99 {
            c.send(json!({"type": "send", "room": "general", "text": format!("{i} {filler}")}));
        }
        let i = batch * 100 + 99;
        let r = c.request(
            json!({"type": "send", "room": "general", "text": format!("{i} {filler}")}),
            &i.to_string(),
        );
        assert_eq!(r["type"], "message");
    }
    let last = c.request(
        json!({"type": "send", "room": "general", "text": "the end"}),
        "end",
    );
    assert_eq!(last["type"], "message");
    let mut sock = common::raw::connect_with_rcvbuf(s.addr, 4096).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let req =
        format!("GET /account/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    sock.write_all(req.as_bytes()).unwrap();
    let (head, body) = read_chunked(&mut sock, std::time::Duration::from_secs(2));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let doc: Value = serde_json::from_slice(&body).expect("one JSON document");
    assert_eq!(doc["user"]["username"], "alice");
    let msgs = doc["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), n + 1);
    assert_eq!(msgs[n]["text"], "the end");
    assert!(msgs
        .windows(2)
        .all(|p| p[0]["id"].as_i64() < p[1]["id"].as_i64()));
}
