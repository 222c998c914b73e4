//! The HTTP endpoints the Hub answers.

use super::World;
use crate::http::Route;
use serde_json::{json, Value};

#[test]
fn register_validates_and_names_are_unique_case_insensitively() {
    let mut w = World::new();
    assert_eq!(
        w.register("alice"),
        (201, json!({"id": 1, "username": "alice"}))
    );
    assert_eq!(w.register("ALICE").1["error"], "username_taken");
    assert_eq!(w.register("ALICE").0, 409);
    assert_eq!(w.register("al").1["error"], "invalid_username");
    assert_eq!(w.register(&"a".repeat(33)).1["error"], "invalid_username");
    assert_eq!(w.register(&"a".repeat(32)).0, 201);
    let short = json!({"username": "bob", "password": "1234567"});
    assert_eq!(
        w.http(Route::Register, "POST", "/register", None, short).1["error"],
        "invalid_password"
    );
    let (s, v) = w.http(Route::Register, "POST", "/register", None, json!([1]));
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_json")));
}

#[test]
fn login_gives_a_token_and_wrong_passwords_do_not() {
    let mut w = World::new();
    w.register("alice");
    let ok = json!({"username": "Alice", "password": "password1"});
    let (s, v) = w.http(Route::Login, "POST", "/login", None, ok);
    assert_eq!(s, 200);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["token"].as_str().unwrap().len(), 64);
    let expires = crate::time::rfc3339_ms(w.now.wall_ms + w.hub.cfg.token_ttl.as_millis() as i64);
    assert_eq!(v["expires_at"], expires);
    for (user, pw) in [("alice", "password2"), ("nobody", "password1")] {
        let (s, v) = w.http(
            Route::Login,
            "POST",
            "/login",
            None,
            json!({"username": user, "password": pw}),
        );
        assert_eq!((s, v["error"].as_str()), (401, Some("invalid_credentials")));
    }
}

#[test]
fn logins_are_budgeted_per_address() {
    let mut w = World::new();
    let per_minute = w.hub.cfg.auth_per_minute as usize;
    for _ in 0..per_minute {
        assert_ne!(w.register("someone").0, 429);
    }
    let (s, v) = w.register("another");
    assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")));
    // One attempt comes back every 60/per_minute seconds.
    w.advance(60_000 / per_minute as u64);
    assert_eq!(w.register("another").0, 201);
}

#[test]
fn a_refused_login_says_exactly_how_long_to_wait() {
    let mut w = World::new();
    let per_minute = w.hub.cfg.auth_per_minute as u64;
    for _ in 0..per_minute {
        assert_ne!(w.register("someone").0, 429);
    }
    assert_eq!(w.hub.stats.rate_limited, 0);
    let body = json!({"username": "another", "password": "password1"});
    let resp = w.http_response(Route::Register, "POST", "/register", None, body.clone());
    assert_eq!(resp.status, 429);
    assert_eq!(w.hub.stats.rate_limited, 1, "counted for /metrics");
    // One attempt every 60/per_minute s, rounded up to the next millisecond; the header
    // rounds up to whole seconds.
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    let ms = 60_000 / per_minute + 1;
    assert_eq!(v["retry_after_ms"], ms);
    let header = resp.headers.iter().find(|(n, _)| *n == "Retry-After");
    assert_eq!(header.unwrap().1, ms.div_ceil(1000).to_string());
    // Waiting exactly that long is enough.
    w.advance(ms);
    assert_eq!(w.register("another").0, 201);
}

