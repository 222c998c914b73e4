//! Users, rooms, membership, presence and the per-room ring of recent messages: the
//! Hub's records, plain data with no I/O.

use crate::id::{ConnId, RoomId, UserId};
use crate::store::MessageRow;
use std::collections::{HashMap, HashSet, VecDeque};

pub struct User {
    pub id: i64,
    pub name: String,
    pub pw_hash: String,
    pub last_seen: Option<i64>,
    /// Open WebSocket connections of this user.
    pub conns: Vec<ConnId>,
    /// Rooms the user is a member of.
    pub rooms: HashSet<RoomId>,
    /// Rooms this user created (DMs have no owner).
    pub owned: usize,
    /// Rooms this user is creating (waiting for the store), counted with `owned`.
    pub creating: usize,
    /// Granted in the database (`chatterbox admin grant`), never by a name.
    pub admin: bool,
    /// Suspended by an admin: no login, no WebSocket, until lifted.
    pub suspended: bool,
    /// When the account was deleted (its name is held for `NAME_QUARANTINE_MS`).
    pub deleted_at: Option<i64>,
}

/// An invitation to a private room, waiting for the invitee to join or decline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invite {
    pub room: RoomId,
    pub by: UserId,
}

pub struct Room {
    pub id: i64,
    pub name: String,
    pub private: bool,
    pub owner: Option<i64>,
    /// Member user id → read cursor (highest message id seen).
    pub members: HashMap<UserId, i64>,
    /// Connections receiving this room's events.
    pub conns: HashSet<ConnId>,
    /// Online members → how many of their connections are in `conns`.
    pub online: HashMap<UserId, u32>,
    /// Recent committed messages, oldest first, ids increasing.
    pub ring: VecDeque<MessageRow>,
    /// Highest id dropped from the ring (0: the ring holds the whole history).
    pub evicted_max: i64,
    /// Delivery cursors of members (up to which message they have received), when above 0.
    pub delivered: HashMap<i64, i64>,
    pub last_id: i64,
}

impl Room {
    /// A deleted account's messages in the ring become empty placeholders.
    /// Their reactions go too, and so do all reactions to their messages.
    pub fn blank_messages_of(&mut self, user: i64) {
        for m in self.ring.iter_mut() {
            if m.user_id == user {
                m.text.clear();
                m.deleted = true;
                m.reactions.clear();
                m.attachments.clear();
                continue;
            }
            for r in &mut m.reactions {
                if r.users.contains(&user) {
                    r.users.retain(|u| *u != user);
                    r.count = r.count.saturating_sub(1);
                }
            }
            m.reactions.retain(|r| r.count > 0);
        }
    }

    pub fn new(id: i64, name: String, private: bool, owner: Option<i64>) -> Room {
        Room {
            id,
            name,
            private,
            owner,
            members: HashMap::new(),
            conns: HashSet::new(),
            online: HashMap::new(),
            ring: VecDeque::new(),
            evicted_max: 0,
            delivered: HashMap::new(),
            last_id: 0,
        }
    }

    pub fn is_member(&self, user: i64) -> bool {
        self.members.contains_key(&user)
    }

    /// Appends a committed message, dropping the oldest past `cap`.
    pub fn push(&mut self, row: MessageRow, cap: usize) {
        self.last_id = self.last_id.max(row.id);
        self.ring.push_back(row);
        while self.ring.len() > cap {
            if let Some(old) = self.ring.pop_front() {
                self.evicted_max = self.evicted_max.max(old.id);
            }
        }
    }

    /// Index of the first ring message with id > `id`.
    fn after(&self, id: i64) -> usize {
        self.ring.partition_point(|m| m.id <= id)
    }

    /// The last `n` messages, oldest first.
    pub fn recent(&self, n: usize) -> impl Iterator<Item = &MessageRow> {
        self.ring.iter().skip(self.ring.len().saturating_sub(n))
    }

