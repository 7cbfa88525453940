//! `update.run` with a scripted package manager and git: refusals change
//! nothing and run nothing, failures carry their documented code, a dry
//! run leaves no trace, and a git run starts at most the commands
//! `timeoutMs` is defined over.

use std::path::Path;
use std::sync::Arc;

use molt_protocol::event::{EventName, StepState, UpdateProgress};
use molt_protocol::method::{MAX_UPDATE_RUN_COMMANDS, UpdateRunParams};
use molt_protocol::status::InstallInfo;
use molt_protocol::update::{Channel, InstallMode, ReasonCode, RunPhase, RunTrigger, UpdateStatus};

use super::*;
use crate::install::layout::Install;
use crate::update::lease::{Lease, lease_path};
use crate::update::owner::current_owner;
use crate::update::testing::{
    FakeRestarter, FakeSteps, Gate, Handoff, PACKAGE, RUNNING, context, installed, npm_install,
    write_binary,
};

const METADATA_2_0: &str = r#"{"dist-tags":{"latest":"2.0.0"},"versions":["1.0.0","2.0.0"]}"#;

fn request(params: UpdateRunParams) -> RunRequest {
    RunRequest {
        params,
        trigger: RunTrigger::Manual,
        actor: Some("op".to_owned()),
        requester: Some(RequesterId(7)),
    }
}

/// A context over `install` whose restarts never fire.
fn over(install: &Install, dir: &Path, steps: &Arc<FakeSteps>) -> RunContext {
    context(
        dir,
        installed(install),
        steps.clone(),
        FakeRestarter::new(Handoff::Pending),
    )
}

fn surface(mode: InstallMode) -> InstallInfo {
    InstallInfo {
        surface: mode,
        root: Some("/nowhere/root".to_owned()),
        entrypoint: Some("/nowhere/bin/moltd".to_owned()),
        source: "detected".to_owned(),
    }
}

#[tokio::test]
async fn refusals_skip_before_any_command_and_name_their_code() {
    let cases = [
        (InstallMode::Unmanaged, None, true, ReasonCode::Unmanaged),
        (InstallMode::External, None, true, ReasonCode::External),
        (
            InstallMode::Npm,
            Some(Channel::Dev),
            true,
            ReasonCode::DevChannel,
        ),
        (
            InstallMode::Npm,
            None,
            false,
            ReasonCode::RestartUnavailable,
        ),
    ];
    for (mode, channel, restart_enabled, code) in cases {
        let dir = tempfile::tempdir().unwrap();
        let steps = Arc::new(FakeSteps::with_tool());
        let mut ctx = context(
            dir.path(),
            surface(mode),
            steps.clone(),
            FakeRestarter::new(Handoff::Pending),
        );
        ctx.restart_enabled = restart_enabled;
        let params = UpdateRunParams {
            channel,
            ..UpdateRunParams::default()
        };
        let answer = run(&ctx, request(params)).await.unwrap();
        assert!(answer.ok, "a refusal is not an error: {code}");
        assert_eq!(answer.result.status, UpdateStatus::Skipped);
        assert_eq!(answer.result.reason_code(), Some(code));
        assert!(steps.ran().is_empty(), "{code}: nothing ran");
        let stored = ctx.runs.get(&answer.run_id).unwrap();
        assert_eq!(stored.phase, RunPhase::Skipped);
        assert_eq!(stored.actor.as_deref(), Some("op"));
    }
}

#[tokio::test]
async fn bad_params_a_busy_slot_and_a_stopping_gateway_are_refused_before_a_run_exists() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        surface(InstallMode::Npm),
        Arc::new(FakeSteps::with_tool()),
        FakeRestarter::new(Handoff::Pending),
    );
    let too_short = UpdateRunParams {
        timeout_ms: Some(999),
        ..UpdateRunParams::default()
    };
    assert!(matches!(
        run(&ctx, request(too_short)).await,
        Err(Refused::InvalidParams(message)) if message.contains("timeoutMs")
    ));

    let other = RunId::from("run-other");
    let held = ctx.slot.try_claim(&other).unwrap();
    assert_eq!(
        run(&ctx, request(UpdateRunParams::default())).await,
        Err(Refused::Busy(Some(other)))
    );
    drop(held);

    ctx.cancel.cancel();
    assert_eq!(
        run(&ctx, request(UpdateRunParams::default())).await,
        Err(Refused::Stopping)
    );
    assert!(ctx.runs.history(10).is_empty(), "no run was recorded");
}

