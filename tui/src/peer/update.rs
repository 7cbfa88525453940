//! What an update claims, and whether the live process agrees.
//!
//! Claims come from a restart sentinel (moltd, OpenClaw 2026.4.x and
//! 2026.9.x) or a run record (moltd's `update-runs.jsonl`, OpenClaw
//! 2026.9.x's update ledger). Both are what the *install* says happened.
//! The verdict compares them with what the *process* says it runs
//! (`hello-ok.server.version`, `status` `runtimeVersion`, the build id):
//! OpenClaw 2026.4.x was measured keeping old code running over a new
//! tree while its sentinel and `update.status` reported the new version.

use molt_protocol::changelog::Changelog;
use molt_protocol::ids::RunId;
use serde_json::Value;

use super::facts::{self, Available, Facts};
use super::hello::{Hello, UpdateApi};
use super::json::{self, short};

/// How an update ended, as claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Running,
    /// The install (or moltd's successor) reports success.
    Succeeded,
    Failed {
        rolled_back: bool,
    },
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimSource {
    Sentinel,
    Record,
}

/// One step, as whichever gateway reported it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    pub name: String,
    pub command: Option<String>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    /// OpenClaw 2026.9.x: `pending`, `in_progress`, `completed`, `failed`,
    /// `skipped`.
    pub status: Option<String>,
    pub failed: bool,
    pub stdout_head: String,
    pub stdout_tail: String,
    pub stderr_head: String,
    pub stderr_tail: String,
    /// OpenClaw 2026.9.x: the step's detail and failure facts.
    pub detail: Option<String>,
}

/// What the successor (moltd) or the updater (OpenClaw 2026.9.x) recorded
/// about the process it found running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub build_id: Option<String>,
    /// moltd: why the successor's version was not the one expected.
    pub mismatch: Option<String>,
}

/// A sentinel or a run record: what one update claims.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub source: ClaimSource,
    pub run_id: Option<RunId>,
    pub outcome: Outcome,
    /// The gateway's own word for where the run is (moltd `phase`,
    /// OpenClaw 2026.9.x `phase`).
    pub phase: Option<String>,
    pub reason: Option<String>,
    pub before: Option<String>,
    /// The version the install claims to have put in place.
    pub after: Option<String>,
    pub after_build_id: Option<String>,
    /// The version the run aims at.
    pub target: Option<String>,
    /// The tag or dist-tag asked for.
    pub target_tag: Option<String>,
    pub steps: Vec<Step>,
    pub verified: Option<Verification>,
    /// moltd: the successor proved the version itself (sentinel
    /// `verified`, or a record in phase `verified`).
    pub proven: bool,
    pub note: Option<String>,
    /// OpenClaw: what the operator should do next.
    pub next_action: Option<String>,
    /// OpenClaw 2026.9.x: from the service stop to a verified successor.
    pub downtime_ms: Option<u64>,
    pub mode: Option<String>,
    /// Who started it: moltd `manual`/`auto` (+ actor), OpenClaw `api`,
    /// `cli`, `campaign`, ….
    pub trigger: Option<String>,
    pub actor: Option<String>,
    /// Unix ms.
    pub requested_at: Option<u64>,
    pub updated_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// moltd: the new version's changelog entries since `before`.
    pub changelog: Option<Changelog>,
}

impl Claim {
    fn new(source: ClaimSource, outcome: Outcome) -> Claim {
        Claim {
            source,
            run_id: None,
            outcome,
            phase: None,
            reason: None,
            before: None,
            after: None,
            after_build_id: None,
            target: None,
            target_tag: None,
            steps: Vec::new(),
            verified: None,
            proven: false,
            note: None,
            next_action: None,
            downtime_ms: None,
            mode: None,
            trigger: None,
            actor: None,
            requested_at: None,
            updated_at: None,
            finished_at: None,
            changelog: None,
        }
    }

