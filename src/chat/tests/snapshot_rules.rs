//! A server restarted on a database that already holds users, rooms and messages.

use super::{snapshot, World};
use crate::store::load::{RoomRow, Snapshot, UserRow};
use serde_json::json;

pub(super) fn user(id: i64, name: &str) -> UserRow {
    UserRow {
        id,
        username: name.into(),
        // What the fake password pool accepts for "password1".
        pw_hash: "fake$password1".into(),
        last_seen: None,
        admin: false,
        suspended: false,
        deleted_at: None,
    }
}

fn room(id: i64, name: &str, owner: Option<i64>) -> RoomRow {
    RoomRow {
        id,
        name: name.into(),
        private: false,
        owner,
        recent: Vec::new(),
    }
}

/// alice (1) owns the room `mine`; bob (2) owns nothing.
fn alice_owns_a_room() -> Snapshot {
    let mut snap = snapshot();
    snap.users = vec![user(1, "alice"), user(2, "bob")];
    snap.rooms.push(room(2, "mine", Some(1)));
    snap.members = vec![(1, 1, 0), (1, 2, 0), (2, 1, 0)];
    snap
}

#[test]
fn rooms_owned_before_a_restart_count_against_the_cap() {
    let mut cfg = super::config();
    cfg.max_rooms_owned = 1;
    let mut w = World::restarted(alice_owns_a_room(), cfg);
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "create_room", "room": "another"}));
    assert_eq!(World::error_code(&got), "forbidden");
    let b = w.socket("bob");
    let got = w.ws(b, json!({"type": "create_room", "room": "another"}));
    World::one(&got, "joined");
}

#[test]
fn user_room_and_online_counts_for_metrics() {
    let mut w = World::restarted(alice_owns_a_room(), super::config());
    assert_eq!(w.hub.user_count(), 2);
    assert_eq!(w.hub.room_count(), 2);
    assert_eq!(w.hub.users_online(), 0);
    // Two sockets of one user are one user online.
    w.socket("alice");
    w.socket("alice");
    assert_eq!(w.hub.users_online(), 1);
    assert_eq!(w.hub.online_names(), ["alice"]);
    let b = w.socket("bob");
    assert_eq!(w.hub.users_online(), 2);
    assert_eq!(w.hub.online_names(), ["alice", "bob"]);
    w.register("carol");
    assert_eq!(w.hub.user_count(), 3);
    World::one(
        &w.ws(b, json!({"type": "create_room", "room": "bobs"})),
        "joined",
    );
    assert_eq!(w.hub.room_count(), 3);
    // (name, private, members, online) for the admin's stats; carol is a member of
    // general, not online.
    let mut rooms = w.hub.room_summaries();
    rooms.sort();
    assert_eq!(
        rooms,
        [
            ("bobs", false, 1, 1),
            ("general", false, 3, 2),
            ("mine", false, 1, 1)
        ]
    );
}

#[test]
fn tokens_from_before_a_restart_last_until_their_expiry() {
    let mut snap = alice_owns_a_room();
    let expires_at = 1_800_000_001_000;
    snap.tokens = vec![(crate::auth::hash_token("tok-alice"), 1, expires_at, 0)];
    let mut w = World::restarted(snap, super::config());
    assert_eq!(w.now.wall_ms, expires_at - 1000);
    w.advance(999);
    w.socket_with("tok-alice");
    // At the expiry instant the token no longer opens a socket.
    w.advance(1);
    let conn = w.conn();
    let refused = w.hub.open_socket(conn, "tok-alice", w.now).err();
    assert_eq!(refused.map(|r| r.status), Some(401));
}

#[test]
fn rooms_created_after_a_restart_get_fresh_ids() {
    let mut w = World::restarted(alice_owns_a_room(), super::config());
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.take(a);
    World::one(
        &w.ws(b, json!({"type": "create_room", "room": "fresh"})),
        "joined",
    );
    assert_eq!(w.hub.room_count(), 3);
    let m = w.send(b, "fresh", "only for fresh");
    assert_eq!(m["room"], "fresh");
    assert!(w.take(a).is_empty(), "alice is not in fresh");
    // general and mine are still there, with their members.
    let m = w.send(a, "general", "hello");
    assert_eq!(m["room"], "general");
    assert_eq!(World::one(&w.take(b), "message")["text"], "hello");
    assert_eq!(w.send(a, "mine", "mine too")["room"], "mine");
    assert!(w.take(b).is_empty(), "bob is not in mine");
}
