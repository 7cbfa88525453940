use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::text::{failed_step, row, rows};
use super::theme::Theme;
use crate::app::{App, RunStage, RunView, StepView};
use crate::format;
use crate::peer::{Claim, ClaimSource, Live, Outcome, UpdateApi};

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(Line::styled(" Update ", theme.heading()));
    let inner = block.inner(area);
    let (width, height) = (usize::from(inner.width), usize::from(inner.height));
    let lines = match &app.update.run {
        Some(run) => run_lines(app, run, theme, (width, height)),
        None => idle_lines(app, theme, width),
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// No run: what runs, what is available, what an update would do.
fn idle_lines<'a>(app: &'a App, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = Vec::new();
    let Some(snap) = &app.status else {
        lines.push(Line::raw("Waiting for the gateway's status ..."));
        return lines;
    };
    let s = &snap.facts;
    let now = app.gateway_now_ms();
    lines.push(row(
        theme,
        "running",
        match (&s.version, s.pid) {
            (Some(v), Some(pid)) => format!("{v} (pid {pid})"),
            (Some(v), None) => format!("{v} (pid not reported)"),
            (None, _) => format::UNKNOWN.to_owned(),
        },
        theme.ok(),
    ));
    let available = app
        .update
        .status
        .as_ref()
        .and_then(|u| u.update_available.as_ref())
        .or(s.update_available.as_ref());
    lines.push(row(
        theme,
        "available",
        format::update_available(available),
        if available.is_some() {
            theme.warn()
        } else {
            plain
        },
    ));
    match &app.update.check {
        Some(Ok(check)) => lines.push(row(
            theme,
            "checked",
            format!(
                "{} on {}: latest {}",
                now.map(|n| format::relative(check.checked_at, n))
                    .unwrap_or_default(),
                format::channel(check.channel),
                check.latest_version.as_deref().unwrap_or("unknown")
            ),
            plain,
        )),
        Some(Err(problem)) => lines.push(row(theme, "check", problem.clone(), theme.error())),
        None => {}
    }
    let report = app.update.status.as_ref();
    if let Some(campaign) = report.and_then(|r| r.campaign.as_ref()) {
        let when = match (campaign.apply_at, now) {
            (Some(at), Some(now)) => format!(", applies {}", format::relative(at, now)),
            _ => String::new(),
        };
        let held = if campaign.hold_until.is_some() {
            " (held)"
        } else {
            ""
        };
        lines.push(row(
            theme,
            "campaign",
            format!(
                "automatic update {}{when}{held}; p holds it",
                campaign.state
            ),
            theme.warn(),
        ));
    }
    let latest = report
        .and_then(|u| u.last_run.as_ref())
        .or(s.latest_run.as_ref());
    lines.push(row(
        theme,
        "latest run",
        latest
            .map(|r| format::run(r, now))
            .unwrap_or_else(|| "none".to_owned()),
        plain,
    ));
    if let Some(sentinel) = report.and_then(|r| r.sentinel.as_ref())
        && app.update_api() != UpdateApi::Molt
    {
        lines.push(row(theme, "sentinel", claim_text(sentinel), plain));
    }
    if let Some(error) = &app.update.status_error {
        lines.push(row(theme, "status", error.clone(), theme.error()));
    }
    lines.push(Line::raw(""));
    lines.extend(rows(
        theme,
        "restart",
        &format::restart_consequence(s, app.update_api()),
        plain,
        width,
    ));
    lines.push(Line::raw(""));
    let mut keys = vec![
        Span::raw("  Press "),
        Span::styled("u", theme.key()),
        Span::raw(" to update; a dialog shows the target and asks first."),
    ];
    if app.serves(molt_protocol::Method::UpdateCheck.as_str()) {
        keys.extend([
            Span::raw(" "),
            Span::styled("r", theme.key()),
            Span::raw(" checks the registry now."),
        ]);
    }
    lines.push(Line::from(keys));
    lines
}