    /// A restart sentinel's payload (moltd or OpenClaw; both keep the
    /// details under `stats`).
    pub fn from_sentinel(value: &Value) -> Option<Claim> {
        if !value.is_object() {
            return None;
        }
        let rolled_back = json::bool_at(value, "/rolledBack").unwrap_or(false);
        let outcome = match json::string(value, "/status")?.as_str() {
            "ok" => Outcome::Succeeded,
            "error" => Outcome::Failed { rolled_back },
            "skipped" => Outcome::Skipped,
            _ => Outcome::Running,
        };
        let mut claim = Claim::new(ClaimSource::Sentinel, outcome);
        claim.run_id = json::string(value, "/runId")
            .or_else(|| json::string(value, "/stats/runId"))
            .map(RunId::from);
        claim.reason = json::string(value, "/stats/reason");
        claim.before = json::string(value, "/stats/before/version");
        claim.after = json::string(value, "/stats/after/version");
        claim.target = json::string(value, "/stats/target");
        claim.steps = steps(value, "/stats/steps");
        claim.mode = json::string(value, "/stats/mode");
        claim.note = json::string(value, "/message");
        claim.updated_at = json::u64_at(value, "/ts");
        if let Some(verified) = json::at(value, "/verified") {
            claim.verified = Some(Verification {
                version: json::string(verified, "/runningVersion"),
                pid: json::u32_at(verified, "/pid"),
                build_id: None,
                mismatch: json::string(verified, "/mismatch"),
            });
            claim.proven = true;
        }
        Some(claim)
    }

    /// A run record: moltd's (`phase` is the outcome) or OpenClaw
    /// 2026.9.x's (`status` is the outcome, `phase` where it got to).
    pub fn from_record(value: &Value) -> Option<Claim> {
        let run_id = RunId::from(json::string(value, "/runId")?);
        let phase = json::string(value, "/phase");
        let openclaw =
            json::at(value, "/createdAtMs").is_some() || json::string(value, "/status").is_some();
        let mut claim = if openclaw {
            let outcome = match json::string(value, "/status").as_deref() {
                Some("succeeded") => Outcome::Succeeded,
                Some("failed") => Outcome::Failed { rolled_back: false },
                Some("rolled-back") => Outcome::Failed { rolled_back: true },
                Some("skipped") => Outcome::Skipped,
                _ => Outcome::Running,
            };
            let mut claim = Claim::new(ClaimSource::Record, outcome);
            claim.after_build_id = json::string(value, "/after/buildId");
            claim.next_action = json::string(value, "/origin/nextAction");
            claim.downtime_ms = json::u64_at(value, "/downtimeMs");
            claim.requested_at = json::u64_at(value, "/createdAtMs");
            claim.updated_at = json::u64_at(value, "/updatedAtMs");
            claim.finished_at = json::u64_at(value, "/finishedAtMs");
            claim.mode = json::string(value, "/target/installationMethod");
            if let Some(verification) = json::at(value, "/verification") {
                let v = Verification {
                    version: json::string(verification, "/runningVersion"),
                    pid: json::u32_at(verification, "/pid"),
                    build_id: json::string(verification, "/runningBuildId"),
                    mismatch: None,
                };
                claim.verified = (v != Verification::default()).then_some(v);
            }
            claim
        } else {
            let outcome = match phase.as_deref() {
                Some("verified") => Outcome::Succeeded,
                Some("failed") => Outcome::Failed { rolled_back: false },
                Some("rolled-back") => Outcome::Failed { rolled_back: true },
                Some("skipped") => Outcome::Skipped,
                _ => Outcome::Running,
            };
            let mut claim = Claim::new(ClaimSource::Record, outcome);
            claim.proven = outcome == Outcome::Succeeded;
            claim.requested_at = json::u64_at(value, "/requestedAt");
            claim.updated_at = json::u64_at(value, "/updatedAt");
            claim.finished_at = json::u64_at(value, "/finishedAt");
            claim.mode = json::string(value, "/mode");
            claim.note = json::string(value, "/note");
            claim.changelog = json::typed(value, "/changelog");
            claim
        };
        claim.run_id = Some(run_id);
        claim.phase = phase;
        claim.reason = json::string(value, "/reason");
        claim.before = json::string(value, "/before/version");
        claim.after = json::string(value, "/after/version");
        claim.target = json::string(value, "/target/version");
        claim.target_tag = json::string(value, "/target/tag");
        claim.trigger = json::string(value, "/trigger");
        claim.actor = json::string(value, "/actor");
        claim.steps = steps(value, "/steps");
        Some(claim)
    }