    /// Messages after `since`, at most `max`, and whether that is all of them.
    pub fn since(&self, since: i64, max: usize) -> (Vec<&MessageRow>, bool) {
        let start = self.after(since);
        let available = self.ring.len() - start;
        let skip = available.saturating_sub(max);
        let msgs: Vec<&MessageRow> = self.ring.iter().skip(start + skip).collect();
        let complete = since >= self.evicted_max && skip == 0;
        (msgs, complete)
    }

    /// A page before `before` from memory, if the ring can answer it exactly:
    /// (messages oldest first, has_more).
    pub fn page_before(&self, before: i64, limit: usize) -> Option<(Vec<&MessageRow>, bool)> {
        let end = self.ring.partition_point(|m| m.id < before);
        if end > limit || self.evicted_max == 0 {
            let start = end.saturating_sub(limit);
            // Older messages exist only before `start`: with any evicted, `end > limit`
            // put `start` inside the ring.
            Some((self.ring.range(start..end).collect(), start > 0))
        } else {
            None
        }
    }

    /// A page after `after` from memory, if the ring holds everything after it:
    /// (messages oldest first, has_more).
    pub fn page_after(&self, after: i64, limit: usize) -> Option<(Vec<&MessageRow>, bool)> {
        if after < self.evicted_max {
            return None;
        }
        let start = self.after(after);
        let end = (start + limit).min(self.ring.len());
        Some((self.ring.range(start..end).collect(), end < self.ring.len()))
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut MessageRow> {
        let i = self.ring.binary_search_by_key(&id, |m| m.id).ok()?;
        self.ring.get_mut(i)
    }

    /// Whether message `id` is in this room, as far as memory can tell: `None` when it is
    /// older than the ring.
    pub fn has_message(&self, id: i64) -> Option<bool> {
        if self.ring.binary_search_by_key(&id, |m| m.id).is_ok() {
            Some(true)
        } else if id <= self.evicted_max {
            None
        } else {
            Some(false)
        }
    }

    /// Unread messages for `user` (others' messages, not deleted, after the cursor);
    /// counted from the ring, so at most its size.
    pub fn unread(&self, user: i64) -> usize {
        let cursor = self.members.get(&user).copied().unwrap_or(0);
        self.ring
            .iter()
            .skip(self.after(cursor))
            .filter(|m| m.user_id != user && !m.deleted)
            .count()
    }

    /// Subscribes a connection of `user`. True if the user just came online here.
    pub fn attach(&mut self, conn: ConnId, user: i64) -> bool {
        if !self.conns.insert(conn) {
            return false;
        }
        self.online_more(user)
    }

    /// Counts `user` online here for sockets on other nodes (cluster mode): one count
    /// while they have any there. True if they just came online in this room.
    pub fn online_elsewhere(&mut self, user: i64, on: bool) -> bool {
        if on {
            self.online_more(user)
        } else {
            self.online_less(user)
        }
    }

    /// One more count online for `user`; true if it is their first.
    fn online_more(&mut self, user: i64) -> bool {
        let n = self.online.entry(user).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// One count fewer online for `user`; true if it was their last.
    fn online_less(&mut self, user: i64) -> bool {
        match self.online.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.online.remove(&user);
                true
            }
            None => false,
        }
    }

