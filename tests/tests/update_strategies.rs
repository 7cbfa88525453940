//! `update.run` under the restart strategies other than respawn, with the
//! real moltd installed by the real npm: supervised (a supervisor moltd
//! cannot hand a process to, `--supervisor runit`, played by a script
//! that starts it again after every exit and runs the rescue step) and
//! exec (`OPENCLAW_NO_RESPAWN=1`, `--restart-mode exec`), each with a good
//! version and with one that dies at start.
//!
//! Under both, moltd cannot prove the new version before it lets go: the
//! update's answer is `ok` once the restart is under way, and what happens
//! next is the supervisor's (supervised) or the new binary's (exec).

use std::path::Path;

use molt_e2e::PackageManager;
use molt_e2e::moltd::{Moltd, Ready, command, serving};
use molt_e2e::restarts::{Probe, READY_WAIT, client};
use molt_e2e::supervisor::Supervised;
use molt_e2e::tree::{same_tree, snapshot};
use molt_e2e::updates::{NEW, OLD, UpdateFixture, update_run, update_status};
use molt_protocol::ids::RunId;
use molt_protocol::status::{RestartStrategy, StatusResult};
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::{Value, json};

fn version_of(binary: &Path) -> String {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn strategy(moltd: &Moltd) -> RestartStrategy {
    let status: StatusResult = client(&moltd.first)
        .await
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    status.restart.strategy
}

/// The next moltd the supervisor started, another process than `old`.
fn restarted(supervised: &mut Supervised, old: &Ready) -> Ready {
    let next = supervised
        .moltd
        .next_ready(READY_WAIT)
        .expect("the supervisor starts moltd again");
    assert_ne!(next.pid, old.pid);
    next
}

/// `ready` runs the new version and verified the update's run.
async fn assert_verified(ready: &Ready, run_id: &RunId) {
    assert_eq!(ready.version, NEW);
    let status = update_status(&mut client(ready).await).await;
    let run = status.last_run.unwrap();
    assert_eq!((&run.run_id, run.phase), (run_id, RunPhase::Verified));
    let verified = status.sentinel.unwrap().verified.unwrap();
    assert_eq!(
        (verified.running_version.as_str(), verified.pid),
        (NEW, ready.pid)
    );
}

#[tokio::test]
async fn supervised_an_update_exits_and_the_supervisor_starts_the_new_version() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let mut supervised = fx.start_supervised(&global, json!({})).unwrap();
    let state = fx.state_dir(&global);
    let old = supervised.moltd.first.clone();
    assert_eq!(
        strategy(&supervised.moltd).await,
        RestartStrategy::Supervised
    );

    let mut c = client(&old).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.restart.unwrap().mode, RestartStrategy::Supervised);

    let next = restarted(&mut supervised, &old);
    assert_verified(&next, &result.run_id).await;
    // The version that worked stands by: a new version that keeps dying
    // after this is rolled back by it (tests/tests/update_rescue.rs).
    assert_eq!(
        version_of(&state.join("rescue/moltd")),
        format!("moltd {OLD}")
    );
    assert!(state.join("rescue/rescue.json").is_file());
    assert_eq!(serving(&state), [next.pid]);
}

#[tokio::test]
async fn supervised_a_version_that_dies_at_start_is_rolled_back_by_the_rescue_step() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let mut supervised = fx.start_supervised(&global, json!({})).unwrap();
    let state = fx.state_dir(&global);
    let old = supervised.moltd.first.clone();

    let mut c = client(&old).await;
    let result = update_run(&mut c, json!({"tag": "3.0.0"})).await.unwrap();
    // moltd exits for the supervisor to start 3.0.0: it cannot know that
    // 3.0.0 will not start, and answers ok.
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.result.status, UpdateStatus::Ok);

    // The supervisor starts 3.0.0, which dies, three times; the rescue
    // step after the third puts 1.0.0 back, and the next start serves.
    let next = restarted(&mut supervised, &old);
    assert_eq!(next.version, OLD);

    let mut c = client(&next).await;
    let status = update_status(&mut c).await;
    let run = status.last_run.unwrap();
    assert_eq!(run.run_id, result.run_id);
    assert_eq!(run.phase, RunPhase::RolledBack);
    let reason = run.reason.unwrap();
    assert!(
        reason.starts_with("crash-loop: 3.0.0 failed 3 times within 10 min"),
        "{reason}"
    );
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(sentinel.stats.reason.as_deref(), Some("crash-loop"));
    assert!(sentinel.rolled_back);
    assert_eq!(sentinel.verified.unwrap().running_version, OLD);
    // The live install is 1.0.0 again, byte for byte; only molt's backups
    // are new.
    let live: std::collections::BTreeMap<_, _> = snapshot(&global.prefix)
        .unwrap()
        .into_iter()
        .filter(|(path, _)| !path.contains(".molt-"))
        .collect();
    same_tree(&before, &live).unwrap();
    assert!(!state.join("rescue/rescue.json").exists(), "disarmed");
    let check: Value =
        serde_json::from_slice(&std::fs::read(state.join("update-check.json")).unwrap()).unwrap();
    assert_eq!(check["attempts"]["3.0.0"]["outcome"], "crash-looped");
    assert_eq!(serving(&state), [next.pid]);
}

