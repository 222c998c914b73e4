//! Upgrades: the current server on databases that released versions wrote.
//!
//! EVERY SCHEMA CHANGE MUST EXTEND THIS TEST. A new migration has to keep everything a
//! v0.1.0 database holds readable (users and passwords, rooms, members, messages, edits,
//! deletes, client ids, read cursors, search); when it adds something, check here that
//! old rows get a sensible value for it. A release that changes the schema also adds its
//! own fixture (`tests/fixtures/vX.Y.Z.db`, made by that release's binary with a script
//! like `make_v0.1.0.py`) and a test like `v0_1_0_database_opens_with_everything_in_it`.
//! Fixtures are only ever read through a copy.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FIXTURE_V0_1_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1.0.db");

/// Users of the v0.1.0 fixture and their passwords (see make_v0.1.0.py).
const USERS: [(&str, &str); 4] = [
    ("alice", "alice-password-1"),
    ("bob", "bob-password-22"),
    ("Carol", "carol-password-333"),
    ("dave", "dave-password-4444"),
];

/// Every message of the fixture as it must read now: (id, room, user, text).
/// Message 3 is deleted (empty text), message 8 was edited.
const MESSAGES: [(i64, &str, &str, &str); 20] = [
    (1, "general", "alice", "good morning everyone"),
    (2, "general", "bob", "morning alice"),
    (3, "general", "Carol", ""),
    (4, "general", "dave", "hi all, dave here"),
    (5, "general", "alice", "stand-up at ten"),
    (6, "general", "bob", "see you there"),
    (7, "lobby", "alice", "welcome to the lobby"),
    (8, "lobby", "bob", "thanks for the invite"),
    (9, "lobby", "Carol", "who brought the xylophone"),
    (10, "lobby", "alice", "the lobby has snacks"),
    (11, "lobby", "bob", "snacks are gone already"),
    (12, "lobby", "Carol", "typical"),
    (13, "secret", "alice", "the launch date is friday"),
    (14, "secret", "bob", "friday works for me"),
    (15, "secret", "alice", "keep the codename zeppelin quiet"),
    (16, "secret", "bob", "my lips are sealed"),
    (17, "dm:bob:carol", "bob", "lunch later?"),
    (18, "dm:bob:carol", "Carol", "sure, noon"),
    (19, "dm:bob:carol", "bob", "great"),
    (20, "dm:bob:carol", "Carol", "see you"),
];
const DELETED: i64 = 3;
const EDITED: i64 = 8;
/// (message id, client_id).
const CLIENT_IDS: [(i64, &str); 2] = [(5, "fixture-cid-1"), (17, "fixture-cid-dm")];

/// A copy of `fixture` in a fresh temporary directory.
fn copy_of(fixture: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    let db = dir.0.join("chat.db");
    std::fs::copy(fixture, &db).unwrap();
    (dir, db)
}

fn login(s: &TestServer, name: &str, password: &str) -> String {
    let r = s.post_json("/login", &json!({"username": name, "password": password}));
    assert_eq!(r.status, 200, "{name}: {}", r.body);
    r.json()["token"].as_str().unwrap().to_string()
}

