//! The Logs screen: `logs.tail` with follow, a bounded buffer, scrolling
//! and pause, wrap or sideways scroll, a level filter and search.

use std::collections::VecDeque;

use molt_protocol::Method;
use molt_protocol::method::LogsTailParams;
use serde_json::{Value, json};

use super::keymap::{Action, TextKey};
use super::update::{Field, TextInput};
use super::{App, Command, ConnState, request};
use crate::client::RequestError;
use crate::logline::{LogLevel, LogLine, MAX_QUERY};
use crate::net::Purpose;

/// Lines asked for when the screen opens.
pub const TAIL_LINES: u32 = 500;
/// Lines kept; older ones are dropped.
pub const MAX_LINES: usize = 5000;
/// Columns `←/→` move the view by.
pub const SIDE_STEP: usize = 10;

/// The level filter's steps, in the order its key cycles them.
const LEVEL_STEPS: [Option<LogLevel>; 5] = [
    None,
    Some(LogLevel::Debug),
    Some(LogLevel::Info),
    Some(LogLevel::Warn),
    Some(LogLevel::Error),
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogsView {
    pub lines: VecDeque<String>,
    /// Lines between the bottom of the view and the newest line.
    pub scroll: usize,
    /// The view stays put while new lines arrive.
    pub paused: bool,
    /// Lines that arrived while paused.
    pub unseen: usize,
    pub file: Option<String>,
    pub error: Option<String>,
    /// Long lines continue on the next rows instead of being cut.
    pub wrap: bool,
    /// Columns hidden at the left of each message when not wrapping.
    pub side: usize,
    /// Lines below this level are hidden; `None` shows all.
    pub min_level: Option<LogLevel>,
    /// The search text being typed after `/`.
    pub searching: Option<TextInput>,
    /// The text searched for, lower case; highlighted where shown.
    pub query: Option<String>,
    /// The line (index into `lines`) the last search stopped at.
    pub found: Option<usize>,
    /// Why the last search stopped nowhere.
    pub search_note: Option<String>,
    /// `logs.tail` with follow was sent on this connection.
    pub(super) subscribed: bool,
    /// The gateway sends no `logs.line` events (OpenClaw): the screen asks
    /// `logs.tail` for what came after `cursor` each tick instead.
    pub polling: bool,
    cursor: Option<u64>,
    poll_in_flight: bool,
}

impl LogsView {
    /// Adds a followed line; true when the view shows it.
    pub fn push(&mut self, line: String) -> bool {
        if !self.subscribed {
            return false;
        }
        let shown = self.shows(&line);
        self.lines.push_back(line);
        self.trim();
        if self.paused && shown {
            self.unseen += 1;
            // Keep the same lines in view.
            self.scroll = (self.scroll + 1).min(self.shown_count().saturating_sub(1));
        }
        true
    }

    /// Drops the oldest lines beyond the bound, keeping `found` on its line.
    fn trim(&mut self) {
        while self.lines.len() > MAX_LINES {
            self.lines.pop_front();
            self.found = self.found.and_then(|i| i.checked_sub(1));
        }
    }

    /// Whether the level filter lets `line` through.
    pub fn shows(&self, line: &str) -> bool {
        self.min_level
            .is_none_or(|min| LogLine::parse(line).level.is_some_and(|l| l >= min))
    }

    /// Indices into `lines` of the lines the filter lets through.
    pub fn shown(&self) -> Vec<usize> {
        (0..self.lines.len())
            .filter(|&i| self.min_level.is_none() || self.shows(&self.lines[i]))
            .collect()
    }

    fn shown_count(&self) -> usize {
        match self.min_level {
            None => self.lines.len(),
            Some(_) => self.shown().len(),
        }
    }

    pub fn toggle_wrap(&mut self) {
        self.wrap = !self.wrap;
        self.side = 0;
    }

    /// Positive moves the view right (towards the ends of long lines).
    pub fn side_by(&mut self, by: isize) {
        if !self.wrap {
            let longest = self.lines.iter().map(|l| l.chars().count()).max();
            self.side = self
                .side
                .saturating_add_signed(by)
                .min(longest.unwrap_or(0).saturating_sub(1));
        }
    }

    /// Next step of the level filter; the line in view stays in view when
    /// the filter lets it through.
    pub fn cycle_level(&mut self) {
        let at = LEVEL_STEPS
            .iter()
            .position(|s| *s == self.min_level)
            .unwrap_or(0);
        let bottom = self.bottom_line();
        self.min_level = LEVEL_STEPS[(at + 1) % LEVEL_STEPS.len()];
        self.scroll = 0;
        if let Some(line) = bottom.filter(|_| self.paused) {
            self.scroll_to(line);
        }
    }

    /// The line (index into `lines`) at the bottom of the view.
    fn bottom_line(&self) -> Option<usize> {
        let shown = self.shown();
        let end = shown.len().checked_sub(self.scroll + 1)?;
        shown.get(end).copied()
    }

    /// Pauses with `line`, or the nearest shown line above it, at the
    /// bottom of the view.
    fn scroll_to(&mut self, line: usize) {
        let shown = self.shown();
        let newer = shown.iter().filter(|&&i| i > line).count();
        self.scroll = newer.min(shown.len().saturating_sub(1));
        self.paused = true;
    }

    /// `/`: a text field for the search.
    pub fn start_search(&mut self) {
        let text = self.query.clone().unwrap_or_default();
        self.searching = Some(TextInput::new(Field::LogSearch, text));
    }

    pub fn search_key(&mut self, key: &TextKey) {
        let Some(input) = &mut self.searching else {
            return;
        };
        if *key == TextKey::Discard {
            self.searching = None;
            return;
        }
        if !input.edit(key, MAX_QUERY) {
            return;
        }
        let text = input.text.trim().to_lowercase();
        self.searching = None;
        self.found = None;
        self.search_note = None;
        if text.is_empty() {
            self.query = None;
            return;
        }
        self.query = Some(text);
        // From the bottom of the view upwards: the newest match first.
        let from = self.bottom_line().map_or(0, |i| i + 1);
        self.find(from, true);
    }

    /// `n` (older) and `N` (newer): the next line that matches.
    pub fn find_next(&mut self, older: bool) {
        if self.query.is_none() {
            self.search_note = Some("no search yet: / searches".to_owned());
            return;
        }
        let from = match self.found {
            Some(i) if older => i,
            Some(i) => i + 1,
            None => self.bottom_line().map_or(0, |i| i + 1),
        };
        self.find(from, older);
    }

    /// The first matching shown line before `from` (older) or at and after
    /// it (newer); the view moves to it.
    fn find(&mut self, from: usize, older: bool) {
        let Some(query) = &self.query else {
            return;
        };
        let matches = |i: &usize| self.lines[*i].to_lowercase().contains(query.as_str());
        let shown = self.shown();
        let hit = if older {
            shown
                .iter()
                .rev()
                .filter(|&&i| i < from)
                .find(|i| matches(i))
        } else {
            shown.iter().filter(|&&i| i >= from).find(|i| matches(i))
        };
        match hit.copied() {
            Some(line) => {
                self.found = Some(line);
                self.search_note = None;
                self.scroll_to(line);
            }
            None => {
                let which = if self.found.is_some() {
                    if older {
                        "no older match for"
                    } else {
                        "no newer match for"
                    }
                } else {
                    "no match for"
                };
                self.search_note = Some(format!("{which} {query:?}"));
            }
        }
    }

    pub fn toggle_pause(&mut self) {
        if self.paused {
            self.follow();
        } else {
            self.paused = true;
        }
    }

    pub fn follow(&mut self) {
        self.paused = false;
        self.scroll = 0;
        self.unseen = 0;
    }

    /// Positive scrolls towards older lines; scrolling up pauses.
    pub fn scroll_by(&mut self, by: isize) {
        let max = self.shown_count().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(by).min(max);
        if by > 0 {
            self.paused = true;
        }
    }
}

impl App {
    /// The Logs screen's own keys.
    pub(super) fn logs_act(&mut self, action: Action) {
        let view = &mut self.logs;
        match action {
            Action::Wrap => view.toggle_wrap(),
            Action::Side(by) => view.side_by(isize::from(by) * SIDE_STEP as isize),
            Action::LevelFilter => view.cycle_level(),
            Action::Search => view.start_search(),
            Action::FindNext { older } => view.find_next(older),
            _ => {}
        }
    }

    pub(super) fn request_logs(&mut self) -> Vec<Command> {
        if self.logs.subscribed || self.conn != ConnState::Connected {
            return Vec::new();
        }
        self.logs.subscribed = true;
        let follow = self.hello.as_ref().is_none_or(|h| {
            h.features
                .sends(molt_protocol::event::EventName::LogsLine.as_str())
        });
        self.logs.polling = !follow;
        self.logs.cursor = None;
        let params = if follow {
            serde_json::to_value(LogsTailParams {
                lines: Some(TAIL_LINES),
                follow: Some(true),
            })
            .ok()
        } else {
            // OpenClaw's logs.tail: {cursor?, limit?, maxBytes?}.
            Some(json!({ "limit": TAIL_LINES }))
        };
        self.logs.poll_in_flight = true;
        vec![request(Purpose::LogsTail, Method::LogsTail, params)]
    }

    /// Each tick on the Logs screen of a gateway without `logs.line`.
    pub(super) fn poll_logs(&mut self) -> Vec<Command> {
        if !self.logs.polling || self.logs.poll_in_flight || self.conn != ConnState::Connected {
            return Vec::new();
        }
        let Some(cursor) = self.logs.cursor else {
            return Vec::new();
        };
        self.logs.poll_in_flight = true;
        let params = json!({ "cursor": cursor, "limit": TAIL_LINES });
        vec![request(Purpose::LogsTail, Method::LogsTail, Some(params))]
    }

    pub(super) fn on_logs_tail(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.logs.poll_in_flight = false;
        let tail = result.map_err(|e| e.to_string()).and_then(|value| {
            let lines: Vec<String> = value
                .get("lines")
                .and_then(Value::as_array)
                .ok_or("unexpected logs.tail result: no lines")?
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            Ok((lines, value))
        });
        match tail {
            Ok((lines, value)) => {
                let reset = value.get("reset").and_then(Value::as_bool) == Some(true);
                let appending = self.logs.polling && self.logs.cursor.is_some() && !reset;
                if appending {
                    for line in lines {
                        if self.logs.paused && self.logs.shows(&line) {
                            self.logs.unseen += 1;
                            self.logs.scroll += 1;
                        }
                        self.logs.lines.push_back(line);
                    }
                    self.dirty = true;
                } else {
                    // The tail replaces the buffer: after a reconnect it is
                    // the truth, and lines followed meanwhile are in it.
                    self.logs.lines = lines.into_iter().collect();
                    self.logs.found = None;
                }
                self.logs.trim();
                self.logs.cursor = value.get("cursor").and_then(Value::as_u64);
                self.logs.file = value.get("file").and_then(Value::as_str).map(str::to_owned);
                self.logs.error = None;
                self.logs.scroll = self
                    .logs
                    .scroll
                    .min(self.logs.shown_count().saturating_sub(1));
            }
            Err(problem) => {
                self.logs.subscribed = false;
                self.logs.error = Some(problem);
            }
        }
        Vec::new()
    }
}