fn run_lines<'a>(
    app: &'a App,
    run: &'a RunView,
    theme: &Theme,
    (width, height): (usize, usize),
) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = Vec::new();
    let id = match (&run.run_id, &run.stage) {
        (Some(id), _) => id.to_string(),
        (None, RunStage::Starting) => "(starting)".to_owned(),
        // OpenClaw 2026.4.x names no run.
        (None, _) => "(no run id)".to_owned(),
    };
    let whose = if run.ours { "" } else { ", started elsewhere" };
    let from = run.from_version.as_deref().unwrap_or("?");
    let to = run.target.as_deref().unwrap_or("?");
    lines.extend(rows(
        theme,
        "run",
        &format!("{id}{whose}: {from} → {to}"),
        theme.heading(),
        width,
    ));
    if let Some(note) = &run.note {
        lines.push(row(theme, "note", note.clone(), plain));
    }
    let (state, style) = stage_text(app, run, theme);
    lines.extend(rows(theme, "state", &state, style, width));
    if let Some(phase) = &run.phase
        && !run.stage.is_done()
    {
        lines.push(row(theme, "phase", phase.clone(), plain));
    }
    if let Some(warning) = &run.warning {
        lines.extend(rows(theme, "", warning, theme.warn(), width));
    }
    if let Some(advice) = &run.advice {
        lines.extend(rows(theme, "advice", advice, theme.warn(), width));
    }
    if let Some(handoff) = &app.handoff
        && !matches!(run.stage, RunStage::Starting | RunStage::Running)
    {
        lines.extend(rows(
            theme,
            "restart",
            &handoff.describe(),
            theme.warn(),
            width,
        ));
    } else if let Some(restart) = &run.restart
        && !run.stage.is_done()
    {
        // A judged run's restart is over: the verdict and its steps say how.
        lines.extend(rows(theme, "restart", &restart.describe(), plain, width));
    }
    // After a restart, or once judged against the live process: before the
    // steps, so a short terminal shows it first.
    if run.restarted
        || matches!(
            run.stage,
            RunStage::Verified { .. } | RunStage::Mismatch { .. }
        )
    {
        lines.extend(truth_lines(app, run, theme, width));
    }
    let mut steps = vec![Line::raw(""), Line::styled("  Steps", theme.heading())];
    if run.steps.is_empty() {
        steps.push(Line::styled("    none reported yet", theme.dim()));
    }
    let name_width = run
        .steps
        .iter()
        .map(|s| s.name.chars().count() + 1)
        .max()
        .unwrap_or(0)
        .max(14);
    for step in &run.steps {
        steps.push(step_line(app, step, theme, name_width));
    }
    // A verified update's changes, before its steps and in the rows the
    // steps leave: what the operator reads next.
    if let (RunStage::Verified { version, .. }, Some(log)) = (&run.stage, &run.changelog) {
        let room = height.saturating_sub(lines.len() + steps.len());
        let versions = (from, version.as_str());
        lines.extend(super::changes::lines(log, versions, theme, width, room));
    }
    lines.extend(steps);
    if let Some(record) = run.failing_step().and_then(|s| s.record.as_ref()) {
        lines.extend(failed_step(record, theme, width));
    }
    lines
}

