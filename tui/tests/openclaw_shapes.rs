//! What the console reads from real OpenClaw gateways. The fixtures in
//! `fixtures/openclaw/` were captured from `openclaw gateway run` of the
//! npm package at 2026.4.26, 2026.9.5 and 2026.9.6 (home paths replaced).

mod openclaw_fixtures;

use molt_console::peer::{
    Claim, ClaimSource, Facts, Hello, KillSwitch, Live, Outcome, Product, RestartPlan, RunAnswer,
    RunChanged, UpdateApi, UpdateReport, Verdict, verdict,
};
use molt_protocol::ids::RunId;
use openclaw_fixtures::fixture;
use serde_json::json;

#[test]
fn hello_ok_of_both_generations() {
    let old = Hello::from_payload(fixture("2026.4.26-hello-ok")).unwrap();
    assert_eq!(old.product(), Product::OpenClaw);
    assert_eq!(old.update_api(), UpdateApi::Sentinel);
    assert_eq!(old.protocol, Some(3));
    assert_eq!(old.server.version.as_deref(), Some("2026.4.26"));
    assert_eq!(
        (old.server.build_id.as_ref(), old.server.boot_id.as_ref()),
        (None, None)
    );
    assert_eq!(old.scopes, ["operator.read", "operator.admin"]);
    assert!(old.features.serves("update.run") && !old.features.serves("update.history"));
    assert!(!old.features.sends("logs.line"));

    let new = Hello::from_payload(fixture("2026.9.6-hello-ok")).unwrap();
    assert_eq!(new.product(), Product::OpenClaw);
    assert_eq!(new.update_api(), UpdateApi::Runs);
    assert_eq!(new.protocol, Some(4));
    assert_eq!(
        new.server.build_id.as_deref(),
        Some("2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z")
    );
    assert_eq!(
        new.server.boot_id.as_deref(),
        Some("d04d1335-9ec9-4405-88ff-65f26ab9e5ff")
    );
    for method in [
        "update.hold",
        "update.runs.get",
        "update.runs.list",
        "config.patch",
    ] {
        assert!(new.features.serves(method), "{method}");
    }
    assert!(new.features.sends("update.run.changed"));
    assert_eq!(new.tick_interval_ms, Some(30_000));
}

#[test]
fn status_facts_of_both_generations() {
    let old = Hello::from_payload(fixture("2026.4.26-hello-ok")).unwrap();
    let facts = Facts::read(&old, Some(&fixture("2026.4.26-status")));
    assert_eq!(facts.version.as_deref(), Some("2026.4.26"));
    assert_eq!(facts.runtime_version.as_deref(), Some("2026.4.26"));
    assert_eq!(facts.pid, None, "2026.4.26 reports no pid");
    assert_eq!(facts.uptime_ms, Some(15_481), "from the hello-ok snapshot");
    assert_eq!(facts.state_dir.as_deref(), Some("/home/op/.openclaw"));
    let available = facts.update_available.as_ref().unwrap();
    assert_eq!(
        (available.current.as_deref(), available.latest.as_str()),
        (Some("2026.4.26"), "2026.9.6")
    );
    assert_eq!(facts.auto.kill_switch, KillSwitch::NotReported);
    assert_eq!(
        (facts.restart, facts.pending_work, facts.install),
        (None, None, None)
    );

    let new = Hello::from_payload(fixture("2026.9.6-hello-ok")).unwrap();
    let facts = Facts::read(&new, Some(&fixture("2026.9.6-status")));
    assert_eq!(facts.version.as_deref(), Some("2026.9.6"));
    assert_eq!(facts.pid, Some(5303));
    assert_eq!(
        facts.install.as_ref().map(|i| i.kind.as_str()),
        Some("package")
    );
    assert!(facts.install.as_ref().unwrap().is_package());
    assert_eq!(
        (facts.auto.enabled, facts.auto.channel.as_deref()),
        (Some(false), Some("stable"))
    );
    assert_eq!(
        facts.boot_id.as_deref(),
        Some("d04d1335-9ec9-4405-88ff-65f26ab9e5ff")
    );
}

