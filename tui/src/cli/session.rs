//! Connections for subcommands: connecting across a handoff, and finding
//! the successor after a restart.

use std::time::Duration;

use tokio::time::Instant;

use super::CliError;
use crate::client::{Client, ClientMode, ConnectError, ConnectOptions, Events};
use crate::target::Target;

/// Pause between attempts while a restart is under way.
const POLL: Duration = Duration::from_millis(100);

/// Which connect failures are worth another attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only "the gateway is handing off" (a script run at that moment).
    HandoffOnly,
    /// Anything but a refused token or a protocol mismatch: after a
    /// restart, the new process may not listen yet.
    AnyButAuth,
}

/// Connects, retrying per `retry` until `patience` runs out.
pub async fn connect_retrying(
    target: &Target,
    retry: Retry,
    patience: Duration,
) -> Result<(Client, Events), CliError> {
    let options = ConnectOptions::new(target.url.clone(), target.token.clone(), ClientMode::Cli);
    let deadline = Instant::now() + patience;
    loop {
        let error = match Client::connect(&options).await {
            Ok(pair) => return Ok(pair),
            Err(e) => e,
        };
        let fatal =
            error.is_auth_failure() || matches!(error, ConnectError::ProtocolMismatch { .. });
        let retryable = match retry {
            Retry::HandoffOnly => error.is_handoff(),
            Retry::AnyButAuth => !fatal,
        };
        if !retryable || Instant::now() >= deadline {
            return Err(error.into());
        }
        tracing::debug!(%error, "gateway not ready; retrying");
        tokio::time::sleep(POLL).await;
    }
}

/// A process as `hello-ok` names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRef {
    pub pid: u32,
    pub version: String,
    #[serde(skip)]
    pub started_at: u64,
}

impl ProcessRef {
    pub fn of(client: &Client) -> Self {
        let s = &client.hello().snapshot;
        Self {
            pid: s.pid,
            version: s.version.clone(),
            started_at: s.started_at,
        }
    }
}

/// After `old` closed, connects to the process that replaced it. The gap
/// runs from `closed_at` to its `hello-ok`.
pub async fn wait_for_successor(
    target: &Target,
    old: &ProcessRef,
    closed_at: Instant,
    patience: Duration,
) -> Result<(Client, Events, Duration), CliError> {
    let deadline = closed_at + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (client, events) = connect_retrying(target, Retry::AnyButAuth, left).await?;
        let new = ProcessRef::of(&client);
        // exec keeps the pid; a new start time still names a new process.
        if new.pid != old.pid || new.started_at != old.started_at {
            return Ok((client, events, closed_at.elapsed()));
        }
        client.close().await;
        if Instant::now() >= deadline {
            return Err(CliError::Other(format!(
                "pid {} still answers {}s after it closed; no successor took over",
                old.pid,
                patience.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
