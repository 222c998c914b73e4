//! HTTP/1.1 requests and responses, by hand with httparse.
//!
//! `parse` is pure and resumable: give it everything received so far and it answers
//! "need more", a complete request with the bytes it used, or the error status to send.
//! It never consumes a partial request, so a caller can call it again as bytes arrive.
//! Routing lives in the reactor, which owns the state the routes need.

pub mod response;
pub mod route;

pub use response::Response;
pub use route::{route, Route};

/// Hard limits on one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// Largest upload (`POST /files`), whose body is streamed rather than buffered.
    pub max_upload_bytes: usize,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string (after `?`), still percent-encoded.
    pub query: String,
    /// Header names lower-cased, values as sent (invalid UTF-8 replaced).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may be reused after the response.
    pub keep_alive: bool,
    /// An upload (`POST /files`): its body of this many bytes follows the head in the
    /// stream and is not in `body`.
    pub upload: Option<usize>,
}

impl Request {
    /// First value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// The token from `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|t| !t.is_empty())
    }
}

/// Why a request was refused; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 400: not HTTP, or contradictory framing.
    BadRequest(&'static str),
    /// 411: a chunked body (only `Content-Length` bodies are accepted).
    LengthRequired,
    /// 413: `Content-Length` over the body limit.
    PayloadTooLarge,
    /// 431: header section over the byte or count limit.
    HeadersTooLarge,
    /// 505: not HTTP/1.x.
    VersionNotSupported,
}

impl HttpError {
    /// The `error` code of the JSON answer.
    pub fn code(self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "bad_request",
            HttpError::LengthRequired => "length_required",
            HttpError::PayloadTooLarge => "payload_too_large",
            HttpError::HeadersTooLarge => "headers_too_large",
            HttpError::VersionNotSupported => "version_not_supported",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::HeadersTooLarge => 431,
            HttpError::VersionNotSupported => 505,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::BadRequest(m) => m,
            HttpError::LengthRequired => {
                "a request body needs Content-Length (chunked is not accepted)"
            }
            HttpError::PayloadTooLarge => "request body too large",
            HttpError::HeadersTooLarge => "request header section too large",
            HttpError::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are supported",
        }
    }
}

/// Parses one request from the start of `buf`.
///
/// `Ok(None)`: incomplete, call again with more bytes. `Ok(Some((n, req)))`: the request
/// used the first `n` bytes. `Err(e)`: answer `e.status()` and close the connection.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(usize, Request)>, HttpError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(_) => return Err(HttpError::BadRequest("malformed HTTP request")),
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HttpError::BadRequest(
            "request target must be an absolute path",
        ));
    }
    let version = req.version.unwrap_or(1);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };

    let mut content_length: Option<usize> = None;
    let mut out_headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match name.as_str() {
            "content-length" => {
                // Digits only (RFC 9110 §8.6): `+2` or `0x10` would parse elsewhere.
                let digits = value.trim();
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HttpError::BadRequest("invalid Content-Length"));
                }
                let n: usize = digits
                    .parse()
                    .map_err(|_| HttpError::BadRequest("invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HttpError::BadRequest("conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => return Err(HttpError::LengthRequired),
            _ => {}
        }
        out_headers.push((name, value));
    }
    // An upload's body is streamed to the file worker, never buffered here: only its
    // head is taken, and its length is checked against the upload limit.
    let upload = (method == "POST" && path == "/files").then_some(content_length);
    if let Some(length) = upload {
        let n = length.ok_or(HttpError::LengthRequired)?;
        if n > limits.max_upload_bytes {
            return Err(HttpError::PayloadTooLarge);
        }
    }
    // Without Content-Length (and without Transfer-Encoding, refused above) a request
    // has no body (RFC 9112 §6.3); `curl -X POST` without data sends exactly that.
    let body_len = if upload.is_some() {
        0
    } else {
        content_length.unwrap_or(0)
    };
    if body_len > limits.max_body_bytes {
        return Err(HttpError::PayloadTooLarge);
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let mut request = Request {
        method,
        path,
        query,
        headers: out_headers,
        body: buf[head_len..head_len + body_len].to_vec(),
        keep_alive: false,
        upload: upload.flatten(),
    };
    request.keep_alive = if version == 1 {
        !request.header_has_token("connection", "close")
    } else {
        request.header_has_token("connection", "keep-alive")
    };
    Ok(Some((head_len + body_len, request)))
}