/// moltd on the install's entrypoint, restarting by exec.
fn start_exec(fx: &UpdateFixture, global: &molt_e2e::GlobalInstall, how: Exec) -> Moltd {
    let state = fx.state_dir(global);
    std::fs::create_dir_all(&state).unwrap();
    molt_e2e::moltd::write_config(&state, json!({}));
    let mut args = vec!["--port", "0"];
    if how == Exec::Flag {
        args.extend(["--restart-mode", "exec"]);
    }
    let mut cmd = command(&global.bin, &state, &args);
    cmd.envs(fx.moltd_env(global.manager).unwrap());
    if how == Exec::Env {
        cmd.env("OPENCLAW_NO_RESPAWN", "1");
    }
    Moltd::spawn(cmd)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exec {
    Flag,
    Env,
}

#[tokio::test]
async fn exec_an_update_replaces_the_process_image_in_place() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let mut moltd = start_exec(&fx, &global, Exec::Env);
    let old = moltd.first.clone();
    assert_eq!(strategy(&moltd).await, RestartStrategy::Exec);
    let probe = Probe::start(old.socket_addr().expect("READY names a socket address"));

    let mut c = client(&old).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.restart.unwrap().mode, RestartStrategy::Exec);

    let next = moltd.next_ready(READY_WAIT).expect("the new image serves");
    assert_eq!(next.version, NEW);
    assert_eq!(
        (next.pid, next.addr.as_str()),
        (old.pid, old.addr.as_str()),
        "same pid, same socket"
    );
    let (connected, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "the listener stays open across exec");
    assert!(connected > 0);
    assert_verified(&next, &result.run_id).await;
}

/// FINDING (reported, not fixed here): exec's preflight runs the new
/// entrypoint's `--version`, which a version that dies at start passes;
/// moltd then drains and execs it, and there is no process left to keep
/// serving or to roll back. The gateway is down until an operator acts.
/// This test holds what happens today, and what the next start makes of
/// it once the previous version is installed again by hand.
#[tokio::test]
async fn exec_a_version_that_dies_at_start_takes_the_gateway_down() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let mut moltd = start_exec(&fx, &global, Exec::Flag);
    let old = moltd.first.clone();
    let state = fx.state_dir(&global);
    assert_eq!(strategy(&moltd).await, RestartStrategy::Exec);

    let mut c = client(&old).await;
    let result = update_run(&mut c, json!({"tag": "3.0.0"})).await.unwrap();
    assert!(result.ok, "the preflight passed: {result:#?}");

    // The exec'd 3.0.0 refuses its arguments and exits: nothing serves.
    let exit = moltd.wait_exit(READY_WAIT).expect("the process ends");
    assert_eq!(exit.code(), Some(2), "the broken build's exit");
    assert!(
        std::net::TcpStream::connect(old.socket_addr().expect("READY names a socket address"))
            .is_err(),
        "the port is dark"
    );
    assert!(serving(&state).is_empty());
    // The install is the broken version; the update's records say only
    // that a restart was under way.
    assert_eq!(version_of(&global.bin), "moltd 3.0.0");
    let runs = std::fs::read_to_string(state.join("update-runs.jsonl")).unwrap();
    let last: Value = serde_json::from_str(runs.lines().last().unwrap()).unwrap();
    assert_eq!(last["runId"], json!(result.run_id));
    assert_eq!(last["phase"], "restarting");
    let sentinel: Value =
        serde_json::from_slice(&std::fs::read(state.join("restart-sentinel.json")).unwrap())
            .unwrap();
    assert_eq!(sentinel["payload"]["status"], "ok");
    assert!(state.join("update-backup.json").is_file());

    // The operator installs 1.0.0 again and starts moltd: it tells the
    // truth about the update.
    let reinstalled = fx.install(PackageManager::Npm, OLD).unwrap();
    let restarted = fx.restart_moltd(&reinstalled, &state, &[]).unwrap();
    assert_eq!(restarted.first.version, OLD);
    let status = update_status(&mut client(&restarted.first).await).await;
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(
        sentinel.stats.reason.as_deref(),
        Some("restart-version-mismatch")
    );
    let run = status.last_run.unwrap();
    assert_eq!((run.run_id, run.phase), (result.run_id, RunPhase::Failed));
}
