//! Reader threads: older history pages and full-text search, each on its own read-only
//! connection (WAL lets them read while the writer commits; with PostgreSQL, a session
//! of its own that reconnects when lost).

use super::load::open_reader;
use super::messages::{
    file_access, fill_attachments, fill_reactions, message_from_row, messages_after_seq,
    page_after_seq, reactors, MESSAGE_COLUMNS,
};
use super::sql::{p, Conn, Db, DbError, Dialect, Ids, Res};
use super::{Completion, MessageRow, Notifier, Outcome, ReadJob, ReadOp, StoreError};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts `threads` readers, each with its own read-only connection to `db`.
pub fn start(
    db: &Path,
    threads: usize,
    notify: Notifier,
) -> Result<(Sender<ReadJob>, Vec<JoinHandle<()>>), String> {
    let conns = (0..threads)
        .map(|_| open_reader(db))
        .collect::<Result<Vec<_>, _>>()?;
    crate::pool::start(
        "store-reader",
        conns,
        move |conn: &mut Conn, job: ReadJob| {
            // A lost PostgreSQL connection is tried again (with backoff) before each job;
            // meanwhile jobs are answered as failed, at once.
            let outcome = match conn.ensure() {
                true => run(conn.db(), job.op),
                false => job.op.failed(),
            };
            notify.send(Completion {
                reply: Some(job.reply),
                outcome,
            })
        },
    )
    .map_err(|e| e.to_string())
}

pub fn run(conn: Db, op: ReadOp) -> Outcome {
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
        ReadOp::State => Outcome::State(
            crate::store::load::snapshot(conn, 0)
                .map(Box::new)
                .map_err(log_err),
        ),
        ReadOp::User { name } => {
            Outcome::UserFound(crate::store::load::user_named(conn, &name).map_err(log_err))
        }
        ReadOp::Token { hash } => Outcome::TokenFound {
            hash,
            result: crate::store::load::token_user(conn, &hash).map_err(log_err),
        },
        ReadOp::Seqs {
            room,
            after_seq,
            limit,
        } => Outcome::Seqs {
            room,
            result: messages_after_seq(conn, room, after_seq, limit).map_err(log_err),
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
                    Ok((rows, partial))
                })
                .map_err(log_err),
        },
    }
}

/// Messages `user` wrote with ids above `after`, oldest first; and whether none follow.
fn export_page(conn: Db, user: i64, after: i64, limit: usize) -> Res<(Vec<MessageRow>, bool)> {
    let mut rows = conn.rows(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        p![user, after, limit as i64 + 1],
        message_from_row,
    )?;
    let last = rows.len() <= limit;
    rows.truncate(limit);
    Ok((rows, last))
}

/// A user's live sessions, most recently used first (at most `MAX_SESSIONS_LISTED`).
fn sessions(
    conn: Db,
    user_id: i64,
    current: &crate::auth::TokenHash,
) -> Res<Vec<super::SessionRow>> {
    conn.rows(
        "SELECT hash, created_at, last_used, ip, user_agent FROM tokens
         WHERE user_id = ?1 AND expires_at > ?2
         ORDER BY coalesce(last_used, created_at, 0) DESC LIMIT ?3",
        p![
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
    )
}

fn log_err(e: DbError) -> StoreError {
    log::error!("read failed: {e}");
    StoreError::Unavailable
}

/// The seq of the room's message `?2`, as a bound: the message itself when it is in the
/// room, else the nearest one on the side of `?2` that pages move away from. A page goes
/// by the room's order (seq), while clients name the messages by id.
const SEQ_OF_BEFORE: &str = "COALESCE((SELECT seq FROM messages WHERE room_id = ?1 AND id >= ?2 ORDER BY id LIMIT 1), 9223372036854775807)";
const SEQ_OF_AFTER: &str =
    "COALESCE((SELECT seq FROM messages WHERE room_id = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1), 0)";

/// One page back from message id `before`: up to `limit` messages, oldest first, and
/// whether older ones exist.
pub fn history(conn: Db, room_id: i64, before: i64, limit: usize) -> Res<(Vec<MessageRow>, bool)> {
    let mut rows = conn.rows(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 AND seq < {SEQ_OF_BEFORE} ORDER BY seq DESC LIMIT ?3"
        ),
        p![room_id, before, limit as i64 + 1],
        message_from_row,
    )?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    Ok((rows, has_more))
}

/// One page forward from message id `after`: up to `limit` messages, oldest first, and
/// whether newer ones exist.
pub fn history_after(
    conn: Db,
    room_id: i64,
    after: i64,
    limit: usize,
) -> Res<(Vec<MessageRow>, bool)> {
    page_after_seq(conn, room_id, SEQ_OF_AFTER, after, limit)
}

