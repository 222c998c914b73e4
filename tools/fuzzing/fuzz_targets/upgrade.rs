//! The WebSocket upgrade validator on whatever the HTTP parser accepts.
#![no_main]

use chatterbox::http::{parse, Limits};
use chatterbox::ws::validate_upgrade;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_header_bytes: 8192,
    max_headers: 64,
    max_body_bytes: 65536,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, req))) = parse(data, &LIMITS) {
        if let Ok(accept) = validate_upgrade(&req, &["https://allowed.example".to_string()]) {
            assert_eq!(accept.len(), 28);
        }
    }
});
