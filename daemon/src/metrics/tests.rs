use super::*;
use handoff::Heir;

fn live() -> Live {
    Live {
        version: "1.2.3".to_owned(),
        started_at_ms: 1_700_000_000_500,
        connections: 3,
        kill_switch: true,
        update_available: Some(("1.3.0".to_owned(), "stable".to_owned())),
    }
}

/// The sample lines of `text` (no comments), as `name{labels} value`.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn a_scrape_has_every_metric_in_openmetrics_text() {
    let m = Metrics::default();
    m.request("health", "ok");
    m.request("health", "ok");
    m.request("config.patch", "CONFLICT");
    m.handed_off(0.2);
    m.restart_failed("successor-exited");
    m.update_run_ended("manual", "verified");
    m.update_step("install", 12.0);
    m.autoupdate_check("up-to-date");
    let text = m.encode(&live());
    let lines = samples(&text);
    for want in [
        r#"moltd_build_info{version="1.2.3"} 1"#,
        "moltd_start_time_seconds 1700000000.5",
        "moltd_generation 1.0",
        "moltd_connections 3.0",
        "moltd_kill_switch 1.0",
        "moltd_update_available 1.0",
        r#"moltd_update_target_info{version="1.3.0",channel="stable"} 1"#,
        r#"moltd_requests_total{method="health",outcome="ok"} 2"#,
        r#"moltd_requests_total{method="config.patch",outcome="CONFLICT"} 1"#,
        r#"moltd_handoffs_total{outcome="handed-off"} 1"#,
        r#"moltd_handoffs_total{outcome="failed"} 1"#,
        r#"moltd_restart_failures_total{reason="successor-exited"} 1"#,
        r#"moltd_update_runs_total{trigger="manual",outcome="verified"} 1"#,
        r#"moltd_autoupdate_checks_total{outcome="up-to-date"} 1"#,
        "moltd_handoff_gap_seconds_count 1",
        r#"moltd_handoff_gap_seconds_bucket{le="0.1"} 0"#,
        r#"moltd_handoff_gap_seconds_bucket{le="0.25"} 1"#,
        r#"moltd_handoff_gap_seconds_bucket{le="+Inf"} 1"#,
        r#"moltd_update_step_seconds_bucket{le="15.0",step="install"} 1"#,
        r#"moltd_update_step_seconds_sum{step="install"} 12.0"#,
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(text.contains("# TYPE moltd_requests counter"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn nothing_available_has_no_target_series() {
    let text = Metrics::default().encode(&Live::default());
    assert!(samples(&text).contains(&"moltd_update_available 0.0"));
    assert!(!text.contains("moltd_update_target_info{"), "{text}");
}

#[test]
fn a_successor_adds_its_predecessors_counts_and_the_predecessor_counts_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-handoff.json");
    let old = Metrics::default();
    old.request("health", "ok");
    old.handed_off(1.0);
    old.update_step("install", 2.0);
    handoff::hand_over(&old, &path, 100, Heir::Pid(200));
    old.request("health", "ok");
    assert_eq!(
        old.counted().requests.get(&["health", "ok"]),
        1,
        "frozen at the handoff: a scrape of the old process never shows more than the new one starts from"
    );

    // A process the file was not written for takes nothing and leaves it,
    // accepted or started on its own.
    let stranger = Metrics::default();
    handoff::take_over(&stranger, &path, 300, true);
    handoff::take_over(&stranger, &path, 200, false);
    assert_eq!(stranger.counted(), Counted::default());
    assert!(path.exists());

    let new = Metrics::default();
    new.request("health", "ok");
    handoff::take_over(&new, &path, 200, true);
    let counted = new.counted();
    assert_eq!(counted.requests.get(&["health", "ok"]), 2);
    assert_eq!(counted.handoffs.get(&["handed-off"]), 1);
    assert_eq!(counted.update_steps["install"].count, 1);
    assert_eq!(counted.predecessors, 1);
    assert!(samples(&new.encode(&Live::default())).contains(&"moltd_generation 2.0"));
    assert!(!path.exists(), "read once, then removed");

    // The next handoff carries the chain on.
    let path2 = dir.path().join("again.json");
    handoff::hand_over(&new, &path2, 200, Heir::Pid(201));
    let newest = Metrics::default();
    handoff::take_over(&newest, &path2, 201, true);
    assert_eq!(newest.counted().predecessors, 2);
    assert_eq!(newest.counted().requests.get(&["health", "ok"]), 2);
}

#[test]
fn under_a_supervisor_the_next_start_takes_recent_counts_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-handoff.json");
    let old = Metrics::default();
    old.request("update.run", "ok");
    old.handed_off(0.5);
    handoff::hand_over(&old, &path, 100, Heir::NextStart);

    // A process a predecessor accepted takes only counts for its pid.
    let accepted = Metrics::default();
    handoff::take_over(&accepted, &path, 200, true);
    assert_eq!(accepted.counted(), Counted::default());

    let next = Metrics::default();
    handoff::take_over(&next, &path, 200, false);
    let counted = next.counted();
    assert_eq!(counted.requests.get(&["update.run", "ok"]), 1);
    assert_eq!(counted.handoffs.get(&["handed-off"]), 1);
    assert_eq!(counted.predecessors, 1);
    assert!(!path.exists(), "read once, then removed");

    // Counts a stopped gateway left long ago are not carried on.
    handoff::hand_over(&next, &path, 200, Heir::NextStart);
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["at"] = serde_json::json!(crate::clock::unix_ms() - handoff::NEXT_START_WITHIN_MS - 1);
    std::fs::write(&path, doc.to_string()).unwrap();
    let much_later = Metrics::default();
    handoff::take_over(&much_later, &path, 300, false);
    assert_eq!(much_later.counted(), Counted::default());
}

#[test]
fn a_damaged_or_foreign_histogram_is_not_mixed_in() {
    let mut mine = Histo::default();
    mine.observe(GAP_BUCKETS, 0.3);
    let wrong_buckets = Histo {
        buckets: vec![1, 2],
        sum: 1.0,
        count: 3,
    };
    assert!(!mine.add(GAP_BUCKETS, &wrong_buckets));
    let mut inconsistent = mine.clone();
    inconsistent.count = 7;
    assert!(!mine.add(GAP_BUCKETS, &inconsistent));
    assert_eq!(mine.count, 1);
    let copy = mine.clone();
    assert!(mine.add(GAP_BUCKETS, &copy));
    assert_eq!(mine.count, 2);
}

#[test]
fn an_unreadable_handoff_file_starts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-handoff.json");
    std::fs::write(&path, "{not json").unwrap();
    let m = Metrics::default();
    handoff::take_over(&m, &path, 1, true);
    assert_eq!(m.counted(), Counted::default());
}
