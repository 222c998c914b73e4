//! The WebSocket protocol, one or more tests per row of docs/PROTOCOL.md.

use super::World;
use serde_json::json;

#[test]
fn hello_names_the_users_rooms_and_bad_tokens_are_refused() {
    let mut w = World::new();
    let token = w.login("alice");
    let c = w.conn();
    let fx = w.hub.open_socket(c, &token, w.now).unwrap();
    w.run(fx);
    let got = w.take(c);
    assert_eq!(
        got[0],
        json!({"type": "hello", "user": "alice", "rooms": ["general"], "invitations": [],
               "max_file_bytes": 10 << 20})
    );
    let c2 = w.conn();
    assert_eq!(
        w.hub.open_socket(c2, "nonsense", w.now).unwrap_err().status,
        401
    );
    // Expired: the token is valid for the configured lifetime only.
    w.advance(w.hub.cfg.token_ttl.as_millis() as u64 + 1);
    assert_eq!(
        w.hub.open_socket(c2, &token, w.now).unwrap_err().status,
        401
    );
}

#[test]
fn send_is_stored_then_broadcast_with_the_ref_to_the_sender() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "  hi  ", "ref": "s1"}),
    );
    let m = World::one(&got, "message");
    assert_eq!(
        (m["text"].as_str(), m["ref"].as_str()),
        (Some("hi"), Some("s1"))
    );
    assert_eq!(m["user"], "alice");
    let to_b = w.take(b);
    assert!(
        World::one(&to_b, "message").get("ref").is_none(),
        "others get no ref"
    );
    assert_eq!(w.hub.stats.messages_stored, 1);
    // What is refused is not stored.
    let max = w.hub.cfg.max_text_chars;
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "send", "room": "general", "text": " "}))),
        "bad_request"
    );
    let long = "é".repeat(max + 1);
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "send", "room": "general", "text": long}))),
        "too_long"
    );
    let exact = "é".repeat(max);
    w.send(a, "general", &exact);
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "send", "room": "nope", "text": "x"}))),
        "no_such_room"
    );
    w.ws(a, json!({"type": "join", "room": "mine"}));
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "send", "room": "mine", "text": "x"}))),
        "forbidden"
    );
    assert_eq!(w.hub.stats.messages_stored, 2);
}

#[test]
fn a_retried_client_id_is_stored_once() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let send = json!({"type": "send", "room": "general", "text": "once", "client_id": "c-1"});
    let first = World::one(&w.ws(a, send.clone()), "message").clone();
    w.take(b);
    let again = World::one(&w.ws(a, send), "message").clone();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["client_id"], "c-1");
    assert!(w.take(b).is_empty(), "a retry is not broadcast again");
    assert_eq!(w.hub.stats.messages_stored, 1);
    let bad = json!({"type": "send", "room": "general", "text": "x", "client_id": "x".repeat(65)});
    assert_eq!(World::error_code(&w.ws(a, bad)), "bad_request");
    let ok = json!({"type": "send", "room": "general", "text": "x", "client_id": "x".repeat(64)});
    World::one(&w.ws(a, ok), "message");
}

#[test]
fn chat_actions_are_budgeted_per_user() {
    let mut w = World::new();
    let a = w.socket("alice");
    let a2 = w.socket("alice");
    let burst = w.hub.cfg.msg_burst as usize;
    for i in 0..burst {
        // Two sockets of one user share one budget.
        let c = if i % 2 == 0 { a } else { a2 };
        w.take(a);
        w.take(a2);
        World::one(
            &w.ws(c, json!({"type": "send", "room": "general", "text": "x"})),
            "message",
        );
    }
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "x", "ref": "r"}),
    );
    let e = World::one(&got, "error");
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("rate_limited"), Some("r"))
    );
    // 10/s: the next token is 100 ms away.
    assert_eq!(e["message"], "slow down; try again in 101 ms");
    assert_eq!(w.hub.stats.rate_limited, 1);
    w.advance(100);
    World::one(
        &w.ws(a, json!({"type": "send", "room": "general", "text": "x"})),
        "message",
    );
    // Another user's budget is untouched.
    let b = w.socket("bob");
    World::one(
        &w.ws(b, json!({"type": "send", "room": "general", "text": "x"})),
        "message",
    );
}

