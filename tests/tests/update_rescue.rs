//! The rescue step end to end with a real npm install: a version that
//! verified after an update and then keeps crashing is rolled back by the
//! version before it. The test plays the supervisor: it starts moltd again
//! after each exit and runs the rescue binary the way systemd's
//! `ExecStopPost=` does (tests/tests/systemd.rs does it under systemd).

use std::path::Path;
use std::process::Command;

use molt_e2e::PackageManager;
use molt_e2e::moltd::Moltd;
use molt_e2e::prometheus::scrape;
use molt_e2e::restarts::client;
use molt_e2e::tree::{same_tree, snapshot};
use molt_e2e::updates::{NEW, OLD, UpdateFixture, update_history, update_run, update_status};
use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditListResult};
use molt_protocol::status::StatusResult;
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::{Value, json};

/// A supervisor moltd cannot hand a process to: it restarts by exiting.
const SUPERVISED: &[&str] = &["--supervisor", "runit"];

/// Runs `<state>/rescue/moltd rescue` with the variables systemd gives
/// `ExecStopPost=` after a crash (SIGKILL).
fn rescue_after_crash(state: &Path) -> String {
    let out = Command::new(state.join("rescue/moltd"))
        .args(["rescue", "--state-dir"])
        .arg(state)
        .env("SERVICE_RESULT", "signal")
        .env("EXIT_CODE", "killed")
        .env("EXIT_STATUS", "KILL")
        .env_remove("OPENCLAW_STATE_DIR")
        .output()
        .expect("the rescue binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_crash_loops_after_verifying_is_rolled_back_by_the_previous_one() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let (state, mut old) = fx.start_moltd_with(&global, json!({}), SUPERVISED).unwrap();

    let mut c = client(&old.first).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    let run_id = result.run_id.clone();
    assert_eq!(
        old.child.wait().unwrap().code(),
        Some(0),
        "restarts by exiting"
    );
    // The version that worked left itself behind for the rescue.
    assert_eq!(
        version_of(&state.join("rescue/moltd")),
        format!("moltd {OLD}")
    );

    // The supervisor starts the new version, which verifies, then dies;
    // three times, each followed by the rescue step.
    let mut verdicts = Vec::new();
    for round in 0..3 {
        let new = fx.restart_moltd(&global, &state, SUPERVISED).unwrap();
        assert_eq!(new.first.version, NEW, "round {round}");
        if round == 0 {
            let mut c = client(&new.first).await;
            let status = update_status(&mut c).await;
            assert_eq!(status.sentinel.unwrap().status, UpdateStatus::Ok);
            assert_eq!(update_history(&mut c).await[0].phase, RunPhase::Verified);
            // The supervisor started it: the old process's counts went on.
            let samples = scrape(new.first.addr.parse().unwrap());
            for sample in [
                "moltd_generation 2.0",
                "moltd_handoffs_total{outcome=\"handed-off\"} 1",
                "moltd_requests_total{method=\"update.run\",outcome=\"ok\"} 1",
                "moltd_update_runs_total{trigger=\"manual\",outcome=\"verified\"} 1",
            ] {
                assert!(
                    samples.iter().any(|s| s == sample),
                    "{sample}: {samples:#?}"
                );
            }
        }
        Moltd::signal(new.first.pid, "KILL");
        drop(new);
        verdicts.push(rescue_after_crash(&state));
    }
    assert!(
        verdicts[0].contains("Counted { recent: 1 }"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[1].contains("Counted { recent: 2 }"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[2].contains(&format!("{NEW} crash-looped; rolled back to {OLD}")),
        "{verdicts:?}"
    );

    // The previous install is back, whole, and the rescue disarmed.
    assert_eq!(version_of(&global.bin), format!("moltd {OLD}"));
    let after = snapshot(&global.prefix).unwrap();
    let kept_new_tree = after
        .keys()
        .filter(|path| !before.contains_key(*path))
        .all(|path| path.contains(".molt-"));
    assert!(kept_new_tree, "only molt's own backups are new");
    let live: std::collections::BTreeMap<_, _> = after
        .into_iter()
        .filter(|(path, _)| !path.contains(".molt-"))
        .collect();
    same_tree(&before, &live).unwrap();
    assert!(!state.join("rescue/rescue.json").exists());

    // The supervisor's next start runs the previous version, which says
    // what happened.
    let restored = fx.restart_moltd(&global, &state, SUPERVISED).unwrap();
    assert_eq!(restored.first.version, OLD);
    let mut c = client(&restored.first).await;
    let status: StatusResult = c.request("status", json!({})).await.into_result().unwrap();
    let latest = status.latest_run.expect("the run is reported");
    assert_eq!(latest.run_id, run_id);
    assert_eq!(latest.phase, RunPhase::RolledBack);
    let reason = latest.reason.unwrap();
    assert!(
        reason.starts_with(&format!("crash-loop: {NEW} failed 3 times within 10 min")),
        "{reason}"
    );
    let sentinel = update_status(&mut c).await.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(sentinel.stats.reason.as_deref(), Some("crash-loop"));
    assert!(sentinel.rolled_back);
    assert_eq!(sentinel.verified.unwrap().running_version, OLD);
    // The rollback is in the audit trail, by the rescue step, and counted.
    let listed: AuditListResult = c
        .request("audit.list", json!({}))
        .await
        .into_result()
        .unwrap();
    let rescue = &listed.entries[0];
    assert_eq!(rescue.action, AuditAction::Rescue, "{listed:#?}");
    assert_eq!(rescue.actor, Actor::Rescue);
    assert!(rescue.outcome.ok, "{rescue:#?}");
    assert_eq!(rescue.run_id.as_ref(), Some(&run_id));
    assert_eq!(
        rescue.params,
        json!({"from": NEW, "to": OLD, "failures": 3})
    );
    assert_eq!(listed.entries[1].action, AuditAction::UpdateRun);
    let samples = scrape(restored.first.addr.parse().unwrap());
    let rolled_back = "moltd_update_runs_total{trigger=\"manual\",outcome=\"rolled-back\"} 1";
    assert!(samples.iter().any(|s| s == rolled_back), "{samples:#?}");
    // The auto-updater will not install it again by itself.
    let check: Value =
        serde_json::from_slice(&std::fs::read(state.join("update-check.json")).unwrap()).unwrap();
    assert_eq!(check["attempts"][NEW]["outcome"], "crash-looped");
}
