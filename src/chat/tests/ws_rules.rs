//! The WebSocket protocol, one or more tests per row of docs/PROTOCOL.md.

use super::World;
use crate::chat::Effect;
use crate::config::MAX_PENDING_READS;
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
        json!({"type": "hello", "user": "alice", "rooms": ["general"], "invitations": []})
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
fn join_creates_a_public_room_and_answers_joined() {
    let mut w = World::new();
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "join", "room": "rust", "ref": "j1"}));
    let joined = World::one(&got, "joined");
    assert_eq!(joined["room"], "rust");
    assert_eq!(joined["ref"], "j1");
    assert_eq!(joined["owner"], "alice");
    assert_eq!(joined["members"], json!(["alice"]));
    assert_eq!(joined["online"], json!(["alice"]));
    assert_eq!(joined["complete"], true);
    assert_eq!(joined["private"], false);
    for bad in ["Rust", "", "a b", "dm:x"] {
        let got = w.ws(a, json!({"type": "join", "room": bad}));
        assert_eq!(
            World::error_code(&got),
            if bad == "dm:x" {
                "no_such_room"
            } else {
                "bad_request"
            },
            "{bad}"
        );
    }
}

#[test]
fn join_history_and_catch_up_since() {
    let mut w = World::new();
    let a = w.socket("alice");
    let ids: Vec<i64> = (0..10)
        .map(|i| {
            w.send(a, "general", &format!("m{i}"))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let b = w.socket("bob");
    let got = w.ws(b, json!({"type": "join", "room": "general"}));
    let history = World::one(&got, "joined")["history"]
        .as_array()
        .unwrap()
        .clone();
    // join_history is 5 in the test config.
    assert_eq!(history.len(), 5);
    assert_eq!(history[4]["id"], ids[9]);
    // Catch-up within the ring is complete...
    let got = w.ws(
        b,
        json!({"type": "join", "room": "general", "since": ids[6]}),
    );
    let j = World::one(&got, "joined");
    assert_eq!(j["history"].as_array().unwrap().len(), 3);
    assert_eq!(j["complete"], true);
    // ...and says so when messages older than the ring (8 here) were missed.
    let got = w.ws(
        b,
        json!({"type": "join", "room": "general", "since": ids[0]}),
    );
    let j = World::one(&got, "joined");
    assert_eq!(j["complete"], false);
    assert_eq!(j["history"][0]["id"], ids[2]);
}

#[test]
fn private_rooms_need_an_invitation_from_the_owner() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let c = w.socket("carol");
    let got = w.ws(
        a,
        json!({"type": "create_room", "room": "secret", "private": true}),
    );
    assert_eq!(World::one(&got, "joined")["private"], true);
    let got = w.ws(a, json!({"type": "create_room", "room": "secret"}));
    assert_eq!(World::error_code(&got), "bad_request");
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "join", "room": "secret"}))),
        "forbidden"
    );
    // Only the owner invites, and only people who exist.
    let got = w.ws(
        c,
        json!({"type": "invite", "room": "secret", "user": "bob"}),
    );
    assert_eq!(World::error_code(&got), "forbidden");
    let got = w.ws(
        a,
        json!({"type": "invite", "room": "secret", "user": "nobody"}),
    );
    assert_eq!(World::error_code(&got), "bad_request");
    let got = w.ws(
        a,
        json!({"type": "invite", "room": "secret", "user": "BOB", "ref": "i"}),
    );
    assert_eq!(World::one(&got, "invited")["ref"], "i");
    let to_bob = w.take(b);
    assert_eq!(World::one(&to_bob, "invited")["by"], "alice");
    // Pending until accepted: not a member yet, and listed in hello and /invitations.
    w.send(a, "secret", "before");
    assert!(w.take(b).is_empty());
    let b2 = w.conn();
    let tb = w.login("bob");
    let fx = w.hub.open_socket(b2, &tb, w.now).unwrap();
    w.run(fx);
    let hello = w.take(b2);
    assert_eq!(
        hello[0]["invitations"],
        json!([{"room": "secret", "by": "alice"}])
    );
    assert_eq!(hello[0]["rooms"], json!(["general"]));
    // Joining accepts: all of bob's sockets hear the room from now on.
    let got = w.ws(b, json!({"type": "join", "room": "secret"}));
    assert_eq!(
        World::one(&got, "joined")["members"],
        json!(["alice", "bob"])
    );
    w.take(b2);
    w.send(a, "secret", "welcome");
    assert_eq!(World::one(&w.take(b2), "message")["text"], "welcome");
    assert!(w.take(c).iter().all(|f| f["room"] != "secret"));
    assert!(w.hub.invitations_json(w.hub.user_by_name("bob").unwrap()) == json!([]));
}

