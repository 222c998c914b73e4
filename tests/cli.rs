//! The terminal client against the real server, driven through pipes.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Cli {
    server: String,
    config: TempDir,
}

impl Cli {
    fn new(s: &TestServer) -> Cli {
        Cli {
            server: format!("http://{}", s.addr),
            config: TempDir::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chatterbox-cli"));
        c.args(args)
            .env("CHATTERBOX_SERVER", &self.server)
            .env("CHATTERBOX_CONFIG_DIR", &self.config.0)
            // Times and days as in UTC, whatever the machine's zone.
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str], input: &str) -> Output {
        let mut child = self.cmd(args).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A child's output, read byte for byte by a thread: to wait on, then to inspect whole.
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    fn of(mut from: impl Read + Send + 'static) -> Collected {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Collected(buf)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }

    /// Waits until `needle` has appeared `times` times in all.
    fn wait_for_n(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.text().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "{needle:?} ({times}x) never appeared in {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, needle: &str) {
        self.wait_for_n(needle, 1)
    }
}

/// No byte that a terminal would obey: ESC, BEL, CR, DEL, and C1 (U+0080–U+009F, as
/// UTF-8). `\n` and printable text only.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (i, c) in text.char_indices() {
        assert!(
            c == '\n' || !c.is_control(),
            "{what}: control character {c:?} at byte {i} of {text:?}"
        );
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn register_login_send_tail_logout() {
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    let r = cli.run(&["register", "alice"], "password-alice\n");
    assert!(r.status.success(), "{r:?}");
    let r = cli.run(&["login", "alice"], "wrong-password\n");
    assert_eq!(r.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&r.stderr).contains("wrong username or password"));
    let r = cli.run(&["login", "alice"], "password-alice\n");
    assert!(r.status.success(), "{r:?}");
    let mode = std::fs::metadata(cli.config.0.join("session.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // tail prints what arrives, one line each.
    let mut tail = cli.cmd(&["tail", "general"]).spawn().unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    std::thread::sleep(Duration::from_millis(300));
    let r = cli.run(&["send", "general"], "hello from a pipe\n");
    assert!(r.status.success(), "{r:?}");
    let id: i64 = out(&r).trim().parse().unwrap();
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.ends_with("general <alice> hello from a pipe"),
        "{line}"
    );
    assert!(line.starts_with('['), "{line}");
    tail.kill().unwrap();
    let _ = tail.wait();

    // The message is really stored.
    let bob = s.user("bob");
    let page = s
        .http("GET", "/rooms/general/messages", Some(&bob), None)
        .json();
    assert_eq!(page["messages"][0]["id"], id);

    // --since and --json for scripts.
    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0", "--json"])
        .spawn()
        .unwrap();
    let first = BufReader::new(tail.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    tail.kill().unwrap();
    let _ = tail.wait();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (v["id"].as_i64(), v["text"].as_str()),
        (Some(id), Some("hello from a pipe"))
    );

    // Errors have their exit codes.
    assert_eq!(cli.run(&["send", "nowhere"], "x").status.code(), Some(5));
    assert_eq!(cli.run(&["send", "general"], "   ").status.code(), Some(1));
    let r = cli.run(&["logout"], "");
    assert!(r.status.success());
    assert_eq!(cli.run(&["send", "general"], "x").status.code(), Some(3));
}

#[test]
fn chat_mode_commands_over_pipes() {
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    assert!(cli
        .run(&["register", "carol"], "password-carol\n")
        .status
        .success());
    assert!(cli
        .run(&["login", "carol"], "password-carol\n")
        .status
        .success());
    let dave = s.user("dave");
    let mut d = s.ws(&dave);
    let mut chat = cli.cmd(&["chat"]).spawn().unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let mut lines = BufReader::new(chat.stdout.take().unwrap()).lines();
    let mut wait_for = |needle: &str| loop {
        let l = lines.next().expect("chat output ended").unwrap();
        if l.contains(needle) {
            return l;
        }
    };
    wait_for("joined general");
    writeln!(stdin, "hello dave").unwrap();
    assert_eq!(d.recv_type("message")["text"], "hello dave");
    d.send(json!({"type": "send", "room": "general", "text": "hi carol"}));
    assert!(wait_for("<dave> hi carol").contains("["));
    writeln!(stdin, "/create plans private").unwrap();
    wait_for("joined plans");
    writeln!(stdin, "/invite plans dave").unwrap();
    assert_eq!(d.recv_type("invited")["room"], "plans");
    writeln!(stdin, "/dm dave psst").unwrap();
    assert_eq!(d.recv_type("message")["room"], "dm:carol:dave");
    writeln!(stdin, "/who").unwrap();
    wait_for("members: carol");
    writeln!(stdin, "/rooms").unwrap();
    assert!(wait_for("#plans ").contains("(private, joined)"));
    writeln!(stdin, "/search hello").unwrap();
    wait_for("1 result(s)");
    writeln!(stdin, "/bogus").unwrap();
    wait_for("unknown command");
    writeln!(stdin, "/quit").unwrap();
    assert!(chat.wait().unwrap().success());
}

#[test]
fn a_server_that_is_down_is_reported_with_exit_code_2() {
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    assert!(cli
        .run(&["register", "erin"], "password-erin\n")
        .status
        .success());
    assert!(cli
        .run(&["login", "erin"], "password-erin\n")
        .status
        .success());
    drop(s);
    let r = cli.run(&["send", "general"], "anyone?");
    assert_eq!(r.status.code(), Some(2), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot reach"));
}

/// Interactive mode on a real pseudo-terminal: raw mode, the prompt redrawn under an
/// incoming message with the half-typed line intact, Ctrl-U and /quit.
#[test]
fn chat_on_a_pseudo_terminal_keeps_the_line_being_typed() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::{Arc, Mutex};
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    assert!(cli
        .run(&["register", "alice"], "password-alice\n")
        .status
        .success());
    assert!(cli
        .run(&["login", "alice"], "password-alice\n")
        .status
        .success());

    let (mut master_fd, mut slave_fd) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut master_fd,
            &mut slave_fd,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    let master = unsafe { std::fs::File::from_raw_fd(master_fd) };
    let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatterbox-cli"))
        .args(["chat", "general"])
        .env("CHATTERBOX_SERVER", &cli.server)
        .env("CHATTERBOX_CONFIG_DIR", &cli.config.0)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = master.try_clone().unwrap();
    let sink = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = screen.lock().unwrap().find(needle) {
                return at;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} never appeared in {:?}",
                screen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut keys = master;
    wait_for("joined general");
    keys.write_all(b"half typed").unwrap();
    wait_for("> half typed");
    let r = cli.run(&["send", "general"], "from a pipe\n");
    assert!(r.status.success(), "{r:?}");
    let at = wait_for("general <alice> from a pipe");
    // After the incoming line the prompt comes back with what was being typed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !screen.lock().unwrap()[at..].contains("> half typed") {
        assert!(std::time::Instant::now() < deadline, "prompt not redrawn");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-U throws the half line away; the next line is a command, not a message.
    keys.write_all(b"\x15/quit\r").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "chat did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!screen.lock().unwrap().contains("<alice> half typed"));
}

/// `tail` survives a server restart: it says so on stderr, reconnects, and catches up
/// with `since` on what was sent while it was away, without repeating what it printed.
#[test]
fn tail_reconnects_and_catches_up_after_a_restart() {
    let db = TempDir::new();
    let db_path = db.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db_path, &[]);
    let addr = s.addr.to_string();
    let cli = Cli::new(&s);
    assert!(cli
        .run(&["register", "alice"], "password-alice\n")
        .status
        .success());
    assert!(cli
        .run(&["login", "alice"], "password-alice\n")
        .status
        .success());
    assert!(cli.run(&["send", "general"], "before\n").status.success());
    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().ends_with("<alice> before"));
    s.terminate();
    let s2 = TestServer::start_with_db(&db_path, &["--listen", &addr]);
    assert_eq!(s2.addr.to_string(), addr);
    assert!(cli
        .run(&["send", "general"], "while away\n")
        .status
        .success());
    let line = lines.next().unwrap().unwrap();
    assert!(line.ends_with("<alice> while away"), "{line}");
    let _ = tail.kill();
    let o = tail.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("reconnecting"));
}

