//! The HTTP room endpoints: listing pages, invitations and leaving, status codes,
//! conversations kept from others, pages read from the database.

use super::World;
use crate::http::Route;
use serde_json::{json, Value};

/// The names `GET /rooms?QUERY` lists for `token`.
fn room_names(w: &mut World, token: &str, query: &str) -> Vec<String> {
    let path = format!("/rooms?{query}");
    let (s, v) = w.http(Route::Rooms, "GET", &path, Some(token), Value::Null);
    assert_eq!(s, 200, "{v}");
    let rooms = v.as_array().unwrap().iter();
    rooms.map(|r| r["name"].as_str().unwrap().into()).collect()
}

#[test]
fn rooms_are_listed_a_page_at_a_time_by_name() {
    let mut w = World::new();
    let a = w.socket("alice");
    for room in ["b-1", "a-1", "c-2", "b-2"] {
        w.ws(a, json!({"type": "join", "room": room}));
    }
    let t = w.login("alice");
    let all = ["a-1", "b-1", "b-2", "c-2", "general"];
    assert_eq!(room_names(&mut w, &t, ""), all);
    // A page is exactly `limit` long, whether the list is longer or just as long.
    assert_eq!(room_names(&mut w, &t, "limit=4"), all[..4]);
    assert_eq!(room_names(&mut w, &t, "limit=5"), all);
    assert_eq!(room_names(&mut w, &t, "limit=2"), all[..2]);
    // The next page starts after the last name seen, not at it.
    assert_eq!(room_names(&mut w, &t, "limit=2&after=b-1"), all[2..4]);
    assert_eq!(room_names(&mut w, &t, "limit=2&after=c-2"), all[4..]);
    // A search and a cursor both apply.
    assert_eq!(room_names(&mut w, &t, "q=-1"), ["a-1", "b-1"]);
    assert_eq!(room_names(&mut w, &t, "q=-2&after=b-2"), ["c-2"]);
}

#[test]
fn a_refused_chat_request_says_how_long_to_wait_and_is_counted() {
    let mut w = World::new();
    let t = w.login("alice");
    for _ in 0..w.hub.cfg.action_burst as usize {
        assert_eq!(room_names(&mut w, &t, "").len(), 1);
    }
    assert_eq!(w.hub.stats.rate_limited, 0);
    let resp = w.http_response(Route::Rooms, "GET", "/rooms", Some(&t), Value::Null);
    assert_eq!(resp.status, 429);
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    // One action every 1000/action_rate ms, rounded up to the next millisecond.
    let ms = (1000.0 / w.hub.cfg.action_rate) as u64 + 1;
    assert_eq!(
        (v["error"].as_str(), v["retry_after_ms"].as_u64()),
        (Some("rate_limited"), Some(ms))
    );
    let header = resp.headers.iter().find(|(n, _)| *n == "Retry-After");
    assert_eq!(header.unwrap().1, ms.div_ceil(1000).to_string());
    assert_eq!(w.hub.stats.rate_limited, 1, "counted for /metrics");
    let (s, _) = w.http(Route::Rooms, "GET", "/rooms", Some(&t), Value::Null);
    assert_eq!((s, w.hub.stats.rate_limited), (429, 2));
}

#[test]
fn invitations_and_leaving_over_http() {
    let mut w = World::new();
    let a = w.socket("alice");
    let tb = w.login("bob");
    let b = w.socket_with(&tb);
    w.ws(
        a,
        json!({"type": "create_room", "room": "secret", "private": true}),
    );
    w.ws(
        a,
        json!({"type": "invite", "room": "secret", "user": "bob"}),
    );
    let (s, v) = w.http(
        Route::Invitations,
        "GET",
        "/invitations",
        Some(&tb),
        Value::Null,
    );
    assert_eq!((s, v), (200, json!([{"room": "secret", "by": "alice"}])));
    w.ws(b, json!({"type": "join", "room": "x"}));
    w.take(b);
    let leave = |room: &str| Route::Leave { room: room.into() };
    let (s, _) = w.http(leave("x"), "POST", "/rooms/x/leave", Some(&tb), Value::Null);
    assert_eq!(s, 204);
    assert_eq!(w.take(b), vec![json!({"type": "left", "room": "x"})]);
    // Each refusal has the status of its code.
    for (room, status, code) in [
        ("x", 403, "forbidden"),
        ("nope", 404, "no_such_room"),
        ("general", 400, "bad_request"),
    ] {
        let (s, v) = w.http(leave(room), "POST", "/", Some(&tb), Value::Null);
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{room}");
    }
}

