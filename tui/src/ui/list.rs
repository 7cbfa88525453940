//! A boxed list with the selected item in full below it (History's runs
//! and its audit trail): what the box says instead while nothing can be
//! listed, and the rows scrolled to keep the selection visible.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::theme::Theme;

/// What a list screen knows of its items.
pub struct Source<'a, T> {
    pub title: &'a str,
    /// Why this gateway has nothing of the kind to list.
    pub unserved: Option<&'a str>,
    pub items: Option<&'a [T]>,
    pub error: Option<&'a str>,
    /// The method that lists them, for the loading and error lines.
    pub method: &'a str,
    /// Said when the list is empty.
    pub empty: &'a str,
}

/// Draws the box and, when there is nothing to list, why; else the items
/// and the area for the selected one's details below the rows drawn by
/// `row` under `header`.
pub fn render<'a, T>(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    source: Source<'a, T>,
    header: Line<'static>,
    selected: usize,
    row: impl Fn(&T) -> Line<'static>,
) -> Option<(&'a [T], Rect)> {
    let block = Block::bordered().title(Line::styled(source.title.to_owned(), theme.heading()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let say = |frame: &mut Frame, text: Paragraph| {
        frame.render_widget(text.wrap(Wrap { trim: false }), inner);
    };
    if let Some(unserved) = source.unserved {
        say(
            frame,
            Paragraph::new(unserved.to_owned()).style(theme.dim()),
        );
        return None;
    }
    let items = match (source.items, source.error) {
        (_, Some(error)) => {
            let text = vec![
                Line::styled(format!("{} failed: {error}", source.method), theme.error()),
                Line::raw("r tries again."),
            ];
            say(frame, Paragraph::new(text));
            return None;
        }
        (None, None) => {
            say(
                frame,
                Paragraph::new(format!("Loading {} ...", source.method)),
            );
            return None;
        }
        (Some([]), None) => {
            say(frame, Paragraph::new(source.empty.to_owned()));
            return None;
        }
        (Some(items), None) => items,
    };
    let list_height = (items.len() as u16 + 1).min(inner.height / 2).max(2);
    let [list_area, detail_area] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(0)]).areas(inner);
    let visible = usize::from(list_height.saturating_sub(1));
    let first = selected.saturating_sub(visible.saturating_sub(1));
    let mut lines = vec![header];
    for (i, item) in items.iter().enumerate().skip(first).take(visible) {
        let line = row(item);
        lines.push(if i == selected {
            line.patch_style(theme.bar())
        } else {
            line
        });
    }
    frame.render_widget(Paragraph::new(lines), list_area);
    Some((items, detail_area))
}
