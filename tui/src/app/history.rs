//! The History screen: `update.history`, newest first.

use molt_protocol::Method;
use molt_protocol::method::{UpdateHistoryParams, UpdateHistoryResult};
use molt_protocol::update::RunRecord;
use serde_json::Value;

use super::{App, Command, ConnState, Screen, request};
use crate::client::RequestError;
use crate::net::Purpose;

/// Runs asked for; the screen shows what fits.
pub const HISTORY_LIMIT: u32 = 50;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryView {
    pub runs: Option<Vec<RunRecord>>,
    pub selected: usize,
    pub error: Option<String>,
    in_flight: bool,
}

impl HistoryView {
    pub fn move_selection(&mut self, by: isize) {
        let len = self.runs.as_ref().map_or(0, Vec::len);
        self.selected = self
            .selected
            .saturating_add_signed(by)
            .min(len.saturating_sub(1));
    }

    pub fn selected_run(&self) -> Option<&RunRecord> {
        self.runs.as_ref()?.get(self.selected)
    }
}

impl App {
    pub(super) fn request_history(&mut self) -> Vec<Command> {
        if self.history.in_flight || self.conn != ConnState::Connected {
            return Vec::new();
        }
        self.history.in_flight = true;
        let params = UpdateHistoryParams {
            limit: Some(HISTORY_LIMIT),
        };
        vec![request(
            Purpose::History,
            Method::UpdateHistory,
            serde_json::to_value(params).ok(),
        )]
    }

    /// After a run ends, the list on screen is out of date.
    pub(super) fn request_history_if_shown(&mut self) -> Vec<Command> {
        if self.screen == Screen::History {
            self.request_history()
        } else {
            // Loaded again when the screen is shown.
            Vec::new()
        }
    }

    pub(super) fn on_history(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.history.in_flight = false;
        match super::answer::<UpdateHistoryResult>(Method::UpdateHistory, result) {
            Ok(history) => {
                let keep = self.history.selected_run().map(|r| r.run_id.clone());
                self.history.selected = keep
                    .and_then(|id| history.runs.iter().position(|r| r.run_id == id))
                    .unwrap_or(0);
                self.history.runs = Some(history.runs);
                self.history.error = None;
            }
            Err(problem) => self.history.error = Some(problem),
        }
        Vec::new()
    }
}
