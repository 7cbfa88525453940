//! Command-line interface: global flags, subcommands and exit codes.

mod audit;
pub(crate) mod config;
mod fleet;
mod logs;
mod restart;
mod session;
mod update;

pub use audit::{AuditArgs, audit};
pub use config::{config_get, config_set, merge_patch, parse_key, parse_value};
pub use fleet::{FleetAction, load_fleet, run as fleet_command};
pub use logs::{LogsArgs, logs};
pub use restart::{RestartArgs, restart};
pub use session::{connect_retrying, wait_for_successor};
pub(crate) use update::update_target;
pub use update::{Progress, UpdateArgs, update};

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use molt_protocol::Method;
use serde_json::Value;

use crate::client::{Client, ClientMode, CloseKind, ConnectError, RequestError};
use crate::format;
use crate::peer::{Facts, Hello, KillSwitch, Product};
use crate::target::{self, DiscoverError, Overrides, Target};

const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  other error (bad config, unexpected answer, request failed)
  2  usage error
  3  cannot connect to the gateway (down, unreachable, handshake failed)
  4  authentication failed (token refused)
  5  molt fleet update halted at a gateway that did not verify

Without --url, molt finds the local daemon the way moltd does: the state dir
is --state-dir, else $OPENCLAW_STATE_DIR, else ~/.openclaw. Without --token
either, it connects to the daemon's local socket <state>/gateway.sock when it may (as the daemon's user or
root), which needs no token. Otherwise it uses TCP: the port comes from the
running daemon's gateway.lock, else gateway.port in the config; the token from
--token, else $OPENCLAW_GATEWAY_TOKEN, else gateway.auth.token; wss:// when
gateway.tls.enabled, pinned to the certificate in the state dir or to
--tls-fingerprint. Prefer the environment variable over --token: flags show
in `ps`.";

/// molt: the operator console for moltd.
///
/// With no subcommand, opens the interactive console.
#[derive(Debug, Parser)]
#[command(name = "molt", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Gateway URL, e.g. ws://127.0.0.1:18789 (skips discovery).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Gateway token.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// State dir of the daemon (default $OPENCLAW_STATE_DIR or ~/.openclaw).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Fleet file (default: fleet.toml in the user's config dir, e.g.
    /// ~/.config/molt/). With no subcommand, opens the Fleet screen.
    #[arg(long, global = true, value_name = "FILE")]
    pub fleet: Option<PathBuf>,
    /// SHA-256 fingerprint of a wss:// gateway's certificate (default: the
    /// certificate gateway.tls names, read on the gateway's host).
    #[arg(long, global = true, value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Print the gateway's status: what runs now, restart and update state.
    Status {
        /// Print the raw `status` result as pretty JSON.
        #[arg(long)]
        json: bool,
    },
    /// Update moltd: show the target, confirm, run, follow the restart and
    /// exit 0 only when update.status shows the new version verified.
    Update {
        /// A version or dist-tag for this run (downgrades allowed).
        #[arg(long, value_name = "VERSION|TAG")]
        tag: Option<String>,
        /// A note recorded with the run.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Do not ask; required when stdin is not a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print the outcome as JSON (progress goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Read or change the gateway's config (through config.get / config.patch).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Ask the gateway to restart through its scheduler, and follow it.
    Restart {
        /// Why, for the log and the restart events.
        #[arg(long, default_value = "molt restart")]
        reason: String,
        /// Delay before the restart, in ms (the gateway clamps it).
        #[arg(long, value_name = "MS")]
        delay_ms: Option<u64>,
        /// Restart without waiting for pending work.
        #[arg(long)]
        force: bool,
        /// Return once scheduled instead of waiting for the new process.
        #[arg(long)]
        no_wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Many gateways: the Fleet screen, or status, rolling updates and
    /// settings across the gateways of the fleet file.
    Fleet {
        #[command(subcommand)]
        action: Option<FleetAction>,
    },
    /// Print the gateway's audit trail: every change, who made it, when
    /// and how it ended, newest first.
    Audit {
        /// Entries to print (1-500, default 50).
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<u32>,
        /// Only this change, e.g. update.run or config.patch.
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// Only this actor: client, auto-updater, signal, or a client id.
        #[arg(long, value_name = "WHO")]
        actor: Option<String>,
        /// Only entries older than this id (the next page).
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Print the raw audit.list result as pretty JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the gateway's recent log lines.
    Logs {
        /// Keep printing new lines (across restarts) until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How many recent lines to print first (after the filters below).
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: u32,
        /// Only lines from then on: a duration back (90s, 15m, 2h) or a
        /// UTC time (18:00, 2026-11-24 18:00).
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Only lines at this level or above: error, warn, info, debug, trace.
        #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
        level: Option<crate::logline::LogLevel>,
        /// Only lines containing this text (any case).
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// One JSON object per line, as the gateway wrote it: {"line": ...}.
        #[arg(long)]
        json: bool,
    },
}

fn parse_level(text: &str) -> Result<crate::logline::LogLevel, String> {
    crate::logline::LogLevel::parse(text)
        .ok_or_else(|| format!("unknown level {text:?}: use error, warn, info, debug or trace"))
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the config, or one KEY (dotted, e.g. update.channel).
    Get {
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE. VALUE is JSON when it parses (true, 5, null,
    /// {"a":1}), else a string; null removes the key.
    Set {
        key: String,
        value: String,
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            url: self.url.clone(),
            token: self.token.clone(),
            state_dir: self.state_dir.clone(),
            tls_fingerprint: self.tls_fingerprint.clone(),
        }
    }
}

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Other = 1,
    Usage = 2,
    CannotConnect = 3,
    AuthFailed = 4,
    /// A fleet rollout stopped at a gateway that did not verify.
    Halted = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A subcommand failure and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("writing output: {0}")]
    Output(io::Error),
    /// Bad input caught before anything was sent.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
    /// A gateway of the fleet could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// A gateway of the fleet refused its token.
    #[error("{0}")]
    FleetAuth(String),
    /// A fleet rollout halted at a gateway.
    #[error("{0}")]
    Halted(String),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            Self::Discover(DiscoverError::BadUrl { .. }) | Self::Usage(_) => Exit::Usage,
            Self::Discover(_) => Exit::Other,
            Self::Connect(e) if e.is_auth_failure() => Exit::AuthFailed,
            Self::Connect(_) => Exit::CannotConnect,
            Self::Request(RequestError::Disconnected { .. }) => Exit::CannotConnect,
            Self::Request(_) | Self::Output(_) | Self::Other(_) => Exit::Other,
            Self::Unreachable(_) => Exit::CannotConnect,
            Self::FleetAuth(_) => Exit::AuthFailed,
            Self::Halted(_) => Exit::Halted,
        }
    }
}

