//! A rolling update: the canary group first, then waves. A wave starts
//! only when every gateway of the waves before it reports the target
//! version verified by its own new process (the verdict `molt update`
//! reaches on one gateway); the first failure, rollback, mismatch,
//! unreachable gateway or timeout halts the rollout, and the record says
//! where. Gateways already done are never touched again on resume.

use std::path::Path;
use std::time::Duration;

use tokio::task::JoinSet;

use super::record::{self, Halt, HostEntry, HostOutcome, Rollout, State};
use super::{Fleet, Gateway, WaveSize};
use crate::cli::{CliError, Exit, Progress, UpdateArgs, update_target};

/// The waves: the gateways of the `canary` group (in file order), then
/// the others in waves of `wave`.
pub fn plan(gateways: &[&Gateway], canary: &str, wave: WaveSize) -> Vec<Vec<String>> {
    let (first, rest): (Vec<&Gateway>, Vec<&Gateway>) =
        gateways.iter().partition(|g| g.in_group(canary));
    let mut waves = Vec::new();
    if !first.is_empty() {
        waves.push(first.iter().map(|g| g.name.clone()).collect());
    }
    let size = wave.of(rest.len());
    waves.extend(
        rest.chunks(size)
            .map(|chunk| chunk.iter().map(|g| g.name.clone()).collect()),
    );
    waves
}

/// How to run the waves.
#[derive(Clone, Debug)]
pub struct Options {
    pub note: Option<String>,
    pub pause: Duration,
    pub max_unavailable: usize,
    pub host_timeout: Duration,
    /// No progress on stderr (the Fleet screen shows it).
    pub quiet: bool,
}

/// One gateway's update, as the rollout judges it.
#[derive(Clone, Debug)]
pub struct HostResult {
    pub entry: HostEntry,
    pub step: Option<String>,
    pub tail: Vec<String>,
}

/// Progress of the rollout as a whole, for stderr or the screen.
pub trait Observer: Send {
    fn say(&mut self, line: &str);
    /// A gateway's outcome was recorded.
    fn host_done(&mut self, _result: &HostResult) {}
}

/// Lines on stderr.
pub struct Stderr;

