//! The console's fixtures of moltd, recorded from a real one: what a real
//! moltd installed with npm from the test registry answers and emits
//! through a dry run, a failed update (a version that dies at start) and
//! a verified update. The console's reducer tests read these files
//! (`tui/tests/fixtures/moltd/`), so they test the shapes moltd sends, not
//! shapes a test author imagined.
//!
//! Regenerate with `cargo run -p molt-e2e --bin record-console-fixtures`;
//! `tests/tests/console_fixtures.rs` records afresh and fails when the
//! committed files no longer have the shape moltd sends ([`shape`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::client::{Client, TOKEN};
use crate::global_install::PackageManager;
use crate::restarts::READY_WAIT;
use crate::tools::repo_root;
use crate::updates::{NEW, OLD, UPDATE_WAIT, UpdateFixture, serving_client};

/// The version published to die at start.
pub const DIES_AT_START: &str = "3.0.0";

/// Where the committed fixtures live.
pub fn dir() -> PathBuf {
    repo_root().join("tui/tests/fixtures/moltd")
}

/// One recorded payload or event list per file name (without `.json`).
pub type Recording = BTreeMap<String, Value>;

/// Runs the scenario against a real moltd and returns what it sent, with
/// the scratch dir's path replaced by `/tmp/molt-fixture`.
pub async fn record() -> Result<Recording> {
    let fx = UpdateFixture::start()?;
    fx.publish_broken(DIES_AT_START)?;
    let global = fx.install(PackageManager::Npm, OLD)?;
    let (_state, mut moltd) = fx.start_moltd(&global, json!({}))?;
    let mut out = Recording::new();

    let mut c = Client::open(&format!("ws://{}", moltd.first.addr)).await;
    let hello = c
        .request(
            "connect",
            Client::connect_params(TOKEN, &["operator.read", "operator.admin"]),
        )
        .await;
    out.insert("hello-ok".into(), payload(hello.payload)?);
    out.insert(
        "status-idle".into(),
        call(&mut c, "status", json!({})).await?,
    );
    out.insert(
        "update-run-dry-run".into(),
        call(&mut c, "update.run", json!({"dryRun": true})).await?,
    );

    // A version that installs, verifies and dies at start: rolled back
    // without a handoff, on the same connection.
    c.events.clear();
    out.insert(
        "update-run-rolled-back".into(),
        call(&mut c, "update.run", json!({"tag": DIES_AT_START})).await?,
    );
    out.insert("events-rolled-back".into(), events(&mut c));
    out.insert(
        "status-after-rollback".into(),
        call(&mut c, "status", json!({})).await?,
    );
    out.insert(
        "update-history-after-rollback".into(),
        call(&mut c, "update.history", json!({})).await?,
    );

    // A verified update: the answer, every event until the old process
    // closes the connection, then the successor's view.
    out.insert(
        "update-run".into(),
        call(&mut c, "update.run", json!({"note": "nightly"})).await?,
    );
    c.close_code().await;
    out.insert("events-update".into(), events(&mut c));
    let successor = moltd
        .next_ready(READY_WAIT)
        .context("the new version never printed READY")?;
    if successor.version != NEW {
        bail!("the successor runs {}, expected {NEW}", successor.version);
    }
    let mut c = serving_client(&successor).await;
    out.insert(
        "update-status-after-update".into(),
        call(&mut c, "update.status", json!({})).await?,
    );
    out.insert(
        "status-after-update".into(),
        call(&mut c, "status", json!({})).await?,
    );
    out.insert(
        "update-run-up-to-date".into(),
        call(&mut c, "update.run", json!({"dryRun": true})).await?,
    );

    let scratch = std::fs::canonicalize(fx.tmp.path())?;
    Ok(out
        .into_iter()
        .map(|(name, value)| (name, scrub(value, &scratch)))
        .collect())
}

/// Writes `recording` to `dir`, one pretty-printed file per entry,
/// replacing what was there.
pub fn write(recording: &Recording, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, value) in recording {
        let text = serde_json::to_string_pretty(value)? + "\n";
        std::fs::write(dir.join(format!("{name}.json")), text)?;
    }
    Ok(())
}

/// Reads the committed fixture `name`.
pub fn read(dir: &Path, name: &str) -> Result<Value> {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
}

/// What must not change without the fixtures being recorded again: every
/// object's keys, every value's JSON type, and the values that pick the
/// console's branches (`status`, `phase`, `event`, `trigger`, `mode`, and
/// a reason's code before its `:`). An array's shape is the set of its
/// elements' shapes, so a run with one progress event more or less has
/// the same shape.
pub fn shape(value: &Value) -> Value {
    shape_of(None, value)
}

fn shape_of(key: Option<&str>, value: &Value) -> Value {
    match value {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(s) => match key {
            Some("status" | "phase" | "event" | "trigger" | "mode") => json!(s),
            Some("reason") => json!(format!("reason {}", s.split(':').next().unwrap_or(s))),
            _ => json!("string"),
        },
        Value::Array(items) => {
            let mut shapes: Vec<Value> = items.iter().map(|i| shape_of(key, i)).collect();
            shapes.sort_by_key(|s| s.to_string());
            shapes.dedup();
            Value::Array(shapes)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), shape_of(Some(k), v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

async fn call(c: &mut Client, method: &str, params: Value) -> Result<Value> {
    let id = c.send_request(method, params).await;
    let res = c.response_within(&id, UPDATE_WAIT).await;
    if !res.ok {
        bail!("{method} failed: {:?}", res.error);
    }
    payload(res.payload)
}

fn payload(payload: Option<Value>) -> Result<Value> {
    payload.context("a response without a payload")
}

/// The events kept so far, in order, as `{event, payload}`; log lines
/// left out (their text is the machine's).
fn events(c: &mut Client) -> Value {
    Value::Array(
        c.events
            .drain(..)
            .filter(|(name, _, _)| name != "logs.line")
            .map(|(event, payload, _)| json!({"event": event, "payload": payload}))
            .collect(),
    )
}

fn scrub(value: Value, scratch: &Path) -> Value {
    let from = scratch.to_string_lossy();
    match value {
        Value::String(s) => Value::String(s.replace(from.as_ref(), "/tmp/molt-fixture")),
        Value::Array(items) => items.into_iter().map(|v| scrub(v, scratch)).collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, scrub(v, scratch)))
            .collect::<Map<_, _>>()
            .into(),
        other => other,
    }
}
