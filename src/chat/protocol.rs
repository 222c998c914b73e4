//! The messages of the WebSocket protocol: decoding what clients send (pure, with the
//! error code each failure earns) and encoding what the server sends.

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
        text: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    Dm {
        to: String,
        text: String,
        #[serde(default)]
        client_id: Option<String>,
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
    /// A page of a room's members (or of those online), by name after `after`.
    Members {
        room: String,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        online: bool,
    },
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

/// The `message` event for a stored row.
pub fn message_json(row: &MessageRow, room: &str, user: &str) -> Value {
    let mut v = json!({
        "type": "message",
        "id": row.id,
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
    v
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
                client_id: None
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
        let long_ref = format!(r#"{{"type":"send","ref":"{}"}}"#, "x".repeat(65));
        assert_eq!(decode(&long_ref).unwrap_err().code, ErrorCode::BadRequest);
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
            room_id: 1,
            user_id: 1,
            text: "hi".into(),
            ts: 0,
            client_id: Some("c1".into()),
            edited_at: None,
            deleted: false,
        };
        let v = message_json(&row, "general", "alice");
        assert_eq!(v["type"], "message");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["client_id"], "c1");
        assert_eq!(v["edited"], false);
    }
}
