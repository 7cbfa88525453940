//! `molt fleet …`: status, rolling updates and settings across the
//! gateways of a fleet file. Progress goes to stderr, the outcome (with
//! `--json`) to stdout; the exit code says whether every gateway
//! verified, the rollout halted at a gateway, or one could not be reached.

use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;
use serde::Serialize;
use serde_json::{Value, json};

use super::{CliError, pretty, write_out};
use crate::app::validate_tag;
use crate::fleet::record::{HostOutcome, Rollout};
use crate::fleet::rollout::{Finish, Options, Stderr};
use crate::fleet::settings::{self, Setting};
use crate::fleet::start::{self, Prepared, Request, reach_error, selected};
use crate::fleet::status::{self, STATUS_TIMEOUT};
use crate::fleet::{Fleet, WaveSize, file};

#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// One row per gateway: connection, version, pid, uptime, kill switch,
    /// auto-update, latest run. Exits 3 when a gateway cannot be reached.
    Status {
        /// Only the gateways of this group.
        #[arg(long, short = 'g')]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rolling update: the canary group, then waves; a wave starts only
    /// when every gateway before it runs the target version, verified by
    /// its own process. Halts at the first failure, rollback or timeout.
    Update {
        /// A version or dist-tag (default: each gateway's channel); the
        /// version the first gateway verifies is then used for all.
        #[arg(long, value_name = "VERSION|TAG")]
        target: Option<String>,
        /// Only the gateways of this group.
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// Gateways per wave after the canary: a count or a percentage.
        #[arg(long, value_name = "N|N%")]
        wave: Option<String>,
        /// The group updated first (default `canary`).
        #[arg(long, value_name = "GROUP")]
        canary: Option<String>,
        /// Wait between waves: 30s, 5m, 1h.
        #[arg(long, value_name = "DURATION")]
        pause: Option<String>,
        /// Gateways of a wave updating at the same time, at most.
        #[arg(long, value_name = "N")]
        max_unavailable: Option<usize>,
        /// One gateway's whole update, at most: 15m.
        #[arg(long, value_name = "DURATION")]
        host_timeout: Option<String>,
        /// A note recorded with each gateway's run.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Continue the halted rollout of this fleet file, retrying the
        /// gateway it stopped at.
        #[arg(long, conflicts_with_all = ["target", "group", "rollback"])]
        resume: bool,
        /// Continue the halted rollout without this gateway (repeatable).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["target", "group", "rollback"])]
        skip: Vec<String>,
        /// Put the gateways the halted rollout updated back on the
        /// version each ran before.
        #[arg(long, conflicts_with_all = ["target", "group"])]
        rollback: bool,
        /// Start a new rollout even though the last one did not finish.
        #[arg(long, conflicts_with_all = ["resume", "skip", "rollback"])]
        new: bool,
        /// Do not ask; required when stdin is not a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Set OPENCLAW_NO_AUTO_UPDATE on every gateway of a group (or all),
    /// each through its own `update.noAutoUpdate.set`.
    KillSwitch {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long, short = 'g')]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Turn automatic updates on or off on every gateway of a group (or
    /// all), each with its own `config.patch`.
    AutoUpdate {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long, short = 'g')]
        group: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// The fleet file: `--fleet`, else the user's config dir. Entry errors
/// and warnings go to stderr; the good entries are used.
pub fn load_fleet(path: Option<&Path>) -> Result<Fleet, CliError> {
    let path = match path {
        Some(path) => path.to_owned(),
        None => file::default_path().map_err(|e| CliError::Usage(e.to_string()))?,
    };
    let fleet = file::load(&path).map_err(|e| CliError::Usage(e.to_string()))?;
    for problem in fleet.errors.iter().chain(&fleet.warnings) {
        eprintln!("molt: {}: {problem}", path.display());
    }
    Ok(fleet)
}

pub async fn run(
    fleet_path: Option<&Path>,
    action: FleetAction,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let fleet = load_fleet(fleet_path)?;
    match action {
        FleetAction::Status { group, json } => status(&fleet, group.as_deref(), json, out).await,
        FleetAction::Update {
            target,
            group,
            wave,
            canary,
            pause,
            max_unavailable,
            host_timeout,
            note,
            resume,
            skip,
            rollback,
            new,
            yes,
            json,
        } => {
            let mut options = Options {
                note,
                pause: fleet.rollout.pause,
                max_unavailable: max_unavailable.unwrap_or(fleet.rollout.max_unavailable),
                host_timeout: fleet.rollout.host_timeout,
                quiet: false,
            };
            if let Some(pause) = pause {
                options.pause = file::parse_duration(&pause)
                    .map_err(|p| CliError::Usage(format!("--pause: {p}")))?;
            }
            if let Some(timeout) = host_timeout {
                options.host_timeout = file::parse_duration(&timeout)
                    .map_err(|p| CliError::Usage(format!("--host-timeout: {p}")))?;
            }
            if options.max_unavailable == 0 {
                return Err(CliError::Usage(
                    "--max-unavailable must be at least 1".into(),
                ));
            }
            if let Some(tag) = &target {
                validate_tag(tag)
                    .map_err(|p| CliError::Usage(format!("bad --target {tag:?}: {p}")))?;
            }
            let wave = match wave {
                Some(wave) => WaveSize::parse(&wave).map_err(CliError::Usage)?,
                None => fleet.rollout.wave,
            };
            let canary = canary.unwrap_or_else(|| fleet.rollout.canary.clone());
            let request = Request {
                target,
                group,
                wave,
                canary,
                resume,
                skip,
                rollback,
                new,
            };
            update(&fleet, request, options, yes, json, out).await
        }
        FleetAction::KillSwitch { state, group, json } => {
            let on = state == "on";
            settings(&fleet, group.as_deref(), Setting::KillSwitch(on), json, out).await
        }
        FleetAction::AutoUpdate { state, group, json } => {
            let on = state == "on";
            settings(&fleet, group.as_deref(), Setting::AutoUpdate(on), json, out).await
        }
    }
}

async fn status(
    fleet: &Fleet,
    group: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let gateways = selected(fleet, group)?;
    let rows = status::probe_all(&gateways, STATUS_TIMEOUT).await;
    let text = if json {
        pretty(&json!({ "gateways": rows }))?
    } else {
        status::table(&rows)
    };
    write_out(out, &text)?;
    reach_error(&rows).map_or(Ok(()), Err)
}

/// `molt fleet update --json`: the outcome and the record behind it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Outcome<'a> {
    ok: bool,
    /// `verified`, `halted`, `unreachable`, `rolled-back`, `not-started`.
    outcome: &'a str,
    record_path: &'a Path,
    #[serde(flatten)]
    rollout: &'a Rollout,
}