/// How long a subcommand keeps retrying while the gateway hands off.
const HANDOFF_PATIENCE: Duration = Duration::from_secs(10);
const HANDOFF_POLL: Duration = Duration::from_millis(100);

/// Connects and makes one idempotent request, retrying only across a
/// handoff (close 1012, gateway restarting): a script run at that moment
/// should get the successor's answer, not an error.
pub async fn request_once(
    target: &Target,
    method: Method,
    params: Option<Value>,
) -> Result<Value, CliError> {
    Ok(request_with_hello(target, method, params).await?.1)
}

/// [`request_once`], with the `hello-ok` of the process that answered.
pub async fn request_with_hello(
    target: &Target,
    method: Method,
    params: Option<Value>,
) -> Result<(Hello, Value), CliError> {
    let options = target.connect_options(ClientMode::Cli);
    let deadline = tokio::time::Instant::now() + HANDOFF_PATIENCE;
    loop {
        let retry = match Client::connect(&options).await {
            Ok((client, _events)) => match client.request(method, params.clone()).await {
                Ok(value) => {
                    let hello = client.hello().clone();
                    client.close().await;
                    return Ok((hello, value));
                }
                Err(e) if is_handoff(&e) => e.into(),
                Err(e) => return Err(e.into()),
            },
            Err(e) if e.is_transient() => CliError::Connect(e),
            Err(e) => return Err(e.into()),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(retry);
        }
        tracing::debug!(error = %retry, "gateway handing off; retrying");
        tokio::time::sleep(HANDOFF_POLL).await;
    }
}

fn is_handoff(error: &RequestError) -> bool {
    matches!(error, RequestError::Disconnected { close: Some(close) } if close.kind() == CloseKind::HandOff)
}

pub(crate) fn target(overrides: &Overrides) -> Result<Target, CliError> {
    Ok(target::discover(overrides, &target::Env::from_process())?)
}

pub(crate) fn pretty(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Other(e.to_string()))
}

/// `molt status [--json]`.
pub async fn status(
    overrides: &Overrides,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let target = target::discover(overrides, &target::Env::from_process())?;
    status_for(&target, json, out).await
}

pub async fn status_for(target: &Target, json: bool, out: &mut impl Write) -> Result<(), CliError> {
    let (hello, value) = request_with_hello(target, Method::Status, None).await?;
    let text = if json {
        // The gateway's own `status`, as it sent it.
        serde_json::to_string_pretty(&value).map_err(|e| CliError::Other(e.to_string()))?
    } else {
        let facts = Facts::read(&hello, Some(&value));
        summary(&facts, hello.product(), &target.url)
    };
    write_out(out, &text)
}