#[test]
fn a_renamed_or_mistyped_field_is_unknown_never_an_error() {
    let hello = Hello::from_payload(json!({
        "type": "hello-ok",
        "protocol": 5,
        "server": {"version": 7, "connectionId": "renamed"},
        "snapshot": {"pid": "not a number", "uptimeMs": 1500.0}
    }))
    .unwrap();
    assert_eq!(hello.server.version, None);
    assert_eq!(hello.server.conn_id, None);
    // Nothing advertised: nothing hidden, moltd's update protocol assumed.
    assert!(hello.features.serves("update.history"));
    assert_eq!(hello.update_api(), UpdateApi::Molt);
    let facts = Facts::read(
        &hello,
        Some(&json!({"version": ["x"], "runtimeVersion": "9.9.9"})),
    );
    assert_eq!(facts.pid, None);
    assert_eq!(facts.uptime_ms, Some(1500));
    assert_eq!(facts.version.as_deref(), Some("9.9.9"));

    assert!(Hello::from_payload(json!("hello")).is_err());
    assert!(Hello::from_payload(json!({"type": "hello-not-ok"})).is_err());
    assert!(UpdateReport::from_value(&json!(null)).is_err());
    assert_eq!(
        UpdateReport::from_value(&json!({"sentinel": {"kind": "update"}, "lastRun": 3})).unwrap(),
        UpdateReport::default()
    );
}

#[test]
fn update_run_answers_of_each_generation() {
    let old = RunAnswer::from_value(&fixture("2026.4.26-update-run")).unwrap();
    assert_eq!(old.outcome, Outcome::Succeeded);
    assert_eq!(old.after.as_deref(), Some("2026.9.6"));
    let steps: Vec<_> = old
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.failed))
        .collect();
    assert_eq!(
        steps,
        [("global update", false), ("global install swap", false)]
    );
    // OpenClaw's restart mode is none of moltd's strategies: shown as given.
    let restart = old.restart.as_ref().expect("the restart it scheduled");
    assert_eq!(
        restart,
        &RestartPlan {
            pid: Some(19159),
            mode: Some("emit".into()),
            delay_ms: Some(2000),
            reason: Some("update.run".into()),
        }
    );
    assert_eq!(restart.describe(), "emit in 2000 ms (update.run)");
    assert!(!old.handed_off());

    let started = RunAnswer::from_value(&fixture("2026.9.6-update-run-handoff-started")).unwrap();
    assert!(started.handed_off());
    assert_eq!(
        started.run_id,
        Some(RunId::from("97f96331-749d-4ec2-bc1a-8d846fd9ee45"))
    );
    assert_eq!(
        started.reason.as_deref(),
        Some("managed-service-handoff-started")
    );
    assert_eq!(started.handoff.as_ref().and_then(|h| h.pid), Some(10408));

    let refused =
        RunAnswer::from_value(&fixture("2026.9.5-update-run-handoff-unavailable")).unwrap();
    assert!(!refused.handed_off());
    assert_eq!(
        (refused.ok, refused.outcome),
        (Some(false), Outcome::Skipped)
    );
    assert_eq!(
        refused.reason.as_deref(),
        Some("managed-service-handoff-unavailable")
    );
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("run `openclaw update --yes --timeout 900` from a shell")
    );
}

#[test]
fn run_records_and_events_of_2026_9() {
    let run = Claim::from_record(&fixture("2026.9.6-update-runs-get")["run"]).unwrap();
    assert_eq!(run.source, ClaimSource::Record);
    assert_eq!(run.outcome, Outcome::Skipped);
    assert_eq!(run.reason.as_deref(), Some("already-current"));
    assert_eq!(run.phase.as_deref(), Some("finished"));
    assert_eq!(run.target_version(), Some("2026.9.6"));
    assert_eq!(run.steps.len(), 8);
    let validating = run.steps.iter().find(|s| s.name == "validating").unwrap();
    assert_eq!(
        (validating.status.as_deref(), validating.failed),
        (Some("skipped"), false)
    );
    assert_eq!(validating.duration_ms, Some(11_795));
    assert_eq!(
        run.verified.as_ref().and_then(|v| v.version.as_deref()),
        Some("2026.9.6")
    );
    assert_eq!(run.downtime_ms, Some(0));

    let report = UpdateReport::from_value(&fixture("2026.9.6-update-status-after-run")).unwrap();
    assert_eq!(report.last_run.as_ref().unwrap().run_id, run.run_id);
    assert_eq!(report.sentinel.as_ref().unwrap().outcome, Outcome::Skipped);

    let events: Vec<RunChanged> = fixture("2026.9.6-update-run-changed-events")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| RunChanged::from_value(e).unwrap())
        .collect();
    let terminal: Vec<bool> = events.iter().map(RunChanged::is_terminal).collect();
    assert_eq!(terminal.iter().filter(|t| **t).count(), 1);
    assert_eq!(terminal.last(), Some(&true));
    let phases: Vec<&str> = events.iter().filter_map(|e| e.phase.as_deref()).collect();
    assert_eq!(phases.first(), Some(&"requested"));
    assert!(phases.contains(&"validating"));
    assert_eq!(phases.last(), Some(&"finished"));
}

