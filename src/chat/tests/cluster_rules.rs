//! Cluster mode in the Hub: what a node publishes, how it applies other nodes' events,
//! and the per-room `seq` order (gaps read from the database, repeats dropped).

use super::{config, World};
use crate::config::Config;
use crate::id::ConnId;
use crate::store::event::Event;
use crate::store::{Completion, MessageRow, NewRoom, Outcome};
use serde_json::{json, Value};

pub(super) fn clustered() -> World {
    World::with_config(Config {
        bus: Some("redis://127.0.0.1:1/".into()),
        node: "here".into(),
        ..config()
    })
}

impl World {
    /// Another node's event arrives over the bus.
    pub(super) fn remote(&mut self, event: Event) {
        self.remote_from("there", event);
    }

    pub(super) fn remote_from(&mut self, node: &str, event: Event) {
        let env = crate::store::event::Envelope {
            node: node.into(),
            event,
        };
        self.outcome(Outcome::Remote(env));
    }

    pub(super) fn outcome(&mut self, outcome: Outcome) {
        let c = Completion {
            reply: None,
            outcome,
        };
        let fx = self.hub.completed(c, self.now);
        self.run(fx);
    }

    /// A message another node committed: in the shared database, not yet heard of here.
    pub(super) fn committed_elsewhere(
        &mut self,
        room_id: i64,
        user: &str,
        text: &str,
    ) -> MessageRow {
        let row = MessageRow {
            id: self.messages.iter().map(|m| m.id).max().unwrap_or(0) + 1,
            seq: self
                .messages
                .iter()
                .filter(|m| m.room_id == room_id)
                .count() as i64
                + 1,
            room_id,
            user_id: self.hub.user_by_name(user).unwrap(),
            text: text.into(),
            ts: self.now.wall_ms,
            ..Default::default()
        };
        self.messages.push(row.clone());
        row
    }

    pub(super) fn events(&self) -> Vec<&Event> {
        self.published.iter().map(|e| &e.event).collect()
    }
}

pub(super) fn texts(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["text"].as_str().unwrap())
        .collect()
}

#[test]
fn a_local_send_is_published_with_its_seq_and_answered_once() {
    let mut w = clustered();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m = w.send(a, "general", "hi");
    assert_eq!(
        (m["seq"].clone(), m["ref"].clone()),
        (json!(1), Value::Null)
    );
    assert_eq!(texts(&w.take(b)), ["hi"]);
    let published: Vec<&Event> = w
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .collect();
    match published.as_slice() {
        [Event::Message { row }] => assert_eq!((row.seq, row.text.as_str()), (1, "hi")),
        other => panic!("{other:?}"),
    }
    assert!(w.published.iter().all(|e| e.node == "here"));
}

#[test]
fn without_a_bus_nothing_is_published() {
    let mut w = World::new();
    let a = w.socket("alice");
    w.send(a, "general", "hi");
    w.ws(
        a,
        json!({"type": "typing", "room": "general", "active": true}),
    );
    assert!(w.published.is_empty());
}

#[test]
fn remote_messages_in_order_reach_local_sockets_and_the_ring() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    for text in ["one", "two"] {
        let row = w.committed_elsewhere(1, "alice", text);
        w.remote(Event::Message { row });
    }
    assert_eq!(texts(&w.take(b)), ["one", "two"]);
    // The ring has them: a catch-up here is answered from memory.
    let j = w.ws(b, json!({"type": "join", "room": "general", "since": 0}));
    let joined = World::one(&j, "joined");
    let seqs: Vec<&Value> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["seq"])
        .collect();
    assert_eq!(seqs, [&json!(1), &json!(2)]);
    // A repeat of one already delivered is dropped.
    let again = w.messages[0].clone();
    w.remote(Event::Message { row: again });
    assert!(w.take(b).is_empty());
}

#[test]
fn a_message_ahead_of_a_gap_waits_for_the_gap_read_then_all_come_in_order() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let first = w.committed_elsewhere(1, "alice", "first");
    let second = w.committed_elsewhere(1, "alice", "second");
    let third = w.committed_elsewhere(1, "alice", "third");
    // The event for `first` was lost; `third` overtook `second` on the bus.
    let _ = first;
    w.remote(Event::Message { row: third });
    assert_eq!(texts(&w.take(b)), ["first", "second", "third"]);
    w.remote(Event::Message { row: second });
    assert!(w.take(b).is_empty(), "already delivered from the database");
}

