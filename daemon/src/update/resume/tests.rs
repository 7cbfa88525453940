//! The successor's part of a run at start: it ends the run the sentinel
//! names and, when its predecessor read no changelog, reads its own.

use molt_protocol::changelog::Changelog;
use molt_protocol::ids::RunId;
use molt_protocol::update::{
    InstallMode, RunPhase, RunRecord, RunTarget, RunTrigger, Sentinel, SentinelPayload,
    SentinelStats, UpdateStatus, VersionRef,
};

use super::*;
use crate::update::owner::current_owner;
use crate::update::testing::{installed, npm_install};

struct Setup {
    _dir: tempfile::TempDir,
    store: RunStore,
    paths: StatePaths,
    install: InstallInfo,
}

/// A state dir whose sentinel says run-1 updated 1.0.0 to 2.0.0 (the run
/// left at `restarting` with `changelog`), and the 2.0.0 tree it installed.
fn setup(changelog: Option<Changelog>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let live = npm_install(&dir.path().join("prefix"), "2.0.0");
    std::fs::write(
        live.root.join("CHANGELOG.md"),
        "## [2.0.0]\n- two\n## [1.5.0]\n- one and a half\n## [1.0.0]\n- one\n",
    )
    .unwrap();
    let paths = StatePaths::in_dir(dir.path().join("state"), None);
    std::fs::create_dir_all(&paths.state_dir).unwrap();
    let store = RunStore::new(paths.runs_path.clone());
    let now = unix_ms();
    let (before, after) = (VersionRef::new("1.0.0"), VersionRef::new("2.0.0"));
    store
        .record(&RunRecord {
            run_id: RunId::from("run-1"),
            trigger: RunTrigger::Manual,
            actor: None,
            phase: RunPhase::Restarting,
            mode: InstallMode::Npm,
            root: Some(live.root.display().to_string()),
            target: RunTarget {
                version: Some("2.0.0".to_owned()),
                ..RunTarget::default()
            },
            before: before.clone(),
            after: after.clone(),
            note: None,
            reason: None,
            steps: Vec::new(),
            owner: current_owner(),
            requested_at: now,
            updated_at: now,
            finished_at: None,
            changelog,
        })
        .unwrap();
    let payload = SentinelPayload {
        kind: "update".to_owned(),
        status: UpdateStatus::Ok,
        ts: now,
        run_id: Some(RunId::from("run-1")),
        message: None,
        doctor_hint: None,
        stats: SentinelStats {
            mode: InstallMode::Npm,
            root: Some(live.root.display().to_string()),
            before,
            after,
            steps: Vec::new(),
            reason: None,
            duration_ms: 0,
        },
        verified: None,
        rolled_back: false,
    };
    let doc = Sentinel {
        version: Sentinel::FORMAT_VERSION,
        payload,
    };
    sentinel::write(&paths.sentinel_path, &doc).unwrap();
    Setup {
        install: installed(&live),
        _dir: dir,
        store,
        paths,
    }
}

fn running(version: &str) -> Identity {
    Identity {
        version: version.to_owned(),
        ..Identity::current()
    }
}

fn versions(run: &RunRecord) -> Option<Vec<&str>> {
    let log = run.changelog.as_ref()?;
    Some(log.entries.iter().map(|e| e.version.as_str()).collect())
}

#[test]
fn a_successor_reads_the_changelog_a_predecessor_did_not() {
    let s = setup(None);
    resume(&s.store, &s.paths, &s.install, &running("2.0.0"));
    let run = s.store.get(&RunId::from("run-1")).unwrap();
    assert_eq!(run.phase, RunPhase::Verified);
    assert_eq!(versions(&run), Some(vec!["2.0.0", "1.5.0"]));
}

#[test]
fn a_successor_keeps_what_the_predecessor_read_and_a_mismatch_drops_it() {
    let read = Changelog {
        problem: Some("read by the predecessor".to_owned()),
        ..Changelog::default()
    };
    let s = setup(Some(read.clone()));
    resume(&s.store, &s.paths, &s.install, &running("2.0.0"));
    let run = s.store.get(&RunId::from("run-1")).unwrap();
    assert_eq!(
        (run.phase, run.changelog),
        (RunPhase::Verified, Some(read.clone()))
    );

    // Old code over the new tree: the update is not in effect.
    let s = setup(Some(read));
    resume(&s.store, &s.paths, &s.install, &running("1.0.0"));
    let run = s.store.get(&RunId::from("run-1")).unwrap();
    assert_eq!((run.phase, run.changelog), (RunPhase::Failed, None));
}
