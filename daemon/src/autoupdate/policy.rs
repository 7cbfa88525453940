//! The auto-update decision as a pure function of its inputs and `now`.
//!
//! Checks: with `checkOnStart`, once per process start; then, while hints
//! or auto-apply are on, every [`STABLE_CHECK_INTERVAL`] (beta with
//! auto-apply: every `betaCheckIntervalHours`). A channel change makes a
//! check due at once. Checks run under the kill switch: hints still show.
//!
//! Applies (package installs with `update.auto.enabled` only): stable once
//! `stableDelayHours` + this install's jitter have passed since the target
//! was first seen; beta as soon as a check finds it. A version attempted
//! automatically is not attempted again for [`RETRY_AFTER`].

use std::fmt;
use std::time::Duration;

use molt_protocol::status::EnvSource;
use molt_protocol::update::{Channel, InstallMode};
use semver::Version;
use sha2::{Digest, Sha256};

use super::kill_switch::KillSwitch;
use super::state::{AttemptOutcome, CheckState};
use crate::config::UpdateSettings;

/// How often stable (and hint-only) checks run.
pub const STABLE_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Checks never come closer than this, whatever the config says.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How long an automatic attempt at a version suppresses the next one.
pub const RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Everything the decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub settings: &'a UpdateSettings,
    pub install: InstallMode,
    pub kill_switch: KillSwitch,
    pub state: &'a CheckState,
    pub running: &'a Version,
    /// Unix ms this process started (`checkOnStart` checks once per start).
    pub started_at_ms: u64,
    pub now_ms: u64,
}

/// The decision and the times `status.auto` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    /// Unix ms; `None` when no checks are scheduled (hints and auto off).
    pub next_check_at: Option<u64>,
    /// Unix ms an apply is due (now or later); `None` when none is.
    pub next_apply_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply this version now (trigger `auto`).
    Apply { version: Version },
    /// Apply this version at `until_ms`, once the stable delay has passed.
    Wait {
        version: Version,
        until_ms: u64,
        first_seen_ms: u64,
        jitter_ms: u64,
    },
    /// `OPENCLAW_NO_AUTO_UPDATE` holds back this version.
    Blocked { version: Version, source: EnvSource },
    /// Nothing to apply, and why.
    Skip(SkipReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// No check for the configured channel has found anything yet.
    NotChecked,
    UpToDate,
    /// `update.auto.enabled` is false; a newer version is only a hint.
    Disabled {
        available: Version,
    },
    /// Git checkouts are never updated automatically.
    GitInstall,
    /// Unmanaged and external installs are never updated by molt itself.
    NotManaged {
        mode: InstallMode,
    },
    /// The dev channel follows git main, which only git installs can.
    DevChannel,
    /// This version was attempted at `at_ms`; next try at `retry_at_ms`
    /// (never, after a crash loop).
    RecentAttempt {
        version: Version,
        outcome: AttemptOutcome,
        at_ms: u64,
        retry_at_ms: Option<u64>,
    },
}

impl SkipReason {
    /// A short, stable code for logs and records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotChecked => "not-checked",
            Self::UpToDate => "up-to-date",
            Self::Disabled { .. } => "disabled",
            Self::GitInstall => "git-install",
            Self::NotManaged { .. } => "not-managed",
            Self::DevChannel => "dev-channel",
            Self::RecentAttempt {
                outcome: AttemptOutcome::Failed,
                ..
            } => "recently-failed",
            Self::RecentAttempt {
                outcome: AttemptOutcome::CrashLooped,
                ..
            } => "crash-looped",
            Self::RecentAttempt { .. } => "recently-attempted",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Apply { version } => write!(f, "apply {version} now"),
            Self::Wait {
                version,
                until_ms,
                first_seen_ms,
                jitter_ms,
            } => write!(
                f,
                "wait: {version} applies at {until_ms} (unix ms; first seen {first_seen_ms}, \
                 stable delay + {jitter_ms} ms jitter)"
            ),
            Self::Blocked { version, source } => write!(
                f,
                "blocked: {version} is available but OPENCLAW_NO_AUTO_UPDATE is set ({})",
                match source {
                    EnvSource::ProcessEnv => "process env",
                    EnvSource::EnvFile => ".env",
                }
            ),
            Self::Skip(reason) => {
                write!(f, "skip ({}): ", reason.code())?;
                match reason {
                    SkipReason::NotChecked => f.write_str("no check has found a target yet"),
                    SkipReason::UpToDate => f.write_str("the running version is the latest"),
                    SkipReason::Disabled { available } => {
                        write!(f, "{available} is available; update.auto.enabled is false")
                    }
                    SkipReason::GitInstall => {
                        f.write_str("git installs never update automatically")
                    }
                    SkipReason::NotManaged { mode } => write!(
                        f,
                        "install mode {} is not updated by moltd",
                        serde_json::to_value(mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ),
                    SkipReason::DevChannel => {
                        f.write_str("the dev channel cannot be followed by a package install")
                    }
                    SkipReason::RecentAttempt {
                        version,
                        outcome: AttemptOutcome::CrashLooped,
                        at_ms,
                        ..
                    } => write!(
                        f,
                        "{version} crash-looped after an update at {at_ms} and was rolled back; \
                         it is never applied automatically again (update to it by hand to retry)"
                    ),
                    SkipReason::RecentAttempt {
                        version,
                        outcome,
                        at_ms,
                        retry_at_ms,
                    } => write!(
                        f,
                        "{version} was attempted at {at_ms} ({}); not again before {}",
                        outcome.as_str(),
                        retry_at_ms.unwrap_or_default()
                    ),
                }
            }
        }
    }
}

