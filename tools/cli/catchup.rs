//! Getting every message once, in order, across joins and reconnects (`CatchUp`), and
//! how long to wait before connecting again (`Backoff`).

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a `rate_limited` error asks to wait (`retry_after_ms`; a second if it does
/// not say, at most a minute).
pub fn retry_after(v: &Value) -> Duration {
    Duration::from_millis(
        v["retry_after_ms"]
            .as_u64()
            .unwrap_or(1000)
            .clamp(1, 60_000),
    )
}

/// A random number of milliseconds in `0..=max`, from the OS (0 if it cannot say).
pub fn jitter_ms(max: u64) -> u64 {
    getrandom::u64().unwrap_or(0) % (max + 1)
}

/// Jittered exponential backoff for reconnecting: the n-th wait is a random time between
/// half and all of `FIRST · 2ⁿ`, at most `MAX`, so that many clients dropped at once (a
/// server restart) do not all come back in the same instant.
#[derive(Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn next_wait(&mut self) -> Duration {
        let cap = Self::FIRST
            .saturating_mul(1 << self.attempt.min(16))
            .min(Self::MAX);
        self.attempt += 1;
        let half = cap.as_millis() as u64 / 2;
        Duration::from_millis(half + jitter_ms(half))
    }

    /// A connection worked: the next failure starts from `FIRST` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The most joins on their way at once (the server budgets them: 5/s, burst 50).
const JOINS_IN_FLIGHT: usize = 8;

/// Catch-up that goes on past one `joined`. While a room's `join` is queued or on its
/// way, the room's live messages are held back; the `joined` reply lets them out with its
/// history, merged in id order. A `join` with `since` may come back `complete: false`:
/// then what was missed is paged with `history` + `after`, from `since` on (the reply may
/// have held the oldest or, when the server's memory no longer reaches back, the newest
/// part of it: paging from `since` finds all of it, in order) until `has_more` is false,
/// still holding the room's live messages. One page is asked at a time: the server bounds
/// the reads one socket may have waiting. Joins refused for the rate limit are asked again
/// after the wait the server names.
#[derive(Default)]
pub struct CatchUp {
    /// Rooms whose `join` is queued or asked and not answered: its `since` (None for a
    /// plain join, which shows the room's latest messages) and the held live messages.
    joining: HashMap<String, (Option<i64>, Vec<Value>)>,
    /// Joins not sent yet, oldest first.
    queue: VecDeque<String>,
    /// The `ref` of each join on its way, and its room.
    refs: HashMap<String, String>,
    next_ref: u64,
    /// Rooms still paging: where the next page starts, and the held-back messages.
    paging: BTreeMap<String, (i64, Vec<Value>)>,
    /// The room whose page is on its way, if any.
    asked: Option<String>,
    /// A refused request is asked again only after this.
    not_before: Option<Instant>,
}

impl CatchUp {
    /// The `ref` of page requests.
    pub const REF: &'static str = "catchup";

    /// A `join` to send now: after message `since` (None: the room's latest messages).
    pub fn join_request(&mut self, room: &str, since: Option<i64>) -> Value {
        self.joining.insert(room.to_string(), (since, Vec::new()));
        self.queue.retain(|r| r != room);
        self.join_value(room)
    }

    /// A `join` to send when `next_request` says (after a reconnect, many at once).
    pub fn queue_join(&mut self, room: &str, since: Option<i64>) {
        self.joining.insert(room.to_string(), (since, Vec::new()));
        if !self.queue.iter().any(|r| r == room) {
            self.queue.push_back(room.to_string());
        }
    }

    fn join_value(&mut self, room: &str) -> Value {
        self.next_ref += 1;
        let r = format!("j{}", self.next_ref);
        self.refs.insert(r.clone(), room.to_string());
        let mut v = json!({"type": "join", "room": room, "ref": r});
        if let Some((Some(since), _)) = self.joining.get(room) {
            v["since"] = json!(since);
        }
        v
    }

    /// Whether `room` has messages held back (its catch-up is not done).
    pub fn busy(&self, room: &str) -> bool {
        self.paging.contains_key(room) || self.joining.contains_key(room)
    }

    /// Whether a reply or error with this `ref` answers a request of ours.
    pub fn owns(&self, r: &Value) -> bool {
        r.as_str()
            .is_some_and(|r| r == Self::REF || self.refs.contains_key(r))
    }

    /// Whether an error with this `ref` refused one of our joins.
    pub fn is_join(&self, r: &Value) -> bool {
        r.as_str().is_some_and(|r| self.refs.contains_key(r))
    }

