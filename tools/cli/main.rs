//! `chatterbox-cli`: the terminal client.
//!
//! Accounts over HTTP (ureq's blocking client), chat over one WebSocket (tungstenite's
//! blocking client). `chat` is interactive with its own line editor so that
//! incoming messages never mangle the line being typed; `send` and `tail` are for scripts.
//! `chat` and `tail` reconnect with jittered exponential backoff and catch up on what
//! they missed exactly once (`catchup.rs`); `chat.rs` decides what is printed.

mod catchup;
mod chat;
mod files;
mod outbox;
mod show;
mod term;

use catchup::{jitter_ms, retry_after, Backoff, CatchUp};
use chat::Chat;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: chatterbox-cli [--server URL] [--cacert FILE] COMMAND
commands:
  register NAME        create an account and log in (password from the terminal, or stdin when piped)
  login NAME           log in and keep the session token
  logout [--all]       revoke the token and forget it (--all: every session of the account)
  password             change the password (old, then new; from stdin when piped, a line each);
                       every other session is signed out
  sessions             where the account is signed in
  export               every message you wrote, as one JSON document on stdout
  chat [ROOM]          interactive chat (default room: general; @NAME for a conversation); /help lists commands
  send ROOM [--file PATH]... [--no-retry]   send stdin as one message (ROOM may be @NAME); exits
                       once the server has stored it (prints its id), waiting out the rate limit
                       unless --no-retry. --file (up to 10) uploads files and attaches them; the
                       text is then optional (stdin is not read from a terminal); each file is
                       printed after the id as: 📎 NAME (SIZE) [FILE-ID]
  download FILE-ID [-o PATH] [--force]   save a shared file (the server's name, here, by default;
                       -o a file or a directory); never over an existing file unless --force
  tail ROOM [--since ID] [--json]   print messages as they arrive, one per line
  react ID EMOJI [--off]   react to message ID (#42 or 42, as chat shows it) with EMOJI, or take
                       the reaction back (--off); prints the emoji's count on the message
  reactors ID EMOJI    who reacted to message ID with EMOJI, a name a line
  --server http://HOST:PORT or https://HOST:PORT (TLS: wss for chat); --cacert FILE trusts a
  private CA for https (otherwise the system's roots)
environment: CHATTERBOX_SERVER (default http://127.0.0.1:8000), CHATTERBOX_CACERT, CHATTERBOX_CONFIG_DIR
  (default $XDG_CONFIG_HOME/chatterbox or ~/.config/chatterbox; the token is kept there, mode 0600),
  CHATTERBOX_MAX_FILE_BYTES (largest file sent, checked before uploading; default 10485760 = 10 MiB)
exit codes: 0 ok, 1 usage, 2 server unreachable, 3 not logged in or bad credentials,
  4 rate limited, 5 no such room or message, or not allowed, 6 other server error";

/// How long `send` keeps trying (rate limits, a lost connection) before it gives up.
const SEND_PATIENCE: Duration = Duration::from_secs(60);

/// Failures with their exit codes.
#[derive(Debug)]
enum Fail {
    Usage(String),
    Unreachable(String),
    Auth(String),
    RateLimited(String),
    Room(String),
    Server(String),
}

impl Fail {
    fn code(&self) -> u8 {
        match self {
            Fail::Usage(_) => 1,
            Fail::Unreachable(_) => 2,
            Fail::Auth(_) => 3,
            Fail::RateLimited(_) => 4,
            Fail::Room(_) => 5,
            Fail::Server(_) => 6,
        }
    }
    fn message(&self) -> &str {
        match self {
            Fail::Usage(m)
            | Fail::Unreachable(m)
            | Fail::Auth(m)
            | Fail::RateLimited(m)
            | Fail::Room(m)
            | Fail::Server(m) => m,
        }
    }
}

/// A message id as typed: `#42` (as `chat` shows it) or `42`.
fn message_id(s: &str) -> Result<i64, Fail> {
    s.strip_prefix('#')
        .unwrap_or(s)
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Fail::Usage(format!("not a message id: {}", term::safe(s))))
}

/// An `error` reply from the server as a failure (its words made safe to print).
fn from_error(v: &Value) -> Fail {
    let msg = format!(
        "{} ({})",
        term::safe(v["message"].as_str().unwrap_or("error")),
        term::safe(v["code"].as_str().unwrap_or("?"))
    );
    match v["code"].as_str() {
        Some("rate_limited") => Fail::RateLimited(msg),
        Some("no_such_room") | Some("no_such_message") | Some("forbidden") => Fail::Room(msg),
        _ => Fail::Server(msg),
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut server =
        std::env::var("CHATTERBOX_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    if let Some(i) = args.iter().position(|a| a == "--server") {
        if i + 1 < args.len() {
            server = args.remove(i + 1);
            args.remove(i);
        }
    }
    let mut cacert = std::env::var("CHATTERBOX_CACERT").ok();
    if let Some(i) = args.iter().position(|a| a == "--cacert") {
        if i + 1 < args.len() {
            cacert = Some(args.remove(i + 1));
            args.remove(i);
        }
    }
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let (secure, host) = match server.split_once("://") {
        Some(("https" | "wss", h)) => (true, h),
        Some(("http" | "ws", h)) => (false, h),
        Some(_) => {
            eprintln!("chatterbox-cli: --server takes http://, https://, ws:// or wss://");
            return ExitCode::from(1);
        }
        None => (false, server.as_str()),
    };
    let host = host.trim_end_matches('/').to_string();
    let tls = if secure {
        let cfg = chatterbox::tls::root_pem(cacert.as_deref().map(std::path::Path::new))
            .and_then(|pem| Ok((chatterbox::tls::client_config(&pem)?, pem)));
        match cfg {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("chatterbox-cli: {}", term::safe(&e));
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let cli = Cli {
        host,
        agent: http_agent(tls.as_ref().map(|t| t.1.as_slice())),
        tls: tls.map(|t| t.0),
    };
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let result = match (args[0].as_str(), rest.as_slice()) {
        ("register", [name]) => cli.register(name),
        ("login", [name]) => cli.login(name),
        ("logout", []) => cli.logout(),
        ("logout", ["--all"]) => cli.logout_all(),
        ("password", []) => cli.change_password(),
        ("sessions", []) => cli.sessions(),
        ("export", []) => cli.export(),
        ("chat", []) => cli.chat("general"),
        ("chat", [room]) => cli.chat(room),
        ("send", [room, opts @ ..]) => cli.send(room, opts),
        ("tail", [room, opts @ ..]) => cli.tail(room, opts),
        ("react", [id, emoji, opts @ ..]) => cli.react(id, emoji, opts),
        ("reactors", [id, emoji]) => cli.reactors(id, emoji),
        ("download", [id, opts @ ..]) => cli.download(id, opts),
        _ => Err(Fail::Usage(format!("bad command line\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("chatterbox-cli: {}", term::safe_lines(f.message(), ""));
            ExitCode::from(f.code())
        }
    }
}

/// What a background job (an upload or download in `chat`) asks the chat loop to do.
enum Job {
    /// Print a line (safe already).
    Print(String),
    /// Queue a message in the outbox (an upload's, with its attachment).
    Send(Value),
}

/// `~/x` as `$HOME/x`, as a shell would.
fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

struct Cli {
    /// host:port of the server.
    host: String,
    agent: ureq::Agent,
    /// Set when the server speaks TLS (https, wss).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Every status comes back as a response (the commands map them to exit codes), each
/// request on its own connection, straight to the server (no proxy from the environment).
fn http_agent(roots_pem: Option<&[u8]>) -> ureq::Agent {
    let roots = ureq::tls::parse_pem(roots_pem.unwrap_or_default())
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .proxy(None)
        .max_idle_connections(0)
        .timeout_per_read(Some(Duration::from_secs(30)))
        // Uploads ask `Expect: 100-continue`; the server never sends 100, but it answers a
        // refusal from the head at once, and the body is then not sent at all.
        .timeout_await_100(Some(Duration::from_millis(300)))
        .build()
        .new_agent()
}

fn config_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CHATTERBOX_CONFIG_DIR") {
        return PathBuf::from(d);
    }
    if let Ok(d) = std::env::var("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("chatterbox");
    }
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".config/chatterbox")
}

fn session_path() -> PathBuf {
    config_dir().join("session.json")
}

impl Cli {
    fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.host)
    }

    /// A GET with the session token; the status and the JSON body (null if none).
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<(u16, Value), Fail> {
        let req = self
            .agent
            .get(self.url(path))
            .query_pairs(query.iter().copied())
            .header("Authorization", format!("Bearer {}", token()?));
        self.answer(req.call())
    }

    /// A POST with a JSON body or none; the status and the JSON body (null if none).
    fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), Fail> {
        let mut req = self.agent.post(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        self.answer(match body {
            Some(b) => req.send_json(b),
            None => req.send_empty(),
        })
    }

    fn answer(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value), Fail> {
        let fail = |e: ureq::Error| match e {
            ureq::Error::Protocol(_) => Fail::Server("not an HTTP answer".into()),
            // The OS's words, as in "cannot reach 127.0.0.1:8000: Connection refused".
            ureq::Error::Io(e) => Fail::Unreachable(format!("cannot reach {}: {e}", self.host)),
            e => Fail::Unreachable(format!("cannot reach {}: {e}", self.host)),
        };
        let mut resp = sent.map_err(fail)?;
        let body = resp.body_mut().read_to_string().map_err(fail)?;
        Ok((
            resp.status().as_u16(),
            serde_json::from_str(&body).unwrap_or(Value::Null),
        ))
    }

    fn credentials(name: &str) -> Result<Value, Fail> {
        let password = term::read_password("password: ")
            .map_err(|e| Fail::Usage(format!("cannot read the password: {e}")))?;
        Ok(json!({"username": name, "password": password}))
    }

    fn register(&self, name: &str) -> Result<(), Fail> {
        let creds = Self::credentials(name)?;
        match self.post("/register", Some(&creds), None)? {
            // Logged in at once with the same password (it is not asked twice).
            (201, v) => match self.post("/login", Some(&creds), None)? {
                (200, session) => {
                    let shown = self.keep_session(&session)?;
                    println!(
                        "registered {} and logged in (session in {shown})",
                        term::safe(v["username"].as_str().unwrap_or(name)),
                    );
                    Ok(())
                }
                (_, e) => Err(Fail::Server(format!(
                    "registered {}, but logging in failed: {}; run: chatterbox-cli login {}",
                    term::safe(name),
                    term::safe(e["message"].as_str().unwrap_or("no answer")),
                    term::safe(name)
                ))),
            },
            (429, v) => Err(Fail::RateLimited(term::safe(
                v["message"].as_str().unwrap_or("rate limited"),
            ))),
            (_, v) => Err(Fail::Server(term::safe(
                v["message"].as_str().unwrap_or("registration failed"),
            ))),
        }
    }

    /// Saves the session a `/login` answered; returns the file's path, safe to print.
    fn keep_session(&self, v: &Value) -> Result<String, Fail> {
        let session = json!({"server": self.host, "username": v["username"], "token": v["token"]});
        save_session(&session)
            .map_err(|e| Fail::Server(format!("cannot save the session: {e}")))?;
        Ok(term::safe(&session_path().display().to_string()))
    }

    fn login(&self, name: &str) -> Result<(), Fail> {
        let creds = Self::credentials(name)?;
        match self.post("/login", Some(&creds), None)? {
            (200, v) => {
                let shown = self.keep_session(&v)?;
                println!(
                    "logged in as {} (session in {shown})",
                    term::safe(v["username"].as_str().unwrap_or(name)),
                );
                Ok(())
            }
            (401, _) => Err(Fail::Auth("wrong username or password".into())),
            (429, v) => Err(Fail::RateLimited(term::safe(
                v["message"].as_str().unwrap_or("rate limited"),
            ))),
            (_, v) => Err(Fail::Server(term::safe(
                v["message"].as_str().unwrap_or("login failed"),
            ))),
        }
    }

    fn logout_all(&self) -> Result<(), Fail> {
        let token = token()?;
        let (status, _) = self.post("/logout?all=1", None, Some(&token))?;
        let _ = std::fs::remove_file(session_path());
        match status {
            204 | 401 => {
                println!("logged out everywhere");
                Ok(())
            }
            s => Err(Fail::Server(format!("logout answered {s}"))),
        }
    }

    fn change_password(&self) -> Result<(), Fail> {
        let token = token()?;
        let read = |p: &str| {
            term::read_password(p)
                .map_err(|e| Fail::Usage(format!("cannot read the password: {e}")))
        };
        let old = read("current password: ")?;
        let new = read("new password: ")?;
        let body = json!({"old": old, "new": new});
        match self.post("/account/password", Some(&body), Some(&token))? {
            (204, _) => {
                println!("password changed; every other session was signed out");
                Ok(())
            }
            (403, _) => Err(Fail::Auth("the current password is wrong".into())),
            (401, _) => Err(Fail::Auth(
                "not logged in; run: chatterbox-cli login NAME".into(),
            )),
            (429, v) => Err(Fail::RateLimited(term::safe(
                v["message"].as_str().unwrap_or("rate limited"),
            ))),
            (_, v) => Err(Fail::Server(term::safe(
                v["message"]
                    .as_str()
                    .unwrap_or("the password was not changed"),
            ))),
        }
    }

    fn sessions(&self) -> Result<(), Fail> {
        let (status, v) = self.get("/account/sessions", &[])?;
        if status != 200 {
            return Err(Fail::Server(format!("/account/sessions answered {status}")));
        }
        for s in v["sessions"].as_array().into_iter().flatten() {
            let field = |k: &str| term::safe(s[k].as_str().unwrap_or("-"));
            println!(
                "{} {}  last used {}  from {}  {}{}",
                field("id"),
                field("created_at"),
                field("last_used"),
                field("ip"),
                field("user_agent"),
                if s["current"] == true {
                    "  (this one)"
                } else {
                    ""
                },
            );
        }
        Ok(())
    }

    /// Copies the export to stdout as it arrives (never whole in memory).
    fn export(&self) -> Result<(), Fail> {
        let req = self
            .agent
            .get(self.url("/account/export"))
            .header("Authorization", format!("Bearer {}", token()?));
        let mut resp = req
            .call()
            .map_err(|e| Fail::Unreachable(format!("cannot reach {}: {e}", self.host)))?;
        if resp.status().as_u16() != 200 {
            return Err(Fail::Server(format!("export answered {}", resp.status())));
        }
        let mut body = resp.body_mut().as_reader();
        std::io::copy(&mut body, &mut std::io::stdout().lock())
            .map_err(|e| Fail::Unreachable(format!("the export was cut short: {e}")))?;
        Ok(())
    }

    fn logout(&self) -> Result<(), Fail> {
        let token = token()?;
        let (status, _) = self.post("/logout", None, Some(&token))?;
        let _ = std::fs::remove_file(session_path());
        match status {
            204 | 401 => {
                println!("logged out");
                Ok(())
            }
            s => Err(Fail::Server(format!("logout answered {s}"))),
        }
    }

    /// A WebSocket and the server's `hello` on it.
    fn connect(&self) -> Result<(Ws, Value), Fail> {
        let token = token()?;
        let tcp = TcpStream::connect(&self.host)
            .map_err(|e| Fail::Unreachable(format!("cannot reach {}: {e}", self.host)))?;
        let (stream, scheme) = match &self.tls {
            None => (Stream::Plain(tcp), "ws"),
            Some(cfg) => {
                let name = self
                    .host
                    .rsplit_once(':')
                    .map_or(self.host.as_str(), |h| h.0);
                let name = name.trim_start_matches('[').trim_end_matches(']');
                let conn = chatterbox::tls::client_connection(cfg, name)
                    .map_err(|e| Fail::Usage(term::safe(&e)))?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // The handshake now, so a certificate problem is reported as one.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock).map_err(|e| {
                        Fail::Unreachable(term::safe(&format!("TLS with {}: {e}", self.host)))
                    })?;
                }
                (Stream::Tls(Box::new(s)), "wss")
            }
        };
        let url = format!("{scheme}://{}/ws?token={token}", self.host);
        let (ws, _) = tungstenite::client::client(url, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))
                if r.status() == 401 =>
            {
                Fail::Auth("the session has expired or was revoked; log in again".into())
            }
            e => Fail::Unreachable(term::safe(&e.to_string())),
        })?;
        let mut ws = Ws { ws };
        let hello = ws
            .recv(Duration::from_secs(10))?
            .ok_or_else(|| Fail::Server("no hello".into()))?;
        if hello["type"] != "hello" {
            return Err(Fail::Server("unexpected greeting".into()));
        }
        Ok((ws, hello))
    }

    /// Each room the user is a member of, with its newest message id (`GET /rooms`,
    /// page by page).
    fn room_marks(&self) -> Result<HashMap<String, i64>, Fail> {
        let mut marks = HashMap::new();
        let mut after = String::new();
        for _ in 0..50 {
            let (status, v) = self.get("/rooms", &[("limit", "1000"), ("after", &after)])?;
            if status != 200 {
                return Err(Fail::Server(format!("/rooms answered {status}")));
            }
            let page = v.as_array().cloned().unwrap_or_default();
            for r in &page {
                if let (Some(name), true) = (r["name"].as_str(), r["member"] == true) {
                    marks.insert(name.to_string(), r["last_id"].as_i64().unwrap_or(0));
                }
            }
            match page.last().and_then(|r| r["name"].as_str()) {
                Some(last) if page.len() >= 1000 => after = last.to_string(),
                _ => break,
            }
        }
        Ok(marks)
    }

    /// Sends stdin as one message (see `ask`): exits once the server has stored it, and
    /// prints its id. `--no-retry` fails at the first refusal (exit code 4). Each
    /// `--file PATH` is checked here (size), uploaded, and attached; with files the text
    /// may be empty, and stdin is not read from a terminal.
    fn send(&self, room: &str, opts: &[&str]) -> Result<(), Fail> {
        let mut no_retry = false;
        let mut paths = Vec::new();
        let mut it = opts.iter();
        while let Some(o) = it.next() {
            match *o {
                "--no-retry" => no_retry = true,
                "--file" => paths.push(
                    *it.next()
                        .ok_or_else(|| Fail::Usage("--file needs a path".into()))?,
                ),
                _ => return Err(Fail::Usage(format!("bad command line\n{USAGE}"))),
            }
        }
        if paths.len() > files::MAX_ATTACHMENTS {
            return Err(Fail::Usage(format!(
                "at most {} files go with one message",
                files::MAX_ATTACHMENTS
            )));
        }
        // Every file is checked before any is sent.
        let locals = paths
            .iter()
            .map(|p| files::Local::check(p))
            .collect::<Result<Vec<_>, Fail>>()?;
        let mut text = String::new();
        if locals.is_empty() || !term::is_tty(0) {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Fail::Usage(e.to_string()))?;
        }
        if text.trim().is_empty() {
            if locals.is_empty() {
                return Err(Fail::Usage("nothing to send on stdin".into()));
            }
            text.clear();
        }
        let token = token()?;
        let base = self.url("");
        let http = files::Http {
            agent: &self.agent,
            base: &base,
            host: &self.host,
            token: &token,
        };
        let mut uploaded = Vec::new();
        for f in &locals {
            let mut progress = term::Progress::new(&f.shown(), f.size);
            let r = http.upload(f, no_retry, &mut |n| progress.update(n));
            progress.done();
            uploaded.push(r?);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let cid = format!("cli-{}-{nanos}", std::process::id());
        let mut req = match room.strip_prefix('@') {
            Some(to) => json!({"type": "dm", "to": to}),
            None => json!({"type": "send", "room": room}),
        };
        req["text"] = json!(text);
        if !uploaded.is_empty() {
            req["attachments"] = uploaded.iter().map(|f| f["id"].clone()).collect();
        }
        req["client_id"] = json!(cid);
        req["ref"] = json!("send");
        let stored = self.ask(&mut None, &req, "message", no_retry)?;
        println!("{}", show::num(&stored["id"]));
        for f in &uploaded {
            println!("{}", show::attachment(f));
        }
        Ok(())
    }

    /// `download FILE-ID [-o PATH] [--force]`: streams a shared file to disk.
    fn download(&self, id: &str, opts: &[&str]) -> Result<(), Fail> {
        let (mut out, mut force) = (None, false);
        let mut it = opts.iter();
        while let Some(o) = it.next() {
            match *o {
                "--force" => force = true,
                "-o" | "--output" => {
                    out = Some(std::path::Path::new(
                        *it.next()
                            .ok_or_else(|| Fail::Usage("-o needs a path".into()))?,
                    ))
                }
                _ => return Err(Fail::Usage(format!("bad command line\n{USAGE}"))),
            }
        }
        let token = token()?;
        let base = self.url("");
        let http = files::Http {
            agent: &self.agent,
            base: &base,
            host: &self.host,
            token: &token,
        };
        let (path, n) = http.download(id, out, force)?;
        println!(
            "saved {} ({})",
            term::safe(&path.display().to_string()),
            files::size(n)
        );
        Ok(())
    }

    /// `react ID EMOJI [--off]`: adds a reaction to message ID (`#42` as `chat` shows it,
    /// or `42`), or takes it back, and prints the emoji's count on the message after it.
    /// Saying it twice changes nothing, so it is asked again as `send` is.
    fn react(&self, id: &str, emoji: &str, opts: &[&str]) -> Result<(), Fail> {
        let on = match opts {
            [] => true,
            ["--off"] => false,
            _ => return Err(Fail::Usage(format!("bad command line\n{USAGE}"))),
        };
        let id = message_id(id)?;
        let req = json!({"type": "react", "id": id, "emoji": emoji, "on": on, "ref": "react"});
        let reacted = self.ask(&mut None, &req, "reacted", false)?;
        println!("{}", show::num(&reacted["count"]));
        Ok(())
    }

    /// `reactors ID EMOJI`: who reacted to message ID with EMOJI, a name a line, page by
    /// page.
    fn reactors(&self, id: &str, emoji: &str) -> Result<(), Fail> {
        let id = message_id(id)?;
        let mut req = json!({"type": "reactors", "id": id, "emoji": emoji, "ref": "reactors"});
        let mut out = std::io::stdout().lock();
        let mut ws = None;
        loop {
            let page = self.ask(&mut ws, &req, "reactors", false)?;
            let names: Vec<&str> = page["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for n in &names {
                if writeln!(out, "{}", term::safe(n)).is_err() {
                    return Ok(()); // the reader went away (a closed pipe)
                }
            }
            match names.last() {
                Some(last) if page["more"] == true => req["after"] = json!(last),
                _ => return Ok(()),
            }
        }
    }

    /// Sends `req` (which has a `ref`) until the server answers it with a `want`, and
    /// returns that answer. Past the rate limit it waits as long as the server asks
    /// (`retry_after_ms`, plus a little jitter) and tries again (a `send` with the same
    /// `client_id`), for up to `SEND_PATIENCE`, so a message is stored exactly once; a
    /// connection lost on the way is opened again the same way. With `no_retry`, the
    /// first refusal fails (exit code 4). Any other `error` fails with its code. `conn`
    /// is the connection to ask on, kept for the next question (None: a new one).
    fn ask(
        &self,
        conn: &mut Option<Ws>,
        req: &Value,
        want: &str,
        no_retry: bool,
    ) -> Result<Value, Fail> {
        let deadline = Instant::now() + SEND_PATIENCE;
        let mut backoff = Backoff::default();
        let ws = match conn {
            Some(ws) => ws,
            None => conn.insert(self.connect()?.0),
        };
        loop {
            match self.ask_on(ws, req, want, no_retry, deadline)? {
                Some(answer) => return Ok(answer),
                None if no_retry || Instant::now() >= deadline => {
                    return Err(Fail::Unreachable(
                        "the connection was lost before the server answered".into(),
                    ))
                }
                None => {}
            }
            // Lost on the way: the same request again, on a new connection.
            *ws = loop {
                std::thread::sleep(backoff.next_wait());
                match self.connect() {
                    Ok((ws, _)) => break ws,
                    Err(Fail::Unreachable(m)) if Instant::now() < deadline => {
                        eprintln!("chatterbox-cli: {}; retrying", term::safe(&m));
                    }
                    Err(e) => return Err(e),
                }
            };
        }
    }

    /// One connection's try at `ask`: the answer, or None if the connection was lost
    /// before the server gave it.
    fn ask_on(
        &self,
        ws: &mut Ws,
        req: &Value,
        want: &str,
        no_retry: bool,
        deadline: Instant,
    ) -> Result<Option<Value>, Fail> {
        if ws.send(req).is_err() {
            return Ok(None);
        }
        let mut until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let v = match ws.recv(until.saturating_duration_since(Instant::now())) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(Fail::Unreachable(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            if v["ref"] != req["ref"] {
                continue;
            }
            match v["type"].as_str() {
                Some(t) if t == want => return Ok(Some(v)),
                Some("error") if v["code"] == "rate_limited" && !no_retry => {
                    let wait = retry_after(&v);
                    let wait =
                        wait + Duration::from_millis(jitter_ms(wait.as_millis() as u64 / 10 + 5));
                    if Instant::now() + wait > deadline {
                        return Err(Fail::RateLimited(format!(
                            "still rate limited after {} s; nothing was done",
                            SEND_PATIENCE.as_secs()
                        )));
                    }
                    std::thread::sleep(wait);
                    if ws.send(req).is_err() {
                        return Ok(None);
                    }
                    until = Instant::now() + Duration::from_secs(10);
                }
                Some("error") => return Err(from_error(&v)),
                _ => {}
            }
        }
        Ok(None)
    }

    fn tail(&self, room: &str, opts: &[&str]) -> Result<(), Fail> {
        let json_out = opts.contains(&"--json");
        // The highest id printed: nothing at or below it is printed again.
        let mut since: Option<i64> = match opts.iter().position(|o| *o == "--since") {
            Some(i) => Some(
                opts.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Fail::Usage("--since needs a message id".into()))?,
            ),
            None => None,
        };
        let me = load_session()
            .ok()
            .and_then(|s| s["username"].as_str().map(str::to_string))
            .unwrap_or_default();
        let stdout = std::io::stdout();
        let mut backoff = Backoff::default();
        let mut connected_once = false;
        loop {
            let mut ws = match self.connect() {
                Ok((ws, _)) => ws,
                Err(Fail::Unreachable(m)) if connected_once || since.is_some() => {
                    let wait = backoff.next_wait();
                    eprintln!(
                        "chatterbox-cli: {}; retrying in {:.1} s",
                        term::safe(&m),
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    continue;
                }
                Err(e) => return Err(e),
            };
            backoff.reset();
            connected_once = true;
            let mut catch = CatchUp::default();
            ws.send(&catch.join_request(room, since))?;
            loop {
                if let Some(req) = catch.next_request() {
                    if ws.send(&req).is_err() {
                        break;
                    }
                }
                let v = match ws.recv(Duration::from_millis(200)) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(Fail::Unreachable(_)) => break,
                    Err(e) => return Err(e),
                };
                let msgs: Vec<Value> = match v["type"].as_str() {
                    Some("joined") if v["room"] == room => catch.joined(&v).0,
                    Some("message") if v["room"] == room => catch.message(&v).into_iter().collect(),
                    Some("history") if v["ref"] == CatchUp::REF => catch.page(&v),
                    Some("error") if catch.is_join(&v["ref"]) && v["code"] != "rate_limited" => {
                        return Err(from_error(&v))
                    }
                    Some("error") if catch.owns(&v["ref"]) => catch.refused(&v),
                    _ => continue,
                };
                let mut out = stdout.lock();
                for m in msgs {
                    let id = m["id"].as_i64().unwrap_or(0);
                    if since.is_some_and(|s| id <= s) {
                        continue; // printed already
                    }
                    since = Some(id);
                    // JSON as serde writes it escapes C0; `safe_json` escapes DEL and C1
                    // too. Plain lines keep only the breaks of multi-line messages.
                    let line = if json_out {
                        term::safe_json(&m.to_string())
                    } else {
                        term::safe_lines(&show::message_line(&m, &me, false, false), "")
                    };
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        return Ok(()); // the reader went away (a closed pipe)
                    }
                }
            }
            since.get_or_insert(0);
            eprintln!("chatterbox-cli: connection lost; reconnecting");
        }
    }

    fn chat(&self, first_room: &str) -> Result<(), Fail> {
        let (mut ws, hello) = self.connect()?;
        let me = load_session()
            .ok()
            .and_then(|s| s["username"].as_str().map(str::to_string))
            .unwrap_or_default();
        let room = match first_room.strip_prefix('@') {
            Some(other) => show::dm_room(&me, other),
            None => first_room
                .strip_prefix('#')
                .unwrap_or(first_room)
                .to_string(),
        };
        let mut st = Chat::new(&me, &room);
        // Where every room stands now, read before any frame of this socket is: a later
        // catch-up starts from here for rooms nothing is shown of.
        if let Ok(marks) = self.room_marks() {
            st.baseline = marks;
            st.baseline.remove(&room);
        }
        let (tx, rx) = mpsc::channel::<term::Input>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let interactive = term::spawn_input(tx);
        let mut ui = term::Screen::new(interactive);
        ws.send(&st.catch.join_request(&room, None))?;
        ui.print(&format!(
            "connected as {}; /help for commands",
            term::safe(&st.me)
        ));
        for line in st.hello(&hello) {
            ui.print(&line);
        }
        let mut backoff = Backoff::default();
        // Lines typed while the connection was down, run once it is back.
        let mut typed: std::collections::VecDeque<term::Input> = Default::default();
        loop {
            // Input first, without blocking.
            while let Some(input) = typed.pop_front().or_else(|| rx.try_recv().ok()) {
                match input {
                    term::Input::Line(line) => {
                        match self.command(&mut ws, &mut ui, &mut st, &jobs_tx, &line) {
                            Ok(true) => return Self::flush_outbox(&mut ws, &mut ui, &mut st),
                            Ok(false) => {}
                            Err(Fail::Unreachable(_)) => {}
                            Err(e) => ui.print(&format!("! {}", e.message())),
                        }
                    }
                    term::Input::Typing => {
                        let _ = ws.send(&json!({"type": "typing", "room": st.room, "active": true, "ref": "typing"}));
                    }
                    term::Input::Eof => return Self::flush_outbox(&mut ws, &mut ui, &mut st),
                }
            }
            while let Ok(job) = jobs_rx.try_recv() {
                match job {
                    Job::Print(line) => ui.print(&line),
                    Job::Send(req) => st.outbox.push(req, Instant::now()),
                }
            }
            let mut sent = Ok(());
            let due: Vec<Value> = st
                .catch
                .next_request()
                .into_iter()
                .chain(st.seen_requests(Instant::now()))
                .chain(st.reactors_next())
                .chain(st.outbox.due(Instant::now()))
                .collect();
            for req in due {
                sent = sent.and_then(|()| ws.send(&req));
            }
            match sent.and_then(|()| ws.recv(Duration::from_millis(50))) {
                Ok(Some(v)) => {
                    if let Some(why) = st.outbox.answer(&v, Instant::now()) {
                        ui.print(&format!("! {}", term::safe(&why)));
                        continue;
                    }
                    if v["type"] == "error"
                        && v["code"] == "rate_limited"
                        && v["ref"].as_str().is_some_and(|r| r.starts_with("out:"))
                    {
                        continue; // waited out by the outbox
                    }
                    if let Some(line) = st.describe(&v) {
                        ui.print(&line);
                    }
                }
                Ok(None) => {}
                Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                Err(e) => {
                    ui.print(&format!("! {}; reconnecting…", e.message()));
                    let Some((new_ws, hello)) =
                        self.reconnect(&rx, &mut typed, &mut backoff, &mut ui)?
                    else {
                        return Ok(());
                    };
                    ws = new_ws;
                    // Lines not stored yet go again, with their client_id.
                    st.outbox.resend(Instant::now());
                    // Read before any frame of the new socket: which rooms have news.
                    st.plan_catch_up(self.room_marks().ok());
                    ui.print("! reconnected; catching up");
                    for line in st.hello(&hello) {
                        ui.print(&line);
                    }
                }
            }
        }
    }

    /// Before leaving: the typed lines not stored yet get up to 10 s to be.
    fn flush_outbox(ws: &mut Ws, ui: &mut term::Screen, st: &mut Chat) -> Result<(), Fail> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !st.outbox.is_empty() && Instant::now() < deadline {
            for req in st.outbox.due(Instant::now()) {
                ws.send(&req)?;
            }
            if let Some(v) = ws.recv(Duration::from_millis(50))? {
                if let Some(why) = st.outbox.answer(&v, Instant::now()) {
                    ui.print(&format!("! {}", term::safe(&why)));
                } else if let Some(line) = st.describe(&v) {
                    ui.print(&line);
                }
            }
        }
        if !st.outbox.is_empty() {
            return Err(Fail::Unreachable("some typed lines were not stored".into()));
        }
        Ok(())
    }

    /// Connects again after jittered, growing waits. Typed lines wait in `typed`
    /// meanwhile; `/quit` or end of input ends the wait (None). A revoked or expired
    /// session ends it with an error.
    fn reconnect(
        &self,
        rx: &mpsc::Receiver<term::Input>,
        typed: &mut std::collections::VecDeque<term::Input>,
        backoff: &mut Backoff,
        ui: &mut term::Screen,
    ) -> Result<Option<(Ws, Value)>, Fail> {
        loop {
            let until = Instant::now() + backoff.next_wait();
            while Instant::now() < until {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(term::Input::Eof) => return Ok(None),
                    Ok(term::Input::Line(l)) if matches!(l.trim(), "/quit" | "/exit") => {
                        return Ok(None)
                    }
                    Ok(term::Input::Typing) => {}
                    Ok(input) => typed.push_back(input),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(until.saturating_duration_since(Instant::now()))
                    }
                }
            }
            match self.connect() {
                Ok(c) => {
                    backoff.reset();
                    return Ok(Some(c));
                }
                Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                Err(e) => ui.print(&format!("! {}; trying again…", e.message())),
            }
        }
    }

    /// `/rooms [WORD]`: the rooms one may join (public ones, and private ones one is in),
    /// page by page, then one's conversations.
    fn list_rooms(&self, ui: &mut term::Screen, st: &Chat, q: &str) -> Result<(), Fail> {
        const PAGE: usize = 200;
        const PAGES: usize = 5;
        let mut after = String::new();
        let (mut rooms, mut dms, mut more) = (Vec::new(), Vec::new(), false);
        for n in 0..PAGES {
            let limit = PAGE.to_string();
            let (status, v) =
                self.get("/rooms", &[("q", q), ("limit", &limit), ("after", &after)])?;
            match status {
                200 => {}
                429 => {
                    return Err(Fail::RateLimited(
                        "slow down; try /rooms again in a moment".into(),
                    ))
                }
                s => return Err(Fail::Server(format!("/rooms answered {s}"))),
            }
            let page = v.as_array().cloned().unwrap_or_default();
            for r in &page {
                let name = r["name"].as_str().unwrap_or("");
                if name.starts_with("dm:") {
                    let unread = r["unread"].as_i64().unwrap_or(0);
                    dms.push(if unread > 0 {
                        format!("{} ({unread} unread)", st.label(name))
                    } else {
                        st.label(name)
                    });
                    continue;
                }
                let mark = match (r["member"] == true, r["private"] == true) {
                    (true, true) => " (private, joined)".to_string(),
                    (true, false) => " (joined)".to_string(),
                    _ => format!(" — /join {}", term::safe(name)),
                };
                let unread = match r["unread"].as_i64() {
                    Some(n) if n > 0 && r["member"] == true => format!(", {n} unread"),
                    _ => String::new(),
                };
                rooms.push(format!(
                    "  #{}  {} members, {} online{unread}{mark}",
                    term::safe(name),
                    show::num(&r["members"]),
                    show::num(&r["online_count"]),
                ));
            }
            match page.last().and_then(|r| r["name"].as_str()) {
                Some(last) if page.len() >= PAGE => {
                    after = last.to_string();
                    more = n + 1 == PAGES;
                }
                _ => break,
            }
        }
        ui.print(&format!("{} room(s):", rooms.len()));
        for line in rooms {
            ui.print(&line);
        }
        if more {
            ui.print("  … and more: /rooms WORD lists the rooms whose name has WORD");
        }
        if !dms.is_empty() {
            ui.print(&format!("conversations: {}", dms.join(", ")));
        }
        Ok(())
    }

    /// Runs one line typed in `chat`; `Ok(true)` means quit.
    fn command(
        &self,
        ws: &mut Ws,
        ui: &mut term::Screen,
        st: &mut Chat,
        jobs: &mpsc::Sender<Job>,
        line: &str,
    ) -> Result<bool, Fail> {
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(false);
        }
        // In a conversation, as a direct message: that also starts it if need be.
        let typed = |st: &Chat, text: &str| {
            let peer = st.label(&st.room);
            match peer.strip_prefix('@') {
                Some(to) if st.room.starts_with("dm:") => {
                    json!({"type": "dm", "to": to, "text": text})
                }
                _ => json!({"type": "send", "room": st.room, "text": text}),
            }
        };
        if !line.starts_with('/') {
            // Sent from the outbox: kept until stored, retried as the server asks.
            st.outbox.push(typed(st, line), Instant::now());
            return Ok(false);
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let mut words = rest.splitn(2, ' ');
        let (a, b) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").trim(),
        );
        // A room may be typed as #name, the way invitations show it; a conversation as
        // @name, the way it is shown.
        let a_room = match a.strip_prefix('@') {
            Some(other) => show::dm_room(&st.me, other),
            None => a.strip_prefix('#').unwrap_or(a).to_string(),
        };
        let id = |s: &str| s.trim_start_matches('#').parse::<i64>().unwrap_or(0);
        match cmd {
            "/quit" | "/exit" => return Ok(true),
            "/help" => ui.print(HELP),
            // Joining is also how an invitation is accepted.
            "/join" | "/accept" if !a.is_empty() => {
                st.room = a_room.clone();
                ws.send(&st.catch.join_request(&a_room, None))?;
            }
            "/decline" if !a.is_empty() => {
                ws.send(&json!({"type": "decline", "room": a_room, "ref": "decline"}))?
            }
            "/invites" => {
                // The server's list; the one kept from hello and `invited` if it cannot say.
                if let Ok((200, v)) = self.get("/invitations", &[]) {
                    if let Some(list) = v.as_array() {
                        st.invites = list
                            .iter()
                            .filter_map(|i| Some((i["room"].as_str()?.to_string(), i["by"].as_str().unwrap_or("").to_string())))
                            .collect();
                    }
                }
                if st.invites.is_empty() {
                    ui.print("* no pending invitations");
                }
                for (room, by) in &st.invites {
                    ui.print(&show::invitation_line(room, by));
                }
            }
            "/leave" => {
                let r = if a.is_empty() { st.room.clone() } else { a_room };
                ws.send(&json!({"type": "leave", "room": r}))?;
                if r == st.room {
                    st.room = "general".into();
                }
            }
            "/rooms" => self.list_rooms(ui, st, rest)?,
            // The names were made safe when the `joined` reply came in.
            "/who" => {
                let (members, online) = &st.who;
                let mut line = format!("members: {}; online: {}", members.join(", "), online.join(", "));
                if let Some((m, o)) = st.who_counts {
                    line.push_str(&format!(" (first names only: {m} members, {o} online)"));
                }
                ui.print(&line)
            }
            "/dm" if !a.is_empty() && !b.is_empty() => ws.send(&json!({"type": "dm", "to": a.trim_start_matches('@'), "text": b}))?,
            "/history" => {
                let n: u64 = a.parse().unwrap_or(20);
                ws.send(&json!({"type": "history", "room": st.room, "limit": n}))?;
            }
            "/edit" if !b.is_empty() => ws.send(&json!({"type": "edit", "id": id(a), "text": b}))?,
            "/delete" if !a.is_empty() => ws.send(&json!({"type": "delete", "id": id(a)}))?,
            // The server's `reacted` (to the room, or to me alone if nothing changed) says
            // how it went.
            "/react" | "/unreact" if !b.is_empty() => {
                ws.send(&json!({"type": "react", "id": id(a), "emoji": b, "on": cmd == "/react", "ref": "react"}))?
            }
            "/reactors" if !b.is_empty() => ws.send(&st.reactors_request(id(a), b))?,
            "/search" if !rest.is_empty() => {
                let (_, v) = self.get("/search", &[("q", rest)])?;
                let found = v["messages"].as_array().cloned().unwrap_or_default();
                ui.print(&format!("{} result(s)", found.len()));
                for m in found {
                    ui.print(&format!("  {}", show::message_line(&m, &st.me, true, true)));
                }
            }
            "/create" if !a.is_empty() => ws.send(&json!({"type": "create_room", "room": a_room, "private": b == "private", "ref": "join"}))?,
            // On a thread of its own, so the chat goes on meanwhile; the message goes from
            // the outbox once the file is up, to the room it was typed in.
            "/upload" if !a.is_empty() => {
                let file = files::Local::check(&expand_home(a))?;
                let mut req = typed(st, b);
                let token = token()?;
                let (agent, base, host, jobs) =
                    (self.agent.clone(), self.url(""), self.host.clone(), jobs.clone());
                ui.print(&format!("* uploading {}…", file.shown()));
                std::thread::spawn(move || {
                    let http = files::Http { agent: &agent, base: &base, host: &host, token: &token };
                    // Large files say how far they got, every quarter.
                    let mut next = if file.size >= 1 << 20 { 25 } else { 100 };
                    let shown = file.shown();
                    let r = http.upload(&file, false, &mut |n| {
                        let p = n * 100 / file.size;
                        if p >= next && p < 100 {
                            let _ = jobs.send(Job::Print(format!("* uploading {shown}… {p}%")));
                            next = (p / 25 + 1) * 25;
                        }
                    });
                    let _ = match r {
                        Ok(f) => {
                            let _ = jobs.send(Job::Print(format!("* uploaded {}", show::attachment(&f))));
                            req["attachments"] = json!([f["id"]]);
                            jobs.send(Job::Send(req))
                        }
                        Err(e) => jobs.send(Job::Print(format!("! {}", e.message()))),
                    };
                });
            }
            "/download" if !a.is_empty() => {
                let id = files::file_id(a)?;
                let out = (!b.is_empty()).then(|| PathBuf::from(expand_home(b)));
                let token = token()?;
                let (agent, base, host, jobs) =
                    (self.agent.clone(), self.url(""), self.host.clone(), jobs.clone());
                ui.print(&format!("* downloading {id}…"));
                std::thread::spawn(move || {
                    let http = files::Http { agent: &agent, base: &base, host: &host, token: &token };
                    let line = match http.download(&id, out.as_deref(), false) {
                        Ok((path, n)) => format!(
                            "* saved {} ({})",
                            term::safe(&path.display().to_string()),
                            files::size(n)
                        ),
                        Err(e) => format!("! {}", e.message()),
                    };
                    let _ = jobs.send(Job::Print(line));
                });
            }
            "/invite" if !b.is_empty() => ws.send(&json!({"type": "invite", "room": a_room, "user": b}))?,
            _ => ui.print("! unknown command or missing arguments; /help"),
        }
        Ok(false)
    }
}

