//! Files on the wire: an upload's body goes from the socket to the file worker in
//! pieces, never more than `UPLOAD_WINDOW_BYTES` ahead of the disk; a download is read
//! from the worker a piece at a time, only while the connection's output is low. Either
//! way a file never sits whole in memory and a slow peer or disk slows only itself.

use super::conn::{ConnState, Phase};
use super::outq::Chunk;
use super::Server;
use crate::chat::Download;
use crate::config::{DOWNLOAD_CHUNK_BYTES, EXPORT_LOW_WATER, UPLOAD_WINDOW_BYTES};
use crate::files::{FileError, FileJob};
use crate::http::{Request, Response};
use crate::id::ConnId;
use std::io::{self, Read};

/// An upload in progress on an HTTP connection.
#[derive(Debug)]
pub struct UploadState {
    /// Body bytes still to read from the client.
    pub remaining: u64,
    /// The whole body must be here by then (`MIN_UPLOAD_BYTES_PER_SEC`).
    pub deadline: std::time::Instant,
    /// Bytes handed to the worker and not yet written.
    pub in_flight: usize,
}

/// A download in progress: the next offset, the end (exclusive), and whether a read is
/// out at the worker.
#[derive(Debug)]
pub struct DownloadState {
    pub id: String,
    pub next: u64,
    pub end: u64,
    pub reading: bool,
}

