//! The Fleet screen: a header, one row per gateway (scrolling to keep the
//! selection visible), and a footer with the keys or the file's problems.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::Theme;
use crate::app::ConnState;
use crate::fleet::screen::{FleetView, Host};
use crate::format;
use crate::peer::KillSwitch;

pub fn render(view: &FleetView, frame: &mut Frame) {
    let theme = Theme::new(view.color);
    let area = frame.area();
    // The rollout panel takes what it needs of what the header, the
    // footer and five rows of gateways leave.
    let panel = if view.panel.visible() {
        let room = usize::from(area.height.saturating_sub(9)).max(3);
        super::fleet_rollout::lines(
            &view.panel,
            view.order.len(),
            &theme,
            usize::from(area.width),
            room,
        )
    } else {
        Vec::new()
    };
    let panel_height = if panel.is_empty() { 0 } else { panel.len() + 1 };
    let [top, heading, body, panel_area, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(u16::try_from(panel_height).unwrap_or(0)),
        Constraint::Length(1),
    ])
    .areas(area);
    let connected = view
        .hosts
        .iter()
        .filter(|h| h.app.conn == ConnState::Connected)
        .count();
    let group = view
        .group_name()
        .map_or_else(|| "all".to_owned(), |g| format!("group {g}"));
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" molt ", theme.bar()),
            Span::styled(" Fleet ", theme.heading()),
            Span::raw(format!(
                " {connected}/{} connected  {group}  by {}  {}",
                view.hosts.len(),
                view.sort.label(),
                view.path
            )),
        ])),
        top,
    );
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!(
                " {:<12} {:<11} {:<9} {:>7} {:>8} {:<4} {:<4} {}",
                "NAME", "STATE", "VERSION", "PID", "UP", "KILL", "AUTO", "LATEST RUN / RESTART"
            ),
            theme.label(),
        )),
        heading,
    );
    let rows = body.height as usize;
    let first = view.selected.saturating_sub(rows.saturating_sub(1));
    let lines: Vec<Line> = view
        .order
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(pos, i)| row(&view.hosts[*i], pos == view.selected, &theme))
        .collect();
    frame.render_widget(Paragraph::new(lines), body);
    if !panel.is_empty() {
        let block = Block::new()
            .borders(Borders::TOP)
            .border_style(theme.dim())
            .title(Line::styled(" Fleet actions ", theme.heading()));
        frame.render_widget(Paragraph::new(panel).block(block), panel_area);
    }
    let footer = match view.problems.first() {
        Some(problem) => Line::styled(
            format!(
                " {} problem(s) in the fleet file: {problem}",
                view.problems.len()
            ),
            theme.warn(),
        ),
        None => {
            let mut spans = Vec::new();
            for (key, what) in [
                ("q", "quit"),
                ("Enter", "open"),
                ("g", "group"),
                ("s", "sort"),
                ("r", "reconnect"),
                ("U", "rollout"),
                ("K/A", "settings"),
            ] {
                spans.push(Span::styled(format!(" {key}"), theme.key()));
                spans.push(Span::styled(format!(" {what} "), theme.dim()));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(footer), bottom);
}

fn row<'a>(host: &Host, selected: bool, theme: &Theme) -> Line<'a> {
    let app = &host.app;
    let (state, state_style) = match &app.conn {
        ConnState::Connecting => ("connecting".to_owned(), theme.warn()),
        ConnState::Connected => ("connected".to_owned(), theme.ok()),
        ConnState::HandingOff { .. } => ("handing off".to_owned(), theme.warn()),
        ConnState::Reconnecting { attempt, .. } => (format!("retry #{attempt}"), theme.warn()),
        ConnState::AuthFailed { .. } => ("auth failed".to_owned(), theme.error()),
        ConnState::Incompatible { .. } => ("incompatible".to_owned(), theme.error()),
    };
    let facts = host.facts();
    let dash = || "-".to_owned();
    let version = facts
        .as_ref()
        .and_then(|f| f.version.clone())
        .unwrap_or_else(dash);
    let pid = facts
        .as_ref()
        .and_then(|f| f.pid)
        .map_or_else(dash, |p| p.to_string());
    let up = app.uptime().map_or_else(dash, short);
    let kill = match facts.as_ref().map(|f| f.auto.kill_switch) {
        Some(KillSwitch::On { .. }) => "on",
        Some(KillSwitch::Off) => "off",
        _ => "-",
    };
    let auto = match facts.as_ref().and_then(|f| f.auto.enabled) {
        Some(true) => "on",
        Some(false) => "off",
        None => "-",
    };
    let detail = match (&app.conn, &facts) {
        (ConnState::Reconnecting { error: Some(e), .. }, _) => e.clone(),
        (ConnState::AuthFailed { message } | ConnState::Incompatible { message }, _) => {
            message.clone()
        }
        (_, Some(f)) => {
            let run = f
                .latest_run
                .as_ref()
                .map(|run| {
                    format!(
                        "{} {}",
                        format::outcome(run),
                        run.target_version().unwrap_or("?")
                    )
                })
                .unwrap_or_else(|| "no run".to_owned());
            let restart = f
                .restart
                .as_ref()
                .map(|r| format!(", {}", format::restart_phase(r, None)))
                .unwrap_or_default();
            format!("{run}{restart}")
        }
        _ => String::new(),
    };
    let stale = app.conn != ConnState::Connected;
    let text = |s: String| {
        if stale && !selected {
            Span::styled(s, theme.dim())
        } else {
            Span::raw(s)
        }
    };
    let mut spans = vec![
        Span::raw(if selected { ">" } else { " " }),
        text(format!("{:<12} ", format::clip(&host.gateway.name, 12))),
        Span::styled(format!("{:<11} ", format::clip(&state, 11)), state_style),
        text(format!(
            "{:<9} {:>7} {:>8} {:<4} {:<4} ",
            format::clip(&version, 9),
            format::clip(&pid, 7),
            up,
            kill,
            auto
        )),
        text(detail),
    ];
    if selected {
        for span in &mut spans {
            span.style = span
                .style
                .patch(Style::new().add_modifier(ratatui::style::Modifier::REVERSED));
        }
    }
    Line::from(spans)
}

/// `45s`, `12m`, `3h`, `2d`: one unit, for the narrow column.
fn short(d: Duration) -> String {
    format::ago_short(0, d.as_millis() as u64)
        .trim_end_matches(" ago")
        .to_owned()
}