/// Message text is shown, never obeyed: a window title (OSC 0), the clipboard (OSC 52),
/// CSI as a C1 character, DEL and a bare CR that would overwrite the sender's name all
/// reach the terminal as visible characters, in every output path of chat and tail.
#[test]
fn hostile_text_never_reaches_the_terminal_raw() {
    const EVIL: &str = "title \x1b]0;pwned\x07 clip \x1b]52;c;cHduZWQ=\x07 csi \u{9b}2J del \x7f\r<mallory> fake\nsecond line";
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    assert!(cli
        .run(&["register", "alice"], "password-alice\n")
        .status
        .success());
    assert!(cli
        .run(&["login", "alice"], "password-alice\n")
        .status
        .success());
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    b.send(json!({"type": "send", "room": "general", "text": EVIL}));
    let first = b.recv_type("message");
    assert_eq!(first["text"], EVIL, "stored as sent");

    let mut chat = cli.cmd(&["chat"]).spawn().unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let screen = Collected::of(chat.stdout.take().unwrap());
    let errors = Collected::of(chat.stderr.take().unwrap());
    // The join's history, a live message, an edit, history, search, who.
    screen.wait_for("second line");
    b.send(json!({"type": "send", "room": "general", "text": format!("live {EVIL}")}));
    screen.wait_for("live title");
    b.send(json!({"type": "edit", "id": first["id"], "text": format!("edited {EVIL}")}));
    screen.wait_for("edited title");
    writeln!(stdin, "/history 5").unwrap();
    // Only /history shows the edited text as a message line (dated).
    screen.wait_for(&format!("] #{} general <bob> edited title", first["id"]));
    writeln!(stdin, "/search mallory").unwrap();
    screen.wait_for("result(s)");
    writeln!(stdin, "/who").unwrap();
    screen.wait_for("members: ");
    writeln!(stdin, "/quit").unwrap();
    assert!(chat.wait().unwrap().success());
    let shown = screen.text();
    assert_inert("chat", shown.as_bytes());
    assert_inert("chat's stderr", errors.text().as_bytes());
    // Visible instead: caret notation, U+FFFD for C1, and the second line indented.
    assert!(shown.contains("<bob> title ^[]0;pwned^G clip ^[]52;c;cHduZWQ=^G csi \u{fffd}2J del ^?^M<mallory> fake\n    second line"), "{shown}");

    // tail, plain: one line per message, continuation lines indented.
    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0"])
        .spawn()
        .unwrap();
    let lines = Collected::of(tail.stdout.take().unwrap());
    lines.wait_for("live title");
    lines.wait_for_n("second line", 2);
    tail.kill().unwrap();
    let _ = tail.wait();
    assert_inert("tail", lines.text().as_bytes());
    assert!(lines.text().contains("^M<mallory> fake\n    second line"));

    // tail --json: the text comes through exactly, escaped by JSON only.
    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0", "--json"])
        .spawn()
        .unwrap();
    let json_out = Collected::of(tail.stdout.take().unwrap());
    json_out.wait_for_n("\n", 2);
    tail.kill().unwrap();
    let _ = tail.wait();
    assert_inert("tail --json", json_out.text().as_bytes());
    let texts: Vec<String> = json_out
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts, [format!("edited {EVIL}"), format!("live {EVIL}")]);
}

/// A CLI user logged in as `name` (password `PASSWORD`), and that user's token.
fn cli_user(s: &TestServer, name: &str) -> (Cli, String) {
    let cli = Cli::new(s);
    let pw = format!("{PASSWORD}\n");
    assert!(cli.run(&["register", name], &pw).status.success());
    assert!(cli.run(&["login", name], &pw).status.success());
    let token = s.login(name);
    (cli, token)
}

