use std::collections::BTreeSet;

use super::*;
use crate::config::Settings;

const H: u64 = 3600 * 1000;
/// An arbitrary "process start", far from 0 so subtraction bugs show.
const START: u64 = 1_700_000_000_000;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

struct Case {
    settings: UpdateSettings,
    install: InstallMode,
    kill_switch: KillSwitch,
    state: CheckState,
    running: Version,
}

impl Case {
    /// Auto-apply on, stable, npm install, 1.0.0 running, never checked.
    fn new() -> Self {
        let mut settings = Settings::default().update;
        settings.auto.enabled = true;
        Self {
            settings,
            install: InstallMode::Npm,
            kill_switch: KillSwitch::default(),
            state: CheckState::new("install-a".into()),
            running: v("1.0.0"),
        }
    }

    fn channel(mut self, channel: Channel) -> Self {
        self.settings.channel = channel;
        self
    }

    /// A check at `at` found `found`.
    fn seen(mut self, at: u64, found: &str) -> Self {
        let channel = self.settings.channel;
        self.state
            .record_check(at, channel, Ok(v(found)), &self.running);
        self
    }

    fn at(&self, now_ms: u64) -> Plan {
        evaluate(&Inputs {
            settings: &self.settings,
            install: self.install,
            kill_switch: self.kill_switch,
            state: &self.state,
            running: &self.running,
            started_at_ms: START,
            now_ms,
        })
    }

    fn jitter_ms(&self) -> u64 {
        jitter(&self.state.install_id, self.settings.auto.stable_jitter).as_millis() as u64
    }
}

#[test]
fn jitter_is_deterministic_below_the_max_and_spread_across_installs() {
    let max = Duration::from_secs(12 * 3600);
    assert_eq!(jitter("install-a", max), jitter("install-a", max));
    assert_eq!(jitter("install-a", Duration::ZERO), Duration::ZERO);
    let ids: Vec<String> = (0..200).map(|n| format!("install-{n}")).collect();
    let values: Vec<Duration> = ids.iter().map(|id| jitter(id, max)).collect();
    assert!(values.iter().all(|j| *j < max));
    let distinct: BTreeSet<_> = values.iter().collect();
    assert!(distinct.len() > 190, "ids map to different jitters");
    // Spread over the whole window: every 12-hour bucket of 1 h is used.
    let buckets: BTreeSet<u64> = values.iter().map(|j| j.as_secs() / 3600).collect();
    assert_eq!(buckets.len(), 12, "{buckets:?}");
}

#[test]
fn stable_applies_after_delay_plus_jitter_counted_from_first_seen() {
    let first_seen = START + 5 * H;
    // A later check of the same version does not restart the clock.
    let case = Case::new()
        .seen(first_seen, "1.1.0")
        .seen(first_seen + 3 * H, "1.1.0");
    let due = first_seen + 6 * H + case.jitter_ms();
    assert!(case.jitter_ms() < 12 * H);

    let waiting = case.at(due - 1);
    assert_eq!(
        waiting.decision,
        Decision::Wait {
            version: v("1.1.0"),
            until_ms: due,
            first_seen_ms: first_seen,
            jitter_ms: case.jitter_ms(),
        }
    );
    assert_eq!(waiting.next_apply_at, Some(due));

    let applying = case.at(due);
    assert_eq!(
        applying.decision,
        Decision::Apply {
            version: v("1.1.0")
        }
    );
    assert_eq!(applying.next_apply_at, Some(due));
}

#[test]
fn two_installs_seeing_the_same_release_apply_at_their_own_times() {
    let mut a = Case::new().seen(START, "1.1.0");
    let mut b = Case::new().seen(START, "1.1.0");
    a.state.install_id = "install-a".into();
    b.state.install_id = "install-b".into();
    let due = |c: &Case| c.at(START).next_apply_at.unwrap();
    assert_ne!(due(&a), due(&b));
    assert_eq!(due(&a), START + 6 * H + a.jitter_ms());
}

#[test]
fn zero_delay_and_jitter_apply_at_first_sight() {
    let mut case = Case::new().seen(START, "1.1.0");
    case.settings.auto.stable_delay = Duration::ZERO;
    case.settings.auto.stable_jitter = Duration::ZERO;
    assert_eq!(
        case.at(START).decision,
        Decision::Apply {
            version: v("1.1.0")
        }
    );
}

#[test]
fn beta_applies_at_once_and_checks_every_interval() {
    let mut case = Case::new()
        .channel(Channel::Beta)
        .seen(START + H, "1.1.0-beta.1");
    case.settings.auto.beta_check_interval = Duration::from_secs(2 * 3600);
    let plan = case.at(START + H);
    assert_eq!(
        plan.decision,
        Decision::Apply {
            version: v("1.1.0-beta.1")
        }
    );
    assert_eq!(plan.next_check_at, Some(START + 3 * H), "last check + 2 h");

    // Stable keeps its daily cadence.
    let stable = Case::new().seen(START + H, "1.1.0");
    assert_eq!(stable.at(START + H).next_check_at, Some(START + 25 * H));
}

#[test]
fn check_times_follow_check_on_start_and_channel_changes() {
    let mut case = Case::new();
    // Never checked, checkOnStart: due at start.
    assert_eq!(case.at(START).next_check_at, Some(START));
    // Checked before this process started: once more at start.
    case = case.seen(START - H, "1.0.0");
    assert_eq!(case.at(START).next_check_at, Some(START));
    case.settings.check_on_start = false;
    assert_eq!(case.at(START).next_check_at, Some(START + 23 * H));
    // A check for another channel: the new one is due now.
    case.settings.channel = Channel::Beta;
    assert_eq!(case.at(START + 2 * H).next_check_at, Some(START + 2 * H));
    assert_eq!(
        case.at(START + 2 * H).decision,
        Decision::Skip(SkipReason::NotChecked)
    );
    // Neither hints nor auto: no checks at all.
    case.settings.auto.enabled = false;
    assert_eq!(case.at(START).next_check_at, None);
    // Never checked, no checkOnStart: one interval after start.
    let mut fresh = Case::new();
    fresh.settings.check_on_start = false;
    assert_eq!(fresh.at(START).next_check_at, Some(START + 24 * H));
}

