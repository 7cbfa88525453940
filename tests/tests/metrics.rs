//! Metrics end to end: a real Prometheus scrapes a real moltd through a
//! failed update and an update that hands off, and its counters go on
//! across the handoff; the metrics answer only the gateway's token.

use std::net::SocketAddr;
use std::time::Duration;

use molt_e2e::PackageManager;
use molt_e2e::client::TOKEN;
use molt_e2e::http;
use molt_e2e::prometheus::{self, Prometheus};
use molt_e2e::restarts::{READY_WAIT, client};
use molt_e2e::updates::{NEW, OLD, UpdateFixture, update_run};
use serde_json::json;

fn scrape(addr: SocketAddr, path: &str, authorization: Option<&str>) -> http::Response {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    http::request(addr, "GET", path, &headers, None, Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn metrics_answer_the_gateway_token_only_and_share_the_websocket_port() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let addr: SocketAddr = moltd.first.addr.parse().unwrap();

    for authorization in [None, Some("Bearer wrong-token"), Some(TOKEN)] {
        let refused = scrape(addr, "/metrics", authorization);
        assert_eq!(refused.status, 401, "{authorization:?}: {}", refused.text());
        assert_eq!(
            refused.header("WWW-Authenticate"),
            Some("Bearer realm=\"moltd\"")
        );
        assert!(!refused.text().contains("moltd_"), "{}", refused.text());
    }
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/metrics", "/api/diagnostics/prometheus"] {
        let ok = scrape(addr, path, Some(&bearer));
        assert_eq!(ok.status, 200, "{path}: {}", ok.text());
        assert!(
            ok.header("Content-Type")
                .is_some_and(|t| t.starts_with("application/openmetrics-text")),
            "{:?}",
            ok.headers
        );
        let text = ok.text();
        assert!(
            text.contains(&format!("moltd_build_info{{version=\"{OLD}\"}} 1")),
            "{text}"
        );
        assert!(text.contains("moltd_generation 1.0"), "{text}");
    }
    // The WebSocket on the same port is untouched, and counted.
    let mut c = client(&moltd.first).await;
    let _: serde_json::Value = c.request("health", json!({})).await.into_result().unwrap();
    let text = scrape(addr, "/metrics", Some(&bearer)).text();
    assert!(
        text.contains("moltd_requests_total{method=\"health\",outcome=\"ok\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_follows_moltd_through_a_failed_update_and_a_handoff() {
    let binary = match prometheus::binary() {
        Ok(binary) => binary,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (_state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let addr: SocketAddr = moltd.first.addr.parse().unwrap();
    let token_file = fx.tmp.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let prom = Prometheus::start(&binary, &fx.tmp.path().join("prom"), addr, &token_file).unwrap();
    prom.wait_for(&format!("moltd_build_info{{version=\"{OLD}\"}}"), |v| {
        v == 1.0
    });
    assert_eq!(prom.wait_for("up{job=\"moltd\"}", |v| v == 1.0), 1.0);

    let mut c = client(&moltd.first).await;
    for _ in 0..5 {
        let _: serde_json::Value = c.request("health", json!({})).await.into_result().unwrap();
    }
    let health = "moltd_requests_total{method=\"health\",outcome=\"ok\"}";
    let before = prom.wait_for(health, |v| v >= 5.0);

    // A version that dies at start: the old process rolls back and serves on.
    let failed = update_run(&mut c, json!({"tag": "3.0.0"})).await.unwrap();
    assert!(!failed.ok, "{failed:#?}");
    prom.wait_for("sum(moltd_handoffs_total{outcome=\"failed\"})", |v| {
        v == 1.0
    });
    prom.wait_for("sum(moltd_restart_failures_total)", |v| v == 1.0);
    prom.wait_for(
        "moltd_update_runs_total{trigger=\"manual\",outcome=\"rolled-back\"}",
        |v| v == 1.0,
    );
    prom.wait_for("moltd_update_step_seconds_count{step=\"install\"}", |v| {
        v >= 1.0
    });

    // The update that hands off.
    let updated = update_run(&mut c, json!({})).await.unwrap();
    assert!(updated.ok, "{updated:#?}");
    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the new version starts");
    assert_eq!(successor.version, NEW);
    prom.wait_for(&format!("moltd_build_info{{version=\"{NEW}\"}}"), |v| {
        v == 1.0
    });
    prom.wait_for("moltd_generation", |v| v == 2.0);
    prom.wait_for("moltd_handoffs_total{outcome=\"handed-off\"}", |v| v == 1.0);
    // The failure counted by the old process is still there in the new one.
    prom.wait_for("sum(moltd_restart_failures_total)", |v| v == 1.0);
    prom.wait_for(
        "moltd_update_runs_total{trigger=\"manual\",outcome=\"verified\"}",
        |v| v == 1.0,
    );

    let mut c = client(&successor).await;
    let _: serde_json::Value = c.request("health", json!({})).await.into_result().unwrap();
    let after = prom.wait_for(health, |v| v > before);
    assert!(after > before);
    // Over every scrape of both processes, the counter never went down.
    let resets = prom.wait_for(&format!("resets({health}[10m])"), |_| true);
    assert_eq!(resets, 0.0, "moltd_requests_total reset across the handoff");
    let resets = prom.wait_for("sum(resets(moltd_requests_total[10m]))", |_| true);
    assert_eq!(resets, 0.0);
}