#[test]
fn dm_creates_the_pair_room_and_reaches_the_peer() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let c = w.socket("carol");
    let got = w.ws(
        a,
        json!({"type": "dm", "to": "Bob", "text": "psst", "ref": "d"}),
    );
    let m = World::one(&got, "message");
    assert_eq!(
        (m["room"].as_str(), m["ref"].as_str()),
        (Some("dm:alice:bob"), Some("d"))
    );
    assert_eq!(World::one(&w.take(b), "message")["text"], "psst");
    assert!(w.take(c).is_empty());
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "dm", "to": "alice", "text": "me"}))),
        "bad_request"
    );
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "dm", "to": "nobody", "text": "x"}))),
        "bad_request"
    );
    // Someone else's conversation answers exactly as one that does not exist.
    let theirs = w.ws(c, json!({"type": "join", "room": "dm:alice:bob"}));
    let none = w.ws(c, json!({"type": "join", "room": "dm:alice:zed"}));
    assert_eq!(theirs, none);
    assert_eq!(World::error_code(&theirs), "no_such_room");
    let theirs = w.ws(c, json!({"type": "history", "room": "dm:alice:bob"}));
    let none = w.ws(c, json!({"type": "history", "room": "dm:alice:zed"}));
    assert_eq!(theirs, none);
    // Bob answers in the same room.
    assert_eq!(w.send(b, "dm:alice:bob", "hi")["room"], "dm:alice:bob");
}

#[test]
fn edit_and_delete_by_the_author_are_broadcast() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let id = w.send(a, "general", "first")["id"].as_i64().unwrap();
    w.take(b);
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "edit", "id": id, "text": "mine now"}))),
        "forbidden"
    );
    let got = w.ws(
        a,
        json!({"type": "edit", "id": id, "text": "fixed", "ref": "e"}),
    );
    let e = World::one(&got, "edited");
    assert_eq!(
        (e["text"].as_str(), e["ref"].as_str()),
        (Some("fixed"), Some("e"))
    );
    assert_eq!(World::one(&w.take(b), "edited")["id"], id);
    // The ring holds the edit: a later join shows it.
    let c = w.socket("carol");
    let got = w.ws(c, json!({"type": "join", "room": "general"}));
    assert_eq!(World::one(&got, "joined")["history"][0]["edited"], true);
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "delete", "id": id}))),
        "forbidden"
    );
    World::one(&w.ws(a, json!({"type": "delete", "id": id})), "deleted");
    assert_eq!(World::one(&w.take(b), "deleted")["room"], "general");
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "delete", "id": id}))),
        "no_such_message"
    );
    assert_eq!(
        World::error_code(&w.ws(a, json!({"type": "edit", "id": 999, "text": "x"}))),
        "no_such_message"
    );
}

#[test]
fn admins_delete_anyones_message() {
    let mut w = World::new();
    let a = w.socket("alice");
    let boss = w.socket("boss");
    // Rights come from the account's flag in the database, as the watcher reports it.
    w.make_admin("boss");
    let id = w.send(a, "general", "oops")["id"].as_i64().unwrap();
    World::one(&w.ws(boss, json!({"type": "delete", "id": id})), "deleted");
    let e = w.hub.audit.back().unwrap();
    assert_eq!(
        (e.action.as_str(), e.target.clone()),
        ("delete_message", format!("message {id} by alice"))
    );
    // Deleting one's own message is not moderation.
    let own = w.send(boss, "general", "mine")["id"].as_i64().unwrap();
    w.ws(boss, json!({"type": "delete", "id": own}));
    let deletions = w.hub.audit.iter().filter(|e| e.action == "delete_message");
    assert_eq!(deletions.count(), 1);
}

