//! The real `moltd` binary: READY line, refusals with exit 78 that name
//! the problem, token generation, and SIGTERM.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::moltd::{self, MOLTD, Moltd, command};

fn start(state: &Path, args: &[&str]) -> Moltd {
    moltd::start(state, args)
}

/// Runs moltd expecting it to refuse; returns (exit code, stderr).
fn refused(state: &Path, args: &[&str]) -> (i32, String) {
    let out = command(Path::new(MOLTD), state, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("READY"),
        "a refused start never prints READY"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ready_line_names_addr_version_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(dir.path(), &["--port", "0"]);
    let running = &moltd.first;
    assert_eq!(running.pid, moltd.child.id());
    assert_eq!(running.version, env!("CARGO_PKG_VERSION"));
    assert!(running.addr.starts_with("127.0.0.1:"));
    assert_ne!(running.addr, "127.0.0.1:0");
    std::net::TcpStream::connect(&running.addr).expect("port accepts");
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("gateway.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["pid"], running.pid);
    assert_eq!(
        lock["port"].as_u64().unwrap().to_string(),
        running.addr.rsplit(':').next().unwrap(),
        "the lock records the real port"
    );
}

#[test]
fn version_flag_prints_the_compiled_version() {
    let out = Command::new(MOLTD).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("moltd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_second_moltd_on_the_same_state_dir_exits_78_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), &["--port", "0"]);
    let (code, stderr) = refused(dir.path(), &["--port", "0"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.first.pid)),
        "{stderr}"
    );
    // The holder is unharmed.
    std::net::TcpStream::connect(&first.first.addr).expect("first still serves");
}

#[test]
fn a_busy_port_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port().to_string();
    let (code, stderr) = refused(dir.path(), &["--port", &port]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains(&format!("port {port}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn a_config_that_does_not_parse_exits_78_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openclaw.json");
    std::fs::write(&config, "{\n  \"gateway\": {\n    \"port\": ,\n  }\n}\n").unwrap();
    let (code, stderr) = refused(dir.path(), &["--port", "0"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "{\n  \"gateway\": {\n    \"port\": ,\n  }\n}\n",
        "the broken config is left for the operator to fix"
    );
}

#[test]
fn a_config_with_a_bad_value_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("openclaw.json"),
        r#"{"gateway": {"bind": "everywhere"}}"#,
    )
    .unwrap();
    let (code, stderr) = refused(dir.path(), &["--port", "0"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("gateway.bind"), "{stderr}");
}

#[test]
fn json5_config_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("openclaw.json"),
        "// operator notes\n{ gateway: { auth: { token: 'from-json5', }, }, }\n",
    )
    .unwrap();
    let _running = start(dir.path(), &["--port", "0"]);
    // The token was read from the JSON5 file: none was generated and
    // written back, so the file is as the operator left it.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("openclaw.json")).unwrap(),
        "// operator notes\n{ gateway: { auth: { token: 'from-json5', }, }, }\n"
    );
}

#[test]
fn a_non_loopback_bind_without_auth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("openclaw.json"),
        r#"{"gateway": {"bind": "lan", "auth": {"mode": "none"}}}"#,
    )
    .unwrap();
    let (code, stderr) = refused(dir.path(), &["--port", "0"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("gateway.auth.mode"), "{stderr}");
    assert!(stderr.contains("without auth"), "{stderr}");

    // The same through the --bind flag over a loopback config.
    std::fs::write(
        dir.path().join("openclaw.json"),
        r#"{"gateway": {"auth": {"mode": "none"}}}"#,
    )
    .unwrap();
    let (code, stderr) = refused(dir.path(), &["--port", "0", "--bind", "lan"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("without authentication"), "{stderr}");
}

#[test]
fn a_token_is_generated_once_and_stored_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openclaw.json");
    let token = {
        let _running = start(dir.path(), &["--port", "0"]);
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        value["gateway"]["auth"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(token.len() >= 32);
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let _again = start(dir.path(), &["--port", "0"]);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        value["gateway"]["auth"]["token"],
        token.as_str(),
        "kept across starts"
    );
}

#[test]
fn sigterm_stops_cleanly_and_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path(), &["--port", "0"]);
    Moltd::signal(running.first.pid, "TERM");
    let exit = running.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    // The lock is free: a new gateway starts on the same state dir.
    let next = start(dir.path(), &["--port", "0"]);
    assert!(next.first.pid != running.first.pid);
}

#[test]
fn daily_logs_are_pruned_to_the_newest_fourteen() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for day in 1..=20 {
        std::fs::write(logs.join(format!("moltd.log.2000-01-{day:02}")), "old\n").unwrap();
    }
    std::fs::write(logs.join("notes.txt"), "the operator's\n").unwrap();
    let mut running = start(dir.path(), &["--port", "0"]);
    Moltd::signal(running.first.pid, "TERM");
    running.child.wait().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let kept: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("moltd.log."))
        .collect();
    assert_eq!(
        kept.len(),
        molt_daemon::logging::LOG_FILES_KEPT,
        "{names:?}"
    );
    // Which old ones go is by file creation time, the same for all here.
    assert!(
        kept.iter().any(|n| !n.starts_with("moltd.log.2000-")),
        "today's file is kept: {names:?}"
    );
    assert!(
        names.contains(&"notes.txt".to_owned()),
        "other files stay: {names:?}"
    );
}

#[test]
fn logs_go_to_a_daily_file_in_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(dir.path(), &["--port", "0"]);
    Moltd::signal(running.first.pid, "TERM");
    running.child.wait().unwrap();
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].starts_with("moltd.log."), "{logs:?}");
    let text = std::fs::read_to_string(dir.path().join("logs").join(&logs[0])).unwrap();
    assert!(text.contains("READY"), "{text}");
    assert!(text.contains("stopped"), "{text}");
}

#[test]
fn json_logs_are_one_object_per_line_in_the_file_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(
        dir.path(),
        serde_json::json!({"logging": {"format": "json"}}),
    );
    let mut running = start(dir.path(), &["--port", "0"]);
    Moltd::signal(running.first.pid, "TERM");
    running.child.wait().unwrap();
    let logs = dir.path().join("logs");
    let file = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let ready = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("READY "))
        })
        .expect("the READY line is logged");
    assert_eq!(ready["level"], "INFO");
    assert!(ready["timestamp"].is_string() && ready["target"].is_string());
    assert!(events.iter().any(|e| e["message"] == "stopped"), "{text}");

    // The flag wins over the config, on stderr too.
    let (code, stderr) = refused(
        dir.path(),
        &["--port", "0", "--log-format", "json", "--bind", "nowhere"],
    );
    assert_eq!(code, 78, "{stderr}");
    let refusal: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(refusal["level"], "ERROR");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("--bind nowhere"),
        "{refusal}"
    );
}

/// docs/operations.md, "No log file": a `logs/` that cannot be created
/// costs the file, not the log: moltd serves and logs to stderr.
#[test]
fn without_a_logs_dir_moltd_serves_and_logs_to_stderr() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("logs"), "a file in the way").unwrap();
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = command(Path::new(MOLTD), dir.path(), &["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("READY "), "{ready:?}");
    Moltd::signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("file logging disabled"), "{stderr}");
    assert!(
        stderr.contains("READY "),
        "the log goes on on stderr: {stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
}
