//! What the interactive client keeps between events, and what it prints for each: every
//! message once (dated when the day changes, with its id), presence only when someone in
//! the room being looked at really comes or goes, read cursors advanced at most once a
//! second per room, and after a reconnect a catch-up from the highest id shown per room.

use crate::catchup::CatchUp;
use crate::show::{day_line, invitation_line, message_line, num, room_label};
use crate::term;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// A room's read cursor is told to the server at most this often.
pub const SEEN_EVERY: Duration = Duration::from_secs(1);

/// `/reactors` asks for at most this many pages (of 50 names) before it prints.
pub const REACTORS_PAGES: usize = 10;

/// The `ref` of `/reactors` requests.
pub const REACTORS_REF: &str = "reactors";

/// Who reacted, as `/reactors` gathers it page by page: the names so far (safe to
/// print), the pages asked, and the request for the next page when it is due.
#[derive(Default)]
struct Reactors {
    names: Vec<String>,
    pages: usize,
    next: Option<Value>,
}

/// The read cursor of one room: the highest id shown, what the server was last told and
/// when.
#[derive(Default)]
struct Seen {
    shown: i64,
    told: i64,
    at: Option<Instant>,
}

#[derive(Default)]
pub struct Chat {
    pub me: String,
    /// The room typed lines go to (the one being looked at).
    pub room: String,
    /// The highest message id shown per room: nothing at or below it is shown again.
    pub last_ids: HashMap<String, i64>,
    /// Each room's newest id when it was first known here (`GET /rooms`) and nothing of
    /// it had been shown: where a catch-up starts if nothing is shown before a reconnect.
    pub baseline: HashMap<String, i64>,
    /// Member and online names of the current room, made safe to print.
    pub who: (Vec<String>, Vec<String>),
    /// The whole counts when `joined` listed only the first names (`members_more`).
    pub who_counts: Option<(i64, i64)>,
    /// Pending invitations: room, and who invited me.
    pub invites: BTreeMap<String, String>,
    pub catch: CatchUp,
    /// Who is online in each room joined on this connection, as last told (raw names):
    /// presence that changes nothing is not shown.
    online: HashMap<String, HashSet<String>>,
    /// The day of the last message shown (local time).
    day: Option<String>,
    seen: HashMap<String, Seen>,
    /// Typed lines until the server has stored them.
    pub outbox: crate::outbox::Outbox,
    /// The `/reactors` listing under way, if any.
    reactors: Option<Reactors>,
}

impl Chat {
    pub fn new(me: &str, room: &str) -> Chat {
        Chat {
            me: me.to_string(),
            room: room.to_string(),
            outbox: crate::outbox::Outbox::new(),
            ..Chat::default()
        }
    }

    /// What `hello` tells: the pending invitations not shown yet.
    pub fn hello(&mut self, hello: &Value) -> Vec<String> {
        let mut lines = Vec::new();
        let mut now = BTreeMap::new();
        for i in hello["invitations"].as_array().into_iter().flatten() {
            let (Some(room), by) = (i["room"].as_str(), i["by"].as_str().unwrap_or("")) else {
                continue;
            };
            if !self.invites.contains_key(room) {
                lines.push(invitation_line(room, by));
            }
            now.insert(room.to_string(), by.to_string());
        }
        self.invites = now;
        lines
    }

