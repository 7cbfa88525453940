//! Plain-text wording of status facts, shared by the TUI and `molt status`
//! so both say the same thing the same way.

use std::time::Duration;

use molt_protocol::status::{
    EnvSource, PendingWork, RestartInfo, RestartPhase, RestartStrategy, SupervisorInfo,
    SupervisorKind,
};
use molt_protocol::update::Channel;

use crate::peer::{Auto, Available, Claim, Facts, Install, KillSwitch, Outcome, UpdateApi};

/// What the console shows for a fact the gateway did not report.
pub const UNKNOWN: &str = "unknown";

/// `45s`, `12m 05s`, `3h 02m 05s`, `2d 03h 12m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h {mins:02}m")
    } else if hours > 0 {
        format!("{hours}h {mins:02}m {s:02}s")
    } else if mins > 0 {
        format!("{mins}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Unix ms as UTC, `2026-11-24T18:41:40Z`.
pub fn timestamp(at_ms: u64) -> String {
    let secs = at_ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `in 5m 00s` or `3m 10s ago`, relative to `now_ms` (both Unix ms).
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms >= now_ms {
        format!("in {}", duration(Duration::from_millis(at_ms - now_ms)))
    } else {
        format!("{} ago", duration(Duration::from_millis(now_ms - at_ms)))
    }
}

/// `npm /opt/lib/node_modules/moltd (detected)`.
pub fn install(info: &Install) -> String {
    let mut text = info.kind.clone();
    if let Some(root) = &info.root {
        text.push(' ');
        text.push_str(root);
    }
    if let Some(source) = &info.source {
        text.push_str(&format!(" ({source})"));
    }
    text
}

/// A time between two processes: `42 ms` up to 10 s, then `123.7 s`.
pub fn gap(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// `text` cut to `width` characters with an ellipsis.
pub fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// An optional fact, or `unknown`.
pub fn or_unknown(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| UNKNOWN.to_owned(), |v| v.to_string())
}

pub fn supervisor(info: &SupervisorInfo) -> String {
    let kind = match info.kind {
        SupervisorKind::None => "none",
        SupervisorKind::Systemd => "systemd",
        SupervisorKind::Launchd => "launchd",
        SupervisorKind::Custom => "custom",
        SupervisorKind::External => "external",
    };
    match &info.detail {
        Some(detail) => format!("{kind} ({detail})"),
        None => kind.to_owned(),
    }
}

pub fn strategy(strategy: RestartStrategy) -> &'static str {
    match strategy {
        RestartStrategy::Respawn => "respawn",
        RestartStrategy::Supervised => "supervised",
        RestartStrategy::Exec => "exec",
    }
}

/// `idle` or `deferring: update.run, fires in 2s (forced)`.
pub fn restart_phase(restart: &RestartInfo, now_ms: Option<u64>) -> String {
    let phase = match restart.phase {
        RestartPhase::Idle => return "idle".to_owned(),
        RestartPhase::Scheduled => "scheduled",
        RestartPhase::Deferring => "deferring",
        RestartPhase::InFlight => "in flight",
    };
    let mut text = phase.to_owned();
    if let Some(reason) = &restart.reason {
        text.push_str(&format!(": {reason}"));
    }
    if let (Some(at), Some(now)) = (restart.fire_at, now_ms) {
        let when = if at >= now {
            relative(at, now)
        } else {
            "due".to_owned()
        };
        text.push_str(&format!(", fires {when}"));
    }
    if restart.forced {
        text.push_str(" (forced)");
    }
    text
}

/// `none` or `1 request, 1 hold, 2 update steps`.
pub fn pending(work: &PendingWork) -> String {
    if work.total() == 0 {
        return "none".to_owned();
    }
    let parts = [
        (work.in_flight_requests, "request"),
        (work.holds, "hold"),
        (work.update_steps, "update step"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn channel(channel: Channel) -> &'static str {
    match channel {
        Channel::Stable => "stable",
        Channel::Beta => "beta",
        Channel::Dev => "dev",
    }
}

/// `enabled, channel stable, next check in 59m 00s`.
pub fn auto_update(auto: &Auto, now_ms: Option<u64>) -> String {
    let mut text = format!(
        "{}, channel {}",
        match auto.enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "unknown",
        },
        auto.channel.as_deref().unwrap_or(UNKNOWN)
    );
    if let Some(now) = now_ms {
        if let Some(at) = auto.next_apply_at {
            text.push_str(&format!(", applies {}", relative(at, now)));
        } else if let Some(at) = auto.next_check_at {
            text.push_str(&format!(", next check {}", relative(at, now)));
        }
    }
    text
}

/// ` (process env)`, ` (.env)` or nothing.
pub fn env_source(source: Option<EnvSource>) -> &'static str {
    match source {
        Some(EnvSource::ProcessEnv) => " (process env)",
        Some(EnvSource::EnvFile) => " (.env)",
        None => "",
    }
}

/// The kill switch, and where it was set; `None` when off.
pub fn kill_switch(auto: &Auto) -> Option<String> {
    match auto.kill_switch {
        KillSwitch::On { source } => Some(format!(
            "ON: OPENCLAW_NO_AUTO_UPDATE{}, automatic updates blocked",
            env_source(source)
        )),
        KillSwitch::NotReported => Some(
            "not reported by this gateway (OPENCLAW_NO_AUTO_UPDATE is read from its environment)"
                .to_owned(),
        ),
        KillSwitch::Off => None,
    }
}

/// `1.1.0 -> 1.2.0 on stable`.
pub fn update_available(available: Option<&Available>) -> String {
    match available {
        Some(a) => format!(
            "{} -> {} on {}",
            a.current.as_deref().unwrap_or("?"),
            a.latest,
            a.channel.as_deref().unwrap_or("?")
        ),
        None => "none known".to_owned(),
    }
}

/// A run's outcome in one word or two: `verified`, `rolled back`,
/// `running (staging)`.
pub fn outcome(claim: &Claim) -> String {
    match claim.outcome {
        Outcome::Succeeded if claim.proven => "verified".to_owned(),
        Outcome::Succeeded => "succeeded".to_owned(),
        Outcome::Failed { rolled_back: true } => "rolled back".to_owned(),
        Outcome::Failed { rolled_back: false } => "failed".to_owned(),
        Outcome::Skipped => "skipped".to_owned(),
        Outcome::Running => match &claim.phase {
            Some(phase) => phase.clone(),
            None => "running".to_owned(),
        },
    }
}

/// `run-1 verified 1.1.0 -> 1.2.0, manual, 3m 10s ago`.
pub fn run(run: &Claim, now_ms: Option<u64>) -> String {
    let id = run
        .run_id
        .as_ref()
        .map_or_else(|| "(no run id)".to_owned(), |id| id.to_string());
    let mut text = format!(
        "{} {} {} -> {}",
        id,
        outcome(run),
        run.before.as_deref().unwrap_or("?"),
        run.target_version().unwrap_or("?"),
    );
    if let Some(trigger) = &run.trigger {
        text.push_str(&format!(", {trigger}"));
    }
    if let Some(reason) = &run.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if let (Some(now), Some(at)) = (now_ms, run.finished_at.or(run.updated_at)) {
        text.push_str(&format!(", {}", relative(at, now)));
    }
    text
}

/// `45s ago`, `3m ago`, `2h ago`, `4d ago`: one unit, for narrow columns.
pub fn ago_short(at_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(at_ms) / 1000;
    let (n, unit) = match secs {
        s if s < 60 => (s, "s"),
        s if s < 3600 => (s / 60, "m"),
        s if s < 86_400 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    format!("{n}{unit} ago")
}

/// `850 ms`, `12.3 s`, `3m 10s`.
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        duration(Duration::from_millis(ms))
    }
}

