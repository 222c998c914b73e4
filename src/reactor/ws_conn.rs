//! WebSocket connections: reading frames through tungstenite (at most `READ_BUDGET`
//! messages per pass), handing each text message to the Hub, and closing.

use super::conn::{self, ConnState};
use super::outq::Chunk;
use super::Server;
use std::io;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Frame};

/// WebSocket messages (pings included) read per connection per pass; the rest wait for
/// the next pass.
pub const READ_BUDGET: usize = 64;

impl Server {
    /// Turns an upgraded HTTP connection into a WebSocket: the 101 goes out first, then
    /// whatever the Hub said on opening it (`hello`, presence).
    pub(super) fn open_ws(&mut self, key: usize, accept: &str, fx: Vec<crate::chat::Effect>) {
        let conn = &mut self.conns[key];
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let leftover = std::mem::take(&mut http.buf);
        conn.state = ConnState::Ws(Box::new(conn::WsConn::new(
            leftover,
            self.now.mono,
            self.config.max_frame_bytes,
            self.config.ws_frame_burst,
        )));
        let ip = self.conns[key].ip;
        self.conns[key].unauthenticated = false;
        self.release_pending(ip);
        self.enqueue(key, Chunk::owned(crate::ws::upgrade_response(accept)));
        self.metrics.count_status(101);
        self.metrics.ws_opened += 1;
        self.apply(fx);
        self.rearm(key);
        // Frames may have arrived with the upgrade request.
        self.again.push(key);
    }

    pub(super) fn read_ws(&mut self, key: usize) {
        if self.hub.waiting(self.conns[key].id) {
            // Its requests are handled in order and one waits for the store; the Hub's
            // `Effect::Resume` brings us back.
            return;
        }
        let mut texts = Vec::new();
        let mut close: Option<(u16, &'static str)> = None;
        let mut gone = false;
        let mut more = false;
        let mut throttled = false;
        {
            let conn = &mut self.conns[key];
            let ConnState::Ws(ws) = &mut conn.state else {
                return;
            };
            let mut io = conn::WsIo {
                stream: &mut conn.stream,
                out: &mut conn.out,
            };
            let mut budget = READ_BUDGET;
            let (rate, burst) = (self.config.ws_frame_rate, self.config.ws_frame_burst);
            if ws.resume_at.is_some() {
                // Out of frame budget: the timer reads it again.
                return;
            }
            loop {
                if budget == 0 {
                    more = true;
                    break;
                }
                if let Err(wait) = ws.frames.take(rate, burst, self.now.mono) {
                    // A flood (pings, refused sends, anything): it waits, no one else does.
                    ws.resume_at = Some(self.now.mono + wait);
                    self.metrics.frame_budget_waits += 1;
                    throttled = true;
                    break;
                }
                if io.out.len() > crate::config::OUTPUT_PAUSE_BYTES {
                    // Pongs pile up for a client that does not read: stop reading it.
                    conn.paused = true;
                    break;
                }
                budget -= 1;
                match ws.ctx.read(&mut io) {
                    Ok(msg) => {
                        ws.last_rx = self.now.mono;
                        match msg {
                            tungstenite::Message::Text(t) => texts.push(t),
                            tungstenite::Message::Binary(_) => {
                                // The protocol is JSON text; the contract names 1007 (invalid
                                // data) for binary frames.
                                close = Some((1007, "binary frames are not accepted"));
                                break;
                            }
                            tungstenite::Message::Close(_) => {
                                // tungstenite queued the close reply into our output.
                                gone = true;
                                break;
                            }
                            _ => {}
                        }
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        break;
                    }
                    Err(e) => {
                        close = ws_error_close(&e);
                        gone = close.is_none();
                        break;
                    }
                }
            }
            // Pongs and the reply to a close frame wait inside tungstenite until the next
            // read or flush; hand them to our output queue now.
            let _ = ws.ctx.flush(&mut io);
        }
        self.queued_directly(key);
        let id = self.conns[key].id;
        self.metrics.ws_received += texts.len() as u64;
        for text in texts {
            if self.live(id).is_none() || !self.conns[key].is_ws() {
                break;
            }
            let fx = self.hub.handle_ws(id, &text, self.now);
            self.apply(fx);
        }
        if let Some((code, reason)) = close {
            log::debug!("conn {key}: protocol violation, closing with {code}");
            self.close_ws(key, code, reason);
        } else if gone {
            self.close_after_flush(key);
        } else if more {
            self.again.push(key);
        } else if throttled {
            // The deadline moved to resume_at: make sure the timer comes back then.
            self.rearm(key);
        }
    }

    /// Sends a close frame and stops reading messages from a WebSocket.
    pub(super) fn close_ws(&mut self, key: usize, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.is_ws() {
            return;
        }
        let frame = Frame::close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        }));
        let mut bytes = Vec::with_capacity(frame.len());
        let _ = frame.format(&mut bytes);
        conn.out.push(Chunk::owned(bytes));
        self.queued_directly(key);
        self.close_after_flush(key);
    }
}

/// Maps a tungstenite read error to the close code to send (`None`: the peer is gone).
fn ws_error_close(e: &tungstenite::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{Error, ProtocolError};
    match e {
        // The peer went away without a close frame: nobody is left to tell.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Capacity(_) => Some((1009, "message too big")),
        Error::Utf8(_) => Some((1007, "invalid UTF-8")),
        Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}
