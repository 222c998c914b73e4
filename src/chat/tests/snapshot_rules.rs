//! A server restarted on a database that already holds users, rooms and messages.

use super::{snapshot, World};
use crate::store::load::{RoomRow, Snapshot, UserRow};
use serde_json::json;

fn user(id: i64, name: &str) -> UserRow {
    UserRow {
        id,
        username: name.into(),
        // What the fake password pool accepts for "password1".
        pw_hash: "fake$password1".into(),
        last_seen: None,
        admin: false,
        suspended: false,
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
