use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::theme::Theme;
use crate::app::App;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let view = &app.logs;
    let state = if view.paused {
        format!(" paused, {} new (p resumes) ", view.unseen)
    } else if view.scroll == 0 {
        " following ".to_owned()
    } else {
        String::new()
    };
    let title = match &view.file {
        Some(file) => format!(" Logs {file} "),
        None => " Logs ".to_owned(),
    };
    let block = Block::bordered()
        .title(Line::styled(title, theme.heading()))
        .title(Line::styled(state, theme.warn()).right_aligned());
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(error) = &view.error {
        lines.push(Line::styled(
            format!("logs.tail failed: {error}"),
            theme.error(),
        ));
    } else if view.lines.is_empty() {
        lines.push(Line::styled("No log lines yet.", theme.dim()));
    } else {
        let end = view.lines.len().saturating_sub(view.scroll);
        let start = end.saturating_sub(height);
        lines.extend(view.lines.range(start..end).map(|l| Line::raw(l.as_str())));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
