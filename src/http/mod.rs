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
mod tests;
