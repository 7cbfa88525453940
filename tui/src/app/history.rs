//! The History screen: `update.history`, newest first.

use molt_protocol::Method;
use molt_protocol::method::UpdateHistoryParams;
use serde_json::{Value, json};

use super::{App, Command, ConnState, Screen, request};
use crate::client::RequestError;
use crate::net::{NetCommand, Purpose};
use crate::peer::Claim;

/// OpenClaw 2026.9.x's run ledger.
pub const RUNS_LIST: &str = "update.runs.list";

/// Runs asked for; the screen shows what fits.
pub const HISTORY_LIMIT: u32 = 50;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryView {
    pub runs: Option<Vec<Claim>>,
    /// Why this gateway has no history to show (it serves no such method).
    pub unserved: Option<String>,
    pub selected: usize,
    pub error: Option<String>,
    /// The update runs, or the audit trail (`a`).
    pub shown: super::Shown,
    in_flight: bool,
}

impl HistoryView {
    pub fn move_selection(&mut self, by: isize) {
        let len = self.runs.as_ref().map_or(0, Vec::len);
        self.selected = super::moved(self.selected, by, len.saturating_sub(1));
    }

    pub fn selected_run(&self) -> Option<&Claim> {
        self.runs.as_ref()?.get(self.selected)
    }
}

impl App {
    pub(super) fn request_history(&mut self) -> Vec<Command> {
        if self.history.in_flight || self.conn != ConnState::Connected {
            return Vec::new();
        }
        if self.serves(Method::UpdateHistory.as_str()) {
            self.history.unserved = None;
            self.history.in_flight = true;
            let params = UpdateHistoryParams {
                limit: Some(HISTORY_LIMIT),
            };
            return vec![request(
                Purpose::History,
                Method::UpdateHistory,
                serde_json::to_value(params).ok(),
            )];
        }
        if self.serves(RUNS_LIST) {
            self.history.unserved = None;
            self.history.in_flight = true;
            return vec![Command::Net(NetCommand::Call {
                purpose: Purpose::RunsList,
                method: RUNS_LIST.to_owned(),
                params: Some(json!({ "limit": HISTORY_LIMIT })),
            })];
        }
        self.history.unserved = Some(
            "this gateway keeps no update history it serves (neither update.history nor \
             update.runs.list); the Update screen shows its latest restart sentinel"
                .to_owned(),
        );
        Vec::new()
    }

    /// After a run ends, the list on screen (runs or audit trail) is out of
    /// date.
    pub(super) fn request_history_if_shown(&mut self) -> Vec<Command> {
        if self.screen == Screen::History {
            self.request_history_shown()
        } else {
            // Loaded again when the screen is shown.
            Vec::new()
        }
    }

    pub(super) fn on_history(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.history.in_flight = false;
        let runs = result.map_err(|e| e.to_string()).and_then(|value| {
            value
                .get("runs")
                .and_then(Value::as_array)
                .map(|runs| {
                    runs.iter()
                        .filter_map(Claim::from_record)
                        .collect::<Vec<_>>()
                })
                .ok_or_else(|| "unexpected history result: no runs".to_owned())
        });
        match runs {
            Ok(runs) => {
                let keep = self.history.selected_run().and_then(|r| r.run_id.clone());
                self.history.selected = keep
                    .and_then(|id| runs.iter().position(|r| r.run_id.as_ref() == Some(&id)))
                    .unwrap_or(0);
                self.history.runs = Some(runs);
                self.history.error = None;
            }
            Err(problem) => self.history.error = Some(problem),
        }
        Vec::new()
    }
}