#[test]
fn typing_reaches_others_only_and_has_its_own_budget() {
    let mut w = World::new();
    let a = w.socket("alice");
    let a2 = w.socket("alice");
    let b = w.socket("bob");
    w.take(a);
    w.take(a2);
    assert!(w.ws(a, typing("general", true)).is_empty());
    assert!(
        w.take(a2).is_empty(),
        "not echoed to the typist's other sockets"
    );
    let t = World::one(&w.take(b), "typing").clone();
    assert_eq!(
        (t["user"].as_str(), t["active"].as_bool()),
        (Some("alice"), Some(true))
    );
    // Two starts a second (stopping in between is free); the third is refused.
    w.ws(a, typing("general", false));
    w.ws(a, typing("general", true));
    w.ws(a, typing("general", false));
    let got = w.ws(a, typing("general", true));
    assert_eq!(World::error_code(&got), "rate_limited");
    // Typing does not spend the message budget.
    w.send(a, "general", "still fine");
}

fn typing(room: &str, active: bool) -> serde_json::Value {
    json!({"type": "typing", "room": room, "active": active, "ref": "t"})
}

/// The typing notices `conn` was sent since the last take, as (user, active).
fn typing_seen(w: &mut World, conn: crate::id::ConnId) -> Vec<(String, bool)> {
    w.take(conn)
        .iter()
        .filter(|f| f["type"] == "typing")
        .map(|f| {
            (
                f["user"].as_str().unwrap().to_string(),
                f["active"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Issue 14 item 4: typing, sending, and typing again at once showed nothing, because
/// the client's "stopped typing" after the send used the last of the typing budget.
#[test]
fn typing_right_after_sending_is_shown() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.take(a);
    assert!(w.ws(a, typing("general", true)).is_empty());
    w.send(a, "general", "first");
    // The stored message ended the typing: the client's `false` tells nobody anything.
    assert!(w.ws(a, typing("general", false)).is_empty());
    let got = w.take(b);
    assert_eq!(
        got.iter()
            .map(|f| f["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["typing", "message"],
        "no stop after the message: {got:?}"
    );
    // Within the same second, typing again is shown.
    assert!(w.ws(a, typing("general", true)).is_empty());
    assert_eq!(typing_seen(&mut w, b), [("alice".into(), true)]);
}

/// `false` after `true` is free and said once; `false` when not typing is dropped.
#[test]
fn stopping_typing_costs_nothing_and_is_said_once() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.take(a);
    // Nothing to stop: dropped, nothing broadcast, however often.
    for _ in 0..50 {
        assert!(w.ws(a, typing("general", false)).is_empty());
    }
    assert!(typing_seen(&mut w, b).is_empty());
    // The budget spent on starting (2 a second)...
    w.ws(a, typing("general", true));
    w.ws(a, typing("general", true));
    assert_eq!(
        World::error_code(&w.ws(a, typing("general", true))),
        "rate_limited"
    );
    // ...still lets the stop through, once.
    assert!(w.ws(a, typing("general", false)).is_empty());
    assert!(w.ws(a, typing("general", false)).is_empty());
    assert_eq!(
        typing_seen(&mut w, b),
        [
            ("alice".into(), true),
            ("alice".into(), true),
            ("alice".into(), false)
        ]
    );
    assert!(w.hub.typing.is_empty());
}

/// The state lives only while the user has a socket in the room: the last one leaving
/// (disconnect or `leave`) clears it and tells the others typing stopped.
#[test]
fn typing_ends_when_the_typist_leaves_or_disconnects() {
    let mut w = World::new();
    let a1 = w.socket("alice");
    let a2 = w.socket("alice");
    let b = w.socket("bob");
    w.ws(a1, typing("general", true));
    let fx = w.hub.socket_closed(a1, w.now);
    w.run(fx);
    assert_eq!(typing_seen(&mut w, b), [("alice".into(), true)]);
    assert_eq!(w.hub.typing.len(), 1, "alice is still there on a2");
    let fx = w.hub.socket_closed(a2, w.now);
    w.run(fx);
    assert_eq!(typing_seen(&mut w, b), [("alice".into(), false)]);
    assert!(w.hub.typing.is_empty());

    let c = w.socket("carol");
    w.ws(c, json!({"type": "join", "room": "x"}));
    w.ws(b, json!({"type": "join", "room": "x"}));
    w.take(b);
    w.advance(1000);
    w.ws(c, typing("x", true));
    w.ws(c, typing("general", true));
    assert_eq!(w.hub.typing.len(), 2);
    w.ws(c, json!({"type": "leave", "room": "x"}));
    let got: Vec<_> = w
        .take(b)
        .into_iter()
        .filter(|f| f["type"] == "typing")
        .map(|f| (f["room"].clone(), f["active"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("x"), json!(true)),
            (json!("general"), json!(true)),
            (json!("x"), json!(false))
        ]
    );
    assert_eq!(w.hub.typing.len(), 1, "still typing in general");
    // A direct message ends typing in its conversation too.
    w.ws(c, json!({"type": "dm", "to": "bob", "text": "psst"}));
    w.advance(1000);
    w.ws(c, typing("dm:bob:carol", true));
    assert_eq!(w.hub.typing.len(), 2);
    w.ws(c, json!({"type": "dm", "to": "bob", "text": "again"}));
    assert_eq!(w.hub.typing.len(), 1);
}

/// Typing in rooms one is not in, or for rooms that do not exist, keeps nothing.
#[test]
fn typing_state_does_not_grow_with_hostile_input() {
    let mut w = World::new();
    let a = w.socket("alice");
    for i in 0..200 {
        let room = format!("r{i}");
        let got = w.ws(a, typing(&room, i % 2 == 0));
        if i % 2 == 0 {
            assert_eq!(World::error_code(&got), "no_such_room");
        }
        w.advance(600);
    }
    assert!(w.hub.typing.is_empty());
    // Many starts in one room: one entry.
    for _ in 0..20 {
        w.ws(a, typing("general", true));
        w.advance(600);
    }
    assert_eq!(w.hub.typing.len(), 1);
}

#[test]
fn seen_moves_the_cursor_forward_only() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m1 = w.send(a, "general", "one")["id"].as_i64().unwrap();
    let m2 = w.send(a, "general", "two")["id"].as_i64().unwrap();
    w.take(b);
    let got = w.ws(
        b,
        json!({"type": "seen", "room": "general", "id": m2, "ref": "s"}),
    );
    assert_eq!(World::one(&got, "seen")["ref"], "s");
    let s = World::one(&w.take(a), "seen").clone();
    assert_eq!(
        (s["user"].as_str(), s["id"].as_i64()),
        (Some("bob"), Some(m2))
    );
    // Back is refused quietly: the answer carries the cursor as it is.
    let got = w.ws(b, json!({"type": "seen", "room": "general", "id": m1}));
    assert_eq!(World::one(&got, "seen")["id"], m2);
    assert!(w.take(a).is_empty());
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "seen", "room": "general", "id": 999}))),
        "no_such_message"
    );
    let got = w.ws(a, json!({"type": "join", "room": "general"}));
    assert_eq!(World::one(&got, "joined")["cursors"]["bob"], m2);
}

