//! Opening the database and reading what the reactor keeps in memory, once, at start-up
//! (before the reactor runs, so it is not a read on the reactor thread).

use super::messages::{
    all_files, fill_attachments, fill_reactions, message_from_row, MESSAGE_COLUMNS,
};
use super::schema;
use super::sql::{p, Conn, Db, PgConn, Res, Row, Target};
use super::MessageRow;
use crate::id::TokenHash;
use crate::time::now_ms;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub pw_hash: String,
    pub last_seen: Option<i64>,
    pub admin: bool,
    pub suspended: bool,
    pub deleted_at: Option<i64>,
}

/// One moderation action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at: i64,
    pub actor: Option<i64>,
    pub action: String,
    pub target: String,
}

/// Entries of the audit log kept in memory (newest), for `GET /admin/audit`.
pub const AUDIT_KEPT: usize = 1000;

#[derive(Debug)]
pub struct RoomRow {
    pub id: i64,
    pub name: String,
    pub private: bool,
    pub owner: Option<i64>,
    /// Most recent messages, oldest first: up to the ring's size plus one, the extra
    /// one saying that older messages exist.
    pub recent: Vec<MessageRow>,
}

/// Everything the reactor needs to start.
#[derive(Debug)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    /// (hash, user id, expiry in ms).
    /// (hash, user, expires_at, last used or created, 0 when unknown).
    pub tokens: Vec<(TokenHash, i64, i64, i64)>,
    pub rooms: Vec<RoomRow>,
    /// (room id, user id, read cursor).
    pub members: Vec<(i64, i64, i64)>,
    /// (room, user, delivered cursor) where it is above 0.
    pub delivered: Vec<(i64, i64, i64)>,
    /// Pending invitations: (room id, invitee, inviter), oldest first.
    pub invitations: Vec<(i64, i64, i64)>,
    /// The newest `AUDIT_KEPT` audit entries, oldest first.
    pub audit: Vec<AuditRow>,
    /// Every stored file, with the rooms it was posted in.
    pub files: Vec<super::FileRow>,
}

/// Statements one SQLite connection keeps prepared (the writer uses about fifty).
const LITE_STATEMENTS_KEPT: usize = 128;

