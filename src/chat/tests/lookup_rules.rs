//! Cluster mode, accounts and sessions across nodes: what a node has not heard of yet is
//! asked of the database (a token, an account), what ended here stays ended whatever a
//! look-up or a late event says, and an admin's suspension or disconnection reaches
//! every node.

use super::cluster_rules::clustered;
use super::snapshot_rules::user;
use super::World;
use crate::store::event::Event;
use serde_json::{json, Value};

#[test]
fn a_token_issued_elsewhere_an_instant_ago_is_looked_up_before_the_upgrade_is_refused() {
    let mut w = clustered();
    let token = "u".repeat(43);
    let hash = crate::auth::hash_token(&token);
    let user = user(77, "newcomer");
    w.db_tokens.insert(hash, (user, w.now.wall_ms + 60_000));
    let conn = w.conn();
    // Unknown here: refused for now, and asked of the database.
    assert!(w.hub.token_unknown(&token));
    assert!(!w.hub.token_unknown(""));
    assert!(w.hub.open_socket(conn, &token, w.now).is_err());
    let ip = w.client_ip;
    let fx = w
        .hub
        .look_up_token(conn, ip, &token, w.now)
        .expect("looked up");
    w.run(fx);
    assert_eq!(w.upgrades, vec![conn]);
    // The retried upgrade now opens, for an account this node had not heard of either.
    assert!(!w.hub.token_unknown(&token));
    let fx = w.hub.open_socket(conn, &token, w.now).expect("known now");
    w.run(fx);
    assert_eq!(w.take(conn)[0]["user"], "newcomer");
    // A token the database does not have either is refused after the look-up.
    let other = w.conn();
    let fx = w
        .hub
        .look_up_token(other, ip, &"x".repeat(43), w.now)
        .unwrap();
    w.run(fx);
    assert!(w.hub.open_socket(other, &"x".repeat(43), w.now).is_err());
    // Without a bus there is nothing to look up.
    let mut single = World::new();
    assert!(!single.hub.token_unknown(&token));
    let c = single.conn();
    assert!(single
        .hub
        .look_up_token(c, ip, &token, single.now)
        .is_none());
}

#[test]
fn a_login_for_an_account_registered_elsewhere_an_instant_ago_looks_it_up() {
    let mut w = clustered();
    let user = user(78, "Fresh");
    w.db_tokens.insert([9; 32], (user, 0));
    let body = json!({"username": "fresh", "password": "password1"});
    let (status, v) = w.http(crate::http::Route::Login, "POST", "/login", None, body);
    assert_eq!((status, &v["username"]), (200, &json!("Fresh")), "{v}");
    // Its password changed on another node: the database's hash counts, not memory's.
    w.db_tokens.get_mut(&[9; 32]).unwrap().0.pw_hash = "fake$password2".into();
    let old = json!({"username": "fresh", "password": "password1"});
    let (status, _) = w.http(crate::http::Route::Login, "POST", "/login", None, old);
    assert_eq!(status, 401);
    let new = json!({"username": "fresh", "password": "password2"});
    let (status, _) = w.http(crate::http::Route::Login, "POST", "/login", None, new);
    assert_eq!(status, 200);
    // A name nobody has is still refused like a wrong password.
    let body = json!({"username": "nobody", "password": "password1"});
    let (status, _) = w.http(crate::http::Route::Login, "POST", "/login", None, body);
    assert_eq!(status, 401);
}

fn row_of(w: &World, name: &str) -> crate::store::load::UserRow {
    user(w.hub.user_by_name(name).unwrap(), name)
}

#[test]
fn an_ended_session_stays_ended_whatever_a_look_up_or_a_late_event_says() {
    use crate::store::{ReplyTo, Via};
    let mut w = clustered();
    let token = w.login("alice");
    let hash = crate::auth::hash_token(&token);
    let row = row_of(&w, "alice");
    let expires = w.now.wall_ms + 60_000;
    let (status, _) = w.http(
        crate::http::Route::Logout,
        "POST",
        "/logout",
        Some(&token),
        Value::Null,
    );
    assert_eq!(status, 204);
    // The writer has not deleted the row yet: a look-up would still find it.
    w.db_tokens.insert(hash, (row.clone(), expires));
    assert!(!w.hub.token_unknown(&token), "ended here: not asked again");
    let conn = w.conn();
    let ip = w.client_ip;
    assert!(w.hub.look_up_token(conn, ip, &token, w.now).is_none());
    // A look-up sent before the logout and answered after it.
    let to = ReplyTo {
        conn,
        via: Via::Http,
    };
    w.hub.token_found(to, hash, Ok(Some((row, expires))), w.now);
    assert!(w.hub.open_socket(conn, &token, w.now).is_err());
    // The news of the session's start arriving after its end (two publishers).
    w.remote(Event::Token {
        hash: crate::chat::remote::hex(&hash),
        user_id: w.hub.user_by_name("alice").unwrap(),
        expires_at: expires,
    });
    let late = w.conn();
    assert!(w.hub.open_socket(late, &token, w.now).is_err());
}