#[test]
fn a_gap_longer_than_one_read_is_read_page_after_page_with_nothing_skipped() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let n = crate::chat::cluster::GAP_READ * 2 + 3;
    let rows: Vec<_> = (1..=n)
        .map(|i| w.committed_elsewhere(1, "alice", &format!("m{i}")))
        .collect();
    let last = rows[n - 1].clone(); // the only event that arrives: the rest are read
    w.remote(Event::Message { row: last });
    let want: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&w.take(b)), want);
}

#[test]
fn after_the_bus_reconnects_every_room_reads_what_it_missed() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    w.committed_elsewhere(1, "alice", "while the bus was down");
    w.outcome(Outcome::BusUp);
    assert_eq!(texts(&w.take(b)), ["while the bus was down"]);
    w.outcome(Outcome::BusUp);
    assert!(w.take(b).is_empty(), "nothing twice");
}

#[test]
fn a_local_send_behind_a_remote_gap_is_answered_in_order() {
    let mut w = clustered();
    let a = w.socket("alice");
    let b = w.socket("bob");
    // Another node committed seq 1 whose event has not arrived; alice's send is seq 2.
    w.committed_elsewhere(1, "bob", "elsewhere first");
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "mine", "ref": "r"}),
    );
    assert_eq!(texts(&got), ["elsewhere first", "mine"]);
    assert_eq!(got.last().unwrap()["ref"], "r");
    assert_eq!(texts(&w.take(b)), ["elsewhere first", "mine"]);
}

#[test]
fn remote_rooms_members_and_departures_are_followed() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    let bob = w.hub.user_by_name("bob").unwrap();
    w.remote(Event::Joined {
        create: Some(NewRoom {
            name: "ops".into(),
            private: true,
            owner: Some(alice),
        }),
        room_id: 7_000_000_000,
        users: vec![alice, bob],
    });
    let j = w.ws(b, json!({"type": "join", "room": "ops"}));
    assert_eq!(World::one(&j, "joined")["private"], true);
    let row = w.committed_elsewhere(7_000_000_000, "alice", "in ops");
    w.remote(Event::Message { row });
    assert_eq!(texts(&w.take(b)), ["in ops"]);
    w.remote(Event::Left {
        room_id: 7_000_000_000,
        user_id: bob,
    });
    let left = w.take(b);
    assert_eq!(World::one(&left, "left")["room"], "ops");
    let again = w.ws(b, json!({"type": "send", "room": "ops", "text": "x"}));
    assert_eq!(World::error_code(&again), "forbidden");
}

#[test]
fn tokens_from_other_nodes_open_sockets_and_their_revocation_closes_them() {
    let mut w = clustered();
    w.login("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    let token = "t".repeat(43);
    let hash = crate::auth::hash_token(&token);
    w.remote(Event::Token {
        hash: crate::chat::remote::hex(&hash),
        user_id: alice,
        expires_at: w.now.wall_ms + 60_000,
    });
    let s = w.socket_with(&token);
    w.remote(Event::Revoked {
        user_id: alice,
        hashes: vec![crate::chat::remote::hex(&hash)],
    });
    assert_eq!(w.closed, vec![(s, 4001)]);
    // And a logout here tells the others.
    let t2 = w.login("alice");
    w.http(
        crate::http::Route::Logout,
        "POST",
        "/logout",
        Some(&t2),
        Value::Null,
    );
    let revoked = w
        .events()
        .into_iter()
        .any(|e| matches!(e, Event::Revoked { user_id, hashes } if *user_id == alice && hashes.len() == 1));
    assert!(revoked, "{:?}", w.published);
}

#[test]
fn accounts_and_typing_from_other_nodes() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.remote(Event::User {
        id: 42,
        username: "zoe".into(),
    });
    // Logins read the account from the database (the bus carries no password hash).
    let zoe = crate::store::load::UserRow {
        id: 42,
        username: "zoe".into(),
        pw_hash: "fake$password1".into(),
        last_seen: None,
        admin: false,
        suspended: false,
        deleted_at: None,
    };
    w.db_tokens.insert([42; 32], (zoe, 0));
    let body = json!({"username": "zoe", "password": "password1"});
    let (status, _) = w.http(crate::http::Route::Login, "POST", "/login", None, body);
    assert_eq!(status, 200);
    w.remote(Event::Typing {
        room_id: 1,
        user_id: 42,
        active: true,
    });
    let t = w.take(b);
    assert_eq!(
        (&t[0]["type"], &t[0]["user"]),
        (&json!("typing"), &json!("zoe"))
    );
}

