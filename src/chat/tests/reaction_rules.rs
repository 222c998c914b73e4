//! Reactions: `react` and `reactors` (docs/PROTOCOL.md), with the fake store's side.

use super::World;
use crate::store::messages::MAX_REACTION_KINDS;
use crate::store::{MessageRow, Reacted, Reaction, StoreError};
use serde_json::{json, Value};

impl World {
    /// The fake database's side of `StoreOp::React`, with the real store's rules.
    pub(super) fn react(
        &mut self,
        id: i64,
        user: i64,
        emoji: &str,
        on: bool,
    ) -> Result<Reacted, StoreError> {
        let m = self.messages.iter().find(|m| m.id == id && !m.deleted);
        let room_id = m.ok_or(StoreError::NotFound)?.room_id;
        if !self
            .hub
            .rooms
            .get(&room_id)
            .is_some_and(|r| r.is_member(user))
        {
            return Err(StoreError::Forbidden);
        }
        let here = |r: &(i64, i64, String)| r.0 == id && r.2 == emoji;
        let mut kinds: Vec<&str> = Vec::new();
        for r in self.reactions.iter().filter(|r| r.0 == id) {
            if !kinds.contains(&r.2.as_str()) {
                kinds.push(&r.2);
            }
        }
        if on && !self.reactions.iter().any(here) && kinds.len() >= MAX_REACTION_KINDS {
            return Err(StoreError::Limit);
        }
        let key = (id, user, emoji.to_string());
        let had = self.reactions.contains(&key);
        let changed = had != on;
        if on && !had {
            self.reactions.push(key);
        } else if !on {
            self.reactions.retain(|r| *r != key);
        }
        Ok(Reacted {
            room_id,
            id,
            user,
            emoji: emoji.to_string(),
            on,
            count: self.reactions.iter().filter(|r| here(r)).count() as u32,
            changed,
        })
    }

    /// Like the store's `fill_reactions` for one reader.
    pub(super) fn fill_reactions(&self, rows: &mut [MessageRow], reader: Option<i64>) {
        for row in rows {
            row.reactions.clear();
            for (id, user, emoji) in &self.reactions {
                if *id != row.id {
                    continue;
                }
                let i = match row.reactions.iter().position(|x| x.emoji == *emoji) {
                    Some(i) => i,
                    None => {
                        row.reactions.push(Reaction {
                            emoji: emoji.clone(),
                            ..Reaction::default()
                        });
                        row.reactions.len() - 1
                    }
                };
                row.reactions[i].count += 1;
                if reader.is_none_or(|r| r == *user) {
                    row.reactions[i].users.push(*user);
                }
            }
        }
    }

    pub(super) fn reactors(
        &self,
        id: i64,
        emoji: &str,
        after: &str,
        limit: usize,
    ) -> Result<(i64, Vec<String>, bool), StoreError> {
        let m = self.messages.iter().find(|m| m.id == id && !m.deleted);
        let room_id = m.ok_or(StoreError::NotFound)?.room_id;
        let mut names: Vec<String> = self
            .reactions
            .iter()
            .filter(|r| r.0 == id && r.2 == emoji)
            .map(|r| self.hub.user_name(r.1).to_string())
            .filter(|n| n.to_lowercase().as_str() > after)
            .collect();
        names.sort_by_key(|n| n.to_lowercase());
        let more = names.len() > limit;
        names.truncate(limit);
        Ok((room_id, names, more))
    }

    fn react_frame(
        &mut self,
        conn: crate::id::ConnId,
        id: &Value,
        emoji: &str,
        on: bool,
    ) -> Vec<Value> {
        self.ws(
            conn,
            json!({"type": "react", "id": id, "emoji": emoji, "on": on, "ref": "r"}),
        )
    }
}

#[test]
fn a_reaction_is_stored_then_broadcast_the_same_to_everyone() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m = w.send(a, "general", "hello");
    w.take(b);
    let got = w.react_frame(b, &m["id"], "👍", true);
    let r = World::one(&got, "reacted");
    assert_eq!(r["ref"], "r", "the reactor's answer has its ref");
    let to_a = w.take(a);
    let seen = World::one(&to_a, "reacted");
    assert_eq!(
        seen,
        &json!({"type": "reacted", "room": "general", "id": m["id"], "emoji": "👍",
                "count": 1, "user": "bob", "on": true})
    );
    assert!(w
        .writes
        .iter()
        .any(|op| matches!(op, crate::store::StoreOp::React { .. })));
    // Alice adds hers: the count is the emoji's aggregate.
    let got = w.react_frame(a, &m["id"], "👍", true);
    assert_eq!(World::one(&got, "reacted")["count"], 2);
    assert_eq!(World::one(&w.take(b), "reacted")["user"], "alice");
}

