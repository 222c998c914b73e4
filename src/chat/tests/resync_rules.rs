//! Cluster mode after a bus outage: the state read from the database replaces what this
//! node missed, but not what it learnt while that read was on its way.

use super::cluster_rules::clustered;
use super::World;
use crate::store::event::Event;
use crate::store::load::{RoomRow, Snapshot, UserRow};
use crate::store::{NewRoom, Outcome};
use serde_json::json;

/// The database as this node knows it now: users, sessions, rooms and members.
fn as_known(w: &World) -> Snapshot {
    let users = w
        .hub
        .users
        .values()
        .map(|u| UserRow {
            id: u.id,
            username: u.name.clone(),
            pw_hash: String::new(),
            last_seen: None,
            admin: false,
            suspended: false,
            deleted_at: None,
        })
        .collect();
    let tokens = w
        .hub
        .tokens
        .iter()
        .map(|(h, t)| (*h, t.user_id, t.expires_at, t.last_used))
        .collect();
    let rooms = w
        .hub
        .rooms
        .values()
        .map(|r| RoomRow {
            id: r.id,
            name: r.name.clone(),
            private: r.private,
            owner: r.owner,
            recent: Vec::new(),
        })
        .collect();
    let members = w
        .hub
        .rooms
        .values()
        .flat_map(|r| r.members.keys().map(move |u| (r.id, *u, 0)))
        .collect();
    Snapshot {
        users,
        tokens,
        rooms,
        members,
        delivered: Vec::new(),
        invitations: Vec::new(),
        audit: Vec::new(),
        files: Vec::new(),
    }
}

#[test]
fn a_session_begun_while_the_state_is_read_survives_that_older_read() {
    let mut w = clustered();
    w.socket("bob");
    let bob = w.hub.user_by_name("bob").unwrap();
    w.outcome(Outcome::BusUp);
    let snap = as_known(&w);
    // Bob logs in on another node; the read was made before.
    let token = "k".repeat(43);
    let hash = crate::auth::hash_token(&token);
    w.remote(Event::Token {
        hash: crate::chat::remote::hex(&hash),
        user_id: bob,
        expires_at: w.now.wall_ms + 60_000,
    });
    w.outcome(Outcome::State(Ok(Box::new(snap))));
    w.socket_with(&token); // says hello
    assert!(w.closed.is_empty(), "{:?}", w.closed);
}

#[test]
fn a_membership_the_database_dropped_goes_and_one_begun_during_the_read_stays() {
    let mut w = clustered();
    let b = w.socket("bob");
    let d = w.socket("dave");
    let [bob, carol, dave] = ["bob", "carol", "dave"].map(|n| {
        w.login(n);
        w.hub.user_by_name(n).unwrap()
    });
    let ops = 7_000_000_000;
    w.remote(Event::Joined {
        create: Some(NewRoom {
            name: "ops".into(),
            private: false,
            owner: Some(carol),
        }),
        room_id: ops,
        users: vec![bob, carol],
    });
    w.take(b);
    w.outcome(Outcome::BusUp);
    // While the bus was down bob left "ops" elsewhere; dave joins it after the read.
    let mut snap = as_known(&w);
    snap.members.retain(|m| (m.0, m.1) != (ops, bob));
    w.remote(Event::Joined {
        create: None,
        room_id: ops,
        users: vec![dave],
    });
    w.take(d);
    w.outcome(Outcome::State(Ok(Box::new(snap))));
    let got = w.take(b);
    assert_eq!(World::one(&got, "left")["room"], "ops", "{got:?}");
    assert!(w.take(d).iter().all(|f| f["type"] != "left"));
    let sent = w.ws(
        d,
        json!({"type": "send", "room": "ops", "text": "still here"}),
    );
    assert_eq!(World::one(&sent, "message")["text"], "still here");
}

#[test]
fn a_room_read_from_the_database_never_takes_a_name_this_node_has_for_another() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.outcome(Outcome::BusUp);
    let mut snap = as_known(&w);
    snap.rooms.push(RoomRow {
        id: 99,
        name: "general".into(),
        private: false,
        owner: None,
        recent: Vec::new(),
    });
    w.outcome(Outcome::State(Ok(Box::new(snap))));
    assert_eq!(w.hub.room_by_name["general"], 1);
    assert!(!w.hub.rooms.contains_key(&99));
    let sent = w.ws(b, json!({"type": "send", "room": "general", "text": "x"}));
    assert_eq!(World::one(&sent, "message")["room"], "general");
}