    /// The version the run installs: what it reached, else what it aims at.
    pub fn target_version(&self) -> Option<&str> {
        self.after.as_deref().or(self.target.as_deref())
    }

    pub fn is_done(&self) -> bool {
        self.outcome != Outcome::Running
    }

    /// The first failing step.
    pub fn failing_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.failed)
    }
}

fn steps(value: &Value, pointer: &str) -> Vec<Step> {
    json::at(value, pointer)
        .and_then(Value::as_array)
        .map(|steps| steps.iter().filter_map(Step::from_value).collect())
        .unwrap_or_default()
}

impl Step {
    /// A step of any of the shapes: moltd's `StepRecord`, OpenClaw
    /// 2026.4.x's (`name`, `exitCode`, tails at the top or under `log`),
    /// OpenClaw 2026.9.x's ledger step (`step`, `status`, times).
    pub fn from_value(value: &Value) -> Option<Step> {
        let text = |p: &str| json::string(value, p).unwrap_or_default();
        let name = json::string(value, "/name").or_else(|| json::string(value, "/step"))?;
        let exit_code =
            json::i32_at(value, "/exitCode").or_else(|| json::i32_at(value, "/log/exitCode"));
        let status = json::string(value, "/status");
        let duration_ms = json::u64_at(value, "/durationMs").or_else(|| {
            let start = json::u64_at(value, "/startedAtMs")?;
            Some(json::u64_at(value, "/endedAtMs")?.saturating_sub(start))
        });
        // moltd records say how a step ended; a timeout or a signal has no
        // exit code and is a failure.
        let failed = match (json::at(value, "/termination"), status.as_deref()) {
            (Some(_), _) => exit_code != Some(0),
            (None, Some("failed")) => true,
            _ => exit_code.is_some_and(|c| c != 0),
        };
        let facts: Vec<String> = json::at(value, "/failureFacts")
            .and_then(Value::as_array)
            .map(|facts| {
                facts
                    .iter()
                    .filter_map(|f| {
                        let code = json::string(f, "/code")?;
                        Some(match json::string(f, "/message") {
                            Some(m) => format!("{code}: {m}"),
                            None => code,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = json::string(value, "/detail")
            .into_iter()
            .chain(facts)
            .collect::<Vec<_>>();
        let tail = |top: &str, log: &str| {
            json::string(value, top)
                .or_else(|| json::string(value, log))
                .unwrap_or_default()
        };
        Some(Step {
            name,
            command: json::string(value, "/command"),
            duration_ms,
            exit_code,
            status,
            failed,
            stdout_head: text("/stdoutHead"),
            stdout_tail: tail("/stdoutTail", "/log/stdoutTail"),
            stderr_head: text("/stderrHead"),
            stderr_tail: tail("/stderrTail", "/log/stderrTail"),
            detail: (!detail.is_empty()).then(|| detail.join("; ")),
        })
    }

    pub fn finished(&self) -> bool {
        match self.status.as_deref() {
            Some("pending" | "in_progress") => false,
            Some(_) => true,
            None => true,
        }
    }

    /// The line that names the problem: the first line of the step's
    /// error output that reads like one (`fatal:`, `error`, `ERR!`), else
    /// its first line. A tool's last line is usually advice ("and the
    /// repository exists."), not the cause.
    pub fn problem_line(&self) -> Option<String> {
        let lines = || {
            [&self.stderr_head, &self.stderr_tail, &self.stdout_tail]
                .into_iter()
                .flat_map(|text| text.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("molt: "))
        };
        let names_it = |line: &&str| {
            let lower = line.to_lowercase();
            ["fatal:", "error", "err!", "failed", "not found", "denied"]
                .iter()
                .any(|w| lower.contains(w))
        };
        lines()
            .find(names_it)
            .or_else(|| lines().next())
            .map(str::to_owned)
            .or_else(|| self.detail.clone())
    }
}

/// `reason` with the line of the first failing step's output that names
/// the problem, when the reason does not already (moltd's reason quotes
/// the step's *last* stderr line, often advice like "and the repository
/// exists.").
pub fn explain_failure(reason: &str, steps: &[Step]) -> String {
    let Some(problem) = steps.iter().find(|s| s.failed).and_then(Step::problem_line) else {
        return reason.to_owned();
    };
    if reason.contains(&problem) {
        return reason.to_owned();
    }
    // "fetch failed (exit 128): <last line>" → keep "fetch failed (exit 128)".
    let head = reason.split(": ").next().unwrap_or(reason);
    format!("{head}: {problem}")
}

/// `update.status`, of any product.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateReport {
    pub sentinel: Option<Claim>,
    /// moltd `run` (the one asked about), OpenClaw 2026.9.x `activeRun`.
    pub run: Option<Claim>,
    pub last_run: Option<Claim>,
    /// moltd: the version of the process answering.
    pub running_version: Option<String>,
    pub update_available: Option<Available>,
    /// OpenClaw 2026.9.x `schedule`: an automatic-update campaign.
    pub campaign: Option<Campaign>,
}

/// OpenClaw 2026.9.x: an automatic update announced and counting down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub state: String,
    pub apply_at: Option<u64>,
    pub hold_until: Option<u64>,
}

impl UpdateReport {
    pub fn from_value(value: &Value) -> Result<UpdateReport, String> {
        if !value.is_object() {
            return Err(format!("update.status is not an object: {}", short(value)));
        }
        Ok(UpdateReport {
            sentinel: json::at(value, "/sentinel").and_then(Claim::from_sentinel),
            run: json::at(value, "/run")
                .or_else(|| json::at(value, "/activeRun"))
                .and_then(Claim::from_record),
            last_run: json::at(value, "/lastRun").and_then(Claim::from_record),
            running_version: json::string(value, "/runningVersion"),
            update_available: json::at(value, "/updateAvailable").and_then(facts::available),
            campaign: json::string(value, "/schedule/campaign/state").map(|state| Campaign {
                state,
                apply_at: json::u64_at(value, "/schedule/campaign/applyAtMs"),
                hold_until: json::u64_at(value, "/schedule/campaign/holdUntilMs"),
            }),
        })
    }

    /// The record about `run_id` (any when `None`).
    pub fn record_for(&self, run_id: Option<&RunId>) -> Option<&Claim> {
        [&self.run, &self.last_run]
            .into_iter()
            .flatten()
            .find(|r| run_id.is_none_or(|id| r.run_id.as_ref() == Some(id)))
    }
}

/// OpenClaw 2026.9.x `update.run.changed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunChanged {
    pub run_id: RunId,
    pub phase: Option<String>,
    pub status: Option<String>,
}

impl RunChanged {
    pub fn from_value(value: &Value) -> Option<RunChanged> {
        Some(RunChanged {
            run_id: RunId::from(json::string(value, "/runId")?),
            phase: json::string(value, "/phase"),
            status: json::string(value, "/status"),
        })
    }

    pub fn is_terminal(&self) -> bool {
        self.status.as_deref().is_some_and(|s| s != "running")
    }
}

/// OpenClaw 2026.9.x: how `update.run` handed the update on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunHandoff {
    /// `started`, `unavailable`, `already-running`.
    pub status: String,
    pub pid: Option<u32>,
    /// The command that runs (or that the operator should run).
    pub command: Option<String>,
    pub message: Option<String>,
}

/// A restart the gateway scheduled (in an `update.run` or `config.patch`
/// answer). moltd names its strategy (`respawn`, `exec`, `supervised`);
/// OpenClaw its own (`emit`): the mode is shown as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPlan {
    pub pid: Option<u32>,
    pub mode: Option<String>,
    pub delay_ms: Option<u64>,
    pub reason: Option<String>,
}

impl RestartPlan {
    /// Present when `value` is an object; each field unknown when absent.
    pub fn from_value(value: &Value) -> Option<RestartPlan> {
        value.is_object().then(|| RestartPlan {
            pid: json::u32_at(value, "/pid"),
            mode: json::string(value, "/mode"),
            delay_ms: json::u64_at(value, "/delayMs"),
            reason: json::string(value, "/reason"),
        })
    }

