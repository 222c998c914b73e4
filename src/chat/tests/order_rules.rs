//! Cluster mode's per-room order around this node's own inserts: a row from elsewhere by a
//! user whose insert is in flight here may be that insert (a retry), so it waits for it.

use super::cluster_rules::{clustered, stored_elsewhere, texts};
use super::World;
use crate::store::event::Event;
use serde_json::json;

/// Alice's first send was stored through another node (with her `client_id`), whose event
/// is slow; she retries here. Returns the world, her socket, bob's, and that row.
fn retry_in_flight() -> (
    World,
    crate::id::ConnId,
    crate::id::ConnId,
    crate::store::MessageRow,
) {
    let (mut w, a, b, row) = stored_elsewhere();
    w.held_writes = Some(Vec::new());
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "hi", "client_id": "c1", "ref": "r"}),
    );
    assert!(texts(&got).is_empty(), "not stored yet: {got:?}");
    (w, a, b, row)
}

#[test]
fn a_row_arriving_while_its_authors_retry_is_in_flight_waits_and_is_answered_once() {
    let (mut w, a, b, row) = retry_in_flight();
    w.remote(Event::Message { row });
    assert!(
        w.take(a).is_empty() && w.take(b).is_empty(),
        "held: it may be the insert in flight"
    );
    w.release_writes(&[]);
    let got = w.take(a);
    assert_eq!(texts(&got), ["hi"], "once, with its ref: {got:?}");
    assert_eq!(World::one(&got, "message")["ref"], "r");
    assert_eq!(texts(&w.take(b)), ["hi"]);
    // Nothing of alice's is held any more: her next message from elsewhere goes at once.
    let next = w.committed_elsewhere(1, "alice", "later");
    w.remote(Event::Message { row: next });
    assert_eq!(texts(&w.take(b)), ["later"]);
    assert_eq!(texts(&w.take(a)), ["later"]);
}

#[test]
fn a_held_row_goes_out_when_the_insert_it_waited_for_fails() {
    let (mut w, a, b, row) = retry_in_flight();
    w.remote(Event::Message { row });
    assert!(w.take(b).is_empty());
    w.release_writes(&[0]);
    let got = w.take(a);
    assert_eq!(World::error_code(&got), "overloaded", "{got:?}");
    assert_eq!(
        texts(&got),
        ["hi"],
        "the row from elsewhere still reaches her: {got:?}"
    );
    assert_eq!(texts(&w.take(b)), ["hi"]);
}

#[test]
fn after_the_bus_reconnects_a_gap_longer_than_one_read_is_read_to_its_end() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let n = crate::chat::cluster::GAP_READ * 2 + 3;
    for i in 1..=n {
        w.committed_elsewhere(1, "alice", &format!("m{i}"));
    }
    // No event of these arrives: the reconnect alone reads them.
    w.outcome(crate::store::Outcome::BusUp);
    let want: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&w.take(b)), want);
    assert_eq!(
        w.seq_reads, 3,
        "each page once, from where the last one ended"
    );
}

#[test]
fn an_edit_from_elsewhere_of_a_message_delivered_here_reaches_everyone() {
    let mut w = clustered();
    let b = w.socket("bob");
    w.login("alice");
    let row = w.committed_elsewhere(1, "alice", "typo");
    w.remote(Event::Message { row: row.clone() });
    assert_eq!(texts(&w.take(b)), ["typo"]);
    let mut edited = row;
    edited.text = "fixed".into();
    edited.edited_at = Some(w.now.wall_ms);
    w.remote(Event::Changed { row: edited });
    let got = w.take(b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (&got[0]["type"], &got[0]["text"]),
        (&json!("edited"), &json!("fixed"))
    );
}
