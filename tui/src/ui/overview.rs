use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::text::rows_at;
use super::theme::Theme;
use crate::app::{App, ConnState};
use crate::format;
use crate::peer::{Facts, KillSwitch, Outcome};
use molt_protocol::status::RestartPhase;

const LABEL_WIDTH: usize = 13;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut block = Block::bordered().title(Line::styled(" Overview ", theme.heading()));
    if let Some(down) = app.disconnected_for() {
        block = block.title(
            Line::styled(
                format!(" last known, disconnected {} ", format::duration(down)),
                theme.warn(),
            )
            .right_aligned(),
        );
    }
    let inner_height = area.height.saturating_sub(2) as usize;
    let paragraph = match &app.status {
        Some(snapshot) => {
            let width = usize::from(area.width.saturating_sub(2));
            let mut lines = status_lines(app, &snapshot.facts, theme, width);
            if let Some(problem) = connection_problem(app) {
                // Old data must not look live; the reason must stand out.
                for line in &mut lines {
                    for span in &mut line.spans {
                        span.style = span.style.patch(theme.dim());
                    }
                }
                lines.splice(
                    1..1,
                    row(theme, width, "connection", problem, theme.error()),
                );
            }
            fit(&mut lines, inner_height);
            let overflow = lines.len().saturating_sub(inner_height);
            app.overview_overflow.set(overflow);
            let offset = app.overview_scroll.min(overflow);
            if overflow > 0 {
                let more = match (offset > 0, offset < overflow) {
                    (true, true) => " ↑↓ more ",
                    (true, false) => " ↑ more ",
                    _ => " ↓ more ",
                };
                block = block.title_bottom(Line::styled(more, theme.dim()).right_aligned());
            }
            Paragraph::new(lines).scroll((u16::try_from(offset).unwrap_or(u16::MAX), 0))
        }
        None => Paragraph::new(waiting_lines(app, theme)).wrap(Wrap { trim: false }),
    };
    frame.render_widget(paragraph.block(block), area);
}

/// Drops blank separators when the screen is short, so facts are not cut.
fn fit(lines: &mut Vec<Line>, height: usize) {
    while lines.len() > height {
        match lines.iter().rposition(|l| l.width() == 0) {
            Some(i) => {
                lines.remove(i);
            }
            None => break,
        }
    }
}

/// A labelled value; a long one wraps under its own column.
fn row<'a>(
    theme: &Theme,
    width: usize,
    label: &str,
    value: impl Into<String>,
    style: Style,
) -> Vec<Line<'a>> {
    rows_at(theme, (2, LABEL_WIDTH), label, &value.into(), style, width)
}

