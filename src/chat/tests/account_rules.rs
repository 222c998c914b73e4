//! Sessions and passwords: the list, ending one or all, changing the password (which
//! ends every other session), and the per-account throttle on failed logins.

use super::World;
use crate::http::Route;
use serde_json::{json, Value};

fn world() -> World {
    let mut cfg = super::config();
    cfg.auth_per_minute = 100_000.0;
    cfg.login_failures_per_hour = 3.0;
    World::with_config(cfg)
}

fn login_with(w: &mut World, name: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": name, "password": password});
    w.http(Route::Login, "POST", "/login", None, body)
}

fn sessions(w: &mut World, token: &str) -> Vec<Value> {
    let (s, v) = w.http(
        Route::Sessions,
        "GET",
        "/account/sessions",
        Some(token),
        Value::Null,
    );
    assert_eq!(s, 200, "{v}");
    v["sessions"].as_array().unwrap().clone()
}

#[test]
fn changing_the_password_ends_every_other_session() {
    let mut w = world();
    let t1 = w.login("alice");
    let t2 = w.login("alice");
    let s1 = w.socket_with(&t1);
    let s2 = w.socket_with(&t2);
    let change = |old: &str, new: &str| json!({"old": old, "new": new});
    let (s, v) = w.http(
        Route::ChangePassword,
        "POST",
        "/account/password",
        Some(&t1),
        change("nope-nope", "brand-new-pw"),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("invalid_credentials")));
    let (s, v) = w.http(
        Route::ChangePassword,
        "POST",
        "/account/password",
        Some(&t1),
        change("password1", "short"),
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_password")));
    assert!(w.closed.is_empty(), "nothing ends on a refused change");
    let (s, _) = w.http(
        Route::ChangePassword,
        "POST",
        "/account/password",
        Some(&t1),
        change("password1", "brand-new-pw"),
    );
    assert_eq!(s, 204);
    assert_eq!(
        w.closed,
        vec![(s2, 4001)],
        "the other session's socket, not this one"
    );
    assert!(!w.closed.iter().any(|(c, _)| *c == s1));
    assert_eq!(sessions(&mut w, &t1).len(), 1, "this session stays");
    let (s, _) = w.http(Route::Rooms, "GET", "/rooms", Some(&t2), Value::Null);
    assert_eq!(s, 401, "the other token is gone");
    assert_eq!(login_with(&mut w, "alice", "password1").0, 401);
    assert_eq!(login_with(&mut w, "alice", "brand-new-pw").0, 200);
}

#[test]
fn sessions_are_listed_and_ended_one_by_one_or_all_at_once() {
    let mut w = world();
    let t1 = w.login("alice");
    let t2 = w.login("alice");
    let t3 = w.login("alice");
    let other = w.login("bob");
    let s2 = w.socket_with(&t2);
    let list = sessions(&mut w, &t1);
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        list.iter().all(|s| !s.to_string().contains(&t2)),
        "never the token itself"
    );
    let id2 = crate::store::session_id(&crate::auth::hash_token(&t2));
    // Someone else's session is not found, not ended.
    let path = format!("/account/sessions/{id2}");
    let (s, _) = w.http(
        Route::EndSession { id: id2.clone() },
        "DELETE",
        &path,
        Some(&other),
        Value::Null,
    );
    assert_eq!(s, 404);
    let (s, _) = w.http(
        Route::EndSession { id: id2.clone() },
        "DELETE",
        &path,
        Some(&t1),
        Value::Null,
    );
    assert_eq!(s, 204);
    assert_eq!(w.closed, vec![(s2, 4001)]);
    assert_eq!(sessions(&mut w, &t1).len(), 2);
    let (s, _) = w.http(
        Route::Logout,
        "POST",
        "/logout?all=1",
        Some(&t3),
        Value::Null,
    );
    assert_eq!(s, 204);
    for t in [&t1, &t3] {
        let (s, _) = w.http(Route::Rooms, "GET", "/rooms", Some(t), Value::Null);
        assert_eq!(s, 401);
    }
    let (s, _) = w.http(Route::Rooms, "GET", "/rooms", Some(&other), Value::Null);
    assert_eq!(s, 200, "another account keeps its session");
}

#[test]
fn failed_logins_are_throttled_per_account_from_anywhere() {
    let mut w = world();
    w.login("alice");
    for _ in 0..3 {
        assert_eq!(login_with(&mut w, "alice", "guess-guess").0, 401);
    }
    // Half a millisecond on: the wait is no whole number of milliseconds.
    w.now.mono += std::time::Duration::from_micros(500);
    // Now even the right password waits: guessing must not go on.
    let (s, v) = login_with(&mut w, "alice", "password1");
    assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")), "{v}");
    let ms = v["retry_after_ms"].as_u64().unwrap();
    assert!(
        ms > 1_100_000 && ms <= 1_200_001,
        "a third of an hour at 3/h: {ms}"
    );
    // Other accounts are not affected.
    assert_eq!(w.register("bob").0, 201);
    assert_eq!(login_with(&mut w, "bob", "password1").0, 200);
    // Waiting exactly as long as told is enough, and not a moment less.
    w.advance(ms - 2);
    assert_eq!(login_with(&mut w, "alice", "password1").0, 429);
    w.advance(2);
    assert_eq!(login_with(&mut w, "alice", "password1").0, 200);
}

