//! `molt update`: resolve the target, confirm, run, follow the restart,
//! and succeed only when `update.status` shows the new version verified.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::ids::RunId;
use molt_protocol::method::{
    UpdateRunParams, UpdateRunResult, UpdateStatusParams, UpdateStatusResult,
};
use molt_protocol::update::UpdateStatus;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::time::Instant;

use super::restart::SUCCESSOR_PATIENCE;
use super::session::{ProcessRef, Retry, connect_retrying, wait_for_successor};
use super::{CliError, decode, pretty, target, write_out};
use crate::app::{Verdict, validate_tag, verdict};
use crate::client::{Client, GatewayEvent, Incoming, RequestError};
use crate::format;
use crate::target::Overrides;

const PATIENCE: Duration = Duration::from_secs(10);
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the successor may take to record its verification.
const VERIFY_PATIENCE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);
use molt_protocol::method::MAX_UPDATE_NOTE as MAX_NOTE;

/// What `molt update` was asked for.
pub struct UpdateArgs<'a> {
    pub tag: Option<&'a str>,
    pub note: Option<&'a str>,
    pub yes: bool,
    pub json: bool,
}

pub async fn update(
    overrides: &Overrides,
    args: UpdateArgs<'_>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    check_args(&args, std::io::stdin().is_terminal())?;
    let target = target(overrides)?;
    let (client, mut events) = connect_retrying(&target, Retry::HandoffOnly, PATIENCE).await?;
    let before = ProcessRef::of(&client);
    let tag = args.tag.map(str::to_owned);

    let preview_params = UpdateRunParams {
        tag: tag.clone(),
        dry_run: Some(true),
        ..UpdateRunParams::default()
    };
    let preview: UpdateRunResult =
        call(&client, Method::UpdateRun, &preview_params, PREVIEW_TIMEOUT).await?;
    let goal = preview.result.after.version.clone();
    match preview.result.status {
        UpdateStatus::Ok => {}
        UpdateStatus::Skipped if preview.result.is_planned() => {}
        UpdateStatus::Skipped => {
            return already_there(&client, &before, goal, args.json, out).await;
        }
        UpdateStatus::Error => {
            return Err(CliError::Other(format!(
                "the update cannot run: {}",
                preview
                    .result
                    .reason
                    .as_deref()
                    .unwrap_or("the dry run failed")
            )));
        }
    }
    let goal_text = goal.clone().unwrap_or_else(|| "?".to_owned());
    if !args.yes {
        let question = format!(
            "Update moltd {} → {goal_text}?\n{}.\nProceed? [y/N] ",
            before.version,
            format::restart_consequence(&client.hello().snapshot)
        );
        if !confirm(question).await {
            client.close().await;
            return Err(CliError::Other("cancelled; nothing changed".to_owned()));
        }
    }

    let params = UpdateRunParams {
        note: args.note.map(str::to_owned),
        tag,
        ..UpdateRunParams::default()
    };
    let params_value = serde_json::to_value(&params).map_err(|e| CliError::Other(e.to_string()))?;
    let timeout = crate::net::timeout_for(Method::UpdateRun, Some(&params_value), PATIENCE);
    let run = client.request_with_timeout(Method::UpdateRun, Some(params_value), timeout);
    tokio::pin!(run);
    let mut run_id: Option<RunId> = None;
    let mut still_open = true;
    let answer = loop {
        tokio::select! {
            result = &mut run => break Some(result),
            incoming = events.recv(), if still_open => match incoming {
                Incoming::Event { event: GatewayEvent::UpdateProgress(p), .. } => {
                    run_id.get_or_insert(p.run_id.clone());
                    if let Some(step) = p.step {
                        let took = step.duration_ms.map(|ms| format!(" ({})", format::millis(ms))).unwrap_or_default();
                        let exit = step.exit_code.filter(|c| *c != 0).map(|c| format!(" exit {c}")).unwrap_or_default();
                        eprintln!("  {} {}{took}{exit}", step.name, step.state);
                    }
                }
                Incoming::Closed(_) => still_open = false,
                _ => {}
            },
        }
    };
    match answer {
        Some(Ok(value)) => {
            let result: UpdateRunResult = decode(Method::UpdateRun, value)?;
            run_id = Some(result.run_id.clone());
            match result.result.status {
                UpdateStatus::Ok => eprintln!("installed {goal_text}; restarting"),
                UpdateStatus::Skipped => {
                    return already_there(&client, &before, goal, args.json, out).await;
                }
                UpdateStatus::Error => {
                    print_failure(&result);
                    return Err(CliError::Other(format!(
                        "update {} failed: {}; {} keeps running",
                        result.run_id,
                        result.result.reason.as_deref().unwrap_or("error"),
                        before.version
                    )));
                }
            }
        }
        // The restart took the socket before the answer came.
        Some(Err(RequestError::Disconnected { .. })) | None => {}
        Some(Err(e)) => return Err(e.into()),
    }

    // Wait for the old process to let go; a failed successor means it
    // never does, and update.status says so.
    if still_open && client.close_info().is_none() {
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                incoming = events.recv() => if let Incoming::Closed(_) = incoming { break },
                _ = poll.tick() => {
                    let params = UpdateStatusParams { run_id: run_id.clone() };
                    let Ok(status) = client.call::<_, UpdateStatusResult>(Method::UpdateStatus, &params).await else {
                        continue;
                    };
                    if let Some(Verdict::Failed { reason, rolled_back }) =
                        verdict(run_id.as_ref(), goal.as_deref(), &status, Some(before.pid))
                    {
                        return Err(failed(&reason, rolled_back, &before));
                    }
                }
            }
        }
    }
    let closed_at = Instant::now();
    let (client, _events, gap) =
        wait_for_successor(&target, &before, closed_at, SUCCESSOR_PATIENCE).await?;
    let after = ProcessRef::of(&client);
    eprintln!(
        "handed off: pid {} v{} → pid {} v{}, gap {} ms",
        before.pid,
        before.version,
        after.pid,
        after.version,
        gap.as_millis()
    );

    let deadline = Instant::now() + VERIFY_PATIENCE;
    let found = loop {
        let params = UpdateStatusParams {
            run_id: run_id.clone(),
        };
        let status: UpdateStatusResult = client.call(Method::UpdateStatus, &params).await?;
        if let Some(found) = verdict(run_id.as_ref(), goal.as_deref(), &status, Some(after.pid)) {
            break found;
        }
        if Instant::now() >= deadline {
            return Err(CliError::Other(format!(
                "pid {} v{} runs, but update.status has no verdict on the run after {}s",
                after.pid,
                after.version,
                VERIFY_PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    client.close().await;
    match found {
        Verdict::Verified { version, pid } => {
            let text = if args.json {
                pretty(&json!({
                    "ok": true,
                    "runId": run_id,
                    "before": before,
                    "after": after,
                    "gapMs": gap.as_millis() as u64,
                    "verified": {"version": version, "pid": pid},
                }))?
            } else {
                format!("verified: v{version} runs as pid {pid}")
            };
            write_out(out, &text)
        }
        Verdict::Failed {
            reason,
            rolled_back,
        } => Err(failed(&reason, rolled_back, &before)),
        Verdict::Skipped { reason } => {
            Err(CliError::Other(format!("the run was skipped: {reason}")))
        }
    }
}

/// Refuses bad input before anything is sent.
fn check_args(args: &UpdateArgs<'_>, interactive: bool) -> Result<(), CliError> {
    if let Some(tag) = args.tag {
        if tag.is_empty() {
            return Err(CliError::Usage(
                "--tag needs a version or a dist-tag".to_owned(),
            ));
        }
        validate_tag(tag).map_err(|p| CliError::Usage(format!("bad --tag {tag:?}: {p}")))?;
    }
    if args.note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(CliError::Usage(format!(
            "--note is limited to {MAX_NOTE} characters"
        )));
    }
    if !args.yes && !interactive {
        return Err(CliError::Usage(
            "stdin is not a terminal: pass --yes to update without asking".to_owned(),
        ));
    }
    Ok(())
}

/// Nothing to install: succeed only if the answering process runs the goal.
async fn already_there(
    client: &Client,
    before: &ProcessRef,
    goal: Option<String>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let status: UpdateStatusResult = client
        .call(Method::UpdateStatus, &UpdateStatusParams::default())
        .await?;
    if goal.as_ref().is_some_and(|g| *g != status.running_version) {
        return Err(CliError::Other(format!(
            "skipped, but {} runs, not {}",
            status.running_version,
            goal.unwrap_or_default()
        )));
    }
    let text = if json {
        pretty(&json!({"ok": true, "upToDate": true, "running": before}))?
    } else {
        format!(
            "already up to date: v{} runs as pid {}",
            status.running_version, before.pid
        )
    };
    write_out(out, &text)
}

fn failed(reason: &str, rolled_back: bool, before: &ProcessRef) -> CliError {
    let tail = if rolled_back {
        format!("; rolled back, v{} keeps running", before.version)
    } else {
        String::new()
    };
    CliError::Other(format!("update failed: {reason}{tail}"))
}

/// The failing step's command and the tail of its output, on stderr.
fn print_failure(result: &UpdateRunResult) {
    let Some(step) = result.result.steps.iter().find(|s| s.failed()) else {
        return;
    };
    eprintln!("step {} failed: {}", step.name, step.command);
    for text in [&step.stderr_head, &step.stderr_tail, &step.stdout_tail] {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            eprintln!("  {line}");
        }
    }
}

/// Asks on stderr, reads a line from stdin without blocking the runtime
/// (the connection must keep answering pings meanwhile).
async fn confirm(question: String) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    matches!(answer, Ok(Ok(line)) if matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

async fn call<T: DeserializeOwned>(
    client: &Client,
    method: Method,
    params: &impl serde::Serialize,
    timeout: Duration,
) -> Result<T, CliError> {
    let params = serde_json::to_value(params).map_err(|e| CliError::Other(e.to_string()))?;
    let value = client
        .request_with_timeout(method, Some(params), timeout)
        .await?;
    decode(method, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(tag: Option<&'a str>, note: Option<&'a str>, yes: bool) -> UpdateArgs<'a> {
        UpdateArgs {
            tag,
            note,
            yes,
            json: false,
        }
    }

    #[test]
    fn bad_input_is_refused_before_connecting() {
        assert!(check_args(&args(Some("0.2.0"), Some("weekly"), true), false).is_ok());
        assert!(check_args(&args(None, None, false), true).is_ok());
        let long = "x".repeat(MAX_NOTE + 1);
        for bad in [
            args(Some(""), None, true),
            args(Some("1;rm"), None, true),
            args(None, Some(&long), true),
            args(None, None, false),
        ] {
            assert!(matches!(check_args(&bad, false), Err(CliError::Usage(_))));
        }
    }
}