#[test]
fn a_version_that_crash_looped_is_never_applied_automatically_again() {
    let mut case = Case::new().seen(START, "1.1.0");
    let due = START + 6 * H + case.jitter_ms();
    case.state.record_attempt(
        &v("1.1.0"),
        due,
        AttemptOutcome::CrashLooped,
        Some("crash-loop".into()),
    );
    let a_year_later = case.at(due + 365 * 24 * H);
    assert!(matches!(
        a_year_later.decision,
        Decision::Skip(SkipReason::RecentAttempt {
            outcome: AttemptOutcome::CrashLooped,
            ..
        })
    ));
    assert!(a_year_later.decision.to_string().contains("crash-looped"));
    assert_eq!(a_year_later.next_apply_at, None);
}

#[test]
fn a_recent_attempt_suppresses_another_until_the_retry_interval_passed() {
    let mut case = Case::new().seen(START, "1.1.0");
    let due = START + 6 * H + case.jitter_ms();
    case.state
        .record_attempt(&v("1.1.0"), due, AttemptOutcome::Failed, Some("npm".into()));
    let retry_at = due + 24 * H;
    let plan = case.at(due + H);
    assert_eq!(
        plan.decision,
        Decision::Skip(SkipReason::RecentAttempt {
            version: v("1.1.0"),
            outcome: AttemptOutcome::Failed,
            at_ms: due,
            retry_at_ms: Some(retry_at),
        })
    );
    assert_eq!(plan.next_apply_at, Some(retry_at));
    assert!(plan.decision.to_string().contains("recently-failed"));
    assert_eq!(
        case.at(retry_at).decision,
        Decision::Apply {
            version: v("1.1.0")
        }
    );

    // A newer version is not held back by the old one's failure.
    let case = case.seen(due + 2 * H, "1.2.0");
    assert!(matches!(
        case.at(due + 2 * H).decision,
        Decision::Wait { .. }
    ));
}

#[test]
fn the_kill_switch_blocks_from_either_source_but_checks_go_on() {
    for source in [EnvSource::ProcessEnv, EnvSource::EnvFile] {
        let mut case = Case::new()
            .channel(Channel::Beta)
            .seen(START, "1.1.0-beta.1");
        case.kill_switch = KillSwitch::blocking(source);
        let plan = case.at(START);
        assert_eq!(
            plan.decision,
            Decision::Blocked {
                version: v("1.1.0-beta.1"),
                source
            }
        );
        assert_eq!(plan.next_apply_at, None);
        assert!(plan.next_check_at.is_some(), "hints still run");
    }
}

#[test]
fn git_and_unmanaged_installs_never_apply() {
    for mode in [
        InstallMode::Git,
        InstallMode::Unmanaged,
        InstallMode::External,
        InstallMode::Unknown,
    ] {
        let mut case = Case::new().seen(START, "1.1.0");
        case.settings.auto.stable_delay = Duration::ZERO;
        case.settings.auto.stable_jitter = Duration::ZERO;
        case.install = mode;
        let plan = case.at(START + 1000 * H);
        let expected = if mode == InstallMode::Git {
            SkipReason::GitInstall
        } else {
            SkipReason::NotManaged { mode }
        };
        assert_eq!(plan.decision, Decision::Skip(expected), "{mode:?}");
        assert_eq!(plan.next_apply_at, None);
    }
    for mode in [InstallMode::Npm, InstallMode::Pnpm, InstallMode::Bun] {
        let mut case = Case::new().seen(START, "1.1.0");
        case.install = mode;
        assert!(
            matches!(case.at(START).decision, Decision::Wait { .. }),
            "{mode:?}"
        );
    }
}

#[test]
fn skips_when_disabled_up_to_date_or_on_dev() {
    let mut case = Case::new().seen(START, "1.1.0");
    case.settings.auto.enabled = false;
    assert_eq!(
        case.at(START).decision,
        Decision::Skip(SkipReason::Disabled {
            available: v("1.1.0")
        })
    );
    assert!(
        case.at(START).next_check_at.is_some(),
        "hints keep checking"
    );

    let same = Case::new().seen(START, "1.0.0");
    assert_eq!(
        same.at(START).decision,
        Decision::Skip(SkipReason::UpToDate)
    );
    let older = Case::new().seen(START, "0.9.0");
    assert_eq!(
        older.at(START).decision,
        Decision::Skip(SkipReason::UpToDate)
    );

    let dev = Case::new().channel(Channel::Dev).seen(START, "1.1.0");
    assert_eq!(
        dev.at(START).decision,
        Decision::Skip(SkipReason::DevChannel)
    );
}

#[test]
fn a_target_seen_by_a_process_running_it_counts_from_that_check() {
    // 1.1.0 ran and saw itself; now 1.0.0 runs (a manual downgrade).
    let mut case = Case::new();
    case.running = v("1.1.0");
    case = case.seen(START - 2 * H, "1.1.0");
    case.running = v("1.0.0");
    assert!(case.state.first_seen.is_empty());
    let due = START - 2 * H + 6 * H + case.jitter_ms();
    let plan = case.at(START);
    assert_eq!(
        plan.next_apply_at,
        Some(due),
        "a fixed time, not now + delay"
    );
    assert_eq!(case.at(START + H).next_apply_at, Some(due));
}
