//! WebSocket: the upgrade handshake (validated here, answered by the reactor) and the
//! encoding of server frames.
//!
//! Framing of incoming data is tungstenite's `WebSocketContext`, which the reactor drives
//! over the connection's own socket and output queue. Server frames are unmasked, so one
//! encoded frame is byte-identical for every recipient: `text_frame` is called once per
//! broadcast and the result shared.

use crate::http::Request;
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame;

/// Why an upgrade request was refused, with the HTTP status to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    MethodNotAllowed,
    NotAnUpgrade,
    BadVersion,
    BadKey,
    ForeignOrigin,
}

impl UpgradeError {
    pub fn status(self) -> u16 {
        match self {
            UpgradeError::MethodNotAllowed => 405,
            UpgradeError::NotAnUpgrade => 426,
            UpgradeError::BadVersion => 426,
            UpgradeError::BadKey => 400,
            UpgradeError::ForeignOrigin => 403,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            UpgradeError::ForeignOrigin => "forbidden",
            UpgradeError::MethodNotAllowed => "method_not_allowed",
            _ => "bad_request",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            UpgradeError::MethodNotAllowed => "a WebSocket upgrade must be a GET",
            UpgradeError::NotAnUpgrade => {
                "expected Upgrade: websocket and Connection: Upgrade headers"
            }
            UpgradeError::BadVersion => "only Sec-WebSocket-Version: 13 is supported",
            UpgradeError::BadKey => "missing or malformed Sec-WebSocket-Key",
            UpgradeError::ForeignOrigin => "the Origin of this request is not allowed",
        }
    }
}

/// Validates an upgrade request and returns the `Sec-WebSocket-Accept` value.
///
/// An `Origin` header, when present, must name the same host as `Host` or be listed in
/// `allowed_origins`, so a page on another site cannot open a socket with a user's token.
pub fn validate_upgrade(req: &Request, allowed_origins: &[String]) -> Result<String, UpgradeError> {
    if req.method != "GET" {
        return Err(UpgradeError::MethodNotAllowed);
    }
    if !req.header_has_token("upgrade", "websocket")
        || !req.header_has_token("connection", "upgrade")
    {
        return Err(UpgradeError::NotAnUpgrade);
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(UpgradeError::BadVersion);
    }
    let key = req
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(UpgradeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(UpgradeError::BadKey);
    }
    if let Some(origin) = req.header("origin") {
        if !origin_allowed(origin.trim(), req.header("host"), allowed_origins) {
            return Err(UpgradeError::ForeignOrigin);
        }
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// A key is 16 bytes in base64: 22 alphabet characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return false;
    }
    host.is_some_and(|h| {
        h.trim()
            .eq_ignore_ascii_case(authority.trim_end_matches('/'))
    })
}

