//! `update.run` end to end: a real moltd installed with the real npm, pnpm
//! and bun from a real registry updates itself, hands off without
//! refusing a connection, and proves the new version runs; failures leave
//! the old version serving and the install tree as it was.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use molt_e2e::changelogs::entry_line;
use molt_e2e::moltd::{Moltd, alive};
use molt_e2e::restarts::{Probe, READY_WAIT, client};
use molt_e2e::tree::{no_stage_paths, same_tree, snapshot};
use molt_e2e::updates::{
    NEW, OLD, UpdateFixture, serving_client, step_names, update_history, update_run, update_status,
};
use molt_e2e::{PackageManager, dist_tag_add};
use molt_protocol::changelog::Changelog;
use molt_protocol::error::UnavailableReason;
use molt_protocol::method::HealthResult;
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::json;

fn addr(moltd: &Moltd) -> SocketAddr {
    moltd
        .first
        .addr
        .parse()
        .expect("READY names a socket address")
}

/// Waits for `pid` to be gone: the old process must not outlive the handoff.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + READY_WAIT;
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still runs after the handoff"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The versions of a changelog's entries, in order, each with its own line.
fn entries(changelog: &Changelog) -> Vec<&str> {
    for entry in &changelog.entries {
        assert!(
            entry.text.contains(&entry_line(&entry.version)),
            "{entry:#?}"
        );
    }
    changelog
        .entries
        .iter()
        .map(|e| e.version.as_str())
        .collect()
}

async fn updates_and_proves_the_new_version(manager: PackageManager) {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(manager, OLD).unwrap();
    let (_state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    assert_eq!(moltd.first.version, OLD);
    let old_pid = moltd.first.pid;
    let probe = Probe::start(addr(&moltd));

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({"note": "nightly"}))
        .await
        .unwrap();
    assert!(result.ok, "{manager}: {result:#?}");
    assert_eq!(result.result.status, UpdateStatus::Ok);
    assert_eq!(result.result.after.version.as_deref(), Some(NEW));
    let names = step_names(&result);
    assert_eq!(names, ["resolve", "install", "verify", "swap"], "{manager}");
    // The new tree's changelog: after OLD, up to and including NEW.
    let brought = ["2.0.0", "2.0.0-rc.1", "1.1.0"];
    assert_eq!((OLD, NEW), ("1.0.0", "2.0.0"));
    let changelog = result.result.changelog.as_ref().expect("the changelog");
    assert_eq!(entries(changelog), brought, "{manager}: {changelog:#?}");
    assert_eq!(changelog.problem, None, "{manager}");
    assert!(
        changelog.entries[0].protocol,
        "2.0.0 calls out the protocol"
    );

    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the new version starts");
    assert_eq!(successor.version, NEW);
    assert_ne!(successor.pid, old_pid);
    wait_gone(old_pid);
    let (connected, refused) = probe.finish().counts();
    assert_eq!(
        refused, 0,
        "{manager}: refused connections during the update"
    );
    assert!(connected > 0);

    let mut c = client(&successor).await;
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!((health.version.as_str(), health.pid), (NEW, successor.pid));
    let status = update_status(&mut c).await;
    assert_eq!(status.running_version, NEW);
    let sentinel = status.sentinel.expect("the sentinel is kept");
    assert_eq!(sentinel.status, UpdateStatus::Ok);
    assert_eq!(sentinel.message.as_deref(), Some("nightly"));
    assert_eq!(sentinel.run_id.as_ref(), Some(&result.run_id));
    let verified = sentinel
        .verified
        .expect("the successor verified the sentinel");
    assert_eq!(
        (verified.running_version.as_str(), verified.pid),
        (NEW, successor.pid)
    );
    assert_eq!(verified.mismatch, None);
    let run = status.last_run.expect("the run is recorded");
    assert_eq!(
        run.changelog.as_ref(),
        result.result.changelog.as_ref(),
        "{manager}: the verified record keeps what the answer said"
    );
    assert_eq!((run.run_id, run.phase), (result.run_id, RunPhase::Verified));
    no_stage_paths(&global.prefix).unwrap();
}

#[tokio::test]
async fn npm_update_hands_off_to_the_new_version() {
    updates_and_proves_the_new_version(PackageManager::Npm).await;
}

#[tokio::test]
async fn pnpm_update_hands_off_to_the_new_version() {
    updates_and_proves_the_new_version(PackageManager::Pnpm).await;
}

#[tokio::test]
async fn bun_update_hands_off_to_the_new_version() {
    updates_and_proves_the_new_version(PackageManager::Bun).await;
}

