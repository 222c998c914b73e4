//! The one thread that writes to SQLite.
//!
//! It blocks on its channel, then takes everything already queued (up to `MAX_BATCH`)
//! and applies it in one transaction: one fsync (or WAL append) for many messages. The
//! answers go back only after the commit, with one wake-up of the reactor per batch. If
//! the commit fails, every answer of the batch says `Unavailable` and nothing of it is
//! acknowledged.

use super::{Completion, MessageRow, NewRoom, Notifier, Outcome, StoreCmd, StoreError, StoreOp};
use crate::id::{RoomId, UserId};
use crate::time::now_ms;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most commands in one transaction, so one huge burst cannot delay every answer.
pub const MAX_BATCH: usize = 4096;
/// How often a failing store is retried when no write comes in.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

pub fn start(conn: Connection, rx: Receiver<StoreCmd>, notify: Notifier) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, notify))
        .expect("spawn writer thread")
}

fn run(mut conn: Connection, rx: Receiver<StoreCmd>, notify: Notifier) {
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
                    if probe(&mut conn) {
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
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        if let Some(i) = batch.iter().position(|c| matches!(c.op, StoreOp::Shutdown)) {
            batch.truncate(i);
            stop = true;
        }
        let (done, ok) = apply_batch(&mut conn, batch.drain(..));
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
fn probe(conn: &mut Connection) -> bool {
    let result = conn.transaction().and_then(|tx| {
        tx.execute("UPDATE rooms SET created_at = created_at WHERE id = 1", [])?;
        tx.commit()
    });
    result.is_ok()
}

/// Applies commands in one transaction. Returns the answers (for the commands that asked
/// for one) and whether the commit held. If it did not, every answer says so.
fn apply_batch(
    conn: &mut Connection,
    cmds: impl Iterator<Item = StoreCmd>,
) -> (Vec<Completion>, bool) {
    let cmds: Vec<StoreCmd> = cmds.collect();
    if cmds.is_empty() {
        return (Vec::new(), true);
    }
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            log::error!("cannot begin a transaction: {e}");
            return (failed_all(cmds), false);
        }
    };
    let mut outcomes = Vec::with_capacity(cmds.len());
    let mut failed = false;
    for cmd in &cmds {
        // Each command in a savepoint: one that fails leaves no half of itself behind,
        // and the others of the batch still commit.
        let (outcome, storage_failed) = match tx.execute_batch("SAVEPOINT cmd") {
            Ok(()) => apply(&tx, &cmd.op),
            Err(e) => {
                log::error!("savepoint failed: {e}");
                (cmd.op.failed(), true)
            }
        };
        let undo = if is_error(&outcome) {
            "ROLLBACK TO cmd; RELEASE cmd"
        } else {
            "RELEASE cmd"
        };
        if tx.is_autocommit() || tx.execute_batch(undo).is_err() {
            // SQLite rolled the whole transaction back on its own (a full disk, an I/O
            // error): nothing of this batch is stored, so say so for every command.
            log::error!("the transaction was rolled back; the batch is not stored");
            return (failed_all(cmds), false);
        }
        failed |= storage_failed;
        outcomes.push(outcome);
    }
    match tx.commit() {
        Ok(()) => {
            let done = cmds
                .into_iter()
                .zip(outcomes)
                .filter_map(|(cmd, outcome)| {
                    let reply = cmd.reply?;
                    Some(Completion {
                        reply: Some(reply),
                        outcome,
                    })
                })
                .collect();
            (done, !failed)
        }
        Err(e) => {
            log::error!("commit failed: {e}");
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
        Outcome::Written(r) => r.is_err(),
        Outcome::Joined { result, .. } => result.is_err(),
        Outcome::PasswordSet { result, .. } => result.is_err(),
        _ => false,
    }
}

fn delete_account(tx: &Transaction, user: UserId) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE messages SET text = '', deleted = 1 WHERE user_id = ?1 AND deleted = 0",
        [user],
    )?;
    for sql in [
        "DELETE FROM tokens WHERE user_id = ?1",
        "DELETE FROM members WHERE user_id = ?1",
        "DELETE FROM invitations WHERE user_id = ?1 OR by_id = ?1",
        "DELETE FROM reset_codes WHERE user_id = ?1",
        "UPDATE rooms SET owner_id = NULL WHERE owner_id = ?1",
    ] {
        tx.execute(sql, [user])?;
    }
    tx.execute(
        "UPDATE users SET pw_hash = '', admin = 0, deleted_at = ?2 WHERE id = ?1",
        params![user, now_ms()],
    )?;
    Ok(())
}

