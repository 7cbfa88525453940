//! Starting or continuing a rollout, the same from `molt fleet update` and
//! from the Fleet screen: a new rollout is planned from the fleet file; an
//! unfinished one (halted, or stopped while running by a console that was
//! closed) is resumed, continued without a gateway, or rolled back, and
//! never silently replaced.

use std::path::PathBuf;

use super::record::{self, HostEntry, HostOutcome, Rollout, State};
use super::rollout::{self, Finish, Observer, Options};
use super::status::{self, Reach, Row, STATUS_TIMEOUT};
use super::{Fleet, Gateway, WaveSize};
use crate::cli::CliError;

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// A version or dist-tag; `None` is each gateway's channel default.
    pub target: Option<String>,
    pub group: Option<String>,
    pub wave: WaveSize,
    pub canary: String,
    pub resume: bool,
    /// Gateways to mark skipped before continuing.
    pub skip: Vec<String>,
    pub rollback: bool,
    /// Start over even though the last rollout did not finish.
    pub new: bool,
}

impl Request {
    /// Continues the unfinished rollout rather than planning one.
    pub fn continues(&self) -> bool {
        self.resume || !self.skip.is_empty() || self.rollback
    }
}

/// A rollout ready to run, and the gateways it will still touch.
pub struct Prepared {
    pub rollout: Rollout,
    pub record_path: PathBuf,
    pub planned: Vec<Gateway>,
}

/// The gateways of `group` (every gateway without one); an unknown group
/// or an empty selection is a usage error.
pub fn selected<'a>(fleet: &'a Fleet, group: Option<&str>) -> Result<Vec<&'a Gateway>, CliError> {
    if let Some(group) = group
        && !fleet.groups().contains(group)
    {
        return Err(CliError::Usage(format!(
            "no gateway of {} is in group {group:?}",
            fleet.path.display()
        )));
    }
    let gateways = super::select(fleet, group);
    if gateways.is_empty() {
        return Err(CliError::Usage(format!(
            "{} names no gateway",
            fleet.path.display()
        )));
    }
    Ok(gateways)
}

/// The rollout `request` asks for, from the record of the last one.
pub fn prepare(fleet: &Fleet, request: &Request) -> Result<Prepared, CliError> {
    let record_path = record::path_for(&fleet.path).map_err(|e| CliError::Other(e.to_string()))?;
    let previous = record::load(&record_path).map_err(|e| CliError::Other(e.to_string()))?;
    let unfinished = previous
        .as_ref()
        .filter(|r| matches!(r.state, State::Running | State::Halted));
    let mut rollout = match (unfinished, request.continues()) {
        (Some(rollout), true) => rollout.clone(),
        (None, true) => {
            return Err(CliError::Usage(format!(
                "no unfinished rollout of {} to continue ({})",
                fleet.path.display(),
                record_path.display()
            )));
        }
        (Some(rollout), false) if !request.new => {
            return Err(CliError::Usage(format!(
                "the last rollout of {} to {}{}; pass --resume to continue it, --skip NAME \
                 to continue without a gateway, --rollback to undo it, or --new to start over",
                fleet.path.display(),
                rollout.goal(),
                rollout.where_it_stopped()
            )));
        }
        _ => {
            let gateways = selected(fleet, request.group.as_deref())?;
            let now = record::now_ms();
            Rollout {
                fleet: fleet.path.clone(),
                version: request
                    .target
                    .as_deref()
                    .filter(|t| semver::Version::parse(t).is_ok())
                    .map(str::to_owned),
                target: request.target.clone(),
                group: request.group.clone(),
                waves: rollout::plan(&gateways, &request.canary, request.wave),
                state: State::Running,
                started_at: now,
                updated_at: now,
                hosts: Vec::new(),
                halt: None,
            }
        }
    };
    for name in &request.skip {
        if fleet.gateway(name).is_none() || !rollout.waves.iter().flatten().any(|n| n == name) {
            return Err(CliError::Usage(format!(
                "--skip {name}: not a gateway of this rollout"
            )));
        }
        let from = rollout.host(name).and_then(|h| h.from.clone());
        rollout.set(HostEntry {
            name: name.clone(),
            from,
            to: None,
            at: record::now_ms(),
            outcome: HostOutcome::Skipped,
            reason: Some("skipped by the operator".to_owned()),
        });
    }
    let planned = rollout
        .waves
        .iter()
        .flatten()
        .filter(|n| !rollout.done(n))
        .filter_map(|n| fleet.gateway(n).cloned())
        .collect();
    Ok(Prepared {
        rollout,
        record_path,
        planned,
    })
}

/// Every gateway still to do must answer before any is touched.
pub async fn check_reachable(planned: &[Gateway]) -> Result<(), CliError> {
    let refs: Vec<&Gateway> = planned.iter().collect();
    let rows = status::probe_all(&refs, STATUS_TIMEOUT).await;
    reach_error(&rows).map_or(Ok(()), Err)
}

/// The exit for rows some of which could not be reached.
pub fn reach_error(rows: &[Row]) -> Option<CliError> {
    let unreachable: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.state, Reach::Unreachable | Reach::Unusable))
        .map(|r| r.name.as_str())
        .collect();
    if !unreachable.is_empty() {
        return Some(CliError::Unreachable(format!(
            "could not reach {}",
            unreachable.join(", ")
        )));
    }
    let refused: Vec<&str> = rows
        .iter()
        .filter(|r| r.state == Reach::AuthFailed)
        .map(|r| r.name.as_str())
        .collect();
    (!refused.is_empty())
        .then(|| CliError::FleetAuth(format!("token refused by {}", refused.join(", "))))
}

/// Runs a prepared rollout (or its rollback) to its end or first halt.
pub async fn run(
    fleet: &Fleet,
    prepared: &mut Prepared,
    rollback: bool,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Finish, CliError> {
    let Prepared {
        rollout,
        record_path,
        ..
    } = prepared;
    if rollback {
        rollout::roll_back(fleet, rollout, record_path, options, observer).await
    } else {
        rollout::drive(fleet, rollout, record_path, options, observer).await
    }
}
