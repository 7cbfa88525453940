//! A log line for what can happen thousands of times a second (refused
//! connections, failed handshakes): the first of a window is logged, the
//! rest are counted and summed up in one line when the window is over, so
//! a flood costs a line per interval, not a line per connection.

use std::fmt::Display;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long one window lasts.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(10);

/// The longest detail kept for a summary line.
const MAX_DETAIL: usize = 200;

pub struct Throttled {
    what: &'static str,
    state: Mutex<Window>,
}

struct Window {
    started: Option<Instant>,
    suppressed: u64,
    last: String,
}

impl Throttled {
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new(Window {
                started: None,
                suppressed: 0,
                last: String::new(),
            }),
        }
    }

    /// One occurrence: logged if it opens a window, else counted.
    pub fn note(&self, detail: impl Display) {
        self.note_at(Instant::now(), detail, &mut |line| tracing::warn!("{line}"));
    }

    /// Logs the summary of a window that is over; call it now and then
    /// (a flood that stops leaves its count unsaid until then).
    pub fn flush(&self) {
        self.flush_at(Instant::now(), &mut |line| tracing::warn!("{line}"));
    }

    fn note_at(&self, now: Instant, detail: impl Display, log: &mut dyn FnMut(&str)) {
        let mut window = self.state.lock();
        if window
            .started
            .is_some_and(|started| now.duration_since(started) < THROTTLE_WINDOW)
        {
            window.suppressed += 1;
            window.last = detail.to_string();
            window.last.truncate(MAX_DETAIL);
            return;
        }
        summarize(self.what, &mut window, log);
        window.started = Some(now);
        log(&format!("{}: {detail}", self.what));
    }

    fn flush_at(&self, now: Instant, log: &mut dyn FnMut(&str)) {
        let mut window = self.state.lock();
        if window
            .started
            .is_some_and(|started| now.duration_since(started) >= THROTTLE_WINDOW)
        {
            summarize(self.what, &mut window, log);
            window.started = None;
        }
    }
}

/// A [`Throttled`] per key (an origin, say): one line per key and
/// window, so one noisy key does not hide the others. At most
/// [`MAX_KEYS`] keys have a window at once; the rest share one.
pub struct ThrottledByKey {
    what: &'static str,
    state: Mutex<Option<std::collections::HashMap<String, Window>>>,
}

/// Keys with a window of their own.
pub const MAX_KEYS: usize = 64;

impl ThrottledByKey {
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new(None),
        }
    }

    pub fn note(&self, key: &str, detail: impl Display) {
        self.note_at(Instant::now(), key, detail, &mut |line| {
            tracing::warn!("{line}")
        });
    }

    pub fn flush(&self) {
        self.flush_at(Instant::now(), &mut |line| tracing::warn!("{line}"));
    }

    fn note_at(&self, now: Instant, key: &str, detail: impl Display, log: &mut dyn FnMut(&str)) {
        let mut state = self.state.lock();
        let windows = state.get_or_insert_with(Default::default);
        let key = if windows.contains_key(key) || windows.len() < MAX_KEYS {
            key
        } else {
            "(other keys)"
        };
        let window = windows.entry(key.to_owned()).or_insert(Window {
            started: None,
            suppressed: 0,
            last: String::new(),
        });
        if window
            .started
            .is_some_and(|started| now.duration_since(started) < THROTTLE_WINDOW)
        {
            window.suppressed += 1;
            window.last = detail.to_string();
            window.last.truncate(MAX_DETAIL);
            return;
        }
        summarize(self.what, window, log);
        window.started = Some(now);
        log(&format!("{}: {detail}", self.what));
    }

    fn flush_at(&self, now: Instant, log: &mut dyn FnMut(&str)) {
        let mut state = self.state.lock();
        let Some(windows) = state.as_mut() else {
            return;
        };
        windows.retain(|_, window| {
            let over = window
                .started
                .is_none_or(|started| now.duration_since(started) >= THROTTLE_WINDOW);
            if over {
                summarize(self.what, window, log);
            }
            !over
        });
    }
}

fn summarize(what: &str, window: &mut Window, log: &mut dyn FnMut(&str)) {
    if window.suppressed > 0 {
        log(&format!(
            "{what}: {} more within {} s (the last: {})",
            window.suppressed,
            THROTTLE_WINDOW.as_secs(),
            window.last
        ));
        window.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_line_and_its_count_and_keys_are_bounded() {
        let refused = ThrottledByKey::new("origin refused");
        let mut lines = Vec::new();
        let t0 = Instant::now();
        for i in 0..10 {
            for origin in ["https://a.example", "https://b.example"] {
                refused.note_at(t0, origin, format!("{origin} #{i}"), &mut |l| {
                    lines.push(l.to_owned())
                });
            }
        }
        assert_eq!(
            lines,
            [
                "origin refused: https://a.example #0",
                "origin refused: https://b.example #0"
            ]
        );
        refused.flush_at(t0 + THROTTLE_WINDOW, &mut |l| lines.push(l.to_owned()));
        assert_eq!(lines.len(), 4);
        assert!(lines[2..].iter().all(|l| l.contains("9 more within 10 s")));
        for i in 0..(MAX_KEYS * 2) {
            refused.note_at(t0, &format!("k{i}"), "x", &mut |_| {});
        }
        assert_eq!(
            refused.state.lock().as_ref().unwrap().len(),
            MAX_KEYS + 1,
            "the keys past the bound share one window"
        );
    }

    #[test]
    fn a_flood_is_one_line_then_one_summary_per_window() {
        let refused = Throttled::new("connection refused");
        let mut lines = Vec::new();
        let t0 = Instant::now();
        for i in 0..1000 {
            refused.note_at(t0, format!("peer {i}"), &mut |l| lines.push(l.to_owned()));
        }
        assert_eq!(lines, ["connection refused: peer 0"]);
        refused.flush_at(t0 + THROTTLE_WINDOW / 2, &mut |l| lines.push(l.to_owned()));
        assert_eq!(lines.len(), 1, "the window is not over");
        refused.flush_at(t0 + THROTTLE_WINDOW, &mut |l| lines.push(l.to_owned()));
        assert_eq!(
            lines[1],
            "connection refused: 999 more within 10 s (the last: peer 999)"
        );
        // The next occurrence opens a new window, logged at once.
        refused.note_at(t0 + THROTTLE_WINDOW * 2, "peer x", &mut |l| {
            lines.push(l.to_owned())
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "connection refused: peer x");
    }
}