fn live(hello: &str, status: &str, build: Option<&str>) -> Live {
    Live {
        hello_version: Some(hello.into()),
        status_version: Some(status.into()),
        build_id: build.map(str::to_owned),
        ..Live::default()
    }
}

/// Measured on 2026.4.26 → 2026.9.6 through `update.run`: the sentinel and
/// `update.status` say the new version while the old code keeps running.
#[test]
fn the_sentinel_says_new_while_the_process_runs_old() {
    let report =
        UpdateReport::from_value(&fixture("2026.4.26-update-status-after-update")).unwrap();
    let sentinel = report.sentinel.as_ref().unwrap();
    assert_eq!(sentinel.outcome, Outcome::Succeeded);
    assert_eq!(sentinel.after.as_deref(), Some("2026.9.6"));
    assert_eq!(
        sentinel.steps[0].stdout_tail.trim(),
        "added 330 packages in 39s"
    );

    let old = live("2026.4.26", "2026.4.26", None);
    assert_eq!(
        verdict(UpdateApi::Sentinel, None, None, &report, &old, true),
        Some(Verdict::Mismatch {
            claimed: "2026.9.6".into(),
            running: "2026.4.26".into()
        })
    );
    // The sentinel is written before the restart: no verdict until one.
    assert_eq!(
        verdict(UpdateApi::Sentinel, None, None, &report, &old, false),
        None
    );
    // hello-ok and status disagreeing is a mismatch too.
    let torn = live("2026.9.6", "2026.4.26", None);
    assert!(matches!(
        verdict(UpdateApi::Sentinel, None, None, &report, &torn, true),
        Some(Verdict::Mismatch { running, .. }) if running == "2026.4.26"
    ));
    let new = live("2026.9.6", "2026.9.6", None);
    assert_eq!(
        verdict(UpdateApi::Sentinel, None, None, &report, &new, true),
        Some(Verdict::Verified {
            version: "2026.9.6".into(),
            pid: None
        })
    );
}

/// A 2026.9.x record that claims success is held against the process too.
#[test]
fn a_run_record_that_claims_success_is_checked_against_the_process() {
    let mut record = fixture("2026.9.6-update-runs-get")["run"].clone();
    record["status"] = json!("succeeded");
    record["after"] = json!({"version": "2026.9.7", "buildId": "2026.9.7-release-x"});
    let report = UpdateReport {
        run: Claim::from_record(&record),
        ..UpdateReport::default()
    };
    let id = RunId::from("97f96331-749d-4ec2-bc1a-8d846fd9ee45");
    let check = |live: &Live| verdict(UpdateApi::Runs, Some(&id), None, &report, live, true);
    assert_eq!(
        check(&live(
            "2026.9.6",
            "2026.9.6",
            Some("2026.9.6-release-eb377ac59e6c")
        )),
        Some(Verdict::Mismatch {
            claimed: "2026.9.7".into(),
            running: "2026.9.6".into()
        })
    );
    assert_eq!(
        check(&live(
            "2026.9.7",
            "2026.9.7",
            Some("2026.9.7-release-other")
        )),
        Some(Verdict::Mismatch {
            claimed: "build 2026.9.7-release-x".into(),
            running: "build 2026.9.7-release-other".into()
        })
    );
    assert_eq!(
        check(&live("2026.9.7", "2026.9.7", Some("2026.9.7-release-x"))),
        Some(Verdict::Verified {
            version: "2026.9.7".into(),
            pid: None
        })
    );
    // Another run's record says nothing about this one.
    let other = RunId::from("00000000-0000-0000-0000-000000000000");
    assert_eq!(
        verdict(
            UpdateApi::Runs,
            Some(&other),
            None,
            &report,
            &live("a", "a", None),
            true
        ),
        None
    );
}
