//! Shared files, the Hub's part: who may upload (budget and quotas), the record once the
//! bytes are on disk, which files a message may carry, and who may download them. The
//! bytes themselves never pass through here: the reactor streams them between the
//! socket and the file worker.

use super::hub::{fail, unauthorized, Budget, Effect, Fail, Hub};
use super::protocol::ErrorCode;
use crate::config::{
    MAX_ATTACHMENTS, MAX_FILE_NAME_BYTES, MAX_UPLOADS_AT_ONCE, MAX_UPLOADS_IN_ALL,
    UNATTACHED_FILE_TTL_MS,
};
use crate::files::{FileError, FileJob};
use crate::http::{byte_range, percent_decode, Request, Response};
use crate::id::{ConnId, RoomId, UserId};
use crate::store::{FileRef, FileRow, ReadJob, ReadOp, ReplyTo, StoreError, StoreOp};
use crate::time::Now;
use serde_json::json;

/// Image types shown inline (`<img>`); everything else downloads as an attachment.
const INLINE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An upload on its way: its bytes are being written, then its record stored.
pub(super) struct PendingUpload {
    pub file: FileRef,
    pub user: UserId,
    pub sha256: Option<String>,
}

/// What the reactor does for a download the Hub allowed.
#[derive(Debug)]
pub struct Download {
    pub id: String,
    pub first: u64,
    pub len: u64,
}

impl Hub {
    /// `POST /files`: checks the token, the upload budget and the quotas before a byte
    /// of the body is read. On success the reactor streams the body to the file worker
    /// under the returned id.
    pub fn begin_upload(
        &mut self,
        conn: ConnId,
        req: &Request,
        now: Now,
    ) -> Result<(String, u64), Response> {
        let user = self.authenticate(req, now).ok_or_else(unauthorized)?;
        let size = req.upload.unwrap_or(0) as u64;
        if size == 0 {
            return Err(Response::error(
                400,
                "bad_request",
                "an empty file is not a file",
            ));
        }
        let at_once = self.uploads.values().filter(|u| u.user == user).count();
        if at_once >= MAX_UPLOADS_AT_ONCE {
            let msg =
                format!("at most {MAX_UPLOADS_AT_ONCE} uploads at once; wait for one to finish");
            let body = json!({ "error": "rate_limited", "message": msg, "retry_after_ms": 1000 });
            return Err(Response::json(429, &body).with_header("Retry-After", "1"));
        }
        if self.uploads.len() >= MAX_UPLOADS_IN_ALL {
            let msg = "the server is taking as many uploads as it can; try again shortly";
            return Err(Response::error(503, "overloaded", msg).with_header("Retry-After", "1"));
        }
        if let Err((_, msg)) = self.rate(user, Budget::Upload, now) {
            self.stats.rate_limited += 1;
            let ms = self.retry_ms;
            let body = json!({ "error": "rate_limited", "message": msg, "retry_after_ms": ms });
            return Err(Response::json(429, &body)
                .with_header("Retry-After", ms.div_ceil(1000).to_string()));
        }
        let used = self.file_bytes_of(user);
        if used + size > self.cfg.user_files_max_bytes {
            let msg = format!(
                "your files would take more than {} bytes; delete messages with files to make room",
                self.cfg.user_files_max_bytes
            );
            return Err(Response::error(507, "quota_exceeded", &msg));
        }
        if self.file_bytes_total() + size > self.cfg.files_max_bytes {
            return Err(Response::error(
                507,
                "storage_full",
                "the server's file storage is full",
            ));
        }
        let id = new_file_id();
        let file = FileRef {
            id: id.clone(),
            name: file_name(req.header("x-filename")),
            size,
            mime: mime_type(req.header("content-type")),
        };
        self.uploads.insert(
            conn,
            PendingUpload {
                file,
                user,
                sha256: None,
            },
        );
        Ok((id, size))
    }

