//! The auto-updater wired to an in-process gateway, with the registry
//! check and the update run injected: hints reach clients, status shows
//! the schedule while the driver runs, and the driver stops with the
//! gateway. And a corrupt `update-check.json` never stops the real moltd.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::moltd::{self, Moltd};
use common::{TestGateway, WAIT};
use molt_daemon::autoupdate::ApplyOutcome;
use molt_daemon::clock::unix_ms;
use molt_daemon::gateway::auto;
use molt_protocol::status::StatusResult;
use semver::Version;
use serde_json::json;

const DAY_MS: u64 = 24 * 3600 * 1000;

#[tokio::test]
async fn a_check_on_start_broadcasts_the_hint_and_status_shows_the_schedule() {
    let gw = TestGateway::start().await;
    let mut client = gw.client().await;
    let before: StatusResult = client
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        before.auto.next_check_at, None,
        "no driver, nothing scheduled"
    );

    let applies = Arc::new(AtomicU32::new(0));
    let counted = applies.clone();
    let driver = auto::spawn(
        &gw.gateway,
        || async { Ok(Version::new(99, 0, 0)) },
        move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { ApplyOutcome::Skipped("test".into()) }
        },
    )
    .expect("the crate version is semver");

    let hint = client.event("update.available").await;
    assert_eq!(
        hint,
        json!({
            "currentVersion": env!("CARGO_PKG_VERSION"),
            "latestVersion": "99.0.0",
            "channel": "stable",
        })
    );
    let status: StatusResult = client
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    let next_check = status.auto.next_check_at.expect("scheduled");
    assert!(
        next_check > unix_ms() + DAY_MS - 60_000,
        "daily: {next_check}"
    );
    assert_eq!(status.auto.next_apply_at, None, "auto-apply is off");
    assert_eq!(applies.load(Ordering::Relaxed), 0);

    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gw.dir.path().join("update-check.json")).unwrap())
            .unwrap();
    assert_eq!(saved["latest"]["version"], "99.0.0");
    assert_eq!(saved["lastNotifiedVersion"], "99.0.0");

    let gateway = gw.gateway.clone();
    gw.stop().await;
    tokio::time::timeout(WAIT, driver)
        .await
        .expect("the driver stops with the gateway")
        .unwrap();
    assert!(!gateway.auto().driving());
}

#[test]
fn a_corrupt_update_check_file_is_moved_aside_and_moltd_starts() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let path = dir.path().join("update-check.json");
    std::fs::write(&path, b"{\"version\": 1, \"installId\": ").unwrap();

    let mut running = moltd::start(dir.path(), &["--port", "0"]);
    // Stopped first: the log file is complete once the process has exited.
    Moltd::signal(running.first.pid, "TERM");
    running.child.wait().unwrap();
    let bad: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("update-check.json.bad-"))
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&bad[0])).unwrap(),
        b"{\"version\": 1, \"installId\": ",
        "kept for the operator"
    );
    let fresh: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(fresh["version"], 1);
    assert_eq!(fresh["installId"].as_str().unwrap().len(), 32);
    let log = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        log.contains("auto-update state") && log.contains("moved it aside"),
        "a clear log line: {log}"
    );
}
