//! Limits at their exact edges (rooms named in `hello`, rooms with per-user presence, an
//! address's budget on account changes) and what a socket that left a room still leaves.

use super::snapshot_rules::user;
use super::{config, snapshot, World};
use crate::config::{HELLO_ROOMS_MAX, PRESENCE_MAX_MEMBERS};
use crate::http::Route;
use crate::store::load::RoomRow;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};

/// alice (1) in `n` rooms: `general` and n - 1 others.
fn in_rooms(n: usize) -> World {
    let mut snap = snapshot();
    snap.users = vec![user(1, "alice")];
    snap.members = vec![(1, 1, 0)];
    for i in 0..n as i64 - 1 {
        snap.rooms.push(RoomRow {
            id: 10 + i,
            name: format!("room{i}"),
            private: false,
            owner: None,
            recent: Vec::new(),
        });
        snap.members.push((10 + i, 1, 0));
    }
    World::restarted(snap, config())
}

fn hello_of(w: &mut World, name: &str) -> Value {
    let t = w.login(name);
    let c = w.conn();
    let fx = w.hub.open_socket(c, &t, w.now).expect("token accepted");
    w.run(fx);
    w.take(c)[0].clone()
}

#[test]
fn hello_names_every_room_up_to_its_limit_and_says_when_there_are_more() {
    for (n, more) in [(HELLO_ROOMS_MAX, false), (HELLO_ROOMS_MAX + 1, true)] {
        let mut w = in_rooms(n);
        let h = hello_of(&mut w, "alice");
        assert_eq!(
            h["rooms"].as_array().unwrap().len(),
            HELLO_ROOMS_MAX,
            "in {n}"
        );
        assert_eq!(h["rooms_more"] == true, more, "in {n}");
    }
}

#[test]
fn presence_is_announced_in_rooms_of_up_to_presence_max_members() {
    for (n, announced) in [
        (PRESENCE_MAX_MEMBERS, true),
        (PRESENCE_MAX_MEMBERS + 1, false),
    ] {
        let mut snap = snapshot();
        snap.users = (1..=n as i64)
            .map(|i| user(i, &format!("user{i}")))
            .collect();
        snap.members = (1..=n as i64).map(|i| (1, i, 0)).collect();
        let mut w = World::restarted(snap, config());
        let b = w.socket("user1");
        w.socket("user2");
        let got = w.take(b);
        let seen = got
            .iter()
            .any(|f| f["type"] == "presence" && f["user"] == "user2");
        assert_eq!(seen, announced, "{n} members");
    }
}

#[test]
fn an_address_out_of_login_budget_can_neither_change_a_password_nor_delete_an_account() {
    let mut w = World::new();
    let t = w.login("alice");
    let wrong = json!({"username": "alice", "password": "password2"});
    while w
        .http(Route::Login, "POST", "/login", None, wrong.clone())
        .0
        != 429
    {}
    let change = json!({"old": "password1", "new": "password3"});
    let (s, _) = w.http(Route::ChangePassword, "POST", "/x", Some(&t), change);
    assert_eq!(s, 429);
    let delete = json!({"password": "password1"});
    let (s, _) = w.http(
        Route::DeleteAccount,
        "DELETE",
        "/account",
        Some(&t),
        delete.clone(),
    );
    assert_eq!(s, 429);
    w.client_ip = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
    let (s, _) = w.http(Route::DeleteAccount, "DELETE", "/account", Some(&t), delete);
    assert_eq!(s, 204, "from another address");
}

#[test]
fn a_socket_that_left_a_room_still_leaves_its_other_rooms_when_it_closes() {
    let mut w = World::new();
    let b = w.socket("bob");
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "create_room", "room": "ops"}));
    World::one(&got, "joined");
    let got = w.ws(a, json!({"type": "leave", "room": "ops"}));
    World::one(&got, "left");
    w.tick(1500);
    w.take(b);
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    w.tick(1500);
    let offline = w
        .take(b)
        .iter()
        .any(|f| f["type"] == "presence" && f["user"] == "alice" && f["status"] == "offline");
    assert!(offline, "alice left general too");
}

#[test]
fn an_account_from_elsewhere_never_takes_a_name_or_id_already_here() {
    let mut w = super::cluster_rules::clustered();
    w.login("alice");
    let alice = w.hub.user_by_name("alice").unwrap();
    w.remote(crate::store::event::Event::User {
        id: 99,
        username: "ALICE".into(),
    });
    assert_eq!(w.hub.user_by_name("alice"), Some(alice));
    assert!(!w.hub.users.contains_key(&99));
    w.remote(crate::store::event::Event::User {
        id: alice,
        username: "mallory".into(),
    });
    assert_eq!(w.hub.user_by_name("mallory"), None);
    assert_eq!(w.hub.users[&alice].name, "alice");
}

