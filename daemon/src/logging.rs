//! Logging: stderr, a daily rolling file in `<state>/logs/`, and a hub that
//! streams each formatted line to `logs.tail` followers.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod capped;
mod one_line;
mod throttled;

pub use capped::MAX_LOG_FILE_BYTES;
pub use throttled::{THROTTLE_WINDOW, Throttled, ThrottledByKey};
use tokio::sync::broadcast;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

/// Daily log files kept (today's included); older ones are removed at
/// start and at each day's rollover.
pub const LOG_FILES_KEPT: usize = 14;

/// File name prefix of the rolling log: `moltd.log.YYYY-MM-DD`.
pub const LOG_FILE_PREFIX: &str = "moltd.log";
const HUB_CAPACITY: usize = 1024;

/// Fan-out of formatted log lines to followers.
#[derive(Clone, Debug)]
pub struct LogHub {
    lines: broadcast::Sender<String>,
}

impl Default for LogHub {
    fn default() -> Self {
        Self {
            lines: broadcast::channel(HUB_CAPACITY).0,
        }
    }
}

impl LogHub {
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.lines.subscribe()
    }

    pub fn publish(&self, line: &str) {
        // No followers is the normal case: no copy of the line then.
        if self.lines.receiver_count() == 0 {
            return;
        }
        let _ = self.lines.send(line.trim_end().to_owned());
    }
}

impl io::Write for LogHub {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The fmt layer writes each event as one buffer.
        for line in String::from_utf8_lossy(buf).lines() {
            self.publish(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogHub {
    type Writer = LogHub;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, with the same fields as text: timestamp,
    /// level, target, message and the event's fields. For journald and log
    /// shippers.
    Json,
}

impl LogFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// What the logging set-up takes from flags and config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    pub format: LogFormat,
    /// Per day's file; see [`MAX_LOG_FILE_BYTES`].
    pub max_file_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            max_file_bytes: MAX_LOG_FILE_BYTES,
        }
    }
}

/// Installs the global subscriber: stderr, the daily file and the hub, all
/// filtered by `MOLT_LOG` (default `info`). Keep the guard alive until exit so
/// buffered file lines are flushed.
pub fn init(logs_dir: &Path, hub: &LogHub, options: LogOptions) -> io::Result<WorkerGuard> {
    crate::fsutil::ensure_private_dir(logs_dir)?;
    // The appender creates files with the umask's mode; a private dir keeps
    // them private whatever that is.
    std::fs::set_permissions(logs_dir, std::fs::Permissions::from_mode(0o700))?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .max_log_files(LOG_FILES_KEPT)
        .build(logs_dir)
        .map_err(|e| io::Error::other(format!("log dir {}: {e}", logs_dir.display())))?;
    // The default queue reserves 128k lines (~4 MiB resident at start);
    // 8k lines absorbs any burst a gateway logs.
    let (file_writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .finish(appender);
    let already = written_today(logs_dir);
    let file = capped::Capped::new(file_writer, options.max_file_bytes, already);
    install(hub, Some(file), options.format);
    Ok(guard)
}

/// stderr and the hub only, when the log dir cannot be used: the daemon
/// still says what it does.
pub fn init_without_file(hub: &LogHub, format: LogFormat) {
    install(hub, None, format);
}

/// The size of today's file, if the newest one was written today (a
/// restart does not reset the day's cap).
fn written_today(logs_dir: &Path) -> u64 {
    let day = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400)
    };
    current_log_file(logs_dir)
        .and_then(|path| std::fs::metadata(path).ok())
        .filter(|meta| {
            meta.modified()
                .is_ok_and(|m| day(m) == day(std::time::SystemTime::now()))
        })
        .map_or(0, |meta| meta.len())
}

type FileWriter = capped::Capped<tracing_appender::non_blocking::NonBlocking>;

