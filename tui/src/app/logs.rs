//! The Logs screen: `logs.tail` with follow, a bounded buffer, scrolling
//! and pause.

use std::collections::VecDeque;

use molt_protocol::Method;
use molt_protocol::method::LogsTailParams;
use serde_json::{Value, json};

use super::{App, Command, ConnState, request};
use crate::client::RequestError;
use crate::net::Purpose;

/// Lines asked for when the screen opens.
pub const TAIL_LINES: u32 = 500;
/// Lines kept; older ones are dropped.
pub const MAX_LINES: usize = 5000;

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
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES {
            self.lines.pop_front();
        }
        if self.paused {
            self.unseen += 1;
            // Keep the same lines in view.
            self.scroll = (self.scroll + 1).min(self.lines.len().saturating_sub(1));
        }
        true
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
        let max = self.lines.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(by).min(max);
        if by > 0 {
            self.paused = true;
        }
    }
}

impl App {
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
                        self.logs.lines.push_back(line);
                        if self.logs.paused {
                            self.logs.unseen += 1;
                        }
                    }
                    self.dirty = true;
                } else {
                    // The tail replaces the buffer: after a reconnect it is
                    // the truth, and lines followed meanwhile are in it.
                    self.logs.lines = lines.into_iter().collect();
                }
                while self.logs.lines.len() > MAX_LINES {
                    self.logs.lines.pop_front();
                }
                self.logs.cursor = value.get("cursor").and_then(Value::as_u64);
                self.logs.file = value.get("file").and_then(Value::as_str).map(str::to_owned);
                self.logs.error = None;
                self.logs.scroll = self
                    .logs
                    .scroll
                    .min(self.logs.lines.len().saturating_sub(1));
            }
            Err(problem) => {
                self.logs.subscribed = false;
                self.logs.error = Some(problem);
            }
        }
        Vec::new()
    }
}