/// What the restart after an update does, in the operator's words.
pub fn restart_consequence(facts: &Facts, api: UpdateApi) -> String {
    match api {
        UpdateApi::Sentinel => {
            return "OpenClaw installs the new version inside the running gateway, then \
                    restarts itself; its port is dark until the new process listens, and \
                    molt checks which version that process reports"
                .to_owned();
        }
        UpdateApi::Runs => {
            return "OpenClaw hands the update to a detached updater; the gateway serves \
                    while it stages, then stops for the swap and starts again; molt follows \
                    the run and checks which version the new process reports"
                .to_owned();
        }
        UpdateApi::Molt | UpdateApi::None => {}
    }
    let how = match (&facts.restart, &facts.supervisor) {
        (Some(restart), supervisor) => match restart.strategy {
            RestartStrategy::Respawn => "moltd starts the new version beside this one and hands \
                 it the port; it never closes"
                .to_owned(),
            RestartStrategy::Supervised => format!(
                "moltd exits and {} starts the new version",
                supervisor
                    .as_ref()
                    .map_or_else(|| "its supervisor".to_owned(), supervisor_text)
            ),
            RestartStrategy::Exec => "moltd replaces itself in place (same pid)".to_owned(),
        },
        (None, _) => "the gateway restarts into the new version".to_owned(),
    };
    let when = if facts.install.as_ref().is_some_and(Install::is_package) {
        "at once after the swap (no deferral)"
    } else {
        "after pending work, as for any restart"
    };
    format!("{how}; restarts {when}; connected clients reconnect")
}

fn supervisor_text(info: &SupervisorInfo) -> String {
    supervisor(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1_795_545_700_941), "2026-11-24T18:41:40Z");
        assert_eq!(timestamp(951_825_600_000), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn durations() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (725, "12m 05s"),
            (3 * 3600 + 125, "3h 02m 05s"),
            (2 * 86_400 + 3 * 3600 + 12 * 60 + 9, "2d 03h 12m"),
        ];
        for (secs, text) in cases {
            assert_eq!(duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(relative(10_000, 5_000), "in 5s");
        assert_eq!(relative(5_000, 65_000), "1m 00s ago");
    }

    #[test]
    fn pending_work() {
        assert_eq!(pending(&PendingWork::default()), "none");
        let work = PendingWork {
            in_flight_requests: 1,
            holds: 0,
            update_steps: 2,
        };
        assert_eq!(pending(&work), "1 request, 2 update steps");
    }
}