#[test]
fn an_invitation_can_be_declined_and_is_not_a_membership() {
    let mut cfg = super::config();
    cfg.max_memberships = 4;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let b = w.socket("bob");
    for room in ["p1", "p2", "p3"] {
        w.ws(
            a,
            json!({"type": "create_room", "room": room, "private": true}),
        );
        w.ws(a, json!({"type": "invite", "room": room, "user": "bob"}));
    }
    // Three invitations, yet bob (cap 4, in general) is free to join three public rooms.
    for room in ["o1", "o2", "o3"] {
        World::one(&w.ws(b, json!({"type": "join", "room": room})), "joined");
    }
    // Full now: accepting an invitation is refused until he leaves something.
    let got = w.ws(b, json!({"type": "join", "room": "p1"}));
    assert_eq!(World::error_code(&got), "forbidden");
    let got = w.ws(b, json!({"type": "decline", "room": "p1", "ref": "d"}));
    let d = World::one(&got, "declined");
    assert_eq!(
        (d["room"].as_str(), d["ref"].as_str()),
        (Some("p1"), Some("d"))
    );
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "decline", "room": "p1"}))),
        "no_such_room"
    );
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "join", "room": "p1"}))),
        "forbidden"
    );
    World::one(&w.ws(b, json!({"type": "leave", "room": "o1"})), "left");
    World::one(&w.ws(b, json!({"type": "join", "room": "p2"})), "joined");
    let bob = w.hub.user_by_name("bob").unwrap();
    assert_eq!(
        w.hub.invitations_json(bob),
        json!([{"room": "p3", "by": "alice"}])
    );
}

#[test]
fn rooms_owned_are_capped() {
    let mut cfg = super::config();
    cfg.max_rooms_owned = 2;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    World::one(
        &w.ws(a, json!({"type": "create_room", "room": "r1"})),
        "joined",
    );
    World::one(&w.ws(a, json!({"type": "join", "room": "r2"})), "joined");
    let got = w.ws(a, json!({"type": "create_room", "room": "r3"}));
    assert_eq!(World::error_code(&got), "forbidden");
}

