//! Chatterbox: a real-time chat server in one small binary.
//!
//! # Layout
//! - `config`: every knob and limit, with its default.
//! - `reactor`: the single-threaded mio event loop; it owns every connection and the Hub
//!   and does all I/O. `Server::new` + `Server::run` are the entry points.
//! - `chat`: the `Hub` (all chat state and rules, no I/O: requests and `now` in,
//!   `Effect`s out) and the wire protocol's types.
//! - `http`: request parsing, routing (both pure) and responses.
//! - `ws`: upgrade validation and server frame encoding (framing itself is tungstenite).
//! - `auth`: usernames, passwords (argon2 on a thread pool) and session tokens.
//! - `store`: the writer thread (group commit), reader threads, schema, on SQLite or
//!   PostgreSQL through one dialect layer (`store::sql`); `StoreCmd` and `Completion` are
//!   its seam.
//! - `id`, `pool`, `ratelimit`, `metrics`, `time`: shared values and small helpers.
//! - `web`: the browser UI, embedded in the binary.
//!
//! Imports point one way: `reactor` → `chat` → (`auth`, `store`, `http`, …) → `id`.

pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod files;
pub mod http;
pub mod id;
pub mod metrics;
pub mod pool;
pub mod ratelimit;
pub mod reactor;
pub mod store;
pub mod time;
pub mod tls;
pub mod web;
pub mod ws;

pub use config::Config;
pub use reactor::{Server, Shutdown};

/// Binds `config.listen` and serves until shut down.
pub fn run(config: Config) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    Server::new(config, listener)?.run()
}