#[test]
fn presence_counts_sockets_per_user() {
    let mut w = World::new();
    let b = w.socket("bob");
    let a1 = w.socket("alice");
    let p = World::one(&w.take(b), "presence").clone();
    assert_eq!(
        (p["user"].as_str(), p["status"].as_str()),
        (Some("alice"), Some("online"))
    );
    let a2 = w.socket("alice");
    assert!(w.take(b).is_empty(), "a second socket is not news");
    let fx = w.hub.socket_closed(a1, w.now);
    w.run(fx);
    assert!(w.take(b).is_empty(), "alice is still online on a2");
    w.advance(5000);
    let fx = w.hub.socket_closed(a2, w.now);
    w.run(fx);
    let p = World::one(&w.take(b), "presence").clone();
    assert_eq!(p["status"], "offline");
    assert_eq!(p["last_seen"], crate::time::rfc3339_ms(w.now.wall_ms));
    assert!(w
        .writes
        .iter()
        .any(|op| matches!(op, crate::store::StoreOp::SetLastSeen { .. })));
    // Closing twice changes nothing.
    let fx = w.hub.socket_closed(a2, w.now);
    assert!(fx.is_empty());
    let got = w.ws(b, json!({"type": "join", "room": "general"}));
    let j = World::one(&got, "joined");
    assert_eq!(j["online"], json!(["bob"]));
    assert!(j["last_seen"]["alice"].is_string());
}