#[test]
fn leave_detaches_and_general_cannot_be_left() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.ws(a, json!({"type": "join", "room": "x"}));
    w.ws(b, json!({"type": "join", "room": "x"}));
    w.take(a);
    let got = w.ws(b, json!({"type": "leave", "room": "x", "ref": "l"}));
    assert_eq!(World::one(&got, "left")["ref"], "l");
    // Bob came online in x less than a second ago: his leaving follows at the interval.
    assert!(w.take(a).is_empty());
    w.tick(1000);
    let p = World::one(&w.take(a), "presence").clone();
    assert_eq!(
        (p["user"].as_str(), p["status"].as_str()),
        (Some("bob"), Some("offline"))
    );
    w.send(a, "x", "after");
    assert!(w.take(b).is_empty(), "bob no longer hears the room");
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "leave", "room": "x"}))),
        "forbidden"
    );
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "leave", "room": "general"}))),
        "bad_request"
    );
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "leave", "room": "nope"}))),
        "no_such_room"
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
    assert!(w
        .ws(
            a,
            json!({"type": "typing", "room": "general", "active": true})
        )
        .is_empty());
    assert!(
        w.take(a2).is_empty(),
        "not echoed to the typist's other sockets"
    );
    let t = World::one(&w.take(b), "typing").clone();
    assert_eq!(
        (t["user"].as_str(), t["active"].as_bool()),
        (Some("alice"), Some(true))
    );
    w.ws(
        a,
        json!({"type": "typing", "room": "general", "active": false}),
    );
    let got = w.ws(
        a,
        json!({"type": "typing", "room": "general", "active": true}),
    );
    assert_eq!(World::error_code(&got), "rate_limited");
    // Typing does not spend the message budget.
    w.send(a, "general", "still fine");
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
fn history_pages_from_memory_then_from_a_reader() {
    let mut w = World::new();
    let a = w.socket("alice");
    let ids: Vec<i64> = (0..12)
        .map(|i| {
            w.send(a, "general", &format!("m{i}"))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let got = w.ws(
        a,
        json!({"type": "history", "room": "general", "limit": 3, "ref": "h"}),
    );
    let h = World::one(&got, "history");
    assert_eq!(h["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        (h["has_more"].as_bool(), h["ref"].as_str()),
        (Some(true), Some("h"))
    );
    // Older than the ring (8 here): a reader answers, with the same shape.
    let fx = w.hub.handle_ws(
        a,
        &json!({"type": "history", "room": "general", "before": ids[3], "limit": 2}).to_string(),
        w.now,
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Read(_))));
    w.run(fx);
    let h = World::one(&w.take(a), "history").clone();
    let got: Vec<i64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[1], ids[2]]);
    assert_eq!(h["has_more"], true);
    // A public room can be read without joining; a private one cannot.
    let b = w.socket("bob");
    w.ws(
        a,
        json!({"type": "create_room", "room": "priv", "private": true}),
    );
    w.ws(a, json!({"type": "join", "room": "pub"}));
    World::one(
        &w.ws(b, json!({"type": "history", "room": "pub"})),
        "history",
    );
    assert_eq!(
        World::error_code(&w.ws(b, json!({"type": "history", "room": "priv"}))),
        "forbidden"
    );
}