    /// A `joined`: the messages to show now, and whether it answered a catch-up (a
    /// `join` with `since`). A catch-up that came back incomplete shows nothing yet and
    /// pages from its `since` instead.
    pub fn joined(&mut self, v: &Value) -> (Vec<Value>, bool) {
        if let Some(r) = v["ref"].as_str() {
            self.refs.remove(r);
        }
        let room = v["room"].as_str().unwrap_or("");
        let history = v["history"].as_array().cloned().unwrap_or_default();
        match self.joining.remove(room) {
            Some((Some(since), held)) if v["complete"] == false => {
                self.paging.insert(room.to_string(), (since, held));
                (Vec::new(), true)
            }
            Some((since, held)) => (merge(history, held), since.is_some()),
            None => (history, false),
        }
    }

    /// A live message: to show now, or held back (None) while its room catches up.
    pub fn message(&mut self, v: &Value) -> Option<Value> {
        let room = v["room"].as_str().unwrap_or("");
        let held = match self.joining.get_mut(room) {
            Some((_, held)) => held,
            None => match self.paging.get_mut(room) {
                Some((_, held)) => held,
                None => return Some(v.clone()),
            },
        };
        held.push(v.clone());
        None
    }

    /// The next request to send, if one is due: a queued join, else a page (one at a
    /// time).
    pub fn next_request(&mut self) -> Option<Value> {
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        self.not_before = None;
        if self.refs.len() < JOINS_IN_FLIGHT {
            if let Some(room) = self.queue.pop_front() {
                return Some(self.join_value(&room));
            }
        }
        if self.asked.is_some() {
            return None;
        }
        let (room, (after, _)) = self.paging.iter().next()?;
        self.asked = Some(room.clone());
        Some(
            json!({"type": "history", "room": room, "after": after, "limit": 200, "ref": Self::REF}),
        )
    }

    /// A page: its messages to show, and once the room is done, the held-back ones.
    pub fn page(&mut self, v: &Value) -> Vec<Value> {
        self.asked = None;
        let room = v["room"].as_str().unwrap_or("");
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs.iter().filter_map(|m| m["id"].as_i64()).max();
        let Some((after, _)) = self.paging.get_mut(room) else {
            return msgs;
        };
        match last {
            Some(id) if v["has_more"] == true => {
                *after = id;
                msgs
            }
            _ => {
                let held = self.paging.remove(room).map(|p| p.1).unwrap_or_default();
                merge(msgs, held)
            }
        }
    }

    /// A join or page of ours was refused: asked again after the wait a rate limit names;
    /// on any other error the room's catch-up ends with what was held back.
    pub fn refused(&mut self, v: &Value) -> Vec<Value> {
        let room = match v["ref"].as_str() {
            Some(Self::REF) => self.asked.take(),
            Some(r) => self.refs.remove(r),
            None => None,
        };
        let Some(room) = room else {
            return Vec::new();
        };
        if v["code"] == "rate_limited" {
            self.not_before = Some(Instant::now() + retry_after(v));
            if self.joining.contains_key(&room) {
                self.queue.push_front(room);
            }
            return Vec::new();
        }
        let held = match self.joining.remove(&room) {
            Some((_, held)) => held,
            None => self.paging.remove(&room).map(|p| p.1).unwrap_or_default(),
        };
        merge(Vec::new(), held)
    }
}

