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