    /// Where a catch-up of `room` starts: the highest id shown or known, if any.
    pub fn cursor(&self, room: &str) -> Option<i64> {
        match (self.last_ids.get(room), self.baseline.get(room)) {
            (Some(a), Some(b)) => Some(*a.max(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// After a reconnect: queues a `join` with `since` for every room with something
    /// new (`marks`, each room's newest id from `GET /rooms`; without them, every room
    /// known), and always for the room being looked at (its member list is stale).
    /// Live messages of those rooms are held until their catch-up is in.
    pub fn plan_catch_up(&mut self, marks: Option<HashMap<String, i64>>) {
        self.catch = CatchUp::default();
        self.online.clear();
        let current = self.room.clone();
        let mut rooms: Vec<(String, Option<i64>)> = match marks {
            Some(marks) => marks.into_iter().map(|(r, l)| (r, Some(l))).collect(),
            None => self
                .last_ids
                .keys()
                .chain(self.baseline.keys())
                .map(|r| (r.clone(), None))
                .collect(),
        };
        if !rooms.iter().any(|(r, _)| *r == current) {
            rooms.push((current.clone(), None));
        }
        // The room being looked at first, then by name.
        rooms.sort_by(|a, b| (a.0 != current, &a.0).cmp(&(b.0 != current, &b.0)));
        rooms.dedup_by(|a, b| a.0 == b.0);
        for (room, newest) in rooms {
            match (self.cursor(&room), newest) {
                (Some(c), Some(n)) if n <= c && room != current => {}
                (Some(c), _) => self.catch.queue_join(&room, Some(c)),
                (None, _) if room == current => self.catch.queue_join(&room, None),
                // A room new to this client (joined elsewhere meanwhile): from now on.
                (None, Some(n)) => {
                    self.baseline.insert(room, n);
                }
                (None, None) => {}
            }
        }
    }

    /// A message to show, unless it was shown already; with the day's line before it
    /// when the day changed.
    fn show(&mut self, m: &Value) -> Option<String> {
        let r = m["room"].as_str().unwrap_or("").to_string();
        let id = m["id"].as_i64().unwrap_or(0);
        let shown = self.last_ids.entry(r.clone()).or_insert(0);
        if id <= *shown {
            return None;
        }
        *shown = id;
        let seen = self.seen.entry(r).or_default();
        seen.shown = seen.shown.max(id);
        let line = message_line(m, &self.me, true, false);
        let ts = m["ts"].as_str().unwrap_or("");
        match day_line(ts) {
            Some(day) if self.day.as_ref() != Some(&day) => {
                self.day = Some(day.clone());
                Some(format!("{day}\n{line}"))
            }
            _ => Some(line),
        }
    }

    /// Messages to show, each once, as lines; None if there are none.
    fn show_all(&mut self, msgs: &[Value]) -> Option<String> {
        let lines: Vec<String> = msgs.iter().filter_map(|m| self.show(m)).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// `seen` requests due now: for each room with messages shown since the server was
    /// last told, the highest id (the cursor is cumulative), at most once a second.
    pub fn seen_requests(&mut self, now: Instant) -> Vec<Value> {
        let mut out = Vec::new();
        for (room, s) in &mut self.seen {
            if s.shown > s.told && s.at.is_none_or(|t| now >= t + SEEN_EVERY) {
                s.told = s.shown;
                s.at = Some(now);
                out.push(json!({"type": "seen", "room": room, "id": s.shown, "ref": "seen"}));
            }
        }
        out
    }

    /// `/reactors ID EMOJI`: the first page's request. A listing under way is dropped.
    pub fn reactors_request(&mut self, id: i64, emoji: &str) -> Value {
        self.reactors = Some(Reactors {
            pages: 1,
            ..Reactors::default()
        });
        json!({"type": "reactors", "id": id, "emoji": emoji, "ref": REACTORS_REF})
    }

    /// The next page of a `/reactors` listing, when one is due.
    pub fn reactors_next(&mut self) -> Option<Value> {
        self.reactors.as_mut()?.next.take()
    }

    /// A page of `/reactors`: nothing to print while more pages are asked for, then the
    /// whole list on one line.
    fn reactors_page(&mut self, v: &Value) -> Option<String> {
        let list = self.reactors.as_mut()?;
        let raw: Vec<&str> = v["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        list.names.extend(raw.iter().map(|n| term::safe(n)));
        let more = v["more"] == true;
        match (v["id"].as_i64(), v["emoji"].as_str(), raw.last()) {
            (Some(id), Some(emoji), Some(after)) if more && list.pages < REACTORS_PAGES => {
                list.pages += 1;
                list.next = Some(
                    json!({"type": "reactors", "id": id, "emoji": emoji, "after": after, "ref": REACTORS_REF}),
                );
                return None;
            }
            _ => {}
        }
        let list = self.reactors.take()?;
        let what = format!(
            "{} on #{} in {}",
            term::safe(v["emoji"].as_str().unwrap_or("")),
            num(&v["id"]),
            self.label(v["room"].as_str().unwrap_or(""))
        );
        Some(if list.names.is_empty() {
            format!("* no {what}")
        } else {
            format!(
                "* {what}: {}{}",
                list.names.join(", "),
                if more { ", and more" } else { "" }
            )
        })
    }

    /// The label of a room for this user (`@bob` for a conversation with bob).
    pub fn label(&self, room: &str) -> String {
        room_label(room, &self.me)
    }

    /// What the interactive client prints for an event, if anything.
    pub fn describe(&mut self, v: &Value) -> Option<String> {
        let names = |x: &Value| -> Vec<String> {
            x.as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(term::safe))
                .collect()
        };
        let s = |k: &str| term::safe(v[k].as_str().unwrap_or(""));
        let room = v["room"].as_str().unwrap_or("");
        match v["type"].as_str()? {
            "message" => {
                let m = self.catch.message(v)?;
                self.show(&m)
            }
            "joined" => {
                self.invites.remove(room);
                let online: HashSet<String> = v["online"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect();
                let online_count = v["online_count"].as_i64().unwrap_or(online.len() as i64);
                self.online.insert(room.to_string(), online);
                if room == self.room {
                    self.who = (names(&v["members"]), names(&v["online"]));
                    self.who_counts = (v["members_more"] == true).then(|| {
                        (
                            v["member_count"].as_i64().unwrap_or(0),
                            v["online_count"].as_i64().unwrap_or(0),
                        )
                    });
                }
                let (msgs, catch_up) = self.catch.joined(v);
                let mut lines = Vec::new();
                if !catch_up {
                    lines.push(format!(
                        "* joined {} ({online_count} online)",
                        self.label(room)
                    ));
                }
                lines.extend(self.show_all(&msgs));
                if self.catch.busy(room) {
                    lines.push(format!("* catching up on {}…", self.label(room)));
                }
                self.last_ids.entry(room.to_string()).or_insert(0);
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            "history" if v["ref"] == CatchUp::REF => {
                let msgs = self.catch.page(v);
                self.show_all(&msgs)
            }
            "history" => {
                let msgs: Vec<String> = v["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| message_line(m, &self.me, true, true))
                    .collect();
                Some(if msgs.is_empty() {
                    "* no older messages".into()
                } else {
                    msgs.join("\n")
                })
            }
            "left" => {
                self.online.remove(room);
                Some(format!("* left {}", self.label(room)))
            }
            "edited" => Some(format!(
                "* message #{} in {} edited: {}",
                num(&v["id"]),
                self.label(room),
                term::safe_lines(v["text"].as_str().unwrap_or(""), "    ")
            )),
            "deleted" => Some(format!(
                "* message #{} in {} deleted",
                num(&v["id"]),
                self.label(room)
            )),
            // Everyone's, mine too (the server's answer to my `/react`), with the new count.
            "reacted" => {
                let (did, to) = if v["on"] == false {
                    ("took back", "on")
                } else {
                    ("reacted", "to")
                };
                Some(format!(
                    "* {} {did} {} {to} #{} in {} (now {})",
                    s("user"),
                    s("emoji"),
                    num(&v["id"]),
                    self.label(room),
                    num(&v["count"])
                ))
            }
            "reactors" if v["ref"] == REACTORS_REF => self.reactors_page(v),
            // Typing in the room being looked at, or to me directly.
            "typing"
                if v["active"] == true
                    && v["user"] != self.me.as_str()
                    && (room == self.room || room.starts_with("dm:")) =>
            {
                Some(format!(
                    "* {} is typing in {}…",
                    s("user"),
                    self.label(room)
                ))
            }
            "presence" => {
                let user = v["user"].as_str()?;
                let known = self.online.get_mut(room)?;
                let changed = match v["status"].as_str()? {
                    "online" => known.insert(user.to_string()),
                    "offline" => known.remove(user),
                    _ => false,
                };
                (changed && room == self.room)
                    .then(|| format!("* {} is {} in {}", s("user"), s("status"), self.label(room)))
            }
            // The inviter gets the event too, naming whom they invited.
            "invited" if v["user"].as_str().is_some_and(|u| u != self.me) => {
                Some(format!("* invited {} to #{}", s("user"), s("room")))
            }
            "invited" => {
                let by = v["by"].as_str().unwrap_or("");
                self.invites.insert(room.to_string(), by.to_string());
                Some(invitation_line(room, by))
            }
            "declined" => {
                self.invites.remove(room);
                Some(format!("* declined the invitation to #{}", s("room")))
            }
            "error" if self.catch.owns(&v["ref"]) => {
                let join = self.catch.is_join(&v["ref"]);
                let msgs = self.catch.refused(v);
                let mut lines: Vec<String> = self.show_all(&msgs).into_iter().collect();
                if join && v["code"] != "rate_limited" {
                    lines.push(format!("! {} ({})", s("message"), s("code")));
                }
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            "error" if v["ref"] == REACTORS_REF => {
                self.reactors = None;
                Some(format!("! {} ({})", s("message"), s("code")))
            }
            // Refused typing notices and read cursors are nothing to tell the user.
            "error" if v["ref"] == "typing" || v["ref"] == "seen" => None,
            "error" => Some(format!("! {} ({})", s("message"), s("code"))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catchup::tests::msg;
    use crate::show::tests::utc;

    fn chat() -> Chat {
        Chat::new("alice", "general")
    }

    #[test]
    fn nothing_from_the_server_reaches_the_terminal_raw() {
        let evil = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\r<mallory> fake\u{9b}2J\x7f\nline two";
        let m = json!({"ts": "2026-11-24T09:05:00.000Z", "room": "r\x1b[2J", "user": "b\rob", "text": evil, "id": 7});
        utc();
        let line = message_line(&m, "alice", true, false);
        assert_eq!(
            line,
            "[09:05] #7 r^[[2J <b^Mob> ^[]0;pwned^G^[]52;c;cHduZWQ=^G^M<mallory> fake\u{fffd}2J^?\n    line two"
        );
        let mut st = Chat::new("alice", evil);
        let joined = json!({"type": "joined", "room": evil, "members": [evil], "online": [evil], "history": [m]});
        let events = [
            json!({"type": "message", "id": 7, "ts": "2026-11-24T09:05:00.000Z", "room": "r", "user": "b", "text": evil}),
            json!({"type": "message", "id": 8, "ts": evil, "room": format!("dm:{evil}:alice"), "user": "b", "text": evil}),
            json!({"type": "message", "id": 9, "ts": evil, "room": "r", "user": "b", "text": evil,
                "attachments": [{"id": evil, "name": evil, "size": 1, "type": evil}, {"id": evil, "name": evil, "size": evil}]}),
            json!({"type": "edited", "id": 7, "room": "r", "text": evil}),
            json!({"type": "typing", "active": true, "room": format!("dm:{evil}"), "user": evil}),
            joined,
            json!({"type": "presence", "status": "offline", "room": evil, "user": evil}),
            json!({"type": "invited", "by": evil, "room": evil, "user": evil}),
            json!({"type": "invited", "by": evil, "room": evil, "user": "alice"}),
            json!({"type": "declined", "room": evil}),
            json!({"type": "left", "room": evil}),
            json!({"type": "error", "code": evil, "message": evil}),
            json!({"type": "history", "room": evil, "messages": [m]}),
            json!({"type": "reacted", "room": evil, "id": 7, "emoji": evil, "count": 1, "user": evil, "on": true}),
        ];
        for v in events {
            let out = st.describe(&v).unwrap_or_else(|| panic!("nothing for {v}"));
            assert!(
                !out.contains(['\x1b', '\x07', '\r', '\x7f', '\u{9b}']),
                "{out:?}"
            );
            // Lines break only inside a message's text, and go on indented.
            for cont in out.split('\n').skip(1) {
                assert!(
                    cont.starts_with("    ") || cont.starts_with('[') || cont.starts_with("--"),
                    "{out:?}"
                );
            }
        }
        let v = json!({"type": "joined", "room": "general", "members": [evil], "online": [], "history": []});
        st.describe(&v).unwrap();
        assert!(
            !st.who.0[0].contains(['\x1b', '\x07', '\r', '\n']),
            "{:?}",
            st.who.0
        );
        let hello = json!({"type": "hello", "invitations": [{"room": evil, "by": evil}]});
        let lines = st.hello(&hello);
        assert!(
            !lines[0].contains(['\x1b', '\x07', '\r', '\n']),
            "{lines:?}"
        );
        st.reactors_request(7, "👍");
        let v = json!({"type": "reactors", "ref": "reactors", "room": evil, "id": 7, "emoji": evil, "users": [evil], "more": false});
        let out = st.describe(&v).unwrap();
        assert!(
            !out.contains(['\x1b', '\x07', '\r', '\n', '\x7f', '\u{9b}']),
            "{out:?}"
        );
    }

    #[test]
    fn messages_show_once_with_ids_and_a_line_for_each_new_day() {
        utc();
        let mut st = chat();
        let at = |id: i64, ts: &str| json!({"type": "message", "id": id, "ts": ts, "room": "general", "user": "bob", "text": "hi"});
        assert_eq!(
            st.describe(&at(3, "2026-11-24T23:59:00.000Z")).unwrap(),
            "-- Tue 2026-11-24 --\n[23:59] #3 general <bob> hi"
        );
        assert!(
            st.describe(&at(3, "2026-11-24T23:59:00.000Z")).is_none(),
            "shown once"
        );
        assert_eq!(
            st.describe(&at(4, "2026-11-24T23:59:30.000Z")).unwrap(),
            "[23:59] #4 general <bob> hi"
        );
        assert_eq!(
            st.describe(&at(5, "2026-11-25T00:00:10.000Z")).unwrap(),
            "-- Wed 2026-11-25 --\n[00:00] #5 general <bob> hi"
        );
        let dm = json!({"type": "message", "id": 6, "ts": "2026-11-25T00:01:00.000Z", "room": "dm:alice:bob", "user": "bob", "text": "psst"});
        assert_eq!(st.describe(&dm).unwrap(), "[00:01] #6 @bob <bob> psst");
    }

    #[test]
    fn reactions_as_they_come_and_who_reacted_page_by_page() {
        let mut st = chat();
        let r = |user: &str, on: bool, count: i64| json!({"type": "reacted", "room": "dm:alice:bob", "id": 42, "emoji": "👍", "count": count, "user": user, "on": on});
        assert_eq!(
            st.describe(&r("bob", true, 3)).unwrap(),
            "* bob reacted 👍 to #42 in @bob (now 3)"
        );
        assert_eq!(
            st.describe(&r("alice", false, 2)).unwrap(),
            "* alice took back 👍 on #42 in @bob (now 2)"
        );
        // A page nobody asked for (another client's) is not shown.
        let page = |users: Vec<String>, more: bool| json!({"type": "reactors", "ref": "reactors", "room": "general", "id": 42, "emoji": "👍", "users": users, "more": more});
        assert!(st.describe(&page(vec!["x".into()], false)).is_none());
        // Pages are asked one after the other and printed together.
        let req = st.reactors_request(42, "👍");
        assert_eq!(
            req,
            json!({"type": "reactors", "id": 42, "emoji": "👍", "ref": "reactors"})
        );
        assert!(st.reactors_next().is_none(), "the first is sent by hand");
        let names = |from: usize| {
            (from..from + 50)
                .map(|i| format!("u{i:03}"))
                .collect::<Vec<_>>()
        };
        assert!(st.describe(&page(names(0), true)).is_none());
        let next = st.reactors_next().unwrap();
        assert_eq!(next["after"], "u049");
        assert!(st.reactors_next().is_none(), "asked once");
        let out = st.describe(&page(vec!["zed".into()], false)).unwrap();
        assert!(
            out.starts_with("* 👍 on #42 in general: u000, u001, ") && out.ends_with(", u049, zed"),
            "{out}"
        );
        // At most REACTORS_PAGES pages, then "and more".
        st.reactors_request(42, "👍");
        for p in 0..REACTORS_PAGES - 1 {
            assert!(st.describe(&page(names(p * 50), true)).is_none());
            assert!(st.reactors_next().is_some());
        }
        let out = st
            .describe(&page(names((REACTORS_PAGES - 1) * 50), true))
            .unwrap();
        assert!(out.ends_with(", u499, and more"), "{out}");
        assert!(st.reactors_next().is_none());
        // Nobody, and a refusal (which ends the listing).
        st.reactors_request(42, "🎉");
        let none = json!({"type": "reactors", "ref": "reactors", "room": "general", "id": 42, "emoji": "🎉", "users": [], "more": false});
        assert_eq!(st.describe(&none).unwrap(), "* no 🎉 on #42 in general");
        st.reactors_request(43, "🎉");
        let refused = json!({"type": "error", "ref": "reactors", "code": "no_such_message", "message": "no such message"});
        assert_eq!(
            st.describe(&refused).unwrap(),
            "! no such message (no_such_message)"
        );
        assert!(st.describe(&none).is_none(), "over");
    }

    #[test]
    fn read_cursors_are_cumulative_and_at_most_once_a_second_per_room() {
        let mut st = chat();
        let t0 = Instant::now();
        assert!(st.seen_requests(t0).is_empty(), "nothing shown yet");
        for id in 1..=5 {
            st.describe(&msg("general", id));
        }
        st.describe(&msg("rust", 6));
        let mut first = st.seen_requests(t0);
        first.sort_by_key(|v| v["id"].as_i64());
        assert_eq!(
            first,
            [
                json!({"type": "seen", "room": "general", "id": 5, "ref": "seen"}),
                json!({"type": "seen", "room": "rust", "id": 6, "ref": "seen"})
            ]
        );
        st.describe(&msg("general", 7));
        st.describe(&msg("general", 8));
        assert!(st.seen_requests(t0 + Duration::from_millis(900)).is_empty());
        assert_eq!(
            st.seen_requests(t0 + SEEN_EVERY),
            [json!({"type": "seen", "room": "general", "id": 8, "ref": "seen"})]
        );
        assert!(
            st.seen_requests(t0 + SEEN_EVERY * 5).is_empty(),
            "nothing new"
        );
    }

    #[test]
    fn presence_only_for_the_room_looked_at_and_only_when_it_changes() {
        let mut st = chat();
        let joined = |room: &str| json!({"type": "joined", "room": room, "members": ["alice", "bob", "carol"], "online": ["alice", "bob"], "history": []});
        st.describe(&joined("general"));
        st.describe(&joined("rust"));
        let p = |room: &str, user: &str, status: &str| json!({"type": "presence", "room": room, "user": user, "status": status});
        assert!(
            st.describe(&p("general", "bob", "online")).is_none(),
            "already online"
        );
        assert_eq!(
            st.describe(&p("general", "carol", "online")).unwrap(),
            "* carol is online in general"
        );
        assert!(st.describe(&p("general", "carol", "online")).is_none());
        assert!(
            st.describe(&p("rust", "carol", "online")).is_none(),
            "not looked at"
        );
        assert!(
            st.describe(&p("ops", "carol", "online")).is_none(),
            "not joined here"
        );
        assert_eq!(
            st.describe(&p("general", "bob", "offline")).unwrap(),
            "* bob is offline in general"
        );
        assert!(st.describe(&p("general", "bob", "offline")).is_none());
        // Typing likewise: the room looked at, or a conversation with me.
        let t = |room: &str| json!({"type": "typing", "room": room, "user": "bob", "active": true});
        assert!(st.describe(&t("general")).is_some());
        assert!(st.describe(&t("rust")).is_none());
        assert_eq!(
            st.describe(&t("dm:alice:bob")).unwrap(),
            "* bob is typing in @bob…"
        );
    }

    #[test]
    fn invitations_are_offered_with_the_commands_to_answer_them() {
        let mut st = Chat::new("bob", "general");
        let hello = json!({"type": "hello", "invitations": [{"room": "secret", "by": "alice"}]});
        assert_eq!(
            st.hello(&hello),
            ["* alice invited you to #secret — /accept secret or /decline secret"]
        );
        assert!(
            st.hello(&hello).is_empty(),
            "told once, also after a reconnect"
        );
        let v = json!({"type": "invited", "room": "plans", "by": "carol", "user": "bob"});
        assert_eq!(
            st.describe(&v).unwrap(),
            "* carol invited you to #plans — /accept plans or /decline plans"
        );
        assert_eq!(st.invites.len(), 2);
        let v = json!({"type": "declined", "room": "plans"});
        assert_eq!(
            st.describe(&v).unwrap(),
            "* declined the invitation to #plans"
        );
        let v = json!({"type": "joined", "room": "secret", "members": ["alice", "bob"], "online": ["bob"], "history": []});
        st.describe(&v).unwrap();
        assert!(st.invites.is_empty());
        // The inviter's copy names the invitee.
        let v = json!({"type": "invited", "room": "secret", "by": "bob", "user": "dave"});
        assert_eq!(st.describe(&v).unwrap(), "* invited dave to #secret");
        assert!(st.invites.is_empty());
    }

    /// After a reconnect: rooms with news (or the room looked at) are joined with `since`
    /// = the highest id shown or known; the others not at all.
    #[test]
    fn a_reconnect_catches_up_from_the_highest_id_shown_per_room() {
        let mut st = chat();
        st.last_ids.insert("general".into(), 10);
        st.last_ids.insert("quiet".into(), 4);
        st.baseline.insert("rust".into(), 20);
        st.baseline.insert("quiet".into(), 3);
        let marks: HashMap<String, i64> = [("general", 12), ("rust", 25), ("quiet", 4), ("new", 9)]
            .into_iter()
            .map(|(r, n)| (r.to_string(), n))
            .collect();
        st.plan_catch_up(Some(marks));
        let joins: Vec<Value> = std::iter::from_fn(|| st.catch.next_request()).collect();
        let asked: Vec<(&str, i64)> = joins
            .iter()
            .map(|j| (j["room"].as_str().unwrap(), j["since"].as_i64().unwrap()))
            .collect();
        assert_eq!(asked, [("general", 10), ("rust", 20)]);
        assert_eq!(st.baseline["new"], 9, "from now on");
        // Held until the catch-up is in, then once and in order.
        assert!(st.describe(&msg("rust", 27)).is_none());
        let joined = json!({"type": "joined", "room": "rust", "ref": joins[1]["ref"], "complete": true, "online": [], "members": [],
            "history": [msg("rust", 21), msg("rust", 25), msg("rust", 27)]});
        let out = st.describe(&joined).unwrap();
        assert_eq!(out.matches("<u>").count(), 3, "{out}");
        assert!(!out.contains("* joined"), "a catch-up is no news: {out}");
        assert!(st.describe(&msg("rust", 27)).is_none());
        // Without the room list: every room known, from where it was.
        st.plan_catch_up(None);
        let mut asked: Vec<(String, i64)> = std::iter::from_fn(|| st.catch.next_request())
            .map(|j| {
                (
                    j["room"].as_str().unwrap().to_string(),
                    j["since"].as_i64().unwrap(),
                )
            })
            .collect();
        asked.sort();
        let want: Vec<(String, i64)> = [("general", 10), ("new", 9), ("quiet", 4), ("rust", 27)]
            .into_iter()
            .map(|(r, n)| (r.to_string(), n))
            .collect();
        assert_eq!(asked, want);
    }

    #[test]
    fn chat_shows_a_paged_catch_up_once_in_order() {
        let mut st = Chat::default();
        st.last_ids.insert("r".into(), 5);
        let j = st.catch.join_request("r", Some(5));
        let joined = json!({"type": "joined", "room": "r", "ref": j["ref"], "complete": false, "members": [], "online": [], "history": [msg("r", 6)]});
        let out = st.describe(&joined).unwrap();
        assert!(out.ends_with("* catching up on r…"), "{out}");
        assert!(st.describe(&msg("r", 9)).is_none());
        st.catch.next_request().unwrap();
        let page = json!({"type": "history", "room": "r", "has_more": false, "ref": "catchup", "messages": [msg("r", 6), msg("r", 8)]});
        let out = st.describe(&page).unwrap();
        assert_eq!(out.matches("<u>").count(), 3, "{out}");
        assert!(
            out.find("m6").unwrap() < out.find("m8").unwrap()
                && out.find("m8").unwrap() < out.find("m9").unwrap()
        );
        assert!(st.describe(&msg("r", 9)).is_none(), "shown once");
    }
}
