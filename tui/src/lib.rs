//! molt-console: the operator console for `moltd`.
//!
//! Layers point one way: `target` and `client` know nothing of the
//! terminal; `net` drives a client for the app; `app` is pure state;
//! `ui` draws it; `runtime` wires them to a terminal.

/// Console state and the reducer.
pub mod app;
/// Command-line flags, subcommands, exit codes.
pub mod cli;
/// Gateway client: handshake, requests, events, close codes.
pub mod client;
/// Many gateways: the fleet file, status, rolling updates.
pub mod fleet;
/// Wording of status facts, shared by the TUI and `molt status`.
pub mod format;
/// File logging.
pub mod logging;
/// Gateway log lines read and laid out for a small terminal.
pub mod logline;
/// The network task: reconnects, runs requests, reports back.
pub mod net;
/// What the console knows about the gateway: moltd or OpenClaw, leniently.
pub mod peer;
/// The main loop and the console entry point.
pub mod runtime;
/// The gateway to talk to: URL and token from flags, env, config, lock file.
pub mod target;
/// Terminal setup and restore.
pub mod term;
/// Drawing.
pub mod ui;
