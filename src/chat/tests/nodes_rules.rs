//! Users whose sockets are on other nodes: presence, typing and budgets as this node sees them.

use super::cluster_rules::clustered;
use super::World;
use crate::config::Config;
use crate::id::ConnId;
use crate::store::event::{Event, NodeStats};
use crate::store::NewRoom;
use serde_json::{json, Value};
use std::time::Duration;

fn typing_of(frames: &[Value], user: &str) -> Vec<bool> {
    frames
        .iter()
        .filter(|f| f["type"] == "typing" && f["user"] == user)
        .map(|f| f["active"].as_bool().unwrap())
        .collect()
}

#[test]
fn typing_here_ends_when_the_users_last_socket_anywhere_closes() {
    let mut w = clustered();
    let b = w.socket("bob");
    let a = w.socket("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    w.remote(Event::Presence {
        user_id: alice,
        online: true,
    });
    w.ws(
        a,
        json!({"type": "typing", "room": "general", "active": true}),
    );
    assert_eq!(typing_of(&w.take(b), "alice"), [true]);
    // Her socket here closes; she is still in the room through the other node.
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    assert!(typing_of(&w.take(b), "alice").is_empty(), "still there");
    w.remote(Event::Presence {
        user_id: alice,
        online: false,
    });
    assert_eq!(typing_of(&w.take(b), "alice"), [false]);
}

fn alives(w: &World) -> usize {
    w.events()
        .into_iter()
        .filter(|e| matches!(e, Event::Alive { .. }))
        .count()
}

#[test]
fn heartbeats_go_out_once_per_interval_and_the_timer_wakes_for_the_next() {
    assert_eq!(World::new().hub.node_deadline(), None, "not clustered");
    assert_eq!(World::new().hub.node(), None);
    let mut w = clustered();
    assert_eq!(w.hub.node(), Some("here"), "its name in the figures");
    let hb = w.hub.cfg.node_heartbeat;
    w.tick(0);
    assert_eq!(alives(&w), 1);
    assert_eq!(w.hub.node_deadline(), Some(w.now.mono + hb));
    w.tick(hb.as_millis() as u64 - 1);
    assert_eq!(alives(&w), 1, "not before its time");
    w.tick(1);
    assert_eq!(alives(&w), 2);
    w.tick(1);
    assert_eq!(alives(&w), 2);
}

#[test]
fn the_timer_also_wakes_when_a_silent_node_is_due_to_be_taken_for_dead() {
    let mut w = World::with_config(Config {
        node_heartbeat: Duration::from_secs(60),
        node_timeout: Duration::from_secs(5),
        ..clustered().hub.cfg.clone()
    });
    w.tick(0);
    let heard = w.now.mono;
    w.remote_from(
        "n2",
        Event::Alive {
            users: vec![],
            stats: NodeStats::default(),
        },
    );
    assert_eq!(w.hub.node_deadline(), Some(heard + Duration::from_secs(5)));
}

#[test]
fn the_cluster_figures_add_every_nodes_share() {
    let mut w = clustered();
    w.socket("bob");
    w.login("carol"); // a session but no socket: not online
    let b2 = w.socket("dave");
    w.send(b2, "general", "one");
    let stats = NodeStats {
        websockets: 4,
        users_online: 3,
        messages_stored: 9,
    };
    w.remote_from(
        "n2",
        Event::Alive {
            users: vec![],
            stats,
        },
    );
    let c = w.hub.cluster_stats(w.now);
    let own = &c["nodes"][0];
    assert_eq!(
        (&own["websockets"], &own["users_online"]),
        (&json!(2), &json!(2)),
        "{c}"
    );
    assert_eq!(own["messages_stored_total"], 1, "{c}");
    assert_eq!(c["websockets"], 6, "{c}");
    assert_eq!(c["messages_stored_total"], 10, "{c}");
}

fn online_in(w: &mut World, conn: ConnId, room: &str, user: &str) -> bool {
    let got = w.ws(conn, json!({"type": "members", "room": room}));
    let listed = World::one(&got, "members")["members"].clone();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == user)
        .cloned()
        .unwrap_or_else(|| panic!("{user} not listed: {listed}"));
    entry["online"] == true
}

