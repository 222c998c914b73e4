//! Unit tests of `sql.rs` (the dialect layer), on SQLite and, when `CHATTERBOX_TEST_PG`
//! names a server, on PostgreSQL.

use super::*;
use crate::store::sqltext::with_dbname;

#[test]
fn placeholders_become_dollars_outside_quotes() {
    assert_eq!(
        to_dollars("SELECT a FROM t WHERE x = ?1 AND y = '?2' AND z IN (?12)"),
        "SELECT a FROM t WHERE x = $1 AND y = '?2' AND z IN ($12)"
    );
    assert_eq!(to_dollars("a || '#' || b = ?3"), "a || '#' || b = $3");
}

#[test]
fn targets_and_redaction() {
    use std::path::Path;
    assert_eq!(
        Target::of(Path::new("chat.db")),
        Target::Sqlite("chat.db".into())
    );
    assert!(is_postgres(Path::new("postgres://u@h:5/d")));
    assert!(is_postgres(Path::new("postgresql://u@h/d")));
    assert!(!is_postgres(Path::new("./postgres/chat.db")));
    assert_eq!(redact("postgres://u:secret@h:5/d"), "postgres://u@h:5/d");
    assert_eq!(redact("postgres://h/d"), "postgres://h/d");
}

#[test]
fn one_code_reads_both_engines() {
    let lite = rusqlite::Connection::open_in_memory().unwrap();
    check_dialect(Db::Lite(&lite));
    if let Some(url) = test_pg() {
        let pg = RefCell::new(PgConn::connect(&url, false).unwrap());
        check_dialect(Db::Pg(&pg));
    }
}

fn check_dialect(db: Db) {
    // SQLite takes any type name, so one statement makes the table in both.
    db.batch("CREATE TEMP TABLE t (id BIGINT PRIMARY KEY, name TEXT, b BYTEA, n BIGINT)")
        .unwrap();
    let blob: &[u8] = &[1, 2, 3];
    assert_eq!(
        db.exec(
            "INSERT INTO t (id, name, b, n) VALUES (?1, ?2, ?3, ?4)",
            p![7i64, "seven", blob, None::<i64>]
        )
        .unwrap(),
        1
    );
    db.exec(
        "INSERT INTO t (id, name, b, n) VALUES (?1, ?2, NULL, ?3) ON CONFLICT DO NOTHING",
        p![8i64, "it's '?1'", true],
    )
    .unwrap();
    let dup = db.exec(
        "INSERT INTO t (id, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        p![8i64, "again"],
    );
    assert_eq!(dup.unwrap(), 0);
    let e = db
        .exec(
            "INSERT INTO t (id, name) VALUES (?1, ?2)",
            p![8i64, "again"],
        )
        .unwrap_err();
    assert!(e.is_constraint(), "{e}");
    let ids = Ids::new([7, 8, 9]);
    let sql = format!(
        "SELECT id, name, b, n FROM t WHERE {} ORDER BY id",
        db.in_ids("id", 1)
    );
    let rows = db
        .rows(&sql, p![&ids], |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<Option<Vec<u8>>>(2)?,
                r.get::<Option<i64>>(3)?,
            ))
        })
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (7, "seven".to_string(), Some(vec![1, 2, 3]), None),
            (8, "it's '?1'".to_string(), None, Some(1)),
        ]
    );
    let n: i64 = db.value("SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(n, 2);
    let yes: bool = db
        .value("SELECT EXISTS (SELECT 1 FROM t WHERE id = ?1)", p![7i64])
        .unwrap();
    assert!(yes);
    let none = db
        .opt("SELECT name FROM t WHERE id = ?1", p![99i64], |r| {
            r.get::<String>(0)
        })
        .unwrap();
    assert_eq!(none, None);
    let id: i64 = db
        .value(
            "INSERT INTO t (id, name) VALUES (?1, 'r') RETURNING id",
            p![11i64],
        )
        .unwrap();
    assert_eq!(id, 11);
}

#[test]
fn a_url_names_another_database() {
    assert_eq!(
        with_dbname("postgres://u@h:5/postgres", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_dbname("postgres://u@h?host=/tmp", "x"),
        "postgres://u@h/x?host=/tmp"
    );
}

/// The PostgreSQL server the tests may use (`CHATTERBOX_TEST_PG`), if any.
pub fn test_pg() -> Option<String> {
    std::env::var("CHATTERBOX_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh database on the test server, dropped with this value.
pub struct TestDb {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDb {
    /// `None` unless `CHATTERBOX_TEST_PG` is set.
    pub fn new() -> Option<TestDb> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = test_pg()?;
        let name = format!(
            "cb_unit_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        // From template0, which nobody connects to: CREATE DATABASE refuses a
        // template in use, and tests run side by side.
        c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .unwrap();
        Some(TestDb {
            url: with_dbname(&admin, &name),
            admin,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
