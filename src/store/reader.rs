//! Reader threads: older history pages and full-text search, each on its own read-only
//! connection (WAL lets them read while the writer commits).

use super::load::open_reader;
use super::messages::{
    file_access, fill_attachments, fill_reactions, message_from_row, reactors, MESSAGE_COLUMNS,
};
use super::{Completion, MessageRow, Notifier, Outcome, ReadJob, ReadOp, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
            reader,
        } => Outcome::History {
            room,
            forward: after.is_some(),
            reader,
            result: match after {
                Some(a) => history_after(conn, room_id, a, limit),
                None => history(conn, room_id, before, limit),
            }
            .and_then(|(mut rows, more)| {
                fill_reactions(conn, &mut rows, Some(reader))?;
                fill_attachments(conn, &mut rows)?;
                Ok((rows, more))
            })
            .map_err(log_err),
        },
        ReadOp::User { name } => {
            Outcome::UserFound(crate::store::load::user_named(conn, &name).map_err(log_err))
        }
        ReadOp::Token { hash } => Outcome::TokenFound {
            hash,
            result: crate::store::load::token_user(conn, &hash).map_err(log_err),
        },
        ReadOp::Seqs {
            room_id,
            after_seq,
            limit,
        } => Outcome::Seqs {
            room_id,
            result: seqs_after(conn, room_id, after_seq, limit)
                .and_then(|(mut rows, more)| {
                    fill_reactions(conn, &mut rows, None)?;
                    fill_attachments(conn, &mut rows)?;
                    Ok((rows, more))
                })
                .map_err(log_err),
        },
        ReadOp::FileAccess { id, user, range } => Outcome::FileAccess {
            result: file_access(conn, &id, user).map_err(log_err),
            id,
            range,
        },
        ReadOp::Reactors {
            id,
            emoji,
            after,
            limit,
        } => Outcome::Reactors {
            id,
            result: reactors(conn, id, &emoji, &after, limit)
                .map_err(log_err)
                .and_then(|r| r),
            emoji,
        },
        ReadOp::ExportPage {
            user_id,
            after,
            limit,
        } => Outcome::ExportPage(export_page(conn, user_id, after, limit).map_err(log_err)),
        ReadOp::Sessions { user_id, current } => {
            Outcome::Sessions(sessions(conn, user_id, &current).map_err(log_err))
        }
        ReadOp::Search {
            query,
            room_ids,
            limit,
            reader,
        } => Outcome::Search {
            reader,
            result: search(conn, &query, &room_ids, limit, SEARCH_BUDGET)
                .and_then(|(mut rows, partial)| {
                    fill_reactions(conn, &mut rows, Some(reader))?;
                    fill_attachments(conn, &mut rows)?;
                    fill_attachments(conn, &mut rows)?;
                    Ok((rows, partial))
                })
                .map_err(log_err),
        },
    }
}

/// Messages `user` wrote with ids above `after`, oldest first; and whether none follow.
fn export_page(
    conn: &Connection,
    user: i64,
    after: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![user, after, limit as i64 + 1],
            message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let last = rows.len() <= limit;
    rows.truncate(limit);
    Ok((rows, last))
}