const HELP: &str = "/join ROOM (or @USER)  /leave [ROOM]  /rooms [WORD]  /who  /dm USER TEXT  /history [N]  /edit ID TEXT  /delete ID  /react ID EMOJI  /unreact ID EMOJI  /reactors ID EMOJI  /search WORDS  /create ROOM [private]  /invite ROOM USER  /invites  /accept ROOM  /decline ROOM  /upload PATH [TEXT]  /download FILE-ID [PATH]  /quit";

/// The chat socket: TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl std::io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

struct Ws {
    ws: tungstenite::WebSocket<Stream>,
}

impl Ws {
    fn send(&mut self, v: &Value) -> Result<(), Fail> {
        self.ws
            .send(tungstenite::Message::Text(v.to_string().into()))
            .map_err(|e| Fail::Unreachable(e.to_string()))
    }

    /// The next JSON message within `wait` (None on timeout).
    fn recv(&mut self, wait: Duration) -> Result<Option<Value>, Fail> {
        self.ws.get_ref().tcp().set_read_timeout(Some(wait)).ok();
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => return Ok(serde_json::from_str(&t).ok()),
                Ok(tungstenite::Message::Close(f)) => {
                    let code = f.as_ref().map(|f| u16::from(f.code)).unwrap_or(0);
                    return Err(match code {
                        4001 => Fail::Auth(
                            "the session was revoked or expired (4001); log in again".into(),
                        ),
                        4002 => Fail::Unreachable("the server is restarting (4002)".into()),
                        code => Fail::Unreachable(format!("closed by the server ({code})")),
                    });
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(Fail::Unreachable(e.to_string())),
            }
        }
    }
}

fn load_session() -> std::io::Result<Value> {
    let text = std::fs::read_to_string(session_path())?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn token() -> Result<String, Fail> {
    load_session()
        .ok()
        .and_then(|s| s["token"].as_str().map(str::to_string))
        .ok_or_else(|| Fail::Auth("not logged in; run: chatterbox-cli login NAME".into()))
}

fn save_session(v: &Value) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = config_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = session_path();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(v.to_string().as_bytes())
}
