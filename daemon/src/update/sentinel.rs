//! `restart-sentinel.json`: what an update restart leaves for the process
//! that comes up next (docs/updating.md), and that process's proof of
//! what runs.
//!
//! The restarting process [`write`]s it before the restart. The successor
//! [`read`]s it at start; if it is not [`is_stale`] and not yet verified, it
//! [`verify`]s it against its own version and pid, writes it back, and serves
//! it from `update.status`. A file that does not parse never stops the
//! daemon: [`read_or_quarantine`] logs it and moves it aside.

use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::ids::RunId;
use molt_protocol::update::{ReasonCode, Sentinel, SentinelPayload, UpdateStatus, Verified};
use serde::Deserialize;

use crate::fsutil::{MAX_STATE_FILE_BYTES, read_bounded, write_atomic};

/// A sentinel older than this is history, not an instruction.
pub const MAX_AGE_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("restart sentinel {} does not parse: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "restart sentinel {} has format version {found}; this moltd reads version {}",
        path.display(),
        Sentinel::FORMAT_VERSION
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    /// Larger than any sentinel moltd writes (step output is head/tail only).
    #[error("restart sentinel {}: {source}", path.display())]
    TooLarge { path: PathBuf, source: io::Error },
    /// An I/O failure; the message names the file.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SentinelError {
    /// The file is there but its content is unusable: move it aside rather
    /// than fail (as opposed to an I/O error, which may pass).
    pub fn is_bad_content(&self) -> bool {
        !matches!(self, SentinelError::Io(_))
    }
}

/// Reads the sentinel at `path`. Missing → `Ok(None)`.
pub fn read(path: &Path) -> Result<Option<Sentinel>, SentinelError> {
    let bytes = match read_bounded(path, MAX_STATE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) if source.kind() == io::ErrorKind::InvalidData => {
            return Err(SentinelError::TooLarge {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(e) => return Err(e.into()),
    };
    // The format version first, so a future format is reported as such and
    // not as a parse error deep in a payload this moltd does not know.
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    let corrupt = |source| SentinelError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let head: Head = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if head.version != Sentinel::FORMAT_VERSION {
        return Err(SentinelError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: head.version,
        });
    }
    serde_json::from_slice(&bytes).map(Some).map_err(corrupt)
}

/// Writes `sentinel` atomically with mode 0600.
pub fn write(path: &Path, sentinel: &Sentinel) -> Result<(), SentinelError> {
    let mut bytes = serde_json::to_vec_pretty(sentinel).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)?;
    Ok(())
}

/// What the daemon does at start: the sentinel if there is a usable one.
/// Unusable content is logged and moved aside
/// ([`crate::fsutil::quarantine`]); an I/O
/// error is logged. Never fails start.
pub fn read_or_quarantine(path: &Path) -> Option<Sentinel> {
    match read(path) {
        Ok(sentinel) => sentinel,
        Err(err) if err.is_bad_content() => {
            match crate::fsutil::quarantine(path) {
                Ok(to) => tracing::warn!("{err}; moved it aside to {}", to.display()),
                Err(q) => tracing::warn!("{err}; could not move it aside: {q}"),
            }
            None
        }
        Err(err) => {
            tracing::warn!("{err}; starting without it");
            None
        }
    }
}

/// Whether a sentinel must not be (re-)applied: older than [`MAX_AGE_MS`],
/// or, when the caller knows which run it expects, from another run (a
/// sentinel without a run id, e.g. one OpenClaw wrote, is then "another
/// run" too). A `ts` in the future (the clock stepped back) is not stale by
/// age.
pub fn is_stale(payload: &SentinelPayload, now_ms: u64, expected_run: Option<&RunId>) -> bool {
    let too_old = now_ms.saturating_sub(payload.ts) > MAX_AGE_MS;
    let other_run = expected_run.is_some_and(|run| payload.run_id.as_ref() != Some(run));
    too_old || other_run
}

/// What [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The running version is the one the sentinel expects.
    Matched,
    /// It is not; `verified.mismatch` says what was expected.
    Mismatched,
    /// The sentinel names no version to expect; recorded as verified.
    NothingToCompare,
    /// An earlier process already verified it; left untouched.
    AlreadyVerified,
}

