//! Cluster mode over real sockets: three `chatterbox` processes sharing one database and
//! a throwaway Redis (`--bus`), clients on different nodes chatting, and the per-room
//! order and catch-up holding while every node writes at once.

mod common;

use common::redis::Redis;
use common::{TempDir, TestServer, UNBUDGETED};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `n` nodes on one database file, all on the bus.
fn cluster(n: usize, redis: &Redis, dir: &TempDir) -> Vec<TestServer> {
    cluster_with(n, redis, dir, &[])
}

fn cluster_with(n: usize, redis: &Redis, dir: &TempDir, extra: &[&str]) -> Vec<TestServer> {
    let db = dir.0.join("chat.db");
    let url = redis.url();
    (1..=n)
        .map(|i| {
            let name = format!("node{i}");
            let mut args = vec!["--bus", url.as_str(), "--node", name.as_str()];
            args.extend_from_slice(UNBUDGETED);
            args.extend_from_slice(extra);
            TestServer::start_with_db(&db, &args)
        })
        .collect()
}

/// Logs in on `node` once it has heard of the account (registered on another node).
fn login_when_known(node: &TestServer, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = node.post_json(
            "/login",
            &json!({"username": name, "password": common::PASSWORD}),
        );
        if r.status == 200 {
            return r.json()["token"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{name} unknown to a node: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages of `room` from the senders in `from`, in arrival order, until `n` came.
fn collect(c: &mut common::Client, room: &str, n: usize) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        if Instant::now() >= deadline {
            let mut seqs: Vec<i64> = got.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
            seqs.sort();
            let missing: Vec<i64> = (1..=n as i64)
                .filter(|s| seqs.binary_search(s).is_err())
                .collect();
            panic!(
                "{} of {n} messages; missing seqs {missing:?}; last {:?}",
                got.len(),
                got.last()
            );
        }
        if let Some(v) = c.try_recv(Duration::from_secs(1)) {
            assert_ne!(v["type"], "error", "{v}");
            if v["type"] == "message" && v["room"] == room {
                got.push(v);
            }
        }
    }
    got
}

#[test]
fn users_on_three_nodes_chat_in_a_room_in_dms_and_a_private_room_stays_private() {
    let redis = Redis::start();
    let dir = TempDir::new();
    let nodes = cluster(3, &redis, &dir);
    let alice = nodes[0].user("alice");
    let bob = nodes[1].user("bob");
    let carol = nodes[2].user("carol");
    // Everyone's account reaches every node; log in on another node than the one that
    // registered it, then chat on a third.
    login_when_known(&nodes[2], "alice");
    login_when_known(&nodes[0], "bob");
    login_when_known(&nodes[0], "carol");
    login_when_known(&nodes[1], "carol");
    let mut a = nodes[0].ws(&alice);
    let mut b = nodes[1].ws(&bob);
    let mut c = nodes[2].ws(&carol);

    let sent = a.request(
        json!({"type": "send", "room": "general", "text": "hello from node 1"}),
        "s1",
    );
    assert_eq!(sent["type"], "message", "{sent}");
    for other in [&mut b, &mut c] {
        let m = other.recv_type("message");
        assert_eq!(
            (&m["id"], &m["seq"], &m["user"], &m["text"]),
            (
                &sent["id"],
                &sent["seq"],
                &json!("alice"),
                &json!("hello from node 1")
            )
        );
    }

    // A DM from node 2 to node 3: the conversation is created on one node and exists on
    // every one; only the two of them get it.
    let dm = b.request(
        json!({"type": "dm", "to": "carol", "text": "just between us"}),
        "d1",
    );
    assert_eq!(dm["type"], "message", "{dm}");
    let got = c.recv_type("message");
    assert_eq!(
        (&got["id"], &got["text"]),
        (&dm["id"], &json!("just between us"))
    );
    let reply = c.request(
        json!({"type": "send", "room": got["room"], "text": "ok"}),
        "d2",
    );
    assert_eq!(b.recv_type("message")["id"], reply["id"]);

    // A private room created on node 2: carol, on node 3, neither sees nor joins it.
    let made = b.request(
        json!({"type": "create_room", "room": "ops", "private": true}),
        "p1",
    );
    assert_eq!(made["type"], "joined", "{made}");
    b.request(
        json!({"type": "send", "room": "ops", "text": "secret plan"}),
        "p2",
    );
    let refused = c.request(json!({"type": "join", "room": "ops"}), "p3");
    assert_eq!(refused["type"], "error", "{refused}");
    let page = nodes[2].http("GET", "/rooms/ops/messages", Some(&carol), None);
    assert!(page.status == 403 || page.status == 404, "{}", page.body);
    // Everything carol's node delivers later is general's, never ops'.
    a.request(
        json!({"type": "send", "room": "general", "text": "after"}),
        "s2",
    );
    let next = c.recv_type("message");
    assert_eq!(
        (&next["room"], &next["text"]),
        (&json!("general"), &json!("after"))
    );
    // Invited from node 2, carol (node 3) hears of it, joins, and reads the room; alice
    // (node 1, not invited) still cannot.
    let inv = b.request(
        json!({"type": "invite", "room": "ops", "user": "carol"}),
        "i1",
    );
    assert_eq!(inv["type"], "invited", "{inv}");
    let heard = c.recv_type("invited");
    assert_eq!(
        (&heard["room"], &heard["by"]),
        (&json!("ops"), &json!("bob"))
    );
    let j = c.request(json!({"type": "join", "room": "ops"}), "i2");
    assert_eq!(j["type"], "joined", "{j}");
    let history: Vec<&Value> = j["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["text"])
        .collect();
    assert_eq!(history, [&json!("secret plan")]);
    let no = a.request(json!({"type": "join", "room": "ops"}), "i3");
    assert_eq!(no["type"], "error", "{no}");
    b.request(
        json!({"type": "send", "room": "ops", "text": "welcome"}),
        "i4",
    );
    let w = c.recv_type("message");
    assert_eq!((&w["room"], &w["text"]), (&json!("ops"), &json!("welcome")));

    // Edits and reactions cross too.
    let edited = a.request(
        json!({"type": "edit", "id": sent["id"], "text": "hello (edited)"}),
        "e1",
    );
    assert_eq!(edited["type"], "edited", "{edited}");
    let e = c.recv_type("edited");
    assert_eq!(
        (&e["id"], &e["text"]),
        (&sent["id"], &json!("hello (edited)"))
    );
    c.request(
        json!({"type": "react", "id": sent["id"], "emoji": "👍", "on": true}),
        "r1",
    );
    let r = b.recv_type("reacted");
    assert_eq!(
        (&r["id"], &r["count"], &r["user"]),
        (&sent["id"], &json!(1), &json!("carol"))
    );

    // Typing on node 1 shows on node 3.
    a.send(json!({"type": "typing", "room": "general", "active": true}));
    let t = c.recv_type("typing");
    assert_eq!((&t["user"], &t["active"]), (&json!("alice"), &json!(true)));

    // A file shared on node 1 is downloaded through node 3.
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut up = std::net::TcpStream::connect(nodes[0].addr).unwrap();
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/octet-stream\r\nX-Filename: data.bin\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    std::io::Write::write_all(&mut up, head.as_bytes()).unwrap();
    std::io::Write::write_all(&mut up, &body).unwrap();
    let r = common::read_response(&mut up);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let m = a.request(
        json!({"type": "send", "room": "general", "text": "", "attachments": [id]}),
        "f1",
    );
    assert_eq!(m["type"], "message", "{m}");
    let got = c.recv_type("message");
    assert_eq!(got["attachments"][0]["id"], id.as_str(), "{got}");
    let req =
        format!("GET /files/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {carol}\r\n\r\n");
    let mut down = std::net::TcpStream::connect(nodes[2].addr).unwrap();
    std::io::Write::write_all(&mut down, req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    down.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 65536];
    loop {
        let n = std::io::Read::read(&mut down, &mut buf).unwrap();
        raw.extend_from_slice(&buf[..n]);
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        if n == 0 || end.is_some_and(|e| raw.len() >= e + 4 + body.len()) {
            break;
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw[..end])
    );
    assert_eq!(&raw[end + 4..], &body[..]);
}

#[test]
fn senders_on_every_node_at_once_give_one_order_and_exact_catch_up_anywhere() {
    const EACH: usize = 100;
    let redis = Redis::start();
    let dir = TempDir::new();
    let nodes = cluster(3, &redis, &dir);
    let names = ["sender1", "sender2", "sender3"];
    let tokens: Vec<String> = names
        .iter()
        .zip(&nodes)
        .map(|(n, node)| node.user(n))
        .collect();
    let reader = nodes[0].user("reader");
    for (i, node) in nodes.iter().enumerate() {
        for n in names.iter().chain(["reader"].iter()) {
            if names.get(i) != Some(n) {
                login_when_known(node, n);
            }
        }
    }
    // A reader on every node, connected before anyone sends.
    let reader_tokens: Vec<String> = nodes
        .iter()
        .map(|n| login_when_known(n, "reader"))
        .collect();
    let mut readers: Vec<_> = nodes
        .iter()
        .zip(&reader_tokens)
        .map(|(n, t)| n.ws(t))
        .collect();
    let _ = reader;
    // Every sender writes as fast as it can on its own node, not waiting for answers.
    // All connected before anyone starts, so every socket is there for message 1.
    let sockets: Vec<_> = nodes.iter().zip(&tokens).map(|(n, t)| n.ws(t)).collect();
    let senders: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::spawn(move || {
                for k in 0..EACH {
                    s.send(json!({"type": "send", "room": "general", "text": format!("{i}:{k}")}));
                }
                let mine = collect(&mut s, "general", 3 * EACH);
                mine.iter()
                    .filter(|m| m["user"] == format!("sender{}", i + 1))
                    .count()
            })
        })
        .collect();
    let seen: Vec<Vec<Value>> = readers
        .iter_mut()
        .map(|r| collect(r, "general", 3 * EACH))
        .collect();
    for s in senders {
        assert_eq!(
            s.join().unwrap(),
            EACH,
            "each sender sees its own messages once"
        );
    }
    let ids = |v: &Vec<Value>| {
        v.iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let first = ids(&seen[0]);
    for (i, s) in seen.iter().enumerate() {
        // One order everywhere, numbered 1, 2, 3, … without a gap.
        assert_eq!(ids(s), first, "node {} saw another order", i + 1);
        let seqs: Vec<i64> = s.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=(3 * EACH) as i64).collect::<Vec<_>>());
        // Per sender, its own order.
        let mut last: HashMap<String, usize> = HashMap::new();
        for m in s {
            let (who, k) = m["text"].as_str().unwrap().split_once(':').unwrap();
            let k: usize = k.parse().unwrap();
            if let Some(prev) = last.insert(who.to_string(), k) {
                assert!(k > prev, "{who}'s messages out of order");
            }
        }
    }
    // A client that saw up to some message reconnects to any other node: exactly the
    // rest, none missing, none twice.
    for (at, node) in [(3 * EACH - 40, 1), (3 * EACH - 7, 2), (3 * EACH - 1, 0)] {
        let since = first[at - 1];
        let token = &reader_tokens[node];
        let mut again = nodes[node].ws(token);
        let j = again.request(
            json!({"type": "join", "room": "general", "since": since}),
            "j",
        );
        assert_eq!(j["complete"], true, "{j}");
        let got: Vec<i64> = j["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, first[at..].to_vec(), "catch-up on node {}", node + 1);
    }
}

