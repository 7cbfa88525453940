//! `molt restart`: schedule a restart and follow it to the new process.

use molt_protocol::method::MAX_RESTART_REASON;
use std::io::Write;
use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::method::{RestartRequestParams, RestartScheduled};
use serde_json::json;
use tokio::time::Instant;

use super::session::{ProcessRef, Retry, connect_retrying, wait_for_successor};
use super::{CliError, pretty, target, write_out};
use crate::client::{GatewayEvent, Incoming};
use crate::peer::Facts;
use crate::target::Overrides;

const PATIENCE: Duration = Duration::from_secs(10);
/// From the old process's close to the new one's `hello-ok`.
pub const SUCCESSOR_PATIENCE: Duration = Duration::from_secs(60);
/// How often the old process is asked whether its restart failed.
const FAILURE_POLL: Duration = Duration::from_secs(1);

/// What `molt restart` was asked for.
pub struct RestartArgs<'a> {
    pub reason: &'a str,
    pub delay_ms: Option<u64>,
    pub force: bool,
    pub wait: bool,
    pub json: bool,
}

pub async fn restart(
    overrides: &Overrides,
    args: RestartArgs<'_>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if args.reason.trim().is_empty() || args.reason.len() > MAX_RESTART_REASON {
        return Err(CliError::Usage(format!(
            "--reason must be 1 to {MAX_RESTART_REASON} characters"
        )));
    }
    let target = target(overrides)?;
    let (client, mut events) = connect_retrying(&target, Retry::HandoffOnly, PATIENCE).await?;
    let before = ProcessRef::of(&client);
    let params = RestartRequestParams {
        reason: Some(args.reason.to_owned()),
        delay_ms: args.delay_ms,
        skip_deferral: args.force.then_some(true),
    };
    let asked_at = unix_ms();
    let scheduled: RestartScheduled = client.call(Method::RestartRequest, &params).await?;
    if !args.wait {
        client.close().await;
        let text = if args.json {
            pretty(&json!({"scheduled": scheduled, "before": before}))?
        } else {
            scheduled_text(&scheduled)
        };
        return write_out(out, &text);
    }
    if !args.json {
        eprintln!(
            "{}; waiting for the new process",
            scheduled_text(&scheduled)
        );
    }

    // Wait for this process to let go; meanwhile ask whether the restart
    // failed (then the old process keeps serving and never closes).
    let mut poll = tokio::time::interval(FAILURE_POLL);
    let close = loop {
        tokio::select! {
            incoming = events.recv() => match incoming {
                Incoming::Closed(close) => break close,
                Incoming::Event { event: GatewayEvent::RestartDeferred(d), .. } if !args.json => {
                    eprintln!("deferred: {} pending, waited {} ms", crate::format::pending(&d.pending_work), d.waited_ms);
                }
                _ => {}
            },
            _ = poll.tick() => {
                let Ok(status) = client.request(Method::Status, None).await else {
                    continue;
                };
                let facts = Facts::read(client.hello(), Some(&status));
                if let Some(failure) = facts
                    .restart
                    .and_then(|r| r.last_failure)
                    .filter(|f| f.at >= asked_at)
                {
                    client.close().await;
                    return Err(CliError::Other(format!(
                        "the restart failed: {}; {} keeps serving",
                        failure.reason,
                        before.name()
                    )));
                }
            }
        }
    };
    let closed_at = Instant::now();
    tracing::info!(%close, "old process closed");
    let (client, _events, outage) =
        wait_for_successor(&target, &before, closed_at, SUCCESSOR_PATIENCE).await?;
    let after = ProcessRef::of(&client);
    client.close().await;
    let text = if args.json {
        pretty(&json!({
            "scheduled": scheduled,
            "before": before,
            "after": after,
            "close": close.code,
            "gapMs": outage.gap.as_millis() as u64,
            "darkMs": outage.dark.map(|d| d.as_millis() as u64),
        }))?
    } else {
        format!(
            "restarted: {} → {}, gap {} ms",
            before.name(),
            after.name(),
            outage.gap.as_millis()
        )
    };
    write_out(out, &text)
}

fn scheduled_text(s: &RestartScheduled) -> String {
    let coalesced = if s.coalesced {
        ", joined the restart already pending"
    } else {
        ""
    };
    format!(
        "restart scheduled: {} in {} ms ({}){coalesced}",
        s.mode, s.delay_ms, s.reason
    )
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
