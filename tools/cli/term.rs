//! The terminal: passwords without echo, and for `chat` a tiny line editor in raw mode so
//! that incoming lines are printed above the line being typed instead of through it.

use std::io::{BufRead, Read, Write};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// Text from the server (or anyone else) made safe to print on a terminal, on one line:
/// every control character becomes visible instead of acting. C0 (ESC, BEL, CR, LF, …)
/// is shown in caret notation (`^[`, `^G`, `^M`, `^J`), DEL as `^?`, C1 (U+0080–U+009F,
/// which many terminals obey as CSI, OSC and the like) as U+FFFD, and a tab as a space.
/// So a message cannot set the window title, write the clipboard (OSC 52), move the
/// cursor, or fake a line with `\r`.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push(' '),
            '\0'..='\x1f' => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            '\x7f' => out.push_str("^?"),
            '\u{80}'..='\u{9f}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Like `safe`, but keeps line breaks (`\n`, or `\r\n`) of a text shown over several
/// lines, each continuation line starting with `indent`.
pub fn safe_lines(s: &str, indent: &str) -> String {
    let mut lines: Vec<&str> = s.split('\n').collect();
    let last = lines.len() - 1;
    for l in &mut lines[..last] {
        *l = l.strip_suffix('\r').unwrap_or(l);
    }
    let lines: Vec<String> = lines.into_iter().map(safe).collect();
    lines.join(&format!("\n{indent}"))
}

/// A JSON document (as serde_json writes it) safe for a terminal: serde_json escapes
/// C0 inside strings but writes DEL and C1 as they are, so those become `\u00XX`
/// escapes too. The JSON means the same.
pub fn safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub enum Input {
    Line(String),
    /// A key was typed (for typing notices; sent at most every few seconds).
    Typing,
    Eof,
}

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Reads a password: without echo from a terminal, or one line from a pipe.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    if !is_tty(0) {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        return Ok(s.trim_end_matches(['\r', '\n']).to_string());
    }
    eprint!("{prompt}");
    let saved = set_echo(false)?;
    let mut s = String::new();
    let r = std::io::stdin().lock().read_line(&mut s);
    restore(&saved);
    eprintln!();
    r?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn set_echo(on: bool) -> std::io::Result<libc::termios> {
    // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = t;
        if on {
            t.c_lflag |= libc::ECHO;
        } else {
            t.c_lflag &= !libc::ECHO;
        }
        libc::tcsetattr(0, libc::TCSANOW, &t);
        Ok(saved)
    }
}

fn restore(t: &libc::termios) {
    // SAFETY: restores settings read by tcgetattr.
    unsafe {
        libc::tcsetattr(0, libc::TCSANOW, t);
    }
}

/// The line being typed, shared between the input thread and the printer.
static EDIT: Mutex<String> = Mutex::new(String::new());
const PROMPT: &str = "> ";

