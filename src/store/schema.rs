//! The schema and its migrations: SQLite's versioned with `PRAGMA user_version`,
//! PostgreSQL's in the one-row table `schema_version`.
//!
//! Each entry of `MIGRATIONS` takes a SQLite database from version `i` to `i + 1`; a
//! database is brought up to date when it is opened, inside one transaction per step.
//! PostgreSQL starts at version `PG_BASE` (the same tables as SQLite's version 6, in
//! PostgreSQL's types) and follows with `PG_MIGRATIONS`, so a version number means the
//! same schema on both engines.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: everything the protocol needs.
    r#"
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY,
        username    TEXT NOT NULL,
        username_lc TEXT NOT NULL UNIQUE,
        pw_hash     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        last_seen   INTEGER
    );
    CREATE TABLE tokens (
        hash       BLOB PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id),
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE rooms (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        private    INTEGER NOT NULL DEFAULT 0,
        owner_id   INTEGER REFERENCES users(id),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE members (
        room_id     INTEGER NOT NULL REFERENCES rooms(id),
        user_id     INTEGER NOT NULL REFERENCES users(id),
        read_cursor INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, user_id)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id   INTEGER NOT NULL REFERENCES rooms(id),
        user_id   INTEGER NOT NULL REFERENCES users(id),
        text      TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        client_id TEXT,
        edited_at INTEGER,
        deleted   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_by_room ON messages(room_id, id);
    CREATE UNIQUE INDEX messages_client_id ON messages(user_id, client_id)
        WHERE client_id IS NOT NULL;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END;
    INSERT INTO rooms (id, name, private, owner_id, created_at) VALUES (1, 'general', 0, NULL, 0);
    "#,
    // 2: pending invitations (an invitation is no longer a membership); client_id
    // retries are recognised per room.
    r#"
    CREATE TABLE invitations (
        room_id    INTEGER NOT NULL REFERENCES rooms(id),
        user_id    INTEGER NOT NULL REFERENCES users(id),
        by_id      INTEGER NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, user_id)
    ) WITHOUT ROWID;
    DROP INDEX messages_client_id;
    CREATE UNIQUE INDEX messages_client_id ON messages(room_id, user_id, client_id)
        WHERE client_id IS NOT NULL;
    -- Admin rights live on the account (never on a name someone could register), and
    -- moderation is recorded.
    ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        at       INTEGER NOT NULL,
        actor_id INTEGER REFERENCES users(id),
        action   TEXT NOT NULL,
        target   TEXT NOT NULL
    );
    "#,
    // 3: sessions people can see and end (when, from where, with what), and the password
    // of an account can change.
    r#"
    ALTER TABLE tokens ADD COLUMN created_at INTEGER;
    ALTER TABLE tokens ADD COLUMN last_used INTEGER;
    ALTER TABLE tokens ADD COLUMN ip TEXT;
    ALTER TABLE tokens ADD COLUMN user_agent TEXT;
    CREATE INDEX tokens_by_user ON tokens(user_id);
    -- A deleted account keeps its row (its name is held for a quarantine, its messages
    -- stay as placeholders), without a password.
    ALTER TABLE users ADD COLUMN deleted_at INTEGER;
    -- Delivery receipts: up to which message each member has received each room.
    ALTER TABLE members ADD COLUMN delivered_cursor INTEGER NOT NULL DEFAULT 0;
    -- One-time password reset codes (`chatterbox admin reset-password`), stored hashed.
    CREATE TABLE reset_codes (
        hash       BLOB PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users(id),
        expires_at INTEGER NOT NULL,
        used       INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    -- Invite codes for `--registration invite`, stored hashed.
    CREATE TABLE invites (
        hash       BLOB PRIMARY KEY,
        uses_left  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_by INTEGER REFERENCES users(id),
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 4: reactions, one row per (message, emoji, user); the rowid keeps the order in
    // which they came.
    r#"
    CREATE TABLE reactions (
        message_id INTEGER NOT NULL REFERENCES messages(id),
        user_id    INTEGER NOT NULL REFERENCES users(id),
        emoji      TEXT NOT NULL,
        at         INTEGER NOT NULL,
        UNIQUE (message_id, emoji, user_id)
    );
    CREATE INDEX reactions_by_user ON reactions(user_id);
    "#,
    // 5: shared files. The bytes live in a directory beside the database, under the
    // file's id; `attached` says a message has used the file (once no message does, it
    // is swept at once; a file never attached is swept after a day).
    r#"
    CREATE TABLE files (
        id         TEXT PRIMARY KEY,
        uploader   INTEGER NOT NULL REFERENCES users(id),
        name       TEXT NOT NULL,
        size       INTEGER NOT NULL,
        type       TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attached   INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE attachments (
        message_id INTEGER NOT NULL REFERENCES messages(id),
        file_id    TEXT NOT NULL REFERENCES files(id),
        position   INTEGER NOT NULL,
        PRIMARY KEY (message_id, file_id)
    ) WITHOUT ROWID;
    CREATE INDEX attachments_by_file ON attachments(file_id);
    "#,
    // 6: a per-room sequence number assigned in commit order (`rooms.last_seq` is taken
    // and bumped inside the inserting transaction, so the room's row lock orders them).
    // With one writer ids are already in commit order; with several nodes writing one
    // database (cluster mode) they are not, and catch-up and gap filling go by `seq`.
    r#"
    ALTER TABLE rooms ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN seq INTEGER;
    UPDATE messages SET seq = n.seq FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY id) AS seq FROM messages
    ) AS n WHERE n.id = messages.id;
    UPDATE rooms SET last_seq = (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room_id = rooms.id);
    CREATE UNIQUE INDEX messages_by_seq ON messages(room_id, seq);
    "#,
];

