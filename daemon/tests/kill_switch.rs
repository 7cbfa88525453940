//! `update.noAutoUpdate.set` against the real binary: the kill switch
//! applies live, persists in `.env` next to the operator's own lines,
//! survives a restart, and cannot override the process env.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Client;
use common::moltd::{self, MOLTD, Moltd, command};
use common::restarts::client;
use molt_protocol::error::ErrorCode;
use molt_protocol::status::{AutoUpdateState, StatusResult};
use serde_json::{Value, json};

const SET: &str = "update.noAutoUpdate.set";
const OPERATOR_ENV: &str = "# operator notes\nOTHER=kept # inline\n";

async fn auto(client: &mut Client) -> AutoUpdateState {
    let status: StatusResult = client
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    status.auto
}

async fn set(client: &mut Client, enabled: bool) -> Value {
    client
        .request(SET, json!({ "enabled": enabled }))
        .await
        .into_result()
        .unwrap()
}

fn env_file(state: &Path) -> String {
    std::fs::read_to_string(state.join(".env")).unwrap()
}

fn stop(mut moltd: Moltd) {
    Moltd::signal(moltd.first.pid, "TERM");
    let exit = moltd
        .wait_exit(Duration::from_secs(20))
        .expect("moltd stops");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_applies_live_persists_in_env_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    std::fs::write(dir.path().join(".env"), OPERATOR_ENV).unwrap();

    let first = moltd::start(dir.path(), &["--port", "0"]);
    let mut c = client(&first.first).await;
    let before = auto(&mut c).await;
    assert_eq!((before.blocked_by, before.source), (None, None));

    let on = set(&mut c, true).await;
    assert_eq!(on, json!({ "enabled": true, "source": "env-file" }));
    let live = auto(&mut c).await;
    assert_eq!(live.blocked_by.as_deref(), Some("env"), "no restart needed");
    assert_eq!(
        serde_json::to_value(live.source).unwrap(),
        json!("env-file")
    );
    assert_eq!(
        env_file(dir.path()),
        format!("{OPERATOR_ENV}OPENCLAW_NO_AUTO_UPDATE=1\n"),
        "the operator's lines are kept"
    );
    drop(c);
    stop(first);

    let second = moltd::start(dir.path(), &["--port", "0"]);
    let mut c = client(&second.first).await;
    let after = auto(&mut c).await;
    assert_eq!(
        after.blocked_by.as_deref(),
        Some("env"),
        "read back from .env"
    );

    let off = set(&mut c, false).await;
    assert_eq!(off, json!({ "enabled": false, "source": null }));
    let cleared = auto(&mut c).await;
    assert_eq!((cleared.blocked_by, cleared.source), (None, None));
    assert_eq!(env_file(dir.path()), OPERATOR_ENV);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_env_kill_switch_cannot_be_lifted_by_the_method() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut cmd = command(Path::new(MOLTD), dir.path(), &["--port", "0"]);
    cmd.env("OPENCLAW_NO_AUTO_UPDATE", "1");
    let moltd = Moltd::spawn(cmd);
    let mut c = client(&moltd.first).await;

    let blocked = auto(&mut c).await;
    assert_eq!(blocked.blocked_by.as_deref(), Some("env"));
    assert_eq!(
        serde_json::to_value(blocked.source).unwrap(),
        json!("process-env")
    );

    let err = c
        .request(SET, json!({ "enabled": false }))
        .await
        .into_result::<Value>()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("process environment"),
        "{}",
        err.message
    );
    assert_eq!(err.details.unwrap()["source"], "process-env");
    assert_eq!(auto(&mut c).await.blocked_by.as_deref(), Some("env"));
    assert!(!dir.path().join(".env").exists(), "nothing written");

    // Asking for what is already in effect is fine.
    let on = set(&mut c, true).await;
    assert_eq!(on, json!({ "enabled": true, "source": "process-env" }));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_params_and_read_only_callers_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let mut admin = client(&moltd.first).await;

    for params in [json!({ "enabled": "yes" }), json!({}), json!(null)] {
        let err = admin
            .request(SET, params.clone())
            .await
            .into_result::<Value>()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{params}");
    }

    let mut reader = Client::open(&moltd.first.url()).await;
    reader.connect(common::TOKEN, &["operator.read"]).await;
    let err = reader
        .request(SET, json!({ "enabled": true }))
        .await
        .into_result::<Value>()
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);

    assert_eq!(auto(&mut admin).await.blocked_by, None);
    assert!(!dir.path().join(".env").exists());
}