/// The `101 Switching Protocols` answer.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Encodes `text` as one complete, unmasked text frame.
pub fn text_frame(text: String) -> Vec<u8> {
    let frame = Frame::message(text.into_bytes(), OpCode::Data(OpData::Text), true);
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing a frame into a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse, Limits};

    const LIMITS: Limits = Limits {
        max_header_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 1024,
        max_upload_bytes: 1 << 20,
    };

    fn req(extra: &str, method: &str) -> Request {
        let len = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        let raw = format!("{method} /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n{len}{extra}\r\n");
        parse(raw.as_bytes(), &LIMITS).unwrap().unwrap().1
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn rfc6455_sample_key() {
        assert_eq!(
            validate_upgrade(&req(GOOD, "GET"), &[]).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn each_missing_or_wrong_header_is_rejected() {
        let without = |name: &str| {
            GOOD.lines()
                .filter(|l| !l.starts_with(name))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        assert_eq!(
            validate_upgrade(&req(GOOD, "POST"), &[]),
            Err(UpgradeError::MethodNotAllowed)
        );
        assert_eq!(
            validate_upgrade(&req(&without("Upgrade"), "GET"), &[]),
            Err(UpgradeError::NotAnUpgrade)
        );
        assert_eq!(
            validate_upgrade(&req(&without("Connection"), "GET"), &[]),
            Err(UpgradeError::NotAnUpgrade)
        );
        assert_eq!(
            validate_upgrade(&req(&without("Sec-WebSocket-Version"), "GET"), &[]),
            Err(UpgradeError::BadVersion)
        );
        assert_eq!(
            validate_upgrade(&req(&without("Sec-WebSocket-Key"), "GET"), &[]),
            Err(UpgradeError::BadKey)
        );
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(
            validate_upgrade(&req(&v8, "GET"), &[]),
            Err(UpgradeError::BadVersion)
        );
        let shortkey = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "abc");
        assert_eq!(
            validate_upgrade(&req(&shortkey, "GET"), &[]),
            Err(UpgradeError::BadKey)
        );
    }

    #[test]
    fn origin_must_match_host_or_list() {
        let same = format!("{GOOD}Origin: http://127.0.0.1:8000\r\n");
        assert!(validate_upgrade(&req(&same, "GET"), &[]).is_ok());
        let evil = format!("{GOOD}Origin: https://evil.example\r\n");
        assert_eq!(
            validate_upgrade(&req(&evil, "GET"), &[]),
            Err(UpgradeError::ForeignOrigin)
        );
        let listed = ["https://evil.example".to_string()];
        assert!(validate_upgrade(&req(&evil, "GET"), &listed).is_ok());
        let null = format!("{GOOD}Origin: null\r\n");
        assert_eq!(
            validate_upgrade(&req(&null, "GET"), &[]),
            Err(UpgradeError::ForeignOrigin)
        );
    }

    #[test]
    fn key_must_be_24_base64_characters_ending_in_padding() {
        let with_key = |key: &str| GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", key);
        let check = |key: &str| validate_upgrade(&req(&with_key(key), "GET"), &[]);
        // '+' and '/' are part of the standard base64 alphabet.
        assert!(check("ab+/ab+/ab+/ab+/ab+/ab==").is_ok());
        assert!(check("++++++++++++++++++++++==").is_ok());
        assert!(check("//////////////////////==").is_ok());
        // 24 characters but no padding: 18 bytes, not 16.
        assert_eq!(check("dGhlIHNhbXBsZSBub25jZQAA"), Err(UpgradeError::BadKey));
        // URL-safe base64 and stray characters are not the alphabet of the RFC.
        assert_eq!(check("dGhlIHNhbXBsZSBub25jZ-=="), Err(UpgradeError::BadKey));
        assert_eq!(check("dGhlIHNhbXBsZSBub25jZ_=="), Err(UpgradeError::BadKey));
        assert_eq!(check("dGhlIHNhbXBsZSBub25j.Q=="), Err(UpgradeError::BadKey));
        assert_eq!(check("dGhlIHNhbXBsZSBub25jZQ="), Err(UpgradeError::BadKey));
        assert_eq!(
            check("dGhlIHNhbXBsZSBub25jZQ==="),
            Err(UpgradeError::BadKey)
        );
    }

    #[test]
    fn refusals_say_what_to_fix() {
        let says = |e: UpgradeError, what: &str| {
            assert!(e.message().contains(what), "{e:?}: {}", e.message());
        };
        says(UpgradeError::MethodNotAllowed, "GET");
        says(UpgradeError::NotAnUpgrade, "Upgrade: websocket");
        says(UpgradeError::BadVersion, "Sec-WebSocket-Version: 13");
        says(UpgradeError::BadKey, "Sec-WebSocket-Key");
        says(UpgradeError::ForeignOrigin, "Origin");
        // Status and error code of each refusal (426 asks for a proper upgrade).
        let answer = |e: UpgradeError| (e.status(), e.code());
        assert_eq!(
            answer(UpgradeError::MethodNotAllowed),
            (405, "method_not_allowed")
        );
        assert_eq!(answer(UpgradeError::NotAnUpgrade), (426, "bad_request"));
        assert_eq!(answer(UpgradeError::BadVersion), (426, "bad_request"));
        assert_eq!(answer(UpgradeError::BadKey), (400, "bad_request"));
        assert_eq!(answer(UpgradeError::ForeignOrigin), (403, "forbidden"));
    }

    #[test]
    fn switching_protocols_response_is_exact() {
        let accept = validate_upgrade(&req(GOOD, "GET"), &[]).unwrap();
        assert_eq!(
            String::from_utf8(upgrade_response(&accept)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             \r\n"
        );
    }

    #[test]
    fn text_frame_is_unmasked_and_complete() {
        assert_eq!(text_frame("hi".into()), vec![0x81, 2, b'h', b'i']);
        let long = text_frame("x".repeat(300));
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(long.len(), 304);
    }
}
