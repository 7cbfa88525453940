//! Drawing. `render` reads the app and draws a frame; no I/O, no clock.

mod header;
mod help;
mod overview;
pub mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, ConnState, Screen};
use theme::Theme;

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
    match app.conn {
        ConnState::Connected => keys.push(("r", "refresh")),
        ConnState::Connecting => {}
        _ => keys.push(("r", "reconnect now")),
    }
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(format!(" {key}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    Line::from(spans)
}
