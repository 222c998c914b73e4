//! Shared files, the Hub's part: who may start an upload (token, size, uploads at once,
//! budget, quotas) and what a download of a whole file or a range is told to send.

use super::{config, World};
use crate::config::{
    Config, FILE_SWEEP_INTERVAL, MAX_ATTACHMENTS, MAX_UPLOADS_AT_ONCE, MAX_UPLOADS_IN_ALL,
    UNATTACHED_FILE_TTL_MS,
};
use crate::files::FileJob;
use crate::http::{Request, Response, Route};
use crate::id::ConnId;
use crate::store::{Completion, Outcome, ReplyTo, StoreOp, Via};
use serde_json::{json, Value};

type Begun = Result<(String, u64), Response>;

fn request(
    method: &str,
    path: &str,
    headers: Vec<(&str, String)>,
    upload: Option<usize>,
) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        body: Vec::new(),
        keep_alive: true,
        upload,
    }
}

impl World {
    /// `POST /files` with a body of `size` bytes to come.
    fn begin(&mut self, token: &str, size: usize) -> (ConnId, Begun) {
        let conn = self.conn();
        let headers = vec![
            ("authorization", format!("Bearer {token}")),
            ("x-filename", "notes.txt".to_string()),
            ("content-type", "text/plain".to_string()),
        ];
        let req = request("POST", "/files", headers, Some(size));
        let begun = self.hub.begin_upload(conn, &req, self.now);
        (conn, begun)
    }

    /// The file worker wrote the upload's bytes: its record is stored and it is answered.
    fn finish(&mut self, conn: ConnId, id: &str) -> Response {
        let c = Completion {
            reply: Some(ReplyTo {
                conn,
                via: Via::Http,
            }),
            outcome: Outcome::Uploaded {
                id: id.into(),
                result: Ok("ab".repeat(32)),
            },
        };
        let fx = self.hub.completed(c, self.now);
        self.run(fx);
        self.responses.remove(&conn).expect("answered")
    }

    fn get_file(
        &mut self,
        token: &str,
        id: &str,
        range: Option<&str>,
    ) -> (Response, Option<crate::chat::Download>) {
        let conn = self.conn();
        let mut headers = vec![("authorization", format!("Bearer {token}"))];
        if let Some(r) = range {
            headers.push(("range", r.to_string()));
        }
        let req = request("GET", &format!("/files/{id}"), headers, None);
        let route = Route::File { id: id.into() };
        let fx = self
            .hub
            .handle_http(conn, self.client_ip, &route, &req, self.now);
        self.run(fx);
        let resp = self.responses.remove(&conn).expect("answered");
        (resp, self.downloads.remove(&conn))
    }
}

fn status(b: &Begun) -> u16 {
    b.as_ref().map_or_else(|r| r.status, |_| 0)
}

