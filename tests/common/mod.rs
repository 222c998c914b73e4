//! Test harness: starts the real `chatterbox` binary on 127.0.0.1:0 with a temporary
//! database, and talks to it with plain HTTP over TcpStream and tungstenite clients.
//!
//! With `CHATTERBOX_TEST_PG=postgres://…` (a server where the user may create
//! databases), every database path a test names becomes a fresh PostgreSQL database of
//! its own instead (the same one each time the path is started again, so restarts keep
//! their data), with the files in `PATH.files/` through `--files-dir`; it is dropped with
//! the `TempDir` that holds the path.
#![allow(dead_code)]

pub mod raw;
pub mod redis;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

pub const PASSWORD: &str = "correct horse battery";

/// Server flags that lift the per-user chat budget and the per-socket frame budget, for
/// tests that send much faster than a person.
pub const UNBUDGETED: &[&str] = &[
    "--msg-rate",
    "1000000",
    "--msg-burst",
    "1000000",
    "--ws-frame-rate",
    "1000000",
    "--ws-frame-burst",
    "1000000",
];

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "chatterbox-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        pg::drop_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PostgreSQL databases standing in for test database paths (`CHATTERBOX_TEST_PG`).
pub mod pg {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// (path, database name, URL) of each database made.
    static MADE: Mutex<Vec<(PathBuf, String, String)>> = Mutex::new(Vec::new());