/// An invitation is offered (pending from `hello` at connect, and live), listed by
/// /invites, accepted with /accept (the room opens, its messages arrive, typed lines go
/// there) or turned down with /decline (the server forgets it).
#[test]
fn chat_offers_invitations_to_accept_or_decline() {
    let s = TestServer::start(&[]);
    let (cli, bob) = cli_user(&s, "bob");
    let alice = s.user("alice");
    let mut a = s.ws(&alice);
    let r = a.request(
        json!({"type": "create_room", "room": "secret", "private": true}),
        "c1",
    );
    assert_eq!(r["type"], "joined");
    let r = a.request(
        json!({"type": "invite", "room": "secret", "user": "bob"}),
        "i1",
    );
    assert_eq!(r["type"], "invited");

    let mut chat = cli.cmd(&["chat"]).spawn().unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let screen = Collected::of(chat.stdout.take().unwrap());
    // Waiting since before the connection: from hello.
    screen.wait_for("* alice invited you to #secret — /accept secret or /decline secret");
    screen.wait_for("joined general");
    // Arriving live.
    a.request(
        json!({"type": "create_room", "room": "plans", "private": true}),
        "c2",
    );
    a.request(
        json!({"type": "invite", "room": "plans", "user": "bob"}),
        "i2",
    );
    screen.wait_for("* alice invited you to #plans — /accept plans or /decline plans");
    writeln!(stdin, "/help").unwrap();
    screen.wait_for("/invites  /accept ROOM  /decline ROOM");
    writeln!(stdin, "/invites").unwrap();
    screen.wait_for_n("invited you to #secret", 2);
    screen.wait_for_n("invited you to #plans", 2);

    writeln!(stdin, "/accept secret").unwrap();
    screen.wait_for("joined secret");
    a.send(json!({"type": "send", "room": "secret", "text": "welcome, bob"}));
    screen.wait_for("secret <alice> welcome, bob");
    writeln!(stdin, "thanks alice").unwrap();
    loop {
        let m = a.recv_type("message");
        if m["user"] == "bob" {
            assert_eq!(
                (m["room"].as_str(), m["text"].as_str()),
                (Some("secret"), Some("thanks alice"))
            );
            break;
        }
    }

    writeln!(stdin, "/decline #plans").unwrap();
    screen.wait_for("* declined the invitation to #plans");
    let pending = s.http("GET", "/invitations", Some(&bob), None).json();
    assert_eq!(pending, json!([]));
    let rooms = s.http("GET", "/rooms", Some(&bob), None).json();
    let names: Vec<&str> = rooms
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"secret") && !names.contains(&"plans"),
        "{names:?}"
    );
    writeln!(stdin, "/invites").unwrap();
    screen.wait_for("* no pending invitations");
    writeln!(stdin, "/quit").unwrap();
    assert!(chat.wait().unwrap().success());
}

/// `send` past the rate limit waits as long as the server asks and tries again.
#[test]
fn send_waits_out_the_rate_limit() {
    let s = TestServer::start(&["--msg-rate", "0.5", "--msg-burst", "1"]);
    let (cli, alice) = cli_user(&s, "alice");
    assert!(cli.run(&["send", "general"], "first\n").status.success());
    let started = Instant::now();
    let r = cli.run(&["send", "general"], "second\n");
    assert!(r.status.success(), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for its turn"
    );
    let texts: Vec<String> = s
        .all_messages(&alice, "general")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["first", "second"], "each stored once");
}

/// A catch-up too big for one `joined` (`complete: false`) goes on with `history` +
/// `after` until nothing is missing: when `joined` held the oldest part (over the
/// reply's byte budget) and when it held the newest (the server's memory of the room
/// no longer reached back to `since`). Every message once, in order.
#[test]
fn tail_pages_an_incomplete_catch_up_to_the_end() {
    let s = TestServer::start(UNBUDGETED);
    let (cli, _) = cli_user(&s, "carol");
    let dave = s.user("dave");
    let mut d = s.ws(&dave);
    let mut fill = |room: &str, n: usize, len: usize| -> Vec<i64> {
        d.request(json!({"type": "join", "room": room}), "j");
        for i in 0..n {
            d.send(json!({"type": "send", "room": room, "text": format!("{i:05} {}", "x".repeat(len)), "ref": format!("s{i}")}));
        }
        let mut ids = Vec::new();
        while ids.len() < n {
            let m = d.recv_type("message");
            if m["room"] == room {
                ids.push(m["id"].as_i64().unwrap());
            }
        }
        ids
    };
    let big = fill("big", 90, 3990); // ~360 KiB: more than one reply holds
    let many = fill("many", 1150, 10); // more than the room's 1000 in memory
    for (room, mut ids) in [("big", big), ("many", many)] {
        // One `joined` does not hold it all.
        let j = d.request(json!({"type": "join", "room": room, "since": 0}), "since");
        assert_eq!(j["complete"], false, "{room}");
        let mut tail = cli
            .cmd(&["tail", room, "--since", "0", "--json"])
            .spawn()
            .unwrap();
        let out = Collected::of(tail.stdout.take().unwrap());
        out.wait_for_n("\n", ids.len());
        // A message sent after the catch-up comes next, once.
        let m = d.request(
            json!({"type": "send", "room": room, "text": "after"}),
            "late",
        );
        ids.push(m["id"].as_i64().unwrap());
        out.wait_for_n("\n", ids.len());
        std::thread::sleep(Duration::from_millis(200));
        tail.kill().unwrap();
        let _ = tail.wait();
        let got: Vec<i64> = out
            .text()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, ids, "{room}: every message once, in order");
    }
}

/// A `chat` over pipes: what it prints, and its stdin to type into.
struct PipedChat {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    screen: Collected,
    errors: Collected,
}

impl PipedChat {
    fn start(cli: &Cli, args: &[&str]) -> PipedChat {
        let mut child = cli.cmd(args).spawn().unwrap();
        let keys = child.stdin.take().unwrap();
        let screen = Collected::of(child.stdout.take().unwrap());
        let errors = Collected::of(child.stderr.take().unwrap());
        PipedChat {
            child,
            keys,
            screen,
            errors,
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.keys, "{line}").unwrap();
    }

    /// The number of times `needle` was printed.
    fn count(&self, needle: &str) -> usize {
        self.screen.text().matches(needle).count()
    }

    fn quit(mut self) -> String {
        self.type_line("/quit");
        assert!(self.child.wait().unwrap().success());
        self.screen.text()
    }
}

