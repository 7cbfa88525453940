//! `molt` subcommands against the real `moltd` binary.

mod support;

use support::{Daemon, molt};

#[test]
fn status_json_reports_the_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);

    // No --url, no --token: found through gateway.lock and the config.
    let output = molt()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["pid"], daemon.pid);
    assert_eq!(status["version"], daemon.version.as_str());
    assert_eq!(status["listen"], daemon.addr.as_str());
}

#[test]
fn status_prints_a_short_human_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let output = molt()
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    let first = format!(
        "moltd {} (pid {}) at {}",
        daemon.version,
        daemon.pid,
        daemon.url()
    );
    assert!(text.starts_with(&first), "{text}");
    for label in [
        "install",
        "restart",
        "pending",
        "auto-update",
        "kill switch",
        "latest run",
    ] {
        assert!(text.contains(label), "{label} missing: {text}");
    }
}

#[test]
fn a_refused_token_exits_4_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);
    let output = molt()
        .args([
            "status",
            "--json",
            "--token",
            "not-the-token",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("authentication failed"), "{stderr}");
}

#[test]
fn nothing_listening_exits_3() {
    // Held for the test and never listening: every connect is refused.
    let (_held, addr) = molt_e2e::ports::refusing_addr();
    let port = addr.port();
    let tmp = tempfile::tempdir().unwrap();
    let output = molt()
        .args([
            "status",
            "--url",
            &format!("ws://127.0.0.1:{port}"),
            "--state-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let output = molt().args(["status", "--bogus"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = molt()
        .args(["status", "--url", "wss://example:1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = molt().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("4  authentication failed"), "{help}");
    // The console refuses to start without a terminal rather than garble a pipe.
    let output = molt().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_broken_config_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("openclaw.json"), "{ gateway: ").unwrap();
    let output = molt()
        .args(["status", "--state-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("openclaw.json"), "{stderr}");
}