/// The byte range a `Range` header asks of a `size`-byte file: `Ok(None)` for the whole
/// file (no header, another unit, or several ranges — answering those whole is allowed),
/// `Ok(Some((first, last)))` inclusive, `Err(())` when it cannot be satisfied (416).
#[allow(clippy::result_unit_err)]
pub fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    // Digits too many for u64 mean "past any file".
    let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    match (digits(a), digits(b)) {
        // The last `n` bytes.
        (false, true) if a.is_empty() => match num(b) {
            0 => Err(()),
            _ if size == 0 => Err(()),
            n => Ok(Some((size.saturating_sub(n), size - 1))),
        },
        (true, true) if num(b) < num(a) => Ok(None),
        (true, _) if b.is_empty() || digits(b) => {
            let first = num(a);
            if first >= size {
                return Err(());
            }
            let last = if b.is_empty() {
                size - 1
            } else {
                num(b).min(size - 1)
            };
            Ok(Some((first, last)))
        }
        // Not a valid range: ignored, the whole file is sent (RFC 9110 §14.2).
        _ => Ok(None),
    }
}

/// A decoded query parameter from a raw query string (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name)).then(|| percent_decode(v))?
    })
}

/// Percent-decodes `s`; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 65536,
        max_upload_bytes: 1 << 20,
    };

    const POST: &[u8] = b"POST /login?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"b c\"}\r\nGET / HTTP/1.1\r\n\r\n";

    #[test]
    fn split_at_every_byte_gives_the_same_request() {
        let (n, whole) = parse(POST, &LIMITS).unwrap().unwrap();
        assert_eq!(whole.method, "POST");
        assert_eq!(whole.path, "/login");
        assert_eq!(whole.query, "x=1");
        assert_eq!(whole.body, b"{\"a\":\"b c\"}\r\n");
        assert!(whole.keep_alive);
        for cut in 0..n {
            assert_eq!(parse(&POST[..cut], &LIMITS), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(&POST[..n], &LIMITS).unwrap().unwrap().1, whole);
        let (m, next) = parse(&POST[n..], &LIMITS).unwrap().unwrap();
        assert_eq!((m, next.method.as_str()), (POST.len() - n, "GET"));
    }

    #[test]
    fn each_limit_has_its_status() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            parse(big.as_bytes(), &LIMITS),
            Err(HttpError::HeadersTooLarge)
        );
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        assert_eq!(
            parse(partial.as_bytes(), &LIMITS),
            Err(HttpError::HeadersTooLarge)
        );
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse(many.as_bytes(), &LIMITS),
            Err(HttpError::HeadersTooLarge)
        );
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
        assert_eq!(parse(huge, &LIMITS), Err(HttpError::PayloadTooLarge));
        let nolen = b"POST / HTTP/1.1\r\n\r\n";
        assert_eq!(parse(nolen, &LIMITS).unwrap().unwrap().1.body, b"");
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked, &LIMITS), Err(HttpError::LengthRequired));
        assert_eq!(
            parse(b"\x16\x03\x01garbage\r\n\r\n", &LIMITS)
                .unwrap_err()
                .status(),
            400
        );
        for bad in ["+2", "-1", "0x10", "1 2", ""] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\nab");
            assert_eq!(
                parse(req.as_bytes(), &LIMITS),
                Err(HttpError::BadRequest("invalid Content-Length")),
                "{bad:?}"
            );
        }
        let twolen = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse(twolen, &LIMITS).unwrap_err().status(), 400);
        let badlen = b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(parse(badlen, &LIMITS).unwrap_err().status(), 400);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(byte_range(Some("bytes=-40"), 10), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(byte_range(Some("bytes=9-9"), 10), Ok(Some((9, 9))));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(byte_range(Some("bytes=4-2"), 10), Ok(None));
        assert_eq!(
            byte_range(Some("bytes=0-99999999999999999999999"), 10),
            Ok(Some((0, 9)))
        );
        assert_eq!(
            byte_range(Some("bytes=99999999999999999999999-"), 10),
            Err(())
        );
        assert_eq!(byte_range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(byte_range(Some("bytes=x-2"), 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-0"), 0), Err(()));
        assert_eq!(
            byte_range(Some("bytes=-5"), 0),
            Err(()),
            "no last bytes of nothing"
        );
        assert_eq!(
            byte_range(Some("bytes=2-x"), 10),
            Ok(None),
            "ignored, not 2-"
        );
    }

    #[test]
    fn uploads_stream_their_bodies() {
        let head = b"POST /files HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
        let (n, req) = parse(head, &LIMITS).unwrap().unwrap();
        assert_eq!(
            (n, req.upload, req.body.len()),
            (head.len() - 3, Some(5), 0)
        );
        let over = format!(
            "POST /files HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            (1 << 20) + 1
        );
        assert_eq!(
            parse(over.as_bytes(), &LIMITS),
            Err(HttpError::PayloadTooLarge)
        );
        let exact = format!(
            "POST /files HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            1 << 20
        );
        assert_eq!(
            parse(exact.as_bytes(), &LIMITS).unwrap().unwrap().1.upload,
            Some(1 << 20)
        );
        let none = b"POST /files HTTP/1.1\r\n\r\n";
        assert_eq!(parse(none, &LIMITS), Err(HttpError::LengthRequired));
        // Elsewhere bodies stay bounded by the body limit.
        let big = format!("POST /login HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 65537);
        assert_eq!(
            parse(big.as_bytes(), &LIMITS),
            Err(HttpError::PayloadTooLarge)
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let tiny = Limits {
            max_header_bytes: 40,
            max_headers: 2,
            max_body_bytes: 3,
            max_upload_bytes: 1 << 20,
        };
        // A head of exactly 40 bytes is accepted, 41 is not.
        let head = |pad: usize| format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(pad));
        assert_eq!(head(17).len(), 40);
        assert!(parse(head(17).as_bytes(), &tiny).unwrap().is_some());
        assert_eq!(
            parse(head(18).as_bytes(), &tiny),
            Err(HttpError::HeadersTooLarge)
        );
        // An incomplete head may reach the limit while more is awaited, not pass it.
        let part = head(17);
        assert_eq!(parse(&part.as_bytes()[..40 - 2], &tiny), Ok(None));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(21));
        assert_eq!(long.len(), 40);
        assert_eq!(parse(long.as_bytes(), &tiny), Ok(None));
        let longer = format!("{long}a");
        assert_eq!(
            parse(longer.as_bytes(), &tiny),
            Err(HttpError::HeadersTooLarge)
        );
        // Two headers are allowed, three are not.
        assert!(parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &tiny)
            .unwrap()
            .is_some());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &tiny),
            Err(HttpError::HeadersTooLarge)
        );
        // A body of exactly 3 bytes is accepted, 4 is refused before it arrives.
        let (n, r) = parse(b"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcd", &tiny)
            .unwrap()
            .unwrap();
        assert_eq!((n, r.body.as_slice()), (40, &b"abc"[..]));
        assert_eq!(
            parse(b"PUT / HTTP/1.1\r\nContent-Length: 4\r\n\r\n", &tiny),
            Err(HttpError::PayloadTooLarge)
        );
    }

    #[test]
    fn each_error_has_its_status_and_says_why() {
        let cases = [
            (
                HttpError::BadRequest("malformed HTTP request"),
                400,
                "malformed",
            ),
            (HttpError::LengthRequired, 411, "Content-Length"),
            (HttpError::PayloadTooLarge, 413, "body too large"),
            (HttpError::HeadersTooLarge, 431, "header section too large"),
            (HttpError::VersionNotSupported, 505, "HTTP/1.1"),
        ];
        for (e, status, says) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            assert!(e.message().contains(says), "{e:?}: {}", e.message());
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n", &LIMITS),
            Err(HttpError::VersionNotSupported)
        );
        assert_eq!(
            parse(b"GET http://a/ HTTP/1.1\r\n\r\n", &LIMITS),
            Err(HttpError::BadRequest(
                "request target must be an absolute path"
            ))
        );
        // The same Content-Length twice is not a conflict.
        let twice = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(parse(twice, &LIMITS).unwrap().unwrap().1.body, b"ab");
    }

    #[test]
    fn headers_by_name() {
        let req = parse(
            b"GET / HTTP/1.1\r\nX-A: first\r\nConnection: keep-alive, Upgrade\r\nX-A: second\r\n\r\n",
            &LIMITS,
        )
        .unwrap()
        .unwrap()
        .1;
        assert_eq!(req.header("x-a"), Some("first"));
        assert_eq!(req.header("x-b"), None);
        assert!(req.header_has_token("connection", "upgrade"));
        assert!(!req.header_has_token("connection", "close"));
        assert!(!req.header_has_token("x-a", "upgrade"));
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let r = |s: &str| parse(s.as_bytes(), &LIMITS).unwrap().unwrap().1.keep_alive;
        assert!(r("GET / HTTP/1.1\r\n\r\n"));
        assert!(!r("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!r("GET / HTTP/1.0\r\n\r\n"));
        assert!(r("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn query_and_bearer() {
        assert_eq!(
            query_param("a=1&token=x%2By+z", "token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_param("a=1", "token"), None);
        assert_eq!(query_param("q=%E2%9C%93", "q").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%zz"), None);
        let req = parse(
            b"GET / HTTP/1.1\r\nAuthorization: Bearer  abc \r\n\r\n",
            &LIMITS,
        )
        .unwrap()
        .unwrap()
        .1;
        assert_eq!(req.bearer(), Some("abc"));
        let bearer = |auth: &str| {
            let raw = format!("GET /?a=1&b=%41%42+c HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
            let req = parse(raw.as_bytes(), &LIMITS).unwrap().unwrap().1;
            assert_eq!(req.query_param("b").as_deref(), Some("AB c"));
            req.bearer().map(str::to_string)
        };
        assert_eq!(bearer("bearer xyz").as_deref(), Some("xyz"));
        assert_eq!(bearer("Bearer   "), None);
        assert_eq!(bearer("Basic xyz"), None);
        assert_eq!(bearer("xyz"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2b").as_deref(), Some("a b c+"));
        assert_eq!(percent_decode("%41%42%43").as_deref(), Some("ABC"));
        assert_eq!(percent_decode("x%4").as_deref(), None);
        assert_eq!(percent_decode("x%").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None, "not UTF-8");
        assert_eq!(percent_decode("").as_deref(), Some(""));
        assert_eq!(query_param("tok=1&token=2", "token").as_deref(), Some("2"));
        assert_eq!(query_param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("%74oken=3", "token").as_deref(), Some("3"));
    }

    #[test]
    fn each_parse_error_has_its_status_and_code() {
        for (e, status, code) in [
            (HttpError::BadRequest("x"), 400, "bad_request"),
            (HttpError::LengthRequired, 411, "length_required"),
            (HttpError::PayloadTooLarge, 413, "payload_too_large"),
            (HttpError::HeadersTooLarge, 431, "headers_too_large"),
            (HttpError::VersionNotSupported, 505, "version_not_supported"),
        ] {
            assert_eq!((e.status(), e.code()), (status, code));
        }
    }
}
