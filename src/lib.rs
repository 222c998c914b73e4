//! Chatterbox: a real-time chat server in one small binary.
//!
//! # Layout
//! - `config`: every knob and its default.
//! - `reactor`: the single-threaded mio event loop that owns all connections and chat
//!   state; `Server::new` + `Server::run` are the entry points.
//! - `http`: request parsing (pure) and responses; routes live in `reactor::routes`.
//! - `ws`: upgrade validation and server frame encoding (framing itself is tungstenite).
//! - `chat`: protocol types, rooms and presence, and the handler of each client message.
//! - `auth`: usernames, passwords (argon2 on a thread pool) and session tokens.
//! - `store`: the SQLite writer thread (group commit), reader threads, schema.
//! - `ratelimit`, `metrics`, `time`: small helpers.
//! - `web`: the browser UI, embedded in the binary.

pub mod auth;
pub mod chat;
pub mod config;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod reactor;
pub mod store;
pub mod time;
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