#[test]
fn a_token_the_database_lacks_is_asked_once_until_its_session_is_heard_of() {
    let mut w = clustered();
    w.login("bob");
    let token = "n".repeat(43);
    let hash = crate::auth::hash_token(&token);
    let ip = w.client_ip;
    let conn = w.conn();
    let fx = w.hub.look_up_token(conn, ip, &token, w.now).expect("asked");
    w.run(fx);
    assert_eq!(w.upgrades, vec![conn]);
    // Not there: a client retrying with it is refused at once, without a look-up.
    assert!(!w.hub.token_unknown(&token));
    let again = w.conn();
    assert!(w.hub.look_up_token(again, ip, &token, w.now).is_none());
    // Its session is heard of after all (a login committed an instant later).
    w.remote(Event::Token {
        hash: crate::chat::remote::hex(&hash),
        user_id: w.hub.user_by_name("bob").unwrap(),
        expires_at: w.now.wall_ms + 60_000,
    });
    let s = w.socket_with(&token);
    assert!(w.hub.sockets.contains_key(&s));
}

#[test]
fn a_suspended_or_deleted_accounts_session_is_not_learnt_from_a_look_up() {
    use crate::store::{ReplyTo, Via};
    let mut w = clustered();
    w.login("carol");
    for (suspended, deleted_at) in [(true, None), (false, Some(1))] {
        let token = format!("{}{}", if suspended { "s" } else { "d" }, "x".repeat(42));
        let hash = crate::auth::hash_token(&token);
        let row = crate::store::load::UserRow {
            suspended,
            deleted_at,
            ..row_of(&w, "carol")
        };
        let conn = w.conn();
        let to = ReplyTo {
            conn,
            via: Via::Http,
        };
        w.hub
            .token_found(to, hash, Ok(Some((row, w.now.wall_ms + 60_000))), w.now);
        assert!(w.hub.open_socket(conn, &token, w.now).is_err());
    }
}

#[test]
fn recent_tokens_are_bounded_and_forget_the_oldest() {
    let mut r = crate::chat::lookups::Recent::default();
    let h = |i: usize| {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b
    };
    for i in 0..=crate::chat::lookups::RECENT_TOKENS {
        r.insert(h(i));
    }
    assert!(!r.contains(&h(0)));
    assert!(r.contains(&h(1)));
    assert!(r.contains(&h(crate::chat::lookups::RECENT_TOKENS)));
    r.remove(&h(1));
    assert!(!r.contains(&h(1)));
    r.insert(h(1));
    assert!(r.contains(&h(1)));
}

#[test]
fn suspensions_and_disconnections_reach_every_node_over_the_bus() {
    let mut w = clustered();
    let boss = w.login("boss");
    w.make_admin("boss");
    let m = w.socket("mallory");
    let mallory = w.hub.user_by_name("mallory").unwrap();
    // Done here: told to the others.
    let suspend = |on| crate::http::Route::AdminSuspend {
        user: "mallory".into(),
        on,
    };
    assert_eq!(w.admin(suspend(true), "/x", &boss, Value::Null).0, 204);
    assert_eq!(w.closed, vec![(m, 4001)]);
    assert!(w
        .events()
        .iter()
        .any(|e| matches!(e, Event::Suspended { user_id, on: true } if *user_id == mallory)));
    assert_eq!(w.admin(suspend(false), "/x", &boss, Value::Null).0, 204);
    // Done elsewhere: applied here.
    let m2 = w.socket("mallory");
    w.remote(Event::Disconnected { user_id: mallory });
    assert_eq!(w.closed.last(), Some(&(m2, 4003)));
    let m3 = w.socket("mallory");
    let token = w.login("mallory");
    w.remote(Event::Suspended {
        user_id: mallory,
        on: true,
    });
    assert_eq!(w.closed.last(), Some(&(m3, 4001)));
    let c = w.conn();
    assert!(w.hub.open_socket(c, &token, w.now).is_err());
    let (s, v) = w.http(
        crate::http::Route::Login,
        "POST",
        "/login",
        None,
        json!({"username": "mallory", "password": "password1"}),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("suspended")));
    w.remote(Event::Suspended {
        user_id: mallory,
        on: false,
    });
    assert_eq!(
        w.http(
            crate::http::Route::Login,
            "POST",
            "/login",
            None,
            json!({"username": "mallory", "password": "password1"}),
        )
        .0,
        200
    );
}

#[test]
fn a_look_up_the_database_cannot_answer_is_told_to_try_again_not_that_the_token_is_bad() {
    let mut w = clustered();
    let token = "f".repeat(43);
    let hash = crate::auth::hash_token(&token);
    w.db_tokens
        .insert(hash, (user(78, "unlucky"), w.now.wall_ms + 60_000));
    let (conn, ip) = (w.conn(), w.client_ip);
    w.storage_ok = false;
    let fx = w.hub.look_up_token(conn, ip, &token, w.now).expect("asked");
    w.run(fx);
    assert_eq!(w.upgrades, vec![conn]);
    assert_eq!(w.responses[&conn].status, 503);
    // Nothing is concluded from the failure: the next try asks again, and gets in.
    w.storage_ok = true;
    assert!(w.hub.token_unknown(&token));
    let again = w.conn();
    let fx = w
        .hub
        .look_up_token(again, ip, &token, w.now)
        .expect("asked again");
    w.run(fx);
    assert!(!w.responses.contains_key(&again));
    let fx = w.hub.open_socket(again, &token, w.now).expect("known now");
    w.run(fx);
    assert_eq!(w.take(again)[0]["user"], "unlucky");
}