/// What the install claims beside what the live process reports: after
/// an update the version on disk and the version running can differ.
fn truth_lines<'a>(app: &'a App, run: &RunView, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = vec![Line::raw(""), Line::styled("  Truth", theme.heading())];
    let report = app.update.status.as_ref();
    let record = app
        .update
        .record
        .as_ref()
        .filter(|r| r.run_id.is_some() && r.run_id == run.run_id);
    let claim = match app.update_api() {
        UpdateApi::Runs => record
            .or(report.and_then(|r| r.record_for(run.run_id.as_ref())))
            .or(report.and_then(|r| r.sentinel.as_ref())),
        _ => report
            .and_then(|r| r.sentinel.as_ref().or(r.record_for(run.run_id.as_ref())))
            .or(record),
    };
    let claims = match claim {
        Some(claim) => claim_text(claim),
        None => match &run.target {
            Some(target) => format!("the run installs {target}"),
            None => "nothing recorded yet".to_owned(),
        },
    };
    lines.extend(rows(theme, "claims", &claims, plain, width));
    let live = app.live().unwrap_or_default();
    lines.extend(rows(theme, "live", &live_text(&live), plain, width));
    let verdict = match &run.stage {
        RunStage::Mismatch { claimed, running } => Some((
            format!("MISMATCH: install says {claimed}, process runs {running}"),
            theme.error(),
        )),
        RunStage::Verified { version, .. } => Some((
            format!("the process runs {version}, as the install says"),
            theme.ok(),
        )),
        // A failure can leave the new tree installed under the old process.
        RunStage::Failed { .. } => match (&run.target, live.version()) {
            (Some(target), Some(running)) if target != running => Some((
                format!("MISMATCH: install says {target}, process runs {running}"),
                theme.error(),
            )),
            _ => None,
        },
        _ => None,
    };
    if let Some((text, style)) = verdict {
        lines.extend(rows(theme, "verdict", &text, style, width));
    }
    let before = run.from_live.as_ref();
    let process = match (
        &live.boot_id,
        before.and_then(|l| l.boot_id.as_ref()),
        live.pid,
        before.and_then(|l| l.pid),
    ) {
        (Some(now), Some(was), _, _) if now == was => {
            format!("boot id {now}, unchanged: the same process")
        }
        (Some(now), Some(was), _, _) => format!("new boot id {now} (was {was})"),
        (Some(now), None, _, _) => format!("new boot id {now}"),
        (None, _, Some(now), Some(was)) if now == was => format!("same pid {now}"),
        (None, _, Some(now), Some(was)) => format!("new pid {now} (was {was})"),
        _ => "not reported by this gateway (no boot id, no pid)".to_owned(),
    };
    lines.extend(rows(theme, "process", &process, plain, width));
    if run.restarted
        && let Some(outage) = &app.outage
    {
        let dark = match outage.dark {
            Some(dark) => format!(
                "{} ({} of {} reconnect attempts refused; ±{})",
                format::gap(dark),
                outage.refused,
                outage.attempts,
                format::gap(outage.precision)
            ),
            None => format!(
                "never: none of {} reconnect attempts was refused",
                outage.attempts
            ),
        };
        let style = if outage.dark.is_some() {
            theme.warn()
        } else {
            theme.ok()
        };
        lines.extend(rows(theme, "port dark", &dark, style, width));
    }
    lines
}

/// `sentinel ok: 2026.4.26 → 2026.9.6` or `run 97f9…: succeeded, …`.
fn claim_text(claim: &Claim) -> String {
    let what = match claim.source {
        ClaimSource::Sentinel => "sentinel".to_owned(),
        ClaimSource::Record => format!(
            "record {}",
            claim
                .run_id
                .as_ref()
                .map_or_else(|| "?".to_owned(), |id| format::clip(id.as_str(), 13))
        ),
    };
    let outcome = match (claim.source, claim.outcome) {
        (ClaimSource::Sentinel, Outcome::Succeeded) => "ok".to_owned(),
        _ => format::outcome(claim),
    };
    let mut text = format!(
        "{what} {outcome}: {} → {}",
        claim.before.as_deref().unwrap_or("?"),
        claim.target_version().unwrap_or("?")
    );
    if let Some(build) = &claim.after_build_id {
        text.push_str(&format!(" (build {build})"));
    }
    if let Some(reason) = &claim.reason {
        text.push_str(&format!(", {reason}"));
    }
    if let Some(verified) = &claim.verified
        && let Some(version) = &verified.version
    {
        text.push_str(&format!(
            "; saw {version} running{}",
            verified
                .pid
                .map(|p| format!(" as pid {p}"))
                .unwrap_or_default()
        ));
    }
    if let Some(ms) = claim.downtime_ms {
        text.push_str(&format!("; downtime {}", format::millis(ms)));
    }
    text
}

