//! Messages and their reactions in SQLite: the writes the writer thread applies and the
//! reads that the readers and the start-up snapshot share.

use super::{FileRef, FileRow, MessageRow, Reacted, Reaction, ReactorsPage, StoreError};
use crate::id::UserId;
use crate::time::now_ms;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::HashMap;

/// Most distinct emoji on one message: a reaction bar stays a bar.
pub const MAX_REACTION_KINDS: usize = 20;

/// Edits (`Some(text)`) or deletes (`None`) a message after checking its author.
pub(super) fn change_message(
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
        if a != row.user_id || !is_member(tx, row.room_id, a)? {
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
        None => {
            // A deleted message keeps no reactions.
            tx.execute("DELETE FROM reactions WHERE message_id = ?1", [id])?;
            // Its files go with it unless another message has them (`sweep_files`).
            tx.execute("DELETE FROM attachments WHERE message_id = ?1", [id])?;
            tx.execute(
                "UPDATE messages SET text = '', deleted = 1 WHERE id = ?1",
                [id],
            )?
        }
    };
    Ok(message_by_id(tx, id)?.ok_or(StoreError::NotFound))
}

/// Stores a message, or returns the one already stored under the same `client_id`.
pub(super) fn insert_message(
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
    // Taking the room's counter locks its row until commit, so seqs are contiguous and
    // in commit order even with several writers.
    let seq: i64 = tx.query_row(
        "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        [room_id],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO messages (room_id, user_id, text, ts, client_id, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![room_id, user_id, text, ts, client_id, seq],
    )?;
    Ok((
        MessageRow {
            id: tx.last_insert_rowid(),
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
        seq: r.get(8)?,
        reactions: Vec::new(),
        attachments: Vec::new(),
    })
}

pub(super) fn message_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<MessageRow>> {
    conn.query_row(
        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
        [id],
        message_from_row,
    )
    .optional()
}

/// Whether `user` is a member of `room_id` (authors change messages, and anyone reacts,
/// only while in the room).
fn is_member(tx: &Connection, room_id: i64, user: UserId) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2",
        [room_id, user],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

/// Adds (`on`) or takes back a reaction: refused for a missing or deleted message
/// (`NotFound`), a reactor outside the room (`Forbidden`) or a new emoji past
/// `MAX_REACTION_KINDS` (`Limit`). Saying the same twice changes nothing (`changed`
/// false) and is not an error.
pub(super) fn react(
    tx: &Transaction,
    id: i64,
    user: UserId,
    emoji: &str,
    on: bool,
) -> rusqlite::Result<Result<Reacted, StoreError>> {
    let Some(row) = message_by_id(tx, id)? else {
        return Ok(Err(StoreError::NotFound));
    };
    if row.deleted {
        return Ok(Err(StoreError::NotFound));
    }
    if !is_member(tx, row.room_id, user)? {
        return Ok(Err(StoreError::Forbidden));
    }
    let count = |tx: &Transaction| -> rusqlite::Result<u32> {
        tx.query_row(
            "SELECT count(*) FROM reactions WHERE message_id = ?1 AND emoji = ?2",
            params![id, emoji],
            |r| r.get(0),
        )
    };
    let changed = if on {
        if count(tx)? == 0 {
            let kinds: usize = tx.query_row(
                "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            if kinds >= MAX_REACTION_KINDS {
                return Ok(Err(StoreError::Limit));
            }
        }
        tx.execute(
            "INSERT OR IGNORE INTO reactions (message_id, user_id, emoji, at) VALUES (?1, ?2, ?3, ?4)",
            params![id, user, emoji, now_ms()],
        )? > 0
    } else {
        tx.execute(
            "DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2 AND emoji = ?3",
            params![id, user, emoji],
        )? > 0
    };
    Ok(Ok(Reacted {
        room_id: row.room_id,
        id,
        user,
        emoji: emoji.to_string(),
        on,
        count: count(tx)?,
        changed,
    }))
}

/// Fills in the reactions of `rows`. With `reader`, each emoji lists only the reader
/// (when they reacted with it): what one person's page needs. Without, every reactor:
/// what the Hub's ring keeps, so that it can answer anyone.
pub fn fill_reactions(
    conn: &Connection,
    rows: &mut [MessageRow],
    reader: Option<UserId>,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    let mut by_id: HashMap<i64, Vec<Reaction>> = HashMap::new();
    // Emoji in the order they were first used on each message, so chips do not move.
    let mut counts = conn.prepare_cached(
        "SELECT message_id, emoji, count(*), min(rowid) AS first FROM reactions
         WHERE message_id IN (SELECT value FROM json_each(?1))
         GROUP BY message_id, emoji ORDER BY message_id, first",
    )?;
    let mut rs = counts.query([&ids])?;
    while let Some(r) = rs.next()? {
        by_id.entry(r.get(0)?).or_default().push(Reaction {
            emoji: r.get(1)?,
            count: r.get(2)?,
            users: Vec::new(),
        });
    }
    let mut who = conn.prepare_cached(
        "SELECT message_id, emoji, user_id FROM reactions
         WHERE message_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR user_id = ?2)
         ORDER BY rowid",
    )?;
    let mut rs = who.query(params![ids, reader])?;
    while let Some(r) = rs.next()? {
        let (id, emoji, user): (i64, String, UserId) = (r.get(0)?, r.get(1)?, r.get(2)?);
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
    conn: &Connection,
    id: i64,
    emoji: &str,
    after: &str,
    limit: usize,
) -> rusqlite::Result<Result<ReactorsPage, StoreError>> {
    let room: Option<(i64, bool)> = conn
        .query_row(
            "SELECT room_id, deleted FROM messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((room_id, false)) = room else {
        return Ok(Err(StoreError::NotFound));
    };
    let mut stmt = conn.prepare_cached(
        "SELECT u.username FROM reactions r JOIN users u ON u.id = r.user_id
         WHERE r.message_id = ?1 AND r.emoji = ?2 AND u.username_lc > ?3
         ORDER BY u.username_lc LIMIT ?4",
    )?;
    let mut names = stmt
        .query_map(
            params![id, emoji, after.to_lowercase(), limit as i64 + 1],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = names.len() > limit;
    names.truncate(limit);
    Ok(Ok((room_id, names, more)))
}

/// Attaches `files` (ids the Hub checked) to message `id`, in the order given, and
/// fills in the row's list.
pub(super) fn attach(
    tx: &Transaction,
    row: &mut MessageRow,
    files: &[String],
) -> rusqlite::Result<()> {
    for (i, f) in files.iter().enumerate() {
        tx.execute(
            "INSERT OR IGNORE INTO attachments (message_id, file_id, position) VALUES (?1, ?2, ?3)",
            params![row.id, f, i as i64],
        )?;
        tx.execute("UPDATE files SET attached = 1 WHERE id = ?1", [f])?;
    }
    fill_attachments(tx, std::slice::from_mut(row))
}

/// Fills in the files attached to `rows`.
pub fn fill_attachments(conn: &Connection, rows: &mut [MessageRow]) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    let mut stmt = conn.prepare_cached(
        "SELECT a.message_id, f.id, f.name, f.size, f.type FROM attachments a
         JOIN files f ON f.id = a.file_id
         WHERE a.message_id IN (SELECT value FROM json_each(?1))
         ORDER BY a.message_id, a.position",
    )?;
    let mut by_id: HashMap<i64, Vec<FileRef>> = HashMap::new();
    let mut rs = stmt.query([&ids])?;
    while let Some(r) = rs.next()? {
        by_id.entry(r.get(0)?).or_default().push(FileRef {
            id: r.get(1)?,
            name: r.get(2)?,
            size: r.get(3)?,
            mime: r.get(4)?,
        });
    }
    for row in rows {
        row.attachments = by_id.remove(&row.id).unwrap_or_default();
    }
    Ok(())
}

pub(super) fn add_file(
    tx: &Transaction,
    f: &FileRef,
    uploader: UserId,
    sha256: &str,
    at: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO files (id, uploader, name, size, type, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![f.id, uploader, f.name, f.size, f.mime, sha256, at],
    )?;
    Ok(())
}

/// Forgets files attached to no message that either were attached once (their
/// messages are deleted) or were uploaded before `before` and never used; returns
/// their ids so that the file worker deletes them.
pub(super) fn sweep_files(tx: &Transaction, before: i64) -> rusqlite::Result<Vec<String>> {
    let ids = tx
        .prepare(
            "SELECT id FROM files f
             WHERE NOT EXISTS (SELECT 1 FROM attachments a WHERE a.file_id = f.id)
               AND (f.attached = 1 OR f.created_at < ?1)",
        )?
        .query_map([before], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for id in &ids {
        tx.execute("DELETE FROM files WHERE id = ?1", [id])?;
    }
    Ok(ids)
}

/// Every stored file with the rooms it was posted in (for the Hub at start-up).
pub fn all_files(conn: &Connection) -> rusqlite::Result<Vec<FileRow>> {
    let mut files: Vec<FileRow> = conn
        .prepare(
            "SELECT id, name, size, type, uploader, created_at FROM files ORDER BY created_at",
        )?
        .query_map([], |r| {
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
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let index: HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.file.id.clone(), i))
        .collect();
    let mut stmt = conn.prepare(
        "SELECT DISTINCT a.file_id, m.room_id FROM attachments a JOIN messages m ON m.id = a.message_id",
    )?;
    let mut rs = stmt.query([])?;
    while let Some(r) = rs.next()? {
        let (f, room): (String, i64) = (r.get(0)?, r.get(1)?);
        if let Some(&i) = index.get(&f) {
            files[i].rooms.push(room);
        }
    }
    Ok(files)
}

/// Whether `user` is a member of a room where file `id` is attached to a message that is
/// not deleted: asked at each download, so that leaving a room or deleting a message
/// takes the access away at once.
pub fn file_access(conn: &Connection, id: &str, user: UserId) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM attachments a
           JOIN messages m ON m.id = a.message_id AND m.deleted = 0
           JOIN members mb ON mb.room_id = m.room_id AND mb.user_id = ?2
           WHERE a.file_id = ?1)",
    )?
    .query_row(params![id, user], |r| r.get(0))
}
