//! moltd: a gateway daemon that updates and restarts itself without going
//! dark. This page is the table of contents; `main.rs` only parses args,
//! sets up logging, calls [`start::prepare`] and serves.

/// `audit.jsonl`: who changed what, when, and how it ended.
pub mod audit;
/// Credentials, peers and the scopes they grant; browser origins;
/// failed-guess slowing.
pub mod auth;
/// The auto-updater: policy, `update-check.json`, kill switch, driver.
pub mod autoupdate;
/// The pre-auth read budget on raw sockets.
pub mod budget;
/// Wall-clock time in Unix milliseconds.
pub mod clock;
/// `openclaw.json`: JSON5 loading, typed settings, merge patch, the config store.
pub mod config;
/// The state dir's `.env` file layered under the process env.
pub mod env_file;
/// The event bus every authenticated session follows.
pub mod events;
/// Atomic 0600 file writes and 0700 directories.
pub mod fsutil;
/// The running gateway: composition and connection state.
pub mod gateway;
/// Operator maintenance holds.
pub mod holds;
/// This process: version, pid, start.
pub mod identity;
/// Install surface detection and the package managers' layouts.
pub mod install;
/// How the gateway stops: the stop token and its reason.
pub mod lifecycle;
/// `gateway.lock`: the flock that makes one daemon per state dir.
pub mod lock;
/// stderr + daily file logging and the live line hub.
pub mod logging;
/// Method handlers.
pub mod methods;
/// Prometheus metrics, and the counts a successor takes over.
pub mod metrics;
/// The head and tail of a command's output.
pub mod output;
/// Where the state files live, from flags and env.
pub mod paths;
/// Restarts: the scheduler, its driver and the handoff strategies.
pub mod restart;
/// The accept loop and the orderly stop.
pub mod server;
/// One WebSocket connection: handshake, requests, events.
pub mod session;
/// Startup order, flags, exit codes.
pub mod start;
/// Supervisor detection and restart strategy.
pub mod supervisor;
/// TLS on the TCP listener: the certificate pair and the acceptor.
pub mod tls;
/// Self-update building blocks: targets, steps, runs, lease, sentinel.
pub mod update;

/// The layering of the modules above, checked.
#[cfg(test)]
mod layers;