/// Opens (creating if needed) and migrates the database for the writer: a SQLite file,
/// or the PostgreSQL server `db` names (`postgres://…`).
pub fn open_writer(db: &Path, full_sync: bool) -> Result<Conn, String> {
    let path = match Target::of(db) {
        Target::Postgres(url) => {
            let mut pg = PgConn::connect(&url, false)?;
            schema::pg_migrate(pg.client_mut()?)
                .map_err(|e| format!("{}: {e}", super::sqltext::redact(&url)))?;
            return Ok(Conn::pg(pg));
        }
        Target::Sqlite(path) => path,
    };
    let mut conn = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Before `configure`, which may write (the journal mode lives in the file): a database
    // from a newer build is refused untouched.
    schema::check_version(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
    schema::configure(&conn, full_sync).map_err(|e| e.to_string())?;
    schema::migrate(&mut conn)?;
    conn.set_prepared_statement_cache_capacity(LITE_STATEMENTS_KEPT);
    Ok(Conn::Lite(conn))
}

/// Opens a read-only connection (for reader threads).
pub fn open_reader(db: &Path) -> Result<Conn, String> {
    let path = match Target::of(db) {
        Target::Postgres(url) => return Ok(Conn::pg(PgConn::connect(&url, true)?)),
        Target::Sqlite(path) => path,
    };
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    conn.set_prepared_statement_cache_capacity(LITE_STATEMENTS_KEPT);
    Ok(Conn::Lite(conn))
}

/// Connects once to a PostgreSQL `db` to learn whether it can be reached (a SQLite file
/// is always "reachable": opening it says what is wrong).
pub fn check_reachable(db: &Path) -> Result<(), String> {
    match Target::of(db) {
        Target::Postgres(url) => PgConn::connect(&url, true).map(drop),
        Target::Sqlite(_) => Ok(()),
    }
}

/// Whether there is a database at `db` for `chatterbox admin` to change: a SQLite file
/// that exists, or any PostgreSQL URL (connecting tells).
pub fn exists(db: &Path) -> bool {
    match Target::of(db) {
        Target::Postgres(_) => true,
        Target::Sqlite(path) => path.exists(),
    }
}

/// `(hash, user, expires_at, last used)` from a token row.
fn token_from_row(r: &Row) -> Res<(TokenHash, i64, i64, i64)> {
    let hash: Vec<u8> = r.get(0)?;
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    Ok((h, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn triple(r: &Row) -> Res<(i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Reads users, live tokens, rooms with their last `ring` messages, and memberships.
pub fn snapshot(conn: Db, ring: usize) -> Res<Snapshot> {
    let users = users_after(conn, 0)?;
    let tokens = conn.rows(
        "SELECT hash, user_id, expires_at, coalesce(last_used, created_at, 0) FROM tokens WHERE expires_at > ?1",
        p![now_ms()],
        token_from_row,
    )?;
    let mut rooms = conn.rows(
        "SELECT id, name, private, owner_id FROM rooms ORDER BY id",
        &[],
        |r| {
            Ok(RoomRow {
                id: r.get(0)?,
                name: r.get(1)?,
                private: r.get(2)?,
                owner: r.get(3)?,
                recent: Vec::new(),
            })
        },
    )?;
    let recent = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 ORDER BY seq DESC LIMIT ?2"
    );
    for room in &mut rooms {
        // One more than the ring holds, to know whether older messages exist.
        let mut msgs = conn.rows(&recent, p![room.id, ring as i64 + 1], message_from_row)?;
        msgs.reverse();
        fill_reactions(conn, &mut msgs, None)?;
        fill_attachments(conn, &mut msgs)?;
        room.recent = msgs;
    }
    let members = conn.rows(
        "SELECT room_id, user_id, read_cursor FROM members",
        &[],
        triple,
    )?;
    let delivered = conn.rows(
        "SELECT room_id, user_id, delivered_cursor FROM members WHERE delivered_cursor > 0",
        &[],
        triple,
    )?;
    let invitations = conn.rows(
        "SELECT room_id, user_id, by_id FROM invitations ORDER BY created_at",
        &[],
        triple,
    )?;
    let mut audit = conn.rows(
        "SELECT at, actor_id, action, target FROM audit ORDER BY id DESC LIMIT ?1",
        p![AUDIT_KEPT as i64],
        |r| {
            Ok(AuditRow {
                at: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
            })
        },
    )?;
    audit.reverse();
    Ok(Snapshot {
        users,
        tokens,
        rooms,
        members,
        delivered,
        invitations,
        audit,
        files: all_files(conn)?,
    })
}

/// Grants (or revokes) admin rights to an existing account: `chatterbox admin`, and
/// `--admin NAME` at start-up. Returns false if there is no such account.
pub fn set_admin(conn: Db, username: &str, admin: bool) -> Res<bool> {
    let lc = username.to_ascii_lowercase();
    let was: Option<bool> = conn.opt(
        "SELECT admin FROM users WHERE username_lc = ?1",
        p![&lc],
        |r| r.get(0),
    )?;
    let Some(was) = was else {
        return Ok(false);
    };
    if was != admin {
        // Only a change is a change: restarting with --admin records nothing new.
        conn.exec(
            "UPDATE users SET admin = ?2 WHERE username_lc = ?1",
            p![&lc, admin],
        )?;
        let action = if admin { "grant_admin" } else { "revoke_admin" };
        conn.exec(
            "INSERT INTO audit (at, actor_id, action, target) VALUES (?1, NULL, ?2, ?3)",
            p![now_ms(), action, username],
        )?;
    }
    Ok(true)
}

/// The columns `user_from_row` reads, in its order (prefix them for a join).
const USER_COLUMNS: &str = "id, username, pw_hash, last_seen, admin, suspended, deleted_at";

fn user_from_row(r: &Row) -> Res<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        pw_hash: r.get(2)?,
        last_seen: r.get(3)?,
        admin: r.get(4)?,
        suspended: r.get(5)?,
        deleted_at: r.get(6)?,
    })
}

/// Accounts with an id above `after`, oldest first (those another process added).
pub fn users_after(conn: Db, after: i64) -> Res<Vec<UserRow>> {
    conn.rows(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id > ?1 ORDER BY id"),
        p![after],
        user_from_row,
    )
}

/// The live account named `name` (any case), if there is one.
pub fn user_named(conn: Db, name: &str) -> Res<Option<UserRow>> {
    conn.opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE username_lc = ?1 AND deleted_at IS NULL"),
        p![name.to_ascii_lowercase().as_str()],
        user_from_row,
    )
}

