//! The messages of the WebSocket protocol: decoding what clients send (pure, with the
//! error code each failure earns) and encoding what the server sends.

use crate::id::UserId;
use crate::store::MessageRow;
use crate::time::rfc3339_ms;
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest `ref` and `client_id` a client may attach.
pub const MAX_REF_LEN: usize = 64;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Join {
        room: String,
        #[serde(default)]
        since: Option<i64>,
    },
    Leave {
        room: String,
    },
    CreateRoom {
        room: String,
        #[serde(default)]
        private: bool,
    },
    Invite {
        room: String,
        user: String,
    },
    Send {
        room: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        client_id: Option<String>,
        /// Ids of files the sender uploaded (`POST /files`).
        #[serde(default)]
        attachments: Vec<String>,
    },
    Dm {
        to: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        attachments: Vec<String>,
    },
    Edit {
        id: i64,
        text: String,
    },
    Delete {
        id: i64,
    },
    Typing {
        room: String,
        active: bool,
    },
    Seen {
        room: String,
        id: i64,
    },
    Delivered {
        room: String,
        id: i64,
    },
    History {
        room: String,
        #[serde(default)]
        before: Option<i64>,
        /// Pages forward instead: messages after this id, oldest first (catch-up).
        #[serde(default)]
        after: Option<i64>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Turns down a pending invitation.
    Decline {
        room: String,
    },
    /// Adds (`on`, the default) or takes back a reaction to a message.
    React {
        id: i64,
        emoji: String,
        #[serde(default = "yes")]
        on: bool,
    },
    /// A page of who reacted to a message with an emoji, by name after `after`.
    Reactors {
        id: i64,
        emoji: String,
        #[serde(default)]
        after: Option<String>,
    },
    /// A page of a room's members (or of those online), by name after `after`.
    Members {
        room: String,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        online: bool,
    },
}

fn yes() -> bool {
    true
}

const TYPES: &[&str] = &[
    "join",
    "leave",
    "create_room",
    "invite",
    "send",
    "dm",
    "edit",
    "delete",
    "typing",
    "seen",
    "delivered",
    "history",
    "decline",
    "members",
    "react",
    "reactors",
];

/// Error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    TooLong,
    Forbidden,
    NoSuchRoom,
    NoSuchMessage,
    RateLimited,
    Overloaded,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLong => "too_long",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::NoSuchMessage => "no_such_message",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
        }
    }
}

/// A request that could not be decoded: the code, a message, and the `ref` if one was
/// readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub req: Option<String>,
}

/// Decodes one text frame into a request and its `ref`.
pub fn decode(text: &str) -> Result<(ClientMsg, Option<String>), DecodeError> {
    let err = |code, message: String, req| DecodeError { code, message, req };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(ErrorCode::BadRequest, format!("invalid JSON: {e}"), None))?;
    let Value::Object(ref obj) = value else {
        return Err(err(
            ErrorCode::BadRequest,
            "expected a JSON object".into(),
            None,
        ));
    };
    let req = match obj.get("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_REF_LEN => Some(s.clone()),
        Some(_) => {
            return Err(err(
                ErrorCode::BadRequest,
                format!("ref must be a string of at most {MAX_REF_LEN} bytes"),
                None,
            ))
        }
    };
    match obj.get("type") {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::String(t)) => {
            let t: String = t.chars().take(40).collect();
            return Err(err(
                ErrorCode::UnknownType,
                format!("unknown type {t:?}"),
                req,
            ));
        }
        _ => {
            return Err(err(
                ErrorCode::BadRequest,
                "missing string field \"type\"".into(),
                req,
            ))
        }
    }
    match ClientMsg::deserialize(value) {
        Ok(msg) => Ok((msg, req)),
        Err(e) => Err(err(ErrorCode::BadRequest, e.to_string(), req)),
    }
}