/// Reads `room`'s messages until `want` distinct seqs came or `quiet` passes with
/// nothing; checks every socket saw one gap-free order with nothing twice.
fn collect_in_order(c: &mut common::Client, room: &str, want: usize) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want && Instant::now() < deadline {
        if let Some(v) = c.try_recv(Duration::from_secs(1)) {
            if v["type"] == "message" && v["room"] == room {
                let seq = v["seq"].as_i64().unwrap();
                assert_eq!(seq, got.len() as i64 + 1, "seq {seq} after {}", got.len());
                got.push(v);
            }
        }
    }
    got
}

/// One sender writing `total` messages with client ids, acknowledged one by one; when
/// its node dies it goes on at `fallback` and retries what was not acknowledged (the
/// client id makes a retry of a stored message answer the first copy).
fn send_through(
    node: &TestServer,
    name: &str,
    token: &str,
    total: usize,
    on_half: impl FnOnce(),
    fallback: &TestServer,
) -> Vec<i64> {
    let mut c = node.ws(token);
    let mut acked = Vec::new();
    let mut on_half = Some(on_half);
    let mut moved = false;
    let mut k = 0;
    while k < total {
        if k == total / 2 {
            if let Some(f) = on_half.take() {
                f();
            }
        }
        let req = json!({"type": "send", "room": "general", "text": format!("m{k}"),
                         "client_id": format!("c{k}"), "ref": format!("r{k}")});
        c.send(req.clone());
        // The answer, or the socket gone with its node: reconnect elsewhere, retry.
        let answer = loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.try_recv(Duration::from_secs(5))
            })) {
                Ok(Some(v)) if v["ref"] == req["ref"] => break Some(v),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break None,
            }
        };
        match answer {
            Some(v) if v["type"] == "message" => {
                acked.push(v["id"].as_i64().unwrap());
                k += 1;
            }
            Some(v) if v["code"] == "overloaded" || v["code"] == "rate_limited" => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => {
                assert!(!moved, "no answer after moving: {other:?}");
                moved = true;
                let t = login_when_known(fallback, name);
                c = fallback.ws(&t);
            }
        }
    }
    assert!(
        moved,
        "the sender's node died under it and it went on elsewhere"
    );
    acked
}