impl Server {
    /// `POST /files`: the Hub decides from the head alone; then the body streams.
    pub(super) fn start_upload(&mut self, key: usize, req: &Request) {
        let id = self.conns[key].id;
        match self.hub.begin_upload(id, req, self.now) {
            Err(resp) => {
                let conn = &mut self.conns[key];
                if let ConnState::Http(h) = &mut conn.state {
                    // The refused body may follow: it is not read, the connection ends.
                    h.keep_alive = false;
                    conn.linger = true;
                }
                self.respond(key, resp);
            }
            Ok((file, size)) => {
                if self
                    .files
                    .send(FileJob::Begin {
                        conn: id,
                        id: file,
                        size,
                    })
                    .is_err()
                {
                    self.hub.upload_gone(id);
                    let r = Response::error(503, "unavailable", "file storage is unavailable");
                    return self.respond(key, r);
                }
                if req.header_has_token("expect", "100-continue") {
                    // The client waits for this before sending the body (RFC 9110 §10.1.1).
                    self.enqueue(key, Chunk::owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
                }
                let now = self.now.mono;
                let allowed = self.config.request_timeout
                    + std::time::Duration::from_secs(
                        size / crate::config::MIN_UPLOAD_BYTES_PER_SEC,
                    );
                if let ConnState::Http(h) = &mut self.conns[key].state {
                    h.upload = Some(UploadState {
                        remaining: size,
                        deadline: now + allowed,
                        in_flight: 0,
                    });
                    // The request timeout now counts from the last bytes that came.
                    h.phase = Phase::Reading;
                    h.since = now;
                }
                self.read_upload(key);
            }
        }
    }

    /// Moves an upload's bytes from the buffer and the socket to the worker, up to the
    /// window; at the end of the body, asks the worker to finish the file.
    pub(super) fn read_upload(&mut self, key: usize) {
        let now = self.now.mono;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let id = conn.id;
        let ConnState::Http(h) = &mut conn.state else {
            return;
        };
        let mut gone = false;
        while let Some(up) = h.upload.as_mut().filter(|u| u.remaining > 0) {
            if up.in_flight >= UPLOAD_WINDOW_BYTES {
                // The worker is behind: the client waits (TCP pushes back), not memory.
                return;
            }
            let want = (up.remaining as usize).min(DOWNLOAD_CHUNK_BYTES);
            let bytes = if !h.buf.is_empty() {
                let n = h.buf.len().min(want);
                h.buf.drain(..n).collect::<Vec<u8>>()
            } else {
                let mut b = vec![0u8; want];
                match conn.stream.read(&mut b) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => {
                        b.truncate(n);
                        b
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            };
            up.remaining -= bytes.len() as u64;
            up.in_flight += bytes.len();
            h.since = now;
            if self.files.send(FileJob::Data { conn: id, bytes }).is_err() {
                gone = true;
                break;
            }
        }
        if gone {
            // The client left mid-body (or the worker is gone): nothing to answer.
            self.upload_ended(key);
            return self.doom(key);
        }
        if h.upload.as_ref().is_some_and(|u| u.remaining == 0) && h.phase == Phase::Reading {
            // The whole body is with the worker: it finishes the file, the Hub answers.
            h.phase = Phase::Waiting;
            let _ = self.files.send(FileJob::End { conn: id });
        }
    }

    /// The worker wrote `n` more bytes of this connection's upload.
    pub(super) fn upload_acked(&mut self, conn: ConnId, n: usize) {
        let Some(key) = self.live(conn) else {
            return;
        };
        if let ConnState::Http(h) = &mut self.conns[key].state {
            if let Some(up) = h.upload.as_mut() {
                let was_full = up.in_flight >= UPLOAD_WINDOW_BYTES;
                up.in_flight = up.in_flight.saturating_sub(n);
                if was_full && up.remaining > 0 {
                    // No new readiness edge will come for bytes already in the socket.
                    self.again.push(key);
                }
            }
        }
    }

    /// An upload that will not be finished (its connection is closing): the worker
    /// drops the partial file and the Hub its reservation.
    pub(super) fn upload_ended(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let id = conn.id;
        if let ConnState::Http(h) = &mut conn.state {
            if h.upload.take().is_some() {
                let _ = self.files.send(FileJob::Abort { conn: id });
                self.hub.upload_gone(id);
            }
        }
    }

    /// Starts a download the Hub allowed: the head now, the bytes as they are read.
    pub(super) fn start_download(&mut self, key: usize, resp: Response, d: Download) {
        self.metrics.count_status(resp.status);
        let stopping = self.shutdown.load(std::sync::atomic::Ordering::Relaxed);
        let ConnState::Http(h) = &mut self.conns[key].state else {
            return;
        };
        let keep_alive = h.keep_alive && !stopping;
        h.keep_alive = keep_alive;
        h.download = Some(DownloadState {
            id: d.id,
            next: d.first,
            end: d.first + d.len,
            reading: false,
        });
        self.enqueue(key, Chunk::owned(resp.head(d.len, keep_alive)));
        self.pull_file(key);
    }

    /// Asks the worker for the next piece of a download once the output is low.
    pub(super) fn pull_file(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let low = conn.out.len() < EXPORT_LOW_WATER;
        let id = conn.id;
        let ConnState::Http(h) = &mut conn.state else {
            return;
        };
        let Some(d) = h.download.as_mut() else {
            return;
        };
        if d.reading || !low || conn.doomed {
            return;
        }
        d.reading = true;
        let len = ((d.end - d.next) as usize).min(DOWNLOAD_CHUNK_BYTES);
        let job = FileJob::Read {
            conn: id,
            id: d.id.clone(),
            offset: d.next,
            len,
        };
        if self.files.send(job).is_err() {
            self.doom(key);
        }
    }

    /// A piece of a download came from the worker.
    pub(super) fn file_chunk(&mut self, conn: ConnId, result: Result<Vec<u8>, FileError>) {
        let Some(key) = self.live(conn) else {
            return;
        };
        let ConnState::Http(h) = &mut self.conns[key].state else {
            return;
        };
        let Some(d) = h.download.as_mut() else {
            return;
        };
        let bytes = match result {
            // A file shorter than its record (or unreadable): the response cannot be
            // completed, so the connection ends and the client sees it cut short.
            Ok(b) if !b.is_empty() => b,
            other => {
                // (Its message was deleted meanwhile, or the disk failed.)
                log::info!("download of {} cut at byte {}: {other:?}", d.id, d.next);
                return self.doom(key);
            }
        };
        d.reading = false;
        d.next += bytes.len() as u64;
        let done = d.next >= d.end;
        if done {
            h.download = None;
        }
        self.enqueue(key, Chunk::owned(bytes));
        if done {
            self.response_complete(key);
        } else {
            self.pull_file(key);
        }
    }
}
