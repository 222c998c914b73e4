//! HTTP responses: status, a few headers and a body, written out in one buffer.

use serde_json::json;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string().into_bytes())
    }

    /// The error body of the protocol: `{"error": code, "message": text}`.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        Response::json(status, &json!({ "error": code, "message": message }))
    }

    pub fn no_content() -> Response {
        Response::new(204, "", Vec::new())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Serializes status line, headers and body.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = self.head(self.body.len() as u64, keep_alive);
        out.extend_from_slice(&self.body);
        out
    }

    /// The status line and headers of a response whose body of `len` bytes is sent
    /// separately (a file streamed from disk).
    pub fn head(&self, len: u64, keep_alive: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if !self.content_type.is_empty() {
            head.push_str(&format!("Content-Type: {}\r\n", self.content_type));
        }
        if self.status != 204 {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

impl Response {
    /// The head of a response whose body follows in chunks (`Transfer-Encoding:
    /// chunked`); the connection ends after it.
    pub fn chunked_head(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        if !self.content_type.is_empty() {
            head.push_str(&format!("Content-Type: {}\r\n", self.content_type));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        head.into_bytes()
    }
}

/// One chunk of a chunked body (an empty `bytes` is the last chunk).
pub fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        206 => "Partial Content",
        416 => "Range Not Satisfiable",
        507 => "Insufficient Storage",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_response_is_written_out_exactly() {
        let r = Response::error(429, "rate_limited", "slow down").with_header("Retry-After", "2");
        let body = r#"{"error":"rate_limited","message":"slow down"}"#;
        assert_eq!(
            text(r.to_bytes(true)),
            format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nRetry-After: 2\r\n\r\n{body}",
                body.len()
            )
        );
        // The last response on a connection says so.
        assert!(text(r.to_bytes(false)).ends_with(&format!(
            "Retry-After: 2\r\nConnection: close\r\n\r\n{body}"
        )));
    }

    #[test]
    fn no_content_has_no_type_and_no_length() {
        assert_eq!(
            text(Response::no_content().to_bytes(true)),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
        // Any other status says how long its body is, even an empty one.
        assert_eq!(
            text(Response::new(200, "", Vec::new()).to_bytes(true)),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_chunked_response_has_no_length_and_ends_the_connection() {
        let r = Response::new(200, "application/json", Vec::new())
            .with_header("Content-Disposition", "attachment");
        assert_eq!(
            text(r.chunked_head()),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Content-Disposition: attachment\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let untyped = Response::new(200, "", Vec::new());
        assert_eq!(
            text(untyped.chunked_head()),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        // The size in hexadecimal; the empty chunk ends the body.
        assert_eq!(
            text(chunk(&[b'x'; 26])),
            format!("1a\r\n{}\r\n", "x".repeat(26))
        );
        assert_eq!(text(chunk(b"")), "0\r\n\r\n");
    }

    #[test]
    fn each_status_has_its_reason_phrase() {
        for (status, phrase) in [
            (100, "Continue"),
            (101, "Switching Protocols"),
            (206, "Partial Content"),
            (416, "Range Not Satisfiable"),
            (507, "Insufficient Storage"),
            (200, "OK"),
            (201, "Created"),
            (204, "No Content"),
            (304, "Not Modified"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (409, "Conflict"),
            (411, "Length Required"),
            (413, "Content Too Large"),
            (426, "Upgrade Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (418, "Unknown"),
        ] {
            assert_eq!(reason(status), phrase, "{status}");
        }
    }
}
