//! `molt logs [--follow] [--since T] [--level L] [--grep X]`: the
//! gateway's lines laid out as the Logs screen shows them (see
//! [`crate::logline`]), or as written with `--json`.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use molt_protocol::Method;
use molt_protocol::event::EventName;
use molt_protocol::method::{LogsTailParams, LogsTailResult};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::restart::SUCCESSOR_PATIENCE;
use super::session::{ProcessRef, Retry, connect_retrying, wait_for_successor};
use super::{CliError, target};
use crate::client::{CloseKind, GatewayEvent, Incoming, RequestError};
use crate::logline::{Filter, LogLevel, LogLine, MAX_QUERY, date_line, parse_since};
use crate::target::Overrides;

const PATIENCE: Duration = Duration::from_secs(10);
/// The most a filtered tail asks for: the filters pick from these.
const FILTERED_TAIL: u32 = 5000;

pub struct LogsArgs<'a> {
    pub follow: bool,
    /// How many lines of the tail to print, after filtering.
    pub lines: u32,
    pub since: Option<&'a str>,
    pub level: Option<LogLevel>,
    pub grep: Option<&'a str>,
    pub json: bool,
}

/// Filters, then prints, each line; the date goes on a line of its own
/// when it changes.
struct Printer {
    filter: Filter,
    json: bool,
    color: bool,
    kept_before: bool,
    last_date: Option<String>,
}

impl Printer {
    fn new(args: &LogsArgs) -> Result<Printer, CliError> {
        let grep = args.grep.unwrap_or("");
        if grep.chars().count() > MAX_QUERY {
            return Err(CliError::Usage(format!(
                "--grep is {} characters; at most {} are searched for",
                grep.chars().count(),
                MAX_QUERY
            )));
        }
        let since = match args.since {
            Some(text) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                Some(parse_since(text, now).map_err(CliError::Usage)?)
            }
            None => None,
        };
        Ok(Printer {
            filter: Filter::new(args.level, args.grep, since),
            json: args.json,
            color: io::stdout().is_terminal() && crate::runtime::color_enabled(),
            kept_before: false,
            last_date: None,
        })
    }

    fn filtering(&self) -> bool {
        self.filter != Filter::default()
    }

    /// Whether the filters keep `raw`.
    fn keeps(&mut self, raw: &str) -> bool {
        let kept = self
            .filter
            .keeps(raw, &LogLine::parse(raw), self.kept_before);
        self.kept_before = kept;
        kept
    }

    /// Prints one kept line; false once the reader is gone
    /// (`molt logs -f | head`).
    fn print(&mut self, out: &mut impl Write, raw: &str) -> Result<bool, CliError> {
        let written = if self.json {
            writeln!(out, "{}", json!({ "line": raw }))
        } else {
            let line = LogLine::parse(raw);
            let date = match &line.date {
                Some(date) if self.last_date.as_ref() != Some(date) => {
                    self.last_date = Some(date.clone());
                    writeln!(out, "{}", date_line(date))
                }
                _ => Ok(()),
            };
            date.and_then(|()| writeln!(out, "{}", line.plain(self.color)))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(CliError::Output(e)),
        }
    }

    /// The last `n` kept lines of a tail, printed; false once the reader
    /// is gone.
    fn print_tail<'l>(
        &mut self,
        out: &mut impl Write,
        lines: impl IntoIterator<Item = &'l str>,
        n: usize,
    ) -> Result<bool, CliError> {
        let kept: Vec<&str> = lines.into_iter().filter(|l| self.keeps(l)).collect();
        for line in &kept[kept.len().saturating_sub(n)..] {
            if !self.print(out, line)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A followed line: printed when kept; false once the reader is gone.
    fn follow(&mut self, out: &mut impl Write, raw: &str) -> Result<bool, CliError> {
        if self.keeps(raw) {
            self.print(out, raw)
        } else {
            Ok(true)
        }
    }
}

pub async fn logs(
    overrides: &Overrides,
    args: LogsArgs<'_>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut printer = Printer::new(&args)?;
    let follow = args.follow;
    let target = target(overrides)?;
    let (mut client, mut events) = connect_retrying(&target, Retry::HandoffOnly, PATIENCE).await?;
    // Filtered, the last n kept lines may lie far back.
    let ask = if printer.filtering() {
        FILTERED_TAIL
    } else {
        args.lines
    };
    let n = args.lines as usize;
    if !client.hello().features.sends(EventName::LogsLine.as_str()) {
        return polled(client, follow, (ask, n), &mut printer, out).await;
    }
    let params = LogsTailParams {
        lines: Some(ask),
        follow: Some(follow),
    };
    let tail: LogsTailResult = client.call(Method::LogsTail, &params).await?;
    if !printer.print_tail(out, tail.lines.iter().map(String::as_str), n)? {
        return Ok(());
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
            } if !printer.follow(out, &line.line)? => {
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
    (ask, n): (u32, usize),
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<(), CliError> {
    const POLL: Duration = Duration::from_secs(1);
    let mut params = json!({ "limit": ask.clamp(1, 5000) });
    let mut first = true;
    loop {
        let tail = client.request(Method::LogsTail, Some(params)).await?;
        let lines = tail
            .get("lines")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let open = if first {
            printer.print_tail(out, lines, n)?
        } else {
            let mut open = true;
            for line in lines {
                open = printer.follow(out, line)?;
                if !open {
                    break;
                }
            }
            open
        };
        first = false;
        if !open || !follow {
            client.close().await;
            return Ok(());
        }
        let cursor = tail.get("cursor").and_then(Value::as_u64).unwrap_or(0);
        params = json!({ "cursor": cursor, "limit": 5000 });
        tokio::time::sleep(POLL).await;
    }
}