impl Observer for Stderr {
    fn say(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// Updates one gateway to `tag` with `molt update`'s own logic, bounded by
/// `timeout`; `resolved` when `tag` is the rollout's exact version.
pub async fn update_host(
    gateway: Gateway,
    tag: Option<String>,
    resolved: bool,
    options: Options,
) -> HostResult {
    let progress = Progress::for_host(&gateway.name, options.quiet);
    let entry = |from: Option<String>, to: Option<String>, outcome, reason| HostEntry {
        name: gateway.name.clone(),
        from,
        to,
        at: record::now_ms(),
        outcome,
        reason,
    };
    let target = match gateway.target() {
        Ok(target) => target,
        Err(problem) => {
            return HostResult {
                entry: entry(None, tag, HostOutcome::Unreachable, Some(problem)),
                step: None,
                tail: Vec::new(),
            };
        }
    };
    let args = UpdateArgs {
        tag: tag.as_deref(),
        note: options.note.as_deref(),
        yes: true,
        json: false,
        resolved,
    };
    let run = update_target(&target, &args, progress.clone());
    let Ok((report, result)) = tokio::time::timeout(options.host_timeout, run).await else {
        return HostResult {
            entry: entry(
                None,
                tag.clone(),
                HostOutcome::TimedOut,
                Some(format!(
                    "no verdict after {}s (the gateway's own update may still be running)",
                    options.host_timeout.as_secs()
                )),
            ),
            step: None,
            tail: progress.tail(),
        };
    };
    let from = report.before.as_ref().and_then(|b| b.version.clone());
    let version_in = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.get("version"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let (outcome, to, reason) = match (&result, report.outcome) {
        (Ok(_), "verified") => (HostOutcome::Verified, version_in(&report.verified), None),
        (Ok(_), _) => (
            HostOutcome::UpToDate,
            report
                .running
                .as_ref()
                .and_then(|r| r.version.clone())
                .or_else(|| from.clone()),
            None,
        ),
        (Err(e), _) if e.exit() == Exit::CannotConnect => {
            (HostOutcome::Unreachable, tag.clone(), Some(e.to_string()))
        }
        (Err(e), outcome) => (
            match outcome {
                "rolled-back" => HostOutcome::RolledBack,
                "mismatch" => HostOutcome::Mismatch,
                _ => HostOutcome::Failed,
            },
            version_in(&report.claimed).or(tag.clone()),
            Some(e.to_string()),
        ),
    };
    let mut tail = progress.tail();
    if tail.is_empty() {
        tail = report.output_tail.clone();
    }
    HostResult {
        entry: entry(from, to, outcome, reason),
        step: report
            .failed_step
            .as_ref()
            .and_then(|step| step["name"].as_str())
            .map(str::to_owned),
        tail,
    }
}

/// How a run of [`drive`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Every gateway verified (or was already there, or skipped).
    Done,
    Halted,
}

/// Runs the waves of `rollout` from where it stands, saving the record
/// after every gateway.
pub async fn drive(
    fleet: &Fleet,
    rollout: &mut Rollout,
    record_path: &Path,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Finish, CliError> {
    rollout.state = State::Running;
    rollout.halt = None;
    save(record_path, rollout)?;
    let waves = rollout.waves.clone();
    let total = waves.len();
    let mut ran_a_wave = false;
    for (index, wave) in waves.iter().enumerate() {
        let todo: Vec<&Gateway> = wave
            .iter()
            .filter(|name| !rollout.done(name))
            .filter_map(|name| fleet.gateway(name))
            .collect();
        if todo.is_empty() {
            continue;
        }
        if ran_a_wave && !options.pause.is_zero() {
            observer.say(&format!(
                "pausing {}s before wave {}",
                options.pause.as_secs(),
                index + 1
            ));
            tokio::time::sleep(options.pause).await;
        }
        ran_a_wave = true;
        let names: Vec<&str> = todo.iter().map(|g| g.name.as_str()).collect();
        observer.say(&format!(
            "wave {}/{total}: {} → {}",
            index + 1,
            names.join(", "),
            rollout.goal()
        ));
        if let Some(halt) = run_wave(&todo, rollout, record_path, options, observer).await? {
            observer.say(&format!("halted at {}: {}", halt.host, halt.reason));
            rollout.state = State::Halted;
            rollout.halt = Some(halt);
            save(record_path, rollout)?;
            return Ok(Finish::Halted);
        }
        observer.say(&format!(
            "wave {}/{total} verified: {}",
            index + 1,
            names.join(", ")
        ));
    }
    rollout.state = State::Done;
    save(record_path, rollout)?;
    Ok(Finish::Done)
}

/// Updates a wave's gateways, at most `max_unavailable` at a time; stops
/// starting new ones at the first that does not verify.
async fn run_wave(
    todo: &[&Gateway],
    rollout: &mut Rollout,
    record_path: &Path,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Option<Halt>, CliError> {
    let mut queue = todo.iter();
    let mut running = JoinSet::new();
    let mut halt: Option<Halt> = None;
    // Until the first gateway verifies, a tag or the channel default is
    // resolved by each gateway; after, every gateway gets that version.
    let concurrency = if rollout.version.is_none() {
        1
    } else {
        options.max_unavailable.max(1)
    };
    loop {
        while halt.is_none() && running.len() < concurrency {
            let Some(gateway) = queue.next() else { break };
            let tag = rollout.version.clone().or(rollout.target.clone());
            let resolved = rollout.version.is_some();
            running.spawn(update_host(
                (*gateway).clone(),
                tag,
                resolved,
                options.clone(),
            ));
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let result = joined.map_err(|e| CliError::Other(format!("a host update failed: {e}")))?;
        let mut result = result;
        if result.entry.outcome.is_done() {
            match (&rollout.version, &result.entry.to) {
                (None, Some(version)) => rollout.version = Some(version.clone()),
                (Some(want), Some(got)) if want != got => {
                    result.entry.outcome = HostOutcome::Mismatch;
                    result.entry.reason =
                        Some(format!("it runs {got}, the rollout's version is {want}"));
                }
                _ => {}
            }
        }
        observer.host_done(&result);
        let ok = result.entry.outcome.is_done();
        if !ok && halt.is_none() {
            halt = Some(Halt {
                host: result.entry.name.clone(),
                outcome: result.entry.outcome,
                step: result.step.clone(),
                reason: result
                    .entry
                    .reason
                    .clone()
                    .unwrap_or_else(|| "did not verify".to_owned()),
                output_tail: result.tail.clone(),
                at: result.entry.at,
            });
        }
        rollout.set(result.entry);
        save(record_path, rollout)?;
    }
    Ok(halt)
}

/// Puts every gateway this rollout verified back on the version it ran
/// before, newest first; halts at the first that does not verify.
pub async fn roll_back(
    fleet: &Fleet,
    rollout: &mut Rollout,
    record_path: &Path,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Finish, CliError> {
    let back: Vec<(String, String)> = rollout
        .hosts
        .iter()
        .rev()
        .filter(|h| h.outcome == HostOutcome::Verified)
        .filter_map(|h| Some((h.name.clone(), h.from.clone()?)))
        .collect();
    for (name, from) in back {
        let Some(gateway) = fleet.gateway(&name) else {
            continue;
        };
        observer.say(&format!("rolling {name} back to {from}"));
        let result = update_host(gateway.clone(), Some(from.clone()), true, options.clone()).await;
        observer.host_done(&result);
        let verified = result.entry.outcome.is_done() && result.entry.to.as_deref() == Some(&from);
        let mut entry = result.entry.clone();
        if verified {
            entry.outcome = HostOutcome::Reverted;
            entry.from = None;
        }
        rollout.set(entry);
        if !verified {
            rollout.state = State::Halted;
            rollout.halt = Some(Halt {
                host: name,
                outcome: result.entry.outcome,
                step: result.step,
                reason: result
                    .entry
                    .reason
                    .unwrap_or_else(|| format!("did not verify {from}")),
                output_tail: result.tail,
                at: result.entry.at,
            });
            save(record_path, rollout)?;
            return Ok(Finish::Halted);
        }
        save(record_path, rollout)?;
    }
    rollout.state = State::RolledBack;
    rollout.halt = None;
    save(record_path, rollout)?;
    Ok(Finish::Done)
}

fn save(path: &Path, rollout: &Rollout) -> Result<(), CliError> {
    record::save(path, rollout).map_err(|e| CliError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Endpoint, TokenSource};

    fn gw(name: &str, groups: &[&str]) -> Gateway {
        Gateway {
            name: name.into(),
            endpoint: Endpoint::Url {
                url: "ws://h:1".into(),
                tls_fingerprint: None,
            },
            token: TokenSource::None,
            groups: groups.iter().map(|g| (*g).into()).collect(),
            line: 1,
        }
    }

    #[test]
    fn the_canary_goes_first_then_waves_of_n() {
        let all = [
            gw("a", &["eu"]),
            gw("b", &["canary", "eu"]),
            gw("c", &[]),
            gw("d", &[]),
            gw("e", &["canary"]),
            gw("f", &[]),
        ];
        let refs: Vec<&Gateway> = all.iter().collect();
        assert_eq!(
            plan(&refs, "canary", WaveSize::Count(2)),
            vec![vec!["b", "e"], vec!["a", "c"], vec!["d", "f"]]
        );
        assert_eq!(
            plan(&refs, "canary", WaveSize::Percent(50)),
            vec![vec!["b", "e"], vec!["a", "c"], vec!["d", "f"]]
        );
        assert_eq!(
            plan(&refs, "none", WaveSize::Count(4)),
            vec![vec!["a", "b", "c", "d"], vec!["e", "f"]]
        );
        assert_eq!(
            plan(&[], "canary", WaveSize::Count(4)),
            Vec::<Vec<String>>::new()
        );
    }
}