fn error(b: &Begun) -> Value {
    let r = b.as_ref().expect_err("refused");
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn an_upload_gets_a_fresh_unguessable_id_and_its_size_and_an_empty_or_anonymous_one_is_refused() {
    let mut w = World::new();
    let token = w.login("alice");
    let (_, first) = w.begin(&token, 1234);
    let (id, size) = first.unwrap();
    assert_eq!(size, 1234);
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let (_, second) = w.begin(&token, 1);
    assert_ne!(second.unwrap().0, id);
    let (_, empty) = w.begin(&token, 0);
    assert_eq!(status(&empty), 400);
    let (_, anonymous) = w.begin(&"x".repeat(43), 10);
    assert_eq!(status(&anonymous), 401);
}

#[test]
fn a_user_has_at_most_four_uploads_at_once_and_the_server_256() {
    let mut w = World::new();
    let alice = w.login("alice");
    let mut conns = Vec::new();
    for _ in 0..MAX_UPLOADS_AT_ONCE {
        let (c, b) = w.begin(&alice, 10);
        assert!(b.is_ok());
        conns.push(c);
    }
    let (_, over) = w.begin(&alice, 10);
    assert_eq!(status(&over), 429);
    assert_eq!(error(&over)["retry_after_ms"], 1000);
    // One ends: room for another. Other users were never held back by hers.
    w.hub.upload_gone(conns[0]);
    assert!(w.begin(&alice, 10).1.is_ok());
    let mut in_all = MAX_UPLOADS_AT_ONCE;
    for i in 0.. {
        // Each from an address of its own: registrations take from the address's budget.
        w.client_ip = std::net::Ipv4Addr::new(10, 0, 0, i as u8 + 1).into();
        let t = w.login(&format!("user{i}"));
        for _ in 0..MAX_UPLOADS_AT_ONCE {
            if in_all == MAX_UPLOADS_IN_ALL {
                let (_, full) = w.begin(&t, 10);
                assert_eq!(status(&full), 503, "{in_all} at once");
                return;
            }
            assert!(w.begin(&t, 10).1.is_ok(), "{in_all} at once");
            in_all += 1;
        }
    }
}

#[test]
fn uploads_take_from_a_budget_and_each_refusal_is_counted_once() {
    let mut w = World::with_config(Config {
        uploads_per_minute: 2.0,
        ..config()
    });
    let t = w.login("alice");
    for _ in 0..2 {
        let (c, b) = w.begin(&t, 10);
        assert!(b.is_ok());
        w.hub.upload_gone(c);
    }
    let before = w.hub.stats.rate_limited;
    let (_, refused) = w.begin(&t, 10);
    assert_eq!(status(&refused), 429);
    assert_eq!(w.hub.stats.rate_limited, before + 1);
    // Two a minute: the next one comes back after 30 s, and not before.
    let ms = error(&refused)["retry_after_ms"].as_u64().unwrap();
    assert!((30_000..=30_001).contains(&ms), "{ms}");
    w.advance(29_900);
    assert_eq!(status(&w.begin(&t, 10).1), 429);
    w.advance(101);
    assert!(w.begin(&t, 10).1.is_ok());
}

#[test]
fn quotas_count_stored_and_pending_bytes_and_allow_exactly_the_limit() {
    let mut w = World::with_config(Config {
        user_files_max_bytes: 1000,
        files_max_bytes: 1500,
        ..config()
    });
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    let (c, b) = w.begin(&alice, 600);
    let (id, _) = b.unwrap();
    assert_eq!(w.finish(c, &id).status, 201);
    assert!(w.begin(&alice, 400).1.is_ok(), "exactly her quota");
    let (_, over) = w.begin(&alice, 1);
    assert_eq!(
        (status(&over), error(&over)["error"].clone()),
        (507, "quota_exceeded".into())
    );
    assert!(w.begin(&bob, 500).1.is_ok(), "exactly the server's room");
    let (_, full) = w.begin(&bob, 1);
    assert_eq!(
        (status(&full), error(&full)["error"].clone()),
        (507, "storage_full".into())
    );
}

#[test]
fn a_download_sends_the_whole_file_or_exactly_the_range_asked() {
    let mut w = World::new();
    let t = w.login("alice");
    let (c, b) = w.begin(&t, 10);
    let (id, _) = b.unwrap();
    assert_eq!(w.finish(c, &id).status, 201);
    let (whole, d) = w.get_file(&t, &id, None);
    let d = d.expect("sent");
    assert_eq!((whole.status, d.first, d.len), (200, 0, 10));
    assert!(!whole.headers.iter().any(|(n, _)| *n == "Content-Range"));
    let (part, d) = w.get_file(&t, &id, Some("bytes=2-5"));
    let d = d.expect("sent");
    assert_eq!((part.status, d.first, d.len), (206, 2, 4));
    let range = part.headers.iter().find(|(n, _)| *n == "Content-Range");
    assert_eq!(range.map(|(_, v)| v.as_str()), Some("bytes 2-5/10"));
}

impl World {
    /// An upload of `size` bytes, begun and finished: its id.
    fn uploaded(&mut self, token: &str, size: usize) -> String {
        let (c, b) = self.begin(token, size);
        let (id, _) = b.expect("begun");
        assert_eq!(self.finish(c, &id).status, 201);
        id
    }
}

#[test]
fn others_download_a_file_once_it_is_posted_in_a_room_of_theirs() {
    let mut w = World::new();
    let alice = w.login("alice");
    let a = w.socket_with(&alice);
    let bob = w.login("bob");
    let id = w.uploaded(&alice, 10);
    let (r, d) = w.get_file(&bob, &id, None);
    assert_eq!((r.status, d.is_none()), (403, true), "not posted yet");
    let (r, _) = w.get_file(&bob, &"0".repeat(32), None);
    assert_eq!(r.status, 404);
    let got = w.ws(
        a,
        json!({"type": "send", "room": "general", "text": "see", "attachments": [id]}),
    );
    assert_eq!(World::one(&got, "message")["attachments"][0]["id"], id);
    assert_eq!(w.hub.files[&id].rooms, [1], "posted in general");
    let (r, d) = w.get_file(&bob, &id, Some("bytes=0-0"));
    assert_eq!((r.status, d.map(|d| d.len)), (206, Some(1)));
}

#[test]
fn a_message_carries_at_most_ten_files_each_its_authors_and_none_twice() {
    let mut w = World::new();
    let alice = w.login("alice");
    let a = w.socket_with(&alice);
    let bob = w.login("bob");
    let ids: Vec<String> = (0..MAX_ATTACHMENTS + 1)
        .map(|_| w.uploaded(&alice, 1))
        .collect();
    let bobs = w.uploaded(&bob, 1);
    let mut send = |files: &[String]| {
        let got = w.ws(
            a,
            json!({"type": "send", "room": "general", "text": "f", "attachments": files}),
        );
        match got.iter().find(|f| f["type"] == "error") {
            Some(e) => e["message"].as_str().unwrap().to_string(),
            None => "sent".to_string(),
        }
    };
    assert!(send(&ids).contains("at most 10 files"));
    assert_eq!(send(&ids[..MAX_ATTACHMENTS]), "sent");
    let twice = [ids[0].clone(), ids[0].clone()];
    assert_eq!(send(&twice), "a file is attached twice");
    assert!(send(&[bobs]).contains("is not a file you uploaded"));
    assert!(send(&["f".repeat(32)]).contains("is not a file you uploaded"));
}

#[test]
fn unattached_files_are_swept_once_a_minute_and_forgotten_with_their_bytes() {
    let mut w = World::new();
    let t = w.login("alice");
    let sweeps = |w: &World| -> Vec<i64> {
        w.writes
            .iter()
            .filter_map(|op| match op {
                StoreOp::SweepFiles { before } => Some(*before),
                _ => None,
            })
            .collect()
    };
    w.tick(0);
    assert_eq!(sweeps(&w), [w.now.wall_ms - UNATTACHED_FILE_TTL_MS]);
    let minute = FILE_SWEEP_INTERVAL.as_millis() as u64;
    w.tick(minute - 1);
    assert_eq!(sweeps(&w).len(), 1, "not before a minute has passed");
    w.tick(1);
    assert_eq!(sweeps(&w).len(), 2);
    // The store forgot one: it goes from memory and from disk.
    let id = w.uploaded(&t, 10);
    w.file_jobs.clear();
    w.outcome(Outcome::FilesSwept(Vec::new()));
    assert!(w.file_jobs.is_empty());
    w.outcome(Outcome::FilesSwept(vec![id.clone()]));
    assert!(
        matches!(&w.file_jobs[..], [FileJob::Delete { ids }] if *ids == [id.clone()]),
        "{:?}",
        w.file_jobs
    );
    assert_eq!(w.get_file(&t, &id, None).0.status, 404);
}

#[test]
fn uploads_on_their_way_count_against_the_quota_before_any_file_is_stored() {
    let mut w = World::with_config(Config {
        user_files_max_bytes: 1000,
        ..config()
    });
    let t = w.login("carol");
    assert!(w.begin(&t, 600).1.is_ok());
    assert_eq!(status(&w.begin(&t, 401).1), 507, "600 bytes on their way");
    assert!(w.begin(&t, 400).1.is_ok());
}