#[test]
fn pruning_forgets_refilled_login_budgets_only() {
    use std::net::{IpAddr, Ipv4Addr};
    let mut w = World::new();
    let login = |w: &mut World| {
        let body = json!({"username": "nobody", "password": "password1"});
        w.http(Route::Login, "POST", "/login", None, body).0
    };
    let per_minute = w.hub.cfg.auth_per_minute as u64;
    // One address spends its whole budget...
    for _ in 0..per_minute {
        assert_eq!(login(&mut w), 401);
    }
    assert_eq!(login(&mut w), 429);
    // ...and many others try once each.
    let many = crate::config::IP_BUCKETS_PRUNE_AT as u32;
    for i in 0..many {
        w.client_ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        assert_eq!(login(&mut w), 401);
        if i == many - 2 {
            // Exactly IP_BUCKETS_PRUNE_AT budgets are not yet too many to keep.
            w.advance(60_000 / per_minute);
            w.hub.prune(w.now);
            assert_eq!(w.hub.ip_buckets.len(), many as usize);
        }
    }
    // One attempt's worth later, every budget but the first is full again.
    w.advance(60_000 / per_minute);
    w.hub.prune(w.now);
    assert_eq!(w.hub.ip_buckets.len(), 1, "refilled budgets are forgotten");
    // The first address is still limited: two attempts came back, not the whole budget.
    w.client_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(login(&mut w), 401);
    assert_eq!(login(&mut w), 401);
    assert_eq!(login(&mut w), 429);
}

#[test]
fn a_password_pool_failure_is_a_server_error_and_frees_the_name() {
    let mut w = World::new();
    // The pool is down: the client may retry later (503, as for the store).
    w.auth_error = Some(crate::auth::pool::POOL_DOWN.to_string());
    let (s, v) = w.register("alice");
    assert_eq!((s, v["error"].as_str()), (503, Some("overloaded")));
    // Hashing itself failed: an internal error.
    w.auth_error = Some("out of memory".into());
    let (s, v) = w.register("alice");
    assert_eq!((s, v["error"].as_str()), (500, Some("internal")));
    // Neither attempt kept the name reserved.
    w.auth_error = None;
    assert_eq!(w.register("alice").0, 201);
}

#[test]
fn logout_revokes_the_token_and_closes_its_sockets_only() {
    let mut w = World::new();
    let t1 = w.login("alice");
    let t2 = w.login("alice");
    let s1 = w.socket_with(&t1);
    let s2 = w.socket_with(&t2);
    let (s, _) = w.http(Route::Logout, "POST", "/logout", Some(&t1), Value::Null);
    assert_eq!(s, 204);
    assert_eq!(w.closed, vec![(s1, 4001)]);
    assert!(w.hub.socket_token_valid(s2, w.now));
    assert_eq!(
        w.http(Route::Logout, "POST", "/logout", Some(&t1), Value::Null)
            .0,
        401
    );
    assert_eq!(
        w.http(Route::Logout, "POST", "/logout", None, Value::Null)
            .0,
        401
    );
    assert_eq!(
        w.http(Route::Rooms, "GET", "/rooms", Some(&t1), Value::Null)
            .0,
        401
    );
}

