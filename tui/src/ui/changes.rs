//! What a verified update changed, from the new version's changelog:
//! each release under its version, one bullet a row (wrapped under its
//! own text), protocol changes marked, cut to the rows the screen has
//! left with a line that says how much more there is.

use molt_protocol::changelog::{Changelog, ChangelogEntry, PROTOCOL_SECTION};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::text::{LABEL, rows, wrap_words};
use super::theme::Theme;

/// The Changes block for an update from `from` to `to`, at most `room`
/// rows (never fewer than the heading, one row and the note).
pub fn lines<'a>(
    log: &Changelog,
    (from, to): (&str, &str),
    theme: &Theme,
    width: usize,
    room: usize,
) -> Vec<Line<'a>> {
    let mut heading = format!("{from} → {to}");
    if log.entries.len() > 1 {
        heading.push_str(&format!(", {} releases, newest first", log.entries.len()));
    }
    if log.truncated {
        heading.push_str(" (cut short)");
    }
    let mut lines = vec![Line::raw("")];
    lines.push(Line::from(vec![
        Span::styled(format!("  {:<LABEL$}", "Changes"), theme.heading()),
        Span::styled(heading, theme.value()),
    ]));
    if let Some(problem) = &log.problem {
        lines.extend(rows(theme, "", problem, theme.warn(), width));
    }
    let mut body = Vec::new();
    for entry in &log.entries {
        body.extend(entry_lines(entry, theme, width));
    }
    let room = room.max(lines.len() + 2);
    if lines.len() + body.len() > room {
        let keep = room - lines.len() - 1;
        let more = body.len() - keep;
        body.truncate(keep);
        body.push(Line::styled(
            format!(
                "  {:LABEL$}… {more} more line{}; a taller terminal shows them",
                "",
                if more == 1 { "" } else { "s" }
            ),
            theme.dim(),
        ));
    }
    lines.extend(body);
    lines
}

/// One release: its version in the label column, then its rows.
fn entry_lines<'a>(entry: &ChangelogEntry, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    // A version too long for the label column gets a row of its own.
    let own_row = entry.version.chars().count() >= LABEL;
    if own_row {
        out.push(Line::styled(format!("  {}", entry.version), theme.label()));
    }
    for (i, (text, style, marker)) in items(entry, theme).into_iter().enumerate() {
        let label = if i == 0 && !own_row {
            entry.version.as_str()
        } else {
            ""
        };
        out.extend(bullet(theme, label, &text, style, marker, width));
    }
    if out.is_empty() {
        out.extend(rows(
            theme,
            &entry.version,
            "(no details)",
            theme.dim(),
            width,
        ));
    }
    out
}

/// The entry's bullets and paragraphs, section headings folded in: a
/// protocol change says so, the other sections' names are left out.
fn items(entry: &ChangelogEntry, theme: &Theme) -> Vec<(String, Style, &'static str)> {
    let mut items: Vec<(String, Style, &'static str)> = Vec::new();
    let mut protocol = false;
    let mut in_bullet = false;
    for line in entry.text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_bullet = false;
            continue;
        }
        if let Some(section) = trimmed.strip_prefix("### ") {
            protocol = format!("### {}", section.trim()).eq_ignore_ascii_case(PROTOCOL_SECTION);
            in_bullet = false;
            continue;
        }
        let nested = line.starts_with("  ");
        let bulleted = ["- ", "* ", "+ "]
            .iter()
            .find_map(|m| trimmed.strip_prefix(m));
        match bulleted {
            Some(text) => {
                let (text, style) = if protocol {
                    (format!("protocol: {text}"), theme.warn())
                } else {
                    (text.to_owned(), theme.value())
                };
                items.push((text, style, if nested { "  ◦ " } else { "• " }));
                in_bullet = true;
            }
            // A bullet's wrapped continuation joins it.
            None if in_bullet && nested => {
                if let Some(last) = items.last_mut() {
                    last.0.push(' ');
                    last.0.push_str(trimmed);
                }
            }
            None => {
                items.push((trimmed.to_owned(), theme.value(), ""));
                in_bullet = false;
            }
        }
    }
    items
}

/// `marker` + `text` in the value column, wrapped under the text.
fn bullet<'a>(
    theme: &Theme,
    label: &str,
    text: &str,
    style: Style,
    marker: &str,
    width: usize,
) -> Vec<Line<'a>> {
    let hang = marker.chars().count();
    let room = width.saturating_sub(2 + LABEL + 1 + hang).max(10);
    wrap_words(text, room)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let (label, lead) = if i == 0 {
                (label, marker.to_owned())
            } else {
                ("", " ".repeat(hang))
            };
            Line::from(vec![
                Span::styled(format!("  {label:<LABEL$}"), theme.label()),
                Span::styled(lead, theme.dim()),
                Span::styled(part, style),
            ])
        })
        .collect()
}
