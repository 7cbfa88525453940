//! The molt wire protocol: a compatible subset of OpenClaw's gateway protocol.
//!
//! Pure types and functions only (serde, semver, thiserror): no I/O, no async.
//! Types are directional where it matters: [`frame::ClientFrame`] is what a
//! client sends, [`frame::ServerFrame`] what the server sends. Unknown fields
//! in incoming frames are ignored, never fatal.

/// Error shape and error codes.
pub mod error;
/// Event names and payloads.
pub mod event;
/// `req` / `res` / `event` frames and their parsing.
pub mod frame;
/// `connect.challenge`, `connect` params, `hello-ok`, protocol negotiation.
pub mod handshake;
/// Newtype identifiers (request, connection, run, hold).
pub mod ids;
/// Bounds on client-supplied strings and counts.
pub mod limits;
/// Method names, typed params and results.
pub mod method;
/// Operator scopes and which method needs which.
pub mod scope;
/// The `status` snapshot.
pub mod status;
/// Update results, step records, sentinel and run records.
pub mod update;

pub use error::{ErrorCode, ErrorShape};
pub use frame::{ClientFrame, EventFrame, RequestFrame, ResponseFrame, ServerFrame};
pub use handshake::{PROTOCOL_VERSION, negotiate_protocol};
pub use method::{Method, Request};
pub use scope::Scope;
