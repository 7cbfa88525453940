//! `molt update`: resolve the target, confirm, run, follow the restart,
//! and succeed only when the live process runs what the update installed.
//!
//! With moltd the target comes from a dry run and the successor proves its
//! version in the sentinel. OpenClaw takes no dry run and picks the target
//! from its channel; 2026.4.x installs inside the gateway and restarts,
//! 2026.9.x hands the run to a detached updater whose run record is
//! followed through the restart. Either way the verdict compares what the
//! install claims with what the new process reports.
//!
//! With `--json` the outcome is printed on stdout whatever it is (verified,
//! a mismatch, a failure, a rollback, nothing to do), so scripts can read
//! it; the exit code says whether the target runs.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::changelog::Changelog;
use molt_protocol::ids::RunId;
use molt_protocol::method::{MAX_UPDATE_NOTE as MAX_NOTE, UpdateRunParams};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::restart::SUCCESSOR_PATIENCE;
use super::session::{ProcessRef, Retry, connect_retrying, wait_for_successor};
use super::{CliError, pretty, target, write_out};
use crate::app::validate_tag;
use crate::client::{Client, Events, GatewayEvent, Incoming, RequestError};
use crate::format;
use crate::net::Outage;
use crate::peer::{
    Claim, Facts, Live, Outcome, RunAnswer, Step, UpdateApi, UpdateReport, Verdict,
    explain_failure, verdict,
};
use crate::target::{Overrides, Target};

const PATIENCE: Duration = Duration::from_secs(10);
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(60);
/// How long moltd's successor may take to record its verification.
const VERIFY_PATIENCE: Duration = Duration::from_secs(30);
/// moltd's successor records its verification as it starts serving: the
/// verdict is asked again soon, a local request each time.
const VERDICT_POLL: Duration = Duration::from_millis(20);
/// How long an OpenClaw gateway may take to come back after its update:
/// 2026.4.x was measured dark for two minutes on two cores.
const OPENCLAW_RESTART_PATIENCE: Duration = Duration::from_secs(15 * 60);
/// How long an OpenClaw 2026.9.x run may take from admission to a final
/// record (its updater's own step timeout is 30 minutes).
const RUN_PATIENCE: Duration = Duration::from_secs(45 * 60);
const RUN_POLL: Duration = Duration::from_secs(1);
/// OpenClaw 2026.9.x's run ledger.
const RUNS_GET: &str = "update.runs.get";

/// What `molt update` was asked for.
pub struct UpdateArgs<'a> {
    pub tag: Option<&'a str>,
    pub note: Option<&'a str>,
    pub yes: bool,
    pub json: bool,
    /// `tag` is the exact version already resolved (a fleet rollout's
    /// version): moltd needs no dry run to name the goal.
    pub resolved: bool,
}

/// The outcome, printed with `--json` whatever it is.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub ok: bool,
    /// `verified`, `mismatch`, `failed`, `rolled-back`, `skipped`,
    /// `up-to-date`, `not-started`, `cancelled`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub run_id: Option<RunId>,
    pub rolled_back: bool,
    pub gateway: &'static str,
    /// The process before the update.
    pub before: Option<ProcessRef>,
    /// The process answering after it.
    pub after: Option<ProcessRef>,
    /// What the install claims to have put in place.
    pub claimed: Option<Value>,
    pub gap_ms: Option<u64>,
    /// How long the port refused this command's reconnect attempts.
    pub dark_ms: Option<u64>,
    pub refused_attempts: Option<u32>,
    pub verified: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to_date: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<ProcessRef>,
    pub advice: Option<String>,
    /// The step that failed, with the head and tail of its output: for a
    /// rollback after the restart, what the new version printed before it
    /// died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<Value>,
    /// The failing step's command and output as progress lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_tail: Vec<String>,
    /// moltd, a verified update: the new version's changelog entries
    /// since the version before, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changelog: Option<Changelog>,
    #[serde(skip)]
    pub progress: Progress,
}

/// Where a run's progress lines go: stderr for `molt update`; for a fleet,
/// prefixed with the gateway's name, and the last lines kept so a halted
/// rollout can show them.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// `None`: stderr without a prefix.
    label: Option<String>,
    quiet: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
}

/// Lines a [`Progress`] keeps.
const PROGRESS_TAIL: usize = 40;

impl Progress {
    /// Lines prefixed with `label` on stderr (unless `quiet`), the last
    /// ones kept for [`Progress::tail`].
    pub fn for_host(label: &str, quiet: bool) -> Self {
        Self {
            label: Some(label.to_owned()),
            quiet,
            tail: Some(Arc::default()),
        }
    }

