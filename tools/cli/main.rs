//! `chatterbox-cli`: the terminal client.
//!
//! Accounts over HTTP (ureq's blocking client), chat over one WebSocket (tungstenite's
//! blocking client). `chat` is interactive with its own line editor so that
//! incoming messages never mangle the line being typed; `send` and `tail` are for scripts.

mod term;

use serde_json::{json, Value};
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

    fn connect(&self) -> Result<Ws, Fail> {
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
        Ok(ws)
    }

    fn send(&self, room: &str) -> Result<(), Fail> {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Fail::Usage(e.to_string()))?;
        if text.trim().is_empty() {
            return Err(Fail::Usage("nothing to send on stdin".into()));
        }
        let mut ws = self.connect()?;
        let cid = format!(
            "cli-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        );
        ws.send(
            &json!({"type": "send", "room": room, "text": text, "client_id": cid, "ref": "send"}),
        )?;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match ws.recv(Duration::from_secs(10))? {
                Some(v) if v["ref"] == "send" && v["type"] == "message" => {
                    println!("{}", term::safe(&v["id"].to_string()));
                    return Ok(());
                }
                Some(v) if v["ref"] == "send" && v["type"] == "error" => {
                    return Err(from_error(&v))
                }
                Some(_) => {}
                None => break,
            }
        }
        Err(Fail::Server("no acknowledgement from the server".into()))
    }

    fn tail(&self, room: &str, opts: &[&str]) -> Result<(), Fail> {
        let json_out = opts.contains(&"--json");
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
                Ok(ws) => ws,
                Err(Fail::Unreachable(m)) if since.is_some() => {
                    eprintln!("chatterbox-cli: {}; retrying", term::safe(&m));
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut join = json!({"type": "join", "room": room, "ref": "join"});
            if let Some(s) = since {
                join["since"] = json!(s);
            }
            ws.send(&join)?;
            loop {
                let v = match ws.recv(Duration::from_secs(60)) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(Fail::Unreachable(_)) => break,
                    Err(e) => return Err(e),
                };
                let msgs: Vec<Value> = match v["type"].as_str() {
                    Some("joined") if v["room"] == room => {
                        v["history"].as_array().cloned().unwrap_or_default()
                    }
                    Some("message") if v["room"] == room => vec![v],
                    Some("error") if v["ref"] == "join" => return Err(from_error(&v)),
                    _ => continue,
                };
                let mut out = stdout.lock();
                for m in msgs {
                    since = Some(since.unwrap_or(0).max(m["id"].as_i64().unwrap_or(0)));
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
        let mut ws = self.connect()?;
        let me = load_session()
            .ok()
            .and_then(|s| s["username"].as_str().map(str::to_string))
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel::<term::Input>();
        let interactive = term::spawn_input(tx);
        let mut ui = term::Screen::new(interactive);
        let mut room = first_room.to_string();
        let mut last_ids: std::collections::HashMap<String, i64> = Default::default();
        let mut who: (Vec<String>, Vec<String>) = Default::default();
        ws.send(&json!({"type": "join", "room": room, "ref": "join"}))?;
        ui.print(&format!(
            "connected as {}; /help for commands",
            term::safe(&me)
        ));
        loop {
            // Input first, without blocking.
            while let Ok(input) = rx.try_recv() {
                match input {
                    term::Input::Line(line) => {
                        match self.command(&mut ws, &mut ui, &mut room, &line, &who) {
                            Ok(true) => return Ok(()),
                            Ok(false) => {}
                            Err(Fail::Unreachable(_)) => {}
                            Err(e) => ui.print(&format!("! {}", e.message())),
                        }
                    }
                    term::Input::Typing => {
                        let _ = ws.send(&json!({"type": "typing", "room": room, "active": true, "ref": "typing"}));
                    }
                    term::Input::Eof => return Ok(()),
                }
            }
            match ws.recv(Duration::from_millis(50)) {
                Ok(Some(v)) => {
                    if let Some(line) = describe(&v, &me, &room, &mut last_ids, &mut who) {
                        ui.print(&line);
                    }
                }
                Ok(None) => {}
                Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                Err(_) => {
                    ui.print("! connection lost; reconnecting…");
                    ws = loop {
                        std::thread::sleep(Duration::from_secs(1));
                        match self.connect() {
                            Ok(ws) => break ws,
                            Err(Fail::Auth(m)) => return Err(Fail::Auth(m)),
                            Err(_) => continue,
                        }
                    };
                    let mut rooms: Vec<String> = last_ids.keys().cloned().collect();
                    if !rooms.contains(&room) {
                        rooms.push(room.clone());
                    }
                    for r in rooms {
                        let since = last_ids.get(&r).copied().unwrap_or(0);
                        ws.send(
                            &json!({"type": "join", "room": r, "since": since, "ref": "catchup"}),
                        )?;
                    }
                    ui.print("! reconnected; catching up");
                }
            }
        }
    }

    /// Runs one line typed in `chat`; `Ok(true)` means quit.
    fn command(
        &self,
        ws: &mut Ws,
        ui: &mut term::Screen,
        room: &mut String,
        line: &str,
        who: &(Vec<String>, Vec<String>),
    ) -> Result<bool, Fail> {
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(false);
        }
        if !line.starts_with('/') {
            ws.send(&json!({"type": "send", "room": room, "text": line}))?;
            return Ok(false);
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let mut words = rest.splitn(2, ' ');
        let (a, b) = (
            words.next().unwrap_or(""),
            words.next().unwrap_or("").trim(),
        );
        match cmd {
            "/quit" | "/exit" => return Ok(true),
            "/help" => ui.print("/join ROOM  /leave [ROOM]  /rooms  /who  /dm USER TEXT  /history [N]  /edit ID TEXT  /delete ID  /search WORDS  /create ROOM [private]  /invite ROOM USER  /quit"),
            "/join" if !a.is_empty() => {
                *room = a.to_string();
                ws.send(&json!({"type": "join", "room": a, "ref": "join"}))?;
            }
            "/leave" => {
                let r = if a.is_empty() { room.clone() } else { a.to_string() };
                ws.send(&json!({"type": "leave", "room": r}))?;
                if r == *room {
                    *room = "general".into();
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
            "/who" => ui.print(&format!("members: {}; online: {}", who.0.join(", "), who.1.join(", "))),
            "/dm" if !a.is_empty() && !b.is_empty() => ws.send(&json!({"type": "dm", "to": a, "text": b}))?,
            "/history" => {
                let n: u64 = a.parse().unwrap_or(20);
                ws.send(&json!({"type": "history", "room": room, "limit": n}))?;
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
            "/create" if !a.is_empty() => ws.send(&json!({"type": "create_room", "room": a, "private": b == "private", "ref": "join"}))?,
            "/invite" if !b.is_empty() => ws.send(&json!({"type": "invite", "room": a, "user": b}))?,
            _ => ui.print("! unknown command or missing arguments; /help"),
        }
        Ok(false)
    }
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

/// What the interactive client prints for an event, if anything.
fn describe(
    v: &Value,
    me: &str,
    room: &str,
    last_ids: &mut std::collections::HashMap<String, i64>,
    who: &mut (Vec<String>, Vec<String>),
) -> Option<String> {
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
            let r = v["room"].as_str().unwrap_or("").to_string();
            let id = v["id"].as_i64().unwrap_or(0);
            let e = last_ids.entry(r).or_insert(0);
            if id <= *e {
                return None; // already shown
            }
            *e = id;
            Some(format_message(v))
        }
        "joined" => {
            if v["room"] == room {
                *who = (names(&v["members"]), names(&v["online"]));
            }
            let hist = v["history"].as_array().cloned().unwrap_or_default();
            let r = v["room"].as_str().unwrap_or("").to_string();
            let mut out = vec![format!(
                "* joined {} ({} online)",
                term::safe(&r),
                names(&v["online"]).len()
            )];
            for m in hist {
                let id = m["id"].as_i64().unwrap_or(0);
                let e = last_ids.entry(r.clone()).or_insert(0);
                if id > *e {
                    *e = id;
                    out.push(format_message(&m));
                }
            }
            last_ids.entry(r).or_insert(0);
            Some(out.join("\n"))
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
        "typing" if v["active"] == true && v["user"] != me => {
            Some(format!("* {} is typing in {}…", s("user"), s("room")))
        }
        "presence" => Some(format!(
            "* {} is {} in {}",
            s("user"),
            s("status"),
            s("room")
        )),
        "invited" => Some(format!(
            "* {} added {} to {}",
            s("by"),
            s("user"),
            s("room")
        )),
        "error" if v["ref"] != "typing" => Some(format!("! {} ({})", s("message"), s("code"))),
        _ => None,
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
        let mut ids = Default::default();
        let mut who = Default::default();
        let events = [
            json!({"type": "message", "id": 7, "ts": "2026-11-24T09:05:00.000Z", "room": "r", "user": "b", "text": evil}),
            json!({"type": "edited", "id": 7, "room": "r", "text": evil}),
            json!({"type": "typing", "active": true, "room": evil, "user": evil}),
            json!({"type": "presence", "status": evil, "room": evil, "user": evil}),
            json!({"type": "invited", "by": evil, "room": evil, "user": evil}),
            json!({"type": "left", "room": evil}),
            json!({"type": "error", "code": evil, "message": evil}),
            json!({"type": "joined", "room": evil, "members": [evil], "online": [evil], "history": [m]}),
            json!({"type": "history", "room": evil, "messages": [m]}),
        ];
        for v in events {
            let out = describe(&v, "alice", "general", &mut ids, &mut who).unwrap();
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
        describe(&v, "alice", "general", &mut ids, &mut who).unwrap();
        assert!(
            !who.0[0].contains(['\x1b', '\x07', '\r', '\n']),
            "{:?}",
            who.0
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
        let mut ids = Default::default();
        let mut who = Default::default();
        let v = json!({"type": "message", "id": 3, "ts": "2026-11-24T09:05:00.000Z", "room": "general", "user": "bob", "text": "hi"});
        assert!(describe(&v, "alice", "general", &mut ids, &mut who).is_some());
        assert!(
            describe(&v, "alice", "general", &mut ids, &mut who).is_none(),
            "shown once"
        );
    }
}