/// Uses up the reset code if there is one (refused: `Forbidden`), stores the new hash and
/// revokes every token but `keep`.
fn set_password(
    tx: &Transaction,
    user: UserId,
    phc: &str,
    keep: Option<&crate::auth::TokenHash>,
    code: Option<&crate::auth::TokenHash>,
) -> rusqlite::Result<Result<(), StoreError>> {
    if let Some(c) = code {
        let n = tx.execute(
            "UPDATE reset_codes SET used = 1 WHERE hash = ?1 AND user_id = ?2 AND used = 0 AND expires_at > ?3",
            params![&c[..], user, now_ms()],
        )?;
        if n != 1 {
            return Ok(Err(StoreError::Forbidden));
        }
    }
    tx.execute(
        "UPDATE users SET pw_hash = ?2 WHERE id = ?1",
        params![user, phc],
    )?;
    tx.execute(
        "DELETE FROM tokens WHERE user_id = ?1 AND hash IS NOT ?2",
        params![user, keep.map(|k| &k[..])],
    )?;
    Ok(Ok(()))
}

/// Creates the room if asked, then adds the members. A room that does not exist (its
/// creation failed earlier) is `NotFound`, not a membership of nothing.
fn join(
    tx: &Transaction,
    create: Option<&NewRoom>,
    room_id: RoomId,
    users: &[UserId],
) -> rusqlite::Result<Result<(), StoreError>> {
    if let Some(r) = create {
        tx.execute(
            "INSERT INTO rooms (id, name, private, owner_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room_id, r.name, r.private, r.owner, now_ms()],
        )?;
    } else {
        let exists = tx
            .query_row("SELECT 1 FROM rooms WHERE id = ?1", [room_id], |_| Ok(()))
            .optional()?;
        if exists.is_none() {
            return Ok(Err(StoreError::NotFound));
        }
    }
    for user in users {
        tx.execute(
            "INSERT OR IGNORE INTO members (room_id, user_id) VALUES (?1, ?2)",
            [room_id, *user],
        )?;
        tx.execute(
            "DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2",
            [room_id, *user],
        )?;
    }
    Ok(Ok(()))
}

fn classify(e: &rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => StoreError::Unavailable,
    }
}