#[test]
fn a_node_killed_mid_stream_loses_nothing_acknowledged_and_clients_catch_up_elsewhere() {
    const TOTAL: usize = 200;
    let redis = Redis::start();
    let dir = TempDir::new();
    let mut nodes = cluster(3, &redis, &dir);
    let writer = nodes[2].user("writer");
    let watcher = nodes[0].user("watcher");
    let w2 = login_when_known(&nodes[1], "watcher");
    login_when_known(&nodes[0], "writer");
    let mut on_1 = nodes[0].ws(&watcher);
    let mut on_2 = nodes[1].ws(&w2);
    // A reader on the node that dies, to reconnect elsewhere with `since`.
    let w3 = login_when_known(&nodes[2], "watcher");
    let mut on_3 = nodes[2].ws(&w3);
    let pid = nodes[2].pid();
    let (first, rest) = nodes.split_at_mut(2);
    let acked = send_through(
        &rest[0],
        "writer",
        &writer,
        TOTAL,
        || unsafe {
            libc::kill(pid, libc::SIGKILL);
        },
        &first[0],
    );
    rest[0].kill();
    assert_eq!(acked.len(), TOTAL);
    // Readers on the nodes that lived saw every message once, in one gap-free order.
    let seen1 = collect_in_order(&mut on_1, "general", TOTAL);
    let seen2 = collect_in_order(&mut on_2, "general", TOTAL);
    let ids = |v: &[Value]| {
        v.iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&seen1),
        acked,
        "node 1 saw every acknowledged message once, in order"
    );
    assert_eq!(ids(&seen2), acked);
    // The reader whose node died: what it saw, then the rest from another node.
    let mut before: Vec<Value> = Vec::new();
    while let Ok(Some(v)) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        on_3.try_recv(Duration::from_millis(200))
    })) {
        if v["type"] == "message" {
            before.push(v);
        }
    }
    let since = before.last().map_or(0, |m| m["id"].as_i64().unwrap());
    let t = login_when_known(&first[1], "watcher");
    let mut again = first[1].ws(&t);
    let j = again.request(
        json!({"type": "join", "room": "general", "since": since}),
        "j",
    );
    let mut after: Vec<i64> = ids(j["history"].as_array().unwrap());
    let mut last = after.last().copied().unwrap_or(since);
    while j["complete"] != true && after.len() + before.len() < TOTAL {
        let h = again.request(
            json!({"type": "history", "room": "general", "after": last, "limit": 100}),
            "h",
        );
        let page = ids(h["messages"].as_array().unwrap());
        if page.is_empty() {
            break;
        }
        last = *page.last().unwrap();
        after.extend(page);
    }
    let mut whole = ids(&before);
    whole.extend(after);
    assert_eq!(
        whole, acked,
        "what it saw plus the catch-up: everything, once"
    );
}

