//! The handoff of a real swap (an npm-shaped tree in a temp dir, a
//! scripted package manager, a fake restart engine): the install is never
//! left mixed, a failed successor or a refused restart puts the previous
//! version back, and the sentinel and the run say what happened.

use std::path::Path;
use std::sync::Arc;

use molt_protocol::changelog::Changelog;
use molt_protocol::method::{UpdateRunParams, UpdateRunResult};
use molt_protocol::status::EnvSource;
use molt_protocol::update::{
    ReasonCode, RunPhase, RunTrigger, StepRecord, Termination, UpdateStatus,
};

use crate::autoupdate::KillSwitch;
use crate::install::layout::Install;
use crate::restart::engine::HandoffFailure;
use crate::restart::respawn::{StartFailure, SuccessorFailure};
use crate::update::context::RunContext;
use crate::update::flow::{RunRequest, run};
use crate::update::lease::{Lease, lease_path};
use crate::update::owner::current_owner;
use crate::update::testing::{
    FakeRestarter, FakeSteps, Handoff, RUNNING, Requested, context, installed, npm_install,
    npm_stage_at,
};
use crate::update::{read_undo, sentinel, undo_path};

const METADATA_2_0: &str = r#"{"dist-tags":{"latest":"2.0.0"},"versions":["1.0.0","2.0.0"]}"#;

/// What 2.0.0 ships: entries before, at and after the running 1.0.0.
const CHANGELOG_2_0: &str = "## [2.0.0]\n- two\n## [1.5.0]\n- one and a half\n## [1.0.0]\n- one\n";

/// The versions of the changelog entries `answer` carries.
fn changelog_versions(changelog: Option<&Changelog>) -> Option<Vec<&str>> {
    changelog.map(|log| log.entries.iter().map(|e| e.version.as_str()).collect())
}

struct Setup {
    _dir: tempfile::TempDir,
    install: Install,
    ctx: RunContext,
    restarter: Arc<FakeRestarter>,
}

/// An npm install of 1.0.0 whose registry offers 2.0.0; the install step
/// stages it as npm would.
fn setup(handoff: Handoff) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let steps = FakeSteps::with_tool()
        .answer("resolve", 0, METADATA_2_0)
        .on("install", |spec| {
            let stage = spec.cwd.as_deref().unwrap();
            npm_stage_at(stage, "2.0.0");
            std::fs::write(
                stage.join("lib/node_modules/@molt/moltd/CHANGELOG.md"),
                CHANGELOG_2_0,
            )
            .unwrap();
        });
    let restarter = FakeRestarter::new(handoff);
    let ctx = context(
        dir.path(),
        installed(&install),
        Arc::new(steps),
        restarter.clone(),
    );
    Setup {
        _dir: dir,
        install,
        ctx,
        restarter,
    }
}

async fn update(ctx: &RunContext, trigger: RunTrigger) -> UpdateRunResult {
    let request = RunRequest {
        params: UpdateRunParams::default(),
        trigger,
        actor: None,
        requester: None,
    };
    run(ctx, request).await.unwrap()
}