/// The words of what a person typed, as a search takes them (at most 16).
fn query_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .collect()
}

/// Turns what a person typed into an FTS5 query: every word must occur (as a prefix for
/// the last one, so results follow typing); quotes keep FTS5 syntax out of user input.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = query_words(text)
        .into_iter()
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" ");
    q.push('*');
    Some(q)
}

/// The same query for PostgreSQL's `to_tsquery`: every word (`&`), the last a prefix
/// (`:*`). Words are letters and digits only, so quoting each is enough.
pub fn ts_query(text: &str) -> Option<String> {
    let words: Vec<String> = query_words(text)
        .into_iter()
        .map(|w| format!("'{w}'"))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut q = words.join(" & ");
    q.push_str(":*");
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
    conn: Db,
    text: &str,
    room_ids: &[i64],
    limit: usize,
    budget: Duration,
) -> Res<(Vec<MessageRow>, bool)> {
    let q = match conn.dialect() {
        Dialect::Sqlite => fts_query(text),
        Dialect::Postgres => ts_query(text),
    };
    let Some(q) = q else {
        return Ok((Vec::new(), false));
    };
    let rooms = Ids::new(room_ids.iter().copied());
    let ranked = run_timed(conn, &search_sql(conn, true), &q, &rooms, limit, budget)?;
    if let Some(rows) = ranked {
        return Ok((rows, false));
    }
    let newest = run_timed(
        conn,
        &search_sql(conn, false),
        &q,
        &rooms,
        limit,
        budget / 4,
    )?;
    Ok((newest.unwrap_or_default(), true))
}

/// The search statement: `?1` the query, `?2` the rooms, `?3` the limit; best first when
/// `ranked`, else newest first.
fn search_sql(conn: Db, ranked: bool) -> String {
    let cols = MESSAGE_COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rooms = conn.in_ids("m.room_id", 2);
    match (conn.dialect(), ranked) {
        (Dialect::Sqlite, _) => format!(
            "SELECT {cols} FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
             WHERE messages_fts MATCH ?1 AND m.deleted = 0 AND {rooms}
             {} LIMIT ?3",
            if ranked {
                "ORDER BY rank"
            } else {
                "ORDER BY m.id DESC"
            }
        ),
        (Dialect::Postgres, _) => format!(
            "SELECT {cols} FROM messages m, to_tsquery('simple', ?1) q
             WHERE m.tsv @@ q AND m.deleted = 0 AND {rooms}
             {} LIMIT ?3",
            if ranked {
                "ORDER BY ts_rank(m.tsv, q) DESC, m.id DESC"
            } else {
                "ORDER BY m.id DESC"
            }
        ),
    }
}

