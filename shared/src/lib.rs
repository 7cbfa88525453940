//! The molt wire protocol: a compatible subset of OpenClaw's gateway protocol.
//!
//! Pure types and functions only (serde, semver, thiserror): no I/O, no async.
//! Types are directional where it matters: [`frame::ClientFrame`] is what a
//! client sends, [`frame::ServerFrame`] what the server sends. Unknown fields
//! in incoming frames are ignored, never fatal.

/// Who made a change.
pub mod actor;
/// The audit trail's entries and `audit.list`.
pub mod audit;
/// `CHANGELOG.md`: its releases, and the entries an update brings.
pub mod changelog;
/// WebSocket close codes and what each means for a client.
pub mod close;
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
/// The content of `gateway.lock`.
pub mod lock;
/// Method names, typed params and results.
pub mod method;
/// The `READY <addr> <version> <pid>` line on moltd's stdout.
pub mod ready;
/// Operator scopes and which method needs which.
pub mod scope;
/// Which config keys hold secrets, and the sentinel shown instead.
pub mod secret;
/// The state dir, file names and the config's port: where a gateway lives.
pub mod state;
/// The `status` snapshot.
pub mod status;
/// An update's `tag`: an exact version or a dist-tag.
pub mod tag;
/// Update results, step records, sentinel and run records.
pub mod update;

pub use error::{ErrorCode, ErrorShape};
pub use frame::{ClientFrame, EventFrame, RequestFrame, ResponseFrame, ServerFrame};
pub use handshake::{PROTOCOL_VERSION, negotiate_protocol};
pub use method::{Method, Request};
pub use scope::Scope;