#[test]
fn no_presence_while_shutting_down() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let c = w.socket("carol");
    // Long enough online that going offline is announced at once, not coalesced.
    w.advance(5000);
    w.take(a);
    let fx = w.hub.socket_closed(c, w.now);
    w.run(fx);
    assert_eq!(World::one(&w.take(a), "presence")["status"], "offline");
    w.hub.begin_shutdown();
    let fx = w.hub.socket_closed(b, w.now);
    w.run(fx);
    w.tick(60_000);
    assert!(w.take(a).is_empty());
}

#[test]
fn bad_frames_get_errors_with_their_ref() {
    let mut w = World::new();
    let a = w.socket("alice");
    let fx = w.hub.handle_ws(a, "not json", w.now);
    w.run(fx);
    assert_eq!(World::error_code(&w.take(a)), "bad_request");
    let got = w.ws(a, json!({"type": "fly", "ref": "f"}));
    let e = World::one(&got, "error");
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unknown_type"), Some("f"))
    );
    let got = w.ws(a, json!({"type": "send", "room": 5, "ref": "g"}));
    assert_eq!(World::one(&got, "error")["ref"], "g");
}

#[test]
fn an_expired_token_ends_the_socket_at_its_next_action() {
    let mut w = World::new();
    let a = w.socket("alice");
    w.advance(w.hub.cfg.token_ttl.as_millis() as u64 + 1);
    assert!(!w.hub.socket_token_valid(a, w.now));
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "late"}),
    );
    assert!(got.is_empty());
    assert_eq!(w.closed, vec![(a, 4001)]);
    assert_eq!(w.hub.stats.messages_stored, 0);
}

#[test]
fn storage_failure_is_reported_and_nothing_is_broadcast() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.storage_ok = false;
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "lost?", "ref": "x"}),
    );
    let e = World::one(&got, "error");
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("overloaded"), Some("x"))
    );
    assert!(w.take(b).is_empty());
}

#[test]
fn audience_skips_the_excepted_conn_and_user() {
    let mut w = World::new();
    let a1 = w.socket("alice");
    let a2 = w.socket("alice");
    let b = w.socket("bob");
    let all: Vec<crate::id::ConnId> = w.hub.audience(1, crate::chat::Except::Nobody).collect();
    assert_eq!(all.len(), 3);
    let not_a1: Vec<crate::id::ConnId> = w.hub.audience(1, crate::chat::Except::Conn(a1)).collect();
    assert!(!not_a1.contains(&a1) && not_a1.contains(&a2) && not_a1.contains(&b));
    let uid = w.hub.user_by_name("alice").unwrap();
    let not_alice: Vec<crate::id::ConnId> =
        w.hub.audience(1, crate::chat::Except::User(uid)).collect();
    assert_eq!(not_alice, vec![b]);
    assert_eq!(w.hub.audience(99, crate::chat::Except::Nobody).count(), 0);
}
