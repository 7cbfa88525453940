//! The rescue step: a version that verified after an update and then
//! crash-loops is rolled back by the version before it, which does not
//! depend on the broken binary in any way.
//!
//! * Arming: when an update hands off under a supervisor that restarts
//!   moltd, the predecessor — the version known to work — copies its own
//!   executable to `<state>/rescue/moltd` and writes
//!   `<state>/rescue/rescue.json`: the update's undo record and the versions
//!   on both sides. A handoff that fails (the update is rolled back on the
//!   spot) disarms it.
//! * Running: the supervisor runs that copy after every stop of the
//!   service (systemd: `ExecStopPost=-/var/lib/molt/rescue/moltd rescue`).
//!   It counts failed exits of the new version; a clean stop or a refusal
//!   to start (exit 78) is not a crash.
//! * Rolling back: [`CRASH_LOOP_FAILURES`] failures within
//!   [`CRASH_LOOP_WINDOW_MS`] while the new version is still the installed
//!   one put the previous install back (the same undo a failed handoff
//!   uses), end the run `rolled-back` with reason `crash-loop`, write a
//!   sentinel that the restored version verifies at its next start, and
//!   mark the version so the auto-updater never applies it again, and
//!   write an `update.rescue` entry (actor `rescue`) to the audit trail.
//!   The supervisor's next start then runs the previous version, which
//!   counts the run in `moltd_update_runs_total` as it verifies the
//!   sentinel.
//!
//! The record is plain JSON with a version field, and only the version
//! that wrote it ever reads it: the rescue binary is that same version.

use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditOutcome};
use molt_protocol::ids::RunId;
use molt_protocol::update::{
    ReasonCode, RunPhase, Sentinel, SentinelPayload, SentinelStats, UpdateStatus,
};
use serde::{Deserialize, Serialize};

use super::failure::{self, Ended, Rollback};
use super::runs::RunStore;
use super::{Undo, UndoError, sentinel};
use crate::fsutil;
use crate::paths::StatePaths;

/// Failed exits of the new version that make a crash loop ...
pub const CRASH_LOOP_FAILURES: usize = 3;
/// ... when they fall within this window.
pub const CRASH_LOOP_WINDOW_MS: u64 = 10 * 60 * 1000;
/// The format of `rescue.json` this moltd reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Failures kept in the record (the window needs only the last few).
const MAX_FAILURES_KEPT: usize = 16;

/// `<state>/rescue/`: the previous version's binary and its record.
pub fn rescue_dir(paths: &StatePaths) -> PathBuf {
    paths.state_dir.join("rescue")
}

fn record_path(paths: &StatePaths) -> PathBuf {
    rescue_dir(paths).join("rescue.json")
}

/// The previous version's executable, which the supervisor runs.
pub fn binary_path(paths: &StatePaths) -> PathBuf {
    rescue_dir(paths).join("moltd")
}

/// What the rescue needs to put the previous version back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RescueRecord {
    pub version: u32,
    pub run_id: RunId,
    /// The version that armed the rescue (and whose binary runs it).
    pub previous_version: String,
    /// The version the update installed.
    pub new_version: String,
    pub armed_at: u64,
    pub undo: Undo,
    /// Failed exits of the new version, oldest first.
    #[serde(default)]
    pub failures: Vec<Failure>,
}

/// One failed exit, as the supervisor described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub at: u64,
    /// systemd's `$SERVICE_RESULT` (`exit-code`, `signal`, `core-dump`, ...).
    pub result: String,
    /// `$EXIT_CODE` and `$EXIT_STATUS`, e.g. `exited`/`1` or `killed`/`SEGV`.
    #[serde(default)]
    pub exit: Option<String>,
}

/// How the service's main process ended, from the supervisor's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceExit {
    pub result: String,
    pub code: Option<String>,
    pub status: Option<String>,
}

