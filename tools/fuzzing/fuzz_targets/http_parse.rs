//! The HTTP request parser on arbitrary bytes: no panic, never past the input, and the
//! same answer for the input followed by anything.
#![no_main]

use chatterbox::http::{parse, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_header_bytes: 8192,
    max_headers: 64,
    max_body_bytes: 65536,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((n, req))) = parse(data, &LIMITS) {
        assert!(n <= data.len());
        let mut more = data[..n].to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&more, &LIMITS).unwrap().unwrap(), (n, req));
    }
});
