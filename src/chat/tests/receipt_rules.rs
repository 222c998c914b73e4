//! Delivery receipts and which refusals say when to retry.

use super::World;
use serde_json::json;

#[test]
fn delivery_receipts_are_cumulative_and_only_told_in_small_rooms() {
    let mut cfg = super::config();
    cfg.seen_rate = 1e6;
    cfg.seen_burst = 1e6;
    cfg.auth_per_minute = 1e6;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m1 = w.send(a, "general", "one")["id"].as_i64().unwrap();
    let m2 = w.send(a, "general", "two")["id"].as_i64().unwrap();
    w.take(b);
    let got = w.ws(
        b,
        json!({"type": "delivered", "room": "general", "id": m2, "ref": "d"}),
    );
    let d = World::one(&got, "delivered");
    assert_eq!(
        (d["user"].as_str(), d["id"].as_i64(), d["ref"].as_str()),
        (Some("bob"), Some(m2), Some("d"))
    );
    let told = w.take(a);
    assert_eq!(
        World::one(&told, "delivered")["id"],
        m2,
        "the sender hears it"
    );
    // Going back is a no-op that says where the cursor is, and tells nobody.
    let got = w.ws(b, json!({"type": "delivered", "room": "general", "id": m1}));
    assert_eq!(World::one(&got, "delivered")["id"], m2);
    assert!(w.take(a).is_empty());
    let got = w.ws(
        b,
        json!({"type": "delivered", "room": "general", "id": 9999}),
    );
    assert_eq!(World::error_code(&got), "no_such_message");
    let got = w.ws(b, json!({"type": "join", "room": "general"}));
    assert_eq!(World::one(&got, "joined")["delivered"]["bob"], m2);
    // In a room past RECEIPTS_MAX_MEMBERS the cursor is kept but not broadcast.
    for i in 0..crate::config::RECEIPTS_MAX_MEMBERS {
        w.login(&format!("user{i}"));
    }
    let m3 = w.send(a, "general", "three")["id"].as_i64().unwrap();
    w.take(a);
    let got = w.ws(b, json!({"type": "delivered", "room": "general", "id": m3}));
    assert_eq!(World::one(&got, "delivered")["id"], m3);
    assert!(w.take(a).is_empty(), "no receipts in big rooms");
}

#[test]
fn only_rate_limited_errors_say_when_to_retry_or_count_as_limited() {
    let mut w = World::new();
    let a = w.socket("alice");
    let got = w.ws(a, json!({"type": "leave", "room": "general", "ref": "g"}));
    let refused = json!({"type": "error", "code": "bad_request",
        "message": "everyone stays in general", "ref": "g"});
    assert_eq!(got, vec![refused]);
    // A store failure answered later is not a rate limit either.
    let id = w.send(a, "general", "hi")["id"].clone();
    w.storage_ok = false;
    let got = w.ws(
        a,
        json!({"type": "edit", "id": id, "text": "ho", "ref": "e"}),
    );
    let unavailable = json!({"type": "error", "code": "overloaded",
        "message": "storage is unavailable; try again", "ref": "e"});
    assert_eq!(got, vec![unavailable]);
    assert_eq!(w.hub.stats.rate_limited, 0);
    w.storage_ok = true;
    // The leave took one action of the budget.
    for _ in 1..w.hub.cfg.action_burst as usize {
        w.ws(a, json!({"type": "join", "room": "general"}));
    }
    let got = w.ws(a, json!({"type": "join", "room": "general"}));
    let e = World::one(&got, "error");
    let ms = (1000.0 / w.hub.cfg.action_rate) as u64 + 1;
    assert_eq!(
        (e["code"].as_str(), e["retry_after_ms"].as_u64()),
        (Some("rate_limited"), Some(ms))
    );
    assert_eq!(w.hub.stats.rate_limited, 1);
}

#[test]
fn receipts_take_from_their_own_budget_not_the_one_for_actions() {
    let mut cfg = super::config();
    cfg.action_burst = 2.0;
    cfg.action_rate = 0.001;
    let mut w = World::with_config(cfg);
    let a = w.socket("alice");
    let b = w.socket("bob");
    let id = w.send(a, "general", "hi")["id"].as_i64().unwrap();
    let members = json!({"type": "members", "room": "general"});
    for _ in 0..2 {
        World::one(&w.ws(b, members.clone()), "members");
    }
    assert_eq!(World::error_code(&w.ws(b, members)), "rate_limited");
    for kind in ["delivered", "seen"] {
        let got = w.ws(b, json!({"type": kind, "room": "general", "id": id}));
        assert!(got.iter().all(|f| f["type"] != "error"), "{kind}: {got:?}");
    }
}