impl ServiceExit {
    /// From systemd's `ExecStopPost=` environment; `None` when not run by
    /// systemd (no `SERVICE_RESULT`).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            result: env("SERVICE_RESULT").filter(|v| !v.is_empty())?,
            code: env("EXIT_CODE").filter(|v| !v.is_empty()),
            status: env("EXIT_STATUS").filter(|v| !v.is_empty()),
        })
    }

    fn describe(&self) -> String {
        match (&self.code, &self.status) {
            (Some(code), Some(status)) => format!("{} ({code} {status})", self.result),
            _ => self.result.clone(),
        }
    }
}

/// What the rescue makes of one exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to count: a clean stop, or a refusal to start.
    NotACrash(&'static str),
    /// The install is no longer what the update put there.
    Stale(String),
    /// Counted; not (yet) a loop.
    Counted { recent: usize },
    /// A crash loop: put the previous version back.
    RollBack { recent: usize },
}

/// Judges `exit` against the record (pure; the clock is `now_ms`).
/// `still_applied`: the live install is the one the update put there.
pub fn judge(
    record: &mut RescueRecord,
    exit: &ServiceExit,
    still_applied: Result<bool, UndoError>,
    now_ms: u64,
) -> Verdict {
    if exit.result == "success" {
        return Verdict::NotACrash("the service stopped cleanly");
    }
    if exit.code.as_deref() == Some("exited") && exit.status.as_deref() == Some("78") {
        return Verdict::NotACrash("moltd refused to start (exit 78); nothing a rollback fixes");
    }
    match still_applied {
        Ok(true) => {}
        Ok(false) => {
            return Verdict::Stale(format!(
                "the install no longer holds {} from run {}",
                record.new_version, record.run_id
            ));
        }
        Err(e) => return Verdict::Stale(format!("cannot tell what is installed: {e}")),
    }
    record.failures.push(Failure {
        at: now_ms,
        result: exit.result.clone(),
        exit: exit.code.as_ref().map(|code| {
            format!("{code} {}", exit.status.as_deref().unwrap_or_default())
                .trim()
                .to_owned()
        }),
    });
    let excess = record.failures.len().saturating_sub(MAX_FAILURES_KEPT);
    record.failures.drain(..excess);
    let recent = record
        .failures
        .iter()
        .filter(|f| now_ms.saturating_sub(f.at) <= CRASH_LOOP_WINDOW_MS)
        .count();
    if recent >= CRASH_LOOP_FAILURES {
        Verdict::RollBack { recent }
    } else {
        Verdict::Counted { recent }
    }
}

/// Arms the rescue for an update from `previous_version` to `new_version`:
/// this process's own executable becomes the rescue binary. Blocking.
pub fn arm(
    paths: &StatePaths,
    run_id: &RunId,
    previous_version: &str,
    new_version: &str,
    undo: &Undo,
    now_ms: u64,
) -> io::Result<()> {
    let dir = rescue_dir(paths);
    fsutil::ensure_private_dir(&dir)?;
    let binary = binary_path(paths);
    copy_executable(Path::new("/proc/self/exe"), &binary)?;
    // A git rollback restores the binary from its backup, which the
    // successor retires once verified; the rescue binary is that same
    // previous version and stays.
    let undo = match undo {
        Undo::Git(git) => Undo::Git(super::git::GitUndo {
            binary_backup: binary.clone(),
            ..git.clone()
        }),
        other => other.clone(),
    };
    let record = RescueRecord {
        version: FORMAT_VERSION,
        run_id: run_id.clone(),
        previous_version: previous_version.to_owned(),
        new_version: new_version.to_owned(),
        armed_at: now_ms,
        undo,
        failures: Vec::new(),
    };
    write_record(paths, &record)
}

/// Forgets the armed update (it was rolled back at once, or rescued).
/// The binary stays: it costs a file and the next update replaces it.
pub fn disarm(paths: &StatePaths) {
    match std::fs::remove_file(record_path(paths)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove the rescue record: {e}"),
    }
}