    /// The server the tests use, if any.
    pub fn server() -> Option<String> {
        std::env::var("CHATTERBOX_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
    }

    fn admin() -> postgres::Client {
        postgres::Client::connect(&server().unwrap(), postgres::NoTls)
            .expect("connect to CHATTERBOX_TEST_PG")
    }

    /// The URL of the database for `path`, made on first use.
    pub fn url_for(path: &Path) -> String {
        let mut made = MADE.lock().unwrap();
        if let Some((_, _, url)) = made.iter().find(|(p, _, _)| p == path) {
            return url.clone();
        }
        // A name from the path (unique per test process and directory).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.as_os_str().as_encoded_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let name = format!("cbt_{}_{h:016x}", std::process::id());
        let mut c = admin();
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        // template0: nobody connects to it, so tests side by side may copy it at once.
        c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .expect("create a test database");
        let url = chatterbox::store::sqltext::with_dbname(&server().unwrap(), &name);
        made.push((path.to_path_buf(), name, url.clone()));
        url
    }

    /// The path a database URL stands for.
    pub fn path_of(url: &str) -> Option<PathBuf> {
        let made = MADE.lock().unwrap();
        made.iter()
            .find(|(_, _, u)| u == url)
            .map(|(p, _, _)| p.clone())
    }

    /// Drops the databases of paths under `dir`.
    pub fn drop_under(dir: &Path) {
        let gone: Vec<String> = {
            let mut made = MADE.lock().unwrap();
            let (gone, kept) = made.drain(..).partition(|(p, _, _)| p.starts_with(dir));
            *made = kept;
            gone.into_iter().map(|(_, name, _)| name).collect()
        };
        if gone.is_empty() {
            return;
        }
        let mut c = admin();
        for name in gone {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// What `--db` was: the path, or the PostgreSQL URL standing in for it.
    pub db: PathBuf,
    /// Where the server keeps uploaded files.
    pub files_dir: PathBuf,
    pub args: Vec<String>,
    _dir: Option<TempDir>,
}

impl TestServer {
    /// A server with a fresh database and generous login limits.
    pub fn start(extra: &[&str]) -> TestServer {
        let dir = TempDir::new();
        let db = dir.0.join("chat.db");
        let mut s = TestServer::start_with_db(&db, extra);
        s._dir = Some(dir);
        s
    }

    pub fn start_with_db(db: &Path, extra: &[&str]) -> TestServer {
        TestServer::launch(db, extra, None, Stdio::null(), None)
    }

    /// Starts with an open-file limit (`RLIMIT_NOFILE`) set in the child.
    pub fn start_with_nofile(nofile: u64, extra: &[&str]) -> TestServer {
        let dir = TempDir::new();
        let db = dir.0.join("chat.db");
        let mut s = TestServer::launch(&db, extra, Some(nofile), Stdio::null(), None);
        s._dir = Some(dir);
        s
    }

    /// Starts with `RUST_LOG=level` and stderr (the log) written to `log`.
    pub fn start_logging(db: &Path, extra: &[&str], log: std::fs::File, level: &str) -> TestServer {
        TestServer::launch(db, extra, None, Stdio::from(log), Some(level))
    }

    fn launch(
        db: &Path,
        extra: &[&str],
        nofile: Option<u64>,
        stderr: Stdio,
        log_level: Option<&str>,
    ) -> TestServer {
        use std::os::unix::process::CommandExt;
        let mut args: Vec<String> = vec!["--auth-per-minute".into(), "100000".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let given = db.to_string_lossy().to_string();
        let (db, files_dir): (PathBuf, PathBuf) = match pg::server() {
            Some(_) if given.starts_with("postgres") => {
                let path = pg::path_of(&given).expect("a URL this harness made");
                (db.to_path_buf(), files_of(&path))
            }
            Some(_) => (pg::url_for(db).into(), files_of(db)),
            None => (db.to_path_buf(), files_of(db)),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatterbox"));
        if pg::server().is_some() {
            cmd.arg("--files-dir").arg(&files_dir);
        }
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(&db)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                stderr
            });
        if let Some(level) = log_level {
            cmd.env("RUST_LOG", level);
        } else if std::env::var("RUST_LOG").is_err() {
            cmd.env("RUST_LOG", "warn");
        }
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start chatterbox");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        TestServer {
            child,
            addr,
            db,
            files_dir,
            args,
            _dir: None,
        }
    }

    /// Kills with SIGKILL (a crash) and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }

    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Resp {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if method == "POST" || !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut s)
    }

    pub fn post_json(&self, path: &str, v: &Value) -> Resp {
        self.http("POST", path, None, Some(&v.to_string()))
    }

    pub fn register(&self, name: &str) -> Resp {
        self.post_json(
            "/register",
            &json!({"username": name, "password": PASSWORD}),
        )
    }

    pub fn login(&self, name: &str) -> String {
        let r = self.post_json("/login", &json!({"username": name, "password": PASSWORD}));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Registers and logs in.
    pub fn user(&self, name: &str) -> String {
        let r = self.register(name);
        assert_eq!(r.status, 201, "{}", r.body);
        self.login(name)
    }

    /// A user with admin rights, granted the way an operator does it.
    pub fn admin(&self, name: &str) -> String {
        let token = self.user(name);
        self.grant_admin(name, &token);
        token
    }

    /// Runs `chatterbox admin grant NAME --db PATH` and waits (at most 3 s: the server
    /// looks once a second) until `token` has admin rights on the running server.
    pub fn grant_admin(&self, name: &str, token: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
            .args(["admin", "grant", name, "--db"])
            .arg(&self.db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.http("GET", "/admin/audit", Some(token), None).status != 200 {
            assert!(Instant::now() < deadline, "the grant was not picked up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ws(&self, token: &str) -> Client {
        self.try_ws(token).expect("websocket upgrade")
    }

    /// A socket and the `hello` it got.
    pub fn ws_hello(&self, token: &str) -> (Client, Value) {
        self.try_ws_hello(token).expect("websocket upgrade")
    }

    pub fn try_ws(&self, token: &str) -> Result<Client, tungstenite::Error> {
        self.try_ws_hello(token).map(|(c, _)| c)
    }

    pub fn try_ws_hello(&self, token: &str) -> Result<(Client, Value), tungstenite::Error> {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let url = format!("ws://{}/ws?token={token}", self.addr);
        let (ws, _) = tungstenite::client::client(url, MaybeTlsStream::Plain(stream)).map_err(
            |e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                _ => tungstenite::Error::ConnectionClosed,
            },
        )?;
        let mut c = Client { ws };
        let hello = c.recv();
        assert_eq!(hello["type"], "hello", "{hello}");
        Ok((c, hello))
    }
}

impl TestServer {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// CPU time (user + system) the server has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Every message of a room, through the HTTP history pages.
    pub fn all_messages(&self, token: &str, room: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut before = i64::MAX;
        loop {
            let r = self.http(
                "GET",
                &format!("/rooms/{room}/messages?before={before}&limit=200"),
                Some(token),
                None,
            );
            if r.status == 429 {
                // Paging is budgeted like any action: wait as told, then go on.
                let ms = r.json()["retry_after_ms"].as_u64().unwrap_or(200);
                std::thread::sleep(Duration::from_millis(ms));
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            let page = v["messages"].as_array().unwrap().clone();
            if let Some(first) = page.first() {
                before = first["id"].as_i64().unwrap();
            }
            let more = v["has_more"].as_bool().unwrap() && !page.is_empty();
            out.splice(0..0, page);
            if !more {
                return out;
            }
        }
    }
}

/// Where a server keeps the files of the database at `path`: `PATH.files/` beside it.
fn files_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".files");
    path.with_file_name(name)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length framed, or to EOF).
pub fn read_response(s: &mut TcpStream) -> Resp {
    read_response_buffered(s, &mut Vec::new())
}

/// Reads one response; bytes past it stay in `buf` for the next call (pipelining).
pub fn read_response_buffered(s: &mut TcpStream, buf: &mut Vec<u8>) -> Resp {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = buf[head_end..].to_vec();
    buf.clear();
    match len {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0);
                body.extend_from_slice(&chunk[..n]);
            }
            buf.extend_from_slice(&body[len..]);
            body.truncate(len);
        }
        None if status != 204 && status != 101 => {
            let _ = s.read_to_end(&mut body);
        }
        None => {}
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// Sends raw bytes and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut s)
}

/// A read that ran into the socket's timeout rather than a failure.
fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e)
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub fn send(&mut self, v: Value) {
        self.ws
            .send(tungstenite::Message::Text(v.to_string().into()))
            .unwrap();
    }

    /// The next JSON message (pings are answered by tungstenite).
    pub fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(10))
            .expect("a message within 10 s")
    }

    /// The next JSON message within `wait`, or None.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
                s.set_read_timeout(Some(left)).unwrap();
            }
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).unwrap())
                }
                Ok(tungstenite::Message::Close(f)) => panic!("closed by server: {f:?}"),
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => return None,
                Err(e) => panic!("websocket error: {e}"),
            }
        }
    }

    /// Skips events (presence, typing, seen, other rooms' messages...) until one of type
    /// `t` arrives. An `error` on the way fails the test: errors are never noise. To wait
    /// for an error, ask for it: `recv_type("error")` (or `recv_error`).
    pub fn recv_type(&mut self, t: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(v) = self.try_recv(deadline - Instant::now()) {
                if v["type"] == t {
                    return v;
                }
                if v["type"] == "error" {
                    panic!("unexpected error while waiting for {t}: {v}");
                }
            }
        }
        panic!("no {t} message within 10 s");
    }

    /// The next `error` frame, skipping events.
    pub fn recv_error(&mut self) -> Value {
        self.recv_type("error")
    }

    /// Waits for the server to close the connection and returns the close code. Events
    /// before the close are skipped; an `error` fails the test.
    pub fn close_code(&mut self) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(tungstenite::Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "error" {
                        panic!("unexpected error while waiting for the close: {v}");
                    }
                }
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => continue,
                Err(_) => return None,
            }
        }
        panic!("not closed within 10 s");
    }

    /// Sends and waits for the reply carrying `ref`, which may be an `error` (callers
    /// check). Events are skipped on the way; an `error` answering anything else fails
    /// the test.
    pub fn request(&mut self, mut v: Value, r: &str) -> Value {
        v["ref"] = json!(r);
        self.send(v);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(m) = self.try_recv(deadline - Instant::now()) {
                if m["ref"] == r {
                    return m;
                }
                if m["type"] == "error" {
                    panic!("unexpected error while waiting for the reply to {r}: {m}");
                }
            }
        }
        panic!("no reply to {r}");
    }
}
