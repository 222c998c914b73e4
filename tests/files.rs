//! Shared files over real sockets: upload, attach, download (ranges too), access rules,
//! limits, quotas, timeouts and cleanup, against the real binary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `n` bytes of printable text, so that a body compares exactly as a string.
fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i as u8).wrapping_add(seed) % 26))
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

fn upload_head(token: &str, name: &str, ctype: &str, len: usize) -> String {
    format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: {ctype}\r\nX-Filename: {name}\r\nContent-Length: {len}\r\n\r\n"
    )
}

fn upload(s: &TestServer, token: &str, name: &str, ctype: &str, body: &[u8]) -> Resp {
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    t.write_all(upload_head(token, name, ctype, body.len()).as_bytes())
        .unwrap();
    // A refusal may come (and the server stop reading) before the body is all sent.
    let _ = t.write_all(body);
    read_response(&mut t)
}

fn get(s: &TestServer, path: &str, token: Option<&str>, extra: &str) -> Resp {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n");
    raw(s.addr, req.as_bytes())
}

fn send_files(c: &mut Client, room: &str, text: &str, ids: &[&str], r: &str) -> Value {
    c.request(
        json!({"type": "send", "room": room, "text": text, "attachments": ids}),
        r,
    )
}

fn files_dir(s: &TestServer) -> std::path::PathBuf {
    s.files_dir.clone()
}

