//! The handoff after an update, at each of its exits, with the real moltd
//! installed by the real npm from a real registry: what the install tree,
//! the run, the sentinel, the undo record and `gateway.lock` say after it,
//! and which process serves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use molt_e2e::gate::{Gate, Held};
use molt_e2e::moltd::{alive, lock_holder, serving};
use molt_e2e::restarts::{Probe, READY_WAIT, client, force_restart};
use molt_e2e::tree::{same_tree, snapshot};
use molt_e2e::updates::{
    NEW, OLD, UPDATE_WAIT, UpdateFixture, log_line, step_names, update_history, update_run,
    update_status,
};
use molt_e2e::{PackageManager, versions, write_moltd_that_claims};
use molt_protocol::method::{HealthResult, UpdateRunResult};
use molt_protocol::status::{RestartPhase, StatusResult};
use molt_protocol::update::{RunPhase, RunTrigger, UpdateStatus};
use serde_json::json;

/// The pid in "successor pid <pid> runs version …".
fn successor_pid(reason: &str) -> u32 {
    let rest = reason
        .split_once("successor pid ")
        .unwrap_or_else(|| panic!("no successor pid in {reason:?}"))
        .1;
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_successor_running_another_version_is_stopped_before_it_claims_anything() {
    let fx = UpdateFixture::start().unwrap();
    // 3.0.0 says 3.0.0 when asked, but what starts is 1.0.0's code: old
    // code over a new tree.
    let liar = fx.tmp.path().join("liar/moltd");
    write_moltd_that_claims(&liar, "3.0.0", &versions::moltd_binary(OLD).unwrap()).unwrap();
    fx.publish_binary(&liar, "3.0.0", Some("liar")).unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let old = moltd.first.clone();
    let before = snapshot(&global.prefix).unwrap();
    let probe = Probe::start(old.socket_addr().expect("READY names a socket address"));

    let mut c = client(&old).await;
    let result = update_run(&mut c, json!({"tag": "3.0.0"})).await.unwrap();
    assert!(!result.ok, "{result:#?}");
    assert_eq!(
        result.result.reason.as_deref(),
        Some("restart-version-mismatch")
    );
    let (_, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "the old process kept serving");

    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!((health.version.as_str(), health.pid), (OLD, old.pid));
    let status: StatusResult = c.request("status", json!({})).await.into_result().unwrap();
    let failure = status.restart.last_failure.unwrap().reason;
    assert!(
        failure.contains(&format!("runs version {OLD}, expected 3.0.0")),
        "{failure}"
    );
    let stopped = successor_pid(&failure);
    assert!(!alive(stopped), "the successor {stopped} was stopped");
    assert_eq!(serving(&state), [old.pid]);
    // The successor was judged before it claimed anything: the lock still
    // names the process that serves ...
    assert_eq!(lock_holder(&state), old.pid);
    // ... and what the update left says what the old process did, not what
    // the stopped successor would have made of it.
    let status = update_status(&mut c).await;
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(
        sentinel.stats.reason.as_deref(),
        Some("restart-version-mismatch")
    );
    assert!(sentinel.rolled_back);
    assert_eq!(sentinel.verified, None, "no successor verified it");
    let run = status.last_run.unwrap();
    assert_eq!(run.phase, RunPhase::RolledBack);
    let reason = run.reason.unwrap();
    assert!(
        reason.starts_with(&format!(
            "restart-version-mismatch: successor pid {stopped} runs version {OLD}"
        )),
        "{reason}"
    );
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();

    // An accepted successor claims the lock.
    let result = update_run(&mut c, json!({"tag": NEW})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the new version starts");
    assert_eq!(successor.version, NEW);
    let mut c = client(&successor).await;
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(health.pid, successor.pid);
    assert_eq!(lock_holder(&state), successor.pid);
}

/// How long a test waits for a process to reach a gate.
const GATE_WAIT: Duration = Duration::from_secs(120);

/// Reaches `gate` off the runtime's thread.
async fn reached(gate: &Gate) -> Held {
    let gate = Gate::at(gate.path());
    tokio::task::spawn_blocking(move || gate.reached(GATE_WAIT))
        .await
        .unwrap()
        .unwrap()
}

/// The answer of a run that swapped and then put the previous version
/// back, byte for byte, for a reason starting with `code`; the reason.
fn assert_put_back(
    result: &UpdateRunResult,
    code: &str,
    before: &BTreeMap<String, String>,
    prefix: &Path,
) -> String {
    assert!(!result.ok, "{result:#?}");
    assert_eq!(result.result.status, UpdateStatus::Error);
    let reason = result.result.reason.clone().unwrap();
    assert!(reason.starts_with(code), "{reason}");
    assert_eq!(step_names(result), ["resolve", "install", "verify", "swap"]);
    same_tree(before, &snapshot(prefix).unwrap()).unwrap();
    reason
}

/// The update's own files in the state dir, which a run that ends without
/// a handoff must not leave behind.
fn assert_nothing_left_to_act_on(state: &Path) {
    assert!(
        !state.join("restart-sentinel.json").is_file(),
        "no sentinel"
    );
    assert!(!state.join("update-backup.json").exists(), "no undo record");
}

#[tokio::test]
async fn a_sentinel_that_cannot_be_written_puts_the_previous_version_back_without_a_restart() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    // A directory where the sentinel file goes: no write can replace it.
    std::fs::create_dir(state.join("restart-sentinel.json")).unwrap();

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert_eq!(result.restart, None, "no restart");
    let reason = assert_put_back(&result, "sentinel-failed: ", &before, &global.prefix);
    assert_nothing_left_to_act_on(&state);
    let run = &update_history(&mut c).await[0];
    assert_eq!(run.phase, RunPhase::RolledBack, "{run:#?}");
    assert_eq!(run.reason.as_deref(), Some(reason.as_str()));
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        (health.version.as_str(), health.pid),
        (OLD, moltd.first.pid)
    );
    assert_eq!(serving(&state), [moltd.first.pid]);
    assert_eq!(lock_holder(&state), moltd.first.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_set_while_an_automatic_update_installs_blocks_its_restart() {
    let mut fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let install = fx.gate_installs().unwrap();
    let auto = json!({"update": {
        "checkOnStart": true,
        "auto": {"enabled": true, "stableDelayHours": 0, "stableJitterHours": 0},
    }});
    let (state, moltd) = fx.start_moltd(&global, auto).unwrap();
    let mut c = client(&moltd.first).await;

    // The auto-updater's run is installing: past its own kill-switch check.
    let installing = reached(&install).await;
    let set: serde_json::Value = c
        .request("update.noAutoUpdate.set", json!({"enabled": true}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(set["enabled"], json!(true));
    drop(installing);

    let run = loop {
        let progress = c.event_within("update.progress", UPDATE_WAIT).await;
        if progress["phase"] == "skipped" {
            break progress["runId"].as_str().unwrap().to_owned();
        }
    };
    let runs = update_history(&mut c).await;
    let record = runs.iter().find(|r| r.run_id.as_str() == run).unwrap();
    assert_eq!(record.trigger, RunTrigger::Auto);
    assert_eq!(record.phase, RunPhase::Skipped, "{record:#?}");
    assert_eq!(
        record.reason.as_deref(),
        Some(
            "kill-switch: OPENCLAW_NO_AUTO_UPDATE was set (.env) while the update ran; \
             rolled back"
        )
    );
    // It had swapped: the previous version is back, byte for byte.
    assert!(
        record.steps.iter().any(|s| s.name == "swap"),
        "{:?}",
        record.steps
    );
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();
    assert_nothing_left_to_act_on(&state);
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        (health.version.as_str(), health.pid),
        (OLD, moltd.first.pid)
    );
    let status: StatusResult = c.request("status", json!({})).await.into_result().unwrap();
    assert_eq!(status.auto.blocked_by.as_deref(), Some("env"));
    assert_eq!(
        status.restart.phase,
        RestartPhase::Idle,
        "nothing scheduled"
    );
    assert_eq!(serving(&state), [moltd.first.pid]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_restart_is_refused_puts_the_previous_version_back() {
    let mut fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let install = fx.gate_installs().unwrap();
    // The operator's successor may take its time (it waits on a gate below).
    let config = json!({"gateway": {"reload": {"successorTimeoutMs": 120_000}}});
    let (state, moltd) = fx.start_moltd(&global, config).unwrap();
    let old = moltd.first.clone();
    let mut logs = client(&old).await;

    // Asked now, answered once the gates below open (its answer waits in
    // the socket meanwhile).
    let mut c = client(&old).await;
    let update = c.send_request("update.run", json!({})).await;
    let installing = reached(&install).await;

    // While the update installs, an operator's restart fires; its
    // successor hangs at start opening `.env` (a named pipe nobody writes
    // yet), so that restart is in flight.
    let env_gate = Gate::new(&state.join(".env")).unwrap();
    force_restart(&mut client(&old).await).await;
    log_line(&mut logs, &["restart firing", "reason=test"]).await;

    // The update finishes its swap and asks for its restart: refused.
    drop(installing);
    let result: UpdateRunResult = c
        .response_within(&update, UPDATE_WAIT)
        .await
        .into_result()
        .unwrap();
    let reason = assert_put_back(&result, "restart-rejected: ", &before, &global.prefix);
    assert_nothing_left_to_act_on(&state);

    // The operator's successor goes on, finds a pipe where `.env` should
    // be and refuses to start: the old process serves on.
    drop(reached(&env_gate).await);
    log_line(&mut logs, &["restart failed; this process keeps serving"]).await;
    std::fs::remove_file(state.join(".env")).unwrap();
    let run = &update_history(&mut c).await[0];
    assert_eq!(run.phase, RunPhase::RolledBack, "{run:#?}");
    assert_eq!(run.reason.as_deref(), Some(reason.as_str()));
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!((health.version.as_str(), health.pid), (OLD, old.pid));
    assert_eq!(serving(&state), [old.pid]);
    assert_eq!(lock_holder(&state), old.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_fails_leaves_the_old_process_serving_and_says_so() {
    let fx = UpdateFixture::start().unwrap();
    let start = Gate::new(&fx.tmp.path().join("start.gate")).unwrap();
    fx.publish_broken_behind("3.0.0", &start).unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let old = moltd.first.clone();

    let mut c = client(&old).await;
    let update = c.send_request("update.run", json!({"tag": "3.0.0"})).await;
    // 3.0.0 is swapped in and its successor hangs at start: the previous
    // tree is made unusable before the successor dies.
    let starting = reached(&start).await;
    let scope = global.package_dir.parent().unwrap();
    let backup = std::fs::read_dir(scope)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(".molt-backup-"))
        .expect("the swap parked the previous tree");
    let gone = fx.tmp.path().join("previous-tree-moved-away");
    std::fs::rename(&backup, &gone).unwrap();
    drop(starting);

    let result: UpdateRunResult = c
        .response_within(&update, UPDATE_WAIT)
        .await
        .into_result()
        .unwrap();
    assert!(!result.ok, "{result:#?}");
    assert_eq!(result.result.reason.as_deref(), Some("restart-unhealthy"));
    let status = update_status(&mut c).await;
    let run = status.last_run.unwrap();
    assert_eq!(run.phase, RunPhase::Failed, "{run:#?}");
    let reason = run.reason.unwrap();
    assert!(
        reason.starts_with(
            "restart-unhealthy: successor exited before it was ready (exit status: 1)"
        ),
        "{reason}"
    );
    assert!(reason.contains("; rolling back failed: "), "{reason}");
    assert!(reason.contains("is gone"), "{reason}");
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(sentinel.stats.reason.as_deref(), Some("restart-unhealthy"));
    assert!(!sentinel.rolled_back, "{sentinel:#?}");
    assert!(
        sentinel
            .doctor_hint
            .as_deref()
            .is_some_and(|h| h.contains("rolling back failed")),
        "{sentinel:#?}"
    );
    // What is installed is the new version, and the old process serves
    // on over it: the one state the operator must act on, and is told.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(global.package_dir.join("package.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["version"], "3.0.0");
    assert!(!state.join("update-backup.json").exists());
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!((health.version.as_str(), health.pid), (OLD, old.pid));
    assert_eq!(serving(&state), [old.pid]);
    assert_eq!(lock_holder(&state), old.pid);
}