/// Applies one command. Returns its outcome and whether storage failed.
fn apply(tx: &Transaction, op: &StoreOp) -> (Outcome, bool) {
    let mut storage_failed = false;
    let mut note = |e: rusqlite::Error| {
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
                    .execute(
                        "UPDATE invites SET uses_left = uses_left - 1 WHERE hash = ?1 AND uses_left > 0 AND expires_at > ?2",
                        params![&h[..], now_ms()],
                    )
                    .map(|n| n == 1),
            };
            // A name whose account was deleted long enough ago is free again: the old
            // row keeps its messages under a name nobody can take.
            let freed = tx.execute(
                "UPDATE users SET username_lc = username_lc || '#' || id WHERE username_lc = ?1 AND deleted_at IS NOT NULL AND deleted_at < ?2",
                params![username.to_ascii_lowercase(), now_ms() - crate::config::NAME_QUARANTINE_MS],
            );
            let used = freed.and(used);
            let result = match used {
                Ok(false) => Err(StoreError::Forbidden),
                Err(e) => Err(note(e)),
                Ok(true) => tx
                .execute(
                    "INSERT INTO users (username, username_lc, pw_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![username, username.to_ascii_lowercase(), phc, now_ms()],
                )
                .and_then(|_| {
                    let id = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT OR IGNORE INTO members (room_id, user_id) VALUES (1, ?1)",
                        [id],
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
                .execute(
                    "INSERT INTO tokens (hash, user_id, expires_at, created_at, last_used, ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
                    params![&hash[..], user_id, expires_at, now, ip, user_agent],
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
            tx.execute("DELETE FROM tokens WHERE hash = ?1", [&hash[..]]),
            &mut note,
        ),
        StoreOp::RevokeUserTokens { user_id, keep } => written(
            tx.execute(
                "DELETE FROM tokens WHERE user_id = ?1 AND hash IS NOT ?2",
                params![user_id, keep.as_ref().map(|k| &k[..])],
            ),
            &mut note,
        ),
        StoreOp::TouchToken { hash, at } => written(
            tx.execute(
                "UPDATE tokens SET last_used = ?2 WHERE hash = ?1",
                params![&hash[..], at],
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
            tx.execute(
                "INSERT INTO invites (hash, uses_left, expires_at, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&hash[..], uses, expires_at, by, now_ms()],
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
            tx.execute(
                "INSERT OR IGNORE INTO invitations (room_id, user_id, by_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![room_id, user_id, by, now_ms()],
            ),
            &mut note,
        ),
        StoreOp::Decline { room_id, user_id } => written(
            tx.execute(
                "DELETE FROM invitations WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id],
            ),
            &mut note,
        ),
        StoreOp::RemoveMember { room_id, user_id } => written(
            tx.execute(
                "DELETE FROM members WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id],
            ),
            &mut note,
        ),
        StoreOp::Insert {
            room_id,
            user_id,
            text,
            client_id,
        } => Outcome::Inserted(
            insert_message(tx, *room_id, *user_id, text, client_id.as_deref()).map_err(note),
        ),
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
        StoreOp::SetDelivered {
            room_id,
            user_id,
            id,
        } => written(
            tx.execute(
                "UPDATE members SET delivered_cursor = max(delivered_cursor, ?3) WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id, id],
            ),
            &mut note,
        ),
        StoreOp::SetCursor {
            room_id,
            user_id,
            id,
        } => written(
            tx.execute(
                "UPDATE members SET read_cursor = max(read_cursor, ?3) WHERE room_id = ?1 AND user_id = ?2",
                [room_id, user_id, id],
            ),
            &mut note,
        ),
        StoreOp::SetLastSeen { user_id, at } => written(
            tx.execute(
                "UPDATE users SET last_seen = ?2 WHERE id = ?1",
                [user_id, at],
            ),
            &mut note,
        ),
        StoreOp::Suspend { user_id, on } => written(
            tx.execute(
                "UPDATE users SET suspended = ?2 WHERE id = ?1",
                params![user_id, on],
            )
            .and_then(|n| match on {
                true => tx.execute("DELETE FROM tokens WHERE user_id = ?1", [user_id]),
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
            tx.execute(
                "INSERT INTO audit (at, actor_id, action, target) VALUES (?1, ?2, ?3, ?4)",
                params![at, actor, action, target],
            ),
            &mut note,
        ),
        StoreOp::Shutdown => Outcome::Written(Ok(())),
    };
    (outcome, storage_failed)
}

fn written(
    r: rusqlite::Result<usize>,
    note: &mut impl FnMut(rusqlite::Error) -> StoreError,
) -> Outcome {
    Outcome::Written(r.map(|_| ()).map_err(note))
}

/// Edits (`Some(text)`) or deletes (`None`) a message after checking its author.
fn change_message(
    tx: &Transaction,
    id: i64,
    author: Option<i64>,
    text: Option<&str>,
) -> rusqlite::Result<Result<MessageRow, StoreError>> {
    let Some(row) = message_by_id(tx, id)? else {
        return Ok(Err(StoreError::NotFound));
    };
    if let Some(a) = author {
        // Authors change their messages only while they are in the room.
        let member: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2",
                [row.room_id, a],
                |r| r.get(0),
            )
            .optional()?;
        if a != row.user_id || member.is_none() {
            return Ok(Err(StoreError::Forbidden));
        }
    }
    if row.deleted {
        return Ok(Err(StoreError::NotFound));
    }
    match text {
        Some(text) => tx.execute(
            "UPDATE messages SET text = ?2, edited_at = ?3 WHERE id = ?1",
            params![id, text, now_ms()],
        )?,
        None => tx.execute(
            "UPDATE messages SET text = '', deleted = 1 WHERE id = ?1",
            [id],
        )?,
    };
    Ok(message_by_id(tx, id)?.ok_or(StoreError::NotFound))
}

/// Stores a message, or returns the one already stored under the same `client_id`.
fn insert_message(
    tx: &Transaction,
    room_id: i64,
    user_id: i64,
    text: &str,
    client_id: Option<&str>,
) -> rusqlite::Result<(MessageRow, bool)> {
    if let Some(cid) = client_id {
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM messages WHERE room_id = ?1 AND user_id = ?2 AND client_id = ?3",
                params![room_id, user_id, cid],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            if let Some(row) = message_by_id(tx, id)? {
                return Ok((row, true));
            }
        }
    }
    let ts = now_ms();
    tx.execute(
        "INSERT INTO messages (room_id, user_id, text, ts, client_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![room_id, user_id, text, ts, client_id],
    )?;
    Ok((
        MessageRow {
            id: tx.last_insert_rowid(),
            room_id,
            user_id,
            text: text.to_string(),
            ts,
            client_id: client_id.map(str::to_string),
            edited_at: None,
            deleted: false,
        },
        false,
    ))
}

pub const MESSAGE_COLUMNS: &str = "id, room_id, user_id, text, ts, client_id, edited_at, deleted";

pub fn message_from_row(r: &rusqlite::Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        room_id: r.get(1)?,
        user_id: r.get(2)?,
        text: r.get(3)?,
        ts: r.get(4)?,
        client_id: r.get(5)?,
        edited_at: r.get(6)?,
        deleted: r.get(7)?,
    })
}

fn message_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<MessageRow>> {
    conn.query_row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        [id],
        message_from_row,
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ConnId;
    use crate::store::{ReplyTo, Via};

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0);
             INSERT INTO members (room_id, user_id) VALUES (1, 1);",
        )
        .unwrap();
        conn
    }

    fn insert(text: &str) -> StoreCmd {
        StoreCmd {
            reply: Some(ReplyTo {
                conn: ConnId { key: 0, serial: 1 },
                via: Via::Ws { req: None },
            }),
            op: StoreOp::Insert {
                room_id: 1,
                user_id: 1,
                text: text.into(),
                client_id: None,
            },
        }
    }

    fn stored(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT text FROM messages ORDER BY id")
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    fn inserted_ok(done: &[Completion]) -> Vec<bool> {
        done.iter()
            .map(|c| matches!(c.outcome, Outcome::Inserted(Ok(_))))
            .collect()
    }

    #[test]
    fn a_failing_command_leaves_the_rest_of_its_batch_stored() {
        let mut conn = db();
        conn.execute_batch(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom'
             BEGIN SELECT RAISE(ABORT, 'no'); END;",
        )
        .unwrap();
        let cmds = vec![insert("a"), insert("boom"), insert("c")];
        let (done, _) = apply_batch(&mut conn, cmds.into_iter());
        assert_eq!(inserted_ok(&done), vec![true, false, true]);
        assert_eq!(stored(&conn), vec!["a", "c"]);
    }

    #[test]
    fn a_batch_sqlite_rolled_back_is_reported_as_not_stored_at_all() {
        let mut conn = db();
        // RAISE(ROLLBACK) ends the whole transaction, as a full disk can.
        conn.execute_batch(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom'
             BEGIN SELECT RAISE(ROLLBACK, 'no'); END;",
        )
        .unwrap();
        let cmds = vec![insert("a"), insert("boom"), insert("c")];
        let (done, ok) = apply_batch(&mut conn, cmds.into_iter());
        assert!(!ok);
        assert_eq!(inserted_ok(&done), vec![false, false, false]);
        assert!(
            stored(&conn).is_empty(),
            "what is reported as not stored is not stored"
        );
    }

    #[test]
    fn authors_change_messages_only_while_members() {
        let mut conn = db();
        let (done, _) = apply_batch(&mut conn, vec![insert("mine")].into_iter());
        let Outcome::Inserted(Ok((row, _))) = &done[0].outcome else {
            panic!("{done:?}")
        };
        conn.execute("DELETE FROM members WHERE user_id = 1", [])
            .unwrap();
        let tx = conn.transaction().unwrap();
        let r = change_message(&tx, row.id, Some(1), Some("edited")).unwrap();
        assert_eq!(r, Err(StoreError::Forbidden));
        // An admin (no author) still may.
        assert!(change_message(&tx, row.id, None, None).unwrap().is_ok());
    }

    fn join_cmd(create: Option<&str>, room_id: i64) -> StoreCmd {
        StoreCmd {
            reply: Some(ReplyTo {
                conn: ConnId { key: 0, serial: 1 },
                via: Via::Ws { req: None },
            }),
            op: StoreOp::Join {
                create: create.map(|name| NewRoom {
                    name: name.into(),
                    private: false,
                    owner: Some(1),
                }),
                room_id,
                users: vec![1],
                after: crate::store::AfterJoin::Joined {
                    user: 1,
                    since: None,
                },
            },
        }
    }

    fn joined_ok(done: &[Completion]) -> Vec<Result<(), StoreError>> {
        done.iter()
            .map(|c| match &c.outcome {
                Outcome::Joined { result, .. } => *result,
                o => panic!("{o:?}"),
            })
            .collect()
    }

    #[test]
    fn a_join_creates_its_room_all_or_nothing() {
        let mut conn = db();
        let cmds = vec![
            join_cmd(Some("x"), 7),
            // The name is taken: nothing of this one is stored, not even the membership.
            join_cmd(Some("x"), 8),
            // Joining a room that does not exist (its creation failed) is refused.
            join_cmd(None, 9),
            join_cmd(None, 7),
        ];
        let (done, ok) = apply_batch(&mut conn, cmds.into_iter());
        assert!(ok);
        assert_eq!(
            joined_ok(&done),
            vec![
                Ok(()),
                Err(StoreError::Conflict),
                Err(StoreError::NotFound),
                Ok(())
            ]
        );
        let members: Vec<i64> = conn
            .prepare("SELECT room_id FROM members WHERE user_id = 1 ORDER BY room_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(members, vec![1, 7]);
    }
}
