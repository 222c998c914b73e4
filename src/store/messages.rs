//! Messages and their reactions: the writes the writer thread applies and the reads that
//! the readers and the start-up snapshot share, in SQL both engines run.

use super::sql::{p, Db, Ids, Res, Row};
use super::{FileRef, FileRow, MessageRow, Reacted, Reaction, ReactorsPage, StoreError};
use crate::id::UserId;
use crate::time::now_ms;
use std::collections::HashMap;

/// Most distinct emoji on one message: a reaction bar stays a bar.
pub const MAX_REACTION_KINDS: usize = 20;

/// Edits (`Some(text)`) or deletes (`None`) a message after checking its author.
pub(super) fn change_message(
    tx: Db,
    id: i64,
    author: Option<i64>,
    text: Option<&str>,
) -> Res<Result<MessageRow, StoreError>> {
    let Some(row) = message_by_id(tx, id)? else {
        return Ok(Err(StoreError::NotFound));
    };
    if let Some(a) = author {
        // Authors change their messages only while they are in the room.
        if a != row.user_id || !is_member(tx, row.room_id, a)? {
            return Ok(Err(StoreError::Forbidden));
        }
    }
    if row.deleted {
        return Ok(Err(StoreError::NotFound));
    }
    match text {
        Some(text) => tx.exec(
            "UPDATE messages SET text = ?2, edited_at = ?3 WHERE id = ?1",
            p![id, text, now_ms()],
        )?,
        None => {
            // A deleted message keeps no reactions.
            tx.exec("DELETE FROM reactions WHERE message_id = ?1", p![id])?;
            // Its files go with it unless another message has them (`sweep_files`).
            tx.exec("DELETE FROM attachments WHERE message_id = ?1", p![id])?;
            tx.exec(
                "UPDATE messages SET text = '', deleted = 1 WHERE id = ?1",
                p![id],
            )?
        }
    };
    Ok(message_by_id(tx, id)?.ok_or(StoreError::NotFound))
}

/// Stores a message, or returns the one already stored under the same `client_id`.
pub(super) fn insert_message(
    tx: Db,
    room_id: i64,
    user_id: i64,
    text: &str,
    client_id: Option<&str>,
) -> Res<(MessageRow, bool)> {
    if let Some(cid) = client_id {
        let existing: Option<i64> = tx.opt(
            "SELECT id FROM messages WHERE room_id = ?1 AND user_id = ?2 AND client_id = ?3",
            p![room_id, user_id, cid],
            |r| r.get(0),
        )?;
        if let Some(id) = existing {
            if let Some(row) = message_by_id(tx, id)? {
                return Ok((row, true));
            }
        }
    }
    let ts = now_ms();
    // Taking the room's counter locks its row until commit, so seqs are contiguous and
    // in commit order even with several writers.
    let seq: i64 = tx.value(
        "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        p![room_id],
    )?;
    let id: i64 = tx.value(
        "INSERT INTO messages (room_id, user_id, text, ts, client_id, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        p![room_id, user_id, text, ts, client_id, seq],
    )?;
    Ok((
        MessageRow {
            id,
            seq,
            room_id,
            user_id,
            text: text.to_string(),
            ts,
            client_id: client_id.map(str::to_string),
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            attachments: Vec::new(),
        },
        false,
    ))
}

pub const MESSAGE_COLUMNS: &str =
    "id, room_id, user_id, text, ts, client_id, edited_at, deleted, seq";

pub fn message_from_row(r: &Row) -> Res<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        room_id: r.get(1)?,
        user_id: r.get(2)?,
        text: r.get(3)?,
        ts: r.get(4)?,
        client_id: r.get(5)?,
        edited_at: r.get(6)?,
        deleted: r.get(7)?,
        seq: r.get(8)?,
        reactions: Vec::new(),
        attachments: Vec::new(),
    })
}

pub(super) fn message_by_id(conn: Db, id: i64) -> Res<Option<MessageRow>> {
    conn.opt(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        p![id],
        message_from_row,
    )
}

/// A room's messages in its order after the seq that `seq_sql` gives (an SQL expression
/// of `?1`, the room, and `?2`, `value`), at most `limit`, and whether more follow.
pub fn page_after_seq(
    conn: Db,
    room_id: i64,
    seq_sql: &str,
    value: i64,
    limit: usize,
) -> Res<(Vec<MessageRow>, bool)> {
    let mut rows = conn.rows(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 AND seq > {seq_sql} ORDER BY seq LIMIT ?3"
        ),
        p![room_id, value, limit as i64 + 1],
        message_from_row,
    )?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// Messages of a room with a seq above `after_seq`, oldest first, at most `limit`, and
