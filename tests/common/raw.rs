//! Byte-level clients for tests that must send what no library would, or connect from
//! another loopback address.

use super::TestServer;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// A WebSocket opened by hand so that tests can send frames no library would.
pub struct RawWs {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

impl RawWs {
    pub fn open(server: &TestServer, token: &str) -> RawWs {
        RawWs::open_on(TcpStream::connect(server.addr).unwrap(), token)
    }

    /// A WebSocket whose receive buffer is fixed at `rcvbuf` bytes: a client that stops
    /// reading then stops taking bytes soon, instead of letting the kernel grow its buffer
    /// to megabytes first.
    pub fn open_small(server: &TestServer, token: &str, rcvbuf: i32) -> RawWs {
        RawWs::open_on(connect_with_rcvbuf(server.addr, rcvbuf).unwrap(), token)
    }

    fn open_on(mut s: TcpStream, token: &str) -> RawWs {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(buf.starts_with(b"HTTP/1.1 101"));
        buf.drain(..end);
        let mut ws = RawWs { s, buf };
        let (op, hello) = ws.read_frame().unwrap();
        assert_eq!(op, 1);
        assert!(String::from_utf8_lossy(&hello).contains("hello"));
        ws
    }

    /// Reads one frame: (opcode, payload); None at EOF.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                let len7 = (self.buf[1] & 0x7f) as usize;
                let (hlen, len) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => (
                        10,
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n),
                };
                if hlen != usize::MAX && self.buf.len() >= hlen + len {
                    let payload = self.buf[hlen..hlen + len].to_vec();
                    self.buf.drain(..hlen + len);
                    return Some((op, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads until a close frame and returns its code (None: closed without one).
    pub fn close_code(&mut self) -> Option<u16> {
        while let Some((op, payload)) = self.read_frame() {
            if op == 8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        None
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }
}

/// Encodes a client frame. `first` is the whole first byte (FIN, RSV, opcode).
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

pub fn text(payload: &[u8]) -> Vec<u8> {
    frame(0x81, payload, true)
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.2, …), so that a
/// test can play several clients' addresses.
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only");
    };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr values
    // live across the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// A TCP connection whose receive buffer is set before connecting (so the window is
/// small from the start and the kernel does not grow it).
pub fn connect_with_rcvbuf(to: SocketAddr, rcvbuf: i32) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only");
    };
    let remote = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let size = &rcvbuf as *const i32 as *const libc::c_void;
        let n = std::mem::size_of::<i32>() as libc::socklen_t;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size, n) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}