    /// `respawn in 2000 ms (update.run)`.
    pub fn describe(&self) -> String {
        let mode = self.mode.as_deref().unwrap_or("restart");
        let delay = self.delay_ms.map_or_else(
            || "after an unknown delay".to_owned(),
            |ms| format!("in {ms} ms"),
        );
        match &self.reason {
            Some(reason) => format!("{mode} {delay} ({reason})"),
            None => format!("{mode} {delay}"),
        }
    }
}

/// The answer to `update.run`, of any product.
#[derive(Clone, Debug, PartialEq)]
pub struct RunAnswer {
    pub run_id: Option<RunId>,
    pub ok: Option<bool>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub steps: Vec<Step>,
    /// moltd: a dry run's plan (nothing done; `after` would be installed).
    pub planned: bool,
    pub restart: Option<RestartPlan>,
    pub handoff: Option<RunHandoff>,
    /// OpenClaw: a message for the operator (`message`, else the handoff's).
    pub message: Option<String>,
    /// moltd: the new version's changelog entries since `before`.
    pub changelog: Option<Changelog>,
}

impl RunAnswer {
    pub fn from_value(value: &Value) -> Result<RunAnswer, String> {
        if !value.is_object() {
            return Err(format!("update.run answered {}", short(value)));
        }
        let outcome = match json::string(value, "/result/status").as_deref() {
            Some("ok") => Outcome::Succeeded,
            Some("error") => Outcome::Failed { rolled_back: false },
            Some("skipped") => Outcome::Skipped,
            _ => Outcome::Running,
        };
        let reason = json::string(value, "/result/reason");
        let handoff = json::at(value, "/handoff").and_then(|h| {
            Some(RunHandoff {
                status: json::string(h, "/status")?,
                pid: json::u32_at(h, "/pid"),
                command: json::string(h, "/command"),
                message: json::string(h, "/message"),
            })
        });
        let message = json::string(value, "/message")
            .or_else(|| handoff.as_ref().and_then(|h| h.message.clone()));
        Ok(RunAnswer {
            run_id: json::string(value, "/runId").map(RunId::from),
            ok: json::bool_at(value, "/ok"),
            outcome,
            planned: outcome == Outcome::Skipped
                && reason
                    .as_deref()
                    .and_then(molt_protocol::update::ReasonCode::of)
                    .is_some_and(|c| c == molt_protocol::update::ReasonCode::DryRun),
            reason,
            before: json::string(value, "/result/before/version"),
            after: json::string(value, "/result/after/version"),
            steps: steps(value, "/result/steps"),
            restart: json::at(value, "/restart").and_then(RestartPlan::from_value),
            handoff,
            message,
            changelog: json::typed(value, "/result/changelog"),
        })
    }

