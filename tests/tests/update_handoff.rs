//! The handoff after an update, at each of its exits, with the real moltd
//! installed by the real npm from a real registry: what the install tree,
//! the run, the sentinel, the undo record and `gateway.lock` say after it,
//! and which process serves.

use std::net::SocketAddr;

use molt_e2e::moltd::{Moltd, alive, lock_holder, serving};
use molt_e2e::restarts::{Probe, READY_WAIT, client};
use molt_e2e::tree::{same_tree, snapshot};
use molt_e2e::updates::{NEW, OLD, UpdateFixture, update_run, update_status};
use molt_e2e::{PackageManager, versions, write_moltd_that_claims};
use molt_protocol::method::HealthResult;
use molt_protocol::status::StatusResult;
use molt_protocol::update::{RunPhase, UpdateStatus};
use serde_json::json;

fn addr(moltd: &Moltd) -> SocketAddr {
    moltd
        .first
        .addr
        .parse()
        .expect("READY names a socket address")
}

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
    let probe = Probe::start(addr(&moltd));

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
