use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::theme::Theme;
use crate::app::keymap::BINDINGS;

/// Every key, with where it applies, over the current screen.
pub fn render(theme: &Theme, frame: &mut Frame, area: Rect) {
    let key_width = BINDINGS.iter().map(|b| b.keys.len()).max().unwrap_or(0);
    let help_width = BINDINGS.iter().map(|b| b.help.len()).max().unwrap_or(0);
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(format!(" {:<key_width$}  ", b.keys), theme.key()),
                Span::raw(format!("{:<help_width$}  ", b.help)),
                Span::styled(b.scope, theme.dim()),
            ])
        })
        .collect();
    lines.push(Line::styled(" Esc or ? closes this help", theme.dim()));

    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 3;
    let height = lines.len() + 2;
    let [row] = Layout::vertical([Constraint::Length(height as u16)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width as u16)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys ")),
        popup,
    );
}