#[test]
fn deep_history_reads_in_flight_are_bounded_per_socket() {
    let mut w = World::new();
    let a = w.socket("alice");
    for i in 0..12 {
        w.send(a, "general", &format!("m{i}"));
    }
    let req = json!({"type": "history", "room": "general", "before": 2}).to_string();
    for _ in 0..MAX_PENDING_READS {
        let fx = w.hub.handle_ws(a, &req, w.now);
        assert!(matches!(fx[..], [Effect::Read(_)]), "{fx:?}");
    }
    let fx = w.hub.handle_ws(a, &req, w.now);
    w.run(fx);
    assert_eq!(World::error_code(&w.take(a)), "rate_limited");
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
    w.take(a);
    w.hub.begin_shutdown();
    let fx = w.hub.socket_closed(b, w.now);
    w.run(fx);
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
fn replies_are_bounded_by_their_encoded_size() {
    let mut cfg = super::config();
    cfg.ring_size = 100;
    cfg.join_history = 100;
    cfg.msg_burst = 100.0;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let b = w.socket("bob");
    // 4,000 control characters are 24,000 bytes of JSON each.
    let nasty = "\u{1}".repeat(4000);
    for _ in 0..50 {
        w.send(a, "general", &nasty);
    }
    for req in [
        json!({"type": "join", "room": "general"}),
        json!({"type": "join", "room": "general", "since": 0}),
        json!({"type": "history", "room": "general", "limit": 200}),
        json!({"type": "history", "room": "general", "after": 0, "limit": 200}),
    ] {
        let got = w.ws(b, req.clone());
        let size = got.iter().map(|v| v.to_string().len()).max().unwrap();
        assert!(
            size <= crate::config::REPLY_MAX_BYTES + 4096,
            "{req}: {size} bytes"
        );
        assert!(size > 100_000, "{req}: still a useful page ({size} bytes)");
    }
    let got = w.ws(b, json!({"type": "join", "room": "general", "since": 0}));
    let j = World::one(&got, "joined");
    assert_eq!(j["complete"], false);
    let last = j["history"].as_array().unwrap().last().unwrap()["id"].clone();
    assert_eq!(
        j["continue_after"], last,
        "continue after the last one sent"
    );
}

#[test]
fn a_catch_up_past_the_ring_says_where_to_continue() {
    let mut w = World::new();
    let a = w.socket("alice");
    for i in 0..12 {
        w.send(a, "general", &format!("m{i}"));
    }
    let got = w.ws(a, json!({"type": "join", "room": "general", "since": 1}));
    let j = World::one(&got, "joined");
    assert_eq!(
        (j["complete"].as_bool(), j["continue_after"].as_i64()),
        (Some(false), Some(1))
    );
    let got = w.ws(a, json!({"type": "join", "room": "general", "since": 10}));
    let j = World::one(&got, "joined");
    assert_eq!(j["complete"], true);
    assert!(j.get("continue_after").is_none());
}

#[test]
fn joining_a_new_room_counts_as_creating_it() {
    let mut cfg = super::config();
    cfg.max_rooms_owned = 1;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    World::one(&w.ws(a, json!({"type": "join", "room": "one"})), "joined");
    let got = w.ws(a, json!({"type": "join", "room": "two"}));
    assert_eq!(World::error_code(&got), "forbidden");
}

#[test]
fn direct_conversations_do_not_fill_anyones_rooms() {
    let mut cfg = super::config();
    cfg.max_memberships = 2;
    let mut w = World::with_config(cfg);
    let b = w.socket("bob");
    for i in 0..3 {
        let s = w.socket(&format!("spammer{i}"));
        World::one(
            &w.ws(s, json!({"type": "dm", "to": "bob", "text": "hi"})),
            "message",
        );
    }
    // Bob is in general and three DMs, yet may still join one room of his choice.
    World::one(&w.ws(b, json!({"type": "join", "room": "mine"})), "joined");
}

#[test]
fn leaving_tells_every_socket_and_owners_may_come_back() {
    let mut w = World::new();
    let a1 = w.socket("alice");
    let a2 = w.socket("alice");
    w.ws(
        a1,
        json!({"type": "create_room", "room": "den", "private": true}),
    );
    w.take(a2);
    let got = w.ws(a1, json!({"type": "leave", "room": "den", "ref": "l"}));
    assert_eq!(
        got,
        vec![json!({"type": "left", "room": "den", "ref": "l"})]
    );
    assert_eq!(w.take(a2), vec![json!({"type": "left", "room": "den"})]);
    // The owner needs no invitation to her own room.
    World::one(&w.ws(a1, json!({"type": "join", "room": "den"})), "joined");
}

#[test]
fn member_pages_say_more_only_when_there_is_more() {
    let mut cfg = super::config();
    cfg.auth_per_minute = 1000.0;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let names: Vec<String> = (0..crate::config::MEMBERS_PAGE - 1)
        .map(|i| format!("user{i:03}"))
        .collect();
    for n in &names {
        w.register(n);
    }
    // alice + 99 others = exactly one page.
    let got = w.ws(a, json!({"type": "members", "room": "general"}));
    let m = World::one(&got, "members");
    assert_eq!(
        m["members"].as_array().unwrap().len(),
        crate::config::MEMBERS_PAGE
    );
    assert_eq!(m["more"], false);
    w.register("zz-last");
    let got = w.ws(a, json!({"type": "members", "room": "general"}));
    let m = World::one(&got, "members").clone();
    assert_eq!(m["more"], true);
    let last = m["members"][crate::config::MEMBERS_PAGE - 1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let got = w.ws(
        a,
        json!({"type": "members", "room": "general", "after": last}),
    );
    let m = World::one(&got, "members");
    assert_eq!(
        m["members"],
        json!([{"name": "zz-last", "online": false, "cursor": 0, "last_seen": null}])
    );
    assert_eq!(m["more"], false);
}