impl Drop for PipedChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `register` logs in too: the next command works without `login`.
#[test]
fn register_logs_in_too() {
    let s = TestServer::start(&[]);
    let cli = Cli::new(&s);
    let r = cli.run(&["register", "frank"], "password-frank\n");
    assert!(r.status.success(), "{r:?}");
    assert!(out(&r).contains("registered frank and logged in"), "{r:?}");
    let mode = std::fs::metadata(cli.config.0.join("session.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let r = cli.run(&["send", "general"], "no login needed\n");
    assert!(r.status.success(), "{r:?}");
    // A name that is taken is an error, and logs nobody in.
    let other = Cli::new(&s);
    let r = other.run(&["register", "frank"], "password-other\n");
    assert_eq!(r.status.code(), Some(6), "{r:?}");
    assert!(!other.config.0.join("session.json").exists());
}

/// The scripting case of issue 14: a shell loop of 80 `send`s at the server's default
/// limits (10/s, burst 20) stores all 80, once each, in order; so do three loops at
/// once (each `send` waits its turn as often as the server asks). `--no-retry` fails
/// fast with exit code 4 instead.
#[test]
fn eighty_sends_in_a_shell_loop_are_all_stored_at_default_limits() {
    let s = TestServer::start(&[]);
    let (cli, alice) = cli_user(&s, "alice");
    let script = |n: usize, tag: &str, flag: &str| {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                r#"for i in $(seq {n}); do echo "{tag}$i" | "$CLI" send general {flag} || echo "failed $?"; done"#
            ))
            .env("CLI", env!("CARGO_BIN_EXE_chatterbox-cli"))
            .env("CHATTERBOX_SERVER", &cli.server)
            .env("CHATTERBOX_CONFIG_DIR", &cli.config.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let started = Instant::now();
    let o = script(80, "m", "").output().unwrap();
    let took = started.elapsed();
    assert!(o.status.success() && !out(&o).contains("failed"), "{o:?}");
    let texts: Vec<String> = s
        .all_messages(&alice, "general")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1..=80).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want, "all 80 stored, once each, in order");
    // The budget really was in the way: 60 past the burst at 10/s.
    assert!(took >= Duration::from_secs(5), "took only {took:?}");
    eprintln!("80 sends took {took:?}");

    let loops: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|tag| script(30, tag, "").spawn().unwrap())
        .collect();
    for l in loops {
        let o = l.wait_with_output().unwrap();
        assert!(o.status.success() && !out(&o).contains("failed"), "{o:?}");
    }
    let all = s.all_messages(&alice, "general");
    assert_eq!(all.len(), 170);
    for tag in ["a", "b", "c"] {
        let mine: Vec<&str> = all
            .iter()
            .filter_map(|m| m["text"].as_str())
            .filter(|t| t.starts_with(tag))
            .collect();
        let want: Vec<String> = (1..=30).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(mine, want, "loop {tag}");
    }

    let o = script(30, "x", "--no-retry").output().unwrap();
    let failed = out(&o).matches("failed 4").count();
    assert!(failed > 0, "{o:?}");
    let stored = s.all_messages(&alice, "general").len() - 170;
    assert_eq!(stored + failed, 30, "each either stored or refused");
    assert!(String::from_utf8_lossy(&o.stderr).contains("rate_limited"));
}

/// The same conversation, dated: a line when the day changes, each message with its id
/// (`/edit ID` takes it as printed), and direct messages shown as `@name`.
#[test]
fn chat_shows_days_ids_and_conversations() {
    let db = TempDir::new();
    let db_path = db.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db_path, &[]);
    let addr = s.addr.to_string();
    let (cli, _) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let first = b.request(
        json!({"type": "send", "room": "general", "text": "new year"}),
        "1",
    );
    let second = b.request(
        json!({"type": "send", "room": "general", "text": "day two"}),
        "2",
    );
    s.terminate();
    // 2026-01-01T10:00Z and 2026-01-02T09:00Z (a Thursday and a Friday).
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    for (m, ts) in [
        (&first, 1_767_261_600_000_i64),
        (&second, 1_767_344_400_000),
    ] {
        conn.execute(
            "UPDATE messages SET ts = ?1 WHERE id = ?2",
            (ts, m["id"].as_i64().unwrap()),
        )
        .unwrap();
    }
    drop(conn);
    let s = TestServer::start_with_db(&db_path, &["--listen", &addr]);
    let mut b = s.ws(&bob);

    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    let (id1, id2) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    chat.screen.wait_for(&format!(
        "-- Thu 2026-01-01 --\n[10:00] #{id1} general <bob> new year\n-- Fri 2026-01-02 --\n[09:00] #{id2} general <bob> day two"
    ));
    // Today's first message opens today.
    chat.type_line("tpyo");
    let mine = b.recv_type("message");
    let id = mine["id"].as_i64().unwrap();
    let today = &mine["ts"].as_str().unwrap()[..10];
    chat.screen.wait_for(&format!(
        "{today} --\n[{}] #{id} general <alice> tpyo",
        &mine["ts"].as_str().unwrap()[11..16]
    ));
    // The id as printed, `#` and all.
    chat.type_line(&format!("/edit #{id} typo"));
    let e = b.recv_type("edited");
    assert_eq!(
        (e["id"].as_i64(), e["text"].as_str()),
        (Some(id), Some("typo"))
    );
    chat.screen
        .wait_for(&format!("* message #{id} in general edited: typo"));

    // A direct message from bob, and an answer from a conversation opened with /join @bob.
    b.send(json!({"type": "dm", "to": "alice", "text": "psst"}));
    chat.screen.wait_for("@bob <bob> psst");
    chat.type_line("/join @bob");
    chat.screen.wait_for("* joined @bob");
    chat.type_line("hi bob");
    loop {
        let m = b.recv_type("message");
        if m["user"] == "alice" {
            assert_eq!(
                (m["room"].as_str(), m["text"].as_str()),
                (Some("dm:alice:bob"), Some("hi bob"))
            );
            break;
        }
    }
    chat.screen.wait_for("@bob <alice> hi bob");
    let screen = chat.quit();
    assert!(!screen.contains("dm:"), "{screen}");
    assert_eq!(
        screen.matches("-- Thu 2026-01-01 --").count(),
        1,
        "{screen}"
    );
    assert_eq!(
        screen.matches(&format!("{today} --")).count(),
        1,
        "{screen}"
    );
}