/// The plan for `inputs`.
pub fn evaluate(inputs: &Inputs) -> Plan {
    let decision = decide(inputs);
    let next_apply_at = match &decision {
        Decision::Apply { .. } => Some(inputs.now_ms),
        Decision::Wait { until_ms, .. } => Some(*until_ms),
        Decision::Skip(SkipReason::RecentAttempt { retry_at_ms, .. }) => *retry_at_ms,
        Decision::Blocked { .. } | Decision::Skip(_) => None,
    };
    Plan {
        decision,
        next_check_at: next_check_at(inputs),
        next_apply_at,
    }
}

/// How often checks run for these settings; `None`: no checks at all.
pub fn check_interval(settings: &UpdateSettings) -> Option<Duration> {
    let auto = settings.auto.enabled;
    if !auto && !settings.check_on_start {
        return None;
    }
    let interval = if auto && settings.channel == Channel::Beta {
        settings.auto.beta_check_interval
    } else {
        STABLE_CHECK_INTERVAL
    };
    Some(interval.max(MIN_CHECK_INTERVAL))
}

fn next_check_at(i: &Inputs) -> Option<u64> {
    let interval = ms(check_interval(i.settings)?);
    let on_start = i.settings.check_on_start;
    Some(match i.state.last_check_at {
        None if on_start => i.started_at_ms,
        None => i.started_at_ms.saturating_add(interval),
        Some(_) if i.state.last_check_channel != Some(i.settings.channel) => i.now_ms,
        Some(last) if on_start && last < i.started_at_ms => i.started_at_ms,
        Some(last) => last.saturating_add(interval),
    })
}

fn decide(i: &Inputs) -> Decision {
    let channel = i.settings.channel;
    let Some(latest) = i.state.latest_for(channel) else {
        return Decision::Skip(SkipReason::NotChecked);
    };
    if latest <= i.running {
        return Decision::Skip(SkipReason::UpToDate);
    }
    let version = latest.clone();
    if !i.settings.auto.enabled {
        return Decision::Skip(SkipReason::Disabled { available: version });
    }
    match i.install {
        InstallMode::Git => return Decision::Skip(SkipReason::GitInstall),
        mode if !mode.is_package_manager() => {
            return Decision::Skip(SkipReason::NotManaged { mode });
        }
        _ => {}
    }
    if channel == Channel::Dev {
        return Decision::Skip(SkipReason::DevChannel);
    }
    if let Some(source) = i.kill_switch.source {
        return Decision::Blocked { version, source };
    }
    if let Some(attempt) = i.state.attempts.get(&version) {
        let retry_at_ms = match attempt.outcome {
            AttemptOutcome::CrashLooped => None,
            _ => Some(attempt.last_at.saturating_add(ms(RETRY_AFTER))),
        };
        if retry_at_ms.is_none_or(|at| i.now_ms < at) {
            return Decision::Skip(SkipReason::RecentAttempt {
                version,
                outcome: attempt.outcome,
                at_ms: attempt.last_at,
                retry_at_ms,
            });
        }
    }
    if channel == Channel::Stable {
        // No sighting on record (state from a process that ran this
        // version or newer): the last check saw it at the latest.
        let first_seen_ms = i
            .state
            .first_seen
            .get(&version)
            .copied()
            .or(i.state.last_check_at)
            .unwrap_or(i.now_ms);
        let jitter_ms = ms(jitter(&i.state.install_id, i.settings.auto.stable_jitter));
        let until_ms = first_seen_ms
            .saturating_add(ms(i.settings.auto.stable_delay))
            .saturating_add(jitter_ms);
        if i.now_ms < until_ms {
            return Decision::Wait {
                version,
                until_ms,
                first_seen_ms,
                jitter_ms,
            };
        }
    }
    Decision::Apply { version }
}

/// This install's share of `max`: in `[0, max)`, the same every time for
/// the same `install_id`, spread evenly across ids (a hash, not a random
/// draw, so a restart does not re-roll it).
pub fn jitter(install_id: &str, max: Duration) -> Duration {
    let digest = Sha256::digest(install_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let fraction = u64::from_be_bytes(head);
    // (fraction / 2^64) * max, in integers: always below max.
    let max_ms = u128::from(ms(max));
    Duration::from_millis(((u128::from(fraction) * max_ms) >> 64) as u64)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