    /// The uploading connection ended before its answer: the reservation goes (the
    /// reactor tells the worker to drop the partial file).
    pub fn upload_gone(&mut self, conn: ConnId) {
        self.uploads.remove(&conn);
    }

    /// The file worker finished writing an upload (or could not).
    pub(super) fn uploaded(
        &mut self,
        to: ReplyTo,
        id: String,
        result: Result<String, FileError>,
        now: Now,
    ) {
        let Some(up) = self.uploads.get_mut(&to.conn) else {
            if result.is_ok() {
                // Its uploader left while the file was being finished: nobody has it.
                self.fx
                    .push(Effect::File(FileJob::Delete { ids: vec![id] }));
            }
            return;
        };
        match result {
            Ok(sha) => {
                up.sha256 = Some(sha.clone());
                let op = StoreOp::AddFile {
                    file: up.file.clone(),
                    uploader: up.user,
                    sha256: sha,
                    at: now.wall_ms,
                };
                self.store(Some(to), op);
            }
            Err(e) => {
                self.uploads.remove(&to.conn);
                let resp = match e {
                    FileError::NoSpace => {
                        Response::error(507, "storage_full", "the server's disk is full")
                    }
                    FileError::Io => {
                        Response::error(500, "internal", "the file could not be written")
                    }
                };
                self.respond(to.conn, resp);
            }
        }
    }

    /// The file's record was stored: the upload is answered.
    pub(super) fn file_added(&mut self, to: ReplyTo, result: Result<(), StoreError>, now: Now) {
        let Some(up) = self.uploads.remove(&to.conn) else {
            return;
        };
        if result.is_err() {
            self.fx.push(Effect::File(FileJob::Delete {
                ids: vec![up.file.id.clone()],
            }));
            return self.respond(to.conn, super::hub::storage_unavailable());
        }
        let f = &up.file;
        let body = json!({
            "id": f.id, "name": f.name, "size": f.size, "type": f.mime,
            "sha256": up.sha256.as_deref().unwrap_or(""),
        });
        let row = FileRow {
            file: f.clone(),
            uploader: up.user,
            created_at: now.wall_ms,
            rooms: Vec::new(),
        };
        self.files.insert(f.id.clone(), row.clone());
        self.publish(crate::store::event::Event::File { row });
        self.respond(to.conn, Response::json(201, &body));
    }

    /// `GET /files/ID` (token as a bearer or `?token=`, so that `<img>` and links work):
    /// for its uploader and the members of a room it was posted in; a `Range` is honoured.
    pub(super) fn download(&mut self, conn: ConnId, req: &Request, id: &str, now: Now) {
        let token = req
            .bearer()
            .map(str::to_string)
            .or_else(|| req.query_param("token"));
        let Some(user) = token.and_then(|t| self.token_user(&t, now)) else {
            return self.respond(conn, unauthorized());
        };
        let Some(row) = self.files.get(id) else {
            return self.respond(conn, Response::error(404, "not_found", "no such file"));
        };
        let range = req.header("range").map(str::to_string);
        if row.uploader == user {
            return self.serve_file(conn, id, range.as_deref());
        }
        // Anyone else: the database says whether a live message in one of their rooms
        // carries it (memory does not keep every message's files).
        let op = ReadOp::FileAccess {
            id: id.to_string(),
            user,
            range,
        };
        let reply = ReplyTo {
            conn,
            via: crate::store::Via::Http,
        };
        self.fx.push(Effect::Read(ReadJob { reply, op }));
    }

    /// The answer to `ReadOp::FileAccess`.
    pub(super) fn file_access_read(
        &mut self,
        to: ReplyTo,
        id: String,
        range: Option<String>,
        result: Result<bool, StoreError>,
    ) {
        match result {
            Ok(true) => self.serve_file(to.conn, &id, range.as_deref()),
            Ok(false) => {
                let msg = "this file was shared in a room you are not in";
                self.respond(to.conn, Response::error(403, "forbidden", msg));
            }
            Err(_) => self.respond(to.conn, super::hub::storage_unavailable()),
        }
    }