#[test]
fn saying_the_same_twice_changes_nothing_and_bothers_no_one() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m = w.send(a, "general", "hello");
    w.react_frame(a, &m["id"], "🎉", true);
    w.take(b);
    let again = w.react_frame(a, &m["id"], "🎉", true);
    assert_eq!(World::one(&again, "reacted")["count"], 1);
    assert!(
        w.take(b).is_empty(),
        "no broadcast for a reaction already there"
    );
    // Taking back one never given: answered, count unchanged, no broadcast.
    let back = w.react_frame(b, &m["id"], "🎉", false);
    assert_eq!(World::one(&back, "reacted")["count"], 1);
    assert!(w.take(a).is_empty());
    // Taking back one given: broadcast with the new count, and the emoji goes away.
    let back = w.react_frame(a, &m["id"], "🎉", false);
    assert_eq!(World::one(&back, "reacted")["count"], 0);
    assert_eq!(World::one(&w.take(b), "reacted")["on"], false);
    let j = w.ws(b, json!({"type": "join", "room": "general"}));
    let last = World::one(&j, "joined")["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reactions"], json!({}));
}

#[test]
fn joined_history_and_search_carry_counts_and_mark_the_readers_own() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m = w.send(a, "general", "findable words");
    w.react_frame(a, &m["id"], "👍", true);
    w.react_frame(b, &m["id"], "👍", true);
    w.react_frame(b, &m["id"], "😂", true);
    w.take(a);
    // From the ring (`joined`), per reader.
    let j = w.ws(a, json!({"type": "join", "room": "general"}));
    let h = World::one(&j, "joined")["history"]
        .as_array()
        .unwrap()
        .clone();
    let mine = h.iter().find(|x| x["id"] == m["id"]).unwrap();
    assert_eq!(mine["reactions"], json!({"👍": 2, "😂": 1}));
    assert_eq!(mine["mine"], json!(["👍"]));
    let j = w.ws(b, json!({"type": "join", "room": "general"}));
    let h = World::one(&j, "joined")["history"]
        .as_array()
        .unwrap()
        .clone();
    let theirs = h.iter().find(|x| x["id"] == m["id"]).unwrap();
    assert_eq!(theirs["mine"], json!(["👍", "😂"]));
    // From the ring (`history`).
    let got = w.ws(a, json!({"type": "history", "room": "general"}));
    let page = World::one(&got, "history")["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(page.last().unwrap()["mine"], json!(["👍"]));
    // From the store: search.
    let token = w.login("alice");
    let (status, body) = w.http(
        crate::http::Route::Search,
        "GET",
        "/search?q=findable",
        Some(&token),
        Value::Null,
    );
    assert_eq!(status, 200);
    let hit = &body["messages"][0];
    assert_eq!(hit["reactions"], json!({"👍": 2, "😂": 1}));
    assert_eq!(hit["mine"], json!(["👍"]));
}

#[test]
fn an_edit_keeps_reactions_and_a_deletion_drops_them() {
    let mut w = World::new();
    let a = w.socket("alice");
    let m = w.send(a, "general", "typo");
    w.react_frame(a, &m["id"], "👀", true);
    w.ws(a, json!({"type": "edit", "id": m["id"], "text": "fixed"}));
    let j = w.ws(a, json!({"type": "join", "room": "general"}));
    let last = World::one(&j, "joined")["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["text"].as_str(), &last["reactions"]),
        (Some("fixed"), &json!({"👀": 1}))
    );
    w.ws(a, json!({"type": "delete", "id": m["id"]}));
    let j = w.ws(a, json!({"type": "join", "room": "general"}));
    let last = World::one(&j, "joined")["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reactions"], json!({}));
    // A deleted message takes no reactions.
    let got = w.react_frame(a, &m["id"], "👀", true);
    assert_eq!(World::error_code(&got), "no_such_message");
}

#[test]
fn reacting_is_for_members_with_one_emoji_within_the_limits() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    w.ws(
        a,
        json!({"type": "create_room", "room": "secret", "private": true}),
    );
    let m = w.send(a, "secret", "members only");
    let got = w.react_frame(b, &m["id"], "👍", true);
    assert_eq!(World::error_code(&got), "forbidden");
    assert!(w.take(a).is_empty(), "nothing reached the room");
    let got = w.react_frame(a, &json!(999_999), "👍", true);
    assert_eq!(World::error_code(&got), "no_such_message");
    for bad in ["", "a", "👍👍", "<script>", &"👍\u{200D}".repeat(8)] {
        let got = w.react_frame(a, &m["id"], bad, true);
        assert_eq!(World::error_code(&got), "bad_request", "{bad:?}");
    }
    // At most MAX_REACTION_KINDS different emoji; more of one already there is fine.
    let faces: Vec<String> = (0..MAX_REACTION_KINDS as u32 + 1)
        .map(|i| char::from_u32(0x1F600 + i).unwrap().to_string())
        .collect();
    for f in &faces[..MAX_REACTION_KINDS] {
        assert_eq!(
            World::one(&w.react_frame(a, &m["id"], f, true), "reacted")["count"],
            1
        );
    }
    let got = w.react_frame(a, &m["id"], &faces[MAX_REACTION_KINDS], true);
    assert_eq!(World::error_code(&got), "bad_request");
    w.ws(
        a,
        json!({"type": "invite", "room": "secret", "user": "bob"}),
    );
    w.ws(b, json!({"type": "join", "room": "secret"}));
    let got = w.react_frame(b, &m["id"], &faces[0], true);
    assert_eq!(World::one(&got, "reacted")["count"], 2);
}