    /// Unsubscribes a connection. True if that was the user's last one here.
    pub fn detach(&mut self, conn: ConnId, user: i64) -> bool {
        if !self.conns.remove(&conn) {
            return false;
        }
        self.online_less(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64, user: i64) -> MessageRow {
        MessageRow {
            id,
            room_id: 1,
            user_id: user,
            text: format!("m{id}"),
            ..MessageRow::default()
        }
    }

    #[test]
    fn ring_since_and_pages() {
        let mut r = Room::new(1, "general".into(), false, None);
        for id in 1..=10 {
            r.push(msg(id, 1), 5);
        }
        assert_eq!(r.evicted_max, 5);
        let ids = |v: Vec<&MessageRow>| v.iter().map(|m| m.id).collect::<Vec<_>>();
        let (m, complete) = r.since(7, 1000);
        assert_eq!((ids(m), complete), (vec![8, 9, 10], true));
        let (m, complete) = r.since(2, 1000);
        assert_eq!((ids(m), complete), (vec![6, 7, 8, 9, 10], false));
        let (m, complete) = r.since(5, 2);
        assert_eq!((ids(m), complete), (vec![9, 10], false));
        // From inside the ring too, at most `max`: the newest ones.
        let (m, complete) = r.since(7, 2);
        assert_eq!((ids(m), complete), (vec![9, 10], false));
        let (m, more) = r.page_before(11, 3).unwrap();
        assert_eq!((ids(m), more), (vec![8, 9, 10], true));
        assert!(r.page_before(9, 3).is_none(), "needs the database");
        let (m, more) = r.page_after(5, 2).unwrap();
        assert_eq!((ids(m), more), (vec![6, 7], true));
        let (m, more) = r.page_after(8, 2).unwrap();
        assert_eq!((ids(m), more), (vec![9, 10], false));
        let (m, more) = r.page_after(10, 2).unwrap();
        assert_eq!((ids(m), more), (vec![], false));
        assert!(
            r.page_after(4, 2).is_none(),
            "older than the ring: the database"
        );
        assert_eq!(ids(r.recent(2).collect()), vec![9, 10]);
        assert_eq!(r.has_message(3), None);
        assert_eq!(r.has_message(7), Some(true));
        assert_eq!(r.has_message(11), Some(false));
    }

    #[test]
    fn complete_history_pages_end() {
        let mut r = Room::new(1, "a".into(), false, None);
        for id in [3, 5, 8] {
            r.push(msg(id, 1), 100);
        }
        let (m, more) = r.page_before(8, 10).unwrap();
        assert_eq!((m.len(), more), (2, false));
        let (m, more) = r.page_before(9, 1).unwrap();
        assert_eq!((m[0].id, more), (8, true));
    }

    fn c(key: usize) -> ConnId {
        ConnId { key, serial: 1 }
    }

    #[test]
    fn presence_counts_connections_per_user() {
        let mut r = Room::new(1, "a".into(), false, None);
        assert!(r.attach(c(10), 1));
        assert!(!r.attach(c(11), 1));
        assert!(!r.attach(c(11), 1), "attaching twice changes nothing");
        assert!(r.attach(c(12), 2));
        assert!(!r.detach(c(10), 1));
        assert!(r.detach(c(11), 1));
        assert!(!r.detach(c(11), 1));
        assert_eq!(r.online.len(), 1);
    }

    #[test]
    fn unread_skips_own_and_deleted() {
        let mut r = Room::new(1, "a".into(), false, None);
        r.members.insert(1, 0);
        r.push(msg(1, 2), 10);
        r.push(msg(2, 1), 10);
        let mut d = msg(3, 2);
        d.deleted = true;
        r.push(d, 10);
        r.push(msg(4, 2), 10);
        assert_eq!(r.unread(1), 2);
        r.members.insert(1, 1);
        assert_eq!(r.unread(1), 1);
    }

    #[test]
    fn a_deleted_accounts_messages_go_blank_and_their_reactions_elsewhere_go() {
        use crate::store::Reaction;
        let react = |emoji: &str, users: &[i64]| Reaction {
            emoji: emoji.into(),
            count: users.len() as u32,
            users: users.to_vec(),
        };
        let mut r = Room::new(1, "general".into(), false, None);
        let mut hers = msg(1, 7);
        hers.reactions = vec![react("👍", &[8])];
        hers.attachments = vec![Default::default()];
        let mut his = msg(2, 8);
        his.reactions = vec![react("👍", &[7, 9]), react("❤", &[7])];
        let mine = msg(3, 9);
        for m in [hers, his, mine] {
            r.push(m, 10);
        }
        r.blank_messages_of(7);
        let ring: Vec<_> = r.ring.iter().collect();
        assert!(ring[0].deleted && ring[0].text.is_empty());
        assert!(ring[0].reactions.is_empty() && ring[0].attachments.is_empty());
        assert_eq!(ring[1].text, "m2");
        assert!(!ring[1].deleted);
        assert_eq!(
            ring[1].reactions,
            vec![react("👍", &[9])],
            "hers taken back; ❤ gone"
        );
        assert_eq!((ring[2].text.as_str(), ring[2].deleted), ("m3", false));
    }
}