/// A broken pipe (`molt status | head -1`) is not an error.
/// A method's result as `T`, or an error naming the method.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    method: Method,
    value: Value,
) -> Result<T, CliError> {
    molt_protocol::frame::decode(value).map_err(|problem| {
        CliError::Request(RequestError::Decode {
            method: method.as_str().to_owned(),
            problem,
        })
    })
}

pub(crate) fn write_out(out: &mut impl Write, text: &str) -> Result<(), CliError> {
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// The short human summary of `molt status`; what the gateway does not
/// report reads `unknown`.
pub fn summary(s: &Facts, product: Product, url: &str) -> String {
    // The gateway's clock at its answer: relative times ignore local skew.
    let gateway_now = s
        .started_at
        .zip(s.uptime_ms)
        .map(|(start, up)| start.saturating_add(up));
    let up = s
        .uptime_ms
        .map(|ms| format!(", up {}", format::duration(Duration::from_millis(ms))))
        .unwrap_or_default();
    let pid = s
        .pid
        .map_or_else(|| "pid not reported".to_owned(), |p| format!("pid {p}"));
    let mut lines = vec![format!(
        "{} {} ({pid}) at {url}{up}",
        product.name(),
        format::or_unknown(s.version.as_deref()),
    )];
    let mut row = |label: &str, value: String| lines.push(format!("{label:<12} {value}"));
    if let Some(build) = &s.build_id {
        row("build", build.clone());
    }
    if let Some(boot) = &s.boot_id {
        row("boot id", boot.clone());
    }
    row(
        "install",
        s.install
            .as_ref()
            .map_or_else(|| format::UNKNOWN.to_owned(), format::install),
    );
    row(
        "restart",
        match &s.restart {
            Some(restart) => format!(
                "{}, {}, supervisor {}",
                format::strategy(restart.strategy),
                format::restart_phase(restart, gateway_now),
                s.supervisor
                    .as_ref()
                    .map_or_else(|| format::UNKNOWN.to_owned(), format::supervisor)
            ),
            None => format::UNKNOWN.to_owned(),
        },
    );
    if let (Some(failure), Some(now)) = (
        s.restart.as_ref().and_then(|r| r.last_failure.as_ref()),
        gateway_now,
    ) {
        row(
            "last failure",
            format!("{}, {}", failure.reason, format::relative(failure.at, now)),
        );
    }
    row(
        "pending",
        s.pending_work
            .as_ref()
            .map_or_else(|| format::UNKNOWN.to_owned(), format::pending),
    );
    row(
        "update",
        format::update_available(s.update_available.as_ref()),
    );
    row("auto-update", format::auto_update(&s.auto, gateway_now));
    row(
        "kill switch",
        match s.auto.kill_switch {
            KillSwitch::NotReported => "not reported by this gateway".to_owned(),
            _ => format::kill_switch(&s.auto).unwrap_or_else(|| "off".to_owned()),
        },
    );
    row(
        "latest run",
        s.latest_run
            .as_ref()
            .map(|run| format::run(run, gateway_now))
            .unwrap_or_else(|| "none".to_owned()),
    );
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_documents_exit_codes() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for line in [
            "0  ok",
            "2  usage",
            "3  cannot connect",
            "4  authentication failed",
        ] {
            assert!(help.contains(line), "{line}");
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "molt",
            "status",
            "--json",
            "--url",
            "ws://h:1",
            "--state-dir",
            "/s",
            "--token",
            "t",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(CliCommand::Status { json: true })
        ));
        assert_eq!(
            cli.overrides(),
            Overrides {
                url: Some("ws://h:1".into()),
                token: Some("t".into()),
                state_dir: Some("/s".into()),
                tls_fingerprint: None,
            }
        );
        let err = Cli::try_parse_from(["molt", "status", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), Exit::Usage as i32);
    }

    #[test]
    fn errors_map_to_documented_exit_codes() {
        let auth = CliError::Connect(ConnectError::AuthFailed {
            message: "bad token".into(),
        });
        assert_eq!(auth.exit(), Exit::AuthFailed);
        let down = CliError::Connect(ConnectError::Unreachable {
            url: "ws://x".into(),
            reason: "refused".into(),
        });
        assert_eq!(down.exit(), Exit::CannotConnect);
        let bad_url = CliError::Discover(DiscoverError::BadUrl {
            url: "x".into(),
            problem: "y".into(),
        });
        assert_eq!(bad_url.exit(), Exit::Usage);
        let refused = CliError::Request(RequestError::Gateway(
            molt_protocol::ErrorShape::internal("boom"),
        ));
        assert_eq!(refused.exit(), Exit::Other);
    }
}