async fn update(
    fleet: &Fleet,
    request: Request,
    options: Options,
    yes: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if !yes && !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "stdin is not a terminal: pass --yes to update without asking".to_owned(),
        ));
    }
    let mut prepared = start::prepare(fleet, &request)?;
    let finish = if request.rollback {
        start::run(fleet, &mut prepared, true, &options, &mut Stderr).await?
    } else {
        if let Err(error) = start::check_reachable(&prepared.planned).await {
            let Prepared {
                rollout,
                record_path,
                ..
            } = &prepared;
            report(out, json, false, "not-started", record_path, rollout)?;
            return Err(error);
        }
        if !yes {
            let waves: Vec<String> = prepared.rollout.waves.iter().map(|w| w.join(" ")).collect();
            let question = format!(
                "Update {} gateways to {} in waves [{}]? [y/N] ",
                prepared.planned.len(),
                prepared.rollout.goal(),
                waves.join("] [")
            );
            if !super::update::confirm(question).await {
                return Err(CliError::Other("cancelled; nothing changed".to_owned()));
            }
        }
        start::run(fleet, &mut prepared, false, &options, &mut Stderr).await?
    };
    let Prepared {
        rollout,
        record_path,
        ..
    } = prepared;
    let halt = rollout.halt.clone();
    let (ok, outcome) = match (&finish, &halt) {
        (Finish::Done, _) if request.rollback => (true, "rolled-back"),
        (Finish::Done, _) => (true, "verified"),
        (Finish::Halted, Some(h)) if h.outcome == HostOutcome::Unreachable => {
            (false, "unreachable")
        }
        (Finish::Halted, _) => (false, "halted"),
    };
    report(out, json, ok, outcome, &record_path, &rollout)?;
    match (finish, halt) {
        (Finish::Done, _) => Ok(()),
        (Finish::Halted, Some(halt)) => {
            let step = halt
                .step
                .as_deref()
                .map(|s| format!(" (step {s})"))
                .unwrap_or_default();
            let text = format!("halted at {}{step}: {}", halt.host, halt.reason);
            Err(if halt.outcome == HostOutcome::Unreachable {
                CliError::Unreachable(format!("could not reach {}: {}", halt.host, halt.reason))
            } else {
                CliError::Halted(text)
            })
        }
        (Finish::Halted, None) => Err(CliError::Halted("halted".to_owned())),
    }
}