/// Two runs of messages as one, in id order, each id once.
fn merge(mut a: Vec<Value>, b: Vec<Value>) -> Vec<Value> {
    a.extend(b);
    a.sort_by_key(|m| m["id"].as_i64().unwrap_or(0));
    a.dedup_by_key(|m| m["id"].as_i64().unwrap_or(0));
    a
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn msg(room: &str, id: i64) -> Value {
        json!({"type": "message", "id": id, "room": room, "user": "u", "text": format!("m{id}"), "ts": ""})
    }

    pub fn ids(msgs: &[Value]) -> Vec<i64> {
        msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect()
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| b.next_wait()).collect();
        for (n, w) in waits.iter().enumerate() {
            let cap = (Backoff::FIRST * (1 << n)).min(Backoff::MAX);
            assert!(*w >= cap / 2 && *w <= cap, "wait {n}: {w:?} (cap {cap:?})");
        }
        assert!(waits[11] >= Backoff::MAX / 2);
        // Jittered: a few clients do not all wait the same.
        let spread: std::collections::HashSet<Duration> = (0..8)
            .map(|_| {
                let mut b = Backoff::default();
                b.next_wait();
                b.next_wait()
            })
            .collect();
        assert!(spread.len() > 1, "{spread:?}");
        b.reset();
        assert!(b.next_wait() <= Backoff::FIRST);
    }

    /// Live messages that arrive before the `joined` of a catch-up are held and merged
    /// with its history: nothing is shown out of order, nothing twice.
    #[test]
    fn live_messages_wait_for_the_catch_up_join() {
        let mut c = CatchUp::default();
        let j = c.join_request("r", Some(5));
        assert_eq!(
            (j["since"].as_i64(), j["room"].as_str()),
            (Some(5), Some("r"))
        );
        assert!(c.is_join(&j["ref"]));
        assert!(c.message(&msg("r", 9)).is_none(), "held until joined");
        assert_eq!(c.message(&msg("s", 10)).unwrap()["id"], 10);
        let joined = json!({"type": "joined", "room": "r", "ref": j["ref"], "complete": true,
            "history": [msg("r", 6), msg("r", 8), msg("r", 9)]});
        let (msgs, catch_up) = c.joined(&joined);
        assert_eq!((ids(&msgs), catch_up), (vec![6, 8, 9], true));
        assert!(!c.busy("r") && !c.owns(&j["ref"]));
        // A plain join (a room opened by hand) is not a catch-up.
        let j = c.join_request("t", None);
        assert!(j.get("since").is_none());
        let joined =
            json!({"type": "joined", "room": "t", "ref": j["ref"], "history": [msg("t", 3)]});
        assert_eq!(c.joined(&joined), (vec![msg("t", 3)], false));
    }

    /// Queued joins go out a few at a time; one refused for the rate limit goes again
    /// after the wait, first in line.
    #[test]
    fn queued_joins_are_paced_and_retried() {
        let mut c = CatchUp::default();
        for i in 0..10 {
            c.queue_join(&format!("r{i}"), Some(i));
        }
        let sent: Vec<Value> = std::iter::from_fn(|| c.next_request()).collect();
        assert_eq!(sent.len(), JOINS_IN_FLIGHT);
        let refused = json!({"type": "error", "code": "rate_limited", "retry_after_ms": 30, "ref": sent[0]["ref"]});
        assert!(c.refused(&refused).is_empty());
        assert!(c.busy("r0"));
        assert!(c.next_request().is_none(), "not before the wait");
        std::thread::sleep(Duration::from_millis(40));
        let again = c.next_request().unwrap();
        assert_eq!(
            (again["room"].as_str(), again["since"].as_i64()),
            (Some("r0"), Some(0))
        );
        // Any other refusal ends that room's catch-up with what was held.
        assert!(c.message(&msg("r1", 50)).is_none());
        let gone = json!({"type": "error", "code": "no_such_room", "ref": sent[1]["ref"]});
        assert_eq!(ids(&c.refused(&gone)), [50]);
        assert!(!c.busy("r1"));
    }

    /// An incomplete catch-up pages from `since` (whichever part `joined` held), holds
    /// live messages back, and lets everything out in order.
    #[test]
    fn an_incomplete_catch_up_pages_forward_and_holds_live_messages() {
        let mut c = CatchUp::default();
        let j = c.join_request("r", Some(5));
        assert!(c.message(&msg("r", 89)).is_none(), "held while joining");
        // The newest part came (the server no longer had the rest in memory).
        let joined = json!({"type": "joined", "room": "r", "ref": j["ref"], "complete": false, "history": [msg("r", 90), msg("r", 91)]});
        assert_eq!(c.joined(&joined), (vec![], true));
        assert!(c.busy("r"));
        let ask = c.next_request().unwrap();
        assert_eq!(
            (ask["after"].as_i64(), ask["ref"].as_str()),
            (Some(5), Some("catchup"))
        );
        assert!(c.next_request().is_none(), "one page at a time");
        assert!(c.message(&msg("r", 92)).is_none(), "held back");
        assert_eq!(c.message(&msg("other", 93)).unwrap()["id"], 93);
        let page = json!({"type": "history", "room": "r", "has_more": true, "messages": [msg("r", 6), msg("r", 7)]});
        assert_eq!(ids(&c.page(&page)), [6, 7]);
        // Rate limited: asked again after the wait.
        let ask = c.next_request().unwrap();
        assert_eq!(ask["after"], 7);
        let refused = json!({"type": "error", "code": "rate_limited", "retry_after_ms": 30, "ref": "catchup"});
        assert!(c.refused(&refused).is_empty());
        assert!(c.next_request().is_none(), "not before the wait");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.next_request().unwrap()["after"], 7);
        assert!(c.message(&msg("r", 94)).is_none());
        let page = json!({"type": "history", "room": "r", "has_more": false, "messages": [msg("r", 8), msg("r", 89), msg("r", 90), msg("r", 91)]});
        assert_eq!(ids(&c.page(&page)), [8, 89, 90, 91, 92, 94]);
        assert!(!c.busy("r"));
        assert!(c.next_request().is_none());
        assert_eq!(c.message(&msg("r", 95)).unwrap()["id"], 95);
    }
}
