//! The auto-updater wired to an in-process gateway, with the registry
//! check and the update run injected: hints reach clients, status shows
//! the schedule while the driver runs, and the driver stops with the
//! gateway.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{TestGateway, WAIT};
use molt_daemon::autoupdate::{self, ApplyOutcome};
use molt_daemon::gateway::unix_ms;
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
    let driver = autoupdate::spawn(
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