/// Starts reading stdin on a thread. Returns whether it is an interactive terminal.
pub fn spawn_input(tx: Sender<Input>) -> bool {
    let interactive = is_tty(0) && is_tty(1);
    if !interactive {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Input::Line(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(Input::Eof);
        });
        return false;
    }
    let saved = raw_mode();
    let saved = Arc::new(saved);
    let restore_on_exit = Arc::clone(&saved);
    std::thread::spawn(move || {
        let mut last_typing = std::time::Instant::now() - std::time::Duration::from_secs(10);
        let mut byte = [0u8; 1];
        let mut pending: Vec<u8> = Vec::new();
        // Inside an escape sequence (arrow keys and the like), which the editor ignores:
        // 1 after ESC, 2 inside `ESC [` until its final byte.
        let mut escape = 0u8;
        loop {
            if std::io::stdin().read(&mut byte).unwrap_or(0) == 0 {
                let _ = tx.send(Input::Eof);
                break;
            }
            let mut edit = EDIT.lock().unwrap();
            match (escape, byte[0]) {
                (0, 27) => {
                    escape = 1;
                    continue;
                }
                (1, b'[' | b'O') => {
                    escape = 2;
                    continue;
                }
                (1, _) => {
                    escape = 0;
                    continue;
                }
                (2, b) => {
                    if (0x40..=0x7e).contains(&b) {
                        escape = 0;
                    }
                    continue;
                }
                _ => {}
            }
            match byte[0] {
                b'\r' | b'\n' => {
                    let line = std::mem::take(&mut *edit);
                    pending.clear();
                    print!("\r\x1b[K{PROMPT}");
                    let _ = std::io::stdout().flush();
                    drop(edit);
                    if tx.send(Input::Line(line)).is_err() {
                        break;
                    }
                    continue;
                }
                3 | 4 => {
                    let _ = tx.send(Input::Eof);
                    break;
                }
                127 | 8 => {
                    edit.pop();
                }
                // Ctrl-U: clear the line; Ctrl-W: delete the last word.
                21 => edit.clear(),
                23 => {
                    let kept = edit.trim_end().rfind(' ').map_or(0, |i| i + 1);
                    edit.truncate(kept);
                }
                b if b >= 0x20 || b >= 0x80 => {
                    pending.push(b);
                    if let Ok(s) = std::str::from_utf8(&pending) {
                        // Pasted C1 controls would be echoed as they are: drop them.
                        edit.extend(s.chars().filter(|c| !c.is_control()));
                        pending.clear();
                    }
                    if last_typing.elapsed().as_secs() >= 3 {
                        last_typing = std::time::Instant::now();
                        let _ = tx.send(Input::Typing);
                    }
                }
                _ => {}
            }
            print!("\r\x1b[K{PROMPT}{edit}");
            let _ = std::io::stdout().flush();
        }
        restore(&restore_on_exit);
    });
    // Restore the terminal even if the process exits from the main thread.
    let keep = Arc::clone(&saved);
    SAVED.lock().unwrap().replace(*keep);
    true
}

static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

fn raw_mode() -> libc::termios {
    // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(0, &mut t);
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        saved
    }
}

/// How far an upload from the command line got, on standard error when it is a
/// terminal: `uploading big.bin (12 MiB)… 42%`, redrawn in place. Silent otherwise
/// (scripts read what was sent on standard output).
pub struct Progress {
    label: String,
    total: u64,
    percent: Option<u64>,
    tty: bool,
}

impl Progress {
    /// `label` is printed as it is: make it safe first.
    pub fn new(label: &str, total: u64) -> Progress {
        let tty = is_tty(2);
        if tty {
            eprint!("uploading {label}…");
        }
        Progress {
            label: label.to_string(),
            total: total.max(1),
            percent: None,
            tty,
        }
    }

    pub fn update(&mut self, sent: u64) {
        let p = sent.min(self.total) * 100 / self.total;
        if self.tty && self.percent != Some(p) {
            self.percent = Some(p);
            eprint!("\r\x1b[Kuploading {}… {p}%", self.label);
        }
    }

    pub fn done(&mut self) {
        if std::mem::take(&mut self.tty) {
            eprintln!();
        }
    }
}

/// Prints lines above the line being edited.
pub struct Screen {
    interactive: bool,
}

impl Screen {
    pub fn new(interactive: bool) -> Screen {
        if interactive {
            print!("{PROMPT}");
            let _ = std::io::stdout().flush();
        }
        Screen { interactive }
    }

    /// Prints `text` (lines separated by `\n`); control characters in it are shown, not
    /// obeyed, whatever the caller did (see `safe`).
    pub fn print(&mut self, text: &str) {
        let text = safe_lines(text, "");
        let mut out = std::io::stdout().lock();
        if self.interactive {
            let edit = EDIT.lock().unwrap();
            let _ = write!(
                out,
                "\r\x1b[K{}\r\n{PROMPT}{edit}",
                text.replace('\n', "\r\n")
            );
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Some(t) = SAVED.lock().unwrap().take() {
            restore(&t);
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            safe("a\x1b]0;pwned\x07b\rc\x7fd\u{9b}31me\tf\ng"),
            "a^[]0;pwned^Gb^Mc^?d\u{fffd}31me f^Jg"
        );
        assert_eq!(safe("héllo ✓ 😀"), "héllo ✓ 😀");
        assert_eq!(
            safe_lines("one\r\ntwo\x1b[2J\nthree\r", "  "),
            "one\n  two^[[2J\n  three^M"
        );
        let v = serde_json::json!({"text": "a\x1b\x07\r\x7f\u{85}\u{9b}b"});
        let j = safe_json(&v.to_string());
        assert!(!j.chars().any(|c| c.is_control()), "{j}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&j).unwrap(), v);
    }
}
