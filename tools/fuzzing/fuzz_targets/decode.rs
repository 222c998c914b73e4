//! The client-message decoder on arbitrary text.
#![no_main]

use chatterbox::chat::protocol::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = decode(text) {
            assert!(e.req.as_ref().is_none_or(|r| r.len() <= 64));
        }
    }
});
