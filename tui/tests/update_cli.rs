//! `molt update` (the real binary) against a scripted gateway on
//! loopback. moltd does not serve update.run yet, so the gateway side is
//! played here, frame by frame, as the protocol (docs/protocol.md) says:
//! dry run, progress events, the result, a 1012 close, and a successor
//! process on the same port that answers update.status.

mod common;
mod support;

use std::process::Output;

use common::*;
use futures_util::{SinkExt, StreamExt};
use molt_protocol::update::UpdateStatus;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// How the scripted run ends.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Successor verified at 0.2.0.
    Verified,
    /// A step fails: update.run answers status error.
    StepFails,
    /// The successor never comes up: the old process rolls back and
    /// keeps serving (no close).
    RolledBack,
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

fn res(id: &Value, payload: Value) -> Value {
    json!({"type": "res", "id": id, "ok": true, "payload": payload})
}

fn event(name: &str, payload: Value, seq: u64) -> Value {
    json!({"type": "event", "event": name, "payload": payload, "seq": seq})
}

/// One gateway process: handshake, then answer requests per the script.
async fn serve(mut ws: Ws, pid: u32, version: &str, ending: Ending) {
    let mut seq = 1;
    send(
        &mut ws,
        event(
            "connect.challenge",
            json!({"nonce": "00", "ts": GATEWAY_NOW}),
            seq,
        ),
    )
    .await;
    let mut snapshot = idle_status();
    snapshot.pid = pid;
    snapshot.version = version.into();
    snapshot.started_at = STARTED_AT + u64::from(pid);
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let req: Value = serde_json::from_str(&text).unwrap();
        let id = req["id"].clone();
        let params = &req["params"];
        match req["method"].as_str().unwrap() {
            "connect" => {
                send(
                    &mut ws,
                    res(&id, serde_json::to_value(hello(snapshot.clone())).unwrap()),
                )
                .await
            }
            "update.run" if params["dryRun"] == true => {
                send(
                    &mut ws,
                    res(&id, run_result(UpdateStatus::Ok, "0.2.0", Vec::new())),
                )
                .await
            }
            "update.run" => {
                assert_eq!(params["note"], "weekly", "{params}");
                for (state, exit) in [("started", Value::Null), ("finished", json!(0))] {
                    seq += 1;
                    let step = json!({"name": "install", "state": state, "exitCode": exit});
                    let progress = json!({"runId": "run-8", "phase": "running", "step": step});
                    send(&mut ws, event("update.progress", progress, seq)).await;
                }
                let result = if ending == Ending::StepFails {
                    run_result(
                        UpdateStatus::Error,
                        "0.2.0",
                        vec![step_record("install", 1, "npm error code E404")],
                    )
                } else {
                    run_result(
                        UpdateStatus::Ok,
                        "0.2.0",
                        vec![step_record("install", 0, "")],
                    )
                };
                send(&mut ws, res(&id, result)).await;
                if ending == Ending::Verified {
                    let frame = CloseFrame {
                        code: CloseCode::from(1012),
                        reason: "update.run".into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                }
            }
            "update.status" => {
                let answer = match (version, ending) {
                    ("0.2.0", _) => update_status(
                        "0.2.0",
                        Some(sentinel(
                            UpdateStatus::Ok,
                            Some(("0.2.0", pid, None)),
                            false,
                        )),
                        None,
                    ),
                    (_, Ending::RolledBack) => update_status(
                        "0.1.0",
                        Some(sentinel(UpdateStatus::Error, None, true)),
                        None,
                    ),
                    _ => update_status("0.1.0", None, None),
                };
                send(&mut ws, res(&id, answer)).await;
            }
            other => panic!("unexpected request {other}"),
        }
    }
}

/// Serves `molt update --yes --json` and returns its output. The first
/// connection is pid 100 at 0.1.0; later ones are its successor, pid 200
/// at 0.2.0, once the first closed with 1012.
async fn run_update(ending: Ending) -> Output {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut handed_off = false;
        let mut sessions = Vec::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let (pid, version) = if handed_off {
                (200, "0.2.0")
            } else {
                (100, "0.1.0")
            };
            handed_off |= ending == Ending::Verified;
            sessions.push(tokio::spawn(serve(ws, pid, version, ending)));
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        support::molt()
            .args([
                "update",
                "--yes",
                "--json",
                "--note",
                "weekly",
                "--url",
                &url,
                "--token",
                "t",
                "--state-dir",
            ])
            .arg(tmp.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.abort();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_follows_the_handoff_and_exits_0_once_verified() {
    let output = run_update(Ending::Verified).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["ok"], true);
    assert_eq!(result["runId"], "run-8");
    assert_eq!(result["before"], json!({"pid": 100, "version": "0.1.0"}));
    assert_eq!(result["after"], json!({"pid": 200, "version": "0.2.0"}));
    assert_eq!(result["verified"], json!({"version": "0.2.0", "pid": 200}));
    assert!(stderr.contains("install started"), "{stderr}");
    assert!(
        stderr.contains("handed off: pid 100 v0.1.0 → pid 200 v0.2.0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_exits_1_with_its_output() {
    let output = run_update(Ending::StepFails).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(stderr.contains("step install failed"), "{stderr}");
    assert!(stderr.contains("npm error code E404"), "{stderr}");
    assert!(stderr.contains("0.1.0 keeps running"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_without_a_close_exits_1() {
    let output = run_update(Ending::RolledBack).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("restart-unhealthy"), "{stderr}");
    assert!(
        stderr.contains("rolled back, v0.1.0 keeps running"),
        "{stderr}"
    );
}