/// Records this process's proof of what runs: `verified {runningVersion,
/// pid, at}`.
///
/// The expected version is `stats.after` for an `ok` sentinel and
/// `stats.before` otherwise (an update that failed or was skipped changed
/// nothing, or was rolled back). On a difference, `verified.mismatch` says
/// `expected X, running Y`, and an `ok` sentinel becomes `status: error`
/// with `stats.reason: "restart-version-mismatch"`: the update's goal was
/// the new version running, and the restart did not bring it up, so
/// reporting `ok` would repeat the lie this product exists to end. A sentinel
/// that already failed keeps its status and reason (the first cause is the
/// useful one); the mismatch is added beside it.
///
/// Only the first successor verifies: an already verified sentinel is left
/// as it is, so a later, unrelated restart does not overwrite the proof.
/// Versions are compared as exact strings; both sides come from validated
/// exact versions.
pub fn verify(
    payload: &mut SentinelPayload,
    running_version: &str,
    pid: u32,
    now_ms: u64,
) -> Verification {
    if payload.verified.is_some() {
        return Verification::AlreadyVerified;
    }
    let expected = match payload.status {
        UpdateStatus::Ok => payload.stats.after.version.as_deref(),
        UpdateStatus::Error | UpdateStatus::Skipped => payload.stats.before.version.as_deref(),
    };
    let (outcome, mismatch) = match expected {
        None => (Verification::NothingToCompare, None),
        Some(expected) if expected == running_version => (Verification::Matched, None),
        Some(expected) => (
            Verification::Mismatched,
            Some(format!("expected {expected}, running {running_version}")),
        ),
    };
    if mismatch.is_some() && payload.status == UpdateStatus::Ok {
        payload.status = UpdateStatus::Error;
        payload.stats.reason = Some(ReasonCode::RestartVersionMismatch.to_string());
    }
    payload.verified = Some(Verified {
        running_version: running_version.to_owned(),
        pid,
        at: now_ms,
        mismatch,
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::{mode, names};
    use molt_protocol::update::{InstallMode, SentinelStats, VersionRef};
    use std::fs;

    const NOW: u64 = 1_800_000_000_000;

    fn payload(status: UpdateStatus, before: &str, after: &str) -> SentinelPayload {
        SentinelPayload {
            kind: "update".to_owned(),
            status,
            ts: NOW - 5_000,
            run_id: Some(RunId::from("run-1")),
            message: Some("nightly".to_owned()),
            doctor_hint: None,
            stats: SentinelStats {
                mode: InstallMode::Npm,
                root: Some("/usr/lib/node_modules/moltd".to_owned()),
                before: VersionRef::new(before),
                after: VersionRef::new(after),
                steps: Vec::new(),
                reason: None,
                duration_ms: 1234,
            },
            verified: None,
            rolled_back: false,
        }
    }

    fn sentinel(payload: SentinelPayload) -> Sentinel {
        Sentinel {
            version: Sentinel::FORMAT_VERSION,
            payload,
        }
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        let mut written = sentinel(payload(UpdateStatus::Ok, "1.0.0", "2.0.0"));
        verify(&mut written.payload, "2.0.0", 77, NOW);
        write(&path, &written).unwrap();

        assert_eq!(read(&path).unwrap(), Some(written));
        let mode = mode(&path);
        assert_eq!(mode, 0o600);
        let raw: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["version"], 1);
        assert_eq!(raw["payload"]["runId"], "run-1");
        assert_eq!(raw["payload"]["verified"]["runningVersion"], "2.0.0");
        assert_eq!(names(dir.path()), ["restart-sentinel.json"]);
    }

    #[test]
    fn missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&dir.path().join("restart-sentinel.json")).unwrap(),
            None
        );
        assert_eq!(
            read_or_quarantine(&dir.path().join("restart-sentinel.json")),
            None
        );
    }

    #[test]
    fn a_corrupt_file_is_a_typed_error_naming_it_and_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        fs::write(&path, b"{\"version\": 1, \"payload\": {\"kind\": ").unwrap();

        let err = read(&path).unwrap_err();
        assert!(matches!(err, SentinelError::Corrupt { .. }), "{err:?}");
        assert!(err.is_bad_content());
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");

        assert_eq!(read_or_quarantine(&path), None);
        let entries = names(dir.path());
        assert_eq!(entries.len(), 1, "{entries:?}");
        let ts = entries[0]
            .strip_prefix("restart-sentinel.json.bad-")
            .expect("moved aside");
        assert!(ts.parse::<u64>().is_ok(), "{ts}");
        assert_eq!(
            fs::read(dir.path().join(&entries[0])).unwrap(),
            b"{\"version\": 1, \"payload\": {\"kind\": ",
            "content kept for the operator"
        );
        // Start goes on without it; the next read sees nothing.
        assert_eq!(read(&path).unwrap(), None);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it_and_the_limit_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        crate::fsutil::testing::oversize(&path);
        let err = read(&path).unwrap_err();
        assert!(matches!(err, SentinelError::TooLarge { .. }), "{err:?}");
        crate::fsutil::testing::assert_refused_over(&err, &path, MAX_STATE_FILE_BYTES);
        assert_eq!(read_or_quarantine(&path), None);
        assert!(!path.exists(), "moved aside");
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        fs::write(&path, br#"{"version": 1, "payload": {"kind": "update"}}"#).unwrap();
        assert!(matches!(read(&path), Err(SentinelError::Corrupt { .. })));
    }

    #[test]
    fn another_format_version_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        fs::write(&path, br#"{"version": 2, "payload": {"whatever": true}}"#).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(err, SentinelError::UnsupportedVersion { found: 2, .. }),
            "{err:?}"
        );
        assert!(err.is_bad_content());
        assert!(err.to_string().contains("format version 2"), "{err}");
    }

    #[test]
    fn an_io_error_is_not_bad_content_and_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restart-sentinel.json");
        fs::create_dir(&path).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, SentinelError::Io(_)), "{err:?}");
        assert!(!err.is_bad_content());
        assert!(err.to_string().contains("restart-sentinel.json"), "{err}");
        assert_eq!(read_or_quarantine(&path), None);
        assert!(path.is_dir(), "left in place");
    }

    #[test]
    fn stale_rules() {
        let run1 = RunId::from("run-1");
        let run2 = RunId::from("run-2");
        let at = |ts| SentinelPayload {
            ts,
            ..payload(UpdateStatus::Ok, "1.0.0", "2.0.0")
        };
        let no_run = SentinelPayload {
            run_id: None,
            ..at(NOW)
        };
        let cases: &[(&str, SentinelPayload, Option<&RunId>, bool)] = &[
            ("fresh, any run", at(NOW - 1000), None, false),
            ("fresh, our run", at(NOW - 1000), Some(&run1), false),
            ("fresh, another run", at(NOW - 1000), Some(&run2), true),
            ("exactly a day", at(NOW - MAX_AGE_MS), None, false),
            ("over a day", at(NOW - MAX_AGE_MS - 1), None, true),
            (
                "over a day, our run",
                at(NOW - MAX_AGE_MS - 1),
                Some(&run1),
                true,
            ),
            ("from the future", at(NOW + 60_000), None, false),
            ("no run id, none expected", no_run.clone(), None, false),
            ("no run id, one expected", no_run, Some(&run1), true),
        ];
        for (name, p, expected_run, stale) in cases {
            assert_eq!(is_stale(p, NOW, *expected_run), *stale, "{name}");
        }
    }

    #[test]
    fn verify_records_what_runs() {
        let mut p = payload(UpdateStatus::Ok, "1.0.0", "2.0.0");
        assert_eq!(verify(&mut p, "2.0.0", 77, NOW), Verification::Matched);
        assert_eq!(p.status, UpdateStatus::Ok);
        assert_eq!(p.stats.reason, None);
        assert_eq!(
            p.verified,
            Some(Verified {
                running_version: "2.0.0".to_owned(),
                pid: 77,
                at: NOW,
                mismatch: None,
            })
        );
    }

    #[test]
    fn an_ok_update_whose_restart_runs_another_version_becomes_an_error() {
        let mut p = payload(UpdateStatus::Ok, "1.0.0", "2.0.0");
        assert_eq!(verify(&mut p, "1.0.0", 77, NOW), Verification::Mismatched);
        assert_eq!(p.status, UpdateStatus::Error);
        assert_eq!(
            p.stats.reason.as_deref(),
            Some(ReasonCode::RestartVersionMismatch.as_str())
        );
        let v = p.verified.unwrap();
        assert_eq!(v.running_version, "1.0.0");
        assert_eq!(v.mismatch.as_deref(), Some("expected 2.0.0, running 1.0.0"));
    }

    #[test]
    fn a_failed_update_expects_the_old_version_and_keeps_its_reason() {
        let mut rolled_back = payload(UpdateStatus::Error, "1.0.0", "2.0.0");
        rolled_back.rolled_back = true;
        rolled_back.stats.reason = Some("restart-unhealthy".to_owned());
        let mut other = rolled_back.clone();

        assert_eq!(
            verify(&mut rolled_back, "1.0.0", 77, NOW),
            Verification::Matched
        );
        assert_eq!(rolled_back.verified.unwrap().mismatch, None);

        assert_eq!(
            verify(&mut other, "2.0.0", 77, NOW),
            Verification::Mismatched
        );
        assert_eq!(other.status, UpdateStatus::Error);
        assert_eq!(other.stats.reason.as_deref(), Some("restart-unhealthy"));
        assert_eq!(
            other.verified.unwrap().mismatch.as_deref(),
            Some("expected 1.0.0, running 2.0.0")
        );
    }

    #[test]
    fn verify_without_an_expected_version_or_twice() {
        let mut p = payload(UpdateStatus::Ok, "1.0.0", "2.0.0");
        p.stats.after = VersionRef::default();
        assert_eq!(
            verify(&mut p, "2.0.0", 77, NOW),
            Verification::NothingToCompare
        );
        assert_eq!(p.status, UpdateStatus::Ok);
        assert!(p.verified.is_some());

        let mut p = payload(UpdateStatus::Ok, "1.0.0", "2.0.0");
        verify(&mut p, "2.0.0", 77, NOW);
        let first = p.clone();
        // A later, unrelated restart must not overwrite the proof.
        assert_eq!(
            verify(&mut p, "3.0.0", 88, NOW + 1),
            Verification::AlreadyVerified
        );
        assert_eq!(p, first);
    }
}
