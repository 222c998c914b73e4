//! A connection's unsent output: a queue of byte chunks, some shared between many
//! connections (one encoded broadcast frame), some owned (replies).
//!
//! Bytes leave through vectored writes until the socket would block. Chunks are always
//! whole frames or whole HTTP responses, so dropping every chunk but the partly written
//! first one keeps the stream well-formed (used before a final close frame).
//!
//! Every queued byte is counted once, process-wide (`queued_total`): an owned chunk
//! while it exists, a shared frame while any queue still holds it. That total is what
//! the reactor's overload policy looks at; each queue also knows its own unshared bytes.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most slices handed to one `writev` (Linux's IOV_MAX): everything a busy socket has
/// queued leaves in as few system calls as possible, so the more load, the more frames
/// each call carries.
const MAX_IOVECS: usize = 1024;
/// Slices kept on the stack for the common case of a short queue.
const SMALL_IOVECS: usize = 64;

thread_local! {
    /// Bytes of output held by every queue of this (reactor) thread, shared frames once.
    static QUEUED: Cell<usize> = const { Cell::new(0) };
}

/// Bytes of output queued in this thread, each shared frame counted once.
pub fn queued_total() -> usize {
    QUEUED.with(Cell::get)
}

/// Bytes counted in `QUEUED` for as long as this value lives.
pub struct Counted(Box<[u8]>);

impl Counted {
    pub fn new(bytes: Vec<u8>) -> Counted {
        QUEUED.with(|q| q.set(q.get() + bytes.len()));
        Counted(bytes.into_boxed_slice())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        QUEUED.with(|q| q.set(q.get() - self.0.len()));
    }
}

pub enum Chunk {
    /// One encoded broadcast frame, in every recipient's queue.
    Shared(Rc<Counted>),
    /// Bytes for this connection alone (replies, pongs, close frames).
    Owned(Counted),
}

impl Chunk {
    pub fn owned(bytes: Vec<u8>) -> Chunk {
        Chunk::Owned(Counted::new(bytes))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => &b.0,
            Chunk::Owned(b) => &b.0,
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
    /// Bytes of owned chunks (this connection's alone, unlike shared frames).
    owned: usize,
}

impl OutQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued for this connection alone (shared frames excluded).
    pub fn unshared(&self) -> usize {
        self.owned
    }

    pub fn push(&mut self, chunk: Chunk) {
        let n = chunk.bytes().len();
        if n == 0 {
            return;
        }
        self.len += n;
        if matches!(chunk, Chunk::Owned(_)) {
            self.owned += n;
        }
        self.chunks.push_back(chunk);
    }

    fn pop_front(&mut self) {
        if let Some(Chunk::Owned(b)) = self.chunks.pop_front() {
            self.owned -= b.0.len();
        }
    }

    /// Keeps only what must still go out to end the current frame cleanly.
    pub fn truncate_to_front(&mut self) {
        let keep = usize::from(self.offset > 0);
        while self.chunks.len() > keep {
            if let Some(Chunk::Owned(b)) = self.chunks.pop_back() {
                self.owned -= b.0.len();
            }
        }
        self.len = self
            .chunks
            .front()
            .map_or(0, |c| c.bytes().len() - self.offset);
    }

    /// Writes until done or the writer would block. `Ok(true)` when empty. `calls`
    /// counts the write system calls made.
    pub fn write_to(&mut self, w: &mut impl Write, calls: &mut u64) -> io::Result<bool> {
        // Most writes carry a few frames: a small array on the stack serves them, and
        // only a long queue pays for a vector (never a 16 KiB array per call).
        while !self.chunks.is_empty() {
            *calls += 1;
            let count = self.chunks.len().min(MAX_IOVECS);
            let mut small = [IoSlice::new(&[]); SMALL_IOVECS];
            let mut large: Vec<IoSlice> = Vec::new();
            let slices: &mut [IoSlice] = if count <= SMALL_IOVECS {
                &mut small[..count]
            } else {
                large.resize(count, IoSlice::new(&[]));
                &mut large[..]
            };
            for (i, c) in self.chunks.iter().take(count).enumerate() {
                let b = c.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
            }
            let n = match w.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(n);
        }
        // Drained: an idle connection keeps no queue storage at all.
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
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
                self.pop_front();
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
        let shared = Rc::new(Counted::new(b"world".to_vec()));
        let mut q = OutQueue::default();
        q.push(Chunk::owned(b"hello ".to_vec()));
        q.push(Chunk::Shared(shared.clone()));
        q.push(Chunk::owned(b"!".to_vec()));
        assert_eq!((q.len(), q.unshared()), (12, 7));
        let mut w = Trickle {
            out: vec![],
            cap: 4,
            calls: 2,
        };
        assert!(!q.write_to(&mut w, &mut 0).unwrap());
        assert_eq!(q.len(), 6);
        w.calls = 100;
        assert!(q.write_to(&mut w, &mut 0).unwrap());
        assert_eq!(w.out, b"hello world!");
        assert!(q.is_empty());
        assert_eq!(q.unshared(), 0);
    }

    #[test]
    fn truncate_keeps_the_partly_written_chunk() {
        let mut q = OutQueue::default();
        q.push(Chunk::owned(b"abcdef".to_vec()));
        q.push(Chunk::owned(b"ghi".to_vec()));
        let mut w = Trickle {
            out: vec![],
            cap: 2,
            calls: 1,
        };
        q.write_to(&mut w, &mut 0).unwrap();
        q.truncate_to_front();
        assert_eq!(q.len(), 4);
        q.push(Chunk::owned(b"X".to_vec()));
        let mut w2 = Trickle {
            out: vec![],
            cap: 100,
            calls: 10,
        };
        q.write_to(&mut w2, &mut 0).unwrap();
        assert_eq!(w2.out, b"cdefX");
        let mut q = OutQueue::default();
        q.push(Chunk::owned(b"abc".to_vec()));
        q.truncate_to_front();
        assert!(q.is_empty());
    }
}

#[cfg(test)]
mod counting {
    use super::*;

    #[test]
    fn a_shared_frame_counts_once_until_its_last_queue_lets_go() {
        let base = queued_total();
        let frame = Rc::new(Counted::new(vec![0u8; 100]));
        let mut a = OutQueue::default();
        let mut b = OutQueue::default();
        a.push(Chunk::Shared(Rc::clone(&frame)));
        b.push(Chunk::Shared(Rc::clone(&frame)));
        a.push(Chunk::owned(vec![0u8; 10]));
        drop(frame);
        assert_eq!(queued_total() - base, 110);
        assert_eq!((a.unshared(), b.unshared()), (10, 0));
        a.write_to(&mut Vec::new(), &mut 0).unwrap();
        assert_eq!(queued_total() - base, 100, "b still holds the frame");
        b.truncate_to_front();
        assert_eq!(queued_total(), base);
    }
}