#[test]
fn each_error_code_has_its_http_status() {
    use crate::chat::protocol::ErrorCode as E;
    // Leaving (over HTTP and by an admin) reaches only some of these today; the rest are
    // the protocol's mapping for whichever endpoint reports them next.
    for (code, status) in [
        (E::BadRequest, 400),
        (E::UnknownType, 400),
        (E::TooLong, 400),
        (E::Forbidden, 403),
        (E::NoSuchRoom, 404),
        (E::NoSuchMessage, 404),
        (E::RateLimited, 429),
        (E::Overloaded, 503),
    ] {
        assert_eq!(super::super::queries::status_of(code), status, "{code:?}");
    }
}

#[test]
fn a_conversation_is_readable_by_its_two_people_only_and_hidden_from_others() {
    let mut w = World::new();
    let a = w.socket("alice");
    let tb = w.login("bob");
    let tc = w.login("carol");
    w.ws(a, json!({"type": "dm", "to": "bob", "text": "psst"}));
    let history = |room: &str| Route::History { room: room.into() };
    let (s, v) = w.http(history("dm:alice:bob"), "GET", "/", Some(&tb), Value::Null);
    assert_eq!((s, v["messages"][0]["text"].as_str()), (200, Some("psst")));
    // Someone else's conversation and one that does not exist look the same.
    for room in ["dm:alice:bob", "dm:bob:carol"] {
        let (s, v) = w.http(history(room), "GET", "/", Some(&tc), Value::Null);
        assert_eq!(
            (s, v["error"].as_str(), v["message"].as_str()),
            (404, Some("no_such_room"), Some(crate::chat::ws::NO_SUCH_DM)),
            "{room}"
        );
    }
}

#[test]
fn a_page_read_from_the_database_is_cut_to_the_reply_budget_from_its_newest_end() {
    let mut cfg = super::config();
    cfg.msg_burst = 100.0;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let t = w.login("alice");
    // 4,000 control characters are 24,000 bytes of JSON: ten of them fit a reply,
    // eleven do not.
    let nasty = "\u{1}".repeat(4000);
    let mut ids = Vec::new();
    for i in 0..21 {
        let text = if i < 10 { "short" } else { &nasty };
        ids.push(w.send(a, "general", text)["id"].as_i64().unwrap());
    }
    // Newer ones push those out of the ring: the page comes from the database.
    let newer = w.send(a, "general", "newer")["id"].as_i64().unwrap();
    for _ in 0..8 {
        w.send(a, "general", "newer");
    }
    let q = format!("/x?before={newer}&limit=21");
    let route = Route::History {
        room: "general".into(),
    };
    let (s, v) = w.http(route, "GET", &q, Some(&t), Value::Null);
    assert_eq!(s, 200);
    // The ten newest (all long) fit; the older ones are the next page.
    let got: Vec<i64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[11..]);
    assert_eq!(
        v["has_more"], true,
        "the reader said no more, but the cut did"
    );
}

#[test]
fn admins_create_invite_codes_that_expire_in_whole_days() {
    let mut w = World::new();
    let t = w.login("root");
    w.make_admin("root");
    let invite =
        |w: &mut World, body: Value| w.admin(Route::AdminInvite, "/admin/invites", &t, body);
    let (s, v) = invite(&mut w, json!({"uses": 3, "expires_days": 2}));
    let expires = crate::time::rfc3339_ms(w.now.wall_ms + 2 * 86_400_000);
    assert_eq!(
        (s, &v["uses"], &v["expires_at"]),
        (201, &json!(3), &json!(expires))
    );
    assert_eq!(v["code"].as_str().unwrap().len(), 64);
    // One use, for a week, unless told otherwise.
    let (_, v) = invite(&mut w, json!({}));
    let week = crate::time::rfc3339_ms(w.now.wall_ms + 7 * 86_400_000);
    assert_eq!((&v["uses"], &v["expires_at"]), (&json!(1), &json!(week)));
    for body in [
        json!({"uses": 0}),
        json!({"uses": 10_001}),
        json!({"expires_days": 0}),
        json!({"expires_days": 366}),
    ] {
        assert_eq!(invite(&mut w, body.clone()).0, 400, "{body}");
    }
    let (s, _) = invite(&mut w, json!({"uses": 10_000, "expires_days": 365}));
    assert_eq!(s, 201);
}
