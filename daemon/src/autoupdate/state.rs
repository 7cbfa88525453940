//! The auto-updater's memory, persisted as `update-check.json`: the last
//! check, what it found and since when, and every automatic attempt per
//! version. Mutations take `now` so they are testable without a clock.

use std::collections::BTreeMap;

use molt_protocol::update::Channel;
use semver::Version;
use serde::{Deserialize, Serialize};

/// The file format this moltd reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckState {
    pub version: u32,
    /// Random, made once per state dir. Seeds the stable jitter, so every
    /// install waits its own, stable share of `stableJitterHours`.
    pub install_id: String,
    /// Unix ms of the last check, successful or not.
    #[serde(default)]
    pub last_check_at: Option<u64>,
    /// The channel the last check asked about.
    #[serde(default)]
    pub last_check_channel: Option<Channel>,
    #[serde(default)]
    pub last_check_error: Option<String>,
    /// The channel's target at the last successful check.
    #[serde(default)]
    pub latest: Option<Seen>,
    /// The last version announced with `update.available`.
    #[serde(default)]
    pub last_notified_version: Option<Version>,
    /// Unix ms a newer version was first seen; the stable delay counts
    /// from here, across restarts.
    #[serde(default)]
    pub first_seen: BTreeMap<Version, u64>,
    /// Automatic attempts per version; a recent one suppresses another.
    #[serde(default)]
    pub attempts: BTreeMap<Version, Attempt>,
}

/// A version a check reported, and for which channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    pub version: Version,
    pub channel: Channel,
}

/// How an automatic attempt at a version ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// The update ran and its restart was scheduled.
    Applied,
    /// The update failed (or was rolled back).
    Failed,
    /// The update flow declined (another run in progress, no restart possible).
    Skipped,
    /// It verified, then crash-looped and was rolled back: never applied
    /// automatically again (an operator can still update to it by hand).
    #[serde(rename = "crash-looped")]
    CrashLooped,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::CrashLooped => "crash-looped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub count: u32,
    /// Unix ms of the latest attempt.
    pub last_at: u64,
    pub outcome: AttemptOutcome,
    #[serde(default)]
    pub reason: Option<String>,
}

impl CheckState {
    pub fn new(install_id: String) -> Self {
        Self {
            version: FORMAT_VERSION,
            install_id,
            last_check_at: None,
            last_check_channel: None,
            last_check_error: None,
            latest: None,
            last_notified_version: None,
            first_seen: BTreeMap::new(),
            attempts: BTreeMap::new(),
        }
    }

    /// The last check's target, if it was for `channel`: a target found
    /// for another channel says nothing about this one.
    pub fn latest_for(&self, channel: Channel) -> Option<&Version> {
        self.latest
            .as_ref()
            .filter(|s| s.channel == channel)
            .map(|s| &s.version)
    }

    /// Records a check. A newer version gets its first-seen time; versions
    /// at or below `running` are forgotten (they are done with).
    pub fn record_check(
        &mut self,
        now_ms: u64,
        channel: Channel,
        result: Result<Version, String>,
        running: &Version,
    ) {
        self.last_check_at = Some(now_ms);
        self.last_check_channel = Some(channel);
        match result {
            Ok(version) => {
                self.last_check_error = None;
                if version > *running {
                    self.first_seen.entry(version.clone()).or_insert(now_ms);
                }
                self.latest = Some(Seen { version, channel });
            }
            Err(error) => self.last_check_error = Some(error),
        }
        self.first_seen.retain(|v, _| v > running);
        self.attempts.retain(|v, _| v > running);
    }

    pub fn record_attempt(
        &mut self,
        version: &Version,
        now_ms: u64,
        outcome: AttemptOutcome,
        reason: Option<String>,
    ) {
        let attempt = self.attempts.entry(version.clone()).or_insert(Attempt {
            count: 0,
            last_at: now_ms,
            outcome,
            reason: None,
        });
        attempt.count = attempt.count.saturating_add(1);
        attempt.last_at = now_ms;
        attempt.outcome = outcome;
        attempt.reason = reason;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn first_seen_is_kept_across_checks_and_forgotten_once_running() {
        let mut s = CheckState::new("id".into());
        s.record_check(10, Channel::Stable, Ok(v("1.1.0")), &v("1.0.0"));
        s.record_check(20, Channel::Stable, Ok(v("1.1.0")), &v("1.0.0"));
        assert_eq!(
            s.first_seen[&v("1.1.0")],
            10,
            "the delay counts from the first sighting"
        );
        assert_eq!(s.latest_for(Channel::Stable), Some(&v("1.1.0")));
        assert_eq!(s.latest_for(Channel::Beta), None);

        s.record_attempt(&v("1.1.0"), 30, AttemptOutcome::Failed, Some("x".into()));
        s.record_check(40, Channel::Stable, Ok(v("1.1.0")), &v("1.1.0"));
        assert!(s.first_seen.is_empty());
        assert!(s.attempts.is_empty());
    }

    #[test]
    fn a_failed_check_keeps_what_was_seen_and_records_the_error() {
        let mut s = CheckState::new("id".into());
        s.record_check(10, Channel::Beta, Ok(v("2.0.0-beta.1")), &v("1.0.0"));
        s.record_check(20, Channel::Beta, Err("registry down".into()), &v("1.0.0"));
        assert_eq!(s.last_check_at, Some(20));
        assert_eq!(s.last_check_error.as_deref(), Some("registry down"));
        assert_eq!(s.latest_for(Channel::Beta), Some(&v("2.0.0-beta.1")));
    }

    #[test]
    fn attempts_count_up_and_keep_the_latest_outcome() {
        let mut s = CheckState::new("id".into());
        s.record_attempt(&v("1.1.0"), 5, AttemptOutcome::Skipped, None);
        s.record_attempt(&v("1.1.0"), 9, AttemptOutcome::Failed, Some("npm".into()));
        let a = &s.attempts[&v("1.1.0")];
        assert_eq!(
            (a.count, a.last_at, a.outcome),
            (2, 9, AttemptOutcome::Failed)
        );
        assert_eq!(a.reason.as_deref(), Some("npm"));
    }

    #[test]
    fn round_trips_as_camel_case_json_with_version_keys() {
        let mut s = CheckState::new("abc".into());
        s.record_check(1, Channel::Stable, Ok(v("1.2.3")), &v("1.0.0"));
        s.record_attempt(&v("1.2.3"), 2, AttemptOutcome::Failed, None);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["installId"], "abc");
        assert_eq!(json["firstSeen"]["1.2.3"], 1);
        assert_eq!(json["attempts"]["1.2.3"]["outcome"], "failed");
        assert_eq!(serde_json::from_value::<CheckState>(json).unwrap(), s);
    }
}
