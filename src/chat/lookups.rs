//! Cluster mode: what this node has not heard of yet is asked of the database before it
//! is refused (a token or an account from another node's commit an instant ago), and
//! what ended here stays ended (`Recent`).

use super::effect::Effect;
use super::hub::Hub;
use crate::id::ConnId;
use crate::store::{ReadJob, ReadOp, ReplyTo, StoreError, Via};
use crate::time::Now;

/// Token hashes to remember, newest last, at most `RECENT_TOKENS` of them.
#[derive(Debug, Default)]
pub struct Recent {
    set: std::collections::HashSet<crate::auth::TokenHash>,
    order: std::collections::VecDeque<crate::auth::TokenHash>,
}

/// How many ended (or unknown) tokens a node remembers. The race they guard against (a
/// look-up or a late event against the writer's delete) lasts milliseconds, so this is
/// far more than enough; the bound keeps a flood of logouts from growing memory.
pub const RECENT_TOKENS: usize = 10_000;

impl Recent {
    pub fn insert(&mut self, h: crate::auth::TokenHash) {
        if self.set.insert(h) {
            self.order.push_back(h);
            if self.order.len() > RECENT_TOKENS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, h: &crate::auth::TokenHash) -> bool {
        self.set.contains(h)
    }

    pub fn remove(&mut self, h: &crate::auth::TokenHash) {
        if self.set.remove(h) {
            self.order.retain(|x| x != h);
        }
    }
}

impl Hub {
    /// A WebSocket upgrade with a token this node does not know. In cluster mode the token
    /// may have been issued by another node an instant ago, before its event arrived:
    /// the database is asked (off the reactor) before the upgrade is refused. Each look-up
    /// takes from the address's login budget, so unknown tokens cannot flood the readers.
    /// `None`: refuse now.
    pub fn look_up_token(
        &mut self,
        conn: ConnId,
        ip: std::net::IpAddr,
        token: &str,
        now: Now,
    ) -> Option<Vec<Effect>> {
        if !self.token_unknown(token) || self.ip_limited(ip, now).is_some() {
            return None;
        }
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn,
                via: Via::Http,
            },
            op: ReadOp::Token {
                hash: crate::auth::hash_token(token),
            },
        }));
        Some(self.take_fx())
    }

    /// Whether a request's token is one to ask the database about before refusing it:
    /// in cluster mode, one this node has not heard of.
    pub fn token_unknown(&self, token: &str) -> bool {
        if !self.clustered() || token.is_empty() {
            return false;
        }
        let h = crate::auth::hash_token(token);
        !self.tokens.contains_key(&h) && !self.revoked.contains(&h) && !self.not_found.contains(&h)
    }

    /// A login for a name this node does not know: the database is asked first (the
    /// account may come from another node an instant ago); `user_found` goes on.
    pub(super) fn look_up_login(
        &mut self,
        conn: ConnId,
        ip: std::net::IpAddr,
        username: String,
        password: String,
        user_agent: String,
    ) {
        let name = username.clone();
        self.login_lookups
            .insert(conn, (ip, username, password, user_agent));
        self.fx.push(Effect::Read(ReadJob {
            reply: ReplyTo {
                conn,
                via: Via::Http,
            },
            op: ReadOp::User { name },
        }));
    }

    /// The account looked up for a login (if the database has it) is learnt; the login
    /// goes on with the password check.
    pub(super) fn user_found(
        &mut self,
        to: ReplyTo,
        result: Result<Option<crate::store::load::UserRow>, StoreError>,
        now: Now,
    ) {
        let Some((ip, username, password, user_agent)) = self.login_lookups.remove(&to.conn) else {
            return;
        };
        match result {
            Ok(row) => {
                if let Some(row) = row {
                    self.account_as_stored(row);
                } else if let Some(id) = self.user_by_name(&username) {
                    // Deleted (or renamed away) elsewhere: this node must not let it in.
                    if let Some(u) = self.users.get_mut(&id) {
                        u.pw_hash.clear();
                    }
                }
                self.login_as(to.conn, ip, username, password, user_agent, now);
            }
            Err(_) => self.respond(to.conn, super::hub::storage_unavailable()),
        }
    }

    /// The look-up came back: what the database knows is learnt, and the request or
    /// upgrade handled again (`Effect::Upgrade`); if the database could not answer, it is
    /// told to try again later.
    pub(super) fn token_found(
        &mut self,
        to: ReplyTo,
        hash: crate::auth::TokenHash,
        result: Result<Option<(crate::store::load::UserRow, i64)>, StoreError>,
        now: Now,
    ) {
        // A session ended here, or an account suspended or deleted, while its row was
        // still there to read (the writer deletes after the Hub forgets) stays ended.
        let usable = |u: &crate::store::load::UserRow| u.deleted_at.is_none() && !u.suspended;
        let mut refusal = None;
        match result {
            Ok(None) => self.not_found.insert(hash),
            Ok(Some((user, expires_at))) if usable(&user) && !self.revoked.contains(&hash) => {
                self.not_found.remove(&hash);
                let user_id = user.id;
                self.note_token(hash);
                self.users_added(vec![user]);
                self.tokens.entry(hash).or_insert(super::hub::TokenInfo {
                    user_id,
                    expires_at,
                    last_used: now.wall_ms,
                });
            }
            Ok(Some(_)) => {}
            Err(_) => refusal = Some(super::hub::storage_unavailable()),
        }
        self.fx.push(Effect::Upgrade {
            conn: to.conn,
            refusal,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{Recent, RECENT_TOKENS};

    #[test]
    fn a_removed_token_leaves_the_others_to_age_out_oldest_first() {
        let h = |i: usize| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            b
        };
        let mut r = Recent::default();
        for i in 0..3 {
            r.insert(h(i));
        }
        r.remove(&h(1));
        assert!(!r.contains(&h(1)));
        // Two kept: RECENT_TOKENS - 2 more fill it to the bound, and one more ages out
        // the oldest.
        for i in 3..RECENT_TOKENS + 1 {
            r.insert(h(i));
        }
        assert!(r.contains(&h(0)) && r.contains(&h(2)));
        r.insert(h(RECENT_TOKENS + 1));
        assert!(!r.contains(&h(0)) && r.contains(&h(2)));
    }
}