#[test]
fn a_sessions_use_reaches_the_store_at_most_every_token_touch_ms() {
    use crate::config::TOKEN_TOUCH_MS;
    let mut w = world();
    let t = w.login("alice");
    let touches = |w: &World| -> Vec<i64> {
        let of = w.writes.iter().filter_map(|op| match op {
            crate::store::StoreOp::TouchToken { at, .. } => Some(*at),
            _ => None,
        });
        of.collect()
    };
    let rooms = |w: &mut World| {
        w.http(Route::Rooms, "GET", "/rooms", Some(&t), Value::Null)
            .0
    };
    assert_eq!(rooms(&mut w), 200);
    w.advance(TOKEN_TOUCH_MS as u64 - 1);
    assert_eq!(rooms(&mut w), 200);
    assert!(touches(&w).is_empty(), "used at login, not long ago");
    w.advance(1);
    assert_eq!(rooms(&mut w), 200);
    assert_eq!(touches(&w), [w.now.wall_ms]);
    assert_eq!(rooms(&mut w), 200);
    assert_eq!(touches(&w).len(), 1);
}

#[test]
fn a_user_agent_is_kept_to_its_limit_on_a_character_boundary() {
    use crate::chat::sessions::user_agent;
    use crate::config::MAX_USER_AGENT_BYTES;
    let with = |ua: String| crate::http::Request {
        method: "GET".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![("user-agent".into(), ua)],
        body: Vec::new(),
        keep_alive: true,
        upload: None,
    };
    let ascii = "a".repeat(MAX_USER_AGENT_BYTES + 50);
    assert_eq!(
        user_agent(&with(ascii.clone())),
        ascii[..MAX_USER_AGENT_BYTES]
    );
    let exact = "é".repeat(MAX_USER_AGENT_BYTES / 2);
    assert_eq!(user_agent(&with(exact.clone() + "é")), exact);
    let odd = format!("a{}", "é".repeat(MAX_USER_AGENT_BYTES));
    assert_eq!(
        user_agent(&with(odd.clone())).len(),
        MAX_USER_AGENT_BYTES - 1
    );
    assert_eq!(user_agent(&with("curl/8".into())), "curl/8");
}

#[test]
fn a_deleted_accounts_name_is_held_for_the_quarantine_then_free() {
    let mut w = world();
    let t = w.login("alice");
    let s = w.socket_with(&t);
    let body = json!({"password": "password1"});
    let (st, _) = w.http(Route::DeleteAccount, "DELETE", "/account", Some(&t), body);
    assert_eq!(st, 204);
    assert_eq!(w.closed, vec![(s, 4001)]);
    assert_eq!(login_with(&mut w, "alice", "password1").0, 401);
    assert_eq!(w.register("ALICE").0, 409, "not at once");
    w.advance(crate::config::NAME_QUARANTINE_MS as u64 - 1);
    assert_eq!(w.register("alice").0, 409, "not within the quarantine");
    w.advance(1);
    assert_eq!(w.register("alice").0, 201, "free as it ends");
    assert_eq!(
        login_with(&mut w, "alice", "password1").0,
        200,
        "the new alice"
    );
}

#[test]
fn an_export_is_one_document_of_every_message_in_pages() {
    let mut cfg = super::config();
    cfg.msg_rate = 1e6;
    cfg.msg_burst = 1e6;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let b = w.socket("bob");
    let n = crate::config::EXPORT_PAGE * 2 + 7;
    for i in 0..n {
        w.send(a, "general", &format!("m{i}"));
    }
    w.take(b);
    w.send(b, "general", "not alice's");
    w.ws(a, json!({"type": "dm", "to": "bob", "text": "psst"}));
    let token = w.login("alice");
    let (s, v) = w.http(
        Route::Export,
        "GET",
        "/account/export",
        Some(&token),
        Value::Null,
    );
    assert_eq!(s, 200);
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["rooms"], json!(["dm:alice:bob", "general"]));
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), n + 1, "every message of hers, none of his");
    assert!(msgs
        .windows(2)
        .all(|p| p[0]["id"].as_i64() < p[1]["id"].as_i64()));
    assert_eq!(msgs[n]["text"], "psst");
    assert!(w.hub.exports.is_empty(), "nothing kept once done");
}