/// A session token's account and expiry, if the database has the token.
pub fn token_user(conn: Db, hash: &[u8; 32]) -> Res<Option<(UserRow, i64)>> {
    conn.opt(
        "SELECT u.id, u.username, u.pw_hash, u.last_seen, u.admin, u.suspended, u.deleted_at, t.expires_at
         FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?1",
        p![&hash[..]],
        |r| Ok((user_from_row(r)?, r.get(7)?)),
    )
}

/// The highest account id (0 for none).
pub fn max_user_id(conn: Db) -> Res<i64> {
    conn.value("SELECT coalesce(max(id), 0) FROM users", &[])
}

/// `chatterbox admin reset-password NAME`: a one-time code valid for `ttl_ms`, stored
/// hashed. `None` when there is no such account.
pub fn create_reset_code(conn: Db, name: &str, ttl_ms: i64) -> Res<Option<String>> {
    let id: Option<i64> = conn.opt(
        "SELECT id FROM users WHERE username_lc = ?1",
        p![&name.to_ascii_lowercase()],
        |r| r.get(0),
    )?;
    let Some(id) = id else { return Ok(None) };
    let code = crate::auth::new_token();
    let hash = crate::auth::hash_token(&code);
    conn.exec(
        "INSERT INTO reset_codes (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
        p![&hash[..], id, now_ms() + ttl_ms],
    )?;
    conn.exec(
        "INSERT INTO audit (at, actor_id, action, target) VALUES (?1, NULL, 'reset_password', ?2)",
        p![now_ms(), name],
    )?;
    Ok(Some(code))
}

/// `chatterbox admin invite`: an invite code for `uses` registrations within `ttl_ms`.
pub fn create_invite(conn: Db, uses: u32, ttl_ms: i64) -> Res<String> {
    let code = crate::auth::new_token();
    let hash = crate::auth::hash_token(&code);
    conn.exec(
        "INSERT INTO invites (hash, uses_left, expires_at, created_by, created_at) VALUES (?1, ?2, ?3, NULL, ?4)",
        p![&hash[..], uses, now_ms() + ttl_ms, now_ms()],
    )?;
    Ok(code)
}

/// `chatterbox admin add-user NAME`: an account (in `general`) with this password hash.
pub fn add_user(conn: Db, name: &str, phc: &str) -> Result<i64, String> {
    if !crate::auth::valid_username(name) {
        return Err("usernames are 3-32 characters of letters, digits, '_', '.' and '-'".into());
    }
    let id: i64 = conn
        .value(
            "INSERT INTO users (username, username_lc, pw_hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            p![name, &name.to_ascii_lowercase(), phc, now_ms()],
        )
        .map_err(|e| match e.is_constraint() {
            true => "that username is taken".to_string(),
            false => e.to_string(),
        })?;
    conn.exec(
        "INSERT INTO members (room_id, user_id) VALUES (1, ?1) ON CONFLICT DO NOTHING",
        p![id],
    )
    .map_err(|e| e.to_string())?;
    conn.exec(
        "INSERT INTO audit (at, actor_id, action, target) VALUES (?1, NULL, 'add_user', ?2)",
        p![now_ms(), name],
    )
    .map_err(|e| e.to_string())?;
    Ok(id)
}

/// Accounts with admin rights or suspended, by id: what a running server watches for
/// changes made by `chatterbox admin` (or another node).
pub fn account_flags(conn: Db) -> Res<Vec<(i64, bool, bool)>> {
    conn.rows(
        "SELECT id, admin, suspended FROM users WHERE admin = 1 OR suspended = 1 ORDER BY id",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}