/// The version the live install runs, asked the way a successor starts.
fn live_version(install: &Install) -> String {
    let out = std::process::Command::new(&install.entrypoint)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn lease_is_free(root: &Path) -> bool {
    Lease::acquire(&lease_path(root), "run-probe".into(), current_owner()).is_ok()
}

#[tokio::test]
async fn a_verified_successor_keeps_the_new_version_and_the_sentinel_to_verify() {
    let s = setup(Handoff::Succeeds);
    let answer = update(&s.ctx, RunTrigger::Manual).await;
    assert!(answer.ok, "{:?}", answer.result.reason);
    assert_eq!(answer.result.status, UpdateStatus::Ok);
    assert_eq!(live_version(&s.install), "moltd 2.0.0");
    // A package swap restarts at once: the old process must not outlive
    // its tree.
    assert_eq!(
        s.restarter.requests.lock().clone(),
        [Requested {
            reason: "update.run".to_owned(),
            delay_ms: Some(0),
            skip_deferral: true,
            skip_cooldown: true,
            requester: None,
            expected_version: Some("2.0.0".to_owned()),
        }]
    );
    let doc = sentinel::read(&s.ctx.paths.sentinel_path).unwrap().unwrap();
    assert_eq!(doc.payload.status, UpdateStatus::Ok);
    assert_eq!(doc.payload.run_id.as_ref(), Some(&answer.run_id));
    assert_eq!(doc.payload.stats.after.version.as_deref(), Some("2.0.0"));
    assert!(
        read_undo(&undo_path(&s.ctx.paths)).unwrap().is_some(),
        "kept until the successor verifies"
    );
    let stored = s.ctx.runs.get(&answer.run_id).unwrap();
    assert_eq!(
        stored.phase,
        RunPhase::Restarting,
        "the successor ends the run"
    );
    // Read from the new tree once it was in place: after 1.0.0, up to 2.0.0.
    let brought = Some(vec!["2.0.0", "1.5.0"]);
    assert_eq!(
        changelog_versions(answer.result.changelog.as_ref()),
        brought
    );
    assert_eq!(changelog_versions(stored.changelog.as_ref()), brought);
    assert!(lease_is_free(&s.install.root), "released after the handoff");
}

/// A successor that exited 1 before it was ready, saying why on stderr.
fn exited() -> Arc<HandoffFailure> {
    use std::os::unix::process::ExitStatusExt;
    Arc::new(HandoffFailure::Successor(StartFailure {
        failure: SuccessorFailure::Exited {
            status: Some(std::process::ExitStatus::from_raw(1 << 8)),
            progress: "config".to_owned(),
        },
        output: Some(Box::new(successor_step())),
    }))
}

fn successor_step() -> StepRecord {
    StepRecord {
        name: "restart".to_owned(),
        command: "/usr/bin/moltd --port 0".to_owned(),
        argv: vec!["/usr/bin/moltd".into(), "--port".into(), "0".into()],
        cwd: None,
        duration_ms: 12,
        exit_code: Some(1),
        termination: Termination::Exited,
        stdout_head: String::new(),
        stdout_tail: String::new(),
        stderr_head: "dies at start\n".to_owned(),
        stderr_tail: "dies at start\n".to_owned(),
    }
}

#[tokio::test]
async fn a_failed_successor_is_rolled_back_while_this_process_serves() {
    let s = setup(Handoff::Fails(exited()));
    let answer = update(&s.ctx, RunTrigger::Manual).await;
    assert!(!answer.ok);
    assert_eq!(answer.result.reason.as_deref(), Some("restart-unhealthy"));
    assert_eq!(live_version(&s.install), "moltd 1.0.0", "never mixed");

    let doc = sentinel::read(&s.ctx.paths.sentinel_path).unwrap().unwrap();
    assert_eq!(doc.payload.status, UpdateStatus::Error);
    assert_eq!(
        doc.payload.stats.reason.as_deref(),
        Some("restart-unhealthy")
    );
    assert!(doc.payload.rolled_back);
    assert_eq!(
        answer.sentinel.unwrap().payload,
        doc.payload,
        "the answer carries the rolled-back sentinel"
    );
    let stored = s.ctx.runs.get(&answer.run_id).unwrap();
    assert_eq!(stored.phase, RunPhase::RolledBack);
    assert_eq!(
        stored.reason.as_deref(),
        Some(
            "restart-unhealthy: successor exited before it was ready (exit status: 1); \
             last progress: config"
        )
    );
    // What the successor printed is the run's last step, in the record
    // and in the sentinel.
    assert_eq!(stored.steps.last(), Some(&successor_step()));
    assert_eq!(doc.payload.stats.steps.last(), Some(&successor_step()));
    // Rolled back: the new version's changes are not in effect.
    assert_eq!(answer.result.changelog, None);
    assert_eq!(stored.changelog, None);
    assert_eq!(read_undo(&undo_path(&s.ctx.paths)).unwrap(), None);
    assert!(lease_is_free(&s.install.root));
}

#[tokio::test]
async fn a_successor_running_another_version_is_rolled_back_as_a_version_mismatch() {
    let s = setup(Handoff::Fails(Arc::new(HandoffFailure::WrongVersion {
        pid: 4242,
        running: "1.0.0".to_owned(),
        expected: "2.0.0".to_owned(),
    })));
    let answer = update(&s.ctx, RunTrigger::Manual).await;
    assert!(!answer.ok);
    assert_eq!(
        answer.result.reason.as_deref(),
        Some("restart-version-mismatch")
    );
    assert_eq!(live_version(&s.install), "moltd 1.0.0", "never mixed");
    let doc = sentinel::read(&s.ctx.paths.sentinel_path).unwrap().unwrap();
    assert_eq!(
        (doc.payload.status, doc.payload.stats.reason.as_deref()),
        (UpdateStatus::Error, Some("restart-version-mismatch"))
    );
    assert!(doc.payload.rolled_back);
    let stored = s.ctx.runs.get(&answer.run_id).unwrap();
    assert_eq!(stored.phase, RunPhase::RolledBack);
    assert_eq!(
        stored.reason.as_deref(),
        Some(
            "restart-version-mismatch: successor pid 4242 runs version 1.0.0, expected 2.0.0; \
             stopped it"
        )
    );
}

#[tokio::test]
async fn a_refused_restart_puts_the_previous_version_back_and_leaves_nothing_to_act_on() {
    let s = setup(Handoff::Rejected);
    let answer = update(&s.ctx, RunTrigger::Manual).await;
    assert!(!answer.ok);
    assert_eq!(
        answer.result.reason_code(),
        Some(ReasonCode::RestartRejected)
    );
    assert_eq!(live_version(&s.install), "moltd 1.0.0");
    let stored = s.ctx.runs.get(&answer.run_id).unwrap();
    assert_eq!(stored.phase, RunPhase::RolledBack);
    assert_eq!((answer.result.changelog, stored.changelog), (None, None));
    assert!(!s.ctx.paths.sentinel_path.exists(), "no sentinel to verify");
    assert_eq!(read_undo(&undo_path(&s.ctx.paths)).unwrap(), None);
    assert!(lease_is_free(&s.install.root));
}

#[tokio::test]
async fn the_kill_switch_set_while_an_automatic_update_ran_blocks_its_restart() {
    let mut s = setup(Handoff::Succeeds);
    s.ctx.kill_switch = Arc::new(|| KillSwitch::blocking(EnvSource::EnvFile));
    let answer = update(&s.ctx, RunTrigger::Auto).await;
    assert_eq!(answer.result.status, UpdateStatus::Skipped);
    assert_eq!(
        answer.result.reason.as_deref(),
        Some(
            "kill-switch: OPENCLAW_NO_AUTO_UPDATE was set (.env) while the update ran; \
             rolled back"
        )
    );
    assert_eq!(live_version(&s.install), "moltd 1.0.0");
    assert!(s.restarter.requests.lock().is_empty(), "no restart");
    assert!(!s.ctx.paths.sentinel_path.exists());

    // A manual run is not the auto-updater's: the switch does not hold it.
    let s = {
        let mut s = setup(Handoff::Succeeds);
        s.ctx.kill_switch = Arc::new(|| KillSwitch::blocking(EnvSource::EnvFile));
        s
    };
    assert!(update(&s.ctx, RunTrigger::Manual).await.ok);
}