pub fn read_record(paths: &StatePaths) -> io::Result<Option<RescueRecord>> {
    let path = record_path(paths);
    let bytes = match fsutil::read_bounded(&path, fsutil::MAX_STATE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let record: RescueRecord = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
    if record.version != FORMAT_VERSION {
        return Err(io::Error::other(format!(
            "{}: format {} (this moltd reads {FORMAT_VERSION})",
            path.display(),
            record.version
        )));
    }
    Ok(Some(record))
}

fn write_record(paths: &StatePaths, record: &RescueRecord) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    fsutil::write_atomic(&record_path(paths), &bytes)
}

/// Copies an executable whole (temp file, fsync, rename): the supervisor
/// never finds a half-written rescue binary.
fn copy_executable(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(from).map_err(|e| fsutil::path_error(e, "read", from))?;
    fsutil::write_atomic(to, &bytes)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fsutil::path_error(e, "chmod", to))
}

/// What [`run`] did, for its log line and exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    NotArmed,
    Judged(Verdict),
    RolledBack { from: String, to: String },
    RollbackFailed(String),
}

/// The rescue step, run by the supervisor after the service stopped.
/// Blocking; every problem is logged and reported, never a panic.
pub fn run(paths: &StatePaths, exit: &ServiceExit, now_ms: u64) -> io::Result<Outcome> {
    let Some(mut record) = read_record(paths)? else {
        return Ok(Outcome::NotArmed);
    };
    let applied = record.undo.still_applied();
    let verdict = judge(&mut record, exit, applied, now_ms);
    let recent = match verdict {
        Verdict::NotACrash(_) => return Ok(Outcome::Judged(verdict)),
        Verdict::Stale(_) => {
            disarm(paths);
            return Ok(Outcome::Judged(verdict));
        }
        Verdict::Counted { .. } => {
            write_record(paths, &record)?;
            return Ok(Outcome::Judged(verdict));
        }
        Verdict::RollBack { recent } => recent,
    };
    let failure = failure::Failure::CrashLoop {
        new_version: record.new_version.clone(),
        previous_version: record.previous_version.clone(),
        failures: recent,
        window_min: CRASH_LOOP_WINDOW_MS / 60_000,
        last_exit: exit.describe(),
    };
    let restored = record.undo.roll_back();
    let ended = Ended::after_change(failure, restored);
    let reason = ended.reason();
    if ended.rollback != Rollback::Done {
        write_record(paths, &record)?;
        end_run(paths, &record, RunPhase::Failed, &reason, now_ms);
        audit(
            paths,
            &record,
            recent,
            AuditOutcome::failed("rollback-failed", &reason),
        );
        return Ok(Outcome::RollbackFailed(reason));
    }
    end_run(paths, &record, RunPhase::RolledBack, &reason, now_ms);
    audit(paths, &record, recent, AuditOutcome::ok());
    write_sentinel(paths, &record, &reason, now_ms);
    never_again(paths, &record, &reason, now_ms);
    disarm(paths);
    Ok(Outcome::RolledBack {
        from: record.new_version,
        to: record.previous_version,
    })
}

/// The rollback in the audit trail: a change to the gateway no client
/// asked for. A failure to write it is logged; the rollback stands.
fn audit(paths: &StatePaths, record: &RescueRecord, failures: usize, outcome: AuditOutcome) {
    let params = serde_json::json!({
        "from": record.new_version,
        "to": record.previous_version,
        "failures": failures,
    });
    let entry = crate::audit::entry(
        AuditAction::Rescue,
        Actor::Rescue,
        params,
        outcome,
        Some(record.run_id.clone()),
    );
    if let Err(e) = crate::audit::AuditLog::new(paths.audit_path.clone()).append(&entry) {
        tracing::error!("cannot write the rescue to the audit trail: {e}");
    }
}

