//! Test fixtures: a real gateway on 127.0.0.1:0 in a temp state dir, and a
//! raw WebSocket client that can also send what a good client never would.

#![allow(dead_code)]

pub mod moltd;
pub use molt_e2e::client::{Client, TOKEN, WAIT};
#[allow(unused_imports)]
pub use molt_e2e::restarts;

use std::collections::HashMap;
use std::net::SocketAddr;

use molt_daemon::gateway::Gateway;
use molt_daemon::logging::LogHub;
use molt_daemon::start::{Launch, Options, prepare};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub struct TestGateway {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub logs: LogHub,
    task: JoinHandle<()>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with_config(json!({ "gateway": { "auth": { "token": TOKEN } } })).await
    }

    pub async fn start_with_config(config: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("openclaw.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let options = Options {
            port: Some(0),
            state_dir: Some(dir.path().to_owned()),
            ..Options::default()
        };
        let logs = LogHub::default();
        let launch = Launch {
            process_env: HashMap::new(),
            logs: logs.clone(),
            ..Launch::default()
        };
        let prepared = prepare(&options, launch).await.expect("gateway starts");
        let addr = prepared.addr();
        let gateway = prepared.gateway().clone();
        let task = tokio::spawn(prepared.serve(std::future::pending()));
        Self {
            dir,
            addr,
            gateway,
            logs,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub async fn client(&self) -> Client {
        let mut client = Client::open(&self.url()).await;
        client
            .connect(TOKEN, &["operator.read", "operator.admin"])
            .await;
        client
    }

    /// Stops like SIGTERM and waits for the server to finish.
    pub async fn stop(self) {
        self.gateway
            .stop(molt_daemon::lifecycle::StopReason::stop());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .unwrap();
    }
}
