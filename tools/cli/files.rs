//! Shared files: `POST /files` streamed from disk (with its length, so the server can
//! refuse it from the head), `GET /files/ID` streamed to disk (never whole in memory,
//! never over an existing file unless asked), and the small pure helpers around them:
//! sizes as people read them, a content type from the extension, names safe to write.

use crate::catchup::{jitter_ms, retry_after};
use crate::{term, Fail};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The server's default largest file (`--max-file-bytes`); checked here before a byte
/// is sent. `CHATTERBOX_MAX_FILE_BYTES` changes it for a server set up otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// The most files one message may carry (as the server counts them).
pub const MAX_ATTACHMENTS: usize = 10;

/// How long an upload keeps waiting out the upload budget before it gives up.
const PATIENCE: Duration = Duration::from_secs(60);

pub fn max_file_bytes() -> u64 {
    std::env::var("CHATTERBOX_MAX_FILE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_FILE_BYTES)
}

/// A size as people read it: `512 B`, `1.5 KiB`, `12 MiB` (one decimal below 10).
pub fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// The content type of a file, from its extension; `application/octet-stream` when it
/// is not a known one.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "log" | "text" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// UTF-8 percent-encoded, every byte but the unreserved ones (the server decodes `+` as
/// a space, so it is encoded too).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoded UTF-8 (`+` stays a `+`); None if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The name a `Content-Disposition` gives (`filename*=UTF-8''…`, else `filename="…"`).
pub fn disposition_name(header: &str) -> Option<String> {
    for part in header.split(';').map(str::trim) {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let (charset, rest) = value.split_once('\'')?;
                let (_, encoded) = rest.split_once('\'')?;
                if charset.eq_ignore_ascii_case("utf-8") {
                    return percent_decode(encoded);
                }
            }
            "filename" => return Some(value.trim_matches('"').to_string()),
            _ => {}
        }
    }
    None
}

/// A name from the server made safe to create in a directory: no path (separators
/// become `_`), no control characters, not hidden or `.`/`..` (a leading dot becomes
/// `_`), at most 200 bytes; `fallback` when nothing is left.
pub fn safe_file_name(name: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = match c {
            '/' | '\\' => '_',
            c if c.is_control() => continue,
            c => c,
        };
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    let out = out.trim();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        return fallback.to_string();
    }
    match out.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => out.to_string(),
    }
}

/// A file's id as typed: lower-case hex only (it goes into a URL).
pub fn file_id(s: &str) -> Result<String, Fail> {
    let id = s.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Fail::Usage(format!("not a file id: {}", term::safe(s))));
    }
    Ok(id)
}

/// A file about to be uploaded, checked here first: a regular, non-empty file under the
/// size limit.
pub struct Local {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
}

impl Local {
    pub fn check(path: &str) -> Result<Local, Fail> {
        let shown = term::safe(path);
        let meta = std::fs::metadata(path)
            .map_err(|e| Fail::Usage(format!("cannot read {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(Fail::Usage(format!("{shown} is not a file")));
        }
        let size = meta.len();
        if size == 0 {
            return Err(Fail::Usage(format!("{shown} is empty; nothing to upload")));
        }
        let max = max_file_bytes();
        if size > max {
            return Err(Fail::Usage(format!(
                "{shown} is too large: {} ({size} bytes); the server takes at most {} ({max} bytes)",
                self::size(size),
                self::size(max)
            )));
        }
        let path = PathBuf::from(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "file".into());
        Ok(Local { path, name, size })
    }

    /// `name (1.2 MiB)`, safe to print.
    pub fn shown(&self) -> String {
        format!("{} ({})", term::safe(&self.name), size(self.size))
    }
}

/// A reader that tells how far it got.
struct Counting<'a, R> {
    inner: R,
    sent: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        (self.report)(self.sent);
        Ok(n)
    }
}

/// Where and as whom to talk HTTP.
pub struct Http<'a> {
    pub agent: &'a ureq::Agent,
    /// `http(s)://host:port`.
    pub base: &'a str,
    /// host:port, for messages.
    pub host: &'a str,
    pub token: &'a str,
}