/// The `message` event for a stored row. Reactions are counts by emoji; a reply to one
/// person (`reader`) also lists theirs as `mine`, when there are any.
pub fn message_json(row: &MessageRow, room: &str, user: &str, reader: Option<UserId>) -> Value {
    let mut v = json!({
        "type": "message",
        "id": row.id,
        "seq": row.seq,
        "room": room,
        "user": user,
        "text": row.text,
        "ts": rfc3339_ms(row.ts),
        "edited": row.edited_at.is_some(),
        "deleted": row.deleted,
    });
    if let Some(cid) = &row.client_id {
        v["client_id"] = json!(cid);
    }
    if let Some(at) = row.edited_at {
        v["edited_at"] = json!(rfc3339_ms(at));
    }
    let mut counts = serde_json::Map::new();
    let mut mine = Vec::new();
    for r in &row.reactions {
        counts.insert(r.emoji.clone(), json!(r.count));
        if reader.is_some_and(|me| r.users.contains(&me)) {
            mine.push(r.emoji.as_str());
        }
    }
    v["reactions"] = Value::Object(counts);
    if !row.attachments.is_empty() {
        let files: Vec<Value> = row
            .attachments
            .iter()
            .map(|f| json!({ "id": f.id, "name": f.name, "size": f.size, "type": f.mime }))
            .collect();
        v["attachments"] = Value::Array(files);
    }
    if !mine.is_empty() {
        v["mine"] = json!(mine);
    }
    v
}

/// Longest reaction, in bytes: room for the longest family and flag sequences.
pub const MAX_EMOJI_BYTES: usize = 32;

/// Whether `s` is one emoji: a pictograph (with an optional presentation selector and
/// skin tone) or several joined by ZWJ, a flag (two regional indicators or a tag
/// sequence), or a keycap; at most `MAX_EMOJI_BYTES`. A short allow-list of the Unicode
/// emoji ranges rather than the full tables: enough for every emoji a picker offers, and
/// it keeps text, control and invisible characters out of reaction bars.
pub fn valid_emoji(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_EMOJI_BYTES {
        return false;
    }
    let cs: Vec<char> = s.chars().collect();
    let regional = |c: char| ('\u{1F1E6}'..='\u{1F1FF}').contains(&c);
    let tag = |c: char| ('\u{E0020}'..='\u{E007E}').contains(&c);
    match cs.as_slice() {
        // Keycap: 1️⃣ (the selector is often left out).
        [k, '\u{FE0F}', '\u{20E3}'] | [k, '\u{20E3}'] => {
            k.is_ascii_digit() || *k == '#' || *k == '*'
        }
        [a, b] if regional(*a) && regional(*b) => true,
        // Subdivision flags: 🏴 + tag letters + cancel tag (the three Unicode names).
        ['\u{1F3F4}', rest @ .., '\u{E007F}'] if !rest.is_empty() => {
            let tags: String = rest
                .iter()
                .map(|c| char::from_u32(*c as u32 - 0xE0000).unwrap_or('?'))
                .collect();
            rest.iter().all(|c| tag(*c)) && ["gbeng", "gbsct", "gbwls"].contains(&tags.as_str())
        }
        _ => {
            let parts: Vec<&[char]> = cs.split(|c| *c == '\u{200D}').collect();
            // Symbols and enclosed letters never join into sequences (they would spell).
            let joinable = |p: &[char]| {
                p.first()
                    .is_some_and(|c| !(0x1F000..0x1F300).contains(&(*c as u32)))
            };
            parts.iter().all(|p| emoji_element(p))
                && (parts.len() == 1 || parts.iter().all(|p| joinable(p)))
        }
    }
}

/// One element of a ZWJ sequence: a pictograph, then an optional presentation selector
/// (U+FE0F) and an optional skin tone.
fn emoji_element(cs: &[char]) -> bool {
    let tone = |c: char| ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
    match cs {
        [p] | [p, '\u{FE0F}'] => pictograph(*p),
        [p, t] | [p, t, '\u{FE0F}'] | [p, '\u{FE0F}', t] => pictograph(*p) && tone(*t),
        _ => false,
    }
}