/// What `chat` shows is marked seen: the read cursor reaches the last message shown,
/// cumulatively, with at most one `seen` a second per room (not one per message).
#[test]
fn chat_marks_what_it_showed_as_seen_at_most_once_a_second() {
    let s = TestServer::start(UNBUDGETED);
    let (cli, alice) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    let started = Instant::now();
    let mut last = 0;
    for i in 0..40 {
        last = b.request(
            json!({"type": "send", "room": "general", "text": format!("n{i}")}),
            "s",
        )["id"]
            .as_i64()
            .unwrap();
        std::thread::sleep(Duration::from_millis(25));
    }
    chat.screen.wait_for("<bob> n39");
    // Every `seen` alice's client sends is broadcast to bob: count them.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while seen.last() != Some(&last) {
        assert!(
            Instant::now() < deadline,
            "cursor stopped at {seen:?}, not {last}"
        );
        if let Some(v) = b.try_recv(Duration::from_millis(100)) {
            if v["type"] == "seen" && v["user"] == "alice" {
                seen.push(v["id"].as_i64().unwrap());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        (seen.len() as f64) <= secs + 1.0,
        "{} seen in {secs:.1} s: {seen:?}",
        seen.len()
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let rooms = s.http("GET", "/rooms", Some(&alice), None).json();
    assert_eq!(rooms[0]["name"], "general");
    assert_eq!(rooms[0]["unread"], 0, "{rooms}");
    chat.quit();
}

/// `/rooms` lists the rooms one may join, page after page, marking those one is in;
/// private rooms of others are not listed, conversations come apart.
#[test]
fn rooms_lists_public_rooms_to_join_over_many_pages() {
    let s = TestServer::start(&[
        "--action-rate",
        "100000",
        "--action-burst",
        "100000",
        "--max-rooms-owned",
        "1000",
    ]);
    let (cli, _) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    for i in 0..230 {
        let r = b.request(
            json!({"type": "create_room", "room": format!("r{i:03}"), "private": false}),
            "c",
        );
        assert_eq!(r["type"], "joined", "{r}");
    }
    b.request(
        json!({"type": "create_room", "room": "zsecret", "private": true}),
        "p",
    );
    b.send(json!({"type": "dm", "to": "alice", "text": "hi"}));
    b.recv_type("message");
    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    chat.type_line("/rooms");
    chat.screen.wait_for("conversations: @bob (1 unread)");
    let text = chat.screen.text();
    assert!(text.contains("231 room(s):"), "{text}");
    assert!(text.contains("  #general  2 members, "), "{text}");
    assert!(text.contains("(joined)"), "{text}");
    assert!(
        text.contains("  #r229  1 members, 1 online — /join r229"),
        "{text}"
    );
    assert!(!text.contains("zsecret"), "{text}");
    chat.type_line("/rooms r22");
    chat.screen.wait_for("10 room(s):");
    chat.type_line("/join r229");
    chat.screen.wait_for("* joined r229");
    chat.quit();
}

/// Presence is shown for the room being looked at only, and only when someone really
/// comes or goes (a second tab is no news).
#[test]
fn presence_only_for_the_room_looked_at_and_real_changes() {
    let s = TestServer::start(&[]);
    let (cli, _) = cli_user(&s, "alice");
    let carol = s.user("carol");
    let mut c = s.ws(&carol);
    c.request(
        json!({"type": "create_room", "room": "side", "private": false}),
        "c",
    );
    drop(c);
    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    chat.type_line("/join side");
    chat.screen.wait_for("joined side");
    chat.type_line("/join general");
    chat.screen.wait_for_n("joined general", 2);
    std::thread::sleep(Duration::from_millis(1200)); // carol's last presence is old news
    let c1 = s.ws(&carol);
    chat.screen.wait_for("* carol is online in general");
    let c2 = s.ws(&carol);
    std::thread::sleep(Duration::from_millis(1500));
    drop(c1);
    drop(c2);
    chat.screen.wait_for("* carol is offline in general");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(chat.count("carol is online"), 1, "{}", chat.screen.text());
    assert_eq!(chat.count("carol is offline"), 1, "{}", chat.screen.text());
    assert_eq!(chat.count("in side"), 0, "{}", chat.screen.text());
    chat.quit();
}

/// `chat` across a server restart: the server's 4002 makes it reconnect (after a short,
/// jittered wait), and what was sent meanwhile, in the room looked at and in another of
/// the user's rooms, appears exactly once, in order, followed by live messages.
#[test]
fn chat_reconnects_after_a_restart_and_shows_each_message_once() {
    let db = TempDir::new();
    let db_path = db.0.join("chat.db");
    let mut s = TestServer::start_with_db(&db_path, &[]);
    let addr = s.addr.to_string();
    let (cli, alice) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    b.request(
        json!({"type": "create_room", "room": "side", "private": false}),
        "c",
    );
    s.ws(&alice)
        .request(json!({"type": "join", "room": "side"}), "j");
    b.request(
        json!({"type": "send", "room": "side", "text": "side-0"}),
        "s",
    );

    let chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    b.request(
        json!({"type": "send", "room": "general", "text": "before"}),
        "s",
    );
    b.request(
        json!({"type": "send", "room": "side", "text": "side-1"}),
        "s",
    );
    chat.screen.wait_for("<bob> side-1");
    s.terminate();
    chat.screen
        .wait_for("the server is restarting (4002); reconnecting");
    // Meanwhile, on the same database behind another port (the client cannot reach it:
    // these are surely missed), bob goes on talking in both rooms.
    let mut elsewhere = TestServer::start_with_db(&db_path, &[]);
    let mut b = elsewhere.ws(&bob);
    for i in 0..3 {
        b.request(
            json!({"type": "send", "room": "general", "text": format!("during-{i}")}),
            "s",
        );
    }
    b.request(
        json!({"type": "send", "room": "side", "text": "side-2"}),
        "s",
    );
    drop(b);
    elsewhere.terminate();
    let s2 = TestServer::start_with_db(&db_path, &["--listen", &addr]);
    // And at once on the usual port: seen live or in the catch-up, either way once.
    let mut b = s2.ws(&bob);
    b.request(
        json!({"type": "send", "room": "general", "text": "racing"}),
        "s",
    );
    chat.screen.wait_for("reconnected; catching up");
    chat.screen.wait_for("<bob> side-2");
    chat.screen.wait_for("<bob> during-2");
    b.request(
        json!({"type": "send", "room": "general", "text": "after"}),
        "s",
    );
    chat.screen.wait_for("<bob> after");
    std::thread::sleep(Duration::from_millis(300));
    let screen = chat.quit();
    let shown: Vec<&str> = screen
        .lines()
        .filter_map(|l| l.split("<bob> ").nth(1))
        .collect();
    for t in [
        "before", "side-1", "during-0", "during-1", "during-2", "side-2", "after",
    ] {
        assert_eq!(
            shown.iter().filter(|x| **x == t).count(),
            1,
            "{t} once in {screen}"
        );
    }
    let pos = |t: &str| shown.iter().position(|x| *x == t).unwrap();
    assert!(pos("before") < pos("during-0") && pos("during-0") < pos("during-1"));
    assert!(pos("during-2") < pos("racing") && pos("racing") < pos("after"));
    assert!(pos("side-1") < pos("side-2"));
    assert!(
        !shown.contains(&"side-0"),
        "older than the session: {screen}"
    );
    let _ = alice;
}

/// A revoked session (4001) ends `chat` with exit code 3 and says so; it does not try
/// to reconnect.
#[test]
fn chat_stops_when_its_session_is_revoked() {
    let s = TestServer::start(&[]);
    let (cli, _) = cli_user(&s, "alice");
    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    // Another terminal logs out: the same token, revoked.
    assert!(cli.run(&["logout"], "").status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = chat.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "chat did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
    // The reader thread may still be taking the last of stderr after the exit.
    chat.errors
        .wait_for("revoked or expired (4001); log in again");
    assert!(!chat.screen.text().contains("reconnecting"));
}

/// The account from the terminal: sessions, export, a password change that signs the
/// other sessions out, and logging out everywhere.
#[test]
fn account_commands_sessions_export_password_logout_all() {
    let s = TestServer::start(&[]);
    let (cli, other_token) = cli_user(&s, "gina");
    assert!(cli
        .run(&["send", "general"], "mine to keep\n")
        .status
        .success());
    let r = cli.run(&["sessions"], "");
    assert!(r.status.success(), "{r:?}");
    let listed = out(&r);
    assert_eq!(
        listed.lines().count(),
        3,
        "register, login, and the test's own: {listed}"
    );
    assert_eq!(listed.matches("(this one)").count(), 1, "{listed}");
    assert!(!listed.contains(&other_token), "never a token");
    let r = cli.run(&["export"], "");
    assert!(r.status.success(), "{r:?}");
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON document");
    assert_eq!(doc["messages"][0]["text"], "mine to keep");
    let r = cli.run(&["password"], "wrong-password\nnew-password-1\n");
    assert_eq!(r.status.code(), Some(3), "{r:?}");
    let r = cli.run(&["password"], &format!("{PASSWORD}\nnew-password-1\n"));
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        s.http("GET", "/rooms", Some(&other_token), None).status,
        401
    );
    assert!(cli
        .run(&["send", "general"], "still signed in here\n")
        .status
        .success());
    let r = cli.run(&["logout", "--all"], "");
    assert!(r.status.success(), "{r:?}");
    let r = cli.run(&["send", "general"], "after\n");
    assert_eq!(r.status.code(), Some(3), "{r:?}");
}

/// Lines pasted into `chat` faster than the budget (10/s, burst 20) are all stored, once
/// each and in order: the chat outbox waits out each refusal with the same client_id.
#[test]
fn chat_stores_every_line_pasted_faster_than_the_budget() {
    let s = TestServer::start(&[]);
    let (cli, token) = cli_user(&s, "hana");
    let mut chat = cli.cmd(&["chat"]).spawn().unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let mut lines = BufReader::new(chat.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("chat output ended").unwrap();
        if l.contains("joined general") {
            break;
        }
    }
    let pasted: String = (0..30).map(|i| format!("pasted {i}\n")).collect();
    stdin.write_all(pasted.as_bytes()).unwrap();
    drop(stdin); // end of input: chat leaves once the outbox is stored
    assert!(chat.wait().unwrap().success());
    let texts: Vec<String> = s
        .all_messages(&token, "general")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..30).map(|i| format!("pasted {i}")).collect();
    assert_eq!(texts, want);
}

/// `react ID EMOJI` for scripts: the room hears `reacted`, the count is printed, `--off`
/// takes it back; `tail` shows a message's reactions after its line, the reader's own
/// marked; `reactors` lists who. Refusals have clear words and their exit codes.
#[test]
fn react_from_scripts_shows_in_tail_and_is_taken_back_with_off() {
    let s = TestServer::start(&[]);
    let (cli, _) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let m = b.request(
        json!({"type": "send", "room": "general", "text": "ship it"}),
        "s",
    );
    let id = m["id"].as_i64().unwrap();
    let r = b.request(json!({"type": "react", "id": id, "emoji": "🎉"}), "r");
    assert_eq!(r["count"], 1, "{r}");

    // `#42` as chat shows it, or `42`.
    let r = cli.run(&["react", &format!("#{id}"), "👍"], "");
    assert!(r.status.success(), "{r:?}");
    assert_eq!(out(&r), "1\n");
    let v = b.recv_type("reacted");
    assert_eq!(
        (
            v["id"].as_i64(),
            v["emoji"].as_str(),
            v["user"].as_str(),
            v["on"].as_bool(),
            v["count"].as_i64()
        ),
        (Some(id), Some("👍"), Some("alice"), Some(true), Some(1))
    );

    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0"])
        .spawn()
        .unwrap();
    let lines = Collected::of(tail.stdout.take().unwrap());
    // Equal counts in emoji order; mine marked with `*`.
    lines.wait_for("<bob> ship it  [🎉 1 👍*1]\n");
    tail.kill().unwrap();
    let _ = tail.wait();

    let r = cli.run(&["reactors", &id.to_string(), "👍"], "");
    assert!(r.status.success(), "{r:?}");
    assert_eq!(out(&r), "alice\n");

    let r = cli.run(&["react", &id.to_string(), "👍", "--off"], "");
    assert!(r.status.success(), "{r:?}");
    assert_eq!(out(&r), "0\n");
    let v = b.recv_type("reacted");
    assert_eq!(
        (v["user"].as_str(), v["on"].as_bool(), v["count"].as_i64()),
        (Some("alice"), Some(false), Some(0))
    );
    let page = s
        .http("GET", "/rooms/general/messages", Some(&bob), None)
        .json();
    assert_eq!(page["messages"][0]["reactions"], json!({"🎉": 1}));
    let mut tail = cli
        .cmd(&["tail", "general", "--since", "0"])
        .spawn()
        .unwrap();
    let lines = Collected::of(tail.stdout.take().unwrap());
    lines.wait_for("<bob> ship it  [🎉 1]\n");
    tail.kill().unwrap();
    let _ = tail.wait();

    // Not an emoji: the server's words, and exit code 6; nothing stored.
    let r = cli.run(&["react", &id.to_string(), "yes"], "");
    assert_eq!(r.status.code(), Some(6), "{r:?}");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("emoji must be a single emoji") && err.contains("(bad_request)"),
        "{err}"
    );
    assert!(out(&r).is_empty(), "{r:?}");
    // No such message, or not a member of its room: 5. Not an id: 1 (usage).
    let r = cli.run(&["react", "999999", "👍"], "");
    assert_eq!(r.status.code(), Some(5), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("no_such_message"));
    b.request(
        json!({"type": "create_room", "room": "bobs", "private": true}),
        "c",
    );
    let secret = b.request(
        json!({"type": "send", "room": "bobs", "text": "mine"}),
        "s2",
    );
    let r = cli.run(&["react", &secret["id"].to_string(), "👍"], "");
    assert_eq!(r.status.code(), Some(5), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("forbidden"));
    assert_eq!(cli.run(&["react", "abc", "👍"], "").status.code(), Some(1));
    assert_eq!(
        cli.run(&["react", &id.to_string(), "👍", "--of"], "")
            .status
            .code(),
        Some(1)
    );
    let page = s
        .http("GET", "/rooms/general/messages", Some(&bob), None)
        .json();
    assert_eq!(page["messages"][0]["reactions"], json!({"🎉": 1}));
}