/// whether more follow: what fills a gap in a room's order.
pub fn messages_after_seq(
    conn: Db,
    room_id: i64,
    after_seq: i64,
    limit: usize,
) -> Res<(Vec<MessageRow>, bool)> {
    let (mut rows, more) = page_after_seq(conn, room_id, "?2", after_seq, limit)?;
    fill_reactions(conn, &mut rows, None)?;
    fill_attachments(conn, &mut rows)?;
    Ok((rows, more))
}

/// Whether `user` is a member of `room_id` (authors change messages, and anyone reacts,
/// only while in the room).
fn is_member(tx: Db, room_id: i64, user: UserId) -> Res<bool> {
    tx.opt(
        "SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2",
        p![room_id, user],
        |_| Ok(()),
    )
    .map(|r| r.is_some())
}

/// Adds (`on`) or takes back a reaction: refused for a missing or deleted message
/// (`NotFound`), a reactor outside the room (`Forbidden`) or a new emoji past
/// `MAX_REACTION_KINDS` (`Limit`). Saying the same twice changes nothing (`changed`
/// false) and is not an error.
pub(super) fn react(
    tx: Db,
    id: i64,
    user: UserId,
    emoji: &str,
    on: bool,
) -> Res<Result<Reacted, StoreError>> {
    let Some(row) = message_by_id(tx, id)? else {
        return Ok(Err(StoreError::NotFound));
    };
    if row.deleted {
        return Ok(Err(StoreError::NotFound));
    }
    if !is_member(tx, row.room_id, user)? {
        return Ok(Err(StoreError::Forbidden));
    }
    let count = || -> Res<u32> {
        tx.value(
            "SELECT count(*) FROM reactions WHERE message_id = ?1 AND emoji = ?2",
            p![id, emoji],
        )
    };
    let changed = if on {
        if count()? == 0 {
            let kinds: usize = tx.value(
                "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = ?1",
                p![id],
            )?;
            if kinds >= MAX_REACTION_KINDS {
                return Ok(Err(StoreError::Limit));
            }
        }
        tx.exec(
            "INSERT INTO reactions (message_id, user_id, emoji, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            p![id, user, emoji, now_ms()],
        )? > 0
    } else {
        tx.exec(
            "DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 AND emoji = ?3",
            p![id, user, emoji],
        )? > 0
    };
    Ok(Ok(Reacted {
        room_id: row.room_id,
        id,
        user,
        emoji: emoji.to_string(),
        on,
        count: count()?,
        changed,
    }))
}

/// Fills in the reactions of `rows`. With `reader`, each emoji lists only the reader
/// (when they reacted with it): what one person's page needs. Without, every reactor:
/// what the Hub's ring keeps, so that it can answer anyone.
pub fn fill_reactions(conn: Db, rows: &mut [MessageRow], reader: Option<UserId>) -> Res<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids = Ids::new(rows.iter().map(|r| r.id));
    let mut by_id: HashMap<i64, Vec<Reaction>> = HashMap::new();
    // Emoji in the order they were first used on each message, so chips do not move.
    let counts = conn.rows(
        &format!(
            "SELECT message_id, emoji, count(*), min(rowid) AS first FROM reactions
             WHERE {} GROUP BY message_id, emoji ORDER BY message_id, first",
            conn.in_ids("message_id", 1)
        ),
        p![&ids],
        |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<u32>(2)?)),
    )?;
    for (id, emoji, count) in counts {
        by_id.entry(id).or_default().push(Reaction {
            emoji,
            count,
            users: Vec::new(),
        });
    }
    let sql = format!(
        "SELECT message_id, emoji, user_id FROM reactions WHERE {} {} ORDER BY rowid",
        conn.in_ids("message_id", 1),
        if reader.is_some() {
            "AND user_id = ?2"
        } else {
            ""
        }
    );
    let row = |r: &Row| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<UserId>(2)?));
    let who = match reader {
        Some(u) => conn.rows(&sql, p![&ids, u], row)?,
        None => conn.rows(&sql, p![&ids], row)?,
    };
    for (id, emoji, user) in who {
        if let Some(x) = by_id
            .get_mut(&id)
            .and_then(|l| l.iter_mut().find(|x| x.emoji == emoji))
        {
            x.users.push(user);
        }
    }
    for row in rows {
        row.reactions = by_id.remove(&row.id).unwrap_or_default();
    }
    Ok(())
}