#[test]
fn joining_and_leaving_rooms_elsewhere_keep_their_online_counts_right() {
    let mut w = clustered();
    let b = w.socket("bob");
    for name in ["alice", "carol"] {
        w.login(name);
    }
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| w.hub.user_by_name(n).unwrap());
    w.remote(Event::Presence {
        user_id: alice,
        online: true,
    });
    let ops = 7_000_000_000;
    w.remote(Event::Joined {
        create: Some(NewRoom {
            name: "ops".into(),
            private: false,
            owner: Some(alice),
        }),
        room_id: ops,
        users: vec![alice, bob, carol],
    });
    assert_eq!(
        w.hub.users[&alice].owned, 1,
        "her room counts against her limit"
    );
    assert!(online_in(&mut w, b, "ops", "alice"));
    assert!(!online_in(&mut w, b, "ops", "carol"), "online nowhere");
    // She leaves and comes back: counted once, so her going offline shows.
    w.remote(Event::Left {
        room_id: ops,
        user_id: alice,
    });
    w.remote(Event::Joined {
        create: None,
        room_id: ops,
        users: vec![alice],
    });
    assert!(online_in(&mut w, b, "ops", "alice"));
    w.remote(Event::Presence {
        user_id: alice,
        online: false,
    });
    assert!(!online_in(&mut w, b, "ops", "alice"));
}

#[test]
fn an_invitation_declined_through_another_node_is_gone_here_and_the_others_stay() {
    let mut w = clustered();
    let [alice, bob] = ["alice", "bob"].map(|n| {
        w.login(n);
        w.hub.user_by_name(n).unwrap()
    });
    for (room_id, name) in [(7_000_000_001, "x"), (7_000_000_002, "y")] {
        w.remote(Event::Joined {
            create: Some(NewRoom {
                name: name.into(),
                private: true,
                owner: Some(bob),
            }),
            room_id,
            users: vec![bob],
        });
        w.remote(Event::Invited {
            room_id,
            user_id: alice,
            by: bob,
        });
    }
    w.remote(Event::Declined {
        room_id: 7_000_000_001,
        user_id: alice,
    });
    let left: Vec<i64> = w.hub.invites[&alice].iter().map(|i| i.room).collect();
    assert_eq!(left, [7_000_000_002]);
}

#[test]
fn an_account_registered_elsewhere_is_known_here_at_once_and_an_invitation_only_once() {
    let mut w = clustered();
    let a = w.socket("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    w.remote(Event::User {
        id: 42,
        username: "zoe".into(),
    });
    assert_eq!(w.hub.user_by_name("zoe"), Some(42));
    w.remote(Event::Joined {
        create: Some(NewRoom {
            name: "zoes".into(),
            private: true,
            owner: Some(42),
        }),
        room_id: 7_000_000_003,
        users: vec![42],
    });
    for _ in 0..2 {
        w.remote(Event::Invited {
            room_id: 7_000_000_003,
            user_id: alice,
            by: 42,
        });
    }
    let got = w.take(a);
    let invited: Vec<_> = got.iter().filter(|f| f["type"] == "invited").collect();
    assert_eq!(invited.len(), 1, "{got:?}");
    assert_eq!(
        (&invited[0]["room"], &invited[0]["by"]),
        (&json!("zoes"), &json!("zoe"))
    );
    assert_eq!(w.hub.invites[&alice].len(), 1);
}

#[test]
fn each_start_numbers_its_rooms_in_a_block_of_its_own_that_javascript_reads_exactly() {
    let blocks: std::collections::HashSet<i64> = (0..64)
        .map(|_| crate::chat::cluster::room_id_block())
        .collect();
    for &b in &blocks {
        assert!(b > 1 << 32, "{b}: above every id a single node hands out");
        assert!(b + (1 << 16) < 1 << 53, "{b}: exact as a JavaScript number");
        assert_eq!(b % (1 << 16), 0, "{b}: whole blocks");
    }
    assert!(blocks.len() > 60, "random blocks: {}", blocks.len());
    // The first, second and last of the 2^30 blocks; the random number wraps round.
    use crate::chat::cluster::block_of;
    assert_eq!(block_of(0), 1 << 32);
    assert_eq!(block_of(1), (1 << 32) + (1 << 16));
    assert_eq!(block_of((1 << 30) - 1), (1 << 32) + (1 << 46) - (1 << 16));
    assert_eq!(block_of(1 << 30), 1 << 32);
    assert_eq!(block_of(u32::MAX), block_of((1 << 30) - 1));
    // A node in cluster mode numbers its rooms from its block.
    let mut w = clustered();
    let t = w.login("alice");
    let c = w.socket_with(&t);
    let got = w.ws(c, json!({"type": "create_room", "room": "fresh"}));
    assert_eq!(World::one(&got, "joined")["room"], "fresh");
    let id = w.hub.room_by_name["fresh"];
    assert!(id > 1 << 32, "{id}");
}
