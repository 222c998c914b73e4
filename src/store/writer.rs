//! The one thread that writes to the database (SQLite or PostgreSQL).
//!
//! It blocks on its channel, then takes everything already queued (up to `MAX_BATCH`)
//! and applies it in one transaction: one fsync (or WAL append) for many messages. The
//! answers go back only after the commit, with one wake-up of the reactor per batch. If
//! the commit fails, every answer of the batch says `Unavailable` and nothing of it is
//! acknowledged. A lost PostgreSQL connection is the same failure: the writer answers
//! `Unavailable` and reconnects, with backoff, at the next write or probe.

use super::accounts::{delete_account, set_password};
use super::messages::{
    add_file, attach, change_message, fill_attachments, insert_message, react, sweep_files,
};
use super::sql::{p, Conn, Db, DbError, Res};
use super::{Completion, NewRoom, Notifier, Outcome, StoreCmd, StoreError, StoreOp};
use crate::id::{RoomId, UserId};
use crate::time::now_ms;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most commands in one transaction, so one huge burst cannot delay every answer.
pub const MAX_BATCH: usize = 4096;
/// The same on PostgreSQL, where a transaction pays for every version of the room row it
/// updated (each `seq` taken): past a few hundred, smaller commits are faster.
pub const PG_MAX_BATCH: usize = 128;
/// How often a failing store is retried when no write comes in.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

pub fn start(conn: Conn, rx: Receiver<StoreCmd>, notify: Notifier) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, notify))
        .expect("spawn writer thread")
}

