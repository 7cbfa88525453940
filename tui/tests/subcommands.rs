//! `molt config`, `restart`, `logs` and `update` against the real `moltd`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{Daemon, molt, stored_token};

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(60);

fn run(state: &Path, args: &[&str]) -> Output {
    molt()
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

#[test]
fn config_set_then_get_goes_through_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);

    let set = run(&state, &["config", "set", "update.channel", "beta"]);
    assert_exit(&set, 0);
    assert_eq!(
        stdout(&set).trim(),
        "update.channel = \"beta\" (changed: update.channel)"
    );
    let on_disk = std::fs::read_to_string(state.join("openclaw.json")).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(on_disk["update"]["channel"], "beta");

    let get = run(&state, &["config", "get", "update.channel"]);
    assert_exit(&get, 0);
    assert_eq!(stdout(&get), "beta\n");

    // JSON values, and the same value again changes nothing.
    let set = run(
        &state,
        &[
            "config",
            "set",
            "gateway.reload.deferralTimeoutMs",
            "30000",
            "--json",
        ],
    );
    assert_exit(&set, 0);
    let result: serde_json::Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(result["value"], 30000);
    assert_eq!(
        result["changedPaths"][0],
        "gateway.reload.deferralTimeoutMs"
    );
    let again = run(
        &state,
        &["config", "set", "gateway.reload.deferralTimeoutMs", "30000"],
    );
    assert_exit(&again, 0);
    assert!(stdout(&again).contains("unchanged"), "{}", stdout(&again));

    // The gateway never sends the token: the whole config and the key by
    // name both show it redacted.
    let all = run(&state, &["config", "get", "--json"]);
    assert_exit(&all, 0);
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all["config"]["gateway"]["auth"]["token"], "<redacted>");
    assert!(all["hash"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(all["path"].as_str().unwrap().ends_with("openclaw.json"));
    let token = run(&state, &["config", "get", "gateway.auth.token"]);
    assert_exit(&token, 0);
    assert_eq!(stdout(&token).trim(), "<redacted>");
    assert!(!stdout(&token).contains(&stored_token(&state)));
}

#[test]
fn bad_config_input_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);
    let before = std::fs::read_to_string(state.join("openclaw.json")).unwrap();

    let bad_key = run(&state, &["config", "set", "update..channel", "beta"]);
    assert_exit(&bad_key, 2);
    assert!(
        stderr(&bad_key).contains("bad config key"),
        "{}",
        stderr(&bad_key)
    );

    let bad_value = run(&state, &["config", "set", "update.channel", "nightly"]);
    assert_exit(&bad_value, 1);
    assert!(
        stderr(&bad_value).contains("INVALID_REQUEST"),
        "{}",
        stderr(&bad_value)
    );
    assert_eq!(
        std::fs::read_to_string(state.join("openclaw.json")).unwrap(),
        before,
        "a refused change writes nothing"
    );

    let unset = run(&state, &["config", "get", "update.auto.enabled"]);
    assert_exit(&unset, 1);
    assert!(stderr(&unset).contains("is not set"), "{}", stderr(&unset));
}

#[test]
fn url_and_token_flags_work_for_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let token = stored_token(&state);
    // An empty state dir: nothing to discover, the flags must do it.
    let elsewhere = tmp.path().join("empty");
    std::fs::create_dir(&elsewhere).unwrap();
    let url = daemon.url();
    for args in [
        vec!["status", "--json"],
        vec!["config", "get", "--json"],
        vec!["logs", "-n", "1"],
    ] {
        let output = molt()
            .args(&args)
            .args(["--url", &url, "--token", &token, "--state-dir"])
            .arg(&elsewhere)
            .output()
            .unwrap();
        assert_exit(&output, 0);
        let wrong = molt()
            .args(&args)
            .args(["--url", &url, "--token", "wrong", "--state-dir"])
            .arg(&elsewhere)
            .output()
            .unwrap();
        assert_exit(&wrong, 4);
    }
}