/// `2026.4.26 (hello-ok), 2026.4.26 (status), pid 9408, build …`.
fn live_text(live: &Live) -> String {
    let mut parts = Vec::new();
    parts.push(format!(
        "{} (hello-ok)",
        live.hello_version.as_deref().unwrap_or(format::UNKNOWN)
    ));
    if let Some(status) = &live.status_version {
        parts.push(format!("{status} (status)"));
    }
    parts.push(match live.pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid not reported".to_owned(),
    });
    if let Some(build) = &live.build_id {
        parts.push(format!("build {build}"));
    }
    parts.join(", ")
}

fn stage_text(app: &App, run: &RunView, theme: &Theme) -> (String, Style) {
    let spin = super::spinner(app);
    let elapsed = format::duration(app.now().saturating_duration_since(run.started_at));
    match &run.stage {
        RunStage::Starting => (format!("{spin} starting ({elapsed})"), theme.warn()),
        RunStage::Running => (format!("{spin} running ({elapsed})"), theme.warn()),
        RunStage::Restarting => (
            format!("{spin} restarting into the new version"),
            theme.warn(),
        ),
        RunStage::Reconnecting => (
            format!("{spin} handing off; waiting for the new process"),
            theme.warn(),
        ),
        RunStage::Verifying => (
            match app.update_api() {
                UpdateApi::Runs => format!("{spin} reconnected; reading the run record"),
                _ => format!("{spin} reconnected; verifying with update.status"),
            },
            theme.warn(),
        ),
        RunStage::Verified { version, pid } => (
            // The status answer may name the pid after the verdict came.
            match pid.or_else(|| app.facts().and_then(|f| f.pid)) {
                Some(pid) => format!("✓ verified: v{version} runs as pid {pid}"),
                None => format!("✓ verified: v{version} runs (pid not reported)"),
            },
            theme.ok(),
        ),
        RunStage::Mismatch { claimed, running } => (
            format!("✗ not in effect: install says {claimed}, process runs {running}"),
            theme.error(),
        ),
        RunStage::Failed {
            reason,
            rolled_back: true,
        } => (
            format!(
                "✗ failed and rolled back to {}: {}",
                run.from_version
                    .as_deref()
                    .unwrap_or("the previous version"),
                run.explain(reason.clone())
            ),
            theme.error(),
        ),
        RunStage::Failed { reason, .. } => (
            format!("✗ failed: {}", run.explain(reason.clone())),
            theme.error(),
        ),
        RunStage::Skipped { reason } => (format!("– skipped: {reason}"), theme.value()),
    }
}

fn step_line<'a>(app: &App, step: &StepView, theme: &Theme, name_width: usize) -> Line<'a> {
    let (mark, style) = if !step.finished() {
        (super::spinner(app), theme.warn())
    } else if step.failed() {
        ("✗", theme.error())
    } else if step
        .record
        .as_ref()
        .and_then(|r| r.status.as_deref())
        .is_some_and(|s| s == "skipped")
    {
        ("–", theme.dim())
    } else {
        ("✓", theme.ok())
    };
    let took = match step.duration_ms {
        Some(ms) => format::millis(ms),
        None if step.finished() => String::new(),
        None => format::duration(app.now().saturating_duration_since(step.started_at)),
    };
    let exit = match step.exit_code {
        Some(code) if code != 0 => format!("  exit {code}"),
        _ => String::new(),
    };
    Line::from(vec![
        Span::styled(format!("    {mark} "), style),
        Span::styled(format!("{:<name_width$}", step.name), style),
        Span::raw(format!("{took:>9}{exit}")),
    ])
}
