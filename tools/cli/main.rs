//! `chatterbox-cli`: the terminal client.
//!
//! Accounts over HTTP (ureq's blocking client), chat over one WebSocket (tungstenite's
//! blocking client). `chat` is interactive with its own line editor so that
//! incoming messages never mangle the line being typed; `send` and `tail` are for scripts.

mod term;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;

const USAGE: &str = "usage: chatterbox-cli [--server URL] COMMAND
commands:
  register NAME        create an account (password from the terminal, or stdin when piped)
  login NAME           log in and keep the session token
  logout               revoke the token and forget it
  chat [ROOM]          interactive chat (default room: general); /help lists commands
  send ROOM            send stdin as one message; exits once the server has stored it
  tail ROOM [--since ID] [--json]   print messages as they arrive, one per line
environment: CHATTERBOX_SERVER (default http://127.0.0.1:8000), CHATTERBOX_CONFIG_DIR
  (default $XDG_CONFIG_HOME/chatterbox or ~/.config/chatterbox; the token is kept there, mode 0600)
exit codes: 0 ok, 1 usage, 2 server unreachable, 3 not logged in or bad credentials,
  4 rate limited, 5 no such room or not allowed, 6 other server error";

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

/// An `error` reply from the server as a failure (its words made safe to print).
fn from_error(v: &Value) -> Fail {
    let msg = format!(
        "{} ({})",
        term::safe(v["message"].as_str().unwrap_or("error")),
        term::safe(v["code"].as_str().unwrap_or("?"))
    );
    match v["code"].as_str() {
        Some("rate_limited") => Fail::RateLimited(msg),
        Some("no_such_room") | Some("forbidden") => Fail::Room(msg),
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
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    let host = server
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let cli = Cli {
        host,
        agent: http_agent(),
    };
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let result = match (args[0].as_str(), rest.as_slice()) {
        ("register", [name]) => cli.register(name),
        ("login", [name]) => cli.login(name),
        ("logout", []) => cli.logout(),
        ("chat", []) => cli.chat("general"),
        ("chat", [room]) => cli.chat(room),
        ("send", [room]) => cli.send(room),
        ("tail", [room, opts @ ..]) => cli.tail(room, opts),
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

struct Cli {
    /// host:port of the server.
    host: String,
    agent: ureq::Agent,
}

/// Every status comes back as a response (the commands map them to exit codes), each
/// request on its own connection, straight to the server (no proxy from the environment).
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_idle_connections(0)
        .timeout_per_read(Some(Duration::from_secs(30)))
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
        format!("http://{}{path}", self.host)
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
            (201, v) => {
                println!(
                    "registered {}; now run: chatterbox-cli login {}",
                    term::safe(v["username"].as_str().unwrap_or(name)),
                    term::safe(name)
                );
                Ok(())
            }
            (429, v) => Err(Fail::RateLimited(term::safe(
                v["message"].as_str().unwrap_or("rate limited"),
            ))),
            (_, v) => Err(Fail::Server(term::safe(
                v["message"].as_str().unwrap_or("registration failed"),
            ))),
        }
    }

    fn login(&self, name: &str) -> Result<(), Fail> {
        let creds = Self::credentials(name)?;
        match self.post("/login", Some(&creds), None)? {
            (200, v) => {
                let session =
                    json!({"server": self.host, "username": v["username"], "token": v["token"]});
                save_session(&session)
                    .map_err(|e| Fail::Server(format!("cannot save the session: {e}")))?;
                println!(
                    "logged in as {} (session in {})",
                    term::safe(v["username"].as_str().unwrap_or(name)),
                    term::safe(&session_path().display().to_string())
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
        let stream = TcpStream::connect(&self.host)
            .map_err(|e| Fail::Unreachable(format!("cannot reach {}: {e}", self.host)))?;
        let url = format!("ws://{}/ws?token={token}", self.host);
        let (ws, _) = tungstenite::client::client(url, MaybeTlsStream::Plain(stream)).map_err(
            |e| match e {
                tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))
                    if r.status() == 401 =>
                {
                    Fail::Auth("the session has expired or was revoked; log in again".into())
                }
                e => Fail::Unreachable(term::safe(&e.to_string())),
            },
        )?;
        let mut ws = Ws { ws };
        let hello = ws
            .recv(Duration::from_secs(10))?
            .ok_or_else(|| Fail::Server("no hello".into()))?;
        if hello["type"] != "hello" {
            return Err(Fail::Server("unexpected greeting".into()));
        }
        Ok((ws, hello))
    }

    /// Sends stdin as one message. Past the rate limit it waits as long as the server
    /// asks (`retry_after_ms`) and tries once more with the same `client_id`, so the
    /// message is stored at most once.
    fn send(&self, room: &str) -> Result<(), Fail> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Fail::Usage(e.to_string()))?;
        if text.trim().is_empty() {
            return Err(Fail::Usage("nothing to send on stdin".into()));
        }
        let (mut ws, _) = self.connect()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let cid = format!("cli-{}-{nanos}", std::process::id());
        let req =
            json!({"type": "send", "room": room, "text": text, "client_id": cid, "ref": "send"});
        ws.send(&req)?;
        let mut retried = false;
        let mut until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match ws.recv(until.saturating_duration_since(Instant::now()))? {
                Some(v) if v["ref"] == "send" && v["type"] == "message" => {
                    println!("{}", num(&v["id"]));
                    return Ok(());
                }
                Some(v) if v["ref"] == "send" && v["type"] == "error" => {
                    if v["code"] == "rate_limited" && !retried {
                        retried = true;
                        std::thread::sleep(retry_after(&v));
                        ws.send(&req)?;
                        until = Instant::now() + Duration::from_secs(10);
                        continue;
                    }
                    return Err(from_error(&v));
                }
                Some(_) => {}
                None => break,
            }
        }
        Err(Fail::Server("no acknowledgement from the server".into()))
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
        let stdout = std::io::stdout();
        loop {
            let mut ws = match self.connect() {
                Ok((ws, _)) => ws,
                Err(Fail::Unreachable(m)) if since.is_some() => {
                    eprintln!("chatterbox-cli: {}; retrying", term::safe(&m));
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut catch = CatchUp::default();
            let join = match since {
                Some(s) => catch.join_request(room, s),
                None => json!({"type": "join", "room": room, "ref": "join"}),
            };
            ws.send(&join)?;
            loop {
                if let Some(req) = catch.next_request() {
                    if ws.send(&req).is_err() {
                        break;
                    }
                }
                let v = match ws.recv(Duration::from_secs(60)) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(Fail::Unreachable(_)) => break,
                    Err(e) => return Err(e),
                };
                let msgs: Vec<Value> = match v["type"].as_str() {
                    Some("joined") if v["room"] == room => catch.joined(&v),
                    Some("message") if v["room"] == room => catch.message(&v).into_iter().collect(),
                    Some("history") if v["ref"] == CatchUp::REF => catch.page(&v),
                    Some("error") if v["ref"] == CatchUp::REF => catch.refused(&v),
                    Some("error") if v["ref"] == "join" => return Err(from_error(&v)),
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
                        term::safe_lines(&format_message(&m), "")
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
        let (tx, rx) = mpsc::channel::<term::Input>();
        let interactive = term::spawn_input(tx);
        let mut ui = term::Screen::new(interactive);
        let mut st = Chat {
            me,
            room: first_room.to_string(),
            ..Chat::default()
        };
        ws.send(&json!({"type": "join", "room": st.room, "ref": "join"}))?;
        ui.print(&format!(
            "connected as {}; /help for commands",
            term::safe(&st.me)
        ));
        for line in st.hello(&hello) {
            ui.print(&line);
        }
        loop {
            // Input first, without blocking.
            while let Ok(input) = rx.try_recv() {
                match input {
                    term::Input::Line(line) => match self.command(&mut ws, &mut ui, &mut st, &line)
                    {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(Fail::Unreachable(_)) => {}
                        Err(e) => ui.print(&format!("! {}", e.message())),
                    },
                    term::Input::Typing => {
                        let _ = ws.send(&json!({"type": "typing", "room": st.room, "active": true, "ref": "typing"}));
                    }
                    term::Input::Eof => return Ok(()),
                }
            }
            let mut sent = Ok(());
            if let Some(req) = st.catch.next_request() {
                sent = ws.send(&req);
            }
            let got = sent.and_then(|()| ws.recv(Duration::from_millis(50)));
            match got {
                Ok(Some(v)) => {
                    if let Some(line) = st.describe(&v) {
                        ui.print(&line);
                    }
                }
                Ok(None) => {}
                Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                Err(_) => {
                    ui.print("! connection lost; reconnecting…");
                    let hello;
                    (ws, hello) = loop {
                        std::thread::sleep(Duration::from_secs(1));
                        match self.connect() {
                            Ok(c) => break c,
                            Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                            Err(_) => continue,
                        }
                    };
                    // Pages asked on the old socket are lost; what was held back comes
                    // again in the catch-up, which starts after what was shown.
                    st.catch = CatchUp::default();
                    let mut rooms: Vec<String> = st.last_ids.keys().cloned().collect();
                    if !rooms.contains(&st.room) {
                        rooms.push(st.room.clone());
                    }
                    for r in rooms {
                        let since = st.last_ids.get(&r).copied().unwrap_or(0);
                        ws.send(&st.catch.join_request(&r, since))?;
                    }
                    ui.print("! reconnected; catching up");
                    for line in st.hello(&hello) {
                        ui.print(&line);
                    }
                }
            }
        }
    }

    /// Runs one line typed in `chat`; `Ok(true)` means quit.
    fn command(
        &self,
        ws: &mut Ws,
        ui: &mut term::Screen,
        st: &mut Chat,
        line: &str,
    ) -> Result<bool, Fail> {
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(false);
        }
        if !line.starts_with('/') {
            ws.send(&json!({"type": "send", "room": st.room, "text": line}))?;
            return Ok(false);
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let mut words = rest.splitn(2, ' ');
        let (a, b) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").trim(),
        );
        // A room may be typed as #name, the way invitations show it.
        let a_room = a.strip_prefix('#').unwrap_or(a);
        match cmd {
            "/quit" | "/exit" => return Ok(true),
            "/help" => ui.print(HELP),
            "/join" if !a.is_empty() => {
                st.room = a_room.to_string();
                ws.send(&json!({"type": "join", "room": a_room, "ref": "join"}))?;
            }
            "/accept" if !a.is_empty() => {
                // Joining is how an invitation is accepted.
                st.room = a_room.to_string();
                ws.send(&json!({"type": "join", "room": a_room, "ref": "join"}))?;
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
                    ui.print(&invitation_line(room, by));
                }
            }
            "/leave" => {
                let r = if a.is_empty() { st.room.clone() } else { a_room.to_string() };
                ws.send(&json!({"type": "leave", "room": r}))?;
                if r == st.room {
                    st.room = "general".into();
                }
            }
            "/rooms" => {
                let (status, v) = self.get("/rooms", &[])?;
                if status != 200 {
                    return Err(Fail::Server(format!("/rooms answered {status}")));
                }
                for r in v.as_array().into_iter().flatten() {
                    ui.print(&format!(
                        "  {}{} members {} online {} unread {}",
                        term::safe(r["name"].as_str().unwrap_or("")),
                        if r["private"] == true { " (private)" } else { "" },
                        num(&r["members"]), num(&r["online"]), num(&r["unread"])
                    ));
                }
            }
            // The names were made safe when the `joined` reply came in.
            "/who" => {
                let (members, online) = &st.who;
                let mut line = format!("members: {}; online: {}", members.join(", "), online.join(", "));
                if let Some((m, o)) = st.who_counts {
                    line.push_str(&format!(" (first names only: {m} members, {o} online)"));
                }
                ui.print(&line)
            }
            "/dm" if !a.is_empty() && !b.is_empty() => ws.send(&json!({"type": "dm", "to": a, "text": b}))?,
            "/history" => {
                let n: u64 = a.parse().unwrap_or(20);
                ws.send(&json!({"type": "history", "room": st.room, "limit": n}))?;
            }
            "/edit" if !b.is_empty() => ws.send(&json!({"type": "edit", "id": a.parse::<i64>().unwrap_or(0), "text": b}))?,
            "/delete" if !a.is_empty() => ws.send(&json!({"type": "delete", "id": a.parse::<i64>().unwrap_or(0)}))?,
            "/search" if !rest.is_empty() => {
                let (_, v) = self.get("/search", &[("q", rest)])?;
                let found = v["messages"].as_array().cloned().unwrap_or_default();
                ui.print(&format!("{} result(s)", found.len()));
                for m in found {
                    ui.print(&format!("  #{} {}", num(&m["id"]), format_message(&m)));
                }
            }
            "/create" if !a.is_empty() => ws.send(&json!({"type": "create_room", "room": a_room, "private": b == "private", "ref": "join"}))?,
            "/invite" if !b.is_empty() => ws.send(&json!({"type": "invite", "room": a_room, "user": b}))?,
            _ => ui.print("! unknown command or missing arguments; /help"),
        }
        Ok(false)
    }
}

const HELP: &str = "/join ROOM  /leave [ROOM]  /rooms  /who  /dm USER TEXT  /history [N]  /edit ID TEXT  /delete ID  /search WORDS  /create ROOM [private]  /invite ROOM USER  /invites  /accept ROOM  /decline ROOM  /quit";

/// How long a `rate_limited` error asks to wait (`retry_after_ms`; a second if it does
/// not say, at most a minute).
fn retry_after(v: &Value) -> Duration {
    Duration::from_millis(
        v["retry_after_ms"]
            .as_u64()
            .unwrap_or(1000)
            .clamp(1, 60_000),
    )
}

/// `* alice invited you to #secret — /accept secret or /decline secret`
fn invitation_line(room: &str, by: &str) -> String {
    let (room, by) = (term::safe(room), term::safe(by));
    format!("* {by} invited you to #{room} — /accept {room} or /decline {room}")
}

/// A number from the server as text, or `?` when it is not one (nothing else from a
/// number field is printed).
fn num(v: &Value) -> String {
    v.as_i64().map_or_else(|| "?".into(), |n| n.to_string())
}

/// `[HH:MM] room <user> text`, every part made safe to print; a multi-line message goes
/// on over indented lines.
fn format_message(m: &Value) -> String {
    let ts = m["ts"].as_str().unwrap_or("");
    let hhmm = term::safe(ts.get(11..16).unwrap_or("--:--"));
    let text = if m["deleted"] == true {
        "(deleted)".to_string()
    } else {
        term::safe_lines(m["text"].as_str().unwrap_or(""), "    ")
    };
    let edited = if m["edited"] == true { " (edited)" } else { "" };
    format!(
        "[{hhmm}] {} <{}> {text}{edited}",
        term::safe(m["room"].as_str().unwrap_or("")),
        term::safe(m["user"].as_str().unwrap_or(""))
    )
}

/// What the interactive client keeps between events.
#[derive(Default)]
struct Chat {
    me: String,
    /// The room typed lines go to.
    room: String,
    /// The highest message id shown per room: nothing at or below it is shown again.
    last_ids: HashMap<String, i64>,
    /// Member and online names of the current room, made safe to print.
    who: (Vec<String>, Vec<String>),
    /// The whole counts when `joined` listed only the first names (`members_more`).
    who_counts: Option<(i64, i64)>,
    /// Pending invitations: room, and who invited me.
    invites: BTreeMap<String, String>,
    catch: CatchUp,
}

impl Chat {
    /// What `hello` tells: the pending invitations not shown yet.
    fn hello(&mut self, hello: &Value) -> Vec<String> {
        let mut lines = Vec::new();
        let mut now = BTreeMap::new();
        for i in hello["invitations"].as_array().into_iter().flatten() {
            let (Some(room), by) = (i["room"].as_str(), i["by"].as_str().unwrap_or("")) else {
                continue;
            };
            if !self.invites.contains_key(room) {
                lines.push(invitation_line(room, by));
            }
            now.insert(room.to_string(), by.to_string());
        }
        self.invites = now;
        lines
    }

    /// A message to show, unless it was shown already.
    fn show(&mut self, m: &Value) -> Option<String> {
        let r = m["room"].as_str().unwrap_or("").to_string();
        let id = m["id"].as_i64().unwrap_or(0);
        let shown = self.last_ids.entry(r).or_insert(0);
        if id <= *shown {
            return None;
        }
        *shown = id;
        Some(format_message(m))
    }

    /// Messages to show, each once, as lines; None if there are none.
    fn show_all(&mut self, msgs: &[Value]) -> Option<String> {
        let lines: Vec<String> = msgs.iter().filter_map(|m| self.show(m)).collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// What the interactive client prints for an event, if anything.
    fn describe(&mut self, v: &Value) -> Option<String> {
        let names = |x: &Value| -> Vec<String> {
            x.as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(term::safe))
                .collect()
        };
        let s = |k: &str| term::safe(v[k].as_str().unwrap_or(""));
        match v["type"].as_str()? {
            "message" => {
                let m = self.catch.message(v)?;
                self.show(&m)
            }
            "joined" => {
                let r = v["room"].as_str().unwrap_or("").to_string();
                self.invites.remove(&r);
                if r == self.room {
                    self.who = (names(&v["members"]), names(&v["online"]));
                    self.who_counts = (v["members_more"] == true).then(|| {
                        (
                            v["member_count"].as_i64().unwrap_or(0),
                            v["online_count"].as_i64().unwrap_or(0),
                        )
                    });
                }
                let online = v["online_count"]
                    .as_i64()
                    .unwrap_or(names(&v["online"]).len() as i64);
                let mut out = format!("* joined {} ({online} online)", term::safe(&r));
                let msgs = self.catch.joined(v);
                if let Some(lines) = self.show_all(&msgs) {
                    out = format!("{out}\n{lines}");
                }
                if self.catch.busy(&r) {
                    out.push_str(&format!("\n* catching up on {}…", term::safe(&r)));
                }
                self.last_ids.entry(r).or_insert(0);
                Some(out)
            }
            "history" if v["ref"] == CatchUp::REF => {
                let msgs = self.catch.page(v);
                self.show_all(&msgs)
            }
            "history" => {
                let msgs: Vec<String> = v["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| format!("#{} {}", num(&m["id"]), format_message(m)))
                    .collect();
                Some(if msgs.is_empty() {
                    "* no older messages".into()
                } else {
                    msgs.join("\n")
                })
            }
            "left" => Some(format!("* left {}", s("room"))),
            "edited" => Some(format!(
                "* message {} edited: {}",
                num(&v["id"]),
                term::safe_lines(v["text"].as_str().unwrap_or(""), "    ")
            )),
            "deleted" => Some(format!("* message {} deleted", num(&v["id"]))),
            "typing" if v["active"] == true && v["user"] != self.me.as_str() => {
                Some(format!("* {} is typing in {}…", s("user"), s("room")))
            }
            "presence" => Some(format!(
                "* {} is {} in {}",
                s("user"),
                s("status"),
                s("room")
            )),
            // The inviter gets the event too, naming whom they invited.
            "invited" if v["user"].as_str().is_some_and(|u| u != self.me) => {
                Some(format!("* invited {} to #{}", s("user"), s("room")))
            }
            "invited" => {
                let room = v["room"].as_str().unwrap_or("");
                let by = v["by"].as_str().unwrap_or("");
                self.invites.insert(room.to_string(), by.to_string());
                Some(invitation_line(room, by))
            }
            "declined" => {
                self.invites.remove(v["room"].as_str().unwrap_or(""));
                Some(format!("* declined the invitation to #{}", s("room")))
            }
            "error" if v["ref"] == CatchUp::REF => {
                let msgs = self.catch.refused(v);
                self.show_all(&msgs)
            }
            "error" if v["ref"] != "typing" => Some(format!("! {} ({})", s("message"), s("code"))),
            _ => None,
        }
    }
}

/// Catch-up that goes on past one `joined`. A `join` with `since` may come back
/// `complete: false`: then what was missed is paged with `history` + `after`, from
/// `since` on (the reply may have held the oldest or, when the server's memory no
/// longer reaches back, the newest part of it: paging from `since` finds all of it,
/// in order) until `has_more` is false. Meanwhile the room's live messages are held
/// back, so that everything comes out once and in id order. One page is asked at a
/// time: the server bounds the reads one socket may have waiting.
#[derive(Default)]
struct CatchUp {
    /// `since` of each catch-up join not answered yet.
    since: HashMap<String, i64>,
    /// Rooms still paging: where the next page starts, and the held-back messages.
    paging: BTreeMap<String, (i64, Vec<Value>)>,
    /// The room whose page is on its way, if any.
    asked: Option<String>,
    /// A refused page is asked again only after this.
    not_before: Option<Instant>,
}

impl CatchUp {
    /// The `ref` of page requests.
    const REF: &'static str = "catchup";

    /// A `join` that catches up on `room` after message `since`.
    fn join_request(&mut self, room: &str, since: i64) -> Value {
        self.since.insert(room.to_string(), since);
        json!({"type": "join", "room": room, "since": since, "ref": "join"})
    }

    fn busy(&self, room: &str) -> bool {
        self.paging.contains_key(room)
    }

    /// A `joined`: the messages to show now. A catch-up that came back incomplete
    /// shows nothing yet and pages from its `since` instead.
    fn joined(&mut self, v: &Value) -> Vec<Value> {
        let room = v["room"].as_str().unwrap_or("");
        let history = v["history"].as_array().cloned().unwrap_or_default();
        match self.since.remove(room) {
            Some(since) if v["complete"] == false => {
                self.paging.insert(room.to_string(), (since, Vec::new()));
                Vec::new()
            }
            _ => history,
        }
    }

    /// A live message: to show now, or held back (None) while its room is paging.
    fn message(&mut self, v: &Value) -> Option<Value> {
        match self.paging.get_mut(v["room"].as_str().unwrap_or("")) {
            Some((_, held)) => {
                held.push(v.clone());
                None
            }
            None => Some(v.clone()),
        }
    }

    /// The next page to ask for, if one is due and none is on its way.
    fn next_request(&mut self) -> Option<Value> {
        if self.asked.is_some() || self.not_before.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let (room, (after, _)) = self.paging.iter().next()?;
        self.asked = Some(room.clone());
        Some(
            json!({"type": "history", "room": room, "after": after, "limit": 200, "ref": Self::REF}),
        )
    }

    /// A page: its messages to show, and once the room is done, the held-back ones.
    fn page(&mut self, v: &Value) -> Vec<Value> {
        self.asked = None;
        let room = v["room"].as_str().unwrap_or("");
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs.iter().filter_map(|m| m["id"].as_i64()).max();
        let Some((after, _)) = self.paging.get_mut(room) else {
            return msgs;
        };
        match last {
            Some(id) if v["has_more"] == true => {
                *after = id;
                msgs
            }
            _ => {
                let mut all = msgs;
                all.extend(self.finish(room));
                all
            }
        }
    }

    /// A page was refused: asked again after the wait a rate limit names; on any other
    /// error the room's catch-up ends with what was held back.
    fn refused(&mut self, v: &Value) -> Vec<Value> {
        let Some(room) = self.asked.take() else {
            return Vec::new();
        };
        if v["code"] == "rate_limited" {
            self.not_before = Some(Instant::now() + retry_after(v));
            return Vec::new();
        }
        self.finish(&room)
    }

    fn finish(&mut self, room: &str) -> Vec<Value> {
        let mut held = self.paging.remove(room).map(|p| p.1).unwrap_or_default();
        held.sort_by_key(|m| m["id"].as_i64().unwrap_or(0));
        held
    }
}

struct Ws {
    ws: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    fn send(&mut self, v: &Value) -> Result<(), Fail> {
        self.ws
            .send(tungstenite::Message::Text(v.to_string().into()))
            .map_err(|e| Fail::Unreachable(e.to_string()))
    }

    /// The next JSON message within `wait` (None on timeout).
    fn recv(&mut self, wait: Duration) -> Result<Option<Value>, Fail> {
        if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            s.set_read_timeout(Some(wait)).ok();
        }
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => return Ok(serde_json::from_str(&t).ok()),
                Ok(tungstenite::Message::Close(f)) => {
                    let code = f.as_ref().map(|f| u16::from(f.code)).unwrap_or(0);
                    return Err(if code == 4001 {
                        Fail::Auth("the session was revoked or expired; log in again".into())
                    } else {
                        Fail::Unreachable(format!("closed by the server ({code})"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_from_the_server_reaches_the_terminal_raw() {
        let evil = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07\r<mallory> fake\u{9b}2J\x7f\nline two";
        let m = json!({"ts": "2026-11-24T09:05:00.000Z", "room": "r\x1b[2J", "user": "b\rob", "text": evil, "id": 7});
        let line = format_message(&m);
        assert_eq!(
            line,
            "[09:05] r^[[2J <b^Mob> ^[]0;pwned^G^[]52;c;cHduZWQ=^G^M<mallory> fake\u{fffd}2J^?\n    line two"
        );
        let mut st = Chat {
            me: "alice".into(),
            room: "general".into(),
            ..Chat::default()
        };
        let events = [
            json!({"type": "message", "id": 7, "ts": "2026-11-24T09:05:00.000Z", "room": "r", "user": "b", "text": evil}),
            json!({"type": "edited", "id": 7, "room": "r", "text": evil}),
            json!({"type": "typing", "active": true, "room": evil, "user": evil}),
            json!({"type": "presence", "status": evil, "room": evil, "user": evil}),
            json!({"type": "invited", "by": evil, "room": evil, "user": evil}),
            json!({"type": "invited", "by": evil, "room": evil, "user": "alice"}),
            json!({"type": "declined", "room": evil}),
            json!({"type": "left", "room": evil}),
            json!({"type": "error", "code": evil, "message": evil}),
            json!({"type": "joined", "room": evil, "members": [evil], "online": [evil], "history": [m]}),
            json!({"type": "history", "room": evil, "messages": [m]}),
        ];
        for v in events {
            let out = st.describe(&v).unwrap();
            assert!(
                !out.contains(['\x1b', '\x07', '\r', '\x7f', '\u{9b}']),
                "{out:?}"
            );
            // Lines break only inside a message's text, and go on indented.
            for cont in out.split('\n').skip(1) {
                assert!(cont.starts_with("    ") || cont.starts_with('['), "{out:?}");
            }
        }
        let v = json!({"type": "joined", "room": "general", "members": [evil], "online": [], "history": []});
        st.describe(&v).unwrap();
        assert!(
            !st.who.0[0].contains(['\x1b', '\x07', '\r', '\n']),
            "{:?}",
            st.who.0
        );
        let hello = json!({"type": "hello", "invitations": [{"room": evil, "by": evil}]});
        let lines = st.hello(&hello);
        assert!(
            !lines[0].contains(['\x1b', '\x07', '\r', '\n']),
            "{lines:?}"
        );
        let f = from_error(&json!({"code": "x\x1b", "message": evil}));
        assert!(
            !f.message().contains(['\x1b', '\x07', '\r', '\n']),
            "{:?}",
            f.message()
        );
    }

    #[test]
    fn message_lines() {
        let m = json!({"ts": "2026-11-24T09:05:00.000Z", "room": "general", "user": "bob", "text": "hi", "edited": false, "deleted": false});
        assert_eq!(format_message(&m), "[09:05] general <bob> hi");
        let mut st = Chat::default();
        let v = json!({"type": "message", "id": 3, "ts": "2026-11-24T09:05:00.000Z", "room": "general", "user": "bob", "text": "hi"});
        assert!(st.describe(&v).is_some());
        assert!(st.describe(&v).is_none(), "shown once");
    }

    #[test]
    fn invitations_are_offered_with_the_commands_to_answer_them() {
        let mut st = Chat {
            me: "bob".into(),
            ..Chat::default()
        };
        let hello = json!({"type": "hello", "invitations": [{"room": "secret", "by": "alice"}]});
        assert_eq!(
            st.hello(&hello),
            ["* alice invited you to #secret — /accept secret or /decline secret"]
        );
        assert!(
            st.hello(&hello).is_empty(),
            "told once, also after a reconnect"
        );
        let v = json!({"type": "invited", "room": "plans", "by": "carol", "user": "bob"});
        assert_eq!(
            st.describe(&v).unwrap(),
            "* carol invited you to #plans — /accept plans or /decline plans"
        );
        assert_eq!(st.invites.len(), 2);
        let v = json!({"type": "declined", "room": "plans"});
        assert_eq!(
            st.describe(&v).unwrap(),
            "* declined the invitation to #plans"
        );
        let v = json!({"type": "joined", "room": "secret", "members": ["alice", "bob"], "online": ["bob"], "history": []});
        st.describe(&v).unwrap();
        assert!(st.invites.is_empty());
        // The inviter's copy names the invitee.
        let v = json!({"type": "invited", "room": "secret", "by": "bob", "user": "dave"});
        assert_eq!(st.describe(&v).unwrap(), "* invited dave to #secret");
        assert!(st.invites.is_empty());
    }

    fn msg(room: &str, id: i64) -> Value {
        json!({"type": "message", "id": id, "room": room, "user": "u", "text": format!("m{id}"), "ts": ""})
    }

    fn ids(msgs: &[Value]) -> Vec<i64> {
        msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect()
    }

    /// An incomplete catch-up pages from `since` (whichever part `joined` held), holds
    /// live messages back, and lets everything out in order.
    #[test]
    fn an_incomplete_catch_up_pages_forward_and_holds_live_messages() {
        let mut c = CatchUp::default();
        assert_eq!(c.join_request("r", 5)["since"], 5);
        // The newest part came (the server no longer had the rest in memory).
        let joined = json!({"type": "joined", "room": "r", "complete": false, "history": [msg("r", 90), msg("r", 91)]});
        assert!(c.joined(&joined).is_empty());
        assert!(c.busy("r"));
        let ask = c.next_request().unwrap();
        assert_eq!(
            (ask["after"].as_i64(), ask["ref"].as_str()),
            (Some(5), Some("catchup"))
        );
        assert!(c.next_request().is_none(), "one page at a time");
        assert!(c.message(&msg("r", 92)).is_none(), "held back");
        assert_eq!(c.message(&msg("other", 93)).unwrap()["id"], 93);
        let page = json!({"type": "history", "room": "r", "has_more": true, "messages": [msg("r", 6), msg("r", 7)]});
        assert_eq!(ids(&c.page(&page)), [6, 7]);
        // Rate limited: asked again after the wait.
        let ask = c.next_request().unwrap();
        assert_eq!(ask["after"], 7);
        let refused = json!({"type": "error", "code": "rate_limited", "retry_after_ms": 30, "ref": "catchup"});
        assert!(c.refused(&refused).is_empty());
        assert!(c.next_request().is_none(), "not before the wait");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.next_request().unwrap()["after"], 7);
        assert!(c.message(&msg("r", 94)).is_none());
        let page = json!({"type": "history", "room": "r", "has_more": false, "messages": [msg("r", 8), msg("r", 90), msg("r", 91)]});
        assert_eq!(ids(&c.page(&page)), [8, 90, 91, 92, 94]);
        assert!(!c.busy("r"));
        assert!(c.next_request().is_none());
        assert_eq!(c.message(&msg("r", 95)).unwrap()["id"], 95);
        // A complete catch-up, or a plain join, shows its history at once.
        c.join_request("r", 95);
        let joined =
            json!({"type": "joined", "room": "r", "complete": true, "history": [msg("r", 96)]});
        assert_eq!(ids(&c.joined(&joined)), [96]);
        let joined =
            json!({"type": "joined", "room": "s", "complete": true, "history": [msg("s", 97)]});
        assert_eq!(ids(&c.joined(&joined)), [97]);
    }

    #[test]
    fn chat_shows_a_paged_catch_up_once_in_order() {
        let mut st = Chat::default();
        st.last_ids.insert("r".into(), 5);
        st.catch.join_request("r", 5);
        let joined = json!({"type": "joined", "room": "r", "complete": false, "members": [], "online": [], "history": [msg("r", 6)]});
        let out = st.describe(&joined).unwrap();
        assert!(out.ends_with("* catching up on r…"), "{out}");
        assert!(st.describe(&msg("r", 9)).is_none());
        st.catch.next_request().unwrap();
        let page = json!({"type": "history", "room": "r", "has_more": false, "ref": "catchup", "messages": [msg("r", 6), msg("r", 8)]});
        let out = st.describe(&page).unwrap();
        assert_eq!(out.matches("<u>").count(), 3, "{out}");
        assert!(
            out.find("m6").unwrap() < out.find("m8").unwrap()
                && out.find("m8").unwrap() < out.find("m9").unwrap()
        );
        assert!(st.describe(&msg("r", 9)).is_none(), "shown once");
    }
}
