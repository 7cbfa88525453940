//! Text laid out for a box: labelled values whose wrapped lines keep
//! their column, and command output whose long lines keep their indent.
//! Every screen lays text out through these, so nothing wrapped starts
//! again at column 0.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::theme::Theme;
use crate::peer::Step;

/// The label column's width.
pub const LABEL: usize = 12;

pub fn row<'a>(theme: &Theme, label: &str, value: impl Into<String>, style: Style) -> Line<'a> {
    labeled(theme, 2, label, value, style)
}

/// `label` in its column at `indent`, then the value.
pub fn labeled<'a>(
    theme: &Theme,
    indent: usize,
    label: &str,
    value: impl Into<String>,
    style: Style,
) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{:indent$}{label:<LABEL$}", ""), theme.label()),
        Span::styled(value.into(), style),
    ])
}

/// A labeled row whose value wraps under its own column instead of under
/// the label: long values (the restart's consequence, a gateway's advice)
/// stay inside the box and readable at any width.
pub fn rows<'a>(
    theme: &Theme,
    label: &str,
    value: &str,
    style: Style,
    width: usize,
) -> Vec<Line<'a>> {
    rows_at(theme, (2, LABEL), label, value, style, width)
}

/// [`rows`] with the label at `indent` in a column `label_width` wide.
pub fn rows_at<'a>(
    theme: &Theme,
    (indent, label_width): (usize, usize),
    label: &str,
    value: &str,
    style: Style,
    width: usize,
) -> Vec<Line<'a>> {
    // One column short of the border: text never touches the box edge.
    let room = width.saturating_sub(indent + label_width + 1).max(10);
    wrap_words(value, room)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let label = if i == 0 { label } else { "" };
            Line::from(vec![
                Span::styled(
                    format!("{:indent$}{label:<label_width$}", ""),
                    theme.label(),
                ),
                Span::styled(part, style),
            ])
        })
        .collect()
}

/// Greedy word wrap to `width` columns; a word longer than a line is cut.
pub fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word wider than the line: cut it.
            let cut: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(cut);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` verbatim (spaces kept) at `indent`, long lines cut at the box's
/// edge and continued at the same indent.
pub fn hanging<'a>(text: &str, indent: usize, style: Style, width: usize) -> Vec<Line<'a>> {
    let spans = vec![
        Span::raw(" ".repeat(indent)),
        Span::styled(text.to_owned(), style),
    ];
    wrap_spans(spans, indent, width, false)
}

/// Styled text broken at the box's edge (one column short of it), each
/// continuation starting at `indent`: a log line's message stays right of
/// its time and level. With `at_spaces` a row ends after its last space
/// when there is one, so words stay whole.
pub fn wrap_spans<'a>(
    spans: Vec<Span<'a>>,
    indent: usize,
    width: usize,
    at_spaces: bool,
) -> Vec<Line<'a>> {
    let room = width.saturating_sub(1).max(indent + 10);
    let cells: Vec<(char, Style)> = spans
        .iter()
        .flat_map(|span| span.content.chars().map(move |c| (c, span.style)))
        .collect();
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let lead = if lines.is_empty() { 0 } else { indent };
        let fits = room - lead;
        let mut end = (start + fits).min(cells.len());
        if at_spaces && end < cells.len() && cells[end].0 != ' ' {
            // The last space of the row, unless the row is one long word.
            if let Some(space) = cells[start..end].iter().rposition(|(c, _)| *c == ' ')
                && space > 0
            {
                end = start + space + 1;
            }
        }
        let mut row = Vec::new();
        if lead > 0 {
            row.push(Span::raw(" ".repeat(lead)));
        }
        row.extend(runs(&cells[start..end]));
        lines.push(Line::from(row));
        start = end;
        if at_spaces {
            while cells.get(start).is_some_and(|(c, _)| *c == ' ') {
                start += 1;
            }
        }
        if start >= cells.len() {
            return lines;
        }
    }
}

/// Runs of one style as spans.
pub fn runs<'a>(cells: &[(char, Style)]) -> Vec<Span<'a>> {
    let mut out: Vec<Span<'a>> = Vec::new();
    let mut run = String::new();
    let mut style: Option<Style> = None;
    for &(c, s) in cells {
        if let Some(current) = style
            && current != s
        {
            out.push(Span::styled(std::mem::take(&mut run), current));
        }
        style = Some(s);
        run.push(c);
    }
    if let Some(style) = style {
        out.push(Span::styled(run, style));
    }
    out
}

/// A failed step: its command, then the head and tail of its output in
/// the error colour (the first lines say what went wrong, the last ones
/// where it stopped).
pub fn failed_step<'a>(step: &Step, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let mut lines = vec![Line::raw("")];
    let title = format!(
        "{} failed: {}",
        step.name,
        step.command.as_deref().unwrap_or("")
    );
    // The command wraps at its spaces, under itself.
    let title = vec![Span::raw("  "), Span::styled(title, theme.error())];
    lines.extend(wrap_spans(title, 4, width, true));
    // The head from its start, the tails to their end.
    let parts: [(&str, &str, bool); 3] = [
        ("stderr head", &step.stderr_head, true),
        ("stderr tail", &step.stderr_tail, false),
        ("stdout tail", &step.stdout_tail, false),
    ];
    let mut shown: Vec<&str> = Vec::new();
    for (label, text, from_start) in parts {
        let text: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if text.is_empty() || text == shown {
            continue;
        }
        lines.push(Line::styled(format!("  {label}:"), theme.label()));
        let pick: Vec<&str> = if from_start {
            text.iter().take(6).copied().collect()
        } else {
            text.iter().rev().take(6).rev().copied().collect()
        };
        for line in pick {
            lines.extend(hanging(line, 4, theme.error(), width));
        }
        shown = text;
    }
    if let Some(detail) = &step.detail {
        lines.extend(hanging(detail, 4, theme.error(), width));
    }
    lines
}