#[test]
fn reactions_take_from_the_action_budget() {
    let mut w = World::new();
    let a = w.socket("alice");
    let m = w.send(a, "general", "spam me");
    let burst = w.hub.cfg.action_burst as usize;
    let mut limited = 0;
    for i in 0..burst + 5 {
        let on = i % 2 == 0;
        let got = w.react_frame(a, &m["id"], "👍", on);
        if got.iter().any(|f| f["code"] == "rate_limited") {
            limited += 1;
        }
    }
    assert!(
        limited >= 5,
        "past the burst reactions are refused: {limited}"
    );
}

#[test]
fn reactors_pages_names_to_members_only() {
    let mut w = World::new();
    let a = w.socket("alice");
    let m = w.send(a, "general", "vote");
    for name in ["carol", "bob", "dave"] {
        let s = w.socket(name);
        w.react_frame(s, &m["id"], "👍", true);
    }
    let got = w.ws(
        a,
        json!({"type": "reactors", "id": m["id"], "emoji": "👍", "ref": "p"}),
    );
    let page = World::one(&got, "reactors");
    assert_eq!(page["users"], json!(["bob", "carol", "dave"]));
    assert_eq!(
        (page["more"].as_bool(), page["ref"].as_str()),
        (Some(false), Some("p"))
    );
    let got = w.ws(
        a,
        json!({"type": "reactors", "id": m["id"], "emoji": "👍", "after": "bob"}),
    );
    assert_eq!(
        World::one(&got, "reactors")["users"],
        json!(["carol", "dave"])
    );
    // A private room's reactors are not for outsiders.
    w.ws(
        a,
        json!({"type": "create_room", "room": "hidden", "private": true}),
    );
    let p = w.send(a, "hidden", "x");
    w.react_frame(a, &p["id"], "👍", true);
    let eve = w.socket("eve");
    let got = w.ws(
        eve,
        json!({"type": "reactors", "id": p["id"], "emoji": "👍"}),
    );
    assert_eq!(World::error_code(&got), "forbidden");
}

#[test]
fn reactors_reads_in_flight_are_bounded_per_socket() {
    use crate::chat::Effect;
    use crate::config::MAX_PENDING_READS;
    let mut w = World::new();
    let a = w.socket("alice");
    let m = w.send(a, "general", "vote");
    let req = json!({"type": "reactors", "id": m["id"], "emoji": "👍"}).to_string();
    // Reads not answered yet (their effects are held back) count against the socket.
    for _ in 0..MAX_PENDING_READS {
        let fx = w.hub.handle_ws(a, &req, w.now);
        assert!(matches!(fx[..], [Effect::Read(_)]), "{fx:?}");
    }
    let got = w.ws(
        a,
        json!({"type": "reactors", "id": m["id"], "emoji": "👍", "ref": "x"}),
    );
    let e = World::one(&got, "error");
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (Some("rate_limited"), Some("too many reads in flight"))
    );
}

#[test]
fn taking_a_reaction_back_leaves_the_others_in_memory() {
    let mut w = World::new();
    let a = w.socket("alice");
    let b = w.socket("bob");
    let m = w.send(a, "general", "vote");
    w.react_frame(a, &m["id"], "👍", true);
    w.react_frame(b, &m["id"], "👍", true);
    w.react_frame(b, &m["id"], "👍", false);
    // The page comes from the ring, as each of them sees it.
    let seen_by = |w: &mut World, c| {
        let got = w.ws(c, json!({"type": "history", "room": "general"}));
        World::one(&got, "history")["messages"][0].clone()
    };
    let v = seen_by(&mut w, a);
    assert_eq!(
        (&v["reactions"], &v["mine"]),
        (&json!({"👍": 1}), &json!(["👍"]))
    );
    let v = seen_by(&mut w, b);
    assert_eq!((&v["reactions"], v.get("mine")), (&json!({"👍": 1}), None));
    w.react_frame(a, &m["id"], "👍", false);
    assert_eq!(seen_by(&mut w, a)["reactions"], json!({}));
}
