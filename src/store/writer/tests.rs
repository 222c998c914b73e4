//! The writer: batches, savepoints, and each write's rules.
use super::*;
use crate::id::ConnId;
use crate::store::messages::insert_message;
use crate::store::sql::tests::TestDb;
use crate::store::sql::PgConn;
use crate::store::{ReplyTo, Via};
use rusqlite::Connection;

const SEED: &str =
    "INSERT INTO users (id, username, username_lc, pw_hash, created_at) VALUES (1,'a','a','x',0);
     INSERT INTO members (room_id, user_id) VALUES (1, 1);";

/// A SQLite database in memory with one user in `general`.
fn db() -> Conn {
    let mut conn = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();
    conn.execute_batch(SEED).unwrap();
    Conn::Lite(conn)
}

/// The same on both engines: SQLite, and PostgreSQL when the tests have a server.
fn dbs() -> Vec<(Conn, Option<TestDb>)> {
    let mut out = vec![(db(), None)];
    if let Some(t) = TestDb::new() {
        let mut pg = PgConn::connect(&t.url, false).unwrap();
        crate::store::schema::pg_migrate(pg.client_mut().unwrap()).unwrap();
        let conn = Conn::pg(pg);
        conn.db().batch(SEED).unwrap();
        out.push((conn, Some(t)));
    }
    out
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
            attachments: Vec::new(),
        },
    }
}

fn stored(conn: &Conn) -> Vec<String> {
    conn.db()
        .rows("SELECT text FROM messages ORDER BY id", &[], |r| r.get(0))
        .unwrap()
}

fn inserted_ok(done: &[Completion]) -> Vec<bool> {
    done.iter()
        .map(|c| matches!(c.outcome, Outcome::Inserted(Ok(_))))
        .collect()
}