fn report(
    out: &mut impl Write,
    json: bool,
    ok: bool,
    outcome: &str,
    record_path: &Path,
    rollout: &Rollout,
) -> Result<(), CliError> {
    if json {
        let outcome = Outcome {
            ok,
            outcome,
            record_path,
            rollout,
        };
        write_out(out, &pretty(&outcome)?)
    } else {
        let lines: Vec<String> = rollout
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "{:<16} {:<12} {} → {}{}",
                    h.name,
                    serde_json::to_value(h.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    h.from.as_deref().unwrap_or("?"),
                    h.to.as_deref().unwrap_or("?"),
                    h.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let mut text = lines.join("\n");
        if let Some(halt) = &rollout.halt {
            text.push_str(&format!(
                "\nhalted at {}{}: {}",
                halt.host,
                halt.step
                    .as_deref()
                    .map(|s| format!(", step {s}"))
                    .unwrap_or_default(),
                halt.reason
            ));
            for line in &halt.output_tail {
                text.push_str(&format!("\n  | {line}"));
            }
        }
        write_out(out, &text)
    }
}

/// Applies a setting on each gateway with its own method, all at once;
/// one row per gateway says what happened there.
async fn settings(
    fleet: &Fleet,
    group: Option<&str>,
    setting: Setting,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let gateways = selected(fleet, group)?;
    let results = settings::apply_all(&gateways, setting).await;
    let rows: Vec<Value> = gateways
        .iter()
        .zip(&results)
        .map(|(g, r)| match r {
            Ok(()) => json!({ "name": g.name, "ok": true }),
            Err(e) => json!({ "name": g.name, "ok": false, "error": e.to_string() }),
        })
        .collect();
    if json {
        write_out(out, &pretty(&json!({ "gateways": rows }))?)?;
    } else {
        let what = setting.describe();
        let lines: Vec<String> = gateways
            .iter()
            .zip(&results)
            .map(|(g, r)| match r {
                Ok(()) => format!("{:<16} {what}", g.name),
                Err(e) => format!("{:<16} failed: {e}", g.name),
            })
            .collect();
        write_out(out, &lines.join("\n"))?;
    }
    let failed: Vec<(&str, &CliError)> = gateways
        .iter()
        .zip(&results)
        .filter_map(|(g, r)| r.as_ref().err().map(|e| (g.name.as_str(), e)))
        .collect();
    match failed.first() {
        None => Ok(()),
        Some((_, e)) if e.exit() == super::Exit::CannotConnect => {
            Err(CliError::Unreachable(format!(
                "could not reach {}",
                failed
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        Some((name, e)) => Err(CliError::Other(format!("{name}: {e}"))),
    }
}
