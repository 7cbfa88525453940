use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::{App, ConfigRow};
use crate::format;
use crate::peer::KillSwitch;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::bordered().title(Line::styled(" Config ", theme.heading()));
    let width = usize::from(block.inner(area).width);
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
                    for part in super::text::wrap_words(&note, width.saturating_sub(20)) {
                        lines.push(Line::styled(format!("{:20}{part}", ""), theme.warn()));
                    }
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
            let help = "Enter toggles; the channel cycles stable → beta → dev; the timeout \
                        takes ms or 30s / 5m / 1h (0 waits for pending work forever).";
            for part in super::text::wrap_words(help, width.saturating_sub(2)) {
                lines.push(Line::styled(format!("  {part}"), theme.dim()));
            }
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
        ConfigRow::AutoUpdate => {
            // OpenClaw reports whether its schedule applies updates (or no
            // schedule at all while OPENCLAW_NO_AUTO_UPDATE is set); the
            // config alone cannot say.
            let facts = app.facts();
            let in_force = facts.and_then(|f| f.auto.enabled);
            let reported = facts.is_some_and(|f| f.auto.kill_switch != KillSwitch::NotReported);
            let note = match (loaded.auto_enabled(), in_force) {
                (true, Some(false)) => Some(
                    "the gateway's schedule says automatic updates are off: something blocks \
                     them (OPENCLAW_NO_AUTO_UPDATE, update.checkOnStart false, no service \
                     manager to restart it, or an external supervisor)"
                        .to_owned(),
                ),
                (true, None) if !reported => Some(
                    "not in force: the gateway reports no update schedule, as when \
                     OPENCLAW_NO_AUTO_UPDATE or update.checkOnStart false stops automatic \
                     updates"
                        .to_owned(),
                ),
                _ => None,
            };
            (on_off(loaded.auto_enabled()), note)
        }
        ConfigRow::Channel => (loaded.channel(), None),
        ConfigRow::CheckOnStart => (on_off(loaded.check_on_start()), None),
        ConfigRow::KillSwitch => match app.kill_switch() {
            None => ("unknown".to_owned(), None),
            Some(KillSwitch::NotReported) => (
                "not reported".to_owned(),
                Some(format!(
                    "this gateway does not report it: {}",
                    app.kill_switch_advice()
                )),
            ),
            Some(KillSwitch::Off) => ("off (unset)".to_owned(), None),
            Some(KillSwitch::On { source }) => (
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