#[test]
fn rooms_lists_what_the_user_may_see_with_unread_counts() {
    let mut w = World::new();
    let a = w.socket("alice");
    let tb = w.login("bob");
    w.ws(
        a,
        json!({"type": "create_room", "room": "hidden", "private": true}),
    );
    w.ws(a, json!({"type": "join", "room": "open"}));
    let m = w.send(a, "general", "one")["id"].as_i64().unwrap();
    w.send(a, "general", "two");
    let (s, v) = w.http(Route::Rooms, "GET", "/rooms", Some(&tb), Value::Null);
    assert_eq!(s, 200);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["general", "open"]);
    let general = &v[0];
    assert_eq!(
        (general["unread"].as_i64(), general["members"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (general["online"].as_i64(), general["last_id"].as_i64()),
        (Some(1), Some(m + 1))
    );
    assert_eq!(v[1]["member"], false);
    // Bob reads one: one left unread. His own messages never count.
    let b = w.socket_with(&tb);
    w.ws(b, json!({"type": "seen", "room": "general", "id": m}));
    w.send(b, "general", "mine");
    let (_, v) = w.http(Route::Rooms, "GET", "/rooms", Some(&tb), Value::Null);
    assert_eq!(v[0]["unread"], 1);
}

#[test]
fn http_history_checks_access_and_parameters() {
    let mut w = World::new();
    let a = w.socket("alice");
    let tb = w.login("bob");
    let ta = w.login("alice");
    let ids: Vec<i64> = (0..12)
        .map(|i| {
            w.send(a, "general", &format!("m{i}"))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    w.ws(
        a,
        json!({"type": "create_room", "room": "priv", "private": true}),
    );
    let history = |room: &str| Route::History { room: room.into() };
    let (s, v) = w.http(
        history("general"),
        "GET",
        "/x?limit=2",
        Some(&tb),
        Value::Null,
    );
    assert_eq!(s, 200);
    assert_eq!(v["messages"][1]["id"], ids[11]);
    assert_eq!(v["has_more"], true);
    // Older than the ring: the reader answers.
    let q = format!("/x?before={}&limit=5", ids[3]);
    let (s, v) = w.http(history("general"), "GET", &q, Some(&tb), Value::Null);
    assert_eq!((s, v["messages"].as_array().unwrap().len()), (200, 3));
    assert_eq!(v["has_more"], false);
    assert_eq!(
        w.http(history("priv"), "GET", "/x", Some(&tb), Value::Null)
            .0,
        403
    );
    assert_eq!(
        w.http(history("priv"), "GET", "/x", Some(&ta), Value::Null)
            .0,
        200
    );
    assert_eq!(
        w.http(history("nope"), "GET", "/x", Some(&tb), Value::Null)
            .0,
        404
    );
    assert_eq!(
        w.http(history(""), "GET", "/x", Some(&tb), Value::Null).0,
        404
    );
    assert_eq!(
        w.http(
            history("general"),
            "GET",
            "/x?before=-1",
            Some(&tb),
            Value::Null
        )
        .0,
        400
    );
    assert_eq!(
        w.http(
            history("general"),
            "GET",
            "/x?limit=x",
            Some(&tb),
            Value::Null
        )
        .0,
        400
    );
    assert_eq!(
        w.http(history("general"), "GET", "/x", None, Value::Null).0,
        401
    );
    // Limits are clamped, huge numbers included.
    let (_, v) = w.http(
        history("general"),
        "GET",
        "/x?limit=0",
        Some(&tb),
        Value::Null,
    );
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    let q = format!("/x?limit={}&before={}", u64::MAX, u64::MAX);
    assert_eq!(
        w.http(history("general"), "GET", &q, Some(&tb), Value::Null)
            .0,
        200
    );
}

#[test]
fn search_needs_a_query_and_sees_only_readable_rooms() {
    let mut w = World::new();
    let a = w.socket("alice");
    let tb = w.login("bob");
    w.ws(
        a,
        json!({"type": "create_room", "room": "priv", "private": true}),
    );
    w.ws(a, json!({"type": "join", "room": "open"}));
    w.send(a, "general", "needle in general");
    w.send(a, "priv", "needle in private");
    w.send(a, "open", "needle in open");
    let (s, v) = w.http(
        Route::Search,
        "GET",
        "/search?q=needle",
        Some(&tb),
        Value::Null,
    );
    assert_eq!(s, 200);
    // Public rooms are searched whether or not bob is in them; private ones are not.
    let rooms: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["room"].as_str().unwrap())
        .collect();
    assert_eq!(rooms, ["general", "open"]);
    assert_eq!(
        w.http(
            Route::Search,
            "GET",
            "/search?q=needle&room=priv",
            Some(&tb),
            Value::Null
        )
        .0,
        403
    );
    assert_eq!(
        w.http(
            Route::Search,
            "GET",
            "/search?q=%20",
            Some(&tb),
            Value::Null
        )
        .0,
        400
    );
    let long = format!("/search?q={}", "a".repeat(501));
    assert_eq!(
        w.http(Route::Search, "GET", &long, Some(&tb), Value::Null)
            .0,
        400
    );
    let max = format!("/search?q={}", "a".repeat(500));
    assert_eq!(
        w.http(Route::Search, "GET", &max, Some(&tb), Value::Null).0,
        200
    );
    assert_eq!(
        w.http(Route::Search, "GET", "/search?q=x", None, Value::Null)
            .0,
        401
    );
}

#[test]
fn registration_survives_a_storage_failure_without_taking_the_name() {
    let mut w = World::new();
    w.storage_ok = false;
    assert_eq!(w.register("alice").0, 503);
    w.storage_ok = true;
    assert_eq!(w.register("alice").0, 201);
}

#[test]
fn admin_rights_come_from_the_database_not_from_a_name() {
    let mut cfg = super::config();
    // --admin applies at start-up to existing accounts only (in the reactor); the Hub
    // itself never looks at names.
    cfg.admins = vec!["boss".into()];
    let mut w = World::with_config(cfg);
    let boss = w.login("boss");
    let (s, _) = w.admin(Route::AdminAudit, "/admin/audit", &boss, Value::Null);
    assert_eq!(s, 403, "registering the name gives nothing");
    w.make_admin("boss");
    let (s, v) = w.admin(Route::AdminAudit, "/admin/audit", &boss, Value::Null);
    assert_eq!(s, 200);
    let e = &v["entries"][0];
    assert_eq!(
        (e["action"].as_str(), e["target"].as_str()),
        (Some("grant_admin"), Some("boss"))
    );
    assert_eq!(
        w.admin(Route::AdminAudit, "/x", "bad-token", Value::Null).0,
        401
    );
}

#[test]
fn suspension_closes_sockets_refuses_login_and_is_audited() {
    let mut w = World::new();
    let boss = w.login("boss");
    w.make_admin("boss");
    let m = w.socket("mallory");
    let token = w.login("mallory");
    let suspend = |on| Route::AdminSuspend {
        user: "Mallory".into(),
        on,
    };
    let (s, _) = w.admin(suspend(true), "/x", &boss, Value::Null);
    assert_eq!(s, 204);
    assert_eq!(w.closed, vec![(m, 4001)]);
    assert_eq!(
        w.http(Route::Rooms, "GET", "/rooms", Some(&token), Value::Null)
            .0,
        401
    );
    let body = json!({"username": "mallory", "password": "password1"});
    let (s, v) = w.http(Route::Login, "POST", "/login", None, body.clone());
    assert_eq!((s, v["error"].as_str()), (403, Some("suspended")));
    let c = w.conn();
    assert_eq!(w.hub.open_socket(c, &token, w.now).unwrap_err().status, 401);
    // A wrong password still says only that.
    let wrong = json!({"username": "mallory", "password": "password2"});
    assert_eq!(w.http(Route::Login, "POST", "/login", None, wrong).0, 401);
    assert_eq!(w.admin(suspend(false), "/x", &boss, Value::Null).0, 204);
    assert_eq!(w.http(Route::Login, "POST", "/login", None, body).0, 200);
    let (_, v) = w.admin(Route::AdminAudit, "/admin/audit", &boss, Value::Null);
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["unsuspend", "suspend", "grant_admin"]);
    assert_eq!(v["entries"][0]["actor"], "boss");
    assert_eq!(v["entries"][0]["target"], "mallory");
    let own = Route::AdminSuspend {
        user: "boss".into(),
        on: true,
    };
    assert_eq!(w.admin(own, "/x", &boss, Value::Null).0, 400);
    let nobody = Route::AdminSuspend {
        user: "nobody".into(),
        on: true,
    };
    assert_eq!(w.admin(nobody, "/x", &boss, Value::Null).0, 404);
}

#[test]
fn admins_remove_a_user_from_a_room() {
    let mut w = World::new();
    let boss = w.login("boss");
    w.make_admin("boss");
    let a = w.socket("alice");
    let m = w.socket("mallory");
    w.ws(a, json!({"type": "join", "room": "ops"}));
    w.ws(m, json!({"type": "join", "room": "ops"}));
    let remove = || Route::AdminRemove { room: "ops".into() };
    let (s, _) = w.admin(remove(), "/x", &boss, json!({"user": "mallory"}));
    assert_eq!(s, 204);
    let left = super::World::one(&w.take(m), "left").clone();
    assert_eq!(
        (left["room"].as_str(), left["removed_by"].as_str()),
        (Some("ops"), Some("boss"))
    );
    w.send(a, "ops", "after");
    assert!(w.take(m).iter().all(|f| f["type"] != "message"));
    assert_eq!(
        w.admin(remove(), "/x", &boss, json!({"user": "mallory"})).0,
        403,
        "not a member any more"
    );
    assert_eq!(w.admin(remove(), "/x", &boss, json!({})).0, 400);
    let tm = w.login("mallory");
    assert_eq!(
        w.admin(remove(), "/x", &tm, json!({"user": "alice"})).0,
        403
    );
    let (_, v) = w.admin(Route::AdminAudit, "/admin/audit", &boss, Value::Null);
    assert_eq!(v["entries"][0]["target"], "mallory from ops");
}

#[test]
fn flags_changed_outside_are_followed_and_audited() {
    let mut w = World::new();
    let boss = w.login("boss");
    w.make_admin("boss");
    let c = w.socket("carol");
    let token = w.login("carol");
    let carol = w.hub.user_by_name("carol").unwrap();
    w.db_flags(vec![(carol, true, false)]);
    assert!(w.closed.is_empty(), "granting admin closes nothing");
    w.db_flags(vec![(carol, false, true)]);
    assert_eq!(w.closed, vec![(c, 4001)]);
    assert_eq!(
        w.http(Route::Rooms, "GET", "/rooms", Some(&token), Value::Null)
            .0,
        401
    );
    let audit = |w: &mut World| {
        let (_, v) = w.admin(Route::AdminAudit, "/admin/audit", &boss, Value::Null);
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e["action"].as_str().unwrap(), e["target"]))
            .collect::<Vec<String>>()
    };
    assert_eq!(
        audit(&mut w),
        [
            "revoke_admin \"carol\"",
            "grant_admin \"carol\"",
            "grant_admin \"boss\""
        ]
    );
    // The newest AUDIT_KEPT entries are kept.
    let kept = crate::store::load::AUDIT_KEPT;
    for i in 0..kept {
        w.db_flags(vec![(carol, i % 2 == 0, true)]);
    }
    let entries = audit(&mut w);
    assert_eq!(entries.len(), kept);
    assert_eq!(entries[0], "revoke_admin \"carol\"");
    assert_eq!(entries[kept - 1], "grant_admin \"carol\"");
}

