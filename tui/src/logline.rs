//! A gateway's log line read into its parts and laid out for a small
//! terminal: `18:52:07 W autoupdate::driver: message`, the date on a line
//! of its own when it changes. The Logs screen and `molt logs` both lay
//! lines out through here, so they read the same.
//!
//! moltd writes `2026-11-24T18:52:07.123456Z  WARN molt_daemon::x: msg`
//! (text) or one JSON object per line; anything else is shown as it came.

use serde_json::Value;

/// Longest text searched for, on the screen and with `molt logs --grep`.
pub const MAX_QUERY: usize = 100;

/// Levels, least severe first, so `level >= min` filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// `warn`, `WARNING`, `err`, `fatal`, ...
    pub fn parse(text: &str) -> Option<LogLevel> {
        match text.to_ascii_lowercase().as_str() {
            "trace" => Some(LogLevel::Trace),
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" | "err" | "fatal" => Some(LogLevel::Error),
            _ => None,
        }
    }

    pub fn letter(self) -> char {
        match self {
            LogLevel::Trace => 'T',
            LogLevel::Debug => 'D',
            LogLevel::Info => 'I',
            LogLevel::Warn => 'W',
            LogLevel::Error => 'E',
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }

    /// The level column: a letter where colour tells the level apart,
    /// the word (padded to one width) where it cannot.
    pub fn label(self, color: bool) -> String {
        if color {
            self.letter().to_string()
        } else {
            format!("{:<5}", self.word())
        }
    }
}

/// One line's parts. A line that is not moltd's shape has only `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// `2026-11-24`.
    pub date: Option<String>,
    /// `18:52:07`.
    pub time: Option<String>,
    /// Seconds since the Unix epoch, for `--since`.
    pub unix: Option<i64>,
    pub level: Option<LogLevel>,
    /// The module path, shortened (see [`short_module`]).
    pub module: Option<String>,
    pub message: String,
}

impl LogLine {
    pub fn parse(line: &str) -> LogLine {
        let trimmed = line.trim_start();
        if trimmed.starts_with('{')
            && let Ok(Value::Object(object)) = serde_json::from_str::<Value>(trimmed)
        {
            return from_json(&object).unwrap_or_else(|| raw(line));
        }
        from_text(line).unwrap_or_else(|| raw(line))
    }

    /// `autoupdate::driver: message`, or the message alone.
    pub fn body(&self) -> String {
        match &self.module {
            Some(module) => format!("{module}: {}", self.message),
            None => self.message.clone(),
        }
    }

    /// The line as `molt logs` prints it (without the date line).
    pub fn plain(&self, color: bool) -> String {
        let mut out = String::new();
        if let Some(time) = &self.time {
            out.push_str(time);
            out.push(' ');
        }
        if let Some(level) = self.level {
            let label = level.label(color);
            match (color, ansi(level)) {
                (true, Some(code)) => out.push_str(&format!("\u{1b}[{code}m{label}\u{1b}[0m")),
                _ => out.push_str(&label),
            }
            out.push(' ');
        }
        out.push_str(&self.body());
        out
    }
}

/// The terminal colour of a level letter, matching the console's theme.
fn ansi(level: LogLevel) -> Option<&'static str> {
    match level {
        LogLevel::Error => Some("1;31"),
        LogLevel::Warn => Some("1;33"),
        LogLevel::Info => Some("32"),
        LogLevel::Debug | LogLevel::Trace => Some("2"),
    }
}

/// The line that says the day when it changes (times are UTC, as the
/// gateway writes them).
pub fn date_line(date: &str) -> String {
    format!("── {date} UTC ──")
}

/// `molt_daemon::autoupdate::driver` → `autoupdate::driver`: every line on
/// the screen comes from moltd, so its crate name says nothing. Other
/// crates' paths stay whole, so no two modules read the same.
pub fn short_module(path: &str) -> &str {
    path.strip_prefix("molt_daemon::").unwrap_or(path)
}

/// Which lines to keep: a minimum level, text to find, a start time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub min_level: Option<LogLevel>,
    /// Lower case; matched against the whole line as the gateway wrote it.
    pub grep: Option<String>,
    /// Unix seconds; lines without a time follow the line before them.
    pub since: Option<i64>,
}

