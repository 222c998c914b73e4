//! Chat: the wire protocol's message types, the room and presence model, and the
//! handlers that turn client requests into state changes, store commands and broadcasts.

pub mod handlers;
pub mod protocol;
pub mod state;