/// A user's live sessions, most recently used first (at most `MAX_SESSIONS_LISTED`).
fn sessions(
    conn: &Connection,
    user_id: i64,
    current: &crate::auth::TokenHash,
) -> rusqlite::Result<Vec<super::SessionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash, created_at, last_used, ip, user_agent FROM tokens
         WHERE user_id = ?1 AND expires_at > ?2
         ORDER BY coalesce(last_used, created_at, 0) DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![
            user_id,
            crate::time::now_ms(),
            crate::config::MAX_SESSIONS_LISTED as i64
        ],
        |r| {
            let hash: Vec<u8> = r.get(0)?;
            let mut h = [0u8; 32];
            if hash.len() == 32 {
                h.copy_from_slice(&hash);
            }
            Ok(super::SessionRow {
                id: super::session_id(&h),
                created_at: r.get(1)?,
                last_used: r.get(2)?,
                ip: r.get(3)?,
                user_agent: r.get(4)?,
                current: &h == current,
            })
        },
    )?;
    rows.collect()
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
/// A room's messages with `seq` > `after_seq`, the first `limit` in order, and whether
/// more follow.
pub fn seqs_after(
    conn: &Connection,
    room_id: i64,
    after_seq: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![room_id, after_seq, limit as i64 + 1],
            message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

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

/// How long one search may keep a reader thread busy before it answers with what it
/// found (`partial`).
pub const SEARCH_BUDGET: Duration = Duration::from_millis(200);
/// SQLite VM steps between looks at the clock.
const CLOCK_EVERY: i32 = 10_000;

/// Full-text search over `room_ids`, best first, within `budget` of this thread's time:
/// `(rows, partial)`. A ranked search must see every match before it returns one, so
/// when it runs out of time, the newest matches found in a short second try come
/// instead, marked partial.
pub fn search(
    conn: &Connection,
    text: &str,
    room_ids: &[i64],
    limit: usize,
    budget: Duration,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let Some(q) = fts_query(text) else {
        return Ok((Vec::new(), false));
    };
    let rooms = serde_json::to_string(room_ids).unwrap_or_else(|_| "[]".into());
    let ranked = run_timed(
        conn,
        &search_sql("ORDER BY rank"),
        &q,
        &rooms,
        limit,
        budget,
    )?;
    if let Some(rows) = ranked {
        return Ok((rows, false));
    }
    let newest = run_timed(
        conn,
        &search_sql("ORDER BY m.id DESC"),
        &q,
        &rooms,
        limit,
        budget / 4,
    )?;
    Ok((newest.unwrap_or_default(), true))
}

fn search_sql(order: &str) -> String {
    let cols = MESSAGE_COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols} FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
         WHERE messages_fts MATCH ?1 AND m.deleted = 0
           AND m.room_id IN (SELECT value FROM json_each(?2))
         {order} LIMIT ?3"
    )
}

/// Runs a search statement, interrupting it after `budget`: `None` if it was cut
/// short before finishing (rows read until then are dropped).
fn run_timed(
    conn: &Connection,
    sql: &str,
    q: &str,
    rooms: &str,
    limit: usize,
    budget: Duration,
) -> rusqlite::Result<Option<Vec<MessageRow>>> {
    let start = Instant::now();
    conn.progress_handler(CLOCK_EVERY, Some(move || start.elapsed() > budget));
    let mut stmt = conn.prepare_cached(sql)?;
    let rows: rusqlite::Result<Vec<MessageRow>> = stmt
        .query_map(rusqlite::params![q, rooms, limit as i64], message_from_row)?
        .collect();
    conn.progress_handler(0, None::<fn() -> bool>);
    match rows {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
                "INSERT INTO messages (room_id,user_id,text,ts,seq) VALUES (1,1,?1,0,?2)",
                rusqlite::params![format!("message number {i}"), i],
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
        let found = |q: &str, rooms: &[i64]| search(&conn, q, rooms, 10, SEARCH_BUDGET).unwrap();
        assert_eq!(found("number 3", &[1]), (vec![message(&conn, 3)], false));
        assert_eq!(found("numb", &[1]).0.len(), 5);
        assert_eq!(found("number", &[2]).0.len(), 0);
    }

    fn message(conn: &Connection, id: i64) -> MessageRow {
        history(conn, 1, id + 1, 1).unwrap().0.remove(0)
    }

    #[test]
    fn a_search_out_of_time_answers_partial() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO messages (room_id, user_id, text, ts, seq) SELECT 1, 1, 'alpha beta ' || i, 0, i FROM n;",
        )
        .unwrap();
        let (rows, partial) = search(&conn, "alpha", &[1], 10, Duration::from_millis(200)).unwrap();
        assert!(!partial, "enough time for 20,000 matches");
        assert_eq!(rows.len(), 10);
        let (_, partial) = search(&conn, "alpha", &[1], 10, Duration::ZERO).unwrap();
        assert!(partial, "no time at all");
    }
}