impl Filter {
    pub fn new(min_level: Option<LogLevel>, grep: Option<&str>, since: Option<i64>) -> Self {
        Self {
            min_level,
            grep: grep.filter(|g| !g.is_empty()).map(str::to_lowercase),
            since,
        }
    }

    /// Whether `raw` (read as `line`) is kept; `kept_before` is whether
    /// the line before it was, for lines that carry no time.
    pub fn keeps(&self, raw: &str, line: &LogLine, kept_before: bool) -> bool {
        if let Some(since) = self.since {
            match line.unix {
                Some(at) if at < since => return false,
                None if !kept_before => return false,
                _ => {}
            }
        }
        if let Some(min) = self.min_level
            && line.level.is_none_or(|level| level < min)
        {
            return false;
        }
        self.grep
            .as_ref()
            .is_none_or(|needle| raw.to_lowercase().contains(needle))
    }
}

/// `--since`: a duration back from `now` (`90s`, `15m`, `2h`) or a UTC
/// time: `2026-11-24T18:00[:00][Z]`, `2026-11-24 18:00`, or `18:00[:00]`
/// (the last such time, today or yesterday). Unix seconds.
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "--since {text:?}: use a duration (90s, 15m, 2h) or a UTC time \
             (18:00, 2026-11-24 18:00, 2026-11-24T18:00:00Z)"
        )
    };
    if text.contains(':') {
        let text = text.trim_end_matches(['Z', 'z']);
        let (date, clock) = match text.split_once(['T', 't', ' ']) {
            Some((date, clock)) => (Some(date_parts(date).ok_or_else(bad)?), clock),
            None => (None, text),
        };
        let (h, m, s) = clock_parts(clock).ok_or_else(bad)?;
        let of_day = h * 3600 + m * 60 + s;
        return Ok(match date {
            Some((y, mo, d)) => days_from_civil(y, mo, d) * 86_400 + of_day,
            None => {
                let today = now.div_euclid(86_400) * 86_400 + of_day;
                if today > now { today - 86_400 } else { today }
            }
        });
    }
    if text.is_empty() || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let ms = crate::app::parse_duration_ms(text).map_err(|_| bad())?;
    let secs = i64::try_from(ms / 1000).map_err(|_| bad())?;
    Ok(now.saturating_sub(secs))
}

fn raw(line: &str) -> LogLine {
    LogLine {
        date: None,
        time: None,
        unix: None,
        level: None,
        module: None,
        message: line.to_owned(),
    }
}

/// `<timestamp>  LEVEL [spans: ]target: message`.
fn from_text(line: &str) -> Option<LogLine> {
    let (stamp, rest) = line.split_once(' ')?;
    let at = Timestamp::parse(stamp)?;
    let rest = rest.trim_start();
    let (level, rest) = rest.split_once(' ')?;
    let level = LogLevel::parse(level)?;
    let (module, message) = split_target(rest.trim_start());
    Some(LogLine {
        date: Some(at.date),
        time: Some(at.time),
        unix: Some(at.unix),
        level: Some(level),
        module: module.map(|m| short_module(m).to_owned()),
        message,
    })
}

/// The first `path: ` that is a module path; span context before it
/// (`conn{id=3}: `) stays with the message.
fn split_target(rest: &str) -> (Option<&str>, String) {
    let mut start = 0;
    while let Some(found) = rest[start..].find(": ") {
        let end = start + found;
        let segment = &rest[start..end];
        let is_path = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if is_path {
            let message = format!("{}{}", &rest[..start], &rest[end + 2..]);
            return (Some(segment), message);
        }
        if !segment.ends_with('}') {
            break;
        }
        start = end + 2;
    }
    (None, rest.to_owned())
}