/// Code points Unicode marks as emoji pictographs (a generous summary of
/// Extended_Pictographic, without regional indicators and skin tones on their own).
fn pictograph(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0xA9 | 0xAE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x2199 | 0x21A9..=0x21AA
        | 0x231A..=0x231B | 0x2328 | 0x23CF | 0x23E9..=0x23F3 | 0x23F8..=0x23FA | 0x24C2
        | 0x25AA..=0x25AB | 0x25B6 | 0x25C0 | 0x25FB..=0x25FE | 0x2600..=0x27BF
        | 0x2934..=0x2935 | 0x2B05..=0x2B07 | 0x2B1B..=0x2B1C | 0x2B50 | 0x2B55 | 0x3030
        | 0x303D | 0x3297 | 0x3299 | 0x1F004 | 0x1F0CF | 0x1F170..=0x1F171 | 0x1F17E..=0x1F17F
        | 0x1F18E | 0x1F191..=0x1F19A | 0x1F201..=0x1F202 | 0x1F21A | 0x1F22F | 0x1F232..=0x1F23A
        | 0x1F250..=0x1F251 | 0x1F300..=0x1F3FA | 0x1F400..=0x1FAFF)
}

/// An `error` reply.
pub fn error_json(code: ErrorCode, message: &str, req: Option<&str>) -> Value {
    let mut v = json!({ "type": "error", "code": code.as_str(), "message": message });
    if let Some(r) = req {
        v["ref"] = json!(r);
    }
    v
}

/// Attaches a `ref` to a reply.
pub fn with_ref(mut v: Value, req: Option<&str>) -> Value {
    if let Some(r) = req {
        v["ref"] = json!(r);
    }
    v
}

