use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::theme::Theme;
use crate::app::{App, ConnState, Level, Screen};

/// `molt │ Overview │ ws://… connected          moltd 1.2.0 protocol 4`
pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (state, style) = connection(app, theme);
    let mut left = vec![Span::styled(" molt ", theme.bar())];
    // Every tab when there is room, else only the current screen.
    let wide = area.width >= 110;
    for screen in Screen::ALL {
        if *screen == app.screen {
            left.push(Span::styled(
                format!(" {} ", screen.title()),
                theme.heading(),
            ));
        } else if wide {
            left.push(Span::styled(format!(" {} ", screen.title()), theme.dim()));
        }
    }
    left.extend([
        Span::raw(" "),
        Span::raw(app.url.clone()),
        Span::raw("  "),
        Span::styled(state, style),
    ]);
    let right = match &app.server {
        Some(server) => format!(
            "{} {}  protocol {} ",
            server.product.name(),
            server.version.as_deref().unwrap_or("?"),
            server
                .protocol
                .map_or_else(|| "?".to_owned(), |p| p.to_string())
        ),
        None => String::new(),
    };
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right.len() as u16)])
            .areas(area);
    frame.render_widget(Paragraph::new(Line::from(left)), left_area);
    frame.render_widget(
        Paragraph::new(Line::styled(right, theme.dim())).right_aligned(),
        right_area,
    );
}

/// The state word and its style.
pub fn connection(app: &App, theme: &Theme) -> (String, ratatui::style::Style) {
    match &app.conn {
        ConnState::Connecting => ("connecting".into(), theme.warn()),
        ConnState::Connected => ("connected".into(), theme.ok()),
        ConnState::HandingOff { .. } => ("handing off".into(), theme.warn()),
        ConnState::Reconnecting { attempt, .. } => {
            (format!("reconnecting (attempt {attempt})"), theme.warn())
        }
        ConnState::AuthFailed { .. } => ("auth failed".into(), theme.error()),
        ConnState::Incompatible { .. } => ("incompatible".into(), theme.error()),
    }
}

pub fn level_style(level: Level, theme: &Theme) -> ratatui::style::Style {
    match level {
        Level::Info => theme.value(),
        Level::Warn => theme.warn(),
        Level::Error => theme.error(),
    }
}