fn run(conn: Conn, rx: Receiver<StoreCmd>, notify: Notifier) {
    let mut healthy = true;
    let mut batch = Vec::with_capacity(64);
    let mut stop = false;
    while !stop {
        if healthy {
            match rx.recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        } else {
            // While storage fails, probe it every PROBE_INTERVAL even without traffic, so
            // /healthz recovers when the disk does.
            match rx.recv_timeout(PROBE_INTERVAL) {
                Ok(cmd) => batch.push(cmd),
                Err(RecvTimeoutError::Timeout) => {
                    if probe(&conn) {
                        healthy = true;
                        log::info!("storage recovered");
                        if !notify.send(Completion {
                            reply: None,
                            outcome: Outcome::Health(true),
                        }) {
                            break;
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let max = match conn {
            Conn::Lite(_) => MAX_BATCH,
            Conn::Pg(_) => PG_MAX_BATCH,
        };
        while batch.len() < max {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        if let Some(i) = batch.iter().position(|c| matches!(c.op, StoreOp::Shutdown)) {
            batch.truncate(i);
            stop = true;
        }
        let (done, ok) = apply_batch(&conn, batch.drain(..));
        let mut out = done;
        if ok != healthy {
            healthy = ok;
            if ok {
                log::info!("storage recovered");
            } else {
                log::error!("storage is failing; writes are refused until it recovers");
            }
            out.push(Completion {
                reply: None,
                outcome: Outcome::Health(ok),
            });
        }
        if !out.is_empty() && !notify.send_all(out) {
            break;
        }
    }
    log::info!("storage writer stopped");
}

/// A real write (a no-op update of `general`) to learn whether storage works again.
fn probe(conn: &Conn) -> bool {
    if !conn.ensure() {
        return false;
    }
    let db = conn.db();
    let result = db.batch("BEGIN").and_then(|_| {
        db.exec("UPDATE rooms SET created_at = created_at WHERE id = 1", &[])?;
        db.batch("COMMIT")
    });
    if result.is_err() {
        let _ = db.batch("ROLLBACK");
    }
    result.is_ok()
}

/// Whether the engine dropped the transaction on its own (SQLite does on a full disk or
/// an I/O error; PostgreSQL keeps it, aborted, until a rollback to a savepoint).
fn tx_lost(db: Db) -> bool {
    match db {
        Db::Lite(c) => c.is_autocommit(),
        Db::Pg(_) => false,
    }
}

/// Applies commands in one transaction. Returns the answers (for the commands that asked
/// for one) and whether the commit held. If it did not, every answer says so.
fn apply_batch(conn: &Conn, cmds: impl Iterator<Item = StoreCmd>) -> (Vec<Completion>, bool) {
    let cmds: Vec<StoreCmd> = cmds.collect();
    if cmds.is_empty() {
        return (Vec::new(), true);
    }
    if !conn.ensure() {
        return (failed_all(cmds), false);
    }
    let tx = conn.db();
    // SQLite: take the write lock at once. A deferred transaction that reads first fails
    // with "database is locked" (no waiting) when another process (a cluster node on the
    // same file, `chatterbox admin`) commits in between; BEGIN IMMEDIATE waits its turn
    // under the busy timeout instead.
    let begin = match tx {
        Db::Lite(_) => "BEGIN IMMEDIATE",
        Db::Pg(_) => "BEGIN",
    };
    if let Err(e) = tx.batch(begin) {
        log::error!("cannot begin a transaction: {e}");
        // Whatever was left open goes, so that the next batch can begin.
        let _ = tx.batch("ROLLBACK");
        return (failed_all(cmds), false);
    }
    let mut outcomes = Vec::with_capacity(cmds.len());
    let mut failed = false;
    // A command that went well keeps its savepoint until the next one starts (one round
    // trip for both on PostgreSQL); COMMIT releases the last.
    let mut open = false;
    for cmd in &cmds {
        // Each command in a savepoint: one that fails leaves no half of itself behind,
        // and the others of the batch still commit.
        let begin = match open {
            true => "RELEASE cmd; SAVEPOINT cmd",
            false => "SAVEPOINT cmd",
        };
        let (outcome, storage_failed) = match tx.batch(begin) {
            Ok(()) => apply(tx, &cmd.op),
            Err(e) => {
                log::error!("savepoint failed: {e}");
                (cmd.op.failed(), true)
            }
        };
        open = !is_error(&outcome);
        if tx_lost(tx) || (!open && tx.batch("ROLLBACK TO cmd; RELEASE cmd").is_err()) {
            // SQLite rolled the whole transaction back on its own (a full disk, an I/O
            // error), or the connection to PostgreSQL is gone: nothing of this batch is
            // stored, so say so for every command.
            log::error!("the transaction was rolled back; the batch is not stored");
            let _ = tx.batch("ROLLBACK");
            return (failed_all(cmds), false);
        }
        failed |= storage_failed;
        outcomes.push(outcome);
    }
    match tx.batch("COMMIT") {
        Ok(()) => {
            let done = cmds
                .into_iter()
                .zip(outcomes)
                .filter_map(|(cmd, outcome)| {
                    // Swept files are news for the Hub whoever asked (nobody does).
                    let news = matches!(&outcome, Outcome::FilesSwept(ids) if !ids.is_empty());
                    (cmd.reply.is_some() || news).then_some(Completion {
                        reply: cmd.reply,
                        outcome,
                    })
                })
                .collect();
            (done, !failed)
        }
        Err(e) => {
            log::error!("commit failed: {e}");
            let _ = tx.batch("ROLLBACK");
            (failed_all(cmds), false)
        }
    }
}

/// The answers for commands none of which was stored.
fn failed_all(cmds: Vec<StoreCmd>) -> Vec<Completion> {
    cmds.into_iter()
        .filter_map(|cmd| {
            let outcome = cmd.op.failed();
            Some(Completion {
                reply: Some(cmd.reply?),
                outcome,
            })
        })
        .collect()
}

/// Whether a write's outcome is a refusal or failure (its savepoint is rolled back).
fn is_error(o: &Outcome) -> bool {
    match o {
        Outcome::UserCreated { result, .. } => result.is_err(),
        Outcome::TokenCreated { result, .. } => result.is_err(),
        Outcome::Inserted(r) => r.is_err(),
        Outcome::Changed(r) => r.is_err(),
        Outcome::Reacted(r) => r.is_err(),
        Outcome::FileAdded { result, .. } => result.is_err(),
        Outcome::Written(r) => r.is_err(),
        Outcome::Joined { result, .. } => result.is_err(),
        Outcome::PasswordSet { result, .. } => result.is_err(),
        _ => false,
    }
}

/// Creates the room if asked, then adds the members. A room that does not exist (its
/// creation failed earlier) is `NotFound`, not a membership of nothing.
fn join(
    tx: Db,
    create: Option<&NewRoom>,
    room_id: RoomId,
    users: &[UserId],
) -> Res<Result<(), StoreError>> {
    if let Some(r) = create {
        tx.exec(
            "INSERT INTO rooms (id, name, private, owner_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            p![room_id, &r.name, r.private, r.owner, now_ms()],
        )?;
    } else {
        let exists = tx.opt("SELECT 1 FROM rooms WHERE id = ?1", p![room_id], |_| Ok(()))?;
        if exists.is_none() {
            return Ok(Err(StoreError::NotFound));
        }
    }
    for user in users {
        tx.exec(
            "INSERT INTO members (room_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            p![room_id, *user],
        )?;
        tx.exec(
            "DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2",
            p![room_id, *user],
        )?;
    }
    Ok(Ok(()))
}

fn classify(e: &DbError) -> StoreError {
    match e.is_constraint() {
        true => StoreError::Conflict,
        false => StoreError::Unavailable,
    }
}

/// Applies one command. Returns its outcome and whether storage failed.
fn apply(tx: Db, op: &StoreOp) -> (Outcome, bool) {
    let mut storage_failed = false;
    let mut note = |e: DbError| {
        let kind = classify(&e);
        if kind == StoreError::Unavailable {
            log::error!("storage error: {e}");
            storage_failed = true;
        }
        kind
    };
    let outcome = match op {
        StoreOp::CreateUser {
            username,
            phc,
            invite,
        } => {
            let used = match invite {
                None => Ok(true),
                Some(h) => tx
                    .exec(
                        "UPDATE invites SET uses_left = uses_left - 1 WHERE hash = ?1 AND uses_left > 0 AND expires_at > ?2",
                        p![&h[..], now_ms()],
                    )
                    .map(|n| n == 1),
            };
            // A name whose account was deleted long enough ago is free again: the old
            // row keeps its messages under a name nobody can take.
            let freed = tx.exec(
                "UPDATE users SET username_lc = username_lc || '#' || id WHERE username_lc = ?1 AND deleted_at IS NOT NULL AND deleted_at < ?2",
                p![&username.to_ascii_lowercase(), now_ms() - crate::config::NAME_QUARANTINE_MS],
            );
            let used = freed.and(used);
            let result = match used {
                Ok(false) => Err(StoreError::Forbidden),
                Err(e) => Err(note(e)),
                Ok(true) => tx
                .value(
                    "INSERT INTO users (username, username_lc, pw_hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    p![username, &username.to_ascii_lowercase(), phc, now_ms()],
                )
                .and_then(|id: i64| {
                    tx.exec(
                        "INSERT INTO members (room_id, user_id) VALUES (1, ?1) ON CONFLICT DO NOTHING",
                        p![id],
                    )?;
                    Ok(id)
                })
                .map_err(&mut note),
            };
            Outcome::UserCreated {
                username: username.clone(),
                phc: phc.clone(),
                result,
            }
        }
        StoreOp::CreateToken {
            token,
            hash,
            user_id,
            expires_at,
            ip,
            user_agent,
        } => {
            let now = now_ms();
            let result = tx
                .exec(
                    "INSERT INTO tokens (hash, user_id, expires_at, created_at, last_used, ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                    p![&hash[..], user_id, expires_at, now, ip, user_agent],
                )
                .map(|_| ())
                .map_err(&mut note);
            Outcome::TokenCreated {
                token: token.clone(),
                user_id: *user_id,
                expires_at: *expires_at,
                result,
            }
        }
        StoreOp::RevokeToken { hash } => written(
            tx.exec("DELETE FROM tokens WHERE hash = ?1", p![&hash[..]]),
            &mut note,
        ),
        StoreOp::RevokeUserTokens { user_id, keep } => written(
            tx.exec(
                "DELETE FROM tokens WHERE user_id = ?1 AND hash IS DISTINCT FROM ?2",
                p![user_id, keep.as_ref().map(|k| &k[..])],
            ),
            &mut note,
        ),
        StoreOp::TouchToken { hash, at } => written(
            tx.exec(
                "UPDATE tokens SET last_used = ?2 WHERE hash = ?1",
                p![&hash[..], at],
            ),
            &mut note,
        ),
        StoreOp::SetPassword {
            user_id,
            phc,
            keep,
            code,
        } => Outcome::PasswordSet {
            user_id: *user_id,
            phc: phc.clone(),
            keep: *keep,
            result: set_password(tx, *user_id, phc, keep.as_ref(), code.as_ref())
                .map_err(&mut note)
                .and_then(|r| r),
        },
        StoreOp::DeleteAccount { user_id } => written(
            delete_account(tx, *user_id).map(|_| 0),
            &mut note,
        ),
        StoreOp::CreateInvite {
            hash,
            uses,
            expires_at,
            by,
        } => written(
            tx.exec(
                "INSERT INTO invites (hash, uses_left, expires_at, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                p![&hash[..], uses, expires_at, by, now_ms()],
            ),
            &mut note,
        ),
        StoreOp::Join {
            create,
            room_id,
            users,
            after,
        } => Outcome::Joined {
            create: create.clone(),
            room_id: *room_id,
            users: users.clone(),
            after: after.clone(),
            result: join(tx, create.as_ref(), *room_id, users)
                .map_err(&mut note)
                .and_then(|r| r),
        },
        StoreOp::Invite {
            room_id,
            user_id,
            by,
        } => written(
            tx.exec(
                "INSERT INTO invitations (room_id, user_id, by_id, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                p![room_id, user_id, by, now_ms()],
            ),
            &mut note,
        ),
        StoreOp::Decline { room_id, user_id } => written(
            tx.exec(
                "DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2",
                p![room_id, user_id],
            ),
            &mut note,
        ),
        StoreOp::RemoveMember { room_id, user_id } => written(
            tx.exec(
                "DELETE FROM members WHERE room_id = ?1 AND user_id = ?2",
                p![room_id, user_id],
            ),
            &mut note,
        ),
        StoreOp::Insert {
            room_id,
            user_id,
            text,
            client_id,
            attachments,
        } => Outcome::Inserted(
            insert_message(tx, *room_id, *user_id, text, client_id.as_deref())
                .and_then(|(mut row, dup)| {
                    if dup {
                        // A retry: answered as first stored, with its files.
                        fill_attachments(tx, std::slice::from_mut(&mut row))?;
                    } else {
                        attach(tx, &mut row, attachments)?;
                    }
                    Ok((row, dup))
                })
                .map_err(note),
        ),
        StoreOp::AddFile {
            file,
            uploader,
            sha256,
            at,
        } => Outcome::FileAdded {
            id: file.id.clone(),
            result: add_file(tx, file, *uploader, sha256, *at).map_err(note),
        },
        StoreOp::SweepFiles { before } => match sweep_files(tx, *before) {
            Ok(ids) => Outcome::FilesSwept(ids),
            Err(e) => {
                note(e);
                Outcome::FilesSwept(Vec::new())
            }
        },
        StoreOp::Edit { id, author, text } => Outcome::Changed(
            change_message(tx, *id, Some(*author), Some(text))
                .map_err(note)
                .and_then(|r| r),
        ),
        StoreOp::Delete { id, author } => Outcome::Changed(
            change_message(tx, *id, *author, None)
                .map_err(note)
                .and_then(|r| r),
        ),
        StoreOp::React {
            id,
            user,
            emoji,
            on,
        } => Outcome::Reacted(
            react(tx, *id, *user, emoji, *on)
                .map_err(note)
                .and_then(|r| r),
        ),
        StoreOp::SetDelivered {
            room_id,
            user_id,
            id,
        } => written(
            tx.exec(
                "UPDATE members SET delivered_cursor = CASE WHEN ?3 > delivered_cursor THEN ?3 ELSE delivered_cursor END WHERE room_id = ?1 AND user_id = ?2",
                p![room_id, user_id, id],
            ),
            &mut note,
        ),
        StoreOp::SetCursor {
            room_id,
            user_id,
            id,
        } => written(
            tx.exec(
                "UPDATE members SET read_cursor = CASE WHEN ?3 > read_cursor THEN ?3 ELSE read_cursor END WHERE room_id = ?1 AND user_id = ?2",
                p![room_id, user_id, id],
            ),
            &mut note,
        ),
        StoreOp::SetLastSeen { user_id, at } => written(
            tx.exec(
                "UPDATE users SET last_seen = ?2 WHERE id = ?1",
                p![user_id, at],
            ),
            &mut note,
        ),
        StoreOp::Suspend { user_id, on } => written(
            tx.exec(
                "UPDATE users SET suspended = ?2 WHERE id = ?1",
                p![user_id, on],
            )
            .and_then(|n| match on {
                true => tx.exec("DELETE FROM tokens WHERE user_id = ?1", p![user_id]),
                false => Ok(n),
            }),
            &mut note,
        ),
        StoreOp::Audit {
            at,
            actor,
            action,
            target,
        } => written(
            tx.exec(
                "INSERT INTO audit (at, actor_id, action, target) VALUES (?1, ?2, ?3, ?4)",
                p![at, actor, action, target],
            ),
            &mut note,
        ),
        StoreOp::Shutdown => Outcome::Written(Ok(())),
    };
    (outcome, storage_failed)
}

fn written(r: Res<usize>, note: &mut impl FnMut(DbError) -> StoreError) -> Outcome {
    Outcome::Written(r.map(|_| ()).map_err(note))
}

#[cfg(test)]
mod tests;
