//! Rooms and memberships change in memory only once the store confirms them; a socket's
//! requests after a join wait for it, in order.

use super::World;
use crate::store::StoreOp;
use serde_json::json;

fn error(frames: &[serde_json::Value]) -> (&str, &str) {
    let e = World::one(frames, "error");
    (e["code"].as_str().unwrap(), e["ref"].as_str().unwrap_or(""))
}

#[test]
fn a_room_exists_only_once_the_store_confirms_it() {
    let mut w = World::new();
    let a = w.socket("alice");
    w.storage_ok = false;
    let got = w.ws(a, json!({"type": "join", "room": "x", "ref": "j"}));
    assert_eq!(error(&got), ("overloaded", "j"));
    let got = w.ws(a, json!({"type": "create_room", "room": "y", "ref": "c"}));
    assert_eq!(error(&got), ("overloaded", "c"));
    assert!(!w.hub.room_by_name.contains_key("x") && !w.hub.room_by_name.contains_key("y"));
    assert!(w.hub.creating.is_empty() && w.hub.joining.is_empty());
    let alice = w.hub.user_by_name("alice").unwrap();
    let u = &w.hub.users[&alice];
    assert_eq!((u.owned, u.creating, u.rooms.len()), (0, 0, 1));
    assert!(!w.hub.waiting(a), "the socket is read again");
    w.storage_ok = true;
    let got = w.ws(a, json!({"type": "create_room", "room": "y"}));
    assert_eq!(World::one(&got, "joined")["members"], json!(["alice"]));
    assert_eq!(w.hub.users[&alice].owned, 1);
}

#[test]
fn a_failed_first_direct_message_leaves_no_conversation() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.storage_ok = false;
    let got = w.ws(
        a,
        json!({"type": "dm", "to": "bob", "text": "hi", "ref": "d"}),
    );
    assert_eq!(error(&got), ("overloaded", "d"));
    assert!(World::one(&got, "error")["message"]
        .as_str()
        .unwrap()
        .contains("not stored"));
    assert!(w.hub.room_by_name.keys().all(|n| !n.starts_with("dm:")));
    assert!(w.take(b).is_empty());
    w.storage_ok = true;
    let got = w.ws(
        a,
        json!({"type": "dm", "to": "bob", "text": "hi again", "ref": "d2"}),
    );
    let m = World::one(&got, "message");
    assert_eq!(
        (m["text"].as_str(), m["ref"].as_str()),
        (Some("hi again"), Some("d2"))
    );
    assert_eq!(World::one(&w.take(b), "message")["text"], "hi again");
}

