//! A daily size cap on the log file: a client that makes moltd log a lot
//! (refused connections, failed handshakes) must not fill the disk. The
//! file count is capped by the appender; this caps each day's file.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

/// Bytes written to one day's log file; past it, lines are dropped until
/// the next day (UTC, when the appender starts a new file). stderr keeps
/// every line.
pub const MAX_LOG_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Today as days since the Unix epoch (UTC), the appender's day.
fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

struct Budget {
    limit: u64,
    day: AtomicU64,
    written: AtomicU64,
    noticed: AtomicBool,
    today: fn() -> u64,
}

/// `inner` with at most `limit` bytes per UTC day.
#[derive(Clone)]
pub struct Capped<W> {
    inner: W,
    budget: Arc<Budget>,
}

impl<W> Capped<W> {
    /// `already`: what today's file holds from before this process.
    pub fn new(inner: W, limit: u64, already: u64) -> Self {
        Self::with_clock(inner, limit, already, utc_day)
    }

    fn with_clock(inner: W, limit: u64, already: u64, today: fn() -> u64) -> Self {
        Self {
            inner,
            budget: Arc::new(Budget {
                limit,
                day: AtomicU64::new(today()),
                written: AtomicU64::new(already),
                noticed: AtomicBool::new(false),
                today,
            }),
        }
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let b = &self.budget;
        let today = (b.today)();
        if b.day.swap(today, Ordering::Relaxed) != today {
            b.written.store(0, Ordering::Relaxed);
            b.noticed.store(false, Ordering::Relaxed);
        }
        let len = buf.len() as u64;
        if b.written.fetch_add(len, Ordering::Relaxed) + len <= b.limit {
            return self.inner.write_all(buf).map(|()| buf.len());
        }
        if !b.noticed.swap(true, Ordering::Relaxed) {
            let notice = format!(
                "moltd: this log file reached its cap of {} bytes for today; \
                 further lines go to stderr only until 00:00 UTC\n",
                b.limit
            );
            self.inner.write_all(notice.as_bytes())?;
        }
        // Dropped on purpose; reporting an error would only make tracing
        // complain on stderr for every line.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W> MakeWriter<'a> for Capped<W>
where
    W: MakeWriter<'a>,
{
    type Writer = Capped<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Capped {
            inner: self.inner.make_writer(),
            budget: Arc::clone(&self.budget),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A shared sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    static DAY: AtomicU64 = AtomicU64::new(100);

    fn day() -> u64 {
        DAY.load(Ordering::Relaxed)
    }

    #[test]
    fn lines_past_the_daily_cap_are_dropped_with_one_notice_until_the_next_day() {
        let sink = Sink::default();
        let mut log = Capped::with_clock(sink.clone(), 100, 40, day);
        let line = b"a log line, 20 byte\n";
        for _ in 0..10 {
            log.write_all(line).unwrap();
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        // 40 bytes were there: three lines fit, then one notice.
        assert_eq!(text.matches("a log line").count(), 3, "{text}");
        assert_eq!(text.matches("reached its cap of 100 bytes").count(), 1);

        DAY.store(101, Ordering::Relaxed);
        log.write_all(line).unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("UTC\na log line, 20 byte\n"), "{text}");
    }
}
