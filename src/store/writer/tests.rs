//! The writer: batches, savepoints, and each write's rules.
use super::*;
use crate::id::ConnId;
use crate::store::messages::insert_message;
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
            attachments: Vec::new(),
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

#[test]
fn files_are_swept_once_unattached_or_never_used_for_a_day() {
    use crate::store::messages::{add_file, attach, sweep_files};
    use crate::store::FileRef;
    let mut conn = db();
    let tx = conn.transaction().unwrap();
    let file = |id: &str| FileRef {
        id: id.into(),
        name: format!("{id}.txt"),
        size: 3,
        mime: "text/plain".into(),
    };
    for (id, at) in [("old", 10), ("young", 1000), ("used", 10), ("shared", 10)] {
        add_file(&tx, &file(id), 1, "00", at).unwrap();
    }
    let (mut a, _) = insert_message(&tx, 1, 1, "a", None).unwrap();
    attach(&tx, &mut a, &["used".into(), "shared".into()]).unwrap();
    assert_eq!(
        a.attachments
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>(),
        ["used", "shared"]
    );
    let (mut b, _) = insert_message(&tx, 1, 1, "b", None).unwrap();
    attach(&tx, &mut b, &["shared".into()]).unwrap();
    // Never attached and older than the cut: swept; attached ones stay.
    assert_eq!(sweep_files(&tx, 500).unwrap(), ["old"]);
    // Deleting a message frees its files at once, unless another message has them.
    change_message(&tx, a.id, Some(1), None).unwrap().unwrap();
    assert_eq!(sweep_files(&tx, 500).unwrap(), ["used"]);
    change_message(&tx, b.id, Some(1), None).unwrap().unwrap();
    assert_eq!(sweep_files(&tx, 0).unwrap(), ["shared"]);
    assert!(
        sweep_files(&tx, 500).unwrap().is_empty(),
        "young stays for its day"
    );
}