#[test]
fn logs_prints_recent_lines_and_follows_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);

    let tail = run(&state, &["logs", "-n", "3"]);
    assert_exit(&tail, 0);
    let text = std::str::from_utf8(&tail.stdout).unwrap();
    // The date on its own line first, then the lines.
    assert!(text.starts_with("── 20"), "{text}");
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert!((1..=3).contains(&lines.len()), "{lines:?}");
    let levels = [" TRACE ", " DEBUG ", " INFO ", " WARN ", " ERROR "];
    assert!(
        lines.iter().all(|l| levels.iter().any(|lv| l.contains(lv))),
        "{lines:?}"
    );

    // -n 1: the first line printed means logs.tail answered, so the
    // follower is subscribed before the change below is made.
    let mut follower = molt()
        .args(["logs", "--follow", "--json", "-n", "1", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = BufReader::new(follower.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx.recv_timeout(PATIENCE).expect("the tail line");
    let set = run(
        &state,
        &["config", "set", "gateway.reload.deferralTimeoutMs", "1234"],
    );
    assert_exit(&set, 0);
    let patched = loop {
        let line = rx.recv_timeout(PATIENCE).expect("a followed log line");
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        let text = line["line"].as_str().unwrap().to_owned();
        if text.contains("config patched") {
            break text;
        }
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(patched.contains("deferralTimeoutMs"), "{patched}");
}

#[test]
fn restart_follows_the_handoff_to_the_new_process() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);

    let (tx, rx) = mpsc::channel();
    let state_dir = state.clone();
    std::thread::spawn(move || {
        let _ = tx.send(run(&state_dir, &["restart", "--force", "--json"]));
    });
    let output = rx.recv_timeout(PATIENCE).expect("molt restart finished");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    assert_exit(&output, 0);
    assert_eq!(result["before"]["pid"], daemon.pid);
    assert_ne!(result["after"]["pid"], daemon.pid);
    assert_eq!(result["close"], 1012);
    assert!(result["gapMs"].is_u64());

    // The new process serves the same state dir.
    let status = run(&state, &["status", "--json"]);
    assert_exit(&status, 0);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["pid"], result["after"]["pid"]);

    let bad = run(&state, &["restart", "--reason", " "]);
    assert_exit(&bad, 2);
}

#[test]
fn update_refuses_bad_input_before_asking_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);

    let bad_tag = run(&state, &["update", "--yes", "--tag", "1.0;rm"]);
    assert_exit(&bad_tag, 2);
    assert!(
        stderr(&bad_tag).contains("bad --tag"),
        "{}",
        stderr(&bad_tag)
    );
    let not_asked = run(&state, &["update"]);
    assert_exit(&not_asked, 2);
    assert!(
        stderr(&not_asked).contains("--yes"),
        "{}",
        stderr(&not_asked)
    );
}

/// `molt logs` output with what changes from run to run named: the date,
/// the times, the state dir, the address and the pid.
fn normalized(output: &Output, state: &Path, daemon: &Daemon) -> Vec<String> {
    stdout(output)
        .lines()
        .map(|line| {
            let line = if line.starts_with("── ") {
                "── DATE UTC ──".to_owned()
            } else {
                match line.get(..8) {
                    Some(time) if time.as_bytes()[2] == b':' => format!("HH:MM:SS{}", &line[8..]),
                    _ => line.to_owned(),
                }
            };
            line.replace(&state.display().to_string(), "<state>")
                .replace(&daemon.addr, "<addr>")
                .replace(&daemon.pid.to_string(), "<pid>")
        })
        .collect()
}

#[test]
fn logs_keeps_the_level_and_text_asked_for_in_compact_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A line moltd cannot read: at start it warns, naming the file.
    std::fs::write(state.join(".env"), "not an assignment\n").unwrap();
    let daemon = Daemon::start(&state);

    let warning = [
        "── DATE UTC ──",
        "HH:MM:SS WARN  env_file: <state>/.env: line 1: expected KEY=VALUE; line ignored",
    ];
    let warn = run(&state, &["logs", "--level", "warn", "--grep", "KEY=value"]);
    assert_exit(&warn, 0);
    assert_eq!(normalized(&warn, &state, &daemon), warning);
    // The level filter alone, and from an hour back: the same one line.
    let since = run(&state, &["logs", "--level", "WARNING", "--since", "1h"]);
    assert_eq!(normalized(&since, &state, &daemon), warning);

    // READY is an info line: text alone finds it, text and warn do not.
    let ready = run(&state, &["logs", "--grep", "ready"]);
    assert_eq!(
        normalized(&ready, &state, &daemon),
        [
            "── DATE UTC ──".to_owned(),
            format!(
                "HH:MM:SS INFO  moltd: READY <addr> {} <pid>",
                daemon.version
            ),
        ]
    );
    let none = run(&state, &["logs", "--level", "warn", "--grep", "ready"]);
    assert_exit(&none, 0);
    assert_eq!(stdout(&none), "");
    // --json keeps the line as moltd wrote it.
    let json = run(
        &state,
        &[
            "logs", "--json", "--level", "error", "--grep", "x", "-n", "1",
        ],
    );
    assert_eq!(stdout(&json), "");
    let json = run(&state, &["logs", "--json", "--grep", "ready"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    let raw = line["line"].as_str().unwrap();
    assert!(raw.contains("INFO moltd: READY"), "{raw}");

    for (args, problem) in [
        (vec!["--level", "loud"], "unknown level \"loud\""),
        (
            vec!["--since", "yesterday"],
            "--since \"yesterday\": use a duration",
        ),
    ] {
        let bad = run(&state, &[&["logs"], &args[..]].concat());
        assert_exit(&bad, 2);
        assert!(stderr(&bad).contains(problem), "{}", stderr(&bad));
    }
    let long = "x".repeat(101);
    let bad = run(&state, &["logs", "--grep", &long]);
    assert_exit(&bad, 2);
    assert!(
        stderr(&bad).contains("--grep is 101 characters; at most 100"),
        "{}",
        stderr(&bad)
    );
}
