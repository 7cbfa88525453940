//! One status row per gateway, asked of all of them at once: a dead host
//! costs its own connect timeout, never the others' rows.

use std::time::Duration;

use futures_util::future::join_all;
use molt_protocol::Method;
use serde::Serialize;
use serde_json::Value;

use super::Gateway;
use crate::client::{Client, ClientMode, ConnectError, ConnectOptions};
use crate::format;
use crate::peer::{Facts, KillSwitch};

/// How long one gateway may take to connect and answer `status`.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a gateway answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    Connected,
    /// Down, refusing, timing out, or the handshake failed.
    Unreachable,
    AuthFailed,
    /// The fleet entry cannot be used (an unset token variable, a pin).
    Unusable,
}

/// One gateway's row, as `molt fleet status --json` prints it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub state: Reach,
    pub error: Option<String>,
    pub product: Option<&'static str>,
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub uptime_ms: Option<u64>,
    /// `OPENCLAW_NO_AUTO_UPDATE` in force; `None`: not reported.
    pub kill_switch: Option<bool>,
    pub auto_update: Option<bool>,
    pub latest_run: Option<LatestRun>,
    pub restart_phase: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestRun {
    pub run_id: Option<String>,
    pub outcome: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub finished_at: Option<u64>,
}

impl Row {
    fn new(gateway: &Gateway, state: Reach, error: Option<String>) -> Row {
        Row {
            name: gateway.name.clone(),
            address: gateway.address(),
            groups: gateway.groups.clone(),
            state,
            error,
            product: None,
            version: None,
            pid: None,
            uptime_ms: None,
            kill_switch: None,
            auto_update: None,
            latest_run: None,
            restart_phase: None,
        }
    }

    /// A connected gateway's row from what it reported.
    pub fn from_facts(gateway: &Gateway, product: &'static str, facts: &Facts) -> Row {
        let gateway_now = facts
            .started_at
            .zip(facts.uptime_ms)
            .map(|(start, up)| start.saturating_add(up));
        Row {
            product: Some(product),
            version: facts.version.clone(),
            pid: facts.pid,
            uptime_ms: facts.uptime_ms,
            kill_switch: match facts.auto.kill_switch {
                KillSwitch::NotReported => None,
                KillSwitch::Off => Some(false),
                KillSwitch::On { .. } => Some(true),
            },
            auto_update: facts.auto.enabled,
            latest_run: facts.latest_run.as_ref().map(|run| LatestRun {
                run_id: run.run_id.as_ref().map(|id| id.to_string()),
                outcome: format::outcome(run),
                from: run.before.clone(),
                to: run.target_version().map(str::to_owned),
                finished_at: run.finished_at,
            }),
            restart_phase: facts
                .restart
                .as_ref()
                .map(|restart| format::restart_phase(restart, gateway_now)),
            ..Row::new(gateway, Reach::Connected, None)
        }
    }
}

/// Connects to `gateway`, asks `status`, closes.
pub async fn probe(gateway: &Gateway, timeout: Duration) -> Row {
    let options = match gateway.connect_options(ClientMode::Cli) {
        Ok(options) => options,
        Err(problem) => return Row::new(gateway, Reach::Unusable, Some(problem)),
    };
    let options = ConnectOptions {
        connect_timeout: timeout,
        request_timeout: timeout,
        ..options
    };
    let (client, _events) = match Client::connect(&options).await {
        Ok(pair) => pair,
        Err(e @ ConnectError::AuthFailed { .. }) => {
            return Row::new(gateway, Reach::AuthFailed, Some(e.to_string()));
        }
        Err(e) => return Row::new(gateway, Reach::Unreachable, Some(e.to_string())),
    };
    let status: Option<Value> = client.request(Method::Status, None).await.ok();
    let hello = client.hello().clone();
    client.close().await;
    let facts = Facts::read(&hello, status.as_ref());
    Row::from_facts(gateway, hello.product().name(), &facts)
}

/// Every gateway's row, in the order given, all asked at once.
pub async fn probe_all(gateways: &[&Gateway], timeout: Duration) -> Vec<Row> {
    join_all(gateways.iter().map(|g| probe(g, timeout))).await
}

/// The human table of `molt fleet status`.
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![format!(
        "{:<16} {:<12} {:<10} {:>8} {:>7} {:<5} {:<5} {}",
        "NAME", "STATE", "VERSION", "PID", "UP", "KILL", "AUTO", "LATEST RUN"
    )];
    for row in rows {
        let yes_no = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "-",
        };
        let state = match row.state {
            Reach::Connected => "connected",
            Reach::Unreachable => "unreachable",
            Reach::AuthFailed => "auth failed",
            Reach::Unusable => "unusable",
        };
        let detail = match (&row.latest_run, &row.error) {
            (_, Some(error)) => error.clone(),
            (Some(run), None) => format!(
                "{} {} -> {}",
                run.outcome,
                run.from.as_deref().unwrap_or("?"),
                run.to.as_deref().unwrap_or("?")
            ),
            (None, None) => "none".to_owned(),
        };
        lines.push(format!(
            "{:<16} {:<12} {:<10} {:>8} {:>7} {:<5} {:<5} {}",
            format::clip(&row.name, 16),
            state,
            format::clip(row.version.as_deref().unwrap_or("-"), 10),
            row.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            row.uptime_ms.map_or_else(
                || "-".to_owned(),
                |ms| format::duration(Duration::from_millis(ms))
            ),
            yes_no(row.kill_switch),
            yes_no(row.auto_update),
            detail
        ));
    }
    lines.join("\n")
}