#[tokio::test]
async fn a_tag_downgrades_and_beta_follows_the_fallback_rule() {
    let fx = UpdateFixture::start().unwrap();
    // beta older than latest: the beta channel falls back to latest.
    let fake = fx.tmp.path().join("fake/moltd");
    molt_e2e::write_fake_moltd(&fake, "1.5.0-beta.1").unwrap();
    fx.publish_binary(&fake, "1.5.0-beta.1", Some("beta"))
        .unwrap();
    let global = fx.install(PackageManager::Npm, NEW).unwrap();
    let (_state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let mut c = client(&moltd.first).await;

    let beta = json!({"channel": "beta", "dryRun": true});
    let plan = update_run(&mut c, beta.clone()).await.unwrap();
    assert_eq!(plan.result.status, UpdateStatus::Skipped);
    assert_eq!(plan.result.after.version.as_deref(), Some(NEW), "{plan:#?}");
    assert_eq!(plan.result.reason.as_deref(), Some("up-to-date"));

    // A newer beta wins; a dry run changes nothing.
    molt_e2e::write_fake_moltd(&fake, "2.1.0-beta.1").unwrap();
    fx.publish_binary(&fake, "2.1.0-beta.1", Some("beta"))
        .unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let plan = update_run(&mut c, beta).await.unwrap();
    assert_eq!(plan.result.after.version.as_deref(), Some("2.1.0-beta.1"));
    assert!(plan.result.reason.unwrap().starts_with("dry-run"));
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();

    // A dist-tag moved back to the old version: latest follows it.
    dist_tag_add(
        &fx.registry,
        &format!("{}@{OLD}", molt_e2e::DEFAULT_PACKAGE),
        "lts",
    )
    .unwrap();
    let plan = update_run(&mut c, json!({"tag": "lts", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(plan.result.after.version.as_deref(), Some(OLD));

    // Dry runs leave no record.
    let runs = update_history(&mut c).await;
    assert!(runs.is_empty(), "{:#?}", runs);

    let result = update_run(&mut c, json!({"tag": OLD})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the old version starts");
    assert_eq!(successor.version, OLD);
    let status = update_status(&mut client(&successor).await).await;
    assert_eq!(status.running_version, OLD);
    assert_eq!(status.last_run.unwrap().phase, RunPhase::Verified);
}

#[tokio::test]
async fn a_failing_registry_or_tag_changes_nothing() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    // A registry nobody listens on.
    let (_held, closed) = molt_e2e::ports::refusing_addr();
    let dead = format!("http://{closed}/");
    let state = fx.tmp.path().join("state-down");
    std::fs::create_dir_all(&state).unwrap();
    molt_e2e::moltd::write_config(&state, json!({}));
    let mut cmd = molt_e2e::moltd::command(&global.bin, &state, &["--port", "0"]);
    cmd.envs(fx.moltd_env(PackageManager::Npm).unwrap())
        .env("NPM_CONFIG_REGISTRY", &dead);
    let npmrc = fx.tmp.path().join("down.npmrc");
    std::fs::write(&npmrc, format!("registry={dead}\n")).unwrap();
    cmd.env("NPM_CONFIG_USERCONFIG", &npmrc);
    let moltd = Moltd::spawn(cmd);
    let before = snapshot(&global.prefix).unwrap();

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(!result.ok);
    assert_eq!(result.result.status, UpdateStatus::Error);
    let reason = result.result.reason.clone().unwrap();
    assert!(reason.starts_with("resolve-failed"), "{reason}");
    assert_eq!(result.restart, None);
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();
    let status = update_status(&mut c).await;
    assert_eq!(status.running_version, OLD);
    assert_eq!(status.last_run.unwrap().phase, RunPhase::Failed);
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(health.pid, moltd.first.pid, "no restart happened");

    // Bad input is refused before any run exists.
    for bad in [
        json!({"tag": "1.0.0; rm -rf /"}),
        json!({"timeoutMs": 5}),
        json!({"tag": ""}),
    ] {
        let err = update_run(&mut c, bad.clone()).await.unwrap_err();
        assert_eq!(
            err.code,
            molt_protocol::error::ErrorCode::InvalidRequest,
            "{bad}: {err}"
        );
    }
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();
}

#[tokio::test]
async fn an_unpublished_version_is_an_error_and_changes_nothing() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({"tag": "9.9.9"})).await.unwrap();
    assert_eq!(result.result.status, UpdateStatus::Error);
    let reason = result.result.reason.unwrap();
    assert!(reason.contains("9.9.9"), "{reason}");
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();
}

#[tokio::test]
async fn a_gateway_that_may_not_restart_refuses_before_changing_anything() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let config = json!({"commands": {"restart": false}});
    let (_state, moltd) = fx.start_moltd(&global, config).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert_eq!(result.result.status, UpdateStatus::Skipped, "{result:#?}");
    let reason = result.result.reason.unwrap();
    assert!(reason.starts_with("restart-unavailable"), "{reason}");
    assert!(result.result.steps.is_empty());
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();
}

#[tokio::test]
async fn a_version_that_dies_at_start_is_rolled_back() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let before = snapshot(&global.prefix).unwrap();
    let probe = Probe::start(addr(&moltd));

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({"tag": "3.0.0"})).await.unwrap();
    assert!(!result.ok, "{result:#?}");
    assert_eq!(result.result.status, UpdateStatus::Error);
    assert_eq!(result.result.reason.as_deref(), Some("restart-unhealthy"));
    let (_, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "the old process kept serving");

    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        (health.version.as_str(), health.pid),
        (OLD, moltd.first.pid)
    );
    let status = update_status(&mut c).await;
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(sentinel.stats.reason.as_deref(), Some("restart-unhealthy"));
    assert!(sentinel.rolled_back);
    let run = status.last_run.unwrap();
    assert_eq!(run.phase, RunPhase::RolledBack);
    // Rolled back: 3.0.0's changes are not in effect, so none are shown.
    assert_eq!((&result.result.changelog, &run.changelog), (&None, &None));
    same_tree(&before, &snapshot(&global.prefix).unwrap()).unwrap();

    // The install is whole again: the next update goes through.
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
}