fn end_run(paths: &StatePaths, record: &RescueRecord, phase: RunPhase, reason: &str, now: u64) {
    let store = RunStore::new(paths.runs_path.clone());
    let Some(mut run) = store.get(&record.run_id) else {
        tracing::warn!(run_id = %record.run_id, "the rescued run is not in the run store");
        return;
    };
    run.reason = Some(reason.to_owned());
    run.phase = phase;
    run.updated_at = now;
    run.finished_at = Some(now);
    if let Err(e) = store.record(&run) {
        tracing::error!(run_id = %run.run_id, "cannot record the rescue: {e}");
    }
}

/// The sentinel the restored version verifies at its next start: the
/// update's own, turned into an error that names the rollback.
fn write_sentinel(paths: &StatePaths, record: &RescueRecord, reason: &str, now: u64) {
    let existing = sentinel::read(&paths.sentinel_path)
        .ok()
        .flatten()
        .filter(|doc| doc.payload.run_id.as_ref() == Some(&record.run_id));
    let mut payload = match existing {
        Some(doc) => doc.payload,
        None => SentinelPayload {
            kind: "update".to_owned(),
            status: UpdateStatus::Error,
            ts: now,
            run_id: Some(record.run_id.clone()),
            message: None,
            doctor_hint: None,
            stats: SentinelStats {
                mode: record.undo.mode(),
                root: None,
                before: molt_protocol::update::VersionRef::new(&record.previous_version),
                after: molt_protocol::update::VersionRef::new(&record.new_version),
                steps: Vec::new(),
                reason: None,
                duration_ms: 0,
            },
            verified: None,
            rolled_back: false,
        },
    };
    payload.status = UpdateStatus::Error;
    payload.ts = now;
    payload.stats.reason = Some(ReasonCode::CrashLoop.to_string());
    payload.doctor_hint = Some(reason.to_owned());
    payload.rolled_back = true;
    payload.verified = None;
    let doc = Sentinel {
        version: Sentinel::FORMAT_VERSION,
        payload,
    };
    if let Err(e) = sentinel::write(&paths.sentinel_path, &doc) {
        tracing::error!("cannot record the rescue in the sentinel: {e}");
    }
}