    fn serve_file(&mut self, conn: ConnId, id: &str, range: Option<&str>) {
        let Some(row) = self.files.get(id) else {
            return self.respond(conn, Response::error(404, "not_found", "no such file"));
        };
        let f = &row.file;
        let (first, last, status) = match byte_range(range, f.size) {
            Ok(None) => (0, f.size - 1, 200),
            Ok(Some((a, b))) => (a, b, 206),
            Err(()) => {
                let r = Response::error(416, "range_not_satisfiable", "no such range of this file")
                    .with_header("Content-Range", format!("bytes */{}", f.size));
                return self.respond(conn, r);
            }
        };
        let inline = INLINE_TYPES.contains(&f.mime.as_str());
        let disposition = format!(
            "{}; filename*=UTF-8''{}",
            if inline { "inline" } else { "attachment" },
            encode_filename(&f.name)
        );
        let mut resp = Response::new(status, "application/octet-stream", Vec::new())
            .with_header("Content-Disposition", disposition)
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Content-Security-Policy", "sandbox")
            .with_header("Accept-Ranges", "bytes")
            .with_header("Cache-Control", "private, max-age=3600");
        resp.content_type = if inline {
            file_type_static(&f.mime)
        } else {
            "application/octet-stream"
        };
        if status == 206 {
            resp = resp.with_header("Content-Range", format!("bytes {first}-{last}/{}", f.size));
        }
        let len = last - first + 1;
        let download = Download {
            id: f.id.clone(),
            first,
            len,
        };
        self.fx.push(Effect::Download {
            conn,
            resp,
            download,
        });
    }

    /// The files a message may carry: at most `MAX_ATTACHMENTS`, each uploaded by its
    /// author (anyone else's file id is refused, whether it exists or not).
    pub(super) fn check_attachments(&self, user: UserId, ids: &[String]) -> Result<(), Fail> {
        if ids.len() > MAX_ATTACHMENTS {
            return fail(
                ErrorCode::BadRequest,
                format!("a message carries at most {MAX_ATTACHMENTS} files"),
            );
        }
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return fail(ErrorCode::BadRequest, "a file is attached twice");
            }
            if self.files.get(id).is_none_or(|f| f.uploader != user) {
                return fail(
                    ErrorCode::BadRequest,
                    format!("{id:.70} is not a file you uploaded"),
                );
            }
        }
        Ok(())
    }

    /// A message with files was stored in `room`: its members may now download them.
    pub(super) fn posted_files(&mut self, room: RoomId, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if let Some(f) = self.files.get_mut(&id) {
                if !f.rooms.contains(&room) {
                    f.rooms.push(room);
                }
            }
        }
    }

    /// Asks the store, once per `FILE_SWEEP_INTERVAL`, to forget unattached files.
    pub(super) fn sweep_files(&mut self, now: Now) {
        if self.next_sweep.is_some_and(|at| at > now.mono) {
            return;
        }
        self.next_sweep = Some(now.mono + crate::config::FILE_SWEEP_INTERVAL);
        let before = now.wall_ms - UNATTACHED_FILE_TTL_MS;
        self.store(None, StoreOp::SweepFiles { before });
    }

    /// Files the store forgot: gone from memory, and from disk by the file worker.
    pub(super) fn files_swept(&mut self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.files.remove(id);
        }
        log::info!("{} unattached files removed", ids.len());
        self.fx.push(Effect::File(FileJob::Delete { ids }));
    }

    /// Bytes of `user`'s stored files and uploads on their way.
    fn file_bytes_of(&self, user: UserId) -> u64 {
        let stored: u64 = self
            .files
            .values()
            .filter(|f| f.uploader == user)
            .map(|f| f.file.size)
            .sum();
        let pending: u64 = self
            .uploads
            .values()
            .filter(|u| u.user == user)
            .map(|u| u.file.size)
            .sum();
        stored + pending
    }

    fn file_bytes_total(&self) -> u64 {
        let stored: u64 = self.files.values().map(|f| f.file.size).sum();
        stored + self.uploads.values().map(|u| u.file.size).sum::<u64>()
    }
}