    pub fn say(&self, line: &str) {
        if !self.quiet {
            match &self.label {
                Some(label) => eprintln!("{label}: {line}"),
                None => eprintln!("{line}"),
            }
        }
        if let Some(tail) = &self.tail
            && let Ok(mut tail) = tail.lock()
        {
            if tail.len() == PROGRESS_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }

    /// The last lines said.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .as_ref()
            .and_then(|t| t.lock().ok().map(|t| t.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

impl Report {
    fn outage(&mut self, outage: &Outage) {
        self.gap_ms = Some(outage.gap.as_millis() as u64);
        self.dark_ms = outage.dark.map(|d| d.as_millis() as u64);
        self.refused_attempts = Some(outage.refused);
    }

    fn claim(&mut self, claim: Option<&Claim>, fallback: Option<&str>) {
        let version = claim
            .and_then(|c| c.after.clone())
            .or(fallback.map(str::to_owned));
        let build = claim.and_then(|c| c.after_build_id.clone());
        if version.is_some() || build.is_some() {
            self.claimed = Some(json!({ "version": version, "buildId": build }));
        }
    }

    /// Records a verdict; the error to return when it is not a success.
    fn verdict(&mut self, found: Verdict) -> Result<String, CliError> {
        match found {
            Verdict::Verified { version, pid } => {
                self.ok = true;
                self.outcome = "verified";
                self.verified = Some(json!({ "version": version, "pid": pid }));
                Ok(match pid {
                    Some(pid) => format!("verified: v{version} runs as pid {pid}"),
                    None => format!("verified: v{version} runs (pid not reported)"),
                })
            }
            Verdict::Mismatch { claimed, running } => {
                self.outcome = "mismatch";
                let reason = format!("install says {claimed}, process runs {running}");
                self.reason = Some(reason.clone());
                Err(CliError::Other(format!(
                    "the update is not in effect: {reason}"
                )))
            }
            Verdict::Failed {
                reason,
                rolled_back,
            } => {
                self.outcome = if rolled_back { "rolled-back" } else { "failed" };
                self.rolled_back = rolled_back;
                self.reason = Some(reason.clone());
                let tail = match (rolled_back, &self.before) {
                    (true, Some(before)) => {
                        format!("; rolled back, {} keeps running", before.name())
                    }
                    (true, None) => "; rolled back".to_owned(),
                    _ => String::new(),
                };
                Err(CliError::Other(format!("update failed: {reason}{tail}")))
            }
            Verdict::Skipped { reason } => {
                self.outcome = "skipped";
                self.reason = Some(reason.clone());
                Err(CliError::Other(format!("the run was skipped: {reason}")))
            }
        }
    }

    fn failed(&mut self, reason: String, rolled_back: bool) -> CliError {
        self.verdict(Verdict::Failed {
            reason,
            rolled_back,
        })
        .unwrap_err()
    }
}

/// Asks `question` on the terminal; a "no" closes the connection and is
/// the `cancelled` outcome, with nothing changed.
async fn ask_to_proceed(
    client: &Client,
    report: &mut Report,
    question: String,
) -> Result<(), CliError> {
    if confirm(question).await {
        return Ok(());
    }
    // The connection is shared by its clones: closing one closes it.
    client.clone().close().await;
    report.outcome = "cancelled";
    Err(CliError::Other("cancelled; nothing changed".to_owned()))
}

pub async fn update(
    overrides: &Overrides,
    args: UpdateArgs<'_>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    check_args(&args, std::io::stdin().is_terminal())?;
    let target = target(overrides)?;
    let (report, result) = update_target(&target, &args, Progress::default()).await;
    if args.json && !report.outcome.is_empty() {
        write_out(out, &pretty(&report)?)?;
    }
    match result {
        Ok(text) if !args.json => write_out(out, &text),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One gateway's update, from the dry run to the verdict: what `molt
/// update` does, and what a fleet rollout does on each gateway. The
/// report is filled whatever happens; the result says whether the target
/// runs.
pub(crate) async fn update_target(
    target: &Target,
    args: &UpdateArgs<'_>,
    progress: Progress,
) -> (Report, Result<String, CliError>) {
    let mut report = Report {
        progress,
        ..Report::default()
    };
    let (client, events) = match connect_retrying(target, Retry::HandoffOnly, PATIENCE).await {
        Ok(pair) => pair,
        Err(e) => {
            report.outcome = "not-started";
            report.reason = Some(e.to_string());
            return (report, Err(e));
        }
    };
    let api = client.hello().update_api();
    report.gateway = client.hello().product().name();
    report.before = Some(ProcessRef::of(&client));
    let result = match api {
        UpdateApi::None => {
            report.outcome = "not-started";
            report.reason = Some("this gateway does not serve update.run".to_owned());
            Err(CliError::Other(
                "this gateway does not serve update.run".to_owned(),
            ))
        }
        UpdateApi::Molt => molt(target, client, events, args, &mut report).await,
        UpdateApi::Sentinel | UpdateApi::Runs => {
            openclaw(target, client, events, api, args, &mut report).await
        }
    };
    (report, result)
}

/// moltd: dry run, run, successor, verification.
async fn molt(
    target: &Target,
    client: Client,
    events: Events,
    args: &UpdateArgs<'_>,
    report: &mut Report,
) -> Result<String, CliError> {
    let before = ProcessRef::of(&client);
    let tag = args.tag.map(str::to_owned);
    let exact = tag.as_deref().filter(|t| semver::Version::parse(t).is_ok());
    // Resolved and not asked about: the run resolves the same version, and
    // a gateway already on it answers `skipped`, judged below.
    if args.resolved
        && args.yes
        && let Some(version) = exact
    {
        return run_and_verify(
            target,
            client,
            events,
            args,
            report,
            before,
            Some(version.to_owned()),
        )
        .await;
    }
    let preview_params = UpdateRunParams {
        tag: tag.clone(),
        dry_run: Some(true),
        ..UpdateRunParams::default()
    };
    let preview = call_run(&client, &preview_params, PREVIEW_TIMEOUT).await;
    let preview = match preview {
        Ok(preview) => preview,
        Err(e) => {
            report.outcome = "not-started";
            report.reason = Some(e.to_string());
            return Err(e);
        }
    };
    let goal = preview.after.clone();
    match preview.outcome {
        Outcome::Succeeded => {}
        Outcome::Skipped if preview.planned => {}
        Outcome::Skipped | Outcome::Running => {
            return already_there(&client, &before, goal, report).await;
        }
        Outcome::Failed { .. } => {
            report.step_failed(&preview.steps);
            let reason = explain_failure(
                preview.reason.as_deref().unwrap_or("the dry run failed"),
                &preview.steps,
            );
            report.outcome = "not-started";
            report.reason = Some(reason.clone());
            return Err(CliError::Other(format!("the update cannot run: {reason}")));
        }
    }
    if !args.yes {
        let goal_text = goal.clone().unwrap_or_else(|| "?".to_owned());
        let facts = Facts::read(client.hello(), None);
        let question = format!(
            "Update moltd {} → {goal_text}?\n{}.\nProceed? [y/N] ",
            format::or_unknown(before.version.as_deref()),
            format::restart_consequence(&facts, UpdateApi::Molt)
        );
        ask_to_proceed(&client, report, question).await?;
    }
    run_and_verify(target, client, events, args, report, before, goal).await
}

/// moltd: the run, the successor and the verdict, towards `goal`.
async fn run_and_verify(
    target: &Target,
    client: Client,
    mut events: Events,
    args: &UpdateArgs<'_>,
    report: &mut Report,
    before: ProcessRef,
    goal: Option<String>,
) -> Result<String, CliError> {
    let tag = args.tag.map(str::to_owned);
    let goal_text = goal.clone().unwrap_or_else(|| "?".to_owned());
    let params = UpdateRunParams {
        note: args.note.map(str::to_owned),
        tag,
        ..UpdateRunParams::default()
    };
    let (answer, tail) = run_with_progress(&client, &mut events, &params, &report.progress).await;
    let mut changelog = answer
        .as_ref()
        .ok()
        .and_then(|a| a.as_ref())
        .and_then(|a| a.changelog.clone());
    let mut run_id = answer
        .as_ref()
        .ok()
        .and_then(|a| a.as_ref())
        .and_then(|a| a.run_id.clone())
        .or(tail.run_id);
    report.run_id = run_id.clone();
    match answer {
        Ok(Some(answer)) => match answer.outcome {
            Outcome::Succeeded | Outcome::Running => report
                .progress
                .say(&format!("installed {goal_text}; restarting")),
            Outcome::Skipped => return already_there(&client, &before, goal, report).await,
            Outcome::Failed { .. } => {
                report.step_failed(&answer.steps);
                report.claim(None, goal.as_deref());
                // The gateway's record says whether the swap was rolled back.
                let live = live_of(&client);
                if let Ok(status) = update_status(&client, run_id.as_ref()).await
                    && let Some(Verdict::Failed {
                        reason,
                        rolled_back,
                    }) = verdict(
                        UpdateApi::Molt,
                        run_id.as_ref(),
                        goal.as_deref(),
                        &status,
                        &live,
                        false,
                    )
                {
                    let steps = status
                        .record_for(run_id.as_ref())
                        .map(|r| r.steps.clone())
                        .unwrap_or_else(|| answer.steps.clone());
                    // What failed after the answer: the restart, in the record.
                    if let Some(later) = steps.get(answer.steps.len()..) {
                        report.step_failed(later);
                    }
                    return Err(report.failed(explain_failure(&reason, &steps), rolled_back));
                }
                let reason =
                    explain_failure(answer.reason.as_deref().unwrap_or("error"), &answer.steps);
                return Err(report.failed(reason, false));
            }
        },
        // The restart took the socket before the answer came.
        Ok(None) => {}
        Err(e) => {
            report.outcome = "failed";
            report.reason = Some(e.to_string());
            return Err(e);
        }
    }
    report.claim(None, goal.as_deref());

    // Wait for the old process to let go; a failed successor means it
    // never does, and update.status says so.
    let before_live = live_of(&client);
    // After `shutdown` the old process only lets go: the successor is
    // already there to ask.
    if !tail.closed && !tail.leaving && client.close_info().is_none() {
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                // `shutdown`: the old process has stopped accepting and
                // lets go; the successor is already there to ask.
                incoming = events.recv() => if matches!(
                    incoming,
                    Incoming::Closed(_) | Incoming::Event { event: GatewayEvent::Shutdown(_), .. }
                ) {
                    break;
                },
                _ = poll.tick() => {
                    let Ok(status) = update_status(&client, run_id.as_ref()).await else {
                        continue;
                    };
                    if let Some(found @ Verdict::Failed { .. }) = verdict(
                        UpdateApi::Molt, run_id.as_ref(), goal.as_deref(), &status, &before_live, false,
                    ) {
                        report.failing_record(&status, run_id.as_ref());
                        return report.verdict(found);
                    }
                }
            }
        }
    }
    let closed_at = Instant::now();
    let (client, _events, outage) =
        wait_for_successor(target, &before, closed_at, SUCCESSOR_PATIENCE).await?;
    let after = ProcessRef::of(&client);
    report.after = Some(after.clone());
    report.outage(&outage);
    report.progress.say(&format!(
        "handed off: {} → {}, gap {} ms",
        before.name(),
        after.name(),
        outage.gap.as_millis()
    ));

    let deadline = Instant::now() + VERIFY_PATIENCE;
    let live = live_of(&client);
    let found = loop {
        let status = update_status(&client, run_id.as_ref()).await?;
        if run_id.is_none() {
            run_id = status.sentinel.as_ref().and_then(|s| s.run_id.clone());
            report.run_id = run_id.clone();
        }
        if let Some(found) = verdict(
            UpdateApi::Molt,
            run_id.as_ref(),
            goal.as_deref(),
            &status,
            &live,
            true,
        ) {
            // The record the successor finished is the last word.
            if let Some(record) = status.record_for(run_id.as_ref()) {
                changelog = record.changelog.clone().or(changelog);
            }
            break found;
        }
        if Instant::now() >= deadline {
            report.outcome = "failed";
            let reason = format!(
                "{} runs, but update.status has no verdict on the run after {}s",
                after.name(),
                VERIFY_PATIENCE.as_secs()
            );
            report.reason = Some(reason.clone());
            return Err(CliError::Other(reason));
        }
        tokio::time::sleep(VERDICT_POLL).await;
    };
    client.close().await;
    if matches!(found, Verdict::Verified { .. }) {
        report.changelog = changelog;
    }
    let said = report.verdict(found)?;
    Ok(match &report.changelog {
        Some(log) if !log.entries.is_empty() => format!("{said}\n\n{}", changes_text(log)),
        _ => said,
    })
}

/// The entries as the changelog has them, newest first, for the terminal.
fn changes_text(log: &Changelog) -> String {
    let mut text = String::from("What changed:");
    for entry in &log.entries {
        text.push_str(&format!("\n\n## {}", entry.version));
        if let Some(date) = &entry.date {
            text.push_str(&format!(" - {date}"));
        }
        text.push_str(&format!("\n{}", entry.text));
    }
    if let Some(problem) = &log.problem {
        text.push_str(&format!("\n\n({problem})"));
    }
    text
}

/// OpenClaw: no dry run; 2026.4.x answers after installing and restarts,
/// 2026.9.x hands off to its updater.
async fn openclaw(
    target: &Target,
    client: Client,
    mut events: Events,
    api: UpdateApi,
    args: &UpdateArgs<'_>,
    report: &mut Report,
) -> Result<String, CliError> {
    if args.tag.is_some() {
        report.outcome = "not-started";
        let reason = "this gateway resolves its target from its update channel; \
                      --tag works with moltd only"
            .to_owned();
        report.reason = Some(reason.clone());
        return Err(CliError::Usage(reason));
    }
    let before = ProcessRef::of(&client);
    let latest = update_status(&client, None)
        .await
        .ok()
        .and_then(|r| r.update_available.map(|a| a.latest))
        .or_else(|| {
            Facts::read(client.hello(), None)
                .update_available
                .map(|a| a.latest)
        });
    if !args.yes {
        let facts = Facts::read(client.hello(), None);
        let question = format!(
            "Update openclaw {} → the channel's latest ({})?\n{}.\nProceed? [y/N] ",
            format::or_unknown(before.version.as_deref()),
            latest.as_deref().unwrap_or("resolved when it runs"),
            format::restart_consequence(&facts, api)
        );
        ask_to_proceed(&client, report, question).await?;
    }
    // OpenClaw's update.run takes note and timeoutMs, nothing of moltd's.
    let params = UpdateRunParams {
        note: args.note.map(str::to_owned),
        ..UpdateRunParams::default()
    };
    let (answer, tail) = run_with_progress(&client, &mut events, &params, &report.progress).await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            report.outcome = "failed";
            report.reason = Some(e.to_string());
            return Err(e);
        }
    };
    report.run_id = answer
        .as_ref()
        .and_then(|a| a.run_id.clone())
        .or(tail.run_id);
    if let Some(answer) = &answer {
        report.advice = answer.message.clone();
        for step in &answer.steps {
            let took = step.duration_ms.map(format::millis).unwrap_or_default();
            report.progress.say(&format!("  {} {took}", step.name));
        }
    }
    match api {
        UpdateApi::Runs => {
            let Some(answer) = answer else {
                report.outcome = "failed";
                let reason = "the gateway closed before it admitted the run".to_owned();
                report.reason = Some(reason.clone());
                return Err(CliError::Other(reason));
            };
            if !answer.handed_off() {
                return not_started(&answer, report);
            }
            report.progress.say(&format!(
                "run {} handed to the updater{}",
                answer.run_id.as_ref().map_or("?", |id| id.as_str()),
                answer
                    .handoff
                    .as_ref()
                    .and_then(|h| h.pid)
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            ));
            follow_run(target, client, events, &before, report).await
        }
        _ => {
            let claimed = match &answer {
                Some(answer) => match answer.outcome {
                    Outcome::Succeeded | Outcome::Running => answer.after.clone(),
                    Outcome::Skipped | Outcome::Failed { .. } => {
                        return not_started(answer, report);
                    }
                },
                None => None,
            };
            report.progress.say(&format!(
                "installed {}; the gateway restarts",
                claimed.as_deref().unwrap_or("the new version")
            ));
            // It restarts itself a moment after it answers.
            if !tail.closed && client.close_info().is_none() {
                loop {
                    if let Incoming::Closed(_) = events.recv().await {
                        break;
                    }
                }
            }
            let closed_at = Instant::now();
            let (client, _events, outage) =
                wait_for_successor(target, &before, closed_at, OPENCLAW_RESTART_PATIENCE).await?;
            let after = ProcessRef::of(&client);
            report.after = Some(after.clone());
            report.outage(&outage);
            report.progress.say(&format!(
                "back: {} → {}, gap {}, port dark {}",
                before.name(),
                after.name(),
                format::gap(outage.gap),
                outage.dark.map_or_else(|| "never".to_owned(), format::gap)
            ));
            let live = live_of(&client);
            let status = update_status(&client, None).await.unwrap_or_default();
            // What the run installed, from its answer; else the sentinel's.
            match &claimed {
                Some(version) => report.claim(None, Some(version)),
                None => report.claim(status.sentinel.as_ref(), None),
            }
            client.close().await;
            let found = verdict(
                UpdateApi::Sentinel,
                None,
                claimed.as_deref(),
                &status,
                &live,
                true,
            )
            .or_else(|| {
                // No sentinel: the answer's claim against the process.
                let claimed = claimed.clone()?;
                Some(match live.version() {
                    Some(running) if running != claimed => Verdict::Mismatch {
                        claimed,
                        running: running.to_owned(),
                    },
                    Some(running) => Verdict::Verified {
                        version: running.to_owned(),
                        pid: live.pid,
                    },
                    None => return None,
                })
            });
            // A failure OpenClaw reports can leave the new tree installed
            // under the old process: say that plainly too.
            let found = found.map(|found| match (found, &claimed, live.version()) {
                (
                    Verdict::Failed {
                        reason,
                        rolled_back,
                    },
                    Some(claimed),
                    Some(running),
                ) if claimed != running => Verdict::Failed {
                    reason: format!("{reason}: install says {claimed}, process runs {running}"),
                    rolled_back,
                },
                (found, ..) => found,
            });
            match found {
                Some(found) => report.verdict(found),
                None => {
                    report.outcome = "failed";
                    let reason = "the gateway reported no version to verify".to_owned();
                    report.reason = Some(reason.clone());
                    Err(CliError::Other(reason))
                }
            }
        }
    }
}

/// OpenClaw 2026.9.x: reads the run record until it is final, across the
/// restart, then judges it against the process that answers.
async fn follow_run(
    target: &Target,
    mut client: Client,
    mut events: Events,
    before: &ProcessRef,
    report: &mut Report,
) -> Result<String, CliError> {
    let Some(run_id) = report.run_id.clone() else {
        report.outcome = "failed";
        let reason = "the gateway named no run to follow".to_owned();
        report.reason = Some(reason.clone());
        return Err(CliError::Other(reason));
    };
    let deadline = Instant::now() + RUN_PATIENCE;
    let mut restarted = false;
    let mut phase = String::new();
    let mut poll = tokio::time::interval(RUN_POLL);
    loop {
        tokio::select! {
            incoming = events.recv() => match incoming {
                Incoming::Event { event: GatewayEvent::UpdateRunChanged(changed), .. }
                    if changed.run_id == run_id =>
                {
                    let now = changed.phase.clone().unwrap_or_default();
                    if now != phase {
                        report.progress.say(&format!("  {now} ({})", changed.status.as_deref().unwrap_or("?")));
                        phase = now;
                    }
                    continue;
                }
                Incoming::Closed(close) => {
                    report.progress.say(&format!("gateway closed ({close}); waiting for it to come back"));
                    let closed_at = Instant::now();
                    let (next, next_events, outage) = wait_for_successor(
                        target, before, closed_at, OPENCLAW_RESTART_PATIENCE,
                    )
                    .await?;
                    restarted = true;
                    report.outage(&outage);
                    report.after = Some(ProcessRef::of(&next));
                    (client, events) = (next, next_events);
                    continue;
                }
                _ => continue,
            },
            _ = poll.tick() => {}
        }
        let record = match client
            .call_named(
                RUNS_GET,
                Some(json!({ "runId": run_id })),
                client.request_timeout(),
            )
            .await
        {
            Ok(value) => value.get("run").and_then(Claim::from_record),
            // The gateway is going away; the close comes next.
            Err(RequestError::Disconnected { .. } | RequestError::Timeout { .. }) => continue,
            Err(RequestError::Gateway(shape)) => {
                tracing::debug!(%shape, "update.runs.get refused; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(record) = record.filter(Claim::is_done) {
            let live = live_of(&client);
            report.after = Some(ProcessRef::of(&client));
            report.claim(Some(&record), None);
            if report.advice.is_none() {
                report.advice = record.next_action.clone();
            }
            if let Some(step) = record.failing_step() {
                report.step_failed(std::slice::from_ref(step));
            }
            // Nothing to install, and the process runs what the channel
            // offers: up to date, as moltd's `already up to date`.
            if record.outcome == Outcome::Skipped
                && record.target_version().is_some()
                && record.target_version() == live.version()
            {
                client.close().await;
                let version = live.version().unwrap_or_default().to_owned();
                report.ok = true;
                report.outcome = "up-to-date";
                report.up_to_date = Some(true);
                report.reason = record.reason.clone();
                report.running = report.after.clone();
                return Ok(format!(
                    "already up to date: v{version} runs{} ({})",
                    live.pid.map(|p| format!(" as pid {p}")).unwrap_or_default(),
                    record.reason.as_deref().unwrap_or("skipped")
                ));
            }
            let status = UpdateReport {
                run: Some(record),
                ..UpdateReport::default()
            };
            let found = verdict(
                UpdateApi::Runs,
                Some(&run_id),
                None,
                &status,
                &live,
                restarted,
            );
            client.close().await;
            return match found {
                Some(found) => report.verdict(found),
                None => {
                    report.outcome = "failed";
                    let reason = "the run ended but the gateway reported no version".to_owned();
                    report.reason = Some(reason.clone());
                    Err(CliError::Other(reason))
                }
            };
        }
        if Instant::now() >= deadline {
            report.outcome = "failed";
            let reason = format!(
                "run {run_id} is not final after {} minutes",
                RUN_PATIENCE.as_secs() / 60
            );
            report.reason = Some(reason.clone());
            return Err(CliError::Other(reason));
        }
    }
}

/// OpenClaw did not start (or ran nothing): its reason and its advice.
fn not_started(answer: &RunAnswer, report: &mut Report) -> Result<String, CliError> {
    let reason = answer
        .reason
        .clone()
        .unwrap_or_else(|| "the gateway did not start the update".to_owned());
    report.reason = Some(reason.clone());
    report.advice = answer.message.clone();
    report.outcome = match answer.outcome {
        Outcome::Failed { .. } => "failed",
        _ => "not-started",
    };
    let advice = answer
        .message
        .as_deref()
        .map(|m| format!("\n{m}"))
        .unwrap_or_default();
    Err(CliError::Other(format!(
        "the gateway did not update: {reason}{advice}"
    )))
}

/// Sends `update.run` and prints progress on stderr until it answers.
/// Returns the answer (`None`: the socket closed first) and whether the
/// session is still open, with a run id named by an event.
/// What the connection did while `update.run` ran.
#[derive(Default)]
struct RunTail {
    /// The connection closed.
    closed: bool,
    /// The gateway sent `shutdown`: it stopped accepting and lets go.
    leaving: bool,
    /// The run's id, from its events.
    run_id: Option<RunId>,
}

async fn run_with_progress(
    client: &Client,
    events: &mut Events,
    params: &UpdateRunParams,
    progress: &Progress,
) -> (Result<Option<RunAnswer>, CliError>, RunTail) {
    let params_value = match serde_json::to_value(params) {
        Ok(v) => v,
        Err(e) => return (Err(CliError::Other(e.to_string())), RunTail::default()),
    };
    let timeout = crate::net::timeout_for(Method::UpdateRun, Some(&params_value), PATIENCE);
    let run = client.request_with_timeout(Method::UpdateRun, Some(params_value), timeout);
    tokio::pin!(run);
    let mut tail = RunTail::default();
    let answer = loop {
        tokio::select! {
            result = &mut run => break result,
            incoming = events.recv(), if !tail.closed => match incoming {
                Incoming::Event { event: GatewayEvent::UpdateProgress(p), .. } => {
                    tail.run_id.get_or_insert(p.run_id.clone());
                    if let Some(step) = p.step {
                        let took = step.duration_ms.map(|ms| format!(" ({})", format::millis(ms))).unwrap_or_default();
                        let exit = step.exit_code.filter(|c| *c != 0).map(|c| format!(" exit {c}")).unwrap_or_default();
                        progress.say(&format!("  {} {}{took}{exit}", step.name, step.state));
                    }
                }
                Incoming::Event { event: GatewayEvent::UpdateRunChanged(c), .. } => {
                    tail.run_id.get_or_insert(c.run_id.clone());
                    progress.say(&format!("  {} ({})", c.phase.as_deref().unwrap_or("?"), c.status.as_deref().unwrap_or("?")));
                }
                Incoming::Event { event: GatewayEvent::Shutdown(_), .. } => tail.leaving = true,
                Incoming::Closed(_) => tail.closed = true,
                _ => {}
            },
        }
    };
    let answer = match answer {
        Ok(value) => RunAnswer::from_value(&value).map(Some).map_err(|problem| {
            CliError::Request(RequestError::Decode {
                method: Method::UpdateRun.as_str().to_owned(),
                problem,
            })
        }),
        Err(RequestError::Disconnected { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    };
    (answer, tail)
}

async fn call_run(
    client: &Client,
    params: &UpdateRunParams,
    timeout: Duration,
) -> Result<RunAnswer, CliError> {
    let params = serde_json::to_value(params).map_err(|e| CliError::Other(e.to_string()))?;
    let value = client
        .request_with_timeout(Method::UpdateRun, Some(params), timeout)
        .await?;
    RunAnswer::from_value(&value).map_err(|problem| {
        CliError::Request(RequestError::Decode {
            method: Method::UpdateRun.as_str().to_owned(),
            problem,
        })
    })
}

/// `update.status` (moltd with the run id), read leniently.
async fn update_status(client: &Client, run_id: Option<&RunId>) -> Result<UpdateReport, CliError> {
    let params = match (client.hello().update_api(), run_id) {
        (UpdateApi::Molt, Some(id)) => json!({ "runId": id }),
        _ => json!({}),
    };
    let value = client.request(Method::UpdateStatus, Some(params)).await?;
    UpdateReport::from_value(&value).map_err(|problem| {
        CliError::Request(RequestError::Decode {
            method: Method::UpdateStatus.as_str().to_owned(),
            problem,
        })
    })
}

fn live_of(client: &Client) -> Live {
    Live::of(client.hello(), &Facts::read(client.hello(), None))
}

/// Refuses bad input before anything is sent.
fn check_args(args: &UpdateArgs<'_>, interactive: bool) -> Result<(), CliError> {
    if let Some(tag) = args.tag {
        if tag.is_empty() {
            return Err(CliError::Usage(
                "--tag needs a version or a dist-tag".to_owned(),
            ));
        }
        validate_tag(tag).map_err(|p| CliError::Usage(format!("bad --tag {tag:?}: {p}")))?;
    }
    if args.note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(CliError::Usage(format!(
            "--note is limited to {MAX_NOTE} characters"
        )));
    }
    if !args.yes && !interactive {
        return Err(CliError::Usage(
            "stdin is not a terminal: pass --yes to update without asking".to_owned(),
        ));
    }
    Ok(())
}

/// Nothing to install: succeed only if the answering process runs the goal.
async fn already_there(
    client: &Client,
    before: &ProcessRef,
    goal: Option<String>,
    report: &mut Report,
) -> Result<String, CliError> {
    let status = update_status(client, None).await?;
    let running = status
        .running_version
        .clone()
        .or_else(|| before.version.clone())
        .unwrap_or_default();
    if goal.as_ref().is_some_and(|g| *g != running) {
        report.outcome = "mismatch";
        let reason = format!(
            "skipped, but {running} runs, not {}",
            goal.unwrap_or_default()
        );
        report.reason = Some(reason.clone());
        return Err(CliError::Other(reason));
    }
    report.ok = true;
    report.outcome = "up-to-date";
    report.up_to_date = Some(true);
    report.running = Some(before.clone());
    Ok(format!(
        "already up to date: v{running} runs{}",
        before
            .pid
            .map(|p| format!(" as pid {p}"))
            .unwrap_or_default()
    ))
}

impl Report {
    /// The failing step's command and its output as progress (the head
    /// from its first line, where tools say what went wrong, then the
    /// tails), recorded for a caller that reports the step.
    fn step_failed(&mut self, steps: &[Step]) {
        let Some(step) = steps.iter().find(|s| s.failed) else {
            return;
        };
        let mut lines = vec![format!(
            "step {} failed: {}",
            step.name,
            step.command.as_deref().unwrap_or("")
        )];
        let mut shown: Vec<&str> = Vec::new();
        for text in [&step.stderr_head, &step.stderr_tail, &step.stdout_tail] {
            let output: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if output.is_empty() || output == shown {
                continue;
            }
            lines.extend(output.iter().map(|line| format!("  {line}")));
            shown = output;
        }
        if let Some(detail) = &step.detail {
            lines.push(format!("  {detail}"));
        }
        for line in &lines {
            self.progress.say(line);
        }
        self.failed_step = Some(json!({
            "name": step.name,
            "command": step.command,
            "exitCode": step.exit_code,
            "stdoutHead": step.stdout_head,
            "stdoutTail": step.stdout_tail,
            "stderrHead": step.stderr_head,
            "stderrTail": step.stderr_tail,
        }));
        self.output_tail = lines;
    }

    fn failing_record(&mut self, status: &UpdateReport, run_id: Option<&RunId>) {
        if let Some(record) = status.record_for(run_id) {
            self.step_failed(&record.steps.clone());
        }
    }
}

/// Asks on stderr, reads a line from stdin without blocking the runtime
/// (the connection must keep answering pings meanwhile).
pub(super) async fn confirm(question: String) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(tag: Option<&'a str>, note: Option<&'a str>, yes: bool) -> UpdateArgs<'a> {
        UpdateArgs {
            tag,
            note,
            yes,
            json: false,
            resolved: false,
        }
    }

    #[test]
    fn bad_input_is_refused_before_connecting() {
        assert!(check_args(&args(Some("0.2.0"), Some("weekly"), true), false).is_ok());
        assert!(check_args(&args(None, None, false), true).is_ok());
        let long = "x".repeat(MAX_NOTE + 1);
        for bad in [
            args(Some(""), None, true),
            args(Some("1;rm"), None, true),
            args(None, Some(&long), true),
            args(None, None, false),
        ] {
            assert!(matches!(check_args(&bad, false), Err(CliError::Usage(_))));
        }
    }
}