/// In `chat`: a message's reactions after its line (the joined history, `/history`,
/// `/search`), reactions as they come, `/react`, `/unreact`, `/reactors`, and a
/// refused reaction printed like any refusal.
#[test]
fn chat_reacts_and_shows_reactions() {
    let s = TestServer::start(&[]);
    let (cli, alice) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let m = b.request(
        json!({"type": "send", "room": "general", "text": "ship it"}),
        "s",
    );
    let id = m["id"].as_i64().unwrap();
    b.request(json!({"type": "react", "id": id, "emoji": "🎉"}), "r1");
    s.ws(&alice)
        .request(json!({"type": "react", "id": id, "emoji": "👍"}), "r2");

    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen
        .wait_for(&format!("#{id} general <bob> ship it  [🎉 1 👍*1]\n"));
    chat.screen.wait_for("joined general");
    chat.type_line(&format!("/react #{id} 🚀"));
    chat.screen
        .wait_for(&format!("* alice reacted 🚀 to #{id} in general (now 1)"));
    // (alice's 👍 from before chat came to bob first.)
    let v = loop {
        let v = b.recv_type("reacted");
        if v["emoji"] != "👍" {
            break v;
        }
    };
    assert_eq!(
        (v["emoji"].as_str(), v["user"].as_str(), v["on"].as_bool()),
        (Some("🚀"), Some("alice"), Some(true))
    );
    b.send(json!({"type": "react", "id": id, "emoji": "👍"}));
    chat.screen
        .wait_for(&format!("* bob reacted 👍 to #{id} in general (now 2)"));
    chat.type_line(&format!("/reactors {id} 👍"));
    chat.screen
        .wait_for(&format!("* 👍 on #{id} in general: alice, bob"));
    chat.type_line(&format!("/unreact {id} 🚀"));
    chat.screen
        .wait_for(&format!("* alice took back 🚀 on #{id} in general (now 0)"));
    chat.type_line(&format!("/react {id} nope"));
    chat.screen
        .wait_for("! emoji must be a single emoji of at most 32 bytes (bad_request)");
    chat.type_line(&format!("/reactors {id} 🚀"));
    chat.screen
        .wait_for(&format!("* no 🚀 on #{id} in general"));
    // Older messages and search results come with the reactions as they are now.
    chat.type_line("/history");
    chat.screen.wait_for("<bob> ship it  [👍*2 🎉 1]\n");
    chat.type_line("/search ship");
    chat.screen.wait_for("1 result(s)");
    chat.screen.wait_for_n("<bob> ship it  [👍*2 🎉 1]\n", 2);
    chat.type_line("/help");
    chat.screen
        .wait_for("/react ID EMOJI  /unreact ID EMOJI  /reactors ID EMOJI");
    let screen = chat.quit();
    assert!(!screen.contains("unknown command"), "{screen}");
}

