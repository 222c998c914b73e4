//! Rooms from a member's side: join and catch-up, private rooms and invitations, leave,
//! caps, members and history pages, bounded replies.

use super::World;
use crate::chat::Effect;
use crate::config::MAX_PENDING_READS;
use serde_json::json;

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

#[test]
fn joined_says_whether_older_history_exists_and_rooms_can_be_looked_up() {
    let mut w = World::new();
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "join", "room": "quiet"}));
    assert_eq!(World::one(&got, "joined")["has_more"], false);
    // join_history is 5 in the test config: five messages are all there is...
    for i in 0..5 {
        w.send(a, "quiet", &format!("m{i}"));
    }
    let got = w.ws(a, json!({"type": "join", "room": "quiet"}));
    assert_eq!(World::one(&got, "joined")["has_more"], false);
    // ...and a sixth leaves one out.
    w.send(a, "quiet", "m5");
    let got = w.ws(a, json!({"type": "join", "room": "quiet"}));
    assert_eq!(World::one(&got, "joined")["has_more"], true);
    let token = w.login("bob");
    let info = |w: &mut World, name: &str| {
        let path = format!("/rooms/{name}");
        let route = crate::http::Route::RoomInfo { room: name.into() };
        w.http(route, "GET", &path, Some(&token), serde_json::Value::Null)
    };
    let (s, v) = info(&mut w, "quiet");
    assert_eq!(
        (s, &v["exists"], &v["member"], &v["members"]),
        (200, &json!(true), &json!(false), &json!(1))
    );
    assert_eq!(info(&mut w, "nothing-here").0, 404);
    w.ws(
        a,
        json!({"type": "create_room", "room": "secret", "private": true}),
    );
    let (s, v) = info(&mut w, "secret");
    assert_eq!((s, &v["private"]), (200, &json!(true)));
    assert!(
        v.get("members").is_none(),
        "no counts for a private room one is not in"
    );
    let c = w.socket("carol");
    w.ws(c, json!({"type": "dm", "to": "alice", "text": "hi"}));
    assert_eq!(
        info(&mut w, "dm:alice:carol").0,
        404,
        "someone else's conversation"
    );
}

#[test]
fn a_history_page_from_memory_says_more_only_when_there_is_more() {
    let mut cfg = super::config();
    cfg.ring_size = 100;
    cfg.msg_burst = 100.0;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    for i in 0..3 {
        w.send(a, "general", &format!("m{i}"));
    }
    let mut page = |req: serde_json::Value| {
        let got = w.ws(a, req);
        let v = World::one(&got, "history").clone();
        (
            v["messages"].as_array().unwrap().len(),
            v["has_more"].clone(),
        )
    };
    let all = page(json!({"type": "history", "room": "general"}));
    assert_eq!(all, (3, json!(false)));
    let two = page(json!({"type": "history", "room": "general", "limit": 2}));
    assert_eq!(two, (2, json!(true)));
    let forward = page(json!({"type": "history", "room": "general", "after": 0}));
    assert_eq!(forward, (3, json!(false)));
    // Cut to the reply budget: ten of these fit (24,200 bytes each), so there is more.
    let nasty = "\u{1}".repeat(4000);
    for _ in 0..11 {
        w.send(a, "general", &nasty);
    }
    let mut page = |req: serde_json::Value| {
        let got = w.ws(a, req);
        let v = World::one(&got, "history").clone();
        (
            v["messages"].as_array().unwrap().len(),
            v["has_more"].clone(),
        )
    };
    // The whole ring is one page, but not one reply.
    let cut = page(json!({"type": "history", "room": "general"}));
    assert_eq!(cut, (10, json!(true)));
}

#[test]
fn a_join_whose_history_starts_at_the_oldest_message_in_memory_says_more_were_evicted() {
    let mut w = World::with_config(crate::config::Config {
        ring_size: 8,
        join_history: 8,
        ..super::config()
    });
    let b = w.socket("bob");
    World::one(
        &w.ws(b, json!({"type": "create_room", "room": "ops"})),
        "joined",
    );
    for i in 0..10 {
        w.send(b, "ops", &format!("m{i}"));
    }
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "join", "room": "ops"}));
    let j = World::one(&got, "joined");
    assert_eq!(j["history"].as_array().unwrap().len(), 8);
    assert_eq!(j["has_more"], true, "m0 and m1 are only in the database");
}
