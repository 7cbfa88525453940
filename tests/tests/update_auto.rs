//! The auto-updater end to end: a real moltd installed with npm from the
//! test registry updates itself with no operator action when
//! `update.auto.enabled` (delays shortened through config), and the
//! `OPENCLAW_NO_AUTO_UPDATE` kill switch, from the process env or set live
//! through `update.noAutoUpdate.set`, blocks it while hints go on.

use molt_e2e::PackageManager;
use molt_e2e::moltd::{Moltd, command, write_config};
use molt_e2e::prometheus::scrape;
use molt_e2e::restarts::{READY_WAIT, client, force_restart};
use molt_e2e::tree::{same_tree, snapshot};
use molt_e2e::updates::{NEW, OLD, UpdateFixture, log_line, update_history, update_status};
use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditListResult};
use molt_protocol::status::{EnvSource, StatusResult};
use molt_protocol::update::{RunPhase, RunTrigger};
use serde_json::{Value, json};

/// Auto-apply on, stable with no delay and no jitter.
fn auto_config() -> Value {
    json!({"update": {
        "checkOnStart": true,
        "auto": {"enabled": true, "stableDelayHours": 0, "stableJitterHours": 0},
    }})
}

#[tokio::test]
async fn auto_update_installs_and_verifies_without_an_operator() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, mut moltd) = fx.start_moltd(&global, auto_config()).unwrap();
    assert_eq!(moltd.first.version, OLD);

    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the auto-updater hands off");
    assert_eq!(successor.version, NEW);
    let status = update_status(&mut client(&successor).await).await;
    assert_eq!(status.running_version, NEW);
    let run = status.last_run.unwrap();
    assert_eq!(
        (run.trigger, run.phase),
        (RunTrigger::Auto, RunPhase::Verified)
    );
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.verified.unwrap().running_version, NEW);

    // The old process is gone: what it wrote is all there is.
    let exit = moltd.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let listed: AuditListResult = client(&successor)
        .await
        .request("audit.list", json!({}))
        .await
        .into_result()
        .unwrap();
    let [entry] = listed.entries.as_slice() else {
        panic!("one change: {listed:#?}");
    };
    assert_eq!(
        (entry.action, &entry.actor),
        (AuditAction::UpdateRun, &Actor::AutoUpdater)
    );
    assert!(entry.outcome.ok, "{entry:#?}");
    assert_eq!(entry.run_id.as_ref(), Some(&run.run_id));
    assert_eq!(entry.params["tag"], NEW);
    // The check that found it and the run, counted across the handoff.
    let samples = scrape(successor.addr.parse().unwrap());
    for sample in [
        "moltd_generation 2.0",
        "moltd_autoupdate_checks_total{outcome=\"update-available\"} 1",
        "moltd_update_runs_total{trigger=\"auto\",outcome=\"verified\"} 1",
    ] {
        assert!(
            samples.iter().any(|s| s == sample),
            "{sample}: {samples:#?}"
        );
    }
}

#[tokio::test]
async fn the_kill_switch_in_the_process_env_blocks_it_and_hints_go_on() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let state = fx.tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    write_config(&state, auto_config());
    let mut cmd = command(&global.bin, &state, &["--port", "0"]);
    cmd.envs(fx.moltd_env(PackageManager::Npm).unwrap())
        .env("OPENCLAW_NO_AUTO_UPDATE", "1");
    let moltd = Moltd::spawn(cmd);
    let mut c = client(&moltd.first).await;

    let line = log_line(&mut c, &["auto-update", "blocked", NEW]).await;
    assert!(line.contains("OPENCLAW_NO_AUTO_UPDATE"), "{line}");
    let status: StatusResult = c.request("status", json!({})).await.into_result().unwrap();
    assert_eq!(status.auto.blocked_by.as_deref(), Some("env"));
    assert_eq!(status.auto.source, Some(EnvSource::ProcessEnv));
    assert_eq!(status.pid, moltd.first.pid);
    let available = status.update_available.expect("the hint still shows");
    assert_eq!(available.latest_version, NEW);
    let runs = update_history(&mut c).await;
    assert!(runs.is_empty(), "{:#?}", runs);
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();

    // The method cannot undo a process-env switch, and says why.
    let err = c
        .request("update.noAutoUpdate.set", json!({"enabled": false}))
        .await
        .into_result::<Value>()
        .unwrap_err();
    assert!(err.message.contains("process environment"), "{err}");
}

#[tokio::test]
async fn the_switch_toggled_live_takes_effect_and_persists_across_a_restart() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let state = fx.tmp.path().join("state-npm");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(".env"), "# kept\nOPENCLAW_NO_AUTO_UPDATE=1\n").unwrap();
    // No cooldown, so the operator's restart below follows the update's.
    let mut config = auto_config();
    config["gateway"] = json!({"reload": {"cooldownMs": 0}});
    let (_state, mut moltd) = fx.start_moltd(&global, config).unwrap();
    let mut c = client(&moltd.first).await;
    log_line(&mut c, &["auto-update", "blocked", NEW]).await;

    // Lifted live: the update applies with no restart of moltd first.
    let lifted: Value = c
        .request("update.noAutoUpdate.set", json!({"enabled": false}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(lifted["enabled"], json!(false));
    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the auto-updater hands off");
    assert_eq!(successor.version, NEW);
    let env_file = std::fs::read_to_string(state.join(".env")).unwrap();
    assert!(
        env_file.contains("# kept") && !env_file.contains("OPENCLAW_NO_AUTO_UPDATE=1"),
        "{env_file}"
    );

    // Set live again: it holds across a restart, from the .env file.
    let mut c = client(&successor).await;
    c.request("update.noAutoUpdate.set", json!({"enabled": true}))
        .await
        .into_result::<Value>()
        .unwrap();
    force_restart(&mut c).await;
    let next = moltd.next_ready(READY_WAIT).expect("restarted");
    let status: StatusResult = client(&next)
        .await
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(status.auto.blocked_by.as_deref(), Some("env"));
    assert_eq!(status.auto.source, Some(EnvSource::EnvFile));
}