    /// OpenClaw 2026.9.x: the update continues in a detached updater.
    pub fn handed_off(&self) -> bool {
        self.handoff.as_ref().is_some_and(|h| h.status == "started")
    }
}

/// What the process answering now says it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// `hello-ok.server.version`.
    pub hello_version: Option<String>,
    /// `status` `version` (moltd) or `runtimeVersion` (OpenClaw).
    pub status_version: Option<String>,
    pub build_id: Option<String>,
    pub boot_id: Option<String>,
    pub pid: Option<u32>,
    /// Unix ms.
    pub started_at: Option<u64>,
}

impl Live {
    pub fn of(hello: &Hello, facts: &Facts) -> Live {
        Live {
            hello_version: hello.server.version.clone(),
            status_version: facts
                .runtime_version
                .clone()
                .or_else(|| facts.version.clone()),
            build_id: facts.build_id.clone(),
            boot_id: facts.boot_id.clone(),
            pid: facts.pid,
            started_at: facts.started_at,
        }
    }

    /// The version to name: the status answer's, else the handshake's.
    pub fn version(&self) -> Option<&str> {
        self.status_version
            .as_deref()
            .or(self.hello_version.as_deref())
    }

    /// A version the process reports that is not `claimed`, if any.
    fn contradicts(&self, claimed: &str) -> Option<&str> {
        [
            self.status_version.as_deref(),
            self.hello_version.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|v| *v != claimed)
    }
}

