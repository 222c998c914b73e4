//! Unit tests of the HTTP/1.1 parser and its helpers.

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