/// Room names: 1–64 of `[a-z0-9_-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The private room of a direct conversation: `dm:<a>:<b>`, names lower-cased and sorted.
pub fn dm_room_name(a: &str, b: &str) -> String {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a <= b {
        format!("dm:{a}:{b}")
    } else {
        format!("dm:{b}:{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_type() {
        let (m, r) = decode(r#"{"type":"send","room":"general","text":"hi","ref":"7"}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Send {
                room: "general".into(),
                text: "hi".into(),
                client_id: None,
                attachments: Vec::new(),
            }
        );
        assert_eq!(r.as_deref(), Some("7"));
        assert!(matches!(
            decode(r#"{"type":"join","room":"a","since":5}"#).unwrap().0,
            ClientMsg::Join { since: Some(5), .. }
        ));
        assert!(matches!(
            decode(r#"{"type":"create_room","room":"a"}"#).unwrap().0,
            ClientMsg::CreateRoom { private: false, .. }
        ));
        for t in TYPES {
            let e = decode(&format!(r#"{{"type":"{t}","ref":"x"}}"#));
            if let Err(e) = e {
                assert_eq!(e.code, ErrorCode::BadRequest, "{t}");
                assert_eq!(e.req.as_deref(), Some("x"));
            }
        }
    }

    #[test]
    fn each_failure_has_its_code() {
        assert_eq!(decode("not json").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(decode("[1]").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            decode(r#"{"room":"a"}"#).unwrap_err().code,
            ErrorCode::BadRequest
        );
        let e = decode(r#"{"type":"fly","ref":"r1"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.req.as_deref()),
            (ErrorCode::UnknownType, Some("r1"))
        );
        let e = decode(r#"{"type":"send","room":"a","text":5,"ref":"r2"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.req.as_deref()),
            (ErrorCode::BadRequest, Some("r2"))
        );
        // A request that is valid but for its ref: the ref alone decides.
        let with_ref = |n: usize| {
            let r = "x".repeat(n);
            decode(&format!(
                r#"{{"type":"send","room":"a","text":"hi","ref":"{r}"}}"#
            ))
        };
        assert_eq!(with_ref(MAX_REF_LEN).unwrap().1.map(|r| r.len()), Some(64));
        let e = with_ref(MAX_REF_LEN + 1).unwrap_err();
        assert_eq!((e.code, e.req), (ErrorCode::BadRequest, None));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(decode(&deep).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn names() {
        assert!(valid_room_name("general"));
        assert!(valid_room_name("a-b_c9"));
        assert!(!valid_room_name("General"));
        assert!(!valid_room_name(""));
        assert!(!valid_room_name("dm:a:b"));
        assert!(!valid_room_name(&"a".repeat(65)));
        assert_eq!(dm_room_name("Bob", "alice"), "dm:alice:bob");
        assert_eq!(dm_room_name("alice", "bob"), "dm:alice:bob");
    }

    #[test]
    fn message_json_shape() {
        let row = MessageRow {
            id: 3,
            seq: 2,
            room_id: 1,
            user_id: 1,
            text: "hi".into(),
            ts: 0,
            client_id: Some("c1".into()),
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            attachments: Vec::new(),
        };
        let v = message_json(&row, "general", "alice", None);
        assert_eq!(v["type"], "message");
        assert_eq!((v["id"].as_i64(), v["seq"].as_i64()), (Some(3), Some(2)));
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["client_id"], "c1");
        assert_eq!(v["edited"], false);
        assert!(v.get("attachments").is_none(), "no files, no list: {v}");
    }

    #[test]
    fn reactions_are_counts_and_mine_only_for_the_reader() {
        use crate::store::Reaction;
        let row = MessageRow {
            id: 1,
            reactions: vec![
                Reaction {
                    emoji: "👍".into(),
                    count: 3,
                    users: vec![7, 9],
                },
                Reaction {
                    emoji: "🎉".into(),
                    count: 1,
                    users: vec![8],
                },
            ],
            ..MessageRow::default()
        };
        let v = message_json(&row, "r", "u", None);
        assert_eq!(v["reactions"], json!({"👍": 3, "🎉": 1}));
        assert!(v.get("mine").is_none());
        assert_eq!(message_json(&row, "r", "u", Some(9))["mine"], json!(["👍"]));
        assert!(message_json(&row, "r", "u", Some(5)).get("mine").is_none());
        let bare = message_json(&MessageRow::default(), "r", "u", Some(5));
        assert_eq!(bare["reactions"], json!({}));
    }

    #[test]
    fn one_emoji_per_reaction() {
        for ok in [
            "👍",
            "❤️",
            "❤",
            "🎉",
            "😂",
            "👍🏽",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🏳️‍🌈",
            "🇫🇷",
            "1️⃣",
            "#⃣",
            "*️⃣",
            "©️",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "🫠",
            "🀄",
            "🅰️",
            "🆗",
            "🈁",
        ] {
            assert!(valid_emoji(ok), "{ok:?} should be an emoji");
        }
        for bad in [
            "",
            "a",
            "ab",
            "1",
            "👍👍",
            "👍 ",
            " 👍",
            "\u{200D}",
            "👍\u{200D}",
            "\u{200D}👍",
            "🏽",
            "🇫",
            "🇫🇷🇫🇷",
            "\u{FE0F}",
            "<b>",
            "👍\u{0301}",
            "\u{202E}👍",
            "1\u{20E3}\u{20E3}",
            // Keycaps are for digits, '#' and '*' only.
            "a\u{20E3}",
            "a\u{FE0F}\u{20E3}",
            // A flag is two regional indicators, not one beside something else.
            "🇫👍",
            "👍🇫",
            "🏴\u{E007F}",
            "🅵\u{200D}🆄\u{200D}🅲\u{200D}🅺",
            "🄀",
            "🅵",
            "🏴\u{E0061}\u{E007F}",
            "\u{E0067}",
        ] {
            assert!(!valid_emoji(bad), "{bad:?} should be refused");
        }
        // The byte bound: a ZWJ chain of valid elements, one element past 32 bytes.
        let chain = |n: usize| vec!["👍"; n].join("\u{200D}");
        assert_eq!(chain(5).len(), MAX_EMOJI_BYTES);
        assert!(valid_emoji(&chain(5)));
        assert!(!valid_emoji(&chain(6)));
        let exact = "👨‍👩‍👧‍👦"; // 25 bytes
        assert!(exact.len() <= MAX_EMOJI_BYTES && valid_emoji(exact));
    }

    #[test]
    fn react_decodes_with_on_by_default() {
        assert_eq!(
            decode(r#"{"type":"react","id":4,"emoji":"👍"}"#).unwrap().0,
            ClientMsg::React {
                id: 4,
                emoji: "👍".into(),
                on: true
            }
        );
        assert!(matches!(
            decode(r#"{"type":"react","id":4,"emoji":"👍","on":false}"#)
                .unwrap()
                .0,
            ClientMsg::React { on: false, .. }
        ));
        assert!(matches!(
            decode(r#"{"type":"reactors","id":4,"emoji":"👍","after":"bob"}"#)
                .unwrap()
                .0,
            ClientMsg::Reactors { after: Some(_), .. }
        ));
    }
}
