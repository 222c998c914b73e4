//! Property tests over the parsers that face the network: the HTTP request parser, the
//! upgrade validator and the client-message decoder. Random and mutated inputs must never
//! panic, and valid inputs must parse the same however they are split. A small seeded
//! generator and a fixed number of cases per property keep runs reproducible: the same
//! inputs every run, whatever the machine's speed (set PROPTEST_SEED for other inputs,
//! PROPTEST_CASES to multiply the number of cases); `tools/fuzz` runs coverage-guided
//! fuzzing of the same entry points.

use chatterbox::chat::protocol::decode;
use chatterbox::http::{parse, HttpError, Limits};
use chatterbox::ws::validate_upgrade;

const LIMITS: Limits = Limits {
    max_header_bytes: 8192,
    max_headers: 64,
    max_body_bytes: 65536,
    max_upload_bytes: 1 << 20,
};

/// xorshift64*: small, fast, and good enough to drive input generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn token(&mut self, alphabet: &[u8], max: usize) -> String {
        let n = 1 + self.below(max);
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }
}

fn seed() -> u64 {
    std::env::var("PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0ff_ee12_3457)
}

/// `base` cases, times PROPTEST_CASES (default 1).
fn cases(base: u64) -> u64 {
    let factor: u64 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base * factor.max(1)
}

/// Cases per property: each runs in about a second or less in a debug build.
const HTTP_CASES: u64 = 20_000;
const UPGRADE_CASES: u64 = 100_000;
const DECODER_CASES: u64 = 10_000;

const TCHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const PCHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_./%=&?";

/// A valid request with random method, path, headers and body.
fn valid_request(r: &mut Rng) -> Vec<u8> {
    let method = r
        .pick(&["GET", "POST", "PUT", "DELETE", "HEAD"])
        .to_string();
    let path = format!("/{}", r.token(PCHARS, 40));
    let mut req = format!("{method} {path} HTTP/1.{}\r\n", r.below(2));
    for _ in 0..r.below(10) {
        req.push_str(&format!(
            "X-{}: {}\r\n",
            r.token(TCHARS, 12),
            r.token(TCHARS, 30)
        ));
    }
    let body = if method == "POST" || method == "PUT" || r.below(4) == 0 {
        let b = {
            let n = r.below(300);
            r.bytes(n)
        };
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        b
    } else {
        Vec::new()
    };
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(&body);
    out
}

fn mutate(r: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + r.below(6) {
        if v.is_empty() {
            v.push(r.next() as u8);
            continue;
        }
        let i = r.below(v.len());
        match r.below(5) {
            0 => v[i] = r.next() as u8,
            1 => {
                v.remove(i);
            }
            2 => v.insert(i, *r.pick(b"\r\n: \0\x7f%")),
            3 => {
                let j = r.below(v.len());
                let chunk: Vec<u8> = v[i.min(j)..i.max(j)].to_vec();
                v.splice(i..i, chunk);
            }
            _ => v.truncate(i),
        }
    }
    v
}

#[test]
fn http_parser_never_panics_and_is_split_invariant() {
    let mut r = Rng(seed());
    for _ in 0..cases(HTTP_CASES) {
        let valid = valid_request(&mut r);
        let (n, whole) = parse(&valid, &LIMITS)
            .unwrap_or_else(|e| panic!("{e:?} for {:?}", String::from_utf8_lossy(&valid)))
            .expect("complete");
        assert_eq!(n, valid.len());
        let cut = r.below(valid.len());
        assert_eq!(
            parse(&valid[..cut], &LIMITS),
            Ok(None),
            "prefix of {cut} bytes"
        );
        // Trailing bytes of the next request never change this one.
        let mut more = valid.clone();
        more.extend_from_slice(&{
            let n = r.below(50);
            r.bytes(n)
        });
        assert_eq!(parse(&more, &LIMITS).unwrap().unwrap(), (n, whole));
        // Mutations and noise: any answer but a panic, and never past the input.
        let m = mutate(&mut r, valid);
        if let Ok(Some((n, _))) = parse(&m, &LIMITS) {
            assert!(n <= m.len());
        }
        let noise = {
            let n = r.below(200);
            r.bytes(n)
        };
        if let Ok(Some((n, _))) = parse(&noise, &LIMITS) {
            assert!(n <= noise.len());
        }
    }
}

#[test]
fn oversized_inputs_are_refused_not_buffered_forever() {
    let mut r = Rng(seed() ^ 1);
    for _ in 0..200 {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() <= LIMITS.max_header_bytes {
            req.extend_from_slice(
                format!("X-{}: {}\r\n", r.token(TCHARS, 8), r.token(TCHARS, 200)).as_bytes(),
            );
        }
        let e = parse(&req, &LIMITS).unwrap_err();
        assert_eq!(e, HttpError::HeadersTooLarge);
    }
}

#[test]
fn upgrade_validation_never_panics() {
    let mut r = Rng(seed() ^ 2);
    let good = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://h\r\n\r\n";
    let (mut accepted, mut refused) = (0u64, 0u64);
    let n = cases(UPGRADE_CASES);
    for _ in 0..n {
        let input = mutate(&mut r, good.as_bytes().to_vec());
        if let Ok(Some((_, req))) = parse(&input, &LIMITS) {
            match validate_upgrade(&req, &[]) {
                Ok(accept) => {
                    // The answer is always derived from the key the request carries.
                    let key = req.header("sec-websocket-key").unwrap().trim();
                    assert_eq!(
                        accept,
                        tungstenite::handshake::derive_accept_key(key.as_bytes())
                    );
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    let (_, req) = parse(good.as_bytes(), &LIMITS).unwrap().unwrap();
    assert_eq!(
        validate_upgrade(&req, &[]).unwrap(),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "RFC 6455's example key"
    );
    // Both outcomes were exercised: mutations that leave the upgrade valid and ones
    // that break it.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused of {n}"
    );
}

#[test]
fn message_decoder_never_panics_and_decodes_what_clients_send() {
    let mut r = Rng(seed() ^ 3);
    let samples = [
        r#"{"type":"send","room":"general","text":"hi","client_id":"c","ref":"1"}"#,
        r#"{"type":"join","room":"a","since":12}"#,
        r#"{"type":"edit","id":5,"text":"x"}"#,
        r#"{"type":"seen","room":"a","id":9}"#,
        r#"{"type":"history","room":"a","before":10,"limit":5}"#,
        r#"{"type":"typing","room":"a","active":true}"#,
        r#"{"type":"dm","to":"bob","text":"yo"}"#,
        r#"{"type":"invite","room":"a","user":"bob"}"#,
        r#"{"type":"create_room","room":"a","private":true}"#,
    ];
    for s in samples {
        assert!(decode(s).is_ok(), "{s}");
    }
    for _ in 0..cases(DECODER_CASES) {
        let base = {
            let i = r.below(samples.len());
            samples[i].as_bytes().to_vec()
        };
        let m = mutate(&mut r, base);
        if let Ok(text) = std::str::from_utf8(&m) {
            let _ = decode(text);
        }
        let noise = {
            let n = r.below(100);
            r.bytes(n)
        };
        let _ = decode(&String::from_utf8_lossy(&noise));
        let depth = r.below(5000);
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(decode(&nested).is_err());
    }
}
