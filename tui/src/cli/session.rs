//! Connections for subcommands: connecting across a handoff, and finding
//! the successor after a restart.

use std::time::Duration;

use tokio::time::Instant;

use super::CliError;
use crate::client::{Client, ClientMode, ConnectError, Events};
use crate::net::Outage;
use crate::peer::Facts;
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
    connect_watching(target, retry, patience, &mut Attempts::default()).await
}

/// The attempts of one wait for a gateway, to time how long its port
/// refused connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attempts {
    pub attempts: u32,
    pub refused: u32,
    first_refused: Option<Instant>,
    reached: Option<Instant>,
}

impl Attempts {
    fn record(&mut self, at: Instant, refused: bool) {
        self.attempts += 1;
        if refused {
            self.refused += 1;
            self.first_refused.get_or_insert(at);
        } else if self.first_refused.is_some() && self.reached.is_none() {
            self.reached = Some(at);
        }
    }

    /// What the attempts saw, `since` the old process closed.
    pub fn outage(&self, since: Instant, now: Instant) -> Outage {
        Outage {
            gap: now.saturating_duration_since(since),
            dark: self
                .first_refused
                .map(|first| self.reached.unwrap_or(now).saturating_duration_since(first)),
            refused: self.refused,
            attempts: self.attempts,
            precision: POLL,
        }
    }
}

async fn connect_watching(
    target: &Target,
    retry: Retry,
    patience: Duration,
    attempts: &mut Attempts,
) -> Result<(Client, Events), CliError> {
    let options = target.connect_options(ClientMode::Cli);
    let deadline = Instant::now() + patience;
    loop {
        let at = Instant::now();
        let result = Client::connect(&options).await;
        attempts.record(at, matches!(result, Err(ConnectError::Refused { .. })));
        let error = match result {
            Ok(pair) => return Ok(pair),
            Err(e) => e,
        };
        let fatal =
            error.is_auth_failure() || matches!(error, ConnectError::ProtocolMismatch { .. });
        let retryable = match retry {
            Retry::HandoffOnly => error.is_transient(),
            Retry::AnyButAuth => !fatal,
        };
        if !retryable || Instant::now() >= deadline {
            return Err(error.into());
        }
        tracing::debug!(%error, "gateway not ready; retrying");
        tokio::time::sleep(POLL).await;
    }
}

/// A process as it names itself; any field it does not report is `None`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRef {
    pub pid: Option<u32>,
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    #[serde(skip)]
    pub started_at: Option<u64>,
}

impl ProcessRef {
    pub fn of(client: &Client) -> Self {
        let facts = Facts::read(client.hello(), None);
        Self {
            pid: facts.pid,
            version: facts.version,
            build_id: facts.build_id,
            boot_id: facts.boot_id,
            started_at: facts.started_at,
        }
    }

    /// `pid 4343 v0.1.0`, or what of it is known.
    pub fn name(&self) -> String {
        match (self.pid, &self.version) {
            (Some(pid), Some(v)) => format!("pid {pid} v{v}"),
            (None, Some(v)) => format!("v{v}"),
            (Some(pid), None) => format!("pid {pid}"),
            (None, None) => "the gateway".to_owned(),
        }
    }

    /// Whether `other` is provably the same process as `self`. A gateway
    /// that names itself by nothing (OpenClaw 2026.4.x has no pid, no boot
    /// id) cannot be told apart: after a close, the next one counts as new.
    fn same_process(&self, other: &ProcessRef) -> bool {
        if let (Some(a), Some(b)) = (&self.boot_id, &other.boot_id) {
            return a == b;
        }
        match (self.pid, other.pid) {
            // exec keeps the pid; a new start time still names a new process.
            (Some(a), Some(b)) => a == b && self.started_at == other.started_at,
            _ => false,
        }
    }
}

/// After `old` closed, connects to the process that replaced it. The gap
/// runs from `closed_at` to its `hello-ok`; the outage says how long the
/// port refused this command's attempts meanwhile.
pub async fn wait_for_successor(
    target: &Target,
    old: &ProcessRef,
    closed_at: Instant,
    patience: Duration,
) -> Result<(Client, Events, Outage), CliError> {
    let deadline = closed_at + patience;
    let mut attempts = Attempts::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (client, events) =
            connect_watching(target, Retry::AnyButAuth, left, &mut attempts).await?;
        let new = ProcessRef::of(&client);
        if !old.same_process(&new) {
            let outage = attempts.outage(closed_at, Instant::now());
            return Ok((client, events, outage));
        }
        client.close().await;
        if Instant::now() >= deadline {
            return Err(CliError::Other(format!(
                "{} still answers {}s after it closed; no successor took over",
                old.name(),
                patience.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