fn user_version(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn ids(msgs: &Value) -> Vec<i64> {
    msgs.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// The expected messages of one room, in order.
fn expected(room: &str) -> Vec<(i64, &'static str, &'static str)> {
    MESSAGES
        .iter()
        .filter(|m| m.1 == room)
        .map(|&(id, _, user, text)| (id, user, text))
        .collect()
}

/// Checks one room's messages (from HTTP, WebSocket history or `joined`) against MESSAGES.
fn check_messages(room: &str, msgs: &Value) {
    let got: Vec<(i64, &str, &str)> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["user"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected(room), "messages of {room}");
    for m in msgs.as_array().unwrap() {
        let id = m["id"].as_i64().unwrap();
        // Schema 6 numbered the old messages of each room 1, 2, 3, … in id order.
        let place = expected(room).iter().position(|e| e.0 == id).unwrap();
        assert_eq!(m["seq"], json!(place + 1), "{m}");
        assert_eq!(m["room"], room, "{m}");
        assert!(m["ts"].as_str().unwrap().ends_with('Z'), "{m}");
        assert_eq!(m["deleted"], json!(id == DELETED), "{m}");
        assert_eq!(m["edited"], json!(id == EDITED), "{m}");
        if id == EDITED {
            assert!(m["edited_at"].as_str().unwrap().ends_with('Z'), "{m}");
        }
        match CLIENT_IDS.iter().find(|c| c.0 == id) {
            Some((_, cid)) => assert_eq!(m["client_id"], *cid, "{m}"),
            None => assert!(m["client_id"].is_null(), "{m}"),
        }
    }
}

#[test]
fn v0_1_0_database_opens_with_everything_in_it() {
    let (_dir, db) = copy_of(FIXTURE_V0_1_0);
    assert_eq!(user_version(&db), 1, "the fixture is a v0.1.0 database");
    let s = TestServer::start_with_db(&db, &[]);
    assert_eq!(
        user_version(&db),
        chatterbox::store::schema::VERSION,
        "migrated to this build's schema"
    );

    // Every user logs in with their password (case-insensitively), and only with it.
    let tokens: Vec<String> = USERS.iter().map(|(u, p)| login(&s, u, p)).collect();
    let [alice, bob, carol, dave] = [0, 1, 2, 3].map(|i| tokens[i].as_str());
    let r = s.post_json(
        "/login",
        &json!({"username": "CAROL", "password": "carol-password-333"}),
    );
    assert_eq!(
        (r.status, r.json()["username"].clone()),
        (200, json!("Carol"))
    );
    let r = s.post_json(
        "/login",
        &json!({"username": "alice", "password": "bob-password-22"}),
    );
    assert_eq!(r.status, 401);
    // Names stay taken.
    assert_eq!(s.register("carol").status, 409);

    // Rooms: what each user sees, with members and unread counts.
    let rooms = |t: &str| -> Vec<Value> {
        let r = s.http("GET", "/rooms", Some(t), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().as_array().unwrap().clone()
    };
    let summary = |t: &str| -> Vec<(String, bool, i64, i64)> {
        rooms(t)
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["private"].as_bool().unwrap(),
                    r["members"].as_i64().unwrap(),
                    r["last_id"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let row = |n: &str, p: bool, m: i64, last: i64| (n.to_string(), p, m, last);
    assert_eq!(
        summary(bob),
        vec![
            row("dm:bob:carol", true, 2, 20),
            row("general", false, 4, 6),
            row("lobby", false, 3, 12),
            row("secret", true, 2, 16),
        ]
    );
    assert_eq!(
        summary(dave),
        vec![row("general", false, 4, 6), row("lobby", false, 3, 12)],
        "dave sees neither the private room nor the DM"
    );
    let member_of = |t: &str| -> Vec<String> {
        rooms(t)
            .iter()
            .filter(|r| r["member"] == true)
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(member_of(dave), ["general"]);
    assert_eq!(member_of(alice), ["general", "lobby", "secret"]);
    assert_eq!(member_of(carol), ["dm:bob:carol", "general", "lobby"]);
    // Unread counts come from the read cursors: dave never read general (others' live
    // messages 1, 2, 5, 6), bob read up to 5 (6 is his own), alice read the lobby.
    let unread = |t: &str, room: &str| -> i64 {
        rooms(t).iter().find(|r| r["name"] == room).unwrap()["unread"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(unread(dave, "general"), 4);
    assert_eq!(unread(bob, "general"), 0);
    assert_eq!(unread(alice, "lobby"), 0);
    assert_eq!(unread(alice, "general"), 3);
    assert_eq!(unread(carol, "dm:bob:carol"), 0);
    assert_eq!(unread(bob, "dm:bob:carol"), 2);

    // hello lists each user's rooms.
    let (mut b, hello) = s.ws_hello(bob);
    assert_eq!(
        hello["rooms"],
        json!(["general", "lobby", "secret", "dm:bob:carol"])
    );
    let (mut d, hello) = s.ws_hello(dave);
    assert_eq!(
        hello["rooms"],
        json!(["general"]),
        "dave never joined the lobby"
    );

    // joined: members, owner, privacy, read cursors and history, room by room.
    // (room, members, owner, private, cursors)
    let rooms_expected: [(&str, &[&str], Value, bool, Value); 4] = [
        (
            "general",
            &["Carol", "alice", "bob", "dave"],
            Value::Null,
            false,
            json!({"alice": 0, "bob": 5, "Carol": 6, "dave": 0}),
        ),
        (
            "lobby",
            &["Carol", "alice", "bob"],
            json!("alice"),
            false,
            json!({"alice": 12, "bob": 0, "Carol": 0}),
        ),
        (
            "secret",
            &["alice", "bob"],
            json!("alice"),
            true,
            json!({"alice": 0, "bob": 15}),
        ),
        (
            "dm:bob:carol",
            &["Carol", "bob"],
            Value::Null,
            true,
            json!({"bob": 0, "Carol": 19}),
        ),
    ];
    for (room, members, owner, private, cursors) in rooms_expected {
        let j = b.request(json!({"type": "join", "room": room}), room);
        assert_eq!(j["type"], "joined", "{j}");
        assert_eq!(sorted_strings(&j["members"]), members, "{room}: {j}");
        assert_eq!(j["owner"], owner, "{room}: {j}");
        assert_eq!(j["private"], private, "{room}: {j}");
        assert_eq!(j["cursors"], cursors, "{room}: {j}");
        assert_eq!(j["complete"], true, "{room}: {j}");
        check_messages(room, &j["history"]);
        // Every member was online under v0.1.0 and left: each has a last_seen.
        for m in members {
            assert!(
                j["last_seen"][m].as_str().is_some_and(|t| t.ends_with('Z')),
                "{room}: no last_seen for {m}: {j}"
            );
        }
        // The same through HTTP pages and WebSocket history (from the database, not
        // only the in-memory ring).
        check_messages(room, &json!(s.all_messages(bob, room)));
        let h = b.request(
            json!({"type": "history", "room": room, "before": 1000, "limit": 2}),
            "h",
        );
        let all = expected(room);
        assert_eq!(
            ids(&h["messages"]),
            all[all.len() - 2..].iter().map(|m| m.0).collect::<Vec<_>>()
        );
        assert_eq!(h["has_more"], true);
    }
    // Private rooms and the DM stay closed to others.
    // (Someone else's DM answers as one that does not exist.)
    for (room, code, status) in [
        ("secret", "forbidden", 403),
        ("dm:bob:carol", "no_such_room", 404),
    ] {
        let e = d.request(json!({"type": "join", "room": room}), "no");
        assert_eq!(e["code"], code, "{room}: {e}");
        let r = s.http("GET", &format!("/rooms/{room}/messages"), Some(dave), None);
        assert_eq!(r.status, status, "{room}");
    }

    // Search: the index came along, follows the edit and the delete, and respects rooms.
    let search = |t: &str, q: &str| -> Vec<i64> {
        let r = s.http("GET", &format!("/search?q={q}"), Some(t), None);
        assert_eq!(r.status, 200, "{}", r.body);
        ids(&r.json()["messages"])
    };
    assert_eq!(search(dave, "xylophone"), vec![9]);
    assert_eq!(search(bob, "zeppelin"), vec![15]);
    assert_eq!(search(dave, "zeppelin"), Vec::<i64>::new(), "private");
    assert_eq!(search(carol, "noon"), vec![18]);
    assert_eq!(search(dave, "noon"), Vec::<i64>::new(), "a DM");
    assert_eq!(search(alice, "invite"), vec![EDITED]);
    assert_eq!(
        search(alice, "invte"),
        Vec::<i64>::new(),
        "the edit replaced it"
    );
    assert_eq!(search(alice, "deleted"), Vec::<i64>::new(), "deleted");

    // Writes carry on where v0.1.0 stopped: a retry of an old client_id is still the
    // old message, new ids follow the old ones, edits and cursors work on old rows.
    let mut a = s.ws(alice);
    let again = a.request(
        json!({"type": "send", "room": "general", "text": "stand-up at ten", "client_id": "fixture-cid-1"}),
        "retry",
    );
    assert_eq!(
        (again["type"].clone(), again["id"].clone()),
        (json!("message"), json!(5))
    );
    let new = a.request(
        json!({"type": "send", "room": "general", "text": "after the upgrade"}),
        "new",
    );
    assert_eq!(new["type"], "message", "{new}");
    assert!(new["id"].as_i64().unwrap() > 20, "{new}");
    assert_eq!(d.recv_type("message")["id"], new["id"]);
    let ed = a.request(
        json!({"type": "edit", "id": 1, "text": "good morning, upgraded"}),
        "edit",
    );
    assert_eq!(ed["type"], "edited", "{ed}");
    let seen = d.request(json!({"type": "seen", "room": "general", "id": 6}), "seen");
    assert_eq!(
        (seen["type"].clone(), seen["id"].clone()),
        (json!("seen"), json!(6))
    );
    assert_eq!(search(dave, "upgraded"), vec![1]);
    assert_eq!(
        search(dave, "after%20upgrade"),
        vec![new["id"].as_i64().unwrap()]
    );

    // Schema 2: a client_id is recognised per room (the same one in another room is a
    // new message), and invitations are pending rows that survive a restart.
    let other = a.request(
        json!({"type": "send", "room": "lobby", "text": "same cid, other room", "client_id": "fixture-cid-1"}),
        "cid",
    );
    assert_eq!(other["type"], "message", "{other}");
    assert_ne!(other["id"], json!(5));
    let owner = s
        .ws(bob)
        .request(json!({"type": "join", "room": "secret"}), "o")["owner"]
        .as_str()
        .unwrap()
        .to_string();
    let owner_token = tokens[USERS
        .iter()
        .position(|(u, _)| u.eq_ignore_ascii_case(&owner))
        .unwrap()]
    .clone();
    let inv = s.ws(&owner_token).request(
        json!({"type": "invite", "room": "secret", "user": "dave"}),
        "inv",
    );
    assert_eq!(inv["type"], "invited", "{inv}");
    drop(a);
    drop(d);
    drop(s);
    let s = TestServer::start_with_db(&db, &[]);
    let dave = login(&s, USERS[3].0, USERS[3].1);
    assert_eq!(
        s.http("GET", "/invitations", Some(&dave), None).json(),
        json!([{"room": "secret", "by": owner}])
    );
    // Schema 3: tokens from before it have no session details; new ones do, and the
    // sessions list shows both kinds.
    let list = s.http("GET", "/account/sessions", Some(&dave), None).json();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.iter().filter(|x| x["current"] == true).count(), 1);
    for session in sessions {
        // Logins made by this build say where from; the fixture's say nothing.
        let new = !session["created_at"].is_null();
        assert_eq!(session["ip"].is_null(), !new, "{session}");
    }
    // Schema 4: old messages have no reactions; one added now survives a restart, and
    // the reader sees it marked as theirs.
    let page = s
        .http("GET", "/rooms/general/messages", Some(&dave), None)
        .json();
    for m in page["messages"].as_array().unwrap() {
        assert_eq!(m["reactions"], json!({}), "{m}");
    }
    let target = expected("general")
        .iter()
        .map(|m| m.0)
        .find(|id| *id != DELETED)
        .unwrap();
    let r = s
        .ws(&dave)
        .request(json!({"type": "react", "id": target, "emoji": "👍"}), "re");
    assert_eq!(
        (r["type"].as_str(), r["count"].as_i64()),
        (Some("reacted"), Some(1)),
        "{r}"
    );
    drop(s);
    let s = TestServer::start_with_db(&db, &[]);
    let page = s
        .http("GET", "/rooms/general/messages", Some(&dave), None)
        .json();
    let m = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == target)
        .unwrap()
        .clone();
    assert_eq!(
        (&m["reactions"], &m["mine"]),
        (&json!({"👍": 1}), &json!(["👍"])),
        "{m}"
    );
    // Schema 5: files can be shared on a migrated database.
    let mut up = std::net::TcpStream::connect(s.addr).unwrap();
    up.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut up,
        format!("POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {dave}\r\nX-Filename: a.txt\r\nContent-Length: 2\r\n\r\nok").as_bytes(),
    )
    .unwrap();
    let f = read_response(&mut up);
    assert_eq!(f.status, 201, "{}", f.body);
    let id = f.json()["id"].as_str().unwrap().to_string();
    let sent = s.ws(&dave).request(
        json!({"type": "send", "room": "general", "text": "", "attachments": [id]}),
        "f",
    );
    assert_eq!(sent["attachments"][0]["name"], "a.txt", "{sent}");
    drop(s);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let old: i64 = conn
        .query_row(
            "SELECT count(*) FROM tokens WHERE created_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 4, "the fixture's tokens are kept, without details");
}

/// Starts the binary on `db` and waits for it to exit; it must, within 20 s.
fn run_to_exit(db: &Path) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatterbox");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatterbox started on a database from the future");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    (
        status,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_database_from_a_newer_chatterbox_is_refused_untouched() {
    // In WAL mode (as chatterbox writes it) and in rollback-journal mode: switching the
    // journal mode is itself a write, which v0.1.0 did before it looked at the version.
    for journal in ["wal", "delete"] {
        refused_untouched(journal);
    }
}

fn refused_untouched(journal: &str) {
    let (dir, db) = copy_of(FIXTURE_V0_1_0);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", journal, |r| r.get(0))
            .unwrap();
        assert_eq!(mode, journal);
        conn.pragma_update(None, "user_version", 9999).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let (status, stdout, stderr) = run_to_exit(&db);
    assert!(!status.success(), "{journal}: exit status {status}");
    assert!(status.code().is_some(), "an exit, not a crash: {status}");
    let version = chatterbox::store::schema::VERSION;
    assert!(
        stderr.contains(&format!(
            "database schema version 9999 is newer than this chatterbox ({version}); upgrade chatterbox"
        )),
        "{journal}: stderr: {stderr}"
    );
    assert!(!stdout.contains("listening"), "{journal}: stdout: {stdout}");
    assert!(
        std::fs::read(&db).unwrap() == before,
        "{journal}: the database file was modified"
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "chat.db")
        .collect();
    assert!(left.is_empty(), "{journal}: left behind: {left:?}");
    assert_eq!(user_version(&db), 9999);
}
