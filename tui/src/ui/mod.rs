//! Drawing. `render` reads the app and draws a frame; no I/O, no clock.

mod audit;
mod changes;
mod config;
mod dialog;
pub mod fleet;
mod fleet_rollout;
mod header;
mod help;
mod history;
mod list;
mod logs;
mod overview;
mod text;
pub mod theme;
mod update;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, ConnState, Screen, Shown};
use theme::Theme;

/// Spinner frames, one per tick.
const SPINNER: &[&str] = &["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub fn spinner(app: &App) -> &'static str {
    SPINNER[app.spinner % SPINNER.len()]
}

pub fn render(app: &App, frame: &mut Frame) {
    let theme = Theme::new(app.color);
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    header::render(app, &theme, frame, top);
    match app.screen {
        Screen::Overview => overview::render(app, &theme, frame, body),
        Screen::Update => {
            update::render(app, &theme, frame, body);
            if let Some(dialog) = &app.update.dialog {
                dialog::render(app, dialog, &theme, frame, body);
            }
        }
        Screen::History => match app.history.shown {
            Shown::Runs => history::render(app, &theme, frame, body),
            Shown::Audit => audit::render(app, &theme, frame, body),
        },
        Screen::Config => config::render(app, &theme, frame, body),
        Screen::Logs => logs::render(app, &theme, frame, body),
    }
    frame.render_widget(Paragraph::new(footer(app, &theme)), bottom);
    if app.show_help {
        help::render(&theme, frame, body);
    }
}

/// The notice when there is one, else the keys that matter right now.
fn footer<'a>(app: &'a App, theme: &Theme) -> Line<'a> {
    if let Some(notice) = &app.notice {
        return Line::styled(
            format!(" {}", notice.text),
            header::level_style(notice.level, theme),
        );
    }
    let mut keys = vec![("q", "quit"), ("?", "help")];
    if app.text_input().is_some() {
        keys = vec![("Enter", "keep"), ("Esc", "discard")];
    } else if app.screen == Screen::Update && app.update.dialog.is_some() {
        keys.extend([("←/→", "choose"), ("Enter", "take"), ("n/t", "note/target")]);
    } else {
        match app.conn {
            ConnState::Connected => keys.push(("r", "refresh")),
            ConnState::Connecting => {}
            _ => keys.push(("r", "reconnect now")),
        }
        keys.push(("Tab", "screens"));
        match app.screen {
            Screen::Overview => keys.push(("u", "update")),
            Screen::History => keys.push(match app.history.shown {
                Shown::Audit => ("a", "update runs"),
                // A gateway without an audit trail (OpenClaw) keeps the update key.
                Shown::Runs if !app.has_audit_trail() => ("u", "update"),
                Shown::Runs => ("a", "audit trail"),
            }),
            Screen::Update => keys.push(("u", "update…")),
            Screen::Config => keys.push(("Enter", "change")),
            Screen::Logs => {
                keys.push(("p", if app.logs.paused { "resume" } else { "pause" }));
                keys.extend([("w", "wrap"), ("f", "level"), ("/", "search")]);
            }
        }
    }
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(format!(" {key}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    Line::from(spans)
}
