//! TLS in the reactor: https and wss on the real server with certificates made here
//! (a test CA and a server certificate for localhost/127.0.0.1), clients built on rustls.

mod common;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::WebSocket;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A certificate authority and the server certificate it signed, as PEM files in `dir`.
struct Certs {
    ca: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path, tag: &str) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("chatterbox test CA {tag}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Certs {
        ca: ca_cert.der().clone(),
        cert: cert_path,
        key: key_path,
    }
}

fn start(dir: &TempDir, certs: &Certs) -> TestServer {
    let db = dir.0.join("chat.db");
    let (c, k) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    TestServer::start_with_db(&db, &["--tls-cert", c, "--tls-key", k])
}

fn client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A TLS connection whose handshake has completed (or the handshake's error).
fn connect(addr: SocketAddr, ca: &CertificateDer<'static>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client_config(ca), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One HTTP/1.1 request over TLS; returns the status and the body as JSON (or Null).
fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut tls = connect(addr, ca).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server ends with close_notify; a reset without it would be an error here.
    tls.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn token(addr: SocketAddr, ca: &CertificateDer<'static>, name: &str) -> String {
    let creds = json!({"username": name, "password": "password123"});
    let (s, _) = https(addr, ca, "POST", "/register", Some(creds.clone()));
    assert!(s == 201 || s == 409, "register: {s}");
    let (s, v) = https(addr, ca, "POST", "/login", Some(creds));
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

struct Wss {
    ws: WebSocket<Tls>,
}

impl Wss {
    fn open(addr: SocketAddr, ca: &CertificateDer<'static>, token: &str) -> Wss {
        let tls = connect(addr, ca).unwrap();
        let url = format!("wss://localhost:{}/ws?token={token}", addr.port());
        let (ws, resp) = tungstenite::client::client(url, tls).unwrap();
        assert_eq!(resp.status(), 101);
        let mut w = Wss { ws };
        assert_eq!(w.recv()["type"], "hello");
        w
    }

    fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a frame within 10 s") {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
                _ => {}
            }
        }
    }

    fn recv_type(&mut self, t: &str) -> Value {
        loop {
            let v = self.recv();
            if v["type"] == t {
                return v;
            }
            assert_ne!(v["type"], "error", "{v}");
        }
    }

    fn send(&mut self, v: Value) {
        self.ws
            .send(tungstenite::Message::Text(v.to_string().into()))
            .unwrap();
    }

    /// Sends a message to general; it must reach `other` and come back to us.
    fn chat_with(&mut self, other: &mut Wss, text: &str) {
        self.send(json!({"type": "send", "room": "general", "text": text}));
        assert_eq!(self.recv_type("message")["text"], text);
        assert_eq!(other.recv_type("message")["text"], text);
    }
}

#[test]
fn https_and_wss_carry_the_whole_protocol() {
    let dir = TempDir::new();
    let certs = make_certs(&dir.0, "1");
    let s = start(&dir, &certs);
    let (status, v) = https(s.addr, &certs.ca, "GET", "/healthz", None);
    assert_eq!((status, &v["status"]), (200, &json!("ok")));
    let (alice, bob) = (
        token(s.addr, &certs.ca, "alice"),
        token(s.addr, &certs.ca, "bob"),
    );
    let mut a = Wss::open(s.addr, &certs.ca, &alice);
    let mut b = Wss::open(s.addr, &certs.ca, &bob);
    a.chat_with(&mut b, "over TLS");
    // A reply larger than one TLS record (16 KiB) arrives whole.
    for i in 0..8 {
        b.chat_with(&mut a, &format!("{i}{}", "é".repeat(1990)));
    }
    a.send(json!({"type": "join", "room": "general"}));
    let joined = a.recv_type("joined");
    let history = joined["history"].as_array().unwrap();
    assert!(joined.to_string().len() > 32 * 1024);
    assert!(history.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .starts_with('7'));
    let (status, v) = https(s.addr, &certs.ca, "GET", "/rooms", None);
    assert_eq!((status, &v["error"]), (401, &json!("unauthorized")));
}

