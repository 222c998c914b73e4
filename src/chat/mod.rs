//! Chat: the `Hub`, which owns every piece of chat state (users, tokens, rooms and
//! membership, presence, read cursors, budgets, the in-memory history rings), and the
//! wire protocol's types.
//!
//! The Hub is plain data with methods. It never touches a socket, a channel or the
//! clock: each entry point takes the request and `now` and returns `Effect`s for the
//! reactor to carry out. So every chat rule is unit-tested by calling the Hub.
//!
//! - `hub`: the state, `Effect`, and the rules shared by all.
//! - `sockets`: opening and closing WebSockets, presence.
//! - `ws`: decoding and budgeting each WebSocket request; messages, typing, receipts.
//! - `rooms`: join and catch-up, leave, create, invite, decline, members, history.
//! - `account`, `queries`: the HTTP endpoints (accounts; rooms, history, search).
//! - `admin`: moderation (suspend, remove from a room, the audit log).
//! - `cluster`: cluster mode: publishing commits, the per-room `seq` order, catching up
//!   after the bus reconnects.
//! - `remote`: cluster mode: applying other nodes' events.
//! - `lookups`: cluster mode: tokens and accounts asked of the database; ended sessions
//!   kept ended.
//! - `nodes`: cluster mode: presence across nodes, heartbeats, dead nodes.
//! - `done`: completions from the writer, the readers and the password pool.
//! - `room`: the records (`User`, `Room` with its ring of recent messages).
//! - `protocol`: decoding client requests and encoding server events.

mod account;
mod admin;
pub(crate) mod cluster;
mod deletion;
mod done;
mod effect;
mod export;
mod files;
mod hub;
pub(crate) mod lookups;
mod nodes;
pub mod protocol;
mod queries;
mod reactions;
pub(crate) mod remote;
pub mod room;
mod rooms;
mod sessions;
mod sockets;
mod ws;

#[cfg(test)]
mod tests;

pub use files::Download;
pub use hub::{ChatStats, Effect, Except, Hub, TokenInfo};
