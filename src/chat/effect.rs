//! What the Hub asks of the reactor: every entry point returns these, and the reactor
//! carries them out (queue output, hand a job to a worker, close a socket).

use crate::auth::pool::AuthJob;
use crate::http::Response;
use crate::id::{ConnId, RoomId, UserId};
use crate::store::{ReadJob, StoreCmd};
use serde_json::Value;

/// What the reactor must do on the Hub's behalf.
#[derive(Debug)]
pub enum Effect {
    /// One JSON frame to one WebSocket.
    Send {
        conn: ConnId,
        msg: Value,
    },
    /// One JSON frame, encoded once, to every socket in a room but `except`.
    /// `ephemeral` news (typing, presence) may be skipped for readers that lag.
    Broadcast {
        room: RoomId,
        msg: Value,
        except: Except,
        ephemeral: bool,
    },
    /// The answer to an HTTP request the connection is waiting on.
    Respond {
        conn: ConnId,
        resp: Response,
    },
    /// Close a WebSocket with this code.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Start a chunked HTTP response (its body follows as `Chunk`s).
    ChunkedStart {
        conn: ConnId,
        resp: Response,
    },
    /// Part of a chunked response; `last` ends it (and the connection).
    Chunk {
        conn: ConnId,
        bytes: Vec<u8>,
        last: bool,
    },
    /// End a chunked response without its last chunk: the client sees it cut short.
    ChunkedAbort {
        conn: ConnId,
    },
    /// The socket's requests may be read again (a join it waited on was answered).
    Resume {
        conn: ConnId,
    },
    /// Send `resp`'s head, then the file's bytes as the file worker reads them.
    Download {
        conn: ConnId,
        resp: Response,
        download: super::files::Download,
    },
    /// A job for the file worker.
    File(crate::files::FileJob),
    Store(StoreCmd),
    Read(ReadJob),
    /// A token was looked up: handle the request or WebSocket upgrade that waited for it
    /// again, or, when the look-up failed, answer it with `refusal` (a 503: the token may
    /// well be good, and a 401 would log the web UI out).
    Upgrade {
        conn: ConnId,
        refusal: Option<crate::http::Response>,
    },
    /// Cluster mode: an event for the other nodes.
    Publish(crate::store::event::Envelope),
    Auth(AuthJob),
}

/// Who a broadcast skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Except {
    Nobody,
    Conn(ConnId),
    /// Every socket of this user (typing and presence are not echoed to oneself).
    User(UserId),
}