#[test]
fn a_file_is_uploaded_attached_and_downloaded_whole_or_in_part() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let bob = s.user("bob");
    let body = content(300_000, 1);
    let r = upload(&s, &alice, "Q3%20report.pdf", "application/pdf", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let f = r.json();
    assert_eq!(
        (f["name"].as_str(), f["size"].as_u64(), f["type"].as_str()),
        (
            Some("Q3 report.pdf"),
            Some(300_000),
            Some("application/pdf")
        )
    );
    assert_eq!(f["sha256"], sha256_hex(&body));
    let id = f["id"].as_str().unwrap().to_string();
    // Not yet posted anywhere: only its uploader may fetch it.
    assert_eq!(get(&s, &format!("/files/{id}"), Some(&bob), "").status, 403);
    assert_eq!(
        get(&s, &format!("/files/{id}"), Some(&alice), "").status,
        200
    );
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let m = send_files(&mut a, "general", "", &[&id], "s1");
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(m["text"], "");
    assert_eq!(
        m["attachments"],
        json!([{"id": id, "name": "Q3 report.pdf", "size": 300_000, "type": "application/pdf"}])
    );
    let seen = b.recv_type("message");
    assert_eq!(seen["attachments"][0]["id"], id.as_str());
    // A member of the room downloads it: as an attachment, never sniffed, sandboxed.
    let d = get(&s, &format!("/files/{id}"), Some(&bob), "");
    assert_eq!(d.status, 200);
    assert_eq!(d.body.as_bytes(), &body[..]);
    assert_eq!(d.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        d.header("content-disposition"),
        Some("attachment; filename*=UTF-8''Q3%20report.pdf")
    );
    assert_eq!(d.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(d.header("content-security-policy"), Some("sandbox"));
    // With the token in the query, as <img> and links send it.
    let q = get(&s, &format!("/files/{id}?token={bob}"), None, "");
    assert_eq!((q.status, q.body.len()), (200, 300_000));
    // Ranges.
    let part = get(
        &s,
        &format!("/files/{id}"),
        Some(&bob),
        "Range: bytes=100-199\r\n",
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/300000"));
    assert_eq!(part.body.as_bytes(), &body[100..200]);
    let tail = get(
        &s,
        &format!("/files/{id}"),
        Some(&bob),
        "Range: bytes=-10\r\n",
    );
    assert_eq!(tail.body.as_bytes(), &body[body.len() - 10..]);
    let bad = get(
        &s,
        &format!("/files/{id}"),
        Some(&bob),
        "Range: bytes=300000-\r\n",
    );
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */300000"));
    // History carries the attachment too (from memory, and after a restart from disk).
    let h = s
        .http("GET", "/rooms/general/messages", Some(&bob), None)
        .json();
    assert_eq!(h["messages"][0]["attachments"][0]["name"], "Q3 report.pdf");
    assert_eq!(get(&s, "/files/00ff", Some(&bob), "").status, 404);
    assert_eq!(get(&s, &format!("/files/{id}"), None, "").status, 401);
}

#[test]
fn files_of_a_private_room_are_for_its_members_and_html_is_never_inline() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let carol = s.user("carol");
    let eve = s.user("eve");
    let mut a = s.ws(&alice);
    a.request(
        json!({"type": "create_room", "room": "secret", "private": true}),
        "c",
    );
    let png = upload(&s, &alice, "cat.png", "image/png", &content(5000, 2)).json();
    let html = upload(
        &s,
        &alice,
        "page.html",
        "text/html",
        b"<script>alert(1)</script>",
    )
    .json();
    let (png, html) = (png["id"].as_str().unwrap(), html["id"].as_str().unwrap());
    let m = send_files(&mut a, "secret", "look", &[png, html], "s");
    assert_eq!(m["attachments"].as_array().unwrap().len(), 2, "{m}");
    let denied = get(&s, &format!("/files/{png}"), Some(&eve), "");
    assert_eq!(denied.status, 403, "{}", denied.body);
    a.request(
        json!({"type": "invite", "room": "secret", "user": "carol"}),
        "i",
    );
    let mut c = s.ws(&carol);
    c.request(json!({"type": "join", "room": "secret"}), "j");
    let img = get(&s, &format!("/files/{png}"), Some(&carol), "");
    assert_eq!(img.status, 200);
    assert_eq!(img.header("content-type"), Some("image/png"));
    assert_eq!(
        img.header("content-disposition"),
        Some("inline; filename*=UTF-8''cat.png")
    );
    let page = get(&s, &format!("/files/{html}"), Some(&carol), "");
    assert_eq!(
        page.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(page
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment;"));
    // Someone else's file cannot be attached, nor more than ten.
    let mut e = s.ws(&eve);
    let err = e.request(
        json!({"type": "send", "room": "general", "text": "mine", "attachments": [png]}),
        "x",
    );
    assert_eq!(err["code"], "bad_request", "{err}");
    let many: Vec<&str> = vec![png; 11];
    let err = a.request(
        json!({"type": "send", "room": "general", "text": "many", "attachments": many}),
        "y",
    );
    assert_eq!(err["code"], "bad_request", "{err}");
}

#[test]
fn uploads_are_bounded_in_size_rate_quota_and_time() {
    let s = TestServer::start(&[
        "--request-timeout-ms",
        "1500",
        "--user-files-max-bytes",
        "20000000",
        "--uploads-per-minute",
        "3",
    ]);
    let alice = s.user("alice");
    // One byte over the limit is refused from the head alone, before any body is read.
    let rss = s.rss_kib();
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(upload_head(&alice, "big", "application/zip", (10 << 20) + 1).as_bytes())
        .unwrap();
    let r = read_response(&mut t);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"], "payload_too_large");
    // Exactly the limit is fine, and does not grow the server by the file's size.
    let body = content(10 << 20, 3);
    let t0 = Instant::now();
    let r = upload(&s, &alice, "ten.bin", "application/octet-stream", &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let took = t0.elapsed();
    let grown = s.rss_kib().saturating_sub(rss);
    assert!(grown < 6 * 1024, "RSS grew {grown} KiB for a 10 MiB upload");
    eprintln!("10 MiB upload in {took:?}");
    // The quota: 20 MB in all, 10 MiB used.
    let r = upload(
        &s,
        &alice,
        "more.bin",
        "application/octet-stream",
        &content(10 << 20, 4),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (507, Some("quota_exceeded"))
    );
    // The budget: 3 a minute (the 413 was refused before it; the quota refusal counted).
    let r = upload(&s, &alice, "small.txt", "text/plain", b"hi");
    assert_eq!(r.status, 201, "{}", r.body);
    let r = upload(&s, &alice, "small.txt", "text/plain", b"hi");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // A slow uploader that stops midway is timed out, and its partial file goes.
    let s2 = TestServer::start(&["--request-timeout-ms", "1500"]);
    let bob = s2.user("bob");
    let mut t = TcpStream::connect(s2.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t.write_all(upload_head(&bob, "half", "text/plain", 100_000).as_bytes())
        .unwrap();
    t.write_all(&content(50_000, 5)).unwrap();
    let r = read_response(&mut t);
    assert_eq!(r.status, 408, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let parts = std::fs::read_dir(files_dir(&s2))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "part")
            })
            .count();
        if parts == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the partial upload is still there"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same server still takes uploads.
    assert_eq!(
        upload(&s2, &bob, "ok.txt", "text/plain", b"fine").status,
        201
    );
}

#[test]
fn twenty_slow_downloads_of_ten_mib_hold_little_memory_and_deleting_the_message_deletes_the_file() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let body = content(10 << 20, 6);
    let id = upload(&s, &alice, "big.bin", "application/octet-stream", &body).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = s.ws(&alice);
    let m = send_files(&mut a, "general", "big one", &[&id], "s");
    let rss = s.rss_kib();
    let mut readers: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut t = TcpStream::connect(s.addr).unwrap();
            t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                t,
                "GET /files/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\r\n"
            )
            .unwrap();
            t
        })
        .collect();
    // Nobody reads for a while: the server reads from disk only what fits the sockets.
    std::thread::sleep(Duration::from_millis(1500));
    let grown = s.rss_kib().saturating_sub(rss);
    assert!(
        grown < 16 * 1024,
        "20 stalled downloads grew RSS by {grown} KiB"
    );
    for t in &mut readers {
        let r = read_response(t);
        assert_eq!(r.status, 200);
        assert!(r.body.as_bytes() == &body[..], "a download differs");
    }
    // Deleting the message deletes its file (no other message has it).
    a.request(json!({"type": "delete", "id": m["id"]}), "d");
    let deadline = Instant::now() + Duration::from_secs(5);
    // (One byte at a time: a download running when its file goes is cut short.)
    let first_byte = "Range: bytes=0-0\r\n";
    while get(&s, &format!("/files/{id}"), Some(&alice), first_byte).status != 404 {
        assert!(Instant::now() < deadline, "the file outlived its message");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while files_dir(&s).join(&id).exists() {
        assert!(Instant::now() < deadline, "the file is still on disk");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn attachments_survive_a_restart() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let s = TestServer::start_with_db(&db, &[]);
    let alice = s.user("alice");
    let id = upload(&s, &alice, "notes.txt", "text/plain", b"remember").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = s.ws(&alice);
    send_files(&mut a, "general", "notes", &[&id], "s");
    drop(a);
    drop(s);
    let s = TestServer::start_with_db(&db, &[]);
    let bob = s.user("bob");
    let h = s
        .http("GET", "/rooms/general/messages", Some(&bob), None)
        .json();
    assert_eq!(h["messages"][0]["attachments"][0]["id"], id.as_str());
    let d = get(&s, &format!("/files/{id}"), Some(&bob), "");
    assert_eq!((d.status, d.body.as_str()), (200, "remember"));
}

#[test]
fn a_client_that_expects_100_continue_sends_the_body_only_when_told() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = upload_head(&alice, "c.txt", "text/plain", 5)
        .replace("Content-Length", "Expect: 100-continue\r\nContent-Length");
    t.write_all(head.as_bytes()).unwrap();
    let mut got = [0u8; 25];
    std::io::Read::read_exact(&mut t, &mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    t.write_all(b"hello").unwrap();
    let r = read_response(&mut t);
    assert_eq!(r.status, 201, "{}", r.body);
    // Refused from the head: the final answer comes at once, no 100.
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = upload_head("nonsense", "c.txt", "text/plain", 5)
        .replace("Content-Length", "Expect: 100-continue\r\nContent-Length");
    t.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_response(&mut t).status, 401);
}