/// Runs a search statement, stopping it after `budget`: `None` if it was cut short
/// before finishing (rows read until then are dropped).
fn run_timed(
    conn: Db,
    sql: &str,
    q: &str,
    rooms: &Ids,
    limit: usize,
    budget: Duration,
) -> Res<Option<Vec<MessageRow>>> {
    let rows = match conn {
        Db::Lite(c) => {
            let start = Instant::now();
            c.progress_handler(CLOCK_EVERY, Some(move || start.elapsed() > budget));
            let rows = conn.rows(sql, p![q, rooms, limit as i64], message_from_row);
            c.progress_handler(0, None::<fn() -> bool>);
            rows
        }
        Db::Pg(_) => {
            // PostgreSQL stops the statement itself; at least 1 ms (0 means no limit).
            let ms = budget.as_millis().max(1);
            conn.batch(&format!("SET statement_timeout = {ms}"))?;
            let rows = conn.rows(sql, p![q, rooms, limit as i64], message_from_row);
            conn.batch("SET statement_timeout = 0")?;
            rows
        }
    };
    match rows {
        Ok(rows) => Ok(Some(rows)),
        Err(e) if e.is_interrupted() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{Conn, PgConn};
    use rusqlite::Connection;

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
        assert_eq!(
            ts_query("a'b OR c*").as_deref(),
            Some("'a' & 'b' & 'OR' & 'c':*")
        );
        assert_eq!(ts_query("  ?! "), None);
    }

    /// A migrated SQLite database in memory, and the same on PostgreSQL when the tests
    /// have a server (`CHATTERBOX_TEST_PG`).
    fn databases() -> Vec<(Conn, Option<crate::store::sql::tests::TestDb>)> {
        let mut lite = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut lite).unwrap();
        let mut out = vec![(Conn::Lite(lite), None)];
        if let Some(t) = crate::store::sql::tests::TestDb::new() {
            let mut pg = PgConn::connect(&t.url, false).unwrap();
            crate::store::schema::pg_migrate(pg.client_mut().unwrap()).unwrap();
            out.push((Conn::pg(pg), Some(t)));
        }
        out
    }

    /// Inserts a message with the given id and seq (ids out of seq order are what
    /// several writers on PostgreSQL produce).
    fn put(db: Db, id: i64, seq: i64, text: &str) {
        db.exec(
            "INSERT INTO messages (id, room_id, user_id, text, ts, seq) VALUES (?1, 1, 1, ?2, 0, ?3)",
            p![id, text, seq],
        )
        .unwrap();
    }

    #[test]
    fn history_pages_and_search() {
        for (conn, _guard) in databases() {
            let db = conn.db();
            db.exec("INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0)", &[])
                .unwrap();
            for i in 1..=5 {
                put(db, i, i, &format!("message number {i}"));
            }
            let ids = |page: &[MessageRow]| page.iter().map(|m| m.id).collect::<Vec<_>>();
            let (page, more) = history(db, 1, 6, 2).unwrap();
            assert_eq!(ids(&page), vec![4, 5]);
            assert!(more);
            let (page, more) = history(db, 1, i64::MAX, 2).unwrap();
            assert_eq!(ids(&page), vec![4, 5]);
            assert!(more);
            let (page, more) = history(db, 1, 2, 2).unwrap();
            assert_eq!(ids(&page), vec![1]);
            assert!(!more);
            let (page, more) = history_after(db, 1, 1, 2).unwrap();
            assert_eq!(ids(&page), vec![2, 3]);
            assert!(more);
            let (page, more) = history_after(db, 1, 3, 2).unwrap();
            assert_eq!(ids(&page), vec![4, 5]);
            assert!(!more);
            let (page, more) = history_after(db, 1, 0, 10).unwrap();
            assert_eq!(page.len(), 5);
            assert!(!more);
            let found = |q: &str, rooms: &[i64]| search(db, q, rooms, 10, SEARCH_BUDGET).unwrap();
            let third = history(db, 1, 4, 1).unwrap().0.remove(0);
            assert_eq!(
                found("number 3", &[1]),
                (vec![third], false),
                "{:?}",
                db.dialect()
            );
            assert_eq!(found("numb", &[1]).0.len(), 5);
            assert_eq!(found("NUMBER", &[1]).0.len(), 5);
            assert_eq!(found("number", &[2]).0.len(), 0);
            assert_eq!(found("message nope", &[1]).0.len(), 0);
        }
    }

    #[test]
    fn pages_follow_seq_not_id() {
        for (conn, _guard) in databases() {
            let db = conn.db();
            db.exec("INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0)", &[])
                .unwrap();
            // Committed in the order 10, 12, 11, 13: seq says so, ids do not.
            for (id, seq) in [(10, 1), (12, 2), (11, 3), (13, 4)] {
                put(db, id, seq, "m");
            }
            let ids = |page: &[MessageRow]| page.iter().map(|m| m.id).collect::<Vec<_>>();
            assert_eq!(
                ids(&history(db, 1, i64::MAX, 10).unwrap().0),
                vec![10, 12, 11, 13]
            );
            assert_eq!(ids(&history(db, 1, 11, 10).unwrap().0), vec![10, 12]);
            assert_eq!(ids(&history_after(db, 1, 12, 10).unwrap().0), vec![11, 13]);
            assert_eq!(ids(&history_after(db, 1, 11, 1).unwrap().0), vec![13]);
            // The gap filler: seq in (1, ..], two at a time.
            let (rows, more) = messages_after_seq(db, 1, 1, 2).unwrap();
            assert_eq!(ids(&rows), vec![12, 11]);
            assert_eq!(rows.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
            assert!(more);
            let (rows, more) = messages_after_seq(db, 1, 3, 2).unwrap();
            assert_eq!(ids(&rows), vec![13]);
            assert!(!more);
            let out = run(
                db,
                ReadOp::Seqs {
                    room: 1,
                    after_seq: 4,
                    limit: 10,
                },
            );
            assert!(
                matches!(&out, Outcome::Seqs { room: 1, result: Ok((rows, false)) } if rows.is_empty()),
                "{out:?}"
            );
        }
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
        let db = Db::Lite(&conn);
        let (rows, partial) = search(db, "alpha", &[1], 10, Duration::from_millis(200)).unwrap();
        assert!(!partial, "enough time for 20,000 matches");
        assert_eq!(rows.len(), 10);
        let (_, partial) = search(db, "alpha", &[1], 10, Duration::ZERO).unwrap();
        assert!(partial, "no time at all");
    }
}
