//! `molt logs [--follow]`.

use std::io::{self, Write};
use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::event::EventName;
use molt_protocol::method::{LogsTailParams, LogsTailResult};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::restart::SUCCESSOR_PATIENCE;
use super::session::{ProcessRef, Retry, connect_retrying, wait_for_successor};
use super::{CliError, target};
use crate::client::{CloseKind, GatewayEvent, Incoming, RequestError};
use crate::target::Overrides;

const PATIENCE: Duration = Duration::from_secs(10);

/// Prints one line; false once the reader is gone (`molt logs -f | head`).
fn emit(out: &mut impl Write, json: bool, line: &str) -> Result<bool, CliError> {
    let written = if json {
        writeln!(out, "{}", json!({ "line": line }))
    } else {
        writeln!(out, "{line}")
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Output(e)),
    }
}

pub async fn logs(
    overrides: &Overrides,
    follow: bool,
    lines: u32,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let target = target(overrides)?;
    let (mut client, mut events) = connect_retrying(&target, Retry::HandoffOnly, PATIENCE).await?;
    if !client.hello().features.sends(EventName::LogsLine.as_str()) {
        return polled(client, follow, lines, json, out).await;
    }
    let params = LogsTailParams {
        lines: Some(lines),
        follow: Some(follow),
    };
    let tail: LogsTailResult = client.call(Method::LogsTail, &params).await?;
    for line in &tail.lines {
        if !emit(out, json, line)? {
            return Ok(());
        }
    }
    if !follow {
        client.close().await;
        return Ok(());
    }
    loop {
        match events.recv().await {
            Incoming::Event {
                event: GatewayEvent::LogsLine(line),
                ..
            } if !emit(out, json, &line.line)? => {
                client.close().await;
                return Ok(());
            }
            // A restart: follow the new process's log.
            Incoming::Closed(close) if close.kind() == CloseKind::HandOff => {
                let old = ProcessRef::of(&client);
                let (next, next_events, _) =
                    wait_for_successor(&target, &old, Instant::now(), SUCCESSOR_PATIENCE).await?;
                let params = LogsTailParams {
                    lines: Some(0),
                    follow: Some(true),
                };
                next.call::<_, LogsTailResult>(Method::LogsTail, &params)
                    .await?;
                (client, events) = (next, next_events);
            }
            Incoming::Closed(close) => {
                return Err(CliError::Request(RequestError::Disconnected {
                    close: Some(close),
                }));
            }
            _ => {}
        }
    }
}

/// A gateway without `logs.line` events (OpenClaw): `logs.tail` takes
/// `{cursor?, limit?}` and answers with a cursor to ask from next time.
async fn polled(
    client: crate::client::Client,
    follow: bool,
    lines: u32,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    const POLL: Duration = Duration::from_secs(1);
    let limit = lines.clamp(1, 5000);
    let mut params = json!({ "limit": limit });
    loop {
        let tail = client.request(Method::LogsTail, Some(params)).await?;
        for line in tail
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !emit(out, json, line)? {
                client.close().await;
                return Ok(());
            }
        }
        if !follow {
            client.close().await;
            return Ok(());
        }
        let cursor = tail.get("cursor").and_then(Value::as_u64).unwrap_or(0);
        params = json!({ "cursor": cursor, "limit": 5000 });
        tokio::time::sleep(POLL).await;
    }
}