fn presence_of(frames: &[Value], user: &str) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "presence" && f["user"] == user)
        .map(|f| f["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_user_online_on_another_node_is_online_here_until_their_last_socket_anywhere_closes() {
    let mut w = clustered();
    let b = w.socket("bob");
    let a = w.socket("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    w.take(b);
    // Alice opens a socket on another node too, then closes the one here: still online.
    w.remote(Event::Presence {
        user_id: alice,
        online: true,
    });
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    w.tick(1500);
    assert!(
        presence_of(&w.take(b), "alice").is_empty(),
        "online all along"
    );
    let members = w.ws(b, json!({"type": "members", "room": "general"}));
    let listed = World::one(&members, "members")["members"].clone();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "alice")
        .cloned();
    assert_eq!(entry.unwrap()["online"], true, "{listed}");
    // Her last socket anywhere closes.
    w.remote(Event::Presence {
        user_id: alice,
        online: false,
    });
    w.tick(1500);
    assert_eq!(presence_of(&w.take(b), "alice"), ["offline"]);
    // This node said so too: her first socket here opened and its last closed.
    let said: Vec<&Event> = w
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Presence { user_id, .. } if *user_id == alice))
        .collect();
    assert_eq!(said.len(), 2, "{said:?}");
}

#[test]
fn a_node_not_heard_from_is_taken_for_dead_and_its_users_go_offline() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("carol");
    let carol = w.hub.user_by_name("carol").unwrap();
    w.take(b);
    let stats = crate::store::event::NodeStats {
        websockets: 4,
        users_online: 1,
        messages_stored: 9,
    };
    w.remote_from(
        "n2",
        Event::Alive {
            users: vec![carol],
            stats,
        },
    );
    assert_eq!(presence_of(&w.take(b), "carol"), ["online"]);
    // The cluster's figures: this node now, n2 as of its heartbeat.
    let c = w.hub.cluster_stats(w.now);
    assert_eq!(c["nodes"][1]["node"], "n2");
    assert_eq!(
        (&c["websockets"], &c["users_online"]),
        (&json!(5), &json!(2)),
        "{c}"
    );
    // Within the timeout it stays; heartbeats keep it.
    w.tick(15_000);
    w.remote_from(
        "n2",
        Event::Alive {
            users: vec![carol],
            stats,
        },
    );
    w.tick(15_000);
    assert!(presence_of(&w.take(b), "carol").is_empty());
    // Then silence past node_timeout.
    w.tick(6_000);
    assert_eq!(presence_of(&w.take(b), "carol"), ["offline"]);
    // A heartbeat lists who this node has.
    let alive = w
        .events()
        .into_iter()
        .rev()
        .find_map(|e| match e {
            Event::Alive { users, .. } => Some(users.clone()),
            _ => None,
        })
        .expect("heartbeats");
    assert_eq!(alive, vec![w.hub.user_by_name("bob").unwrap()]);
}

#[test]
fn invitations_cross_nodes_once_stored() {
    let mut w = clustered();
    let o = w.socket("owner");
    let c = w.socket("carol");
    w.ws(
        o,
        json!({"type": "create_room", "room": "ops", "private": true}),
    );
    w.published.clear();
    let got = w.ws(o, json!({"type": "invite", "room": "ops", "user": "carol"}));
    assert_eq!(World::one(&got, "invited")["user"], "carol");
    let carol = w.hub.user_by_name("carol").unwrap();
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::Invited { user_id, .. } if *user_id == carol)),
        "{:?}",
        w.published
    );
    w.take(c);
    // From another node: dave is invited there; his socket here hears it and may join.
    let d = w.socket("dave");
    let dave = w.hub.user_by_name("dave").unwrap();
    let owner = w.hub.user_by_name("owner").unwrap();
    let ops = w.hub.room_by_name["ops"];
    w.remote(Event::Invited {
        room_id: ops,
        user_id: dave,
        by: owner,
    });
    assert_eq!(World::one(&w.take(d), "invited")["by"], "owner");
    let j = w.ws(d, json!({"type": "join", "room": "ops"}));
    assert_eq!(World::one(&j, "joined")["room"], "ops");
}

#[test]
fn a_user_on_several_nodes_gets_a_share_of_the_budget_on_each() {
    let mut w = clustered();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let alice = w.hub.user_by_name("alice").unwrap();
    let accepted = |w: &mut World, conn, n: usize| {
        (0..n)
            .filter(|i| {
                let got = w.ws(
                    conn,
                    json!({"type": "send", "room": "general", "text": format!("{i}")}),
                );
                got.iter().any(|f| f["type"] == "message")
            })
            .count()
    };
    // Bob's sockets are all here: the whole burst (20).
    assert_eq!(accepted(&mut w, b, 30), 20);
    // Alice also has sockets on two other nodes: half a budget here (3 nodes × ½ = 1.5).
    for node in ["n2", "n3"] {
        w.remote_from(
            node,
            Event::Presence {
                user_id: alice,
                online: true,
            },
        );
    }
    assert_eq!(accepted(&mut w, a, 30), 10);
    // And half the refill: 5 a second where bob gets 10.
    w.advance(1000);
    assert_eq!(accepted(&mut w, a, 30), 5);
    assert_eq!(accepted(&mut w, b, 30), 10);
}