#[test]
fn an_admin_disconnects_a_users_sockets_and_a_suspension_revokes_only_theirs() {
    let mut w = World::new();
    let boss = w.login("boss");
    w.make_admin("boss");
    let (m1, m2) = (w.socket("mallory"), w.socket("mallory"));
    w.socket("bob");
    let disconnect = |user: &str| Route::AdminDisconnect { user: user.into() };
    let (s, _) = w.admin(disconnect("mallory"), "/x", &boss, Value::Null);
    assert_eq!(s, 204);
    assert_eq!(w.closed, vec![(m1, 4003), (m2, 4003)]);
    let (s, v) = w.admin(disconnect("nobody"), "/x", &boss, Value::Null);
    assert_eq!((s, v["error"].as_str()), (404, Some("no_such_user")));
    let [mallory, bob] = ["mallory", "bob"].map(|n| w.hub.user_by_name(n).unwrap());
    let sessions = |w: &World, user| -> Vec<crate::auth::TokenHash> {
        let of = w.hub.tokens.iter().filter(|(_, t)| t.user_id == user);
        of.map(|(h, _)| *h).collect()
    };
    let (hers, his) = (sessions(&w, mallory), sessions(&w, bob));
    assert!(!hers.is_empty() && !his.is_empty());
    let suspend = Route::AdminSuspend {
        user: "mallory".into(),
        on: true,
    };
    assert_eq!(w.admin(suspend, "/x", &boss, Value::Null).0, 204);
    // Hers are remembered as ended (no late look-up or event brings one back); his stay.
    assert!(hers.iter().all(|h| w.hub.revoked.contains(h)));
    assert!(his.iter().all(|h| !w.hub.revoked.contains(h)));
    assert_eq!(sessions(&w, bob), his);
    assert!(sessions(&w, mallory).is_empty());
}