/// The auto-updater must not install the version again by itself.
fn never_again(paths: &StatePaths, record: &RescueRecord, reason: &str, now: u64) {
    let Ok(version) = semver::Version::parse(&record.new_version) else {
        return;
    };
    let mut state = crate::autoupdate::store::load_or_init(&paths.update_check_path);
    state.record_attempt(
        &version,
        now,
        crate::autoupdate::state::AttemptOutcome::CrashLooped,
        Some(reason.to_owned()),
    );
    if let Err(e) = crate::autoupdate::store::write(&paths.update_check_path, &state) {
        tracing::warn!("cannot record the crash loop for the auto-updater: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::git::GitUndo;

    const NOW: u64 = 1_800_000_000_000;

    fn record() -> RescueRecord {
        RescueRecord {
            version: FORMAT_VERSION,
            run_id: RunId::from("run-1"),
            previous_version: "0.1.0".into(),
            new_version: "0.3.0".into(),
            armed_at: NOW,
            undo: Undo::Git(GitUndo {
                root: "/src/molt".into(),
                previous_commit: "abc".into(),
                previous_branch: None,
                binary: "/src/molt/target/release/moltd".into(),
                binary_backup: "/var/lib/molt/rescue/moltd".into(),
            }),
            failures: Vec::new(),
        }
    }

    fn unknown_head() -> UndoError {
        UndoError::Git(crate::update::git::GitError::Failed {
            command: "rev-parse HEAD".into(),
            stderr: "not a git repository".into(),
        })
    }

    fn exit(result: &str, code: &str, status: &str) -> ServiceExit {
        ServiceExit {
            result: result.into(),
            code: Some(code.into()),
            status: Some(status.into()),
        }
    }

    #[test]
    fn three_failures_within_the_window_are_a_crash_loop() {
        let mut r = record();
        let crash = exit("exit-code", "exited", "1");
        let minute = 60_000;
        assert_eq!(
            judge(&mut r, &crash, Ok(true), NOW),
            Verdict::Counted { recent: 1 }
        );
        assert_eq!(
            judge(&mut r, &crash, Ok(true), NOW + minute),
            Verdict::Counted { recent: 2 }
        );
        assert_eq!(
            judge(&mut r, &crash, Ok(true), NOW + 2 * minute),
            Verdict::RollBack { recent: 3 }
        );
        assert_eq!(r.failures.len(), 3);
        assert_eq!(r.failures[0].exit.as_deref(), Some("exited 1"));
    }

    #[test]
    fn failures_spread_beyond_the_window_are_not_a_loop() {
        let mut r = record();
        let crash = exit("signal", "killed", "SEGV");
        for i in 0..5 {
            let verdict = judge(&mut r, &crash, Ok(true), NOW + i * CRASH_LOOP_WINDOW_MS);
            assert!(matches!(verdict, Verdict::Counted { .. }), "{verdict:?}");
        }
    }

    #[test]
    fn clean_stops_refusals_and_changed_installs_are_not_counted() {
        let mut r = record();
        let cases = [
            (exit("success", "exited", "0"), Ok(true)),
            (exit("exit-code", "exited", "78"), Ok(true)),
        ];
        for (e, applied) in cases {
            assert!(matches!(
                judge(&mut r, &e, applied, NOW),
                Verdict::NotACrash(_)
            ));
        }
        let crash = exit("exit-code", "exited", "1");
        assert!(matches!(
            judge(&mut r, &crash, Ok(false), NOW),
            Verdict::Stale(_)
        ));
        assert!(matches!(
            judge(&mut r, &crash, Err(unknown_head()), NOW),
            Verdict::Stale(_)
        ));
        assert!(r.failures.is_empty());
    }

    #[test]
    fn the_failure_list_is_bounded() {
        let mut r = record();
        let crash = exit("core-dump", "dumped", "ABRT");
        for i in 0..100 {
            judge(&mut r, &crash, Ok(true), NOW + i * CRASH_LOOP_WINDOW_MS);
        }
        assert_eq!(r.failures.len(), MAX_FAILURES_KEPT);
    }

    #[test]
    fn the_service_exit_comes_from_systemds_variables() {
        let env = |key: &str| match key {
            "SERVICE_RESULT" => Some("exit-code".to_owned()),
            "EXIT_CODE" => Some("exited".to_owned()),
            "EXIT_STATUS" => Some("1".to_owned()),
            _ => None,
        };
        assert_eq!(
            ServiceExit::from_env(&env),
            Some(exit("exit-code", "exited", "1"))
        );
        assert_eq!(ServiceExit::from_env(&|_| None), None);
    }

    #[test]
    fn a_record_over_the_limit_is_refused_naming_the_file_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::in_dir(dir.path().to_path_buf(), None);
        fsutil::ensure_private_dir(&rescue_dir(&paths)).unwrap();
        fsutil::testing::oversize(&record_path(&paths));
        let err = read_record(&paths).unwrap_err();
        fsutil::testing::assert_refused_over(
            &err,
            &record_path(&paths),
            fsutil::MAX_STATE_FILE_BYTES,
        );
    }

    #[test]
    fn arming_copies_this_executable_and_the_record_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::in_dir(dir.path().to_path_buf(), None);
        let r = record();
        arm(&paths, &r.run_id, "0.1.0", "0.3.0", &r.undo, NOW).unwrap();
        let copied = std::fs::read(binary_path(&paths)).unwrap();
        assert_eq!(copied, std::fs::read("/proc/self/exe").unwrap());
        assert_eq!(fsutil::testing::mode(&binary_path(&paths)), 0o700);
        let back = read_record(&paths).unwrap().unwrap();
        assert_eq!(back.previous_version, "0.1.0");
        let Undo::Git(git) = back.undo else {
            panic!("git undo expected")
        };
        assert_eq!(git.binary_backup, binary_path(&paths));
        disarm(&paths);
        assert_eq!(read_record(&paths).unwrap(), None);
    }
}