/// moltd's JSON lines (`timestamp`, `level`, `target`, `message`, fields),
/// and the common `time`/`msg` names.
fn from_json(object: &serde_json::Map<String, Value>) -> Option<LogLine> {
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| object.get(*k).and_then(Value::as_str))
    };
    let level = text(&["level", "lvl"]).and_then(LogLevel::parse);
    let at = text(&["timestamp", "time", "ts"]).and_then(Timestamp::parse);
    let message = text(&["message", "msg"]);
    if level.is_none() && at.is_none() && message.is_none() {
        return None;
    }
    let known = [
        "level",
        "lvl",
        "timestamp",
        "time",
        "ts",
        "message",
        "msg",
        "target",
    ];
    let mut message = message.unwrap_or("").to_owned();
    for (key, value) in object.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
        match value {
            Value::String(s) => message.push_str(&format!(" {key}={s}")),
            other => message.push_str(&format!(" {key}={other}")),
        }
    }
    Some(LogLine {
        date: at.as_ref().map(|a| a.date.clone()),
        time: at.as_ref().map(|a| a.time.clone()),
        unix: at.map(|a| a.unix),
        level,
        module: text(&["target"]).map(|m| short_module(m).to_owned()),
        message,
    })
}

struct Timestamp {
    date: String,
    time: String,
    unix: i64,
}

impl Timestamp {
    /// RFC 3339: `2026-11-24T18:52:07.123456Z` or with an offset. The
    /// date and time shown are as written; `unix` accounts for the offset.
    fn parse(text: &str) -> Option<Timestamp> {
        let (date, clock) = text.split_once('T')?;
        let (year, month, day) = date_parts(date)?;
        let (hms, zone) = clock.split_at(clock.find(['Z', 'z', '+', '-'])?);
        let hms = hms.split('.').next()?;
        let (h, m, s) = clock_parts(hms)?;
        let offset = match zone {
            "Z" | "z" => 0,
            _ => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (oh, om) = zone[1..].split_once(':')?;
                sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
            }
        };
        let unix = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset;
        Some(Timestamp {
            date: date.to_owned(),
            time: hms.to_owned(),
            unix,
        })
    }
}

/// `2026-11-24` → (2026, 11, 24), checked.
pub fn date_parts(date: &str) -> Option<(i64, i64, i64)> {
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
}

