//! The Fleet screen's rollout panel: where the latest rollout stands, what
//! the running one says, where a halted one stopped (gateway, step, the
//! tail of its output) and the keys that go on from there.

use ratatui::text::{Line, Span};

use super::text::{hanging, wrap_spans};
use super::theme::Theme;
use crate::fleet::panel::RolloutPanel;
use crate::fleet::record::{HostOutcome, Rollout, State};

/// Output lines of a halted gateway shown.
const TAIL_LINES: usize = 3;
/// Progress lines of a running rollout shown.
const LOG_SHOWN: usize = 2;

/// The panel's lines for a box `width` wide, at most `height` of them;
/// `shown` gateways are on the screen (the group filter).
pub fn lines<'a>(
    panel: &RolloutPanel,
    shown: usize,
    theme: &Theme,
    width: usize,
    height: usize,
) -> Vec<Line<'a>> {
    // What to do next stays on screen; the story above it gives way.
    let mut lines = Vec::new();
    let mut foot = Vec::new();
    if let Some(target) = &panel.prompt {
        lines.push(Line::from(vec![
            Span::styled(" Roll out to ", theme.label()),
            Span::styled(format!("{target}▏"), theme.value()),
            Span::styled(
                "  version or dist-tag; empty: each channel's latest",
                theme.dim(),
            ),
        ]));
        if let Some(unfinished) = panel.unfinished() {
            lines.extend(words(
                &format!(
                    "replaces the unfinished rollout to {}{}",
                    unfinished.goal(),
                    unfinished.where_it_stopped()
                ),
                theme.warn(),
                width,
            ));
        }
        foot.push(keys(theme, &[("Enter", "start"), ("Esc", "cancel")]));
    } else {
        match &panel.record {
            Some(rollout) => lines.extend(summary(rollout, panel.running, theme, width)),
            None if panel.running => {
                lines.push(Line::styled(" starting the rollout", theme.warn()))
            }
            None => {}
        }
        if panel.running {
            let shown = panel.log.len().saturating_sub(LOG_SHOWN);
            for line in panel.log.iter().skip(shown) {
                lines.extend(words(line, theme.dim(), width));
            }
        } else if let Some(rollout) = panel.unfinished() {
            let mut hint = vec![("R", "resume".to_owned())];
            if let Some(halt) = &rollout.halt {
                hint.push(("S", format!("skip {}", halt.host)));
            }
            hint.push(("B", "roll back".to_owned()));
            hint.push(("U", "new rollout".to_owned()));
            let hint: Vec<(&str, &str)> = hint.iter().map(|(k, w)| (*k, w.as_str())).collect();
            foot.push(keys(theme, &hint));
        }
    }
    if let Some((setting, outcomes)) = &panel.applied {
        let set = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
        let style = if set == outcomes.len() {
            theme.ok()
        } else {
            theme.error()
        };
        lines.push(Line::styled(
            format!(
                " {}: set on {set} of {}",
                setting.describe(),
                outcomes.len()
            ),
            style,
        ));
        for (name, outcome) in outcomes {
            if let Err(problem) = outcome {
                lines.extend(words(&format!("{name}: {problem}"), theme.error(), width));
            }
        }
    }
    if let Some(choosing) = panel.choosing {
        foot.push(Line::styled(
            format!(
                " Set {} on the {shown} gateway{} shown:",
                choosing.name(),
                if shown == 1 { "" } else { "s" }
            ),
            theme.label(),
        ));
        foot.push(keys(theme, &[("y", "on"), ("n", "off"), ("Esc", "cancel")]));
    }
    if let Some(error) = &panel.error {
        foot.extend(words(error, theme.error(), width));
    }
    foot.truncate(height);
    lines.truncate(height - foot.len());
    lines.extend(foot);
    lines
}

fn summary<'a>(rollout: &Rollout, running: bool, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let count = |outcome: HostOutcome| {
        rollout
            .hosts
            .iter()
            .filter(|h| h.outcome == outcome)
            .count()
    };
    let total: usize = rollout.waves.iter().map(Vec::len).sum();
    let (state, style) = match rollout.state {
        _ if running => ("running", theme.warn()),
        State::Running => ("stopped while running", theme.warn()),
        State::Halted => ("halted", theme.error()),
        State::Done => ("done", theme.ok()),
        State::RolledBack => ("rolled back", theme.ok()),
    };
    let group = rollout
        .group
        .as_deref()
        .map(|g| format!(" (group {g})"))
        .unwrap_or_default();
    let mut lines = vec![Line::from(vec![
        Span::styled(format!(" to {}{group}: ", rollout.goal()), theme.label()),
        Span::styled(state, style),
        Span::styled(
            format!(
                ", {} of {total} verified{}",
                count(HostOutcome::Verified) + count(HostOutcome::UpToDate),
                match count(HostOutcome::Reverted) {
                    0 => String::new(),
                    n => format!(", {n} rolled back"),
                }
            ),
            theme.value(),
        ),
    ])];
    if let Some(halt) = rollout.halt.as_ref().filter(|_| !running) {
        let step = halt
            .step
            .as_deref()
            .map(|s| format!(", step {s}"))
            .unwrap_or_default();
        lines.extend(words(
            &format!("halted at {}{step}: {}", halt.host, halt.reason),
            theme.error(),
            width,
        ));
        let tail = halt.output_tail.len().saturating_sub(TAIL_LINES);
        for line in &halt.output_tail[tail..] {
            lines.extend(hanging(&format!("| {line}"), 3, theme.error(), width));
        }
    }
    lines
}

/// Prose at column 1, wrapped at spaces under itself.
fn words<'a>(text: &str, style: ratatui::style::Style, width: usize) -> Vec<Line<'a>> {
    let spans = vec![Span::raw(" "), Span::styled(text.to_owned(), style)];
    wrap_spans(spans, 1, width, true)
}

fn keys<'a>(theme: &Theme, keys: &[(&str, &str)]) -> Line<'a> {
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(format!(" {key}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    Line::from(spans)
}