#[tokio::test]
async fn a_failing_resolve_fails_the_run_with_its_step_recorded_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let steps = Arc::new(FakeSteps::with_tool().answer("resolve", 1, ""));
    let ctx = over(&install, dir.path(), &steps);
    let mut events = ctx.events.subscribe();
    let answer = run(&ctx, request(UpdateRunParams::default()))
        .await
        .unwrap();
    assert!(!answer.ok);
    assert_eq!(
        answer.result.reason.as_deref(),
        Some("resolve-failed: resolve failed (exit 1): boom")
    );
    assert_eq!(steps.ran(), ["resolve"]);
    let argv = steps.spec("resolve").argv;
    assert_eq!(argv[0], "/fake/npm");
    assert!(argv.contains(&PACKAGE.to_owned()), "{argv:?}");
    assert_eq!(
        ctx.runs.get(&answer.run_id).unwrap().phase,
        RunPhase::Failed
    );

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!(event.event, EventName::UpdateProgress);
        let progress: UpdateProgress = serde_json::from_value(event.payload.clone()).unwrap();
        seen.push((progress.phase, progress.step.map(|s| s.state)));
    }
    assert_eq!(
        seen,
        [
            (RunPhase::Running, None),
            (RunPhase::Running, Some(StepState::Started)),
            (RunPhase::Running, Some(StepState::Failed)),
            (RunPhase::Failed, None),
        ]
    );
}

#[tokio::test]
async fn the_running_version_is_up_to_date_and_a_dry_run_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let current = r#"{"dist-tags":{"latest":"1.0.0"},"versions":["1.0.0"]}"#;
    let steps = Arc::new(FakeSteps::with_tool().answer("resolve", 0, current));
    let ctx = over(&install, dir.path(), &steps);
    let answer = run(&ctx, request(UpdateRunParams::default()))
        .await
        .unwrap();
    assert_eq!(answer.result.reason.as_deref(), Some("up-to-date"));
    assert_eq!(steps.ran(), ["resolve"], "nothing installed");

    let steps = Arc::new(FakeSteps::with_tool().answer("resolve", 0, METADATA_2_0));
    let ctx = over(&install, dir.path(), &steps);
    let runs_before = ctx.runs.history(10).len();
    let mut events = ctx.events.subscribe();
    let dry = UpdateRunParams {
        dry_run: Some(true),
        ..UpdateRunParams::default()
    };
    let answer = run(&ctx, request(dry)).await.unwrap();
    assert!(answer.result.is_planned());
    assert_eq!(
        answer.result.reason.as_deref(),
        Some("dry-run: would install @molt/moltd@2.0.0")
    );
    assert_eq!(answer.result.after.version.as_deref(), Some("2.0.0"));
    assert_eq!(steps.ran(), ["resolve"]);
    assert_eq!(ctx.runs.history(10).len(), runs_before, "no run record");
    assert!(events.try_recv().is_err(), "no update.progress");
}

#[tokio::test]
async fn a_missing_package_manager_is_tool_missing() {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let steps = Arc::new(FakeSteps::default());
    let ctx = over(&install, dir.path(), &steps);
    let answer = run(&ctx, request(UpdateRunParams::default()))
        .await
        .unwrap();
    assert_eq!(answer.result.reason_code(), Some(ReasonCode::ToolMissing));
    assert!(steps.ran().is_empty());
}

/// A checkout at 1.0.0 whose tags offer 2.0.0; the build writes a binary
/// that reports `built`.
fn git_steps(binary: &Path, built: &'static str) -> FakeSteps {
    let binary = binary.to_path_buf();
    FakeSteps::default()
        .answer("tags", 0, "v1.0.0\nv2.0.0\n")
        .answer("resolve", 0, "c2\n")
        .answer(
            "version",
            0,
            "[package]\nname = \"moltd\"\nversion = \"2.0.0\"\n",
        )
        .answer("head", 0, "c1\n")
        .answer("branch", 0, "main\n")
        .on("build", move |_| write_binary(&binary, built))
}

fn git_context(dir: &Path, steps: Arc<FakeSteps>, restart: Arc<FakeRestarter>) -> RunContext {
    let root = dir.join("checkout");
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    let binary = root.join("target/release/moltd");
    write_binary(&binary, RUNNING);
    let install = InstallInfo {
        surface: InstallMode::Git,
        root: Some(root.display().to_string()),
        entrypoint: Some(binary.display().to_string()),
        source: "detected".to_owned(),
    };
    context(dir, install, steps, restart)
}

