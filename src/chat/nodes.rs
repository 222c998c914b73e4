//! Cluster mode: presence across nodes. A user is online while any socket of theirs is
//! open on any node. Each node says when a user's first socket opens on it and their last
//! one closes (`Event::Presence`), and every `node_heartbeat` lists everyone it has a
//! socket of (`Event::Alive`), which corrects anything missed. A node not heard from for
//! `node_timeout` is taken for dead: its users go offline here unless another node still
//! has them. In each room a user online elsewhere counts as one more socket
//! (`Room::online_elsewhere`), so member lists, counts and presence events read as they
//! do on one node.

use super::hub::Hub;
use crate::id::UserId;
use crate::store::event::{Event, NodeStats};
use crate::time::Now;
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

/// What all nodes together allow a user with sockets on several of them, in budgets.
pub const CLUSTER_BUDGETS: f64 = 1.5;

/// What this node knows of another.
#[derive(Debug)]
pub struct NodeSeen {
    pub last_heard: Instant,
    pub users: HashSet<UserId>,
    /// As of its last heartbeat.
    pub stats: NodeStats,
}

impl Hub {
    /// A user's first socket opened here (`online`) or their last one closed.
    pub(super) fn local_presence(&mut self, user_id: UserId, online: bool) {
        self.publish(Event::Presence { user_id, online });
    }

    pub(super) fn remote_presence(&mut self, node: &str, user: UserId, online: bool, now: Now) {
        let seen = self.node_heard(node, now);
        if online {
            seen.users.insert(user);
        } else {
            seen.users.remove(&user);
        }
        self.set_elsewhere(user, node, online, now);
    }

    /// A heartbeat: the node's users are exactly `users`.
    pub(super) fn node_alive(
        &mut self,
        node: &str,
        users: Vec<UserId>,
        stats: NodeStats,
        now: Now,
    ) {
        let listed: HashSet<UserId> = users.into_iter().collect();
        let seen = self.node_heard(node, now);
        seen.stats = stats;
        let gone: Vec<UserId> = seen.users.difference(&listed).copied().collect();
        let came: Vec<UserId> = listed.difference(&seen.users).copied().collect();
        seen.users = listed;
        for u in gone {
            self.set_elsewhere(u, node, false, now);
        }
        for u in came {
            self.set_elsewhere(u, node, true, now);
        }
    }

    fn node_heard(&mut self, node: &str, now: Now) -> &mut NodeSeen {
        let seen = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeSeen {
                last_heard: now.mono,
                users: HashSet::new(),
                stats: NodeStats::default(),
            });
        seen.last_heard = now.mono;
        seen
    }

    /// Whether `node` has a socket of `user`; presence changes where that decides it.
    fn set_elsewhere(&mut self, user: UserId, node: &str, on: bool, now: Now) {
        let nodes = self.elsewhere.entry(user).or_default();
        let was = !nodes.is_empty();
        if on {
            nodes.insert(node.to_string());
        } else {
            nodes.remove(node);
        }
        let is = !nodes.is_empty();
        if !is {
            self.elsewhere.remove(&user);
        }
        if was == is {
            return;
        }
        let rooms: Vec<_> = self
            .users
            .get(&user)
            .map(|u| u.rooms.iter().copied().collect())
            .unwrap_or_default();
        for room_id in rooms {
            self.room_elsewhere(room_id, user, is, now);
        }
    }

    /// `user`'s count for sockets elsewhere in one room (also when they join or leave it).
    pub(super) fn room_elsewhere(&mut self, room_id: i64, user: UserId, on: bool, now: Now) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.online_elsewhere(user, on) {
            if !on {
                self.typing_gone(room_id, user);
            }
            self.presence_changed(room_id, user, now);
        }
    }

    /// This node's share of `user`'s budgets. All of it while only this node has their
    /// sockets; with sockets on k nodes, `CLUSTER_BUDGETS / k` on each, so together the
    /// nodes allow at most 1.5 budgets however the sends are spread, without asking anyone
    /// on the way (a user sending through one of three nodes gets half a budget there).
    pub(super) fn budget_share(&self, user: UserId) -> f64 {
        match self.elsewhere.get(&user) {
            Some(nodes) if !nodes.is_empty() => {
                (CLUSTER_BUDGETS / (nodes.len() + 1) as f64).min(1.0)
            }
            _ => 1.0,
        }
    }

    pub(super) fn online_elsewhere(&self, user: UserId) -> bool {
        self.elsewhere.contains_key(&user)
    }

    /// Heartbeats out, dead nodes' users offline. Part of `tick`.
    pub(super) fn node_tick(&mut self, now: Now) {
        if !self.clustered() {
            return;
        }
        if self.next_heartbeat.is_none_or(|at| at <= now.mono) {
            self.next_heartbeat = Some(now.mono + self.cfg.node_heartbeat);
            let users: BTreeSet<UserId> = self
                .users
                .values()
                .filter(|u| !u.conns.is_empty())
                .map(|u| u.id)
                .collect();
            let stats = self.own_stats();
            self.publish(Event::Alive {
                users: users.into_iter().collect(),
                stats,
            });
        }
        let timeout = self.cfg.node_timeout;
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| s.last_heard + timeout <= now.mono)
            .map(|(n, _)| n.clone())
            .collect();
        for node in dead {
            log::warn!("cluster: no word from node {node}; its users are offline here");
            let seen = self.nodes.remove(&node).expect("listed");
            for u in seen.users {
                self.set_elsewhere(u, &node, false, now);
            }
        }
    }

    fn own_stats(&self) -> NodeStats {
        NodeStats {
            websockets: self.sockets.len() as u64,
            users_online: self.users.values().filter(|u| !u.conns.is_empty()).count() as u64,
            messages_stored: self.stats.messages_stored,
        }
    }

    /// Every node as this one knows it (itself now, the others as of their last
    /// heartbeat), and the totals: `/admin/stats?scope=cluster`.
    pub fn cluster_stats(&self, now: Now) -> serde_json::Value {
        let row = |name: &str, s: NodeStats, heard_ms: u64| {
            serde_json::json!({
                "node": name,
                "websockets": s.websockets,
                "users_online": s.users_online,
                "messages_stored_total": s.messages_stored,
                "heard_ms_ago": heard_ms,
            })
        };
        let own = self.own_stats();
        let mut rows = vec![row(&self.cfg.node, own, 0)];
        let mut names: Vec<&String> = self.nodes.keys().collect();
        names.sort();
        let (mut sockets, mut stored) = (own.websockets, own.messages_stored);
        for name in names {
            let seen = &self.nodes[name];
            let ago = now
                .mono
                .saturating_duration_since(seen.last_heard)
                .as_millis() as u64;
            rows.push(row(name, seen.stats, ago));
            sockets += seen.stats.websockets;
            stored += seen.stats.messages_stored;
        }
        // Users online anywhere: here, or on a node that says so.
        let mut online: HashSet<UserId> = self
            .users
            .values()
            .filter(|u| !u.conns.is_empty())
            .map(|u| u.id)
            .collect();
        online.extend(self.elsewhere.keys().copied());
        serde_json::json!({
            "nodes": rows,
            "websockets": sockets,
            "users_online": online.len(),
            "messages_stored_total": stored,
        })
    }

    /// When `node_tick` next has work.
    pub(super) fn node_deadline(&self) -> Option<Instant> {
        if !self.clustered() {
            return None;
        }
        let expiry = self
            .nodes
            .values()
            .map(|s| s.last_heard + self.cfg.node_timeout)
            .min();
        match (self.next_heartbeat, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
