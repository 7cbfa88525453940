use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::{App, RunStage, RunView, StepView};
use crate::format;

const LABEL: usize = 12;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(Line::styled(" Update ", theme.heading()));
    let lines = match &app.update.run {
        Some(run) => run_lines(app, run, theme),
        None => idle_lines(app, theme),
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

pub(super) fn row<'a>(
    theme: &Theme,
    label: &str,
    value: impl Into<String>,
    style: Style,
) -> Line<'a> {
    labeled(theme, 2, label, value, style)
}

/// `label` in its column at `indent`, then the value.
pub(super) fn labeled<'a>(
    theme: &Theme,
    indent: usize,
    label: &str,
    value: impl Into<String>,
    style: Style,
) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{:indent$}{label:<LABEL$}", ""), theme.label()),
        Span::styled(value.into(), style),
    ])
}

/// No run: what runs, what is available, what an update would do.
fn idle_lines<'a>(app: &'a App, theme: &Theme) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = Vec::new();
    let Some(snap) = &app.status else {
        lines.push(Line::raw("Waiting for the gateway's status ..."));
        return lines;
    };
    let s = &snap.status;
    let now = app.gateway_now_ms();
    lines.push(row(
        theme,
        "running",
        format!("{} (pid {})", s.version, s.pid),
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
    let latest = app
        .update
        .status
        .as_ref()
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
    if let Some(error) = &app.update.status_error {
        lines.push(row(theme, "status", error.clone(), theme.error()));
    }
    lines.push(Line::raw(""));
    lines.push(row(theme, "restart", format::restart_consequence(s), plain));
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw("  Press "),
        Span::styled("u", theme.key()),
        Span::raw(" to update; a dialog shows the target and asks first. "),
        Span::styled("r", theme.key()),
        Span::raw(" checks the registry now."),
    ]));
    lines
}

fn run_lines<'a>(app: &'a App, run: &'a RunView, theme: &Theme) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = Vec::new();
    let id = run
        .run_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_else(|| "(starting)".to_owned());
    let whose = if run.ours { "" } else { ", started elsewhere" };
    let from = run.from_version.as_deref().unwrap_or("?");
    let to = run.target.as_deref().unwrap_or("?");
    lines.push(row(
        theme,
        "run",
        format!("{id}{whose}: {from} → {to}"),
        theme.heading(),
    ));
    if let Some(note) = &run.note {
        lines.push(row(theme, "note", note.clone(), plain));
    }
    lines.push(stage_line(app, run, theme));
    if let Some(warning) = &run.warning {
        lines.push(row(theme, "", warning.clone(), theme.warn()));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("  Steps", theme.heading()));
    if run.steps.is_empty() {
        lines.push(Line::styled("    none reported yet", theme.dim()));
    }
    for step in &run.steps {
        lines.push(step_line(app, step, theme));
    }
    if let Some(step) = run.failing_step() {
        lines.extend(failing_output(step, theme));
    }
    if let Some(handoff) = &app.handoff
        && !matches!(run.stage, RunStage::Starting | RunStage::Running)
    {
        lines.push(Line::raw(""));
        lines.push(row(theme, "restart", handoff.describe(), theme.warn()));
    } else if let Some(restart) = &run.restart {
        lines.push(Line::raw(""));
        lines.push(row(
            theme,
            "restart",
            format!(
                "{} in {} ms ({})",
                restart.mode, restart.delay_ms, restart.reason
            ),
            plain,
        ));
    }
    lines
}

fn stage_line<'a>(app: &App, run: &RunView, theme: &Theme) -> Line<'a> {
    let spin = super::spinner(app);
    let elapsed = format::duration(app.now().saturating_duration_since(run.started_at));
    let (text, style) = match &run.stage {
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
            format!("{spin} reconnected; verifying with update.status"),
            theme.warn(),
        ),
        RunStage::Verified { version, pid } => (
            format!("✓ verified: v{version} runs as pid {pid}"),
            theme.ok(),
        ),
        RunStage::Failed {
            reason,
            rolled_back: true,
        } => (
            format!(
                "✗ failed and rolled back to {}: {reason}",
                run.from_version
                    .as_deref()
                    .unwrap_or("the previous version")
            ),
            theme.error(),
        ),
        RunStage::Failed { reason, .. } => (format!("✗ failed: {reason}"), theme.error()),
        RunStage::Skipped { reason } => (format!("– skipped: {reason}"), theme.value()),
    };
    row(theme, "state", text, style)
}

fn step_line<'a>(app: &App, step: &StepView, theme: &Theme) -> Line<'a> {
    let (mark, style) = if !step.finished() {
        (super::spinner(app), theme.warn())
    } else if step.failed() {
        ("✗", theme.error())
    } else {
        ("✓", theme.ok())
    };
    let took = match step.duration_ms {
        Some(ms) => format::millis(ms),
        None => format::duration(app.now().saturating_duration_since(step.started_at)),
    };
    let exit = match step.exit_code {
        Some(code) if code != 0 => format!("  exit {code}"),
        _ => String::new(),
    };
    Line::from(vec![
        Span::styled(format!("    {mark} "), style),
        Span::styled(format!("{:<14}", step.name), style),
        Span::raw(format!("{took:>9}{exit}")),
    ])
}

/// Head and tail of the failing step's output: the first lines say what
/// ran, the last ones why it stopped.
fn failing_output<'a>(step: &StepView, theme: &Theme) -> Vec<Line<'a>> {
    let Some(record) = &step.record else {
        return Vec::new();
    };
    let mut lines = vec![Line::raw("")];
    lines.push(Line::styled(
        format!("  {} failed: {}", step.name, record.command),
        theme.error(),
    ));
    let parts = [
        ("stderr head", &record.stderr_head),
        ("stderr tail", &record.stderr_tail),
        ("stdout tail", &record.stdout_tail),
    ];
    for (label, text) in parts {
        let text: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if text.is_empty() {
            continue;
        }
        lines.push(Line::styled(format!("  {label}:"), theme.label()));
        for line in text.iter().rev().take(6).rev() {
            lines.push(Line::raw(format!("    {line}")));
        }
    }
    lines
}
