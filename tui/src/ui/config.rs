use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::{App, ConfigRow};
use crate::format;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(Line::styled(" Config ", theme.heading()));
    let view = &app.config;
    let mut lines = Vec::new();
    match &view.loaded {
        None if view.error.is_none() => lines.push(Line::raw("Loading config.get ...")),
        None => {}
        Some(loaded) => {
            for (i, row) in ConfigRow::ALL.iter().enumerate() {
                let (value, note) = value(app, *row);
                let editing = view.editing.as_ref().filter(|_| i == view.selected);
                let value = match editing {
                    Some(input) => format!("{}▏", input.text),
                    None => value,
                };
                let mut line = Line::from(vec![
                    Span::styled(format!("  {:<18}", row.label()), theme.label()),
                    Span::styled(format!("{value:<22}"), theme.value()),
                    Span::styled(format!(" {}", row.key()), theme.dim()),
                ]);
                if i == view.selected {
                    line = line.patch_style(theme.bar());
                }
                lines.push(line);
                if let Some(note) = note {
                    lines.push(Line::styled(format!("{:20}{note}", ""), theme.warn()));
                }
            }
            if let Some(error) = view.editing.as_ref().and_then(|e| e.error.as_ref()) {
                lines.push(Line::styled(format!("  {error}"), theme.error()));
            }
            lines.push(Line::raw(""));
            if let Some(saving) = &view.saving {
                lines.push(Line::styled(
                    format!("  {} saving {saving} ...", super::spinner(app)),
                    theme.warn(),
                ));
            }
            lines.push(Line::styled(
                format!(
                    "  {}  hash {}",
                    loaded.path,
                    loaded.hash.chars().take(12).collect::<String>()
                ),
                theme.dim(),
            ));
            lines.push(Line::styled(
                "  Enter toggles; the channel cycles stable → beta → dev; the timeout takes \
                 ms or 30s / 5m / 1h (0 waits for pending work forever).",
                theme.dim(),
            ));
        }
    }
    if let Some(error) = &view.error {
        lines.push(Line::styled(format!("  {error}"), theme.error()));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// The row's value, and a warning to show under it.
fn value(app: &App, row: ConfigRow) -> (String, Option<String>) {
    let Some(loaded) = &app.config.loaded else {
        return (String::new(), None);
    };
    let on_off = |b: bool| if b { "on" } else { "off" }.to_owned();
    match row {
        ConfigRow::AutoUpdate => (on_off(loaded.auto_enabled()), None),
        ConfigRow::Channel => (format::channel(loaded.channel()).to_owned(), None),
        ConfigRow::CheckOnStart => (on_off(loaded.check_on_start()), None),
        ConfigRow::KillSwitch => match app.kill_switch() {
            None => ("unknown".to_owned(), None),
            Some((false, _)) => ("off (unset)".to_owned(), None),
            Some((true, source)) => (
                format!("ON{}", format::env_source(source)),
                Some("automatic updates and their restarts are blocked".to_owned()),
            ),
        },
        ConfigRow::DeferralTimeout => {
            let ms = loaded.deferral_ms();
            let text = if ms == 0 {
                "0 (wait forever)".to_owned()
            } else {
                format!("{} ({ms} ms)", format::millis(ms))
            };
            (text, None)
        }
    }
}