#[test]
fn an_account_deleted_on_another_node_goes_here_too() {
    let mut w = clustered();
    let a = w.socket("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    w.remote(Event::AccountDeleted { user_id: alice });
    assert_eq!(w.closed, vec![(a, 4001)]);
    assert!(!w.hub.rooms[&1].is_member(alice));
    let body = json!({"username": "alice", "password": "password1"});
    let (status, _) = w.http(crate::http::Route::Login, "POST", "/login", None, body);
    assert_eq!(status, 401);
}

#[test]
fn an_edit_that_overtakes_its_message_is_delivered_with_it() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let first = w.committed_elsewhere(1, "alice", "a");
    w.remote(Event::Message { row: first });
    assert_eq!(texts(&w.take(b)), ["a"]);
    let second = w.committed_elsewhere(1, "alice", "b");
    let mut edited = second.clone();
    edited.text = "b, edited".into();
    edited.edited_at = Some(w.now.wall_ms);
    w.remote(Event::Changed { row: edited });
    assert!(w.take(b).is_empty(), "nothing to edit here yet");
    w.remote(Event::Message { row: second });
    let got = w.take(b);
    assert_eq!(texts(&got), ["b, edited"]);
    assert_eq!(got[0]["edited"], true);
}

/// Alice's "hi" with `client_id` c1, stored through another node whose event has not
/// come: the world, alice's socket, bob's, and that row.
pub(super) fn stored_elsewhere() -> (World, ConnId, ConnId, MessageRow) {
    let mut w = clustered();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let mut row = w.committed_elsewhere(1, "alice", "hi");
    row.client_id = Some("c1".into());
    w.messages.last_mut().unwrap().client_id = Some("c1".into());
    (w, a, b, row)
}

#[test]
fn a_retry_of_a_message_stored_through_another_node_is_answered_once_in_order() {
    let (mut w, a, b, row) = stored_elsewhere();
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "hi", "client_id": "c1", "ref": "r"}),
    );
    assert_eq!(texts(&got), ["hi"], "once, with its ref: {got:?}");
    assert_eq!(World::one(&got, "message")["ref"], "r", "{got:?}");
    assert_eq!(texts(&w.take(b)), ["hi"]);
    // Its event arrives late: nothing twice.
    w.remote(Event::Message { row });
    assert!(w.take(a).is_empty() && w.take(b).is_empty());
}

#[test]
fn after_a_bus_outage_the_state_missed_is_read_and_followed() {
    use crate::store::load::{RoomRow, Snapshot, UserRow};
    let mut w = clustered();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let (alice, bob) = (
        w.hub.user_by_name("alice").unwrap(),
        w.hub.user_by_name("bob").unwrap(),
    );
    let bob_token = *w
        .hub
        .tokens
        .iter()
        .find(|(_, t)| t.user_id == bob)
        .unwrap()
        .0;
    // While the bus was down, elsewhere: alice logged out, carol registered, "ops" was
    // made with bob in it.
    let user = |id, name: &str| UserRow {
        id,
        username: name.into(),
        pw_hash: String::new(),
        last_seen: None,
        admin: false,
        suspended: false,
        deleted_at: None,
    };
    let room = |id, name: &str, private| RoomRow {
        id,
        name: name.into(),
        private,
        owner: None,
        recent: Vec::new(),
    };
    let snap = Snapshot {
        users: vec![user(alice, "alice"), user(bob, "bob"), user(50, "carol")],
        tokens: vec![(bob_token, bob, w.now.wall_ms + 60_000, 0)],
        rooms: vec![room(1, "general", false), room(9_000_000_000, "ops", true)],
        members: vec![
            (1, alice, 0),
            (1, bob, 0),
            (1, 50, 0),
            (9_000_000_000, bob, 0),
        ],
        delivered: Vec::new(),
        invitations: Vec::new(),
        audit: Vec::new(),
        files: Vec::new(),
    };
    w.outcome(Outcome::BusUp);
    w.outcome(Outcome::State(Ok(Box::new(snap))));
    assert_eq!(w.closed, vec![(a, 4001)], "alice's session ended elsewhere");
    assert!(w.hub.user_by_name("carol").is_some());
    let got = w.ws(b, json!({"type": "send", "room": "ops", "text": "back"}));
    assert_eq!(texts(&got), ["back"]);
}