#[test]
fn one_export_at_a_time_per_account_until_its_connection_goes() {
    let mut w = World::new();
    let ta = w.login("alice");
    let tb = w.login("bob");
    // An export whose first page has not been asked for yet: its effects are held back.
    let first = w.conn();
    let req = crate::http::Request {
        method: "GET".into(),
        path: "/account/export".into(),
        query: String::new(),
        headers: vec![("authorization".into(), format!("Bearer {ta}"))],
        body: Vec::new(),
        keep_alive: true,
        upload: None,
    };
    let held = w
        .hub
        .handle_http(first, w.client_ip, &Route::Export, &req, w.now);
    assert!(!held.is_empty());
    let export = |w: &mut World, t: &str| {
        w.http(
            Route::Export,
            "GET",
            "/account/export",
            Some(t),
            Value::Null,
        )
    };
    let (s, v) = export(&mut w, &ta);
    assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")));
    // Someone else's export is no reason to wait.
    assert_eq!(export(&mut w, &tb).0, 200);
    // Once the first one's connection is gone, she may start again.
    w.hub.export_gone(first);
    assert_eq!(export(&mut w, &ta).0, 200);
}

#[test]
fn a_reset_code_sets_a_new_password_and_ends_every_session() {
    let mut w = world();
    let t = w.login("alice");
    let s = w.socket_with(&t);
    let reset = |w: &mut World, body: Value| {
        w.http(Route::ResetPassword, "POST", "/account/reset", None, body)
    };
    let (st, v) = reset(&mut w, json!({"name": "alice", "code": "c"}));
    assert_eq!((st, v["error"].as_str()), (400, Some("bad_json")));
    let (st, v) = reset(
        &mut w,
        json!({"name": "alice", "code": "c", "new": "short"}),
    );
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_password")));
    // An unknown name answers like a wrong code.
    let (st, v) = reset(
        &mut w,
        json!({"name": "nobody", "code": "c", "new": "password2"}),
    );
    assert_eq!((st, v["error"].as_str()), (403, Some("invalid_code")));
    // The fake store takes any code; the real one checks it in the write's transaction.
    let (st, _) = reset(
        &mut w,
        json!({"name": "alice", "code": "c", "new": "password2"}),
    );
    assert_eq!(st, 204);
    assert_eq!(w.closed.iter().map(|c| c.0).collect::<Vec<_>>(), vec![s]);
    let sessions = w.http(
        Route::Sessions,
        "GET",
        "/account/sessions",
        Some(&t),
        Value::Null,
    );
    assert_eq!(sessions.0, 401);
    let login = |w: &mut World, pw: &str| {
        let body = json!({"username": "alice", "password": pw});
        w.http(Route::Login, "POST", "/login", None, body).0
    };
    assert_eq!(login(&mut w, "password1"), 401);
    assert_eq!(login(&mut w, "password2"), 200);
}

#[test]
fn invite_only_registration_needs_a_code_of_1_to_128_bytes_and_hands_it_to_the_store() {
    let mut w = World::with_config(crate::config::Config {
        registration: crate::config::Registration::Invite,
        ..super::config()
    });
    let (st, v) = w.http(
        Route::Registration,
        "GET",
        "/registration",
        None,
        Value::Null,
    );
    assert_eq!(
        (st, v["mode"].as_str()),
        (200, Some("invite")),
        "the web UI asks"
    );
    let mut try_code = |code: Value| {
        let body = json!({"username": "newbie", "password": "password1", "invite": code});
        w.http(Route::Register, "POST", "/register", None, body)
    };
    for refused in [Value::Null, json!(""), json!("c".repeat(129)), json!(5)] {
        let (st, v) = try_code(refused.clone());
        assert_eq!(
            (st, v["error"].as_str()),
            (403, Some("invite_required")),
            "{refused}"
        );
    }
    let code = "c".repeat(128);
    assert_eq!(try_code(json!(code)).0, 201);
    let invite = w.writes.iter().find_map(|op| match op {
        crate::store::StoreOp::CreateUser { invite, .. } => Some(*invite),
        _ => None,
    });
    assert_eq!(invite, Some(Some(crate::auth::hash_token(&code))));
}

#[test]
fn a_deleted_account_owns_no_room_and_the_invitations_it_sent_are_withdrawn() {
    let mut w = world();
    let alice = w.login("alice");
    let a = w.socket_with(&alice);
    let b = w.socket("bob");
    w.login("carol");
    for (c, room) in [(a, "hers"), (b, "his")] {
        let got = w.ws(
            c,
            json!({"type": "create_room", "room": room, "private": true}),
        );
        assert_eq!(World::one(&got, "joined")["room"], room);
        w.ws(c, json!({"type": "invite", "room": room, "user": "carol"}));
    }
    let [bob, carol] = ["bob", "carol"].map(|n| w.hub.user_by_name(n).unwrap());
    assert_eq!(w.hub.invites[&carol].len(), 2);
    let body = json!({"password": "password1"});
    let (st, _) = w.http(
        Route::DeleteAccount,
        "DELETE",
        "/account",
        Some(&alice),
        body,
    );
    assert_eq!(st, 204);
    let owner = |w: &World, name: &str| w.hub.rooms[&w.hub.room_by_name[name]].owner;
    assert_eq!(owner(&w, "hers"), None);
    assert_eq!(owner(&w, "his"), Some(bob));
    let from: Vec<i64> = w.hub.invites[&carol].iter().map(|i| i.by).collect();
    assert_eq!(from, [bob]);
}
