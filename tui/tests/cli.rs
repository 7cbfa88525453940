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
