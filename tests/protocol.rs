//! Every client request of the protocol, its access rules, and its errors, over real
//! sockets against the real binary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn ids(msgs: &Value) -> Vec<i64> {
    msgs.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// The message with `id` in a list of messages.
fn find_id(msgs: &Value, id: i64) -> Value {
    msgs.as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no message {id} in {msgs}"))
        .clone()
}

fn texts(msgs: &Value) -> Vec<String> {
    msgs.as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

fn send(c: &mut Client, room: &str, text: &str) -> Value {
    let m = c.request(json!({"type": "send", "room": room, "text": text}), "s");
    assert_eq!(m["type"], "message", "{m}");
    m
}

#[test]
fn join_creates_a_public_room_and_leave_leaves_it() {
    let s = TestServer::start(&[]);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let j = a.request(json!({"type": "join", "room": "rust"}), "j1");
    assert_eq!(
        (j["type"].clone(), j["room"].clone()),
        (json!("joined"), json!("rust"))
    );
    assert_eq!(j["members"], json!(["alice"]));
    assert_eq!(j["online"], json!(["alice"]));
    let j = b.request(json!({"type": "join", "room": "rust"}), "j2");
    assert_eq!(j["members"], json!(["alice", "bob"]));
    // alice sees bob come online in the room.
    let p = a.recv_type("presence");
    assert_eq!(
        (p["room"].clone(), p["user"].clone(), p["status"].clone()),
        (json!("rust"), json!("bob"), json!("online"))
    );
    send(&mut a, "rust", "hi rust");
    assert_eq!(b.recv_type("message")["room"], "rust");
    let l = b.request(json!({"type": "leave", "room": "rust"}), "l");
    assert_eq!(
        (l["type"].clone(), l["room"].clone()),
        (json!("left"), json!("rust"))
    );
    let p = a.recv_type("presence");
    assert_eq!(
        (p["user"].clone(), p["status"].clone()),
        (json!("bob"), json!("offline"))
    );
    send(&mut a, "rust", "bob is gone");
    assert!(
        b.try_recv(Duration::from_millis(300)).is_none(),
        "left rooms send nothing"
    );
    let e = b.request(json!({"type": "send", "room": "rust", "text": "x"}), "x");
    assert_eq!(e["code"], "forbidden");
    let e = b.request(json!({"type": "leave", "room": "general"}), "g");
    assert_eq!(e["code"], "bad_request");
    let e = b.request(json!({"type": "join", "room": "Bad Name"}), "b");
    assert_eq!(e["code"], "bad_request");
}

#[test]
fn private_rooms_are_invisible_to_non_members() {
    let s = TestServer::start(&[]);
    let (alice, bob, eve) = (s.user("alice"), s.user("bob"), s.user("eve"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let mut e = s.ws(&eve);
    let j = a.request(
        json!({"type": "create_room", "room": "secret", "private": true}),
        "c",
    );
    assert_eq!(
        (j["type"].clone(), j["private"].clone(), j["owner"].clone()),
        (json!("joined"), json!(true), json!("alice"))
    );
    let dup = a.request(json!({"type": "create_room", "room": "secret"}), "c2");
    assert_eq!(dup["code"], "bad_request");
    let m = send(&mut a, "secret", "the plan");
    let id = m["id"].as_i64().unwrap();
    // eve: no join, no send, no history, no search, not listed.
    assert_eq!(
        e.request(json!({"type": "join", "room": "secret"}), "1")["code"],
        "forbidden"
    );
    assert_eq!(
        e.request(json!({"type": "send", "room": "secret", "text": "hi"}), "2")["code"],
        "forbidden"
    );
    assert_eq!(
        e.request(json!({"type": "history", "room": "secret"}), "3")["code"],
        "forbidden"
    );
    assert_eq!(
        e.request(
            json!({"type": "typing", "room": "secret", "active": true}),
            "4"
        )["code"],
        "forbidden"
    );
    assert_eq!(
        e.request(json!({"type": "seen", "room": "secret", "id": id}), "5")["code"],
        "forbidden"
    );
    assert_eq!(
        e.request(
            json!({"type": "invite", "room": "secret", "user": "eve"}),
            "6"
        )["code"],
        "forbidden"
    );
    let rooms = s.http("GET", "/rooms", Some(&eve), None).json();
    assert!(
        rooms
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "secret"),
        "{rooms}"
    );
    assert_eq!(
        s.http("GET", "/rooms/secret/messages", Some(&eve), None)
            .status,
        403
    );
    let found = s.http("GET", "/search?q=plan", Some(&eve), None).json();
    assert_eq!(found["messages"], json!([]));
    assert_eq!(
        s.http("GET", "/search?q=plan&room=secret", Some(&eve), None)
            .status,
        403
    );
    // Only the owner invites; the invitee's sockets are told.
    let r = a.request(
        json!({"type": "invite", "room": "secret", "user": "bob"}),
        "i",
    );
    assert_eq!(
        (r["type"].clone(), r["user"].clone()),
        (json!("invited"), json!("bob"))
    );
    let inv = b.recv_type("invited");
    assert_eq!(
        (inv["room"].clone(), inv["by"].clone()),
        (json!("secret"), json!("alice"))
    );
    assert_eq!(
        b.request(
            json!({"type": "invite", "room": "secret", "user": "eve"}),
            "i2"
        )["code"],
        "forbidden"
    );
    // Pending until bob accepts it by joining (he could decline instead).
    assert_eq!(
        s.http("GET", "/invitations", Some(&bob), None).json(),
        json!([{"room": "secret", "by": "alice"}])
    );
    assert_eq!(
        s.http("GET", "/rooms/secret/messages", Some(&bob), None)
            .status,
        403
    );
    let j = b.request(json!({"type": "join", "room": "secret"}), "accept");
    assert_eq!(j["members"], json!(["alice", "bob"]));
    send(&mut a, "secret", "welcome bob");
    assert_eq!(b.recv_type("message")["text"], "welcome bob");
    let found = s.http("GET", "/search?q=plan", Some(&bob), None).json();
    assert_eq!(ids(&found["messages"]), vec![id]);
    let rooms = s.http("GET", "/rooms", Some(&bob), None).json();
    let secret = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "secret")
        .unwrap()
        .clone();
    assert_eq!(
        (
            secret["private"].clone(),
            secret["members"].clone(),
            secret["unread"].clone()
        ),
        (json!(true), json!(2), json!(2))
    );
    // eve saw none of it.
    while let Some(m) = e.try_recv(Duration::from_millis(200)) {
        assert_ne!(m["room"], "secret", "leaked: {m}");
    }
}

#[test]
fn direct_messages_reach_the_recipient_without_a_join() {
    let s = TestServer::start(&[]);
    let (alice, bob, eve) = (s.user("alice"), s.user("Bob"), s.user("eve"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let mut e = s.ws(&eve);
    let m = a.request(
        json!({"type": "dm", "to": "bob", "text": "psst", "client_id": "d1"}),
        "d",
    );
    assert_eq!(
        (m["type"].clone(), m["room"].clone()),
        (json!("message"), json!("dm:alice:bob"))
    );
    let got = b.recv_type("message");
    assert_eq!(
        (
            got["room"].clone(),
            got["text"].clone(),
            got["user"].clone()
        ),
        (json!("dm:alice:bob"), json!("psst"), json!("alice"))
    );
    let back = b.request(
        json!({"type": "send", "room": "dm:alice:bob", "text": "hi"}),
        "r",
    );
    assert_eq!(back["type"], "message");
    assert_eq!(a.recv_type("message")["text"], "hi");
    // Someone else's conversation looks exactly like one that does not exist.
    let theirs = e.request(json!({"type": "join", "room": "dm:alice:bob"}), "j");
    let none = e.request(json!({"type": "join", "room": "dm:alice:nobody"}), "j");
    assert_eq!(theirs, none);
    assert_eq!(theirs["code"], "no_such_room");
    assert_eq!(
        a.request(json!({"type": "dm", "to": "nobody", "text": "x"}), "n")["code"],
        "bad_request"
    );
    assert_eq!(
        a.request(json!({"type": "dm", "to": "alice", "text": "x"}), "n")["code"],
        "bad_request"
    );
    // A new socket of bob's gets the conversation in hello, eve's does not.
    let (mut b2, hello) = s.ws_hello(&bob);
    assert_eq!(
        hello["rooms"],
        json!(["general", "dm:alice:bob"]),
        "{hello}"
    );
    let (_, hello) = s.ws_hello(&eve);
    assert_eq!(hello["rooms"], json!(["general"]), "{hello}");
    b2.send(json!({"type": "join", "room": "dm:alice:bob"}));
    let j = b2.recv_type("joined");
    assert_eq!(texts(&j["history"]), vec!["psst", "hi"]);
}

#[test]
fn edit_and_delete_are_for_authors_and_admins() {
    let s = TestServer::start(&[]);
    let (alice, bob, root) = (s.user("alice"), s.user("bob"), s.admin("root"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let mut r = s.ws(&root);
    let id = send(&mut a, "general", "helo wrld")["id"].as_i64().unwrap();
    assert_eq!(
        b.request(json!({"type": "edit", "id": id, "text": "hacked"}), "e1")["code"],
        "forbidden"
    );
    assert_eq!(
        b.request(json!({"type": "delete", "id": id}), "d1")["code"],
        "forbidden"
    );
    assert_eq!(
        a.request(json!({"type": "edit", "id": 9999, "text": "x"}), "e2")["code"],
        "no_such_message"
    );
    let ed = a.request(
        json!({"type": "edit", "id": id, "text": "hello world"}),
        "e3",
    );
    assert_eq!(
        (ed["type"].clone(), ed["text"].clone(), ed["room"].clone()),
        (json!("edited"), json!("hello world"), json!("general"))
    );
    let seen_by_bob = b.recv_type("edited");
    assert_eq!(seen_by_bob["id"], id);
    assert!(seen_by_bob["edited_at"].as_str().unwrap().ends_with('Z'));
    // Search follows the edit.
    assert_eq!(
        ids(&s.http("GET", "/search?q=world", Some(&bob), None).json()["messages"]),
        vec![id]
    );
    assert_eq!(
        s.http("GET", "/search?q=wrld", Some(&bob), None).json()["messages"],
        json!([])
    );
    // History shows the current state.
    let h = b.request(json!({"type": "history", "room": "general"}), "h");
    let m = find_id(&h["messages"], id);
    assert_eq!(
        (m["text"].clone(), m["edited"].clone()),
        (json!("hello world"), json!(true))
    );
    // An admin may delete anyone's message.
    let d = r.request(json!({"type": "delete", "id": id}), "d2");
    assert_eq!(
        (d["type"].clone(), d["id"].clone()),
        (json!("deleted"), json!(id))
    );
    assert_eq!(a.recv_type("deleted")["id"], id);
    let page = s
        .http("GET", "/rooms/general/messages", Some(&alice), None)
        .json();
    let m = find_id(&page["messages"], id);
    assert_eq!(
        (m["text"].clone(), m["deleted"].clone()),
        (json!(""), json!(true))
    );
    assert_eq!(
        s.http("GET", "/search?q=hello", Some(&bob), None).json()["messages"],
        json!([])
    );
    assert_eq!(
        a.request(json!({"type": "edit", "id": id, "text": "back"}), "e4")["code"],
        "no_such_message"
    );
    // Own deletes work too.
    let id2 = send(&mut b, "general", "oops")["id"].as_i64().unwrap();
    assert_eq!(
        b.request(json!({"type": "delete", "id": id2}), "d3")["type"],
        "deleted"
    );
}

#[test]
fn typing_goes_to_others_only_and_is_rate_limited() {
    let s = TestServer::start(&[]);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws(&alice);
    let mut a2 = s.ws(&alice);
    let mut b = s.ws(&bob);
    a.send(json!({"type": "typing", "room": "general", "active": true}));
    let t = b.recv_type("typing");
    assert_eq!(
        (t["user"].clone(), t["active"].clone(), t["room"].clone()),
        (json!("alice"), json!(true), json!("general"))
    );
    a.send(json!({"type": "typing", "room": "general", "active": false}));
    assert_eq!(b.recv_type("typing")["active"], false);
    // Stopping was free: one more start fits in the 2/s, the next does not.
    a.send(json!({"type": "typing", "room": "general", "active": true}));
    assert_eq!(b.recv_type("typing")["active"], true);
    let e = a.request(
        json!({"type": "typing", "room": "general", "active": true}),
        "t3",
    );
    assert_eq!(e["code"], "rate_limited");
    // Of all that alice's other socket got (bob's presence, say), none was her own typing.
    while let Some(m) = a2.try_recv(Duration::from_millis(300)) {
        assert_ne!(m["type"], "typing", "a typist's own sockets got {m}");
    }
}

#[test]
fn presence_is_per_user_not_per_socket() {
    let s = TestServer::start(&[]);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut b = s.ws(&bob);
    let a1 = s.ws(&alice);
    let p = b.recv_type("presence");
    assert_eq!(
        (p["user"].clone(), p["status"].clone()),
        (json!("alice"), json!("online"))
    );
    let a2 = s.ws(&alice);
    drop(a1);
    assert!(
        b.try_recv(Duration::from_millis(500)).is_none(),
        "one socket closing is not offline"
    );
    drop(a2);
    let p = b.recv_type("presence");
    assert_eq!(
        (p["user"].clone(), p["status"].clone()),
        (json!("alice"), json!("offline"))
    );
    assert!(p["last_seen"].as_str().unwrap().ends_with('Z'));
    let j = b.request(json!({"type": "join", "room": "general"}), "j");
    assert_eq!(j["online"], json!(["bob"]));
    assert_eq!(j["last_seen"]["alice"], p["last_seen"]);
    assert_eq!(j["members"], json!(["alice", "bob"]));
}

#[test]
fn seen_moves_the_read_cursor_forward_only() {
    let s = TestServer::start(&[]);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let m1 = send(&mut a, "general", "one")["id"].as_i64().unwrap();
    let m2 = send(&mut a, "general", "two")["id"].as_i64().unwrap();
    let unread = |t: &str| {
        let rooms = s.http("GET", "/rooms", Some(t), None).json();
        rooms
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "general")
            .unwrap()["unread"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(unread(&bob), 2);
    assert_eq!(unread(&alice), 0, "own messages are not unread");
    let r = b.request(json!({"type": "seen", "room": "general", "id": m2}), "s1");
    assert_eq!(
        (r["type"].clone(), r["user"].clone(), r["id"].clone()),
        (json!("seen"), json!("bob"), json!(m2))
    );
    let at_alice = a.recv_type("seen");
    assert_eq!(
        (at_alice["user"].clone(), at_alice["id"].clone()),
        (json!("bob"), json!(m2))
    );
    assert_eq!(unread(&bob), 0);
    let j = a.request(json!({"type": "join", "room": "general"}), "j");
    assert_eq!(j["cursors"]["bob"], m2, "joined carries read cursors");
    let back = b.request(json!({"type": "seen", "room": "general", "id": m1}), "s2");
    assert_eq!(back["id"], m2, "the cursor never moves back");
    assert_eq!(
        b.request(
            json!({"type": "seen", "room": "general", "id": m2 + 100}),
            "s3"
        )["code"],
        "no_such_message"
    );
    assert_eq!(
        b.request(json!({"type": "seen", "room": "nowhere", "id": m1}), "s4")["code"],
        "no_such_room"
    );
}

#[test]
fn history_pages_back_through_everything() {
    let s = TestServer::start(UNBUDGETED);
    let alice = s.user("alice");
    let mut a = s.ws(&alice);
    let mut all = Vec::new();
    for i in 0..120 {
        let m = send(&mut a, "general", &format!("m{i}"));
        // The room's sequence: 1, 2, 3, … with no gaps.
        assert_eq!(m["seq"], json!(i + 1), "{m}");
        all.push(m["id"].as_i64().unwrap());
    }
    // WebSocket history, newest page first, then older.
    let h = a.request(
        json!({"type": "history", "room": "general", "limit": 50}),
        "h1",
    );
    assert_eq!(ids(&h["messages"]), all[70..].to_vec());
    assert_eq!(h["has_more"], true);
    let h = a.request(
        json!({"type": "history", "room": "general", "before": all[70], "limit": 50}),
        "h2",
    );
    assert_eq!(ids(&h["messages"]), all[20..70].to_vec());
    let h = a.request(
        json!({"type": "history", "room": "general", "before": all[20], "limit": 50}),
        "h3",
    );
    assert_eq!(ids(&h["messages"]), all[..20].to_vec());
    assert_eq!(h["has_more"], false);
    // HTTP history: default 50, max 200, oldest first.
    let p = s
        .http(
            "GET",
            &format!("/rooms/general/messages?before={}&limit=7", all[10]),
            Some(&alice),
            None,
        )
        .json();
    assert_eq!(ids(&p["messages"]), all[3..10].to_vec());
    assert_eq!(p["has_more"], true);
    let p = s
        .http(
            "GET",
            "/rooms/general/messages?limit=500",
            Some(&alice),
            None,
        )
        .json();
    assert_eq!(ids(&p["messages"]), all.clone());
    assert_eq!(p["has_more"], false);
    assert_eq!(
        s.http("GET", "/rooms/nowhere/messages", Some(&alice), None)
            .status,
        404
    );
    assert_eq!(
        s.http(
            "GET",
            "/rooms/general/messages?before=x",
            Some(&alice),
            None
        )
        .status,
        400
    );
    assert_eq!(
        s.http("GET", "/rooms/general/messages", None, None).status,
        401
    );
}

#[test]
fn history_past_the_ring_comes_from_the_database() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let alice;
    let mut all = Vec::new();
    {
        let s = TestServer::start_with_db(&db, UNBUDGETED);
        alice = s.user("alice");
        let mut a = s.ws(&alice);
        for i in 0..1100 {
            a.send(json!({"type": "send", "room": "general", "text": format!("m{i}")}));
        }
        for _ in 0..1100 {
            all.push(a.recv_type("message")["id"].as_i64().unwrap());
        }
    }
    let s = TestServer::start_with_db(&db, &[]);
    let mut a = s.ws(&alice);
    let h = a.request(
        json!({"type": "history", "room": "general", "before": all[60], "limit": 50}),
        "h",
    );
    assert_eq!(ids(&h["messages"]), all[10..60].to_vec());
    assert_eq!(h["has_more"], true);
    // Deep reads in flight per socket are bounded: ten at once, four are served.
    for i in 0..10 {
        let req = json!({"type": "history", "room": "general", "before": all[60], "ref": format!("f{i}")});
        a.ws.write(tungstenite::Message::Text(req.to_string().into()))
            .unwrap();
    }
    a.ws.flush().unwrap();
    let (mut served, mut limited) = (0, 0);
    while served + limited < 10 {
        let m = a.recv();
        match m["type"].as_str() {
            Some("history") => served += 1,
            Some("error") if m["code"] == "rate_limited" => limited += 1,
            _ => panic!("neither a page nor rate_limited: {m}"),
        }
    }
    assert_eq!((served, limited), (4, 6));
    // Catch-up from far back: the last 1000, flagged incomplete.
    let j = a.request(
        json!({"type": "join", "room": "general", "since": all[5]}),
        "j",
    );
    assert_eq!(ids(&j["history"]), all[100..].to_vec());
    assert_eq!(j["complete"], false);
}

#[test]
fn catch_up_after_a_reconnect_misses_nothing_and_repeats_nothing() {
    let s = TestServer::start(UNBUDGETED);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let last = send(&mut a, "general", "before")["id"].as_i64().unwrap();
    assert_eq!(b.recv_type("message")["id"], last);
    drop(b);
    let mut sent = Vec::new();
    for i in 0..30 {
        sent.push(
            send(&mut a, "general", &format!("while away {i}"))["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let mut b = s.ws(&bob);
    let j = b.request(
        json!({"type": "join", "room": "general", "since": last}),
        "j",
    );
    assert_eq!(ids(&j["history"]), sent);
    assert_eq!(j["complete"], true);
}

#[test]
fn a_retry_with_the_same_client_id_is_stored_once() {
    let s = TestServer::start(&[]);
    let (alice, bob) = (s.user("alice"), s.user("bob"));
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let req = json!({"type": "send", "room": "general", "text": "once", "client_id": "abc"});
    let first = a.request(req.clone(), "1");
    let again = a.request(req, "2");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["client_id"], "abc");
    assert_eq!(b.recv_type("message")["id"], first["id"]);
    assert!(
        b.try_recv(Duration::from_millis(300)).is_none(),
        "the retry is not broadcast again"
    );
    let p = s
        .http("GET", "/rooms/general/messages", Some(&alice), None)
        .json();
    assert_eq!(p["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn the_21st_send_in_a_second_is_rate_limited_and_not_stored() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let mut a = s.ws(&alice);
    for i in 0..21 {
        a.send(json!({"type": "send", "room": "general", "text": format!("n{i}"), "ref": format!("r{i}")}));
    }
    let mut stored = 0;
    let mut limited = 0;
    for _ in 0..21 {
        let m = a.recv();
        match m["type"].as_str().unwrap() {
            "message" => stored += 1,
            "error" => {
                assert_eq!(m["code"], "rate_limited");
                limited += 1;
            }
            t => panic!("unexpected {t}"),
        }
    }
    assert_eq!((stored, limited), (20, 1));
    let p = s
        .http("GET", "/rooms/general/messages", Some(&alice), None)
        .json();
    assert_eq!(p["messages"].as_array().unwrap().len(), 20);
    // The connection stays usable.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(send(&mut a, "general", "later")["text"], "later");
}

#[test]
fn bad_requests_get_errors_with_their_ref_and_the_socket_stays_open() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let mut a = s.ws(&alice);
    a.send(json!("just a string"));
    assert_eq!(a.recv()["code"], "bad_request");
    a.ws.send(tungstenite::Message::Text("{oops".into()))
        .unwrap();
    assert_eq!(a.recv()["code"], "bad_request");
    let e = a.request(json!({"type": "teleport"}), "t");
    assert_eq!(e["code"], "unknown_type");
    let e = a.request(json!({"type": "send", "room": "general"}), "missing");
    assert_eq!(e["code"], "bad_request");
    let e = a.request(
        json!({"type": "send", "room": "general", "text": "x".repeat(4001)}),
        "long",
    );
    assert_eq!(e["code"], "too_long");
    let e = a.request(
        json!({"type": "send", "room": "general", "text": "   "}),
        "empty",
    );
    assert_eq!(e["code"], "bad_request");
    let e = a.request(
        json!({"type": "send", "room": "nowhere", "text": "x"}),
        "nr",
    );
    assert_eq!(e["code"], "no_such_room");
    let e = a.request(
        json!({"type": "send", "room": "general", "text": "x", "client_id": "c".repeat(65)}),
        "cid",
    );
    assert_eq!(e["code"], "bad_request");
    assert_eq!(
        send(&mut a, "general", &"é".repeat(4000))["type"],
        "message"
    );
}

#[test]
fn search_finds_messages_in_readable_rooms_best_first() {
    let s = TestServer::start(&[]);
    let alice = s.user("alice");
    let mut a = s.ws(&alice);
    send(&mut a, "general", "the quick brown fox");
    send(&mut a, "general", "lazy dogs sleep");
    a.request(json!({"type": "join", "room": "pets"}), "j");
    let fox = send(&mut a, "pets", "a fox and a fox and a fox")["id"].clone();
    let r = s.http("GET", "/search?q=fox", Some(&alice), None).json();
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    assert_eq!(r["messages"][0]["id"], fox, "the closer match ranks first");
    let r = s
        .http("GET", "/search?q=fox&room=general", Some(&alice), None)
        .json();
    assert_eq!(texts(&r["messages"]), vec!["the quick brown fox"]);
    let r = s.http("GET", "/search?q=qui", Some(&alice), None).json();
    assert_eq!(
        r["messages"].as_array().unwrap().len(),
        1,
        "prefix of the last word"
    );
    assert_eq!(s.http("GET", "/search?q=", Some(&alice), None).status, 400);
    assert_eq!(s.http("GET", "/search?q=fox", None, None).status, 401);
    let r = s.http("GET", "/search?q=%22fox%22%20OR%20*", Some(&alice), None);
    assert_eq!(r.status, 200, "query syntax from users is quoted, not run");
}

#[test]
fn admin_stats_are_for_admins() {
    let s = TestServer::start(&[]);
    let (alice, root) = (s.user("alice"), s.admin("root"));
    let mut a = s.ws(&alice);
    send(&mut a, "general", "hello");
    assert_eq!(
        s.http("GET", "/admin/stats", Some(&alice), None).status,
        403
    );
    let st = s.http("GET", "/admin/stats", Some(&root), None);
    assert_eq!(st.status, 200);
    let v = st.json();
    assert_eq!(v["online_users"], json!(["alice"]));
    assert_eq!(v["messages_stored_total"], 1);
    assert!(v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "general" && r["online"] == 1));
}

#[test]
fn reactions_reach_the_room_page_from_disk_and_survive_a_restart() {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    let flags = [
        UNBUDGETED,
        &["--action-rate", "100000", "--action-burst", "100000"],
    ]
    .concat();
    let s = TestServer::start_with_db(&db, &flags);
    let alice = s.user("alice");
    let bob = s.user("bob");
    let mut a = s.ws(&alice);
    let mut b = s.ws(&bob);
    let first = a.request(
        json!({"type": "send", "room": "general", "text": "old"}),
        "m0",
    );
    let first_id = first["id"].as_i64().unwrap();
    assert_eq!(first["reactions"], json!({}));
    b.recv_type("message");
    let r = b.request(
        json!({"type": "react", "id": first_id, "emoji": "👍"}),
        "r0",
    );
    assert_eq!(
        (r["count"].as_i64(), r["user"].as_str()),
        (Some(1), Some("bob"))
    );
    let heard = a.recv_type("reacted");
    assert_eq!(
        (heard["id"].as_i64(), heard["emoji"].as_str()),
        (Some(first_id), Some("👍"))
    );
    // Push the first message out of the ring (1000): its page now comes from disk.
    for i in 0..1010 {
        a.send(json!({"type": "send", "room": "general", "text": format!("m{i}"), "ref": format!("s{i}")}));
    }
    let last = a.request(
        json!({"type": "send", "room": "general", "text": "last"}),
        "last",
    );
    let last_id = last["id"].as_i64().unwrap();
    let path = format!("/rooms/general/messages?before={}&limit=1", first_id + 1);
    let as_bob = s.http("GET", &path, Some(&bob), None).json();
    let old = find_id(&as_bob["messages"], first_id);
    assert_eq!(
        (&old["reactions"], &old["mine"]),
        (&json!({"👍": 1}), &json!(["👍"]))
    );
    let as_alice = s.http("GET", &path, Some(&alice), None).json();
    let old = find_id(&as_alice["messages"], first_id);
    assert_eq!(old["reactions"], json!({"👍": 1}));
    assert!(old.get("mine").is_none(), "{old}");
    // Sixty people react to the last one; who reacted comes in pages of 50.
    let mut names = Vec::new();
    for i in 0..60 {
        let name = format!("fan{i:02}");
        let t = s.user(&name);
        let r = s
            .ws(&t)
            .request(json!({"type": "react", "id": last_id, "emoji": "🎉"}), "f");
        assert_eq!(r["count"], i + 1, "{r}");
        names.push(name);
    }
    let p1 = a.request(
        json!({"type": "reactors", "id": last_id, "emoji": "🎉"}),
        "p1",
    );
    assert_eq!(p1["users"], json!(names[..50]));
    assert_eq!(p1["more"], true);
    let p2 = a.request(
        json!({"type": "reactors", "id": last_id, "emoji": "🎉", "after": names[49]}),
        "p2",
    );
    assert_eq!(
        (p2["users"].clone(), p2["more"].clone()),
        (json!(names[50..]), json!(false))
    );
    drop((a, b));
    drop(s);
    // After a restart the ring is loaded with every reactor, so `joined` marks bob's own.
    let s = TestServer::start_with_db(&db, &flags);
    let mut a = s.ws(&alice);
    let j = a.request(json!({"type": "join", "room": "general"}), "j");
    let m = find_id(&j["history"], last_id);
    assert_eq!(m["reactions"], json!({"🎉": 60}));
    let mut b = s.ws(&bob);
    let r = b.request(
        json!({"type": "react", "id": last_id, "emoji": "🎉"}),
        "again",
    );
    assert_eq!(r["count"], 61);
    let j = b.request(json!({"type": "join", "room": "general"}), "j");
    assert_eq!(find_id(&j["history"], last_id)["mine"], json!(["🎉"]));
}