#[tokio::test]
async fn a_git_run_builds_the_newest_tag_and_restarts_with_the_operators_delay() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("checkout/target/release/moltd");
    let steps = Arc::new(git_steps(&binary, "2.0.0"));
    let restarter = FakeRestarter::new(Handoff::Pending);
    let ctx = git_context(dir.path(), steps.clone(), restarter.clone());
    let params = UpdateRunParams {
        restart_delay_ms: Some(5000),
        timeout_ms: Some(60_000),
        ..UpdateRunParams::default()
    };
    let answer = run(&ctx, request(params)).await.unwrap();
    assert!(answer.ok, "{:?}", answer.result.reason);
    assert_eq!(answer.result.status, UpdateStatus::Ok);
    let ran = steps.ran();
    assert_eq!(
        ran,
        [
            "clean", "fetch", "tags", "resolve", "version", "head", "branch", "checkout", "build"
        ]
    );
    // `timeoutMs` bounds each of these: the protocol's whole-run bound
    // counts exactly this many.
    assert_eq!(ran.len() as u64, MAX_UPDATE_RUN_COMMANDS);
    assert!(
        ran.iter()
            .all(|name| steps.spec(name).timeout.as_millis() == 60_000)
    );
    assert_eq!(
        steps.spec("checkout").argv[3..],
        ["checkout", "--quiet", "--detach", "c2"]
    );
    let requested = restarter.requests.lock().clone();
    assert_eq!(requested.len(), 1);
    let requested = &requested[0];
    assert_eq!(requested.reason, "update.run");
    assert_eq!(requested.delay_ms, Some(5000));
    assert!(!requested.skip_deferral && !requested.skip_cooldown);
    assert_eq!(requested.requester, Some(RequesterId(7)));
    assert_eq!(requested.expected_version.as_deref(), Some("2.0.0"));
    assert_eq!(
        std::fs::read_to_string(format!("{}.molt-previous", binary.display())).unwrap(),
        "#!/bin/sh\necho moltd 1.0.0\n",
        "the previous binary is kept for the rollback"
    );
    ctx.cancel.cancel();
}

#[tokio::test]
async fn a_git_build_that_reports_another_version_is_verify_failed_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkout");
    let binary = root.join("target/release/moltd");
    let steps = Arc::new(git_steps(&binary, "1.9.9"));
    let restarter = FakeRestarter::new(Handoff::Pending);
    let ctx = git_context(dir.path(), steps.clone(), restarter.clone());
    // The rollback checks the previous branch out: a real checkout.
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "--quiet", "--initial-branch=main"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "--quiet",
        "--allow-empty",
        "-m",
        "c1",
    ]);

    let answer = run(&ctx, request(UpdateRunParams::default()))
        .await
        .unwrap();
    assert!(!answer.ok);
    let reason = answer.result.reason.unwrap();
    assert_eq!(
        ReasonCode::of(&reason),
        Some(ReasonCode::VerifyFailed),
        "{reason}"
    );
    assert!(reason.contains("printed \"moltd 1.9.9\""), "{reason}");
    assert_eq!(
        ctx.runs.get(&answer.run_id).unwrap().phase,
        RunPhase::RolledBack
    );
    assert_eq!(
        std::fs::read_to_string(&binary).unwrap(),
        "#!/bin/sh\necho moltd 1.0.0\n",
        "the previous binary is back"
    );
    assert!(restarter.requests.lock().is_empty(), "no restart");
}

fn dry_run() -> UpdateRunParams {
    UpdateRunParams {
        dry_run: Some(true),
        ..UpdateRunParams::default()
    }
}

#[tokio::test]
async fn a_dry_run_answers_with_the_plan_while_a_run_holds_the_slot_and_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let steps = Arc::new(FakeSteps::with_tool().answer("resolve", 0, METADATA_2_0));
    let ctx = over(&install, dir.path(), &steps);
    let other = RunId::from("run-other");
    let _slot = ctx.slot.try_claim(&other).unwrap();
    let lease = Lease::acquire(&lease_path(&install.root), other.clone(), current_owner()).unwrap();

    let planned = run(&ctx, request(dry_run())).await.unwrap();
    assert_eq!(planned.result.status, UpdateStatus::Skipped);
    assert_eq!(
        planned.result.reason.as_deref(),
        Some("dry-run: would install @molt/moltd@2.0.0")
    );
    assert_eq!(
        run(&ctx, request(UpdateRunParams::default())).await,
        Err(Refused::Busy(Some(other))),
        "a real run still waits its turn"
    );
    lease.release().unwrap();
}

#[tokio::test]
async fn a_dry_run_never_holds_up_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let install = npm_install(&dir.path().join("prefix"), RUNNING);
    let gate = Gate::new();
    let steps = Arc::new(
        FakeSteps::with_tool()
            .answer("resolve", 0, METADATA_2_0)
            .gated("resolve", Arc::clone(&gate)),
    );
    let ctx = over(&install, dir.path(), &steps);
    let planning = {
        let ctx = ctx.clone();
        tokio::spawn(async move { run(&ctx, request(dry_run())).await })
    };
    // The dry run waits in its metadata query...
    gate.entered(1).await;
    let real = {
        let ctx = ctx.clone();
        tokio::spawn(async move { run(&ctx, request(UpdateRunParams::default())).await })
    };
    // ...while the real run takes the slot and the lease and gets as far.
    gate.entered(2).await;
    let running = ctx.slot.current().expect("the real run holds the slot");
    gate.open();
    let planned = planning.await.unwrap().unwrap();
    assert!(
        planned
            .result
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("dry-run: ")),
        "{planned:#?}"
    );
    let real = real.await.unwrap().expect("the real run was not refused");
    assert_eq!(real.run_id, running);
}