#[test]
fn a_download_slower_than_the_request_timeout_stalls_nobody() {
    // A download waits on its reader, not on a request clock: past the request timeout
    // the server goes on serving everyone (it once looped on the expired deadline).
    let s = TestServer::start(&["--request-timeout-ms", "300"]);
    let alice = s.user("alice");
    let body = content(8 << 20, 7);
    let id = upload(&s, &alice, "big.bin", "application/octet-stream", &body).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        t,
        "GET /files/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\r\n"
    )
    .unwrap();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(s.http("GET", "/healthz", None, None).status, 200);
    }
    let r = read_response(&mut t);
    assert_eq!((r.status, r.body.len()), (200, 8 << 20));
}

#[test]
fn access_follows_the_messages_and_uploads_cannot_be_held_open() {
    let s = TestServer::start(&["--request-timeout-ms", "1000"]);
    let alice = s.user("alice");
    let bob = s.user("bob");
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    a.request(json!({"type": "create_room", "room": "rx"}), "c1");
    a.request(
        json!({"type": "create_room", "room": "ry", "private": true}),
        "c2",
    );
    b.request(json!({"type": "join", "room": "rx"}), "j");
    let id = upload(&s, &alice, "f.txt", "text/plain", b"shared").json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let in_rx = send_files(&mut a, "rx", "here", &[&id], "s1");
    send_files(&mut a, "ry", "and here", &[&id], "s2");
    assert_eq!(get(&s, &format!("/files/{id}"), Some(&bob), "").status, 200);
    // An edit keeps the files.
    a.request(
        json!({"type": "edit", "id": in_rx["id"], "text": "here!"}),
        "e",
    );
    let h = s.http("GET", "/rooms/rx/messages", Some(&bob), None).json();
    assert_eq!(h["messages"][0]["attachments"][0]["id"], id.as_str(), "{h}");
    // Deleted where bob could see it: the file stays (ry has it) but not for bob.
    a.request(json!({"type": "delete", "id": in_rx["id"]}), "d");
    assert_eq!(get(&s, &format!("/files/{id}"), Some(&bob), "").status, 403);
    assert_eq!(
        get(&s, &format!("/files/{id}"), Some(&alice), "").status,
        200
    );
    // At most four uploads at once per user.
    let heads: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut t = TcpStream::connect(s.addr).unwrap();
            t.write_all(upload_head(&bob, &format!("p{i}"), "text/plain", 100).as_bytes())
                .unwrap();
            t
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = upload(&s, &bob, "fifth", "text/plain", b"x");
    assert_eq!(r.status, 429, "{}", r.body);
    drop(heads);
    // A trickle keeps the request clock from running out, but not the upload's own
    // deadline (the request timeout plus its size at 16 KiB/s: 2 s here).
    std::thread::sleep(Duration::from_millis(300));
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    t.write_all(upload_head(&bob, "slow", "text/plain", 20_000).as_bytes())
        .unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    while t0.elapsed() < Duration::from_secs(6) {
        if t.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(n) = std::io::Read::read(&mut t, &mut buf) {
            got.extend_from_slice(&buf[..n]);
            if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
