//! A connection's byte stream: the TCP socket itself, or TLS over it.
//!
//! Both give the HTTP and WebSocket code plain bytes through `Read` and take them
//! through `Write`, so nothing above this file knows whether a connection is encrypted.
//! TLS is rustls's state machine driven by our non-blocking socket: records come in
//! with `read_tls`, go out with `write_tls`, and every byte still goes through the
//! connection's one output queue (plaintext is handed to rustls only as fast as the
//! socket takes its records, so rustls never holds more than one write's worth).

use mio::net::TcpStream;
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read, Write};

/// Most plaintext handed to rustls per write: one full record plus change, so the
/// queue, not rustls, holds what the peer has not taken.
const TLS_WRITE_CHUNK: usize = 16 * 1024;

/// The answer to plain HTTP sent to the TLS port (curl http://… by mistake).
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 45\r\n\r\nThis port speaks TLS: use https:// or wss://\n";

pub struct Stream {
    pub tcp: TcpStream,
    tls: Option<Box<ServerConnection>>,
    /// The first byte has been looked at (a TLS handshake starts with 0x16).
    sniffed: bool,
    /// Handshake records were read and wait to be processed off the reactor
    /// (`take_handshake`).
    work: bool,
    /// The rustls state is with a handshake worker: nothing is read or written.
    away: bool,
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            tls: None,
            sniffed: true,
            work: false,
            away: false,
        }
    }

    pub fn tls(tcp: TcpStream, mut tls: ServerConnection) -> Stream {
        tls.set_buffer_limit(Some(TLS_WRITE_CHUNK * 2));
        Stream {
            tcp,
            tls: Some(Box::new(tls)),
            sniffed: false,
            work: false,
            away: false,
        }
    }

    /// The rustls state, when handshake records wait to be processed: it goes to a
    /// worker, and the stream reads and writes nothing until `restore`.
    pub fn take_handshake(&mut self) -> Option<Box<ServerConnection>> {
        if !std::mem::take(&mut self.work) {
            return None;
        }
        self.away = self.tls.is_some();
        self.tls.take()
    }

    /// The rustls state back from a worker.
    pub fn restore(&mut self, tls: Box<ServerConnection>) {
        self.tls = Some(tls);
        self.away = false;
    }

    /// Whether encrypted bytes (handshake messages, alerts, records) wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes what rustls holds. `Ok(true)` when nothing is left (nothing is ours to
    /// write while the state is away).
    pub fn flush_tls(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Starts a TLS close (`close_notify`), sent with the last output.
    pub fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some() || self.away
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.sniffed && self.tls.is_some() {
            let mut first = [0u8; 1];
            match self.tcp.peek(&mut first) {
                Ok(0) => return Ok(0),
                Ok(_) => self.sniffed = true,
                Err(e) => return Err(e),
            }
            if first[0].is_ascii_alphabetic() {
                // Someone speaks plain HTTP here: say so in words they can read, then
                // end the connection without any TLS bytes.
                log::debug!("plain HTTP on the TLS port");
                let _ = self.tcp.write(PLAIN_ON_TLS);
                self.tls = None;
                // Unread input would turn our close into a reset that loses the answer.
                let mut scratch = [0u8; 4096];
                for _ in 0..16 {
                    if !matches!(self.tcp.read(&mut scratch), Ok(n) if n > 0) {
                        break;
                    }
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP on TLS",
                ));
            }
        }
        if self.away || self.work {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer closed without close_notify: the same end of input to us.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext: take more records from the socket.
            match tls.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(0),
                Ok(_) if tls.is_handshaking() => {
                    // Costly: a worker processes it (`take_handshake`).
                    self.work = true;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // A bad handshake or record: the alert rustls queued goes out
                        // with the close.
                        log::debug!("TLS error: {e}");
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Plain: `writev`. TLS: first the records already made must leave; then up to
    /// `TLS_WRITE_CHUNK` of plaintext becomes records, sent at once if the socket takes
    /// them. `WouldBlock` while earlier records are stuck, so the queue keeps the rest.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.away {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.tls.is_none() {
            return self.tcp.write_vectored(bufs);
        }
        if !self.flush_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let tls = self.tls.as_mut().expect("checked above");
        let mut taken = 0;
        for b in bufs {
            let room = TLS_WRITE_CHUNK - taken;
            if room == 0 {
                break;
            }
            let n = tls.writer().write(&b[..b.len().min(room)])?;
            taken += n;
            if n < b.len() {
                break;
            }
        }
        // Records the socket does not take now wait in rustls; the next call (or
        // `flush_tls`) sends them before any new plaintext is taken.
        self.flush_tls()?;
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().map(|_| ())
    }
}
