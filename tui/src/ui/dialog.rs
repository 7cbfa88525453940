use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Padding, Paragraph, Wrap};

use super::text::labeled;
use super::theme::Theme;
use crate::app::{App, Choice, Dialog, Field, Preview, TextInput};
use crate::format;
use crate::peer::UpdateApi;

/// The confirm dialog over the Update screen.
pub fn render(app: &App, dialog: &Dialog, theme: &Theme, frame: &mut Frame, area: Rect) {
    let plain = theme.value();
    let current = dialog.current.as_deref().unwrap_or("?");
    let mut lines = vec![labeled(theme, 0, "current", current.to_owned(), plain)];
    lines.push(match &dialog.preview {
        Preview::Resolving => labeled(
            theme,
            0,
            "target",
            format!("{} resolving ...", super::spinner(app)),
            theme.warn(),
        ),
        Preview::Failed(problem) => labeled(theme, 0, "target", problem.clone(), theme.error()),
        Preview::Unplanned { latest } => labeled(
            theme,
            0,
            "target",
            match latest {
                Some(latest) => {
                    format!("{current} → the channel's latest ({latest} when last checked)")
                }
                None => format!("{current} → the channel's latest (resolved when it runs)"),
            },
            theme.ok(),
        ),
        Preview::Ready(result) => {
            let target = result.after.as_deref().unwrap_or("?");
            let text = match dialog.blocker() {
                None => format!("{current} → {target}"),
                Some(blocker) => blocker,
            };
            let style = if dialog.blocker().is_none() {
                theme.ok()
            } else {
                theme.warn()
            };
            labeled(theme, 0, "target", text, style)
        }
    });
    if app.update_api() == UpdateApi::Molt {
        lines.push(field_line(
            theme,
            "version/tag",
            &dialog.tag,
            "channel default",
            "t",
            dialog.editing.as_ref().filter(|e| e.field == Field::Target),
        ));
    } else {
        lines.push(labeled(
            theme,
            0,
            "version/tag",
            "the gateway's update channel",
            theme.dim(),
        ));
    }
    lines.push(field_line(
        theme,
        "note",
        &dialog.note,
        "none",
        "n",
        dialog.editing.as_ref().filter(|e| e.field == Field::Note),
    ));
    if let Some(error) = dialog.editing.as_ref().and_then(|e| e.error.as_ref()) {
        lines.push(labeled(theme, 0, "", error.clone(), theme.error()));
    }
    lines.push(Line::raw(""));
    let inner = usize::from(area.width.saturating_sub(4).min(76).saturating_sub(4));
    if let Some(facts) = app.facts() {
        let text = format!(
            "{}. This console reconnects too and shows the handoff.",
            format::restart_consequence(facts, app.update_api())
        );
        // Wrapped here, so the dialog is as tall as what it shows.
        for part in super::text::wrap_words(&text, inner) {
            lines.push(Line::raw(part));
        }
    }
    lines.push(Line::raw(""));
    lines.push(buttons(dialog.choice, theme));
    if let Some(refusal) = &dialog.refusal {
        for part in super::text::wrap_words(refusal, inner) {
            lines.push(Line::styled(part, theme.error()));
        }
    }

    let width = area.width.saturating_sub(4).min(76);
    // Borders, and each line as many rows as it wraps to.
    let text_width = usize::from(width.saturating_sub(4)).max(1);
    let rows: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(text_width))
        .sum();
    let height = u16::try_from(rows + 2).unwrap_or(u16::MAX).min(area.height);
    let [row_area] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row_area);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .padding(Padding::horizontal(1))
                .title(Line::styled(
                    format!(" Update {}? ", app.product().name()),
                    theme.heading(),
                )),
        ),
        popup,
    );
}

fn field_line<'a>(
    theme: &Theme,
    label: &str,
    value: &str,
    empty: &str,
    key: &str,
    editing: Option<&TextInput>,
) -> Line<'a> {
    let mut line = labeled(theme, 0, label, "", theme.value());
    match editing {
        Some(input) => {
            line.spans.push(Span::styled(
                format!("{}▏", input.text),
                theme.value().patch(theme.bar()),
            ));
        }
        None => {
            let (text, style) = if value.is_empty() {
                (empty.to_owned(), theme.dim())
            } else {
                (value.to_owned(), theme.value())
            };
            line.spans.push(Span::styled(text, style));
            line.spans
                .push(Span::styled(format!("  ({key} edits)"), theme.dim()));
        }
    }
    line
}

fn buttons<'a>(choice: Choice, theme: &Theme) -> Line<'a> {
    let button = |label: &str, selected: bool| {
        if selected {
            Span::styled(format!("[ {label} ]"), theme.bar().patch(theme.heading()))
        } else {
            Span::styled(format!("  {label}  "), theme.dim())
        }
    };
    Line::from(vec![
        Span::raw("            "),
        button("Cancel", choice == Choice::Cancel),
        Span::raw("    "),
        button("Update", choice == Choice::Update),
    ])
}
