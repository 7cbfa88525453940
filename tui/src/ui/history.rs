use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::list;
use super::text::{failed_step, row, rows};
use super::theme::Theme;
use crate::app::App;
use crate::format;
use crate::peer::{Claim, Outcome};

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let view = &app.history;
    let now = app.gateway_now_ms();
    let header = Line::styled(
        format!(
            " {:<8} {:<10} {:<12} {:<17} {:>8}  {}",
            "when", "run", "outcome", "versions", "took", "by"
        ),
        theme.label(),
    );
    let source = list::Source {
        title: " History ",
        unserved: view.unserved.as_deref(),
        items: view.runs.as_deref(),
        error: view.error.as_deref(),
        method: "update.history",
        empty: "No update runs recorded yet.",
    };
    let listed = list::render(frame, area, theme, source, header, view.selected, |run| {
        run_row(run, now, theme)
    });
    if let (Some((_, detail_area)), Some(run)) = (listed, view.selected_run()) {
        let width = usize::from(detail_area.width);
        frame.render_widget(Paragraph::new(details(run, theme, width)), detail_area);
    }
}

fn run_row<'a>(run: &Claim, now: Option<u64>, theme: &Theme) -> Line<'a> {
    let at = run.finished_at.or(run.updated_at);
    let when = match (now, at) {
        (Some(now), Some(at)) => format::ago_short(at, now),
        _ => String::new(),
    };
    let took = match (run.finished_at, run.requested_at) {
        (Some(end), Some(start)) => format::millis(end.saturating_sub(start)),
        _ => "-".to_owned(),
    };
    let versions = format!(
        "{} → {}",
        run.before.as_deref().unwrap_or("?"),
        run.target_version().unwrap_or("?")
    );
    let by = match (run.trigger.as_deref(), &run.actor) {
        (Some("auto"), _) => "auto-updater".to_owned(),
        // "client NAME at ADDR (conn)": the name fits the column, the
        // whole actor is in the details below.
        (_, Some(actor)) => actor.split(" at ").next().unwrap_or(actor).to_owned(),
        (Some(trigger), None) => trigger.to_owned(),
        (None, None) => "?".to_owned(),
    };
    let style = match run.outcome {
        Outcome::Succeeded => theme.ok(),
        Outcome::Failed { .. } => theme.error(),
        Outcome::Skipped => theme.value(),
        Outcome::Running => theme.warn(),
    };
    let id = run
        .run_id
        .as_ref()
        .map_or_else(|| "?".to_owned(), |id| id.to_string());
    Line::from(vec![
        Span::raw(format!(" {when:<8} {:<10} ", clip(&id, 10))),
        Span::styled(format!("{:<12}", clip(&format::outcome(run), 12)), style),
        Span::raw(format!(" {versions:<17} {took:>8}  {by}")),
    ])
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

fn details<'a>(run: &Claim, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = vec![Line::raw("")];
    let id = run
        .run_id
        .as_ref()
        .map_or_else(|| "?".to_owned(), |id| id.to_string());
    lines.push(row(
        theme,
        "run",
        match &run.mode {
            Some(mode) => format!("{id} ({mode})"),
            None => id,
        },
        theme.heading(),
    ));
    if let Some(tag) = &run.target_tag {
        lines.push(row(theme, "target tag", tag.clone(), plain));
    }
    if let Some(actor) = &run.actor {
        lines.extend(rows(theme, "by", actor, plain, width));
    }
    if let Some(note) = &run.note {
        lines.extend(rows(theme, "note", note, plain, width));
    }
    if let Some(reason) = &run.reason {
        lines.extend(rows(theme, "reason", reason, theme.warn(), width));
    }
    for step in &run.steps {
        let failed = step.failed;
        let exit = match step.exit_code {
            Some(code) if code != 0 => format!("  exit {code}"),
            _ => String::new(),
        };
        let took = step.duration_ms.map(format::millis).unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(
                format!("    {} ", if failed { "✗" } else { "✓" }),
                if failed { theme.error() } else { theme.ok() },
            ),
            Span::raw(format!("{:<14}{took:>9}{exit}", step.name)),
        ]));
    }
    if let Some(step) = run.steps.iter().find(|s| s.failed) {
        lines.extend(failed_step(step, theme, width));
    }
    lines
}