#[test]
fn a_redis_restart_mid_stream_loses_nothing_and_nodes_fill_the_gap() {
    const TOTAL: usize = 120;
    let mut redis = Redis::start();
    let port = redis.port;
    let dir = TempDir::new();
    let nodes = cluster(2, &redis, &dir);
    let writer = nodes[0].user("writer");
    let reader = nodes[1].user("reader");
    let mut r = nodes[1].ws(&reader);
    let mut w = nodes[0].ws(&writer);
    let mut acked = Vec::new();
    for k in 0..TOTAL {
        if k == TOTAL / 3 {
            redis.kill();
        }
        if k == 2 * TOTAL / 3 {
            redis = Redis::start_on(port);
        }
        let m = w.request(
            json!({"type": "send", "room": "general", "text": format!("m{k}")}),
            &format!("r{k}"),
        );
        assert_eq!(m["type"], "message", "{m}");
        acked.push(m["id"].as_i64().unwrap());
    }
    let seen = collect_in_order(&mut r, "general", TOTAL);
    let ids: Vec<i64> = seen.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids, acked,
        "the reader's node filled the outage from the database"
    );
    drop(redis);
}

/// A socket on `node` with a token issued by another node, once the token has reached it.
fn ws_when_known(node: &TestServer, token: &str) -> common::Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match node.try_ws(token) {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "token unknown to the node: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn presence(c: &mut common::Client, user: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(v) = c.try_recv(Duration::from_millis(100)) {
            if v["type"] == "presence" && v["user"] == user {
                return Some(v["status"].as_str().unwrap().to_string());
            }
        }
    }
    None
}