/// Who reacted to message `id` with `emoji`, by name after `after`: `(room, names, more)`.
/// The room comes back so that the Hub can check the asker is in it.
pub fn reactors(
    conn: Db,
    id: i64,
    emoji: &str,
    after: &str,
    limit: usize,
) -> Res<Result<ReactorsPage, StoreError>> {
    let room: Option<(i64, bool)> = conn.opt(
        "SELECT room_id, deleted FROM messages WHERE id = ?1",
        p![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((room_id, false)) = room else {
        return Ok(Err(StoreError::NotFound));
    };
    let mut names = conn.rows(
        "SELECT u.username FROM reactions r JOIN users u ON u.id = r.user_id
         WHERE r.message_id = ?1 AND r.emoji = ?2 AND u.username_lc > ?3
         ORDER BY u.username_lc LIMIT ?4",
        p![id, emoji, &after.to_lowercase(), limit as i64 + 1],
        |r| r.get::<String>(0),
    )?;
    let more = names.len() > limit;
    names.truncate(limit);
    Ok(Ok((room_id, names, more)))
}

/// Attaches `files` (ids the Hub checked) to message `id`, in the order given, and
/// fills in the row's list.
pub(super) fn attach(tx: Db, row: &mut MessageRow, files: &[String]) -> Res<()> {
    if files.is_empty() {
        return Ok(());
    }
    for (i, f) in files.iter().enumerate() {
        tx.exec(
            "INSERT INTO attachments (message_id, file_id, position) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            p![row.id, f, i as i64],
        )?;
        tx.exec("UPDATE files SET attached = 1 WHERE id = ?1", p![f])?;
    }
    fill_attachments(tx, std::slice::from_mut(row))
}

/// Fills in the files attached to `rows`.
pub fn fill_attachments(conn: Db, rows: &mut [MessageRow]) -> Res<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids = Ids::new(rows.iter().map(|r| r.id));
    let files = conn.rows(
        &format!(
            "SELECT a.message_id, f.id, f.name, f.size, f.type FROM attachments a
             JOIN files f ON f.id = a.file_id
             WHERE {} ORDER BY a.message_id, a.position",
            conn.in_ids("a.message_id", 1)
        ),
        p![&ids],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                FileRef {
                    id: r.get(1)?,
                    name: r.get(2)?,
                    size: r.get(3)?,
                    mime: r.get(4)?,
                },
            ))
        },
    )?;
    let mut by_id: HashMap<i64, Vec<FileRef>> = HashMap::new();
    for (id, f) in files {
        by_id.entry(id).or_default().push(f);
    }
    for row in rows {
        row.attachments = by_id.remove(&row.id).unwrap_or_default();
    }
    Ok(())
}

pub(super) fn add_file(tx: Db, f: &FileRef, uploader: UserId, sha256: &str, at: i64) -> Res<()> {
    tx.exec(
        "INSERT INTO files (id, uploader, name, size, type, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        p![&f.id, uploader, &f.name, f.size, &f.mime, sha256, at],
    )?;
    Ok(())
}

/// Forgets files attached to no message that either were attached once (their
/// messages are deleted) or were uploaded before `before` and never used; returns
/// their ids so that the file worker deletes them.
pub(super) fn sweep_files(tx: Db, before: i64) -> Res<Vec<String>> {
    let ids = tx.rows(
        "SELECT id FROM files f
         WHERE NOT EXISTS (SELECT 1 FROM attachments a WHERE a.file_id = f.id)
           AND (f.attached = 1 OR f.created_at < ?1)",
        p![before],
        |r| r.get::<String>(0),
    )?;
    for id in &ids {
        tx.exec("DELETE FROM files WHERE id = ?1", p![id])?;
    }
    Ok(ids)
}

/// Every stored file with the rooms it was posted in (for the Hub at start-up).
pub fn all_files(conn: Db) -> Res<Vec<FileRow>> {
    let mut files: Vec<FileRow> = conn.rows(
        "SELECT id, name, size, type, uploader, created_at FROM files ORDER BY created_at",
        &[],
        |r| {
            Ok(FileRow {
                file: FileRef {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get(2)?,
                    mime: r.get(3)?,
                },
                uploader: r.get(4)?,
                created_at: r.get(5)?,
                rooms: Vec::new(),
            })
        },
    )?;
    let index: HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.file.id.clone(), i))
        .collect();
    let posted = conn.rows(
        "SELECT DISTINCT a.file_id, m.room_id FROM attachments a JOIN messages m ON m.id = a.message_id",
        &[],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )?;
    for (f, room) in posted {
        if let Some(&i) = index.get(&f) {
            files[i].rooms.push(room);
        }
    }
    Ok(files)
}

/// Whether `user` is a member of a room where file `id` is attached to a message that is
/// not deleted: asked at each download, so that leaving a room or deleting a message
/// takes the access away at once.
pub fn file_access(conn: Db, id: &str, user: UserId) -> Res<bool> {
    conn.value(
        "SELECT EXISTS (SELECT 1 FROM attachments a
           JOIN messages m ON m.id = a.message_id AND m.deleted = 0
           JOIN members mb ON mb.room_id = m.room_id AND mb.user_id = ?2
           WHERE a.file_id = ?1)",
        p![id, user],
    )
}
