//! Attacks on the real moltd binary: what a client with a valid token, or
//! none, or a hostile file in the state dir, can throw at it. Each test
//! checks the clear error, that moltd keeps serving an honest client, and
//! its resident memory.

mod common;

use std::path::Path;

use common::Client;
use common::moltd::{self, MOLTD, Moltd};
use common::restarts::client;
use molt_e2e::memory::memory;
use molt_protocol::error::ErrorCode;
use serde_json::{Value, json};

/// What moltd may hold resident while under attack.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

fn assert_memory_bounded(pid: u32) {
    let m = memory(pid).unwrap();
    assert!(
        m.hwm_kib < MEMORY_BOUND_KIB,
        "moltd peaked at {} KiB resident (bound {MEMORY_BOUND_KIB} KiB)",
        m.hwm_kib
    );
}

/// An honest client still gets `health` from the same process.
async fn still_serves(moltd: &Moltd) {
    let health: Value = client(&moltd.first)
        .await
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], moltd.first.pid);
}

/// moltd's start on `state`, expected to refuse: exit code and stderr.
fn refused_start(state: &Path) -> (Option<i32>, String) {
    let out = moltd::command(Path::new(MOLTD), state, &["--port", "0"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_depth_bomb_in_config_patch_is_refused_and_moltd_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let mut admin: Client = client(&moltd.first).await;
    let config: Value = admin
        .request("config.get", json!({}))
        .await
        .into_result()
        .unwrap();
    let before = std::fs::read(dir.path().join("openclaw.json")).unwrap();

    let raw = format!("{{a:{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
    let error = admin
        .request(
            "config.patch",
            json!({"raw": raw, "baseHash": config["hash"]}),
        )
        .await
        .error
        .expect("the patch is refused");
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(
        error
            .message
            .ends_with("it nests deeper than 64 levels at line 1 column 67"),
        "{}",
        error.message
    );
    assert_eq!(
        std::fs::read(dir.path().join("openclaw.json")).unwrap(),
        before
    );
    still_serves(&moltd).await;
    assert_memory_bounded(moltd.first.pid);
}

#[test]
fn a_config_file_nested_too_deep_refuses_to_start_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = format!("{{a:{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
    std::fs::write(dir.path().join("openclaw.json"), bomb).unwrap();
    let (code, stderr) = refused_start(dir.path());
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("does not parse: it nests deeper than 64 levels"),
        "{stderr}"
    );
}

#[test]
fn an_oversized_env_file_refuses_to_start_naming_file_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let env = dir.path().join(".env");
    std::fs::write(&env, "A=1\n".repeat(20_000)).unwrap();
    let (code, stderr) = refused_start(dir.path());
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains(&*env.to_string_lossy()), "{stderr}");
    assert!(stderr.contains("65536-byte limit"), "{stderr}");
}

/// Sends `method` with `params` and returns the refusal's message.
async fn refused(admin: &mut Client, method: &str, params: Value) -> String {
    let error = admin
        .request(method, params)
        .await
        .error
        .unwrap_or_else(|| panic!("{method} is refused"));
    assert_eq!(error.code, ErrorCode::InvalidRequest, "{method}: {error:?}");
    error.message
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_strings_in_every_method_are_refused_naming_the_field_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let mut admin: Client = client(&moltd.first).await;
    let big = "x".repeat(1024 * 1024);
    let cases = [
        (
            "gateway.restart.request",
            json!({"reason": big}),
            "reason must be at most 200 characters, got 1048576",
        ),
        (
            "update.run",
            json!({"note": big}),
            "note must be at most 1000 characters, got 1048576",
        ),
        (
            "update.run",
            json!({"sessionKey": big}),
            "sessionKey must be at most 256 characters, got 1048576",
        ),
        (
            "update.run",
            json!({"tag": big}),
            "tag must be at most 256 characters, got 1048576",
        ),
        (
            "gateway.hold.acquire",
            json!({"reason": big, "ttlMs": 60_000}),
            "gateway.hold.acquire: reason must be at most 200 characters, got 1048576",
        ),
        (
            "gateway.hold.release",
            json!({"holdId": big}),
            "holdId must be at most 128 characters, got 1048576",
        ),
        (
            "update.status",
            json!({"runId": big}),
            "runId must be at most 128 characters, got 1048576",
        ),
    ];
    // Many times over: nothing of it may stay.
    for _ in 0..10 {
        for (method, params, message) in &cases {
            assert_eq!(refused(&mut admin, method, params.clone()).await, *message);
        }
    }
    // An unknown method is named back, cut to what a name can be.
    let unknown = refused(&mut admin, &big, json!({})).await;
    assert_eq!(unknown, format!("unknown method: {}…", "x".repeat(64)));

    // Holds: 64 live, the 65th refused.
    for n in 0..64 {
        let hold = admin
            .request(
                "gateway.hold.acquire",
                json!({"reason": format!("hold {n}"), "ttlMs": 60_000}),
            )
            .await;
        assert!(hold.error.is_none(), "{n}: {:?}", hold.error);
    }
    let too_many = refused(
        &mut admin,
        "gateway.hold.acquire",
        json!({"reason": "one more", "ttlMs": 60_000}),
    )
    .await;
    assert_eq!(
        too_many,
        "gateway.hold.acquire: at most 64 holds may be live at once; release one first"
    );
    still_serves(&moltd).await;
    assert_memory_bounded(moltd.first.pid);
}

