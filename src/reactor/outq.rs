//! A connection's unsent output: a queue of byte chunks, some shared between many
//! connections (one encoded broadcast frame), some owned (replies).
//!
//! Bytes leave through vectored writes until the socket would block; the caller keeps
//! the total under the output bound. Chunks are always whole frames or whole HTTP
//! responses, so dropping every chunk but the partly written first one keeps the stream
//! well-formed (used before a final close frame).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most slices handed to one `writev`.
const MAX_IOVECS: usize = 64;

pub enum Chunk {
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the first chunk already written.
    offset: usize,
    /// Unsent bytes in all chunks.
    len: usize,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, chunk: Chunk) {
        let n = chunk.bytes().len();
        if n == 0 {
            return;
        }
        self.len += n;
        self.chunks.push_back(chunk);
    }

    /// Keeps only what must still go out to end the current frame cleanly.
    pub fn truncate_to_front(&mut self) {
        if self.offset == 0 {
            self.chunks.clear();
        } else {
            self.chunks.truncate(1);
        }
        self.len = self
            .chunks
            .front()
            .map_or(0, |c| c.bytes().len() - self.offset);
    }

    /// Writes until done or the writer would block. `Ok(true)` when empty.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, c) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                let b = c.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                count += 1;
            }
            let n = match w.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(n);
        }
        if self.chunks.capacity() > 16 {
            self.chunks.shrink_to_fit();
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let first = self
                .chunks
                .front()
                .expect("advance past the queue")
                .bytes()
                .len();
            let left = first - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.chunks.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `cap` bytes per call, then would block after `calls` calls.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.cap);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order() {
        let shared: Rc<[u8]> = Rc::from(&b"world"[..]);
        let mut q = OutQueue::default();
        q.push(Chunk::Owned(b"hello ".to_vec()));
        q.push(Chunk::Shared(shared.clone()));
        q.push(Chunk::Owned(b"!".to_vec()));
        let mut w = Trickle {
            out: vec![],
            cap: 4,
            calls: 2,
        };
        assert!(!q.write_to(&mut w).unwrap());
        assert_eq!(q.len(), 6);
        w.calls = 100;
        assert!(q.write_to(&mut w).unwrap());
        assert_eq!(w.out, b"hello world!");
        assert!(q.is_empty());
    }

    #[test]
    fn truncate_keeps_the_partly_written_chunk() {
        let mut q = OutQueue::default();
        q.push(Chunk::Owned(b"abcdef".to_vec()));
        q.push(Chunk::Owned(b"ghi".to_vec()));
        let mut w = Trickle {
            out: vec![],
            cap: 2,
            calls: 1,
        };
        q.write_to(&mut w).unwrap();
        q.truncate_to_front();
        assert_eq!(q.len(), 4);
        q.push(Chunk::Owned(b"X".to_vec()));
        let mut w2 = Trickle {
            out: vec![],
            cap: 100,
            calls: 10,
        };
        q.write_to(&mut w2).unwrap();
        assert_eq!(w2.out, b"cdefX");
        let mut q = OutQueue::default();
        q.push(Chunk::Owned(b"abc".to_vec()));
        q.truncate_to_front();
        assert!(q.is_empty());
    }
}