impl Http<'_> {
    fn unreachable(&self, what: &str, e: ureq::Error) -> Fail {
        Fail::Unreachable(term::safe(&format!("{what}: {}: {e}", self.host)))
    }

    /// Uploads `file` from disk as it is read, telling `progress` the bytes sent so far;
    /// returns the server's record (`id`, `name`, `size`, `type`, `sha256`). Past the
    /// upload budget it waits as the server says and tries again (up to a minute), unless
    /// `no_retry`. `Expect: 100-continue` lets a refusal (too large, quota, budget) come
    /// from the head, before the body is sent.
    pub fn upload(
        &self,
        file: &Local,
        no_retry: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Value, Fail> {
        let deadline = Instant::now() + PATIENCE;
        let shown = file.shown();
        loop {
            let f = std::fs::File::open(&file.path)
                .map_err(|e| Fail::Usage(format!("cannot read {shown}: {e}")))?;
            let mut body = Counting {
                inner: f.take(file.size),
                sent: 0,
                report: &mut *progress,
            };
            let sent = self
                .agent
                .post(format!("{}/files", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .header("Content-Type", content_type(&file.path))
                .header("X-Filename", percent_encode(&file.name))
                .header("Content-Length", file.size.to_string())
                .header("Expect", "100-continue")
                .send(ureq::SendBody::from_reader(&mut body));
            let mut resp =
                sent.map_err(|e| self.unreachable(&format!("uploading {shown} to"), e))?;
            let status = resp.status().as_u16();
            let v: Value = resp
                .body_mut()
                .read_to_string()
                .ok()
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or(Value::Null);
            let said = || {
                format!(
                    "{} ({})",
                    term::safe(v["message"].as_str().unwrap_or("no reason given")),
                    term::safe(v["error"].as_str().unwrap_or(&status.to_string()))
                )
            };
            return Err(match status {
                201 if v["id"].is_string() => return Ok(v),
                429 if !no_retry => {
                    let wait = retry_after(&v);
                    let wait =
                        wait + Duration::from_millis(jitter_ms(wait.as_millis() as u64 / 10 + 5));
                    if Instant::now() + wait <= deadline {
                        std::thread::sleep(wait);
                        continue;
                    }
                    Fail::RateLimited(format!(
                        "{shown} not uploaded: still rate limited after a minute"
                    ))
                }
                429 => Fail::RateLimited(format!("{shown} not uploaded: {}", said())),
                401 => Fail::Auth(
                    "not logged in, or the session expired; run: chatterbox-cli login NAME".into(),
                ),
                413 => Fail::Server(format!(
                    "{shown} is larger than the server takes: {}",
                    said()
                )),
                507 => Fail::Server(format!("no room on the server for {shown}: {}", said())),
                s => Fail::Server(format!(
                    "{shown} not uploaded: the server answered {s}: {}",
                    said()
                )),
            });
        }
    }

    /// `GET /files/ID` into `out` (a file, or a directory to put the server's name in;
    /// by default the server's name here), as it arrives. An existing file is left alone
    /// unless `force`; a download cut short leaves nothing behind. Returns where it went
    /// and how many bytes.
    pub fn download(
        &self,
        id: &str,
        out: Option<&Path>,
        force: bool,
    ) -> Result<(PathBuf, u64), Fail> {
        let id = file_id(id)?;
        let mut resp = self
            .agent
            .get(format!("{}/files/{id}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable("downloading from", e))?;
        match resp.status().as_u16() {
            200 => {}
            401 => {
                return Err(Fail::Auth(
                    "not logged in, or the session expired; run: chatterbox-cli login NAME".into(),
                ))
            }
            403 => {
                return Err(Fail::Room(format!(
                    "file {id} is not yours, nor posted in a room you are in"
                )))
            }
            404 => return Err(Fail::Room(format!("no such file: {id}"))),
            s => {
                return Err(Fail::Server(format!(
                    "the server answered {s} for file {id}"
                )))
            }
        }
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let name = header("content-disposition")
            .and_then(|d| disposition_name(&d))
            .unwrap_or_default();
        let name = safe_file_name(&name, &format!("file-{id}"));
        let expected: Option<u64> = header("content-length").and_then(|l| l.parse().ok());
        let dest = match out {
            Some(p) if p.is_dir() => p.join(&name),
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(&name),
        };
        let shown = term::safe(&dest.display().to_string());
        // Without --force the name is claimed first (create_new: never over a file);
        // with it, a file next to it is renamed over it once whole.
        let part = if force {
            let file_name = dest
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            dest.with_file_name(format!(".{file_name}.part-{}", std::process::id()))
        } else {
            dest.clone()
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists if !force => {
                    Fail::Usage(format!("{shown} exists; not overwritten (--force does)"))
                }
                _ => Fail::Usage(format!("cannot write {shown}: {e}")),
            })?;
        let copied = std::io::copy(&mut resp.body_mut().as_reader(), &mut f).and_then(|n| {
            f.flush()?;
            match expected {
                Some(len) if len != n => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{n} of {len} bytes"),
                )),
                _ => Ok(n),
            }
        });
        let n = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(Fail::Unreachable(format!(
                    "the download of {id} was cut short: {e}"
                )));
            }
        };
        if force {
            std::fs::rename(&part, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&part);
                Fail::Usage(format!("cannot write {shown}: {e}"))
            })?;
        }
        Ok((dest, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_say_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1_258_291), "1.2 MiB");
        assert_eq!(size(DEFAULT_MAX_FILE_BYTES), "10 MiB");
        assert_eq!(size(300 * 1024), "300 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
        assert_eq!(size(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(content_type(Path::new("a/report.PDF")), "application/pdf");
        assert_eq!(content_type(Path::new("notes.txt")), "text/plain");
        assert_eq!(content_type(Path::new("cat.jpeg")), "image/jpeg");
        assert_eq!(content_type(Path::new("x.tar.gz")), "application/gzip");
        assert_eq!(
            content_type(Path::new("Makefile")),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(Path::new("odd.qqq")),
            "application/octet-stream"
        );
    }

    #[test]
    fn names_go_percent_encoded_and_come_back() {
        assert_eq!(
            percent_encode("Q3 report+v2 ü.pdf"),
            "Q3%20report%2Bv2%20%C3%BC.pdf"
        );
        assert_eq!(
            percent_decode("Q3%20report%2Bv2%20%C3%BC.pdf").unwrap(),
            "Q3 report+v2 ü.pdf"
        );
        assert_eq!(percent_decode("a+b").unwrap(), "a+b");
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("cut%4"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(
            disposition_name("attachment; filename*=UTF-8''Q3%20report.pdf").unwrap(),
            "Q3 report.pdf"
        );
        assert_eq!(
            disposition_name("inline; filename=\"cat.png\"").unwrap(),
            "cat.png"
        );
        assert_eq!(disposition_name("attachment"), None);
    }

    #[test]
    fn names_from_the_server_cannot_leave_the_directory() {
        let f = "file-ab12";
        assert_eq!(safe_file_name("report.pdf", f), "report.pdf");
        assert_eq!(safe_file_name("../../etc/passwd", f), "_._.._etc_passwd");
        assert_eq!(safe_file_name("/etc/passwd", f), "_etc_passwd");
        assert_eq!(safe_file_name("a\\b", f), "a_b");
        assert_eq!(safe_file_name("..", f), f);
        assert_eq!(safe_file_name(".", f), f);
        assert_eq!(safe_file_name("", f), f);
        assert_eq!(safe_file_name("  ", f), f);
        assert_eq!(safe_file_name(".bashrc", f), "_bashrc");
        assert_eq!(safe_file_name("a\x1b[2J\nb\u{9b}.txt", f), "a[2Jb.txt");
        assert_eq!(safe_file_name(&"é".repeat(300), f).len(), 200);
        assert_eq!(file_id(" AB12 ").unwrap(), "ab12");
        assert!(file_id("../x").is_err());
        assert!(file_id("").is_err());
    }
}