/// What the console concludes about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The live process runs the version the update installed.
    Verified {
        version: String,
        pid: Option<u32>,
    },
    /// The install claims one version (or build) and the process reports
    /// another: the update did not take effect.
    Mismatch {
        claimed: String,
        running: String,
    },
    Failed {
        reason: String,
        rolled_back: bool,
    },
    Skipped {
        reason: String,
    },
}

/// The verdict on `run_id` (any when `None`), or `None` while it runs.
///
/// `target` is the version the run installs, when the console knows it.
/// `restarted`: the process answering is not the one that ran the update
/// (the console reconnected after the restart). A 2026.4.x sentinel is
/// written before the restart, so it is only judged after one.
pub fn verdict(
    api: UpdateApi,
    run_id: Option<&RunId>,
    target: Option<&str>,
    report: &UpdateReport,
    live: &Live,
    restarted: bool,
) -> Option<Verdict> {
    let same = |claim: &&Claim| {
        run_id.is_none() || claim.run_id.is_none() || claim.run_id.as_ref() == run_id
    };
    let sentinel = report.sentinel.as_ref().filter(same);
    let record = report.record_for(run_id);
    // moltd writes the sentinel before it finishes the run (a rollback
    // rewrites it, then ends the record): its record, once final, is the
    // last word; while it runs, there is none yet.
    if api == UpdateApi::Molt && record.is_some_and(|r| !r.is_done()) {
        return None;
    }
    let claims: Vec<&Claim> = match api {
        // The 2026.9.x sentinel tells of the handoff; the record of the run.
        UpdateApi::Runs => record.into_iter().chain(sentinel).collect(),
        _ => sentinel.into_iter().chain(record).collect(),
    };
    claims
        .into_iter()
        .find_map(|claim| judge(api, claim, target, report, live, restarted))
}

/// One claim against the live process.
pub fn judge(
    api: UpdateApi,
    claim: &Claim,
    target: Option<&str>,
    report: &UpdateReport,
    live: &Live,
    restarted: bool,
) -> Option<Verdict> {
    let reason = |fallback: &str| claim.reason.clone().unwrap_or_else(|| fallback.to_owned());
    match claim.outcome {
        Outcome::Running => None,
        Outcome::Failed { rolled_back } => Some(Verdict::Failed {
            reason: reason("the update failed"),
            rolled_back,
        }),
        Outcome::Skipped => Some(Verdict::Skipped {
            reason: reason("skipped"),
        }),
        Outcome::Succeeded => {
            let claimed = target
                .or(claim.after.as_deref())
                .or(claim.target.as_deref());
            if claim.proven {
                let verified = claim.verified.as_ref();
                if let Some(mismatch) = verified.and_then(|v| v.mismatch.as_ref()) {
                    return Some(Verdict::Failed {
                        reason: format!("verification failed: {mismatch}"),
                        rolled_back: false,
                    });
                }
                let running = verified
                    .and_then(|v| v.version.clone())
                    .or_else(|| report.running_version.clone())
                    .or_else(|| live.version().map(str::to_owned))?;
                if let Some(claimed) = claimed
                    && claimed != running
                {
                    return Some(Verdict::Mismatch {
                        claimed: claimed.to_owned(),
                        running,
                    });
                }
                let pid = verified.and_then(|v| v.pid).or(live.pid);
                return Some(Verdict::Verified {
                    version: running,
                    pid,
                });
            }
            // What the install claims; the live process decides, once it
            // is the process that came after the update.
            match api {
                // moltd's successor proves its version itself: wait for it.
                UpdateApi::Molt => return None,
                UpdateApi::Sentinel if !restarted => return None,
                _ => {}
            }
            let claimed = claimed?;
            if let Some(running) = live.contradicts(claimed) {
                return Some(Verdict::Mismatch {
                    claimed: claimed.to_owned(),
                    running: running.to_owned(),
                });
            }
            if let (Some(claimed_build), Some(running_build)) =
                (claim.after_build_id.as_deref(), live.build_id.as_deref())
                && claimed_build != running_build
            {
                return Some(Verdict::Mismatch {
                    claimed: format!("build {claimed_build}"),
                    running: format!("build {running_build}"),
                });
            }
            let version = live.version()?.to_owned();
            Some(Verdict::Verified {
                version,
                pid: live.pid,
            })
        }
    }
}
