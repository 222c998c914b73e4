//! The fake store's reader threads: history, search, sessions, exports and reactors
//! from the fake database, with the real readers' rules.

use super::World;
use crate::store::{MessageRow, Outcome, ReadOp};

impl World {
    pub(super) fn read(&self, op: &ReadOp) -> Outcome {
        match op {
            ReadOp::FileAccess { id, user, range } => {
                let allowed = self.messages.iter().any(|m| {
                    !m.deleted
                        && m.attachments.iter().any(|f| f.id == *id)
                        && self
                            .hub
                            .rooms
                            .get(&m.room_id)
                            .is_some_and(|r| r.is_member(*user))
                });
                Outcome::FileAccess {
                    id: id.clone(),
                    range: range.clone(),
                    result: Ok(allowed),
                }
            }
            ReadOp::History {
                room,
                room_id,
                before,
                after,
                limit,
                reader,
            } => {
                let mut rows: Vec<MessageRow> = self
                    .messages
                    .iter()
                    .filter(|m| m.room_id == *room_id)
                    .filter(|m| m.id < *before && after.is_none_or(|a| m.id > a))
                    .cloned()
                    .collect();
                let has_more = rows.len() > *limit;
                if after.is_some() {
                    rows.truncate(*limit);
                } else {
                    rows.drain(..rows.len().saturating_sub(*limit));
                }
                self.fill_reactions(&mut rows, Some(*reader));
                Outcome::History {
                    room: room.clone(),
                    forward: after.is_some(),
                    reader: *reader,
                    result: Ok((rows, has_more)),
                }
            }
            ReadOp::ExportPage {
                user_id,
                after,
                limit,
            } => {
                let mut rows: Vec<MessageRow> = self
                    .messages
                    .iter()
                    .filter(|m| m.user_id == *user_id && m.id > *after)
                    .cloned()
                    .collect();
                let last = rows.len() <= *limit;
                rows.truncate(*limit);
                Outcome::ExportPage(Ok((rows, last)))
            }
            ReadOp::Sessions { user_id, current } => {
                // The fake keeps no session details: the Hub's own tokens stand in.
                let rows = self
                    .hub
                    .tokens
                    .iter()
                    .filter(|(_, t)| t.user_id == *user_id)
                    .map(|(h, t)| crate::store::SessionRow {
                        id: crate::store::session_id(h),
                        created_at: None,
                        last_used: Some(t.last_used),
                        ip: None,
                        user_agent: None,
                        current: h == current,
                    })
                    .collect();
                Outcome::Sessions(Ok(rows))
            }
            ReadOp::Search {
                query,
                room_ids,
                reader,
                ..
            } => {
                let mut rows: Vec<MessageRow> = self
                    .messages
                    .iter()
                    .filter(|m| room_ids.contains(&m.room_id) && m.text.contains(query.as_str()))
                    .cloned()
                    .collect();
                self.fill_reactions(&mut rows, Some(*reader));
                Outcome::Search {
                    reader: *reader,
                    result: Ok((rows, false)),
                }
            }
            // The fake database has the accounts this Hub made, and those of `db_tokens`
            // (made by "another node").
            ReadOp::User { name } => {
                let mine = self.hub.user_by_name(name).and_then(|id| {
                    let u = self.hub.users.get(&id)?;
                    (u.deleted_at.is_none()).then(|| crate::store::load::UserRow {
                        id,
                        username: u.name.clone(),
                        pw_hash: u.pw_hash.clone(),
                        last_seen: u.last_seen,
                        admin: u.admin,
                        suspended: u.suspended,
                        deleted_at: None,
                    })
                });
                let theirs = self
                    .db_tokens
                    .values()
                    .map(|(u, _)| u.clone())
                    .find(|u| u.username.eq_ignore_ascii_case(name));
                Outcome::UserFound(Ok(theirs.or(mine)))
            }
            ReadOp::State => unreachable!("left on its way by World::run"),
            ReadOp::Token { hash } => Outcome::TokenFound {
                hash: *hash,
                result: match self.storage_ok {
                    true => Ok(self.db_tokens.get(hash).cloned()),
                    false => Err(crate::store::StoreError::Unavailable),
                },
            },
            ReadOp::Seqs {
                room: room_id,
                after_seq,
                limit,
            } => {
                let mut rows: Vec<MessageRow> = self
                    .messages
                    .iter()
                    .filter(|m| m.room_id == *room_id && m.seq > *after_seq)
                    .cloned()
                    .collect();
                rows.sort_by_key(|m| m.seq);
                let more = rows.len() > *limit;
                rows.truncate(*limit);
                Outcome::Seqs {
                    room: *room_id,
                    result: Ok((rows, more)),
                }
            }
            ReadOp::Reactors {
                id,
                emoji,
                after,
                limit,
            } => Outcome::Reactors {
                id: *id,
                emoji: emoji.clone(),
                result: self.reactors(*id, emoji, after, *limit),
            },
        }
    }
}