#[test]
fn plain_http_and_garbage_are_refused_while_others_chat() {
    let dir = TempDir::new();
    let certs = make_certs(&dir.0, "1");
    let s = start(&dir, &certs);
    let (alice, bob) = (
        token(s.addr, &certs.ca, "alice"),
        token(s.addr, &certs.ca, "bob"),
    );
    let mut a = Wss::open(s.addr, &certs.ca, &alice);
    let mut b = Wss::open(s.addr, &certs.ca, &bob);
    // Plain HTTP to the TLS port: a readable 400, then the end.
    let mut plain = TcpStream::connect(s.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    plain.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");
    assert!(got.contains("https://"), "{got:?}");
    // A handshake record with garbage inside: a TLS alert at most, then the end.
    let mut bad = TcpStream::connect(s.addr).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bad.write_all(b"\x16\x03\x01\x00\x10this is no hello")
        .unwrap();
    let t0 = Instant::now();
    let mut reply = Vec::new();
    let _ = bad.read_to_end(&mut reply);
    assert!(t0.elapsed() < Duration::from_secs(4), "closed promptly");
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "an alert or nothing: {reply:?}"
    );
    // A client that never finishes its handshake ends at the request timeout.
    a.chat_with(&mut b, "still here");
    b.chat_with(&mut a, "me too");
    assert_eq!(https(s.addr, &certs.ca, "GET", "/healthz", None).0, 200);
}

#[test]
fn a_stalled_handshake_ends_at_the_request_timeout() {
    let dir = TempDir::new();
    let certs = make_certs(&dir.0, "1");
    let db = dir.0.join("chat.db");
    let (c, k) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let s = TestServer::start_with_db(
        &db,
        &[
            "--tls-cert",
            c,
            "--tls-key",
            k,
            "--request-timeout-ms",
            "500",
        ],
    );
    let mut silent = TcpStream::connect(s.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Half a ClientHello, then nothing.
    silent.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let dir = TempDir::new();
    let old = make_certs(&dir.0, "old");
    let mut s = start(&dir, &old);
    let (alice, bob) = (
        token(s.addr, &old.ca, "alice"),
        token(s.addr, &old.ca, "bob"),
    );
    let mut a = Wss::open(s.addr, &old.ca, &alice);
    let mut b = Wss::open(s.addr, &old.ca, &bob);
    let hup = |s: &TestServer| {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(s.pid(), libc::SIGHUP) };
    };
    // A broken file on reload keeps the old certificate.
    std::fs::write(&old.cert, "not a certificate").unwrap();
    hup(&s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(https(s.addr, &old.ca, "GET", "/healthz", None).0, 200);
    // A new certificate from another CA: new handshakes use it, open sockets go on.
    let new = make_certs(&dir.0, "new");
    hup(&s);
    let t0 = Instant::now();
    while connect(s.addr, &new.ca).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(5), "not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        connect(s.addr, &old.ca).is_err(),
        "the old certificate is no longer served"
    );
    a.chat_with(&mut b, "across the reload");
    let mut c = Wss::open(s.addr, &new.ca, &alice);
    b.chat_with(&mut c, "new socket, new certificate");
    assert!(s.terminate().success());
}

#[test]
fn a_bad_certificate_at_start_is_a_clear_error_and_exit_code_2() {
    let dir = TempDir::new();
    let certs = make_certs(&dir.0, "1");
    std::fs::write(
        &certs.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.0.join("chat.db"))
        .arg("--tls-cert")
        .arg(&certs.cert)
        .arg("--tls-key")
        .arg(&certs.key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS certificate"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a cert without a key is refused"
    );
}

#[test]
fn a_burst_of_handshakes_runs_beside_the_chat_and_all_complete() {
    let dir = TempDir::new();
    let certs = make_certs(&dir.0, "1");
    let s = start(&dir, &certs);
    let alice = token(s.addr, &certs.ca, "alice");
    let bob = token(s.addr, &certs.ca, "bob");
    let mut a = Wss::open(s.addr, &certs.ca, &alice);
    let mut b = Wss::open(s.addr, &certs.ca, &bob);
    // Far more new clients at once than handshake threads (TLS_HANDSHAKE_THREADS).
    let addr = s.addr;
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let ca = certs.ca.clone();
            std::thread::spawn(move || https(addr, &ca, "GET", "/healthz", None).0)
        })
        .collect();
    a.chat_with(&mut b, "during the burst");
    for w in workers {
        assert_eq!(w.join().unwrap(), 200);
    }
}
