//! Reader threads: older history pages and full-text search, each on its own read-only
//! connection (WAL lets them read while the writer commits).

use super::load::open_reader;
use super::writer::{message_from_row, MESSAGE_COLUMNS};
use super::{Completion, MessageRow, Notifier, Outcome, ReadJob, ReadOp, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

/// Starts `threads` readers, each with its own read-only connection to `path`.
pub fn start(
    path: &Path,
    threads: usize,
    notify: Notifier,
) -> Result<(Sender<ReadJob>, Vec<JoinHandle<()>>), String> {
    let conns = (0..threads)
        .map(|_| open_reader(path))
        .collect::<Result<Vec<_>, _>>()?;
    crate::pool::start(
        "store-reader",
        conns,
        move |conn: &mut Connection, job: ReadJob| {
            notify.send(Completion {
                reply: Some(job.reply),
                outcome: run(conn, job.op),
            })
        },
    )
    .map_err(|e| e.to_string())
}

fn run(conn: &Connection, op: ReadOp) -> Outcome {
    match op {
        ReadOp::History {
            room,
            room_id,
            before,
            after,
            limit,
        } => Outcome::History {
            room,
            forward: after.is_some(),
            result: match after {
                Some(a) => history_after(conn, room_id, a, limit),
                None => history(conn, room_id, before, limit),
            }
            .map_err(log_err),
        },
        ReadOp::Search {
            query,
            room_ids,
            limit,
        } => Outcome::Search(search(conn, &query, &room_ids, limit).map_err(log_err)),
    }
}

fn log_err(e: rusqlite::Error) -> StoreError {
    log::error!("read failed: {e}");
    StoreError::Unavailable
}

/// One page back from `before`: up to `limit` messages, oldest first, and whether older
/// ones exist.
pub fn history(
    conn: &Connection,
    room_id: i64,
    before: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![room_id, before, limit as i64 + 1],
            message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    Ok((rows, has_more))
}

/// One page forward from `after`: up to `limit` messages, oldest first, and whether
/// newer ones exist.
pub fn history_after(
    conn: &Connection,
    room_id: i64,
    after: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![room_id, after, limit as i64 + 1],
            message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, has_more))
}

/// Turns what a person typed into an FTS5 query: every word must occur (as a prefix for
/// the last one, so results follow typing); quotes keep FTS5 syntax out of user input.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

pub fn search(
    conn: &Connection,
    text: &str,
    room_ids: &[i64],
    limit: usize,
) -> rusqlite::Result<Vec<MessageRow>> {
    let Some(q) = fts_query(text) else {
        return Ok(Vec::new());
    };
    let rooms = serde_json::to_string(room_ids).unwrap_or_else(|_| "[]".into());
    let cols = MESSAGE_COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
         WHERE messages_fts MATCH ?1 AND m.deleted = 0
           AND m.room_id IN (SELECT value FROM json_each(?2))
         ORDER BY rank LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(rusqlite::params![q, rooms, limit as i64], message_from_row)?
        .collect();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_query_quotes_words() {
        assert_eq!(
            fts_query("hello wor").as_deref(),
            Some("\"hello\" \"wor\"*")
        );
        assert_eq!(
            fts_query("a\"b OR c*").as_deref(),
            Some("\"a\" \"b\" \"OR\" \"c\"*")
        );
        assert_eq!(fts_query("  ?! "), None);
    }

    #[test]
    fn history_pages_and_search() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn.execute_batch("INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0);")
            .unwrap();
        for i in 1..=5 {
            conn.execute(
                "INSERT INTO messages (room_id,user_id,text,ts) VALUES (1,1,?1,0)",
                [format!("message number {i}")],
            )
            .unwrap();
        }
        let (page, more) = history(&conn, 1, 6, 2).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![4, 5]);
        assert!(more);
        let (page, more) = history(&conn, 1, 2, 2).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1]);
        assert!(!more);
        let (page, more) = history_after(&conn, 1, 1, 2).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![2, 3]);
        assert!(more);
        let (page, more) = history_after(&conn, 1, 3, 2).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![4, 5]);
        assert!(!more);
        assert_eq!(search(&conn, "number 3", &[1], 10).unwrap().len(), 1);
        assert_eq!(search(&conn, "numb", &[1], 10).unwrap().len(), 5);
        assert_eq!(search(&conn, "number", &[2], 10).unwrap().len(), 0);
    }
}
