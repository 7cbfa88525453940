//! The Logs screen: `18:52:07 W autoupdate::driver: message`, the date on
//! its own line when it changes, long lines wrapped under the message or
//! cut and scrolled sideways, search matches highlighted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::text::{runs, wrap_spans};
use super::theme::Theme;
use crate::app::{App, LogsView};
use crate::logline::{LogLevel, LogLine, date_line};

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let view = &app.logs;
    let block = Block::bordered()
        .title(Line::styled(title(view), theme.heading()))
        .title(Line::styled(state(view), theme.warn()).right_aligned())
        .title_bottom(search_line(view, theme));
    let inner = block.inner(area);
    let height = usize::from(inner.height);
    let width = usize::from(inner.width);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(error) = &view.error {
        lines.push(Line::styled(
            format!("logs.tail failed: {error}"),
            theme.error(),
        ));
    } else if view.lines.is_empty() {
        lines.push(Line::styled("No log lines yet.", theme.dim()));
    } else {
        lines = visible(view, app.color, theme, width, height);
        if lines.is_empty() {
            lines.push(Line::styled(
                "No lines at this level (f changes it).",
                theme.dim(),
            ));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn title(view: &LogsView) -> String {
    match &view.file {
        Some(file) => format!(" Logs {file} "),
        None => " Logs ".to_owned(),
    }
}

/// Following or paused, then the level filter and wrap when set.
fn state(view: &LogsView) -> String {
    let mut parts = Vec::new();
    if view.paused {
        parts.push(format!("paused, {} new (p resumes)", view.unseen));
    } else if view.scroll == 0 {
        parts.push("following".to_owned());
    }
    if let Some(min) = view.min_level {
        parts.push(format!("{}+", min.word().to_lowercase()));
    }
    if view.wrap {
        parts.push("wrap".to_owned());
    } else if view.side > 0 {
        parts.push(format!("→{}", view.side));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {} ", parts.join(" · "))
    }
}

/// The search being typed, or the last one and how it went.
fn search_line<'a>(view: &LogsView, theme: &Theme) -> Line<'a> {
    if let Some(input) = &view.searching {
        return Line::from(vec![
            Span::styled(" /", theme.key()),
            Span::raw(format!("{}▏ ", input.text)),
        ]);
    }
    let Some(query) = &view.query else {
        return Line::raw("");
    };
    let mut spans = vec![
        Span::styled(" /", theme.key()),
        Span::raw(format!("{query}  ")),
    ];
    match &view.search_note {
        Some(note) => spans.push(Span::styled(format!("{note} "), theme.warn())),
        None => spans.push(Span::styled("n older  N newer ", theme.dim())),
    }
    Line::from(spans)
}

/// The rows that end at the bottom of the view: whole lines walking up
/// from the newest in view until the height is filled; when the oldest
/// line is reached first, newer lines fill the rest.
fn visible<'a>(
    view: &LogsView,
    color: bool,
    theme: &Theme,
    width: usize,
    height: usize,
) -> Vec<Line<'a>> {
    let shown = view.shown();
    let block = |at: usize| {
        let line = LogLine::parse(&view.lines[shown[at]]);
        let mut rows = rows(&line, view, color, theme, width);
        let before = at
            .checked_sub(1)
            .map(|b| LogLine::parse(&view.lines[shown[b]]).date);
        if let Some(date) = &line.date
            && before.as_ref().is_none_or(|b| b.as_ref() != Some(date))
        {
            rows.insert(0, Line::styled(date_line(date), theme.dim()));
        }
        rows
    };
    let end = shown.len().saturating_sub(view.scroll);
    let mut above: Vec<Vec<Line<'a>>> = Vec::new();
    let mut filled = 0;
    for at in (0..end).rev() {
        let rows = block(at);
        // Only whole lines, unless the newest one alone is too tall.
        if filled + rows.len() > height && !above.is_empty() {
            break;
        }
        filled += rows.len();
        above.push(rows);
        if filled >= height {
            break;
        }
    }
    let mut out: Vec<Line<'a>> = above.into_iter().rev().flatten().collect();
    for at in end..shown.len() {
        let rows = block(at);
        if filled + rows.len() > height {
            break;
        }
        filled += rows.len();
        out.extend(rows);
    }
    let skip = out.len().saturating_sub(height);
    out.into_iter().skip(skip).collect()
}

/// One log line: time and level, then module and message, wrapped under
/// the message or cut at the sideways offset.
fn rows<'a>(
    line: &LogLine,
    view: &LogsView,
    color: bool,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'a>> {
    let mut prefix: Vec<Span<'a>> = Vec::new();
    if let Some(time) = &line.time {
        prefix.push(Span::styled(format!("{time} "), theme.dim()));
    }
    if let Some(level) = line.level {
        prefix.push(Span::styled(level.label(color), level_style(level, theme)));
        prefix.push(Span::raw(" "));
    }
    let indent: usize = prefix.iter().map(|s| s.content.chars().count()).sum();
    let module_len = line.module.as_ref().map_or(0, |m| m.chars().count() + 1);
    let body = line.body();
    let mut styled: Vec<(char, Style)> = body
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let style = if i < module_len {
                theme.label()
            } else {
                theme.value()
            };
            (c, style)
        })
        .collect();
    if let Some(query) = &view.query {
        highlight(&mut styled, query, theme.found());
    }
    if view.wrap {
        prefix.extend(runs(&styled));
        // Raw lines continue indented too, so a continuation never
        // reads as a line of its own.
        wrap_spans(prefix, indent.max(2).min(width / 2), width, true)
    } else {
        let side = view.side.min(styled.len());
        prefix.extend(runs(&styled[side..]));
        vec![Line::from(prefix)]
    }
}

fn level_style(level: LogLevel, theme: &Theme) -> Style {
    match level {
        LogLevel::Error => theme.error(),
        LogLevel::Warn => theme.warn(),
        LogLevel::Info => theme.ok(),
        LogLevel::Debug | LogLevel::Trace => theme.dim(),
    }
}

/// Every place `query` (lower case) occurs, ignoring case, in `style`.
fn highlight(text: &mut [(char, Style)], query: &str, style: Style) {
    let query: Vec<char> = query.chars().collect();
    if query.is_empty() || query.len() > text.len() {
        return;
    }
    let lower: Vec<char> = text
        .iter()
        .map(|(c, _)| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let mut i = 0;
    while i + query.len() <= lower.len() {
        if lower[i..i + query.len()] == query[..] {
            for cell in &mut text[i..i + query.len()] {
                cell.1 = style;
            }
            i += query.len();
        } else {
            i += 1;
        }
    }
}