#[tokio::test]
async fn ten_concurrent_runs_install_once() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(client(&moltd.first).await);
    }
    let answers = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| update_run(c, json!({"note": "race"}))),
    )
    .await;
    let (done, busy): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    assert_eq!(done.len(), 1, "exactly one run: {done:#?}");
    let winner = done.into_iter().next().unwrap().unwrap();
    assert!(winner.ok, "{winner:#?}");
    for err in busy.into_iter().map(Result::unwrap_err) {
        assert_eq!(
            err.unavailable_reason(),
            Some(UnavailableReason::UpdateInProgress),
            "{err}"
        );
        let details = err.details.unwrap();
        assert_eq!(details["runId"], json!(winner.run_id));
    }
    let successor = moltd.next_ready(READY_WAIT).unwrap();
    let mut c = serving_client(&successor).await;
    let runs = update_history(&mut c).await;
    assert_eq!(runs.len(), 1, "{:#?}", runs);
}

/// The processes of the install step still running in `stage` (its
/// working directory).
fn step_processes(stage: &Path) -> Vec<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| pid > 1 && pid != own)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .as_deref()
                == Some(stage)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_install_is_resolved_at_the_next_start() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let lib = global.prefix.join("lib");
    let mut c = client(&moltd.first).await;
    let run = tokio::spawn(async move { update_run(&mut c, json!({})).await });

    // The stage exists from just before the install until after it; the
    // install step runs in it. Killed while npm runs, moltd cannot have
    // swapped anything: the swap comes after npm exits.
    let deadline = Instant::now() + READY_WAIT;
    let (stage, installing) = loop {
        let found = std::fs::read_dir(&lib)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(".molt-stage-"));
        if let Some(stage) = found {
            let installing = step_processes(&stage.path());
            if !installing.is_empty() {
                break (stage.path(), installing);
            }
        }
        assert!(Instant::now() < deadline, "no install started");
        std::thread::sleep(Duration::from_millis(2));
    };
    // What a crash of the whole service does: moltd and its step die.
    Moltd::signal(moltd.first.pid, "KILL");
    for pid in installing.into_iter().chain(step_processes(&stage)) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    // Its connection died with moltd; the answer never comes.
    run.abort();
    let _ = run.await;
    drop(moltd);

    let mut cmd = molt_e2e::moltd::command(&global.bin, &state, &["--port", "0"]);
    cmd.envs(fx.moltd_env(PackageManager::Npm).unwrap());
    let restarted = Moltd::spawn(cmd);
    assert_eq!(restarted.first.version, OLD, "nothing was swapped");
    // Removing a leftover tree waits for the first connection (or a
    // minute of serving): the port answers first.
    assert!(stage.exists(), "the stage went before moltd served");
    let mut c = client(&restarted.first).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stage.exists() {
        assert!(Instant::now() < deadline, "the leftover stage stays");
        std::thread::sleep(Duration::from_millis(2));
    }
    let runs = update_history(&mut c).await;
    let run = &runs[0];
    assert_eq!(run.phase, RunPhase::Failed, "{run:#?}");
    assert!(
        run.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("owner-died")),
        "{run:#?}"
    );
    // Whole, never mixed: the manifest and the binary agree, no stage left.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            lib.join("node_modules")
                .join(molt_e2e::DEFAULT_PACKAGE)
                .join("package.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["version"], json!(OLD));
    no_stage_paths(&global.prefix).unwrap();
    // The lease of the dead run does not block the next update.
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
}