/// `n` bytes that are not text (a simple generator), so a byte lost or changed shows.
fn binary(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// The server's file directory, next to its database.
fn files_on_server(s: &TestServer) -> usize {
    let mut name = s.db.file_name().unwrap().to_os_string();
    name.push(".files");
    std::fs::read_dir(s.db.with_file_name(name)).map_or(0, |d| d.count())
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `send ROOM --file` uploads from disk and attaches; the other user sees the files on
/// the message; `download` writes the same bytes under the server's name (or `-o`), and
/// never over an existing file unless `--force`.
#[test]
fn send_with_files_and_download_them() {
    let s = TestServer::start(&[]);
    let (alice, _) = cli_user(&s, "alice");
    let (bob_cli, bob) = cli_user(&s, "bob");
    let mut b = s.ws(&bob);
    let dir = TempDir::new();
    let notes = dir.0.join("notes.txt");
    std::fs::write(&notes, "hello files\n").unwrap();
    let big = dir.0.join("big data.bin");
    let big_bytes = binary(2_000_000, 7);
    std::fs::write(&big, &big_bytes).unwrap();
    let (notes_arg, big_arg) = (notes.to_str().unwrap(), big.to_str().unwrap());

    let r = alice.run(
        &["send", "general", "--file", notes_arg, "--file", big_arg],
        "two files",
    );
    assert!(r.status.success(), "{r:?}");
    let printed: Vec<String> = out(&r).lines().map(str::to_string).collect();
    assert_eq!(printed.len(), 3, "{printed:?}");
    let msg_id: i64 = printed[0].parse().unwrap();
    let m = b.recv_type("message");
    assert_eq!(
        (m["id"].as_i64(), m["text"].as_str()),
        (Some(msg_id), Some("two files"))
    );
    let files = m["attachments"].as_array().unwrap();
    let seen: Vec<(&str, u64, &str)> = files
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["size"].as_u64().unwrap(),
                f["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("notes.txt", 12, "text/plain"),
            ("big data.bin", 2_000_000, "application/octet-stream")
        ]
    );
    let (id1, id2) = (
        files[0]["id"].as_str().unwrap(),
        files[1]["id"].as_str().unwrap(),
    );
    assert_eq!(printed[1], format!("📎 notes.txt (12 B) [{id1}]"));
    assert_eq!(printed[2], format!("📎 big data.bin (1.9 MiB) [{id2}]"));

    // Downloads, by the other user: the server's name here by default, or -o.
    let here = TempDir::new();
    let get = |args: &[&str]| {
        let mut c = bob_cli.cmd(args);
        c.current_dir(&here.0);
        c.output().unwrap()
    };
    let r = get(&["download", id2]);
    assert!(r.status.success(), "{r:?}");
    assert!(out(&r).starts_with("saved big data.bin (1.9 MiB)"), "{r:?}");
    assert!(std::fs::read(here.0.join("big data.bin")).unwrap() == big_bytes);
    let r = get(&["download", id1, "-o", "copy.txt"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(here.0.join("copy.txt")).unwrap(),
        "hello files\n"
    );
    // Not over an existing file, unless --force.
    std::fs::write(here.0.join("notes.txt"), "mine").unwrap();
    let r = get(&["download", id1]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(
        err(&r).contains("notes.txt exists; not overwritten (--force does)"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(here.0.join("notes.txt")).unwrap(),
        "mine"
    );
    let r = get(&["download", id1, "--force"]);
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(here.0.join("notes.txt")).unwrap(),
        "hello files\n"
    );
    let left: Vec<_> = std::fs::read_dir(&here.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "no part file left behind: {left:?}");
    // Into a directory, under the server's name.
    let sub = here.0.join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(get(&["download", id1, "-o", "sub"]).status.success());
    assert_eq!(
        std::fs::read_to_string(sub.join("notes.txt")).unwrap(),
        "hello files\n"
    );

    // A file alone (no text), to a conversation; tail shows it on the message's line.
    let r = alice.run(&["send", "@bob", "--file", notes_arg], "");
    assert!(r.status.success(), "{r:?}");
    let m = b.recv_type("message");
    assert_eq!(
        (m["room"].as_str(), m["text"].as_str()),
        (Some("dm:alice:bob"), Some(""))
    );
    let id3 = m["attachments"][0]["id"].as_str().unwrap();
    assert_ne!(id3, id1, "uploaded again");
    let mut tail = bob_cli
        .cmd(&["tail", "general", "--since", "0"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    tail.kill().unwrap();
    let _ = tail.wait();
    assert!(first.ends_with(" general <alice> two files"), "{first}");
    assert_eq!(second, format!("    📎 notes.txt (12 B) [{id1}]"));

    // Refusals: a file that is not one, a stranger's download, no such file.
    let r = alice.run(&["send", "general", "--file", dir.0.to_str().unwrap()], "");
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(err(&r).contains("is not a file"), "{r:?}");
    let (carol, _) = cli_user(&s, "carol");
    let r = carol.run(&["download", id3], "");
    assert_eq!(r.status.code(), Some(5), "{r:?}");
    assert!(
        err(&r).contains("not yours, nor posted in a room you are in"),
        "{r:?}"
    );
    let r = carol.run(&["download", "00ff"], "");
    assert_eq!(r.status.code(), Some(5), "{r:?}");
    let r = carol.run(&["download", "../etc"], "");
    assert_eq!(r.status.code(), Some(1), "{r:?}");
}

/// Over the size limit: refused here before anything is sent (the default 10 MiB), or
/// by the server from the head (its own smaller limit); nothing is stored or sent.
#[test]
fn a_file_over_the_limit_is_refused_and_nothing_is_sent() {
    let s = TestServer::start(&["--max-file-bytes", "1000"]);
    let (alice, _) = cli_user(&s, "alice");
    let bob = s.user("bob");
    let mut b = s.ws(&bob);
    let dir = TempDir::new();
    let huge = dir.0.join("huge.iso");
    // Sparse: 10 MiB and a byte, costing no disk. (No stdin: the CLI refuses before
    // reading it.)
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(10 * 1024 * 1024 + 1)
        .unwrap();
    let r = alice.run(&["send", "general", "--file", huge.to_str().unwrap()], "");
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(
        err(&r).contains("huge.iso is too large: 10 MiB (10485761 bytes); the server takes at most 10 MiB (10485760 bytes)"),
        "{r:?}"
    );
    let over = dir.0.join("over.bin");
    std::fs::write(&over, binary(5000, 3)).unwrap();
    let started = Instant::now();
    let r = alice.run(&["send", "general", "--file", over.to_str().unwrap()], "");
    assert_eq!(r.status.code(), Some(6), "{r:?}");
    assert!(
        err(&r).contains("over.bin (4.9 KiB) is larger than the server takes"),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(b
        .try_recv(Duration::from_millis(500))
        .is_none_or(|v| v["type"] != "message"));
    assert_eq!(files_on_server(&s), 0);
    // Under the limit, the same server takes it.
    let small = dir.0.join("small.txt");
    std::fs::write(&small, "ok").unwrap();
    let r = alice.run(&["send", "general", "--file", small.to_str().unwrap()], "");
    assert!(r.status.success(), "{r:?}");
    assert_eq!(
        b.recv_type("message")["attachments"][0]["name"],
        "small.txt"
    );
}

/// `/upload PATH TEXT` in chat: the file goes up while the chat goes on, then the
/// message with it; the line shows the file; `/download` saves it.
#[test]
fn chat_uploads_and_downloads() {
    let s = TestServer::start(&[]);
    let (cli, _) = cli_user(&s, "carol");
    let dave = s.user("dave");
    let mut d = s.ws(&dave);
    let dir = TempDir::new();
    let path = dir.0.join("plan.md");
    let bytes = binary(1_500_000, 9);
    std::fs::write(&path, &bytes).unwrap();
    let mut chat = PipedChat::start(&cli, &["chat"]);
    chat.screen.wait_for("joined general");
    chat.type_line(&format!("/upload {} see the plan", path.display()));
    chat.screen.wait_for("* uploading plan.md (1.4 MiB)…");
    let m = d.recv_type("message");
    assert_eq!(m["text"], "see the plan");
    let id = m["attachments"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(m["attachments"][0]["type"], "text/markdown");
    chat.screen
        .wait_for(&format!("* uploaded 📎 plan.md (1.4 MiB) [{id}]"));
    chat.screen.wait_for(&format!(
        "<carol> see the plan\n    📎 plan.md (1.4 MiB) [{id}]\n"
    ));
    let screen = chat.screen.text();
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("* uploading plan.md (1.4 MiB)… ") && l.ends_with('%')),
        "progress: {screen}"
    );
    let copy = dir.0.join("copy.md");
    chat.type_line(&format!("/download {id} {}", copy.display()));
    chat.screen.wait_for("* saved ");
    assert!(std::fs::read(&copy).unwrap() == bytes);
    chat.type_line(&format!("/download {id} {}", copy.display()));
    chat.screen.wait_for("copy.md exists; not overwritten");
    chat.type_line("/upload /no/such/file");
    chat.screen.wait_for("! cannot read /no/such/file");
    chat.type_line("/help");
    chat.screen
        .wait_for("/upload PATH [TEXT]  /download FILE-ID [PATH]");
    let screen = chat.quit();
    assert!(!screen.contains("unknown command"), "{screen}");
}