/// The version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The version PostgreSQL's first step creates.
pub const PG_BASE: i64 = 6;

/// PostgreSQL's schema: entry 0 creates version `PG_BASE`, entry `i` takes `PG_BASE + i - 1`
/// to `PG_BASE + i`. Every integer is BIGINT (the store reads `i64` from both engines;
/// flags stay 0/1 as in SQLite); BLOB is BYTEA; ids come from identity columns.
/// `reactions.rowid` stands in for SQLite's rowid (the order reactions came in), and
/// `messages.tsv` is the search index (the `simple` configuration: lower case, no stemming).
/// `username_lc` compares bytewise (`COLLATE "C"`), as SQLite does, so pages by name agree.
const PG_MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE users (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username    TEXT NOT NULL,
        username_lc TEXT COLLATE "C" NOT NULL UNIQUE,
        pw_hash     TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        last_seen   BIGINT,
        admin       BIGINT NOT NULL DEFAULT 0,
        suspended   BIGINT NOT NULL DEFAULT 0,
        deleted_at  BIGINT
    );
    CREATE TABLE tokens (
        hash       BYTEA PRIMARY KEY,
        user_id    BIGINT NOT NULL REFERENCES users(id),
        expires_at BIGINT NOT NULL,
        created_at BIGINT,
        last_used  BIGINT,
        ip         TEXT,
        user_agent TEXT
    );
    CREATE INDEX tokens_by_user ON tokens(user_id);
    CREATE TABLE rooms (
        id         BIGINT PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        private    BIGINT NOT NULL DEFAULT 0,
        owner_id   BIGINT REFERENCES users(id),
        created_at BIGINT NOT NULL,
        last_seq   BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE members (
        room_id          BIGINT NOT NULL REFERENCES rooms(id),
        user_id          BIGINT NOT NULL REFERENCES users(id),
        read_cursor      BIGINT NOT NULL DEFAULT 0,
        delivered_cursor BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE messages (
        id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        room_id   BIGINT NOT NULL REFERENCES rooms(id),
        user_id   BIGINT NOT NULL REFERENCES users(id),
        text      TEXT NOT NULL,
        ts        BIGINT NOT NULL,
        client_id TEXT,
        edited_at BIGINT,
        deleted   BIGINT NOT NULL DEFAULT 0,
        seq       BIGINT,
        tsv       tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
    );
    CREATE INDEX messages_by_room ON messages(room_id, id);
    CREATE INDEX messages_by_user ON messages(user_id, id);
    CREATE UNIQUE INDEX messages_client_id ON messages(room_id, user_id, client_id)
        WHERE client_id IS NOT NULL;
    CREATE UNIQUE INDEX messages_by_seq ON messages(room_id, seq);
    CREATE INDEX messages_fts ON messages USING GIN (tsv);
    CREATE TABLE invitations (
        room_id    BIGINT NOT NULL REFERENCES rooms(id),
        user_id    BIGINT NOT NULL REFERENCES users(id),
        by_id      BIGINT NOT NULL REFERENCES users(id),
        created_at BIGINT NOT NULL,
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE audit (
        id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at       BIGINT NOT NULL,
        actor_id BIGINT REFERENCES users(id),
        action   TEXT NOT NULL,
        target   TEXT NOT NULL
    );
    CREATE TABLE reset_codes (
        hash       BYTEA PRIMARY KEY,
        user_id    BIGINT NOT NULL REFERENCES users(id),
        expires_at BIGINT NOT NULL,
        used       BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE invites (
        hash       BYTEA PRIMARY KEY,
        uses_left  BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        created_by BIGINT REFERENCES users(id),
        created_at BIGINT NOT NULL
    );
    CREATE TABLE reactions (
        rowid      BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        message_id BIGINT NOT NULL REFERENCES messages(id),
        user_id    BIGINT NOT NULL REFERENCES users(id),
        emoji      TEXT NOT NULL,
        at         BIGINT NOT NULL,
        UNIQUE (message_id, emoji, user_id)
    );
    CREATE INDEX reactions_by_user ON reactions(user_id);
    CREATE TABLE files (
        id         TEXT PRIMARY KEY,
        uploader   BIGINT NOT NULL REFERENCES users(id),
        name       TEXT NOT NULL,
        size       BIGINT NOT NULL,
        type       TEXT NOT NULL,
        sha256     TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        attached   BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE attachments (
        message_id BIGINT NOT NULL REFERENCES messages(id),
        file_id    TEXT NOT NULL REFERENCES files(id),
        position   BIGINT NOT NULL,
        PRIMARY KEY (message_id, file_id)
    );
    CREATE INDEX attachments_by_file ON attachments(file_id);
    INSERT INTO rooms (id, name, private, owner_id, created_at) VALUES (1, 'general', 0, NULL, 0);
    "#];

// Both engines reach the same version.
const _: () = assert!(PG_BASE + PG_MIGRATIONS.len() as i64 - 1 == VERSION);

/// Any number, the same in every process: whoever holds it migrates, the others wait.
const PG_MIGRATION_LOCK: i64 = 0x0063_6861_7474_6572; // "chatter"

/// Opens settings every connection needs.
pub fn configure(conn: &Connection, full_sync: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if full_sync { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// The database's schema version, refused if a newer build wrote it: this build would not
/// know what the newer schema means, and migrating "down" is not a thing. Only reads, so
/// it can run before anything else touches the file.
pub fn check_version(conn: &Connection) -> Result<i64, String> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if current > VERSION {
        return Err(newer(current));
    }
    Ok(current)
}

fn newer(current: i64) -> String {
    format!(
        "database schema version {current} is newer than this chatterbox ({VERSION}); \
         upgrade chatterbox"
    )
}

/// Brings a PostgreSQL database to `VERSION`, holding an advisory lock so that nodes
/// starting together migrate one at a time (the later ones find it done). Refuses a
/// database from a newer build, untouched.
pub fn pg_migrate(client: &mut postgres::Client) -> Result<(), String> {
    let e = |e: postgres::Error| match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&PG_MIGRATION_LOCK])
        .map_err(e)?;
    let result = pg_migrate_locked(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&PG_MIGRATION_LOCK]);
    result
}

fn pg_migrate_locked(client: &mut postgres::Client) -> Result<(), String> {
    let e = |e: postgres::Error| match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(e)?
        .get(0);
    let current: i64 = if exists {
        client
            .query_opt("SELECT version FROM schema_version", &[])
            .map_err(e)?
            .map_or(0, |r| r.get(0))
    } else {
        0
    };
    if current > VERSION {
        return Err(newer(current));
    }
    let mut version = current;
    while version < VERSION {
        let step = if version == 0 {
            0
        } else {
            version - PG_BASE + 1
        };
        let next = if version == 0 { PG_BASE } else { version + 1 };
        let mut tx = client.transaction().map_err(e)?;
        if version == 0 {
            tx.batch_execute(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version VALUES (0);",
            )
            .map_err(e)?;
        }
        tx.batch_execute(PG_MIGRATIONS[step as usize])
            .map_err(|err| format!("migration {next}: {}", e(err)))?;
        tx.execute("UPDATE schema_version SET version = $1", &[&next])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        log::info!("database migrated to schema version {next}");
        version = next;
    }
    Ok(())
}

/// Brings the database to `VERSION`. Refuses a database from a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current = check_version(conn)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        log::info!("database migrated to schema version {}", i + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        let general: String = conn
            .query_row("SELECT name FROM rooms WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(general, "general");
    }

    #[test]
    fn refuses_a_newer_schema_and_leaves_it_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 6)
            .unwrap();
        let e = migrate(&mut conn).unwrap_err();
        assert_eq!(
            e,
            format!(
                "database schema version {} is newer than this chatterbox ({VERSION}); \
                 upgrade chatterbox",
                VERSION + 6
            )
        );
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing was created");
    }

    #[test]
    fn postgres_migrates_once_even_when_nodes_start_together() {
        let Some(t) = crate::store::sql::tests::TestDb::new() else {
            return;
        };
        // Four nodes at once: the advisory lock lets one migrate, the others find it done.
        let nodes: Vec<_> = (0..4)
            .map(|_| {
                let url = t.url.clone();
                std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    pg_migrate(&mut c)
                })
            })
            .collect();
        for n in nodes {
            n.join().unwrap().unwrap();
        }
        let mut c = postgres::Client::connect(&t.url, postgres::NoTls).unwrap();
        pg_migrate(&mut c).unwrap();
        let v: i64 = c
            .query_one("SELECT version FROM schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, VERSION);
        let general: String = c
            .query_one("SELECT name FROM rooms WHERE id = 1", &[])
            .unwrap()
            .get(0);
        assert_eq!(general, "general");
        // A newer database is refused with the same words as SQLite's, and left alone.
        c.execute("UPDATE schema_version SET version = $1", &[&(VERSION + 6)])
            .unwrap();
        assert_eq!(pg_migrate(&mut c).unwrap_err(), newer(VERSION + 6));
        let v: i64 = c
            .query_one("SELECT version FROM schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, VERSION + 6);
    }

    #[test]
    fn search_index_follows_edits() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0);
             INSERT INTO messages (room_id,user_id,text,ts) VALUES (1,1,'hello brave world',0);
             UPDATE messages SET text='goodbye moon' WHERE id=1;",
        )
        .unwrap();
        let hits = |q: &str| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                [q],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(hits("brave"), 0);
        assert_eq!(hits("moon"), 1);
    }
}