#[test]
fn presence_and_logout_cross_nodes_and_a_killed_nodes_users_go_offline() {
    let redis = Redis::start();
    let dir = TempDir::new();
    let flags = ["--node-heartbeat-ms", "200", "--node-timeout-ms", "1500"];
    let mut nodes = cluster_with(3, &redis, &dir, &flags);
    let bob = nodes[0].user("bob");
    let alice = nodes[0].user("alice");
    let mut b = nodes[0].ws(&bob);
    // Alice comes online on node 2: bob, on node 1, hears it.
    let alice_2 = login_when_known(&nodes[1], "alice");
    let _a2 = nodes[1].ws(&alice_2);
    assert_eq!(
        presence(&mut b, "alice", Duration::from_secs(3)).as_deref(),
        Some("online")
    );
    // Logging out on node 1 closes that session's socket on node 3 within a second.
    let mut a3 = ws_when_known(&nodes[2], &alice);
    let t0 = Instant::now();
    let r = nodes[0].http("POST", "/logout", Some(&alice), None);
    assert_eq!(r.status, 204);
    assert_eq!(a3.close_code(), Some(4001));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // An admin asks any node for the whole cluster: every node, named, with its sockets.
    let root = nodes[0].admin("root");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = nodes[0]
            .http("GET", "/admin/stats?scope=cluster", Some(&root), None)
            .json();
        let names: Vec<&str> = s["cluster"]["nodes"]
            .as_array()
            .map(|n| n.iter().map(|n| n["node"].as_str().unwrap()).collect())
            .unwrap_or_default();
        if names.len() == 3 {
            assert_eq!(s["node"], "node1");
            assert_eq!(names, ["node1", "node2", "node3"], "{s}");
            assert!(s["cluster"]["websockets"].as_u64().unwrap() >= 2, "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Node 2 dies with alice's socket on it: she goes offline on node 1 once node 2 has
    // been silent for the timeout (20 s by default; 1.5 s here).
    let t0 = Instant::now();
    nodes[1].kill();
    assert_eq!(
        presence(&mut b, "alice", Duration::from_secs(5)).as_deref(),
        Some("offline")
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "not before the timeout: {took:?}"
    );
}

#[test]
fn register_on_one_node_log_in_on_another_and_open_a_socket_on_a_third_at_once() {
    let redis = Redis::start();
    let dir = TempDir::new();
    let nodes = cluster(3, &redis, &dir);
    // Twenty times, with no pause: register on node 1, log in on node 2, then use the
    // token on node 3, by HTTP and by WebSocket (alternately first). An account or token
    // a node has not heard of yet is looked up in the database before it is refused.
    for i in 0..20 {
        let name = format!("quick{i}");
        assert_eq!(nodes[0].register(&name).status, 201);
        let token = nodes[1].login(&name);
        let http = |i: usize| {
            let r = nodes[2].http("GET", "/rooms", Some(&token), None);
            assert_eq!(r.status, 200, "round {i}: {}", r.body);
        };
        if i % 2 == 0 {
            http(i);
        }
        let (_c, hello) = nodes[2]
            .try_ws_hello(&token)
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        assert_eq!(hello["user"], name.as_str());
        http(i);
    }
    // A token nobody issued is still refused, after its look-up.
    let r = nodes[2].http("GET", "/rooms", Some(&"f".repeat(64)), None);
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn a_node_that_heard_nothing_finds_a_new_token_in_the_database() {
    let redis = Redis::start();
    let dir = TempDir::new();
    let nodes = cluster(1, &redis, &dir);
    // The same database under another cluster name: it hears none of node 1's events, so
    // only the database can tell it about the account and the token.
    let url = redis.url();
    let mut args = vec![
        "--bus",
        url.as_str(),
        "--node",
        "deaf",
        "--cluster",
        "elsewhere",
    ];
    args.extend_from_slice(UNBUDGETED);
    let deaf = TestServer::start_with_db(&dir.0.join("chat.db"), &args);
    assert_eq!(nodes[0].register("late").status, 201);
    let token = nodes[0].login("late");
    let r = deaf.http("GET", "/rooms", Some(&token), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let (_c, hello) = deaf.try_ws_hello(&token).unwrap();
    assert_eq!(hello["user"], "late");
    // An upload too, with a body longer than the read-ahead that waits for the look-up.
    let token = nodes[0].login("late");
    let body = vec![b'x'; 300_000];
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nX-Filename: big.bin\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let r = common::raw(deaf.addr, &[head.as_bytes(), &body].concat());
    assert_eq!(r.status, 201, "{}", r.body);
    let r = deaf.http("GET", "/rooms", Some(&"f".repeat(64)), None);
    assert_eq!(r.status, 401, "{}", r.body);
}

#[test]
fn a_users_budget_holds_across_nodes() {
    let redis = Redis::start();
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let url = redis.url();
    // A small budget (burst 10, one more a second), so what a burst gets is clear.
    let nodes: Vec<TestServer> = (1..=3)
        .map(|i| {
            let name = format!("node{i}");
            TestServer::start_with_db(
                &db,
                &[
                    "--bus",
                    &url,
                    "--node",
                    &name,
                    "--msg-rate",
                    "1",
                    "--msg-burst",
                    "10",
                ],
            )
        })
        .collect();
    nodes[0].user("spread");
    nodes[0].user("single");
    let tokens: Vec<String> = nodes
        .iter()
        .map(|n| login_when_known(n, "spread"))
        .collect();
    let mut sockets: Vec<_> = nodes.iter().zip(&tokens).map(|(n, t)| n.ws(t)).collect();
    // Every node has heard that the others have her sockets.
    std::thread::sleep(Duration::from_millis(500));
    let burst = |c: &mut common::Client, tag: &str| {
        for k in 0..30 {
            c.send(
                json!({"type": "send", "room": "general", "text": "x", "ref": format!("{tag}{k}")}),
            );
        }
        let mut ok = 0;
        let mut answered = 0;
        while answered < 30 {
            let v = c.recv();
            if v["ref"].as_str().is_some_and(|r| r.starts_with(tag)) {
                answered += 1;
                if v["type"] == "message" {
                    ok += 1;
                }
            }
        }
        ok
    };
    let total: usize = sockets
        .iter_mut()
        .enumerate()
        .map(|(i, c)| burst(c, &format!("s{i}-")))
        .sum();
    assert!(
        (13..=17).contains(&total),
        "1.5 budgets over 3 nodes, got {total}"
    );
    let mut one = nodes[1].ws(&login_when_known(&nodes[1], "single"));
    let alone = burst(&mut one, "one-");
    assert!(
        (10..=11).contains(&alone),
        "a whole budget on one node, got {alone}"
    );
}

#[test]
fn a_logout_lost_with_the_bus_still_ends_the_session_on_other_nodes() {
    let mut redis = Redis::start();
    let port = redis.port;
    let dir = TempDir::new();
    let mut nodes = cluster(2, &redis, &dir);
    let alice = nodes[0].user("alice");
    let mut on_2 = ws_when_known(&nodes[1], &alice);
    // Redis goes down; alice logs out on node 1, which then dies before Redis is back:
    // its event is lost for good. Node 2 learns it from the database once the bus is back.
    redis.kill();
    assert_eq!(
        nodes[0].http("POST", "/logout", Some(&alice), None).status,
        204
    );
    nodes[0].kill();
    redis = Redis::start_on(port);
    assert_eq!(on_2.close_code(), Some(4001));
    let r = nodes[1].http("GET", "/rooms", Some(&alice), None);
    assert_eq!(r.status, 401, "{}", r.body);
    drop(redis);
}