#[test]
fn requests_after_a_join_wait_for_its_commit_and_keep_their_order() {
    let mut w = World::new();
    let a = w.socket("alice");
    w.held_writes = Some(Vec::new());
    assert!(w
        .ws(a, json!({"type": "join", "room": "x", "ref": "j"}))
        .is_empty());
    assert!(w.hub.waiting(a));
    assert!(
        !w.hub.room_by_name.contains_key("x"),
        "not before the store says so"
    );
    let sends = [
        json!({"type": "send", "room": "x", "text": "one", "ref": "s1"}),
        json!({"type": "send", "room": "x", "text": "two", "ref": "s2"}),
    ];
    for s in sends {
        assert!(w.ws(a, s).is_empty(), "held while the join is on its way");
    }
    w.release_writes(&[]);
    let got = w.take(a);
    let refs: Vec<&str> = got.iter().map(|f| f["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["j", "s1", "s2"], "{got:?}");
    assert_eq!(got[0]["type"], "joined");
    assert_eq!(w.resumed, vec![a]);
    assert!(!w.hub.waiting(a));
}

#[test]
fn two_users_joining_a_room_being_created_both_get_in() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let c = w.socket("carol");
    w.held_writes = Some(Vec::new());
    w.ws(a, json!({"type": "join", "room": "x"}));
    w.ws(b, json!({"type": "join", "room": "x"}));
    let got = w.ws(c, json!({"type": "create_room", "room": "x"}));
    assert_eq!(
        error(&got).0,
        "bad_request",
        "the name is taken while it is being created"
    );
    w.release_writes(&[]);
    assert_eq!(World::one(&w.take(a), "joined")["room"], "x");
    let joined = w.take(b);
    assert_eq!(World::one(&joined, "joined")["member_count"], 2);
    let creates = w
        .writes
        .iter()
        .filter(|op| {
            matches!(
                op,
                StoreOp::Join {
                    create: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(creates, 1);
    let alice = w.hub.user_by_name("alice").unwrap();
    assert_eq!(w.hub.rooms[&w.hub.room_by_name["x"]].owner, Some(alice));
}

#[test]
fn a_join_behind_a_failed_creation_fails_too() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.held_writes = Some(Vec::new());
    w.ws(a, json!({"type": "join", "room": "x", "ref": "a"}));
    w.ws(b, json!({"type": "join", "room": "x", "ref": "b"}));
    w.release_writes(&[0]);
    assert_eq!(error(&w.take(a)), ("overloaded", "a"));
    assert_eq!(error(&w.take(b)), ("overloaded", "b"));
    assert!(!w.hub.room_by_name.contains_key("x"));
    let bob = w.hub.user_by_name("bob").unwrap();
    assert_eq!(w.hub.users[&bob].rooms.len(), 1, "general only");
    let got = w.ws(b, json!({"type": "join", "room": "x"}));
    assert_eq!(World::one(&got, "joined")["owner"], "bob");
}

#[test]
fn joins_on_their_way_count_toward_the_caps() {
    let mut cfg = super::config();
    // general plus two more.
    cfg.max_memberships = 3;
    cfg.max_rooms_owned = 2;
    let mut w = World::with_config(cfg);
    let socks: Vec<_> = (0..4).map(|_| w.socket("alice")).collect();
    w.held_writes = Some(Vec::new());
    w.ws(socks[0], json!({"type": "join", "room": "x"}));
    w.ws(socks[1], json!({"type": "create_room", "room": "y"}));
    let got = w.ws(socks[2], json!({"type": "join", "room": "z"}));
    assert_eq!(error(&got).0, "forbidden", "{got:?}");
    w.release_writes(&[]);
    // Owned: x and y; the cap on owned rooms counts them now as it did while pending.
    w.ws(socks[3], json!({"type": "leave", "room": "x"}));
    let got = w.ws(socks[3], json!({"type": "create_room", "room": "w"}));
    assert_eq!(error(&got).0, "forbidden", "{got:?}");
}

#[test]
fn a_socket_closed_while_its_join_is_on_the_way() {
    let mut w = World::new();
    let a = w.socket("alice");
    let a2 = w.socket("alice");
    w.held_writes = Some(Vec::new());
    w.ws(a, json!({"type": "join", "room": "x"}));
    w.ws(a, json!({"type": "send", "room": "x", "text": "held"}));
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    w.release_writes(&[]);
    // The membership is on disk, so it is in memory; the other socket is attached.
    let x = w.hub.room_by_name["x"];
    let alice = w.hub.user_by_name("alice").unwrap();
    assert!(w.hub.rooms[&x].is_member(alice));
    assert!(w.hub.audience(x, crate::chat::Except::Nobody).eq([a2]));
    assert!(w.take(a).is_empty() && w.resumed.is_empty());
    assert!(w
        .writes
        .iter()
        .all(|op| !matches!(op, StoreOp::Insert { .. })));
}

#[test]
fn rooms_being_created_count_toward_the_owned_cap() {
    let mut cfg = super::config();
    cfg.max_rooms_owned = 1;
    let mut w = World::with_config(cfg);
    let a1 = w.socket("alice");
    let a2 = w.socket("alice");
    w.held_writes = Some(Vec::new());
    w.ws(a1, json!({"type": "create_room", "room": "y"}));
    // y is not on disk yet, but it is alice's one room.
    let got = w.ws(a2, json!({"type": "create_room", "room": "z"}));
    assert_eq!(error(&got).0, "forbidden", "{got:?}");
    w.release_writes(&[]);
    assert!(w.hub.room_by_name.contains_key("y"));
    assert!(!w.hub.room_by_name.contains_key("z"));
}

#[test]
fn a_private_room_being_created_is_its_owners_alone() {
    let mut w = World::new();
    let a1 = w.socket("alice");
    let a2 = w.socket("alice");
    let b = w.socket("bob");
    w.held_writes = Some(Vec::new());
    w.ws(
        a1,
        json!({"type": "create_room", "room": "den", "private": true}),
    );
    let got = w.ws(b, json!({"type": "join", "room": "den"}));
    assert_eq!(World::error_code(&got), "forbidden");
    // Her other socket joins behind the creation.
    let got = w.ws(a2, json!({"type": "join", "room": "den", "ref": "j"}));
    assert!(got.iter().all(|f| f["type"] != "error"), "{got:?}");
    w.release_writes(&[]);
    let got = w.take(a2);
    let joined = got.iter().find(|f| f["ref"] == "j").expect("joined");
    assert_eq!(
        (&joined["type"], &joined["room"]),
        (&json!("joined"), &json!("den"))
    );
}

#[test]
fn requests_behind_a_second_join_wait_for_that_one_too() {
    let mut w = World::new();
    let a = w.socket("alice");
    w.held_writes = Some(Vec::new());
    let msgs = [
        json!({"type": "join", "room": "x", "ref": "jx"}),
        json!({"type": "send", "room": "x", "text": "in x", "ref": "sx"}),
        json!({"type": "join", "room": "y", "ref": "jy"}),
        json!({"type": "send", "room": "y", "text": "in y", "ref": "sy"}),
    ];
    for m in msgs {
        assert!(w.ws(a, m).is_empty());
    }
    w.release_one(); // x is stored: what came after it runs, up to the join of y
    let refs = |got: &[serde_json::Value]| -> Vec<String> {
        got.iter()
            .map(|f| f["ref"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let got = w.take(a);
    assert_eq!(refs(&got), ["jx"], "{got:?}");
    assert!(w.hub.waiting(a), "now on y's join");
    w.release_writes(&[]);
    let got = w.take(a);
    assert_eq!(refs(&got), ["sx", "jy", "sy"], "{got:?}");
    assert_eq!(World::one(&got, "joined")["room"], "y");
}

#[test]
fn a_room_being_created_is_a_taken_name_but_a_conversation_being_made_is_nobodys() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let carol = w.login("carol");
    w.held_writes = Some(Vec::new());
    w.ws(a, json!({"type": "create_room", "room": "soon"}));
    w.ws(b, json!({"type": "dm", "to": "alice", "text": "hi"}));
    let dm = w
        .hub
        .creating
        .keys()
        .find(|n| n.starts_with("dm:"))
        .cloned();
    let dm = dm.expect("a conversation on its way");
    let mut info = |name: &str| {
        let route = crate::http::Route::RoomInfo { room: name.into() };
        let path = format!("/rooms/{name}");
        w.http(route, "GET", &path, Some(&carol), serde_json::Value::Null)
    };
    let (s, v) = info("soon");
    assert_eq!((s, &v["exists"]), (200, &json!(true)));
    assert_eq!(info(&dm).0, 404);
}