/// The lines of today's log file once one contains `needle` (the file is
/// written in the background).
fn log_lines_once(state: &Path, needle: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_dir(state.join("logs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("moltd.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>();
        if text.contains(needle) {
            return text.lines().map(str::to_owned).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needle:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newline_in_a_hold_or_restart_reason_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let mut admin: Client = client(&moltd.first).await;
    let forged = "2026-01-01T00:00:00.000000Z  INFO moltd: READY 6.6.6.6:1 6.6.6 1";
    let hold = admin
        .request(
            "gateway.hold.acquire",
            json!({"reason": format!("backup\n{forged}"), "ttlMs": 60_000}),
        )
        .await;
    assert!(hold.error.is_none(), "{:?}", hold.error);
    // Held off by the hold; the request itself is logged.
    let restart = admin
        .request(
            "gateway.restart.request",
            json!({"reason": format!("ops\r\n{forged}"), "delayMs": 60_000}),
        )
        .await;
    assert!(restart.error.is_none(), "{:?}", restart.error);

    let lines = log_lines_once(dir.path(), "reason=ops\\r\\n2026");
    assert!(
        lines.iter().all(|l| !l.starts_with("2026-01-01")),
        "a forged line: {lines:#?}"
    );
    let hold_line = lines
        .iter()
        .find(|l| l.contains("hold acquired"))
        .expect("the hold is logged");
    assert!(
        hold_line.contains(&format!("reason=backup\\n{forged}")),
        "{hold_line}"
    );
    still_serves(&moltd).await;
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "molt test")
        .env("GIT_AUTHOR_EMAIL", "test@molt.invalid")
        .env("GIT_COMMITTER_NAME", "molt test")
        .env("GIT_COMMITTER_EMAIL", "test@molt.invalid")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_update_checks_run_one_query() {
    // moltd runs from a checkout whose `origin` is a local bare repo; its
    // check is `git ls-remote`, whose upload-pack (configured per remote)
    // counts itself and waits at a FIFO until the test lets it go.
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, checkout) = (tmp.path().join("up.git"), tmp.path().join("co"));
    std::fs::create_dir_all(&upstream).unwrap();
    git(&upstream, &["init", "--quiet", "--bare"]);
    for sub in ["daemon", "shared", "target/debug"] {
        std::fs::create_dir_all(checkout.join(sub)).unwrap();
    }
    git(&checkout, &["init", "--quiet"]);
    std::fs::write(checkout.join("daemon/Cargo.toml"), "").unwrap();
    std::fs::write(checkout.join("shared/Cargo.toml"), "").unwrap();
    git(&checkout, &["add", "daemon", "shared"]);
    git(&checkout, &["commit", "--quiet", "-m", "molt"]);
    git(&checkout, &["tag", "v9.9.9"]);
    git(
        &checkout,
        &["remote", "add", "origin", upstream.to_str().unwrap()],
    );
    git(&checkout, &["push", "--quiet", "origin", "HEAD", "--tags"]);
    let (count, gate) = (tmp.path().join("queries"), tmp.path().join("gate"));
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&gate)
            .status()
            .unwrap()
            .success()
    );
    let upload_pack = tmp.path().join("upload-pack");
    std::fs::write(
        &upload_pack,
        format!(
            "#!/bin/sh\necho query >> '{}'\ncat '{}' > /dev/null\nexec git upload-pack \"$@\"\n",
            count.display(),
            gate.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&upload_pack, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(
        &checkout,
        &[
            "config",
            "remote.origin.uploadpack",
            upload_pack.to_str().unwrap(),
        ],
    );
    let binary = checkout.join("target/debug/moltd");
    std::fs::copy(MOLTD, &binary).unwrap();

    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(&state, json!({}));
    let moltd = Moltd::start_from(&binary, &state, &["--port", "0"]);
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(client(&moltd.first).await);
    }
    let mut ids = Vec::new();
    for c in &mut clients {
        let mut sent = Vec::new();
        for _ in 0..10 {
            sent.push(c.send_request("update.check", json!({})).await);
        }
        ids.push(sent);
    }
    // The one query has started: it opens the gate's read end.
    let gate_writer = {
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(gate))
    }
    .await
    .unwrap()
    .unwrap();
    // Every check waits for it before it may answer.
    let mut observer: Client = client(&moltd.first).await;
    loop {
        let status: Value = observer
            .request("status", json!({}))
            .await
            .into_result()
            .unwrap();
        if status["pendingWork"]["inFlightRequests"] == json!(100) {
            break;
        }
        tokio::task::yield_now().await;
    }
    drop(gate_writer);
    // Answers come in any order: read each client's ten.
    for (c, mut sent) in clients.iter_mut().zip(ids) {
        while !sent.is_empty() {
            let Some(molt_protocol::ServerFrame::Res(answer)) = c.frame().await else {
                continue;
            };
            sent.retain(|id| *id != answer.id.0);
            let answer: Value = answer.into_result().unwrap();
            assert_eq!(answer["latestVersion"], json!("9.9.9"));
        }
    }
    let queries = std::fs::read_to_string(&count).unwrap();
    assert_eq!(queries.lines().count(), 1, "one query for 100 checks");
    still_serves(&moltd).await;
    assert_memory_bounded(moltd.first.pid);
}