#[test]
fn a_failing_command_leaves_the_rest_of_its_batch_stored() {
    for (conn, _guard) in dbs() {
        // A rule only "boom" breaks (an error inside the command's savepoint).
        conn.db()
            .batch("ALTER TABLE messages ADD CONSTRAINT no_boom CHECK (text <> 'boom')")
            .or_else(|_| {
                conn.db().batch(
                    "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom'
                     BEGIN SELECT RAISE(ABORT, 'no'); END;",
                )
            })
            .unwrap();
        let cmds = vec![insert("a"), insert("boom"), insert("c")];
        let (done, _) = apply_batch(&conn, cmds.into_iter());
        assert_eq!(inserted_ok(&done), vec![true, false, true]);
        assert_eq!(stored(&conn), vec!["a", "c"]);
        let seqs: Vec<i64> = conn
            .db()
            .rows("SELECT seq FROM messages ORDER BY id", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(seqs, vec![1, 2], "the failed one took no seq");
    }
}

#[test]
fn a_lost_postgres_connection_answers_unavailable_then_comes_back() {
    let Some(t) = TestDb::new() else { return };
    let mut pg = PgConn::connect(&t.url, false).unwrap();
    crate::store::schema::pg_migrate(pg.client_mut().unwrap()).unwrap();
    let conn = Conn::pg(pg);
    conn.db().batch(SEED).unwrap();
    // Another session ends this one (only this test's database: tests run side by side),
    // as a restarted server or a cut network does.
    let mut admin = postgres::Client::connect(&t.url, postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'chatterbox' AND datname = current_database()
               AND pid <> pg_backend_pid()",
        )
        .unwrap();
    let (done, ok) = apply_batch(&conn, vec![insert("lost")].into_iter());
    assert!(!ok);
    assert!(matches!(
        done[0].outcome,
        Outcome::Inserted(Err(StoreError::Unavailable))
    ));
    // The next write (or probe) reconnects.
    let mut ok = false;
    for _ in 0..50 {
        if probe(&conn) {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "reconnected");
    let (done, ok) = apply_batch(&conn, vec![insert("back")].into_iter());
    assert!(ok);
    assert_eq!(inserted_ok(&done), vec![true]);
    assert_eq!(stored(&conn), vec!["back"]);
}

#[test]
fn a_batch_sqlite_rolled_back_is_reported_as_not_stored_at_all() {
    let conn = db();
    // RAISE(ROLLBACK) ends the whole transaction, as a full disk can.
    conn.db()
        .batch(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON messages WHEN NEW.text = 'boom'
         BEGIN SELECT RAISE(ROLLBACK, 'no'); END;",
        )
        .unwrap();
    let cmds = vec![insert("a"), insert("boom"), insert("c")];
    let (done, ok) = apply_batch(&conn, cmds.into_iter());
    assert!(!ok);
    assert_eq!(inserted_ok(&done), vec![false, false, false]);
    assert!(
        stored(&conn).is_empty(),
        "what is reported as not stored is not stored"
    );
}

#[test]
fn authors_change_messages_only_while_members() {
    for (conn, _guard) in dbs() {
        let (done, _) = apply_batch(&conn, vec![insert("mine")].into_iter());
        let Outcome::Inserted(Ok((row, _))) = &done[0].outcome else {
            panic!("{done:?}")
        };
        let tx = conn.db();
        tx.exec("DELETE FROM members WHERE user_id = 1", &[])
            .unwrap();
        let r = change_message(tx, row.id, Some(1), Some("edited")).unwrap();
        assert_eq!(r, Err(StoreError::Forbidden));
        // An admin (no author) still may.
        assert!(change_message(tx, row.id, None, None).unwrap().is_ok());
    }
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
    for (conn, _guard) in dbs() {
        let cmds = vec![
            join_cmd(Some("x"), 7),
            // The name is taken: nothing of this one is stored, not even the membership.
            join_cmd(Some("x"), 8),
            // Joining a room that does not exist (its creation failed) is refused.
            join_cmd(None, 9),
            join_cmd(None, 7),
        ];
        let (done, ok) = apply_batch(&conn, cmds.into_iter());
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
            .db()
            .rows(
                "SELECT room_id FROM members WHERE user_id = 1 ORDER BY room_id",
                &[],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(members, vec![1, 7]);
    }
}

#[test]
fn files_are_swept_once_unattached_or_never_used_for_a_day() {
    use crate::store::messages::{add_file, attach, sweep_files};
    use crate::store::FileRef;
    for (conn, _guard) in dbs() {
        let tx = conn.db();
        let file = |id: &str| FileRef {
            id: id.into(),
            name: format!("{id}.txt"),
            size: 3,
            mime: "text/plain".into(),
        };
        for (id, at) in [("old", 10), ("young", 1000), ("used", 10), ("shared", 10)] {
            add_file(tx, &file(id), 1, "00", at).unwrap();
        }
        let (mut a, _) = insert_message(tx, 1, 1, "a", None).unwrap();
        attach(tx, &mut a, &["used".into(), "shared".into()]).unwrap();
        assert_eq!(
            a.attachments
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["used", "shared"]
        );
        let (mut b, _) = insert_message(tx, 1, 1, "b", None).unwrap();
        attach(tx, &mut b, &["shared".into()]).unwrap();
        // Never attached and older than the cut: swept; attached ones stay.
        assert_eq!(sweep_files(tx, 500).unwrap(), ["old"]);
        // Deleting a message frees its files at once, unless another message has them.
        change_message(tx, a.id, Some(1), None).unwrap().unwrap();
        assert_eq!(sweep_files(tx, 500).unwrap(), ["used"]);
        change_message(tx, b.id, Some(1), None).unwrap().unwrap();
        assert_eq!(sweep_files(tx, 0).unwrap(), ["shared"]);
        assert!(
            sweep_files(tx, 500).unwrap().is_empty(),
            "young stays for its day"
        );
    }
}

#[test]
fn seqs_stay_contiguous_with_several_writers_on_postgres() {
    let Some(t) = TestDb::new() else { return };
    {
        let mut pg = PgConn::connect(&t.url, false).unwrap();
        crate::store::schema::pg_migrate(pg.client_mut().unwrap()).unwrap();
        Conn::pg(pg).db().batch(SEED).unwrap();
    }
    // Three writers (three nodes), each committing batches into the same room at once.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let url = t.url.clone();
            std::thread::spawn(move || {
                let conn = Conn::pg(PgConn::connect(&url, false).unwrap());
                for b in 0..10 {
                    let cmds = (0..5).map(|i| insert(&format!("{w}-{b}-{i}")));
                    let (done, ok) = apply_batch(&conn, cmds);
                    assert!(ok);
                    assert!(inserted_ok(&done).iter().all(|ok| *ok));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let conn = Conn::pg(PgConn::connect(&t.url, true).unwrap());
    let seqs: Vec<i64> = conn
        .db()
        .rows(
            "SELECT seq FROM messages WHERE room_id = 1 ORDER BY seq",
            &[],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        seqs,
        (1..=150).collect::<Vec<i64>>(),
        "contiguous from 1, no repeats"
    );
    let last: i64 = conn
        .db()
        .value("SELECT last_seq FROM rooms WHERE id = 1", &[])
        .unwrap();
    assert_eq!(last, 150);
}