#[test]
fn presence_changes_a_whole_interval_apart_are_announced_at_once_and_closer_ones_later() {
    let interval = crate::config::PRESENCE_INTERVAL.as_millis() as u64;
    let mut w = World::new();
    let b = w.socket("bob");
    let presence = |w: &mut World| -> Vec<String> {
        let got = w.take(b);
        let of_alice = got
            .iter()
            .filter(|f| f["type"] == "presence" && f["user"] == "alice");
        of_alice
            .map(|f| f["status"].as_str().unwrap().to_string())
            .collect()
    };
    let a = w.socket("alice");
    assert_eq!(presence(&mut w), ["online"]);
    w.advance(interval);
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    assert_eq!(
        presence(&mut w),
        ["offline"],
        "a whole interval later: at once"
    );
    w.advance(interval - 1);
    w.socket("alice");
    assert!(presence(&mut w).is_empty(), "held until the interval is up");
    w.tick(interval);
    assert_eq!(presence(&mut w), ["online"]);
}

#[test]
fn a_held_back_change_goes_out_when_due_saying_when_it_happened_and_not_while_stopping() {
    let interval = crate::config::PRESENCE_INTERVAL.as_millis() as u64;
    let mut w = World::new();
    let b = w.socket("bob");
    let a = w.socket("alice");
    let online_at = w.now.mono;
    w.advance(100);
    let closed_at = w.now.wall_ms;
    let fx = w.hub.socket_closed(a, w.now);
    w.run(fx);
    let held = |w: &mut World| {
        let got = w.take(b);
        got.into_iter()
            .filter(|f| f["type"] == "presence" && f["user"] == "alice")
            .collect::<Vec<_>>()
    };
    held(&mut w);
    assert_eq!(
        w.hub.next_deadline(),
        Some(online_at + crate::config::PRESENCE_INTERVAL),
        "the reactor's timer wakes for it"
    );
    w.tick(interval - 101);
    assert!(held(&mut w).is_empty(), "not before it is due");
    w.tick(500);
    let got = held(&mut w);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["status"], "offline");
    assert_eq!(got[0]["last_seen"], crate::time::rfc3339_ms(closed_at));
    // While the server stops, nothing held back goes out (her coming back, here).
    w.socket("alice");
    assert!(held(&mut w).is_empty());
    w.hub.begin_shutdown();
    w.tick(interval);
    assert!(held(&mut w).is_empty());
}

#[test]
fn an_invitation_is_pending_once_never_for_a_member_and_at_most_max_invitations() {
    use crate::config::MAX_INVITATIONS;
    let mut w = World::with_config(crate::config::Config {
        max_rooms_owned: MAX_INVITATIONS + 1,
        action_burst: 1e6,
        ..config()
    });
    let a = w.socket("alice");
    w.login("carol");
    let carol = w.hub.user_by_name("carol").unwrap();
    let invite = |w: &mut World, room: &str, who: &str| {
        let got = w.ws(a, json!({"type": "invite", "room": room, "user": who}));
        assert!(got.iter().all(|f| f["type"] != "error"), "{got:?}");
    };
    for i in 0..=MAX_INVITATIONS {
        let room = format!("r{i}");
        let got = w.ws(
            a,
            json!({"type": "create_room", "room": room, "private": true}),
        );
        World::one(&got, "joined");
        invite(&mut w, &room, "carol");
        if i == 0 {
            invite(&mut w, "r0", "carol");
            assert_eq!(w.hub.invites[&carol].len(), 1, "once");
            invite(&mut w, "r0", "alice");
            assert!(w
                .hub
                .invites
                .get(&w.hub.user_by_name("alice").unwrap())
                .is_none_or(|l| l.is_empty()));
        }
    }
    let rooms: Vec<i64> = w.hub.invites[&carol].iter().map(|i| i.room).collect();
    assert_eq!(rooms.len(), MAX_INVITATIONS);
    assert!(
        !rooms.contains(&w.hub.room_by_name["r0"]),
        "the oldest went"
    );
    let declined = w.writes.iter().any(|op| {
        matches!(op,
        crate::store::StoreOp::Decline { room_id, user_id }
            if *room_id == w.hub.room_by_name["r0"] && *user_id == carol)
    });
    assert!(declined, "and the store was told");
}