/// 128 random bits in hex: a file's name on disk and in URLs (unguessable, so a link
/// alone reveals nothing; access is still checked on every download).
fn new_file_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The name to show: the `X-Filename` header (percent-encoded UTF-8), without any path,
/// control characters, or more than `MAX_FILE_NAME_BYTES`; "file" when none is left.
pub(super) fn file_name(header: Option<&str>) -> String {
    let raw = header.and_then(percent_decode).unwrap_or_default();
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name = String::new();
    for c in base.chars().filter(|c| !c.is_control() && !is_format(*c)) {
        if name.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        name.push(c);
    }
    let name = name.trim().to_string();
    if name.is_empty() || name == "." || name == ".." {
        "file".into()
    } else {
        name
    }
}

/// Invisible formatting characters (Unicode Cf: bidi overrides and isolates, zero-width
/// joiners and spaces, the BOM): in a file name they only serve to disguise it, as
/// `…\u{202E}gnp.exe` shown as `…exe.png`.
fn is_format(c: char) -> bool {
    matches!(c, '\u{AD}' | '\u{61C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// A `type/subtype` of token characters (parameters dropped), lower-cased; anything
/// else is `application/octet-stream`.
pub(super) fn mime_type(header: Option<&str>) -> String {
    let t = header
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match t.split_once('/') {
        Some((a, b)) if token(a) && token(b) => t,
        _ => "application/octet-stream".into(),
    }
}

/// The `'static` type an inline image is served as.
fn file_type_static(mime: &str) -> &'static str {
    INLINE_TYPES
        .iter()
        .find(|t| **t == mime)
        .copied()
        .unwrap_or("application/octet-stream")
}

/// RFC 8187 encoding for `filename*=UTF-8''…`.
fn encode_filename(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_controls() {
        assert_eq!(file_name(Some("report.pdf")), "report.pdf");
        assert_eq!(file_name(Some("%E2%9C%93%20ok.txt")), "✓ ok.txt");
        assert_eq!(file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(file_name(Some("C:%5Cx%5Cy.png")), "y.png");
        assert_eq!(file_name(Some("a%0Ab%00c")), "abc");
        assert_eq!(file_name(Some("cat%E2%80%AEgnp.exe")), "catgnp.exe");
        assert_eq!(file_name(Some("..")), "file");
        assert_eq!(file_name(Some("%ZZ")), "file");
        assert_eq!(file_name(None), "file");
        let long = "é".repeat(200);
        let kept = file_name(Some(&long));
        assert!(kept.len() <= MAX_FILE_NAME_BYTES && kept.len() >= MAX_FILE_NAME_BYTES - 1);
        let exact = "a".repeat(MAX_FILE_NAME_BYTES);
        assert_eq!(
            file_name(Some(&exact)),
            exact,
            "exactly the limit is kept whole"
        );
        assert_eq!(file_name(Some(&format!("{exact}b"))), exact);
    }

    #[test]
    fn types_are_plain_tokens() {
        assert_eq!(mime_type(Some("image/PNG")), "image/png");
        assert_eq!(mime_type(Some("text/html; charset=utf-8")), "text/html");
        assert_eq!(mime_type(Some("text")), "application/octet-stream");
        assert_eq!(mime_type(Some("a/b\r\nX: y")), "application/octet-stream");
        assert_eq!(mime_type(None), "application/octet-stream");
        assert_eq!(file_type_static("image/gif"), "image/gif");
        assert_eq!(file_type_static("text/html"), "application/octet-stream");
    }

    #[test]
    fn filenames_are_encoded_for_the_header() {
        assert_eq!(encode_filename("a b\".pdf"), "a%20b%22.pdf");
        assert_eq!(encode_filename("✓"), "%E2%9C%93");
    }
}
