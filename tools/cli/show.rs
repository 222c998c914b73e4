//! How things from the server are written on the terminal: message lines, room labels
//! (a direct conversation is `@name`), local times and dates. Every part that came from
//! the server goes through `term::safe`, so nothing here can print a control character.

use crate::term;
use serde_json::Value;

/// A room as people say it: `#`-less name for a room, `@bob` for my conversation with
/// bob (`dm:alice:bob` when I am alice).
pub fn room_label(room: &str, me: &str) -> String {
    match room.strip_prefix("dm:").and_then(|r| r.split_once(':')) {
        Some((a, b)) => {
            let other = if a.eq_ignore_ascii_case(me) { b } else { a };
            format!("@{}", term::safe(other))
        }
        None => term::safe(room),
    }
}

/// The room of a direct conversation between two users (names lower-cased, sorted),
/// as the server names it.
pub fn dm_room(me: &str, other: &str) -> String {
    let (a, b) = (me.to_ascii_lowercase(), other.to_ascii_lowercase());
    if a <= b {
        format!("dm:{a}:{b}")
    } else {
        format!("dm:{b}:{a}")
    }
}

/// A moment as this machine's local time: (`2026-11-24`, `Tue`, `09:05`). None when
/// `ts` is not the server's RFC 3339 UTC form.
pub fn local_time(ts: &str) -> Option<(String, &'static str, String)> {
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if ts.as_bytes().get(10) != Some(&b'T') || !(1..=12).contains(&mo) {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    let t = secs as libc::time_t;
    extern "C" {
        // POSIX; the libc crate does not declare it.
        fn tzset();
    }
    // SAFETY: tzset reads TZ; localtime_r writes into the tm we own.
    let tm = unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    Some((
        format!(
            "{:04}-{:02}-{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday
        ),
        DAYS[tm.tm_wday.rem_euclid(7) as usize],
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min),
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The line that opens a day: `-- Tue 2026-11-24 --`.
pub fn day_line(ts: &str) -> Option<String> {
    let (date, weekday, _) = local_time(ts)?;
    Some(format!("-- {weekday} {date} --"))
}

/// `[HH:MM] room <user> text` (with `with_id`, `[HH:MM] #42 room <user> text`; with
/// `with_date`, the date before the time), then its reactions (`  [👍*3 🎉 1]`), every
/// part made safe to print; a multi-line message goes on over indented lines.
pub fn message_line(m: &Value, me: &str, with_id: bool, with_date: bool) -> String {
    let ts = m["ts"].as_str().unwrap_or("");
    let when = match local_time(ts) {
        Some((date, _, hhmm)) if with_date => format!("{date} {hhmm}"),
        Some((_, _, hhmm)) => hhmm,
        None => "--:--".into(),
    };
    let text = if m["deleted"] == true {
        "(deleted)".to_string()
    } else {
        term::safe_lines(m["text"].as_str().unwrap_or(""), "    ")
    };
    let edited = if m["edited"] == true { " (edited)" } else { "" };
    // Files: each on a line of its own under the text; the first on the message's own
    // line when there is no text.
    let files: Vec<String> = if m["deleted"] == true {
        Vec::new()
    } else {
        m["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(attachment)
            .collect()
    };
    let (text, files) = match files.split_first() {
        Some((first, rest)) if text.is_empty() => (first.clone(), rest),
        _ => (text, &files[..]),
    };
    let files: String = files.iter().map(|f| format!("\n    {f}")).collect();
    let id = if with_id {
        format!("#{} ", num(&m["id"]))
    } else {
        String::new()
    };
    format!(
        "[{when}] {id}{} <{}> {text}{edited}{}{files}",
        room_label(m["room"].as_str().unwrap_or(""), me),
        term::safe(m["user"].as_str().unwrap_or("")),
        reactions(m)
    )
}

/// A file of a message (or just uploaded): `📎 report.pdf (1.2 MiB) [FILE-ID]`, the id
/// being what `download` takes.
pub fn attachment(f: &Value) -> String {
    let size = f["size"]
        .as_u64()
        .map_or_else(|| "?".into(), crate::files::size);
    format!(
        "📎 {} ({size}) [{}]",
        term::safe(f["name"].as_str().unwrap_or("?")),
        term::safe(f["id"].as_str().unwrap_or("?"))
    )
}

/// A message's reactions after its line: `  [👍*3 🎉 1]`, each emoji with its count, the
/// reader's own (`mine`) marked with `*` in place of the space; the most given first
/// (ties in emoji order). Empty when there are none.
pub fn reactions(m: &Value) -> String {
    let mine: Vec<&str> = m["mine"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut counts: Vec<(&str, i64)> = m["reactions"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(e, n)| Some((e.as_str(), n.as_i64().filter(|n| *n > 0)?)))
        .collect();
    if counts.is_empty() {
        return String::new();
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = counts
        .iter()
        .map(|(e, n)| {
            let mark = if mine.contains(e) { '*' } else { ' ' };
            format!("{}{mark}{n}", term::safe(e))
        })
        .collect();
    format!("  [{}]", shown.join(" "))
}

/// A number from the server as text, or `?` when it is not one (nothing else from a
/// number field is printed).
pub fn num(v: &Value) -> String {
    v.as_i64().map_or_else(|| "?".into(), |n| n.to_string())
}

/// `* alice invited you to #secret — /accept secret or /decline secret`
pub fn invitation_line(room: &str, by: &str) -> String {
    let (room, by) = (term::safe(room), term::safe(by));
    format!("* {by} invited you to #{room} — /accept {room} or /decline {room}")
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// Times in these tests are read in UTC, whatever the machine's zone.
    pub fn utc() {
        std::env::set_var("TZ", "UTC");
    }

    #[test]
    fn times_are_local_and_days_are_named() {
        utc();
        assert_eq!(
            local_time("2026-11-24T09:05:59.123Z"),
            Some(("2026-11-24".into(), "Tue", "09:05".into()))
        );
        assert_eq!(
            local_time("2024-02-29T23:59:00.000Z"),
            Some(("2024-02-29".into(), "Thu", "23:59".into()))
        );
        assert_eq!(
            local_time("1970-01-01T00:00:00.000Z").unwrap().1,
            "Thu",
            "day 0"
        );
        assert_eq!(local_time("garbage"), None);
        assert_eq!(local_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(
            day_line("2026-11-25T00:00:00.000Z").unwrap(),
            "-- Wed 2026-11-25 --"
        );
    }

    #[test]
    fn conversations_are_shown_as_the_other_person() {
        assert_eq!(room_label("dm:alice:bob", "alice"), "@bob");
        assert_eq!(room_label("dm:alice:bob", "Bob"), "@alice");
        assert_eq!(room_label("general", "alice"), "general");
        assert_eq!(room_label("dm:a\x1b:b", "b"), "@a^[");
        assert_eq!(dm_room("Carol", "bob"), "dm:bob:carol");
        utc();
        let m = json!({"id": 9, "ts": "2026-11-24T09:05:00.000Z", "room": "dm:alice:bob", "user": "bob", "text": "psst"});
        assert_eq!(
            message_line(&m, "alice", true, false),
            "[09:05] #9 @bob <bob> psst"
        );
        assert_eq!(
            message_line(&m, "bob", false, true),
            "[2026-11-24 09:05] @alice <bob> psst"
        );
    }

    #[test]
    fn files_are_shown_under_the_text_with_size_and_id() {
        utc();
        let f = |name: &str, size: u64, id: &str| json!({"id": id, "name": name, "size": size, "type": "x/y"});
        let mut m = json!({"id": 9, "ts": "2026-11-24T09:05:00.000Z", "room": "general", "user": "bob", "text": "see",
            "attachments": [f("report.pdf", 1_258_291, "ab12"), f("a.txt", 12, "cd34")], "reactions": {"👍": 1}});
        assert_eq!(
            message_line(&m, "alice", true, false),
            "[09:05] #9 general <bob> see  [👍 1]\n    📎 report.pdf (1.2 MiB) [ab12]\n    📎 a.txt (12 B) [cd34]"
        );
        // No text: the first file on the message's own line.
        m["text"] = json!("");
        m["reactions"] = json!({});
        assert_eq!(
            message_line(&m, "alice", false, false),
            "[09:05] general <bob> 📎 report.pdf (1.2 MiB) [ab12]\n    📎 a.txt (12 B) [cd34]"
        );
        m["deleted"] = json!(true);
        assert_eq!(
            message_line(&m, "alice", false, false),
            "[09:05] general <bob> (deleted)"
        );
        // Made safe like everything else; a size that is not one is `?`.
        let evil = json!({"id": "\u{1b}[2J", "name": "x\r\u{9b}y\nz", "size": "big"});
        assert_eq!(attachment(&evil), "📎 x^M\u{fffd}y^Jz (?) [^[[2J]");
    }

    #[test]
    fn reactions_are_compact_most_first_with_mine_marked() {
        let m = |v: Value| {
            let mut m = json!({"id": 9, "ts": "", "room": "general", "user": "bob", "text": "hi"});
            m.as_object_mut()
                .unwrap()
                .extend(v.as_object().unwrap().clone());
            m
        };
        assert_eq!(reactions(&m(json!({}))), "");
        assert_eq!(reactions(&m(json!({"reactions": {}}))), "");
        assert_eq!(
            reactions(&m(json!({"reactions": {"🎉": 1, "👍": 3}}))),
            "  [👍 3 🎉 1]"
        );
        assert_eq!(
            reactions(&m(json!({"reactions": {"🎉": 1, "👍": 3}, "mine": ["👍"]}))),
            "  [👍*3 🎉 1]"
        );
        // Ties in emoji order; every one of mine marked; nonsense counts left out.
        assert_eq!(
            reactions(&m(
                json!({"reactions": {"🎉": 2, "❤️": 2, "x": 0, "y": "3"}, "mine": ["🎉", "❤️"]})
            )),
            "  [❤️*2 🎉*2]"
        );
        // After the text (and after `(edited)`), on the last line of a long one.
        utc();
        let mut long = m(json!({"reactions": {"👍": 1}, "mine": ["👍"], "edited": true}));
        long["text"] = json!("one\ntwo");
        assert_eq!(
            message_line(&long, "alice", true, false),
            "[--:--] #9 general <bob> one\n    two (edited)  [👍*1]"
        );
        // Made safe like everything else from the server.
        let evil = m(json!({"reactions": {"\u{1b}]0;x\u{7}": 1}}));
        assert_eq!(reactions(&evil), "  [^[]0;x^G 1]");
    }
}