fn status_lines<'a>(app: &'a App, s: &'a Facts, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let now = app.gateway_now_ms();
    let plain = theme.value();
    let unknown = theme.dim();
    let mut lines = vec![Line::styled("Gateway", theme.heading())];
    let version = match (&s.version, &s.profile, s.build_protocol) {
        (Some(v), Some(profile), Some(protocol)) => format!("{v} ({profile}, protocol {protocol})"),
        (Some(v), _, _) => v.clone(),
        (None, _, _) => format::UNKNOWN.to_owned(),
    };
    lines.extend(row(theme, width, "version", version, theme.ok()));
    if let Some(notice) = &app.version_notice {
        lines.extend(row(theme, width, "", notice.clone(), theme.warn()));
    }
    if let Some(build) = &s.build_id {
        lines.extend(row(theme, width, "build", build.clone(), plain));
    }
    if let Some(boot) = &s.boot_id {
        lines.extend(row(theme, width, "boot id", boot.clone(), plain));
    }
    let uptime = app
        .uptime()
        .map(format::duration)
        .unwrap_or_else(|| "?".into());
    let conns = match s.connections {
        Some(1) => ", 1 connection".to_owned(),
        Some(n) => format!(", {n} connections"),
        None => String::new(),
    };
    lines.extend(row(
        theme,
        width,
        "pid",
        format!("{}, up {uptime}{conns}", format::or_unknown(s.pid)),
        plain,
    ));
    lines.extend(match &s.listen {
        Some(listen) => row(theme, width, "listen", listen.clone(), plain),
        None => row(theme, width, "listen", format::UNKNOWN, unknown),
    });
    lines.extend(match &s.install {
        Some(install) => row(
            theme,
            width,
            "install",
            match &install.source {
                Some(source) => format!("{} ({source})", install.kind),
                None => install.kind.clone(),
            },
            plain,
        ),
        None => row(theme, width, "install", format::UNKNOWN, unknown),
    });
    if let Some(root) = s.install.as_ref().and_then(|i| i.root.as_ref()) {
        lines.extend(row(theme, width, "root", root.clone(), plain));
    }
    lines.extend(match &s.supervisor {
        Some(supervisor) => row(
            theme,
            width,
            "supervisor",
            format::supervisor(supervisor),
            plain,
        ),
        None => row(theme, width, "supervisor", format::UNKNOWN, unknown),
    });
    if !s.short_tokens.is_empty() {
        lines.extend(row(
            theme,
            width,
            "auth",
            format!(
                "short credential ({}): easy to guess, use {} characters or more",
                s.short_tokens.join(", "),
                molt_protocol::secret::MIN_TOKEN_CHARS
            ),
            theme.warn(),
        ));
    }

    lines.push(Line::raw(""));
    lines.push(Line::styled("Restart", theme.heading()));
    match &s.restart {
        Some(restart) => {
            lines.extend(row(
                theme,
                width,
                "strategy",
                format::strategy(restart.strategy),
                plain,
            ));
            let phase_style = if restart.phase == RestartPhase::Idle {
                plain
            } else {
                theme.warn()
            };
            lines.extend(row(
                theme,
                width,
                "phase",
                format::restart_phase(restart, now),
                phase_style,
            ));
        }
        None => {
            lines.extend(row(theme, width, "strategy", format::UNKNOWN, unknown));
            lines.extend(row(theme, width, "phase", format::UNKNOWN, unknown));
        }
    }
    lines.extend(match &s.pending_work {
        Some(work) => row(
            theme,
            width,
            "pending",
            format::pending(work),
            if work.total() == 0 {
                plain
            } else {
                theme.warn()
            },
        ),
        None => row(theme, width, "pending", format::UNKNOWN, unknown),
    });
    if let Some(failure) = s.restart.as_ref().and_then(|r| r.last_failure.as_ref()) {
        let when = now
            .map(|now| format!(", {}", format::relative(failure.at, now)))
            .unwrap_or_default();
        let at = (2, LABEL_WIDTH);
        let reason = format!("{}{when}", failure.reason);
        lines.extend(rows_at(
            theme,
            at,
            "last failure",
            &reason,
            theme.error(),
            width,
        ));
        // The successor's own last words, when moltd kept them.
        if let Some(step) = &failure.successor {
            let said: Vec<&str> = step
                .stderr_tail
                .lines()
                .chain(step.stdout_tail.lines())
                .filter(|l| !l.trim().is_empty())
                .collect();
            for line in said.iter().rev().take(2).rev() {
                lines.extend(rows_at(theme, at, "  it said", line, theme.error(), width));
            }
        }
    }

    lines.push(Line::raw(""));
    lines.push(Line::styled("Updates", theme.heading()));
    let available_style = if s.update_available.is_some() {
        theme.warn()
    } else {
        plain
    };
    lines.extend(row(
        theme,
        width,
        "available",
        format::update_available(s.update_available.as_ref()),
        available_style,
    ));
    lines.extend(row(
        theme,
        width,
        "auto-update",
        format::auto_update(&s.auto, now),
        plain,
    ));
    lines.extend(match (s.auto.kill_switch, format::kill_switch(&s.auto)) {
        (KillSwitch::NotReported, _) => row(
            theme,
            width,
            "kill switch",
            "not reported by this gateway (Config says how to set it)",
            unknown,
        ),
        (_, Some(text)) => row(theme, width, "kill switch", text, theme.warn()),
        (_, None) => row(theme, width, "kill switch", "off", plain),
    });
    match &s.latest_run {
        Some(run) => {
            let style = match run.outcome {
                Outcome::Succeeded => theme.ok(),
                Outcome::Failed { .. } => theme.error(),
                Outcome::Skipped => plain,
                Outcome::Running => theme.warn(),
            };
            lines.extend(row(
                theme,
                width,
                "latest run",
                format::run(run, now),
                style,
            ));
        }
        None => lines.extend(row(theme, width, "latest run", "none", plain)),
    }
    if let Some(error) = &app.status_error {
        lines.push(Line::raw(""));
        lines.extend(row(theme, width, "refresh", error.clone(), theme.error()));
    }
    lines
}

/// Why the data below is not live, when it is not.
fn connection_problem(app: &App) -> Option<String> {
    match &app.conn {
        ConnState::Connecting if app.disconnected_at.is_some() => Some("reconnecting".to_owned()),
        ConnState::Connected | ConnState::Connecting => None,
        ConnState::HandingOff { .. } => Some("handing off to a new process".to_owned()),
        ConnState::Reconnecting { error, .. } => Some(match error {
            Some(error) => format!("lost: {error}"),
            None => "lost; reconnecting".to_owned(),
        }),
        ConnState::AuthFailed { message } => Some(format!("token refused: {message} (r retries)")),
        ConnState::Incompatible { message } => Some(format!("{message} (r retries)")),
    }
}

/// Before the first status: what the console is doing and what to do.
fn waiting_lines<'a>(app: &'a App, theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    match &app.conn {
        ConnState::Connecting | ConnState::Connected => {
            lines.push(Line::raw(format!("Connecting to {} ...", app.url)));
        }
        ConnState::HandingOff { .. } => {
            lines.push(Line::styled(
                "The gateway is handing off to a new process; waiting for it.",
                theme.warn(),
            ));
        }
        ConnState::Reconnecting { attempt, error } => {
            lines.push(Line::styled(
                format!("Cannot reach the gateway at {}.", app.url),
                theme.warn(),
            ));
            if let Some(error) = error {
                lines.push(Line::raw(error.clone()));
            }
            lines.push(Line::raw(format!(
                "Retrying on its own (attempt {attempt}); r retries now."
            )));
            lines.push(Line::raw(
                "Is the gateway running? Check its service (`systemctl status moltd`) or its log.",
            ));
        }
        ConnState::Incompatible { message } => {
            lines.push(Line::styled(
                "This console and the gateway share no protocol version.",
                theme.error(),
            ));
            lines.push(Line::raw(message.clone()));
            lines.push(Line::raw(
                "Retrying cannot help; press r after updating molt or moltd.",
            ));
        }
        ConnState::AuthFailed { message } => {
            lines.push(Line::styled(
                "The gateway refused this console's token.",
                theme.error(),
            ));
            lines.push(Line::raw(message.clone()));
            lines.push(Line::raw(
                "Pass --token, set OPENCLAW_GATEWAY_TOKEN, or fix gateway.auth.token \
                 in the config; then press r.",
            ));
        }
    }
    if !app.origin.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(app.origin.clone(), theme.dim()));
    }
    lines
}