/// `18:52` or `18:52:07` → (18, 52, 7), checked.
pub fn clock_parts(clock: &str) -> Option<(i64, i64, i64)> {
    let mut parts = clock.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let s: i64 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    (h < 24 && m < 60 && s < 61).then_some((h, m, s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "2026-11-24T18:52:07.123456Z  WARN molt_daemon::autoupdate::driver: \
                        auto-update check failed reason=offline";

    #[test]
    fn a_moltd_text_line_reads_into_its_parts() {
        let line = LogLine::parse(TEXT);
        assert_eq!(
            line,
            LogLine {
                date: Some("2026-11-24".into()),
                time: Some("18:52:07".into()),
                unix: Some(days_from_civil(2026, 11, 24) * 86_400 + 18 * 3600 + 52 * 60 + 7),
                level: Some(LogLevel::Warn),
                module: Some("autoupdate::driver".into()),
                message: "auto-update check failed reason=offline".into(),
            }
        );
        assert_eq!(
            line.plain(false),
            "18:52:07 WARN  autoupdate::driver: auto-update check failed reason=offline"
        );
        assert_eq!(
            line.plain(true),
            "18:52:07 \u{1b}[1;33mW\u{1b}[0m autoupdate::driver: auto-update check failed \
             reason=offline"
        );
    }

    #[test]
    fn span_context_stays_with_the_message() {
        let line =
            LogLine::parse("2026-11-24T01:02:03Z  INFO conn{id=3}: molt_daemon::session: hello");
        assert_eq!(line.module.as_deref(), Some("session"));
        assert_eq!(line.message, "conn{id=3}: hello");
        assert_eq!(line.time.as_deref(), Some("01:02:03"));
        // A message with a colon and no module keeps it all.
        let line = LogLine::parse("2026-11-24T01:02:03Z ERROR note: a b: c");
        assert_eq!(line.module.as_deref(), Some("note"));
        assert_eq!(line.message, "a b: c");
    }

    #[test]
    fn json_lines_read_the_same() {
        let line = LogLine::parse(
            r#"{"timestamp":"2026-11-24T18:52:07.5Z","level":"ERROR","message":"restart failed","target":"molt_daemon::restart","pid":42}"#,
        );
        assert_eq!(
            line.plain(false),
            "18:52:07 ERROR restart: restart failed pid=42"
        );
        assert_eq!(line.date.as_deref(), Some("2026-11-24"));
    }

    #[test]
    fn other_lines_are_shown_as_they_came() {
        for text in ["npm warn deprecated", "{not json", "2026-11-24 nope", ""] {
            let line = LogLine::parse(text);
            assert_eq!(line.plain(true), text);
            assert_eq!((line.level, line.time), (None, None));
        }
        // A JSON object that is no log line.
        assert_eq!(LogLine::parse(r#"{"a":1}"#).message, r#"{"a":1}"#);
    }

    #[test]
    fn levels_as_letters_and_words() {
        let all = [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ];
        let letters: String = all.iter().map(|l| l.letter()).collect();
        assert_eq!(letters, "TDIWE");
        let words: Vec<String> = all.iter().map(|l| l.label(false)).collect();
        assert_eq!(words, ["TRACE", "DEBUG", "INFO ", "WARN ", "ERROR"]);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("loud"), None);
    }

    #[test]
    fn only_the_daemons_own_crate_is_dropped() {
        assert_eq!(
            short_module("molt_daemon::autoupdate::driver"),
            "autoupdate::driver"
        );
        assert_eq!(short_module("molt_daemon::server"), "server");
        assert_eq!(short_module("moltd"), "moltd");
        assert_eq!(short_module("hyper::proto::h1"), "hyper::proto::h1");
        assert_eq!(short_module("molt_daemonic::x"), "molt_daemonic::x");
    }

    #[test]
    fn offsets_and_days_count_right() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let utc = LogLine::parse("2026-11-24T10:00:00Z  INFO m: x").unix;
        let east = LogLine::parse("2026-11-24T12:00:00+02:00  INFO m: x").unix;
        assert_eq!(utc, east);
        assert_eq!(date_parts("2026-13-01"), None);
        assert_eq!(clock_parts("24:00"), None);
        assert_eq!(clock_parts("18:05"), Some((18, 5, 0)));
    }

    #[test]
    fn since_takes_a_duration_or_a_utc_time() {
        // 2026-11-24 18:30:00 UTC.
        let now = days_from_civil(2026, 11, 24) * 86_400 + 18 * 3600 + 30 * 60;
        assert_eq!(parse_since("15m", now), Ok(now - 900));
        assert_eq!(parse_since("2h", now), Ok(now - 7200));
        assert_eq!(parse_since("18:00", now), Ok(now - 1800));
        // A time later than now today means yesterday.
        assert_eq!(parse_since("19:00:30", now), Ok(now - 86_400 + 1830));
        let at = days_from_civil(2026, 11, 23) * 86_400 + 6 * 3600;
        for text in [
            "2026-11-23T06:00:00Z",
            "2026-11-23 06:00",
            "2026-11-23T06:00",
        ] {
            assert_eq!(parse_since(text, now), Ok(at), "{text}");
        }
        for bad in ["", "yesterday", "15x", "25:00", "2026-13-01 10:00", "-5m"] {
            let err = parse_since(bad, now).unwrap_err();
            assert!(err.starts_with("--since"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_filter_keeps_level_text_and_time() {
        let filter = Filter::new(Some(LogLevel::Warn), Some("OFFLINE"), None);
        let info = TEXT.replace("WARN", "INFO");
        assert!(filter.keeps(TEXT, &LogLine::parse(TEXT), false));
        assert!(!filter.keeps(&info, &LogLine::parse(&info), false));
        let other = TEXT.replace("offline", "timeout");
        assert!(!filter.keeps(&other, &LogLine::parse(&other), false));
        // Lines without a level do not pass a level filter.
        assert!(!filter.keeps("offline", &LogLine::parse("offline"), true));

        let at = LogLine::parse(TEXT).unix.unwrap();
        let since = Filter::new(None, None, Some(at));
        assert!(since.keeps(TEXT, &LogLine::parse(TEXT), false));
        let earlier = TEXT.replace("18:52:07", "18:52:06");
        assert!(!since.keeps(&earlier, &LogLine::parse(&earlier), true));
        assert!(since.keeps("continued", &LogLine::parse("continued"), true));
        assert!(!since.keeps("continued", &LogLine::parse("continued"), false));
    }
}