fn install(hub: &LogHub, file: Option<FileWriter>, format: LogFormat) {
    let filter = EnvFilter::try_from_env("MOLT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let mut layers = vec![
        layer(format, io::stderr, stderr_is_terminal()),
        layer(format, hub.clone(), false),
    ];
    if let Some(file) = file {
        layers.push(layer(format, file, false));
    }
    // The filter applies to every layer whichever comes first.
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .init();
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// One output in `format`; the file, stderr and the hub share it so a line
/// reads the same everywhere.
fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .fmt_fields(one_line::OneLine)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// Colours only for a person watching, and never with `NO_COLOR`.
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// The newest rolling log file in `logs_dir`, if any.
pub fn current_log_file(logs_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(logs_dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(LOG_FILE_PREFIX))
        // Date-suffixed names sort chronologically.
        .max_by_key(|e| e.file_name())
        .map(|e| e.path())
}

/// The last `n` lines of `path`, reading backwards so a large log costs
/// only what is returned.
pub fn tail_lines(path: &Path, n: usize, max_bytes: usize) -> io::Result<Vec<String>> {
    const CHUNK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    while pos > 0 && bytecount_newlines(&buf) <= n && buf.len() < max_bytes {
        let step = CHUNK.min(pos).min((max_bytes - buf.len()) as u64);
        pos -= step;
        file.seek(SeekFrom::Start(pos))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    // Cut at the byte bound: the first line read may be a tail end.
    if pos > 0 && buf.len() >= max_bytes && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| (*l).to_owned()).collect())
}

fn bytecount_newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tail_returns_the_last_lines_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moltd.log.2026-11-24");
        let mut f = File::create(&path).unwrap();
        for i in 0..20_000 {
            writeln!(f, "line {i:05} {}", "x".repeat(20)).unwrap();
        }
        let tail = tail_lines(&path, 3, 1 << 20).unwrap();
        assert_eq!(tail.len(), 3);
        assert!(tail[0].starts_with("line 19997"));
        assert!(tail[2].starts_with("line 19999"));
        assert_eq!(tail_lines(&path, 50_000, 1 << 20).unwrap().len(), 20_000);
        // A byte bound keeps only whole lines that fit: 32 bytes each.
        let bounded = tail_lines(&path, 50_000, 1000).unwrap();
        assert_eq!(bounded.len(), 1000 / 32);
        assert!(bounded.last().unwrap().starts_with("line 19999"));
        assert!(bounded[0].starts_with("line 19969"), "{}", bounded[0]);
    }

    #[test]
    fn newest_log_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["moltd.log.2026-11-23", "moltd.log.2026-11-24", "other.txt"] {
            File::create(dir.path().join(name)).unwrap();
        }
        let newest = current_log_file(dir.path()).unwrap();
        assert!(newest.ends_with("moltd.log.2026-11-24"));
    }

    #[test]
    fn json_lines_carry_the_same_fields_as_text() {
        let hub = LogHub::default();
        let mut rx = hub.subscribe();
        let subscriber =
            tracing_subscriber::registry().with(vec![layer(LogFormat::Json, hub.clone(), false)]);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(pid = 42, reason = "a \"quoted\"\nline", "restart failed");
        });
        let line = rx.try_recv().unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["message"], "restart failed");
        assert_eq!(event["pid"], 42);
        assert_eq!(event["reason"], "a \"quoted\"\nline");
        assert_eq!(event["target"], "molt_daemon::logging::tests");
        assert!(
            event["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(rx.try_recv().is_err(), "one line per event");
    }

    #[test]
    fn a_line_break_in_a_field_or_message_cannot_start_a_line() {
        let hub = LogHub::default();
        let mut rx = hub.subscribe();
        let subscriber =
            tracing_subscriber::registry().with(vec![layer(LogFormat::Text, hub.clone(), false)]);
        let forged = "x\n2026-01-01T00:00:00Z  INFO moltd: READY forged";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(reason = %forged, "hold {forged} acquired");
        });
        let line = rx.try_recv().unwrap();
        assert!(
            line.ends_with(
                "hold x\\n2026-01-01T00:00:00Z  INFO moltd: READY forged acquired \
                 reason=x\\n2026-01-01T00:00:00Z  INFO moltd: READY forged"
            ),
            "{line}"
        );
        assert!(rx.try_recv().is_err(), "one line per event");
    }

    #[test]
    fn hub_splits_buffers_into_lines() {
        let mut hub = LogHub::default();
        let mut rx = hub.subscribe();
        io::Write::write_all(&mut hub, b"one\ntwo\n").unwrap();
        assert_eq!(rx.try_recv().unwrap(), "one");
        assert_eq!(rx.try_recv().unwrap(), "two");
    }
}
