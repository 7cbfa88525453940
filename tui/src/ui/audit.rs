//! The History screen's audit trail: one row per change (when, what, how
//! it ended, who), and the selected entry in full below.

use molt_protocol::actor::Actor;
use molt_protocol::audit::AuditEntry;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::list;
use super::text::{row, rows};
use super::theme::Theme;
use crate::app::App;
use crate::format;

/// Widths of the list's columns before `by`.
const WHEN: usize = 8;
const ACTION: usize = 23;
const OUTCOME: usize = 10;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let view = &app.audit;
    let now = app.gateway_now_ms();
    let width = usize::from(area.width.saturating_sub(2));
    let header = Line::styled(
        format!(
            " {:<WHEN$} {:<ACTION$} {:<OUTCOME$} {}",
            "when", "what", "outcome", "by"
        ),
        theme.label(),
    );
    let source = list::Source {
        title: " History · audit trail ",
        unserved: view.unserved.as_deref(),
        items: view.entries.as_deref(),
        error: view.error.as_deref(),
        method: "audit.list",
        empty: "No changes recorded yet.",
    };
    let listed = list::render(frame, area, theme, source, header, view.selected, |entry| {
        entry_row(entry, now, theme, width)
    });
    if let (Some((entries, detail_area)), Some(entry)) = (listed, view.selected_entry()) {
        let more = match &view.next_before {
            Some(_) => format!("{} loaded, older below", entries.len()),
            None => format!("{} in all", entries.len()),
        };
        let detail = details(entry, now, &more, theme, usize::from(detail_area.width));
        frame.render_widget(Paragraph::new(detail), detail_area);
    }
}

/// `ops-alice 127.0.0.1:51234`, `auto-updater`, `SIGUSR1`: who, short.
fn who(actor: &Actor) -> String {
    match actor {
        Actor::Client {
            client_id, addr, ..
        } => format!("{client_id} {addr}"),
        other => other.to_string(),
    }
}

/// `ok`, or the error code or run status.
fn outcome_word(entry: &AuditEntry) -> String {
    if entry.outcome.ok {
        "ok".to_owned()
    } else {
        entry
            .outcome
            .code
            .clone()
            .unwrap_or_else(|| "failed".to_owned())
    }
}

fn entry_row<'a>(entry: &AuditEntry, now: Option<u64>, theme: &Theme, width: usize) -> Line<'a> {
    let when = now.map_or_else(String::new, |now| format::ago_short(entry.at, now));
    let style = if entry.outcome.ok {
        theme.ok()
    } else {
        theme.error()
    };
    let by_room = width.saturating_sub(1 + WHEN + 1 + ACTION + 1 + OUTCOME + 1 + 1);
    Line::from(vec![
        Span::raw(format!(
            " {when:<WHEN$} {:<ACTION$} ",
            format::clip(entry.action.as_str(), ACTION)
        )),
        Span::styled(
            format!("{:<OUTCOME$}", format::clip(&outcome_word(entry), OUTCOME)),
            style,
        ),
        Span::raw(format!(" {}", format::clip(&who(&entry.actor), by_room))),
    ])
}

fn details<'a>(
    entry: &AuditEntry,
    now: Option<u64>,
    more: &str,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'a>> {
    let plain = theme.value();
    let mut lines = vec![Line::raw("")];
    lines.push(row(
        theme,
        "what",
        format!("{}  ({more})", entry.action.as_str()),
        theme.heading(),
    ));
    let when = match now {
        Some(now) => format!(
            "{}, {}",
            format::timestamp(entry.at),
            format::relative(entry.at, now)
        ),
        None => format::timestamp(entry.at),
    };
    lines.push(row(theme, "when", when, plain));
    lines.extend(rows(theme, "by", &entry.actor.to_string(), plain, width));
    let params = match &entry.params {
        serde_json::Value::Object(map) if map.is_empty() => None,
        params => Some(params.to_string()),
    };
    if let Some(params) = params {
        lines.extend(rows(theme, "params", &params, plain, width));
    }
    let outcome = match (&entry.outcome.code, &entry.outcome.message) {
        _ if entry.outcome.ok => "ok".to_owned(),
        (Some(code), Some(message)) if !message.is_empty() => format!("{code}: {message}"),
        (Some(code), _) => code.clone(),
        (None, _) => "failed".to_owned(),
    };
    let style = if entry.outcome.ok {
        theme.ok()
    } else {
        theme.error()
    };
    lines.extend(rows(theme, "outcome", &outcome, style, width));
    if let Some(run) = &entry.run_id {
        lines.push(row(theme, "run", run.to_string(), plain));
    }
    lines.push(row(theme, "moltd pid", entry.pid.to_string(), theme.dim()));
    lines
}
