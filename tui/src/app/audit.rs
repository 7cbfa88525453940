//! The History screen's audit trail: `audit.list`, newest first, a page at
//! a time; the next older page loads when the selection reaches the end.

use molt_protocol::Method;
use molt_protocol::audit::{AuditEntry, AuditListParams, AuditListResult};
use serde_json::Value;

use super::{App, Command, ConnState, Screen, request};
use crate::client::RequestError;
use crate::net::Purpose;
use crate::peer::Product;

/// Entries asked for per page.
pub const AUDIT_PAGE: u32 = 100;
/// Entries kept on screen at most; older ones are for `molt audit --before`.
pub const MAX_AUDIT_SHOWN: usize = 1000;

/// What the History screen lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shown {
    /// `update.history`.
    #[default]
    Runs,
    /// `audit.list`.
    Audit,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditView {
    pub entries: Option<Vec<AuditEntry>>,
    pub selected: usize,
    pub error: Option<String>,
    /// Why this gateway has no audit trail to show.
    pub unserved: Option<String>,
    /// Where the next older page starts, when there is one.
    pub next_before: Option<String>,
    /// The request in flight asks for an older page (its answer is
    /// appended, not a replacement).
    in_flight: Option<bool>,
}

impl AuditView {
    pub fn selected_entry(&self) -> Option<&AuditEntry> {
        self.entries.as_ref()?.get(self.selected)
    }

    pub fn move_selection(&mut self, by: isize) {
        let len = self.entries.as_ref().map_or(0, Vec::len);
        self.selected = super::moved(self.selected, by, len.saturating_sub(1));
    }

    /// Whether the selection is on the last entry loaded and older ones
    /// can still be shown.
    fn wants_more(&self) -> bool {
        let len = self.entries.as_ref().map_or(0, Vec::len);
        self.next_before.is_some()
            && self.in_flight.is_none()
            && len > 0
            && self.selected + 1 >= len
            && len < MAX_AUDIT_SHOWN
    }
}

impl App {
    /// Whether the gateway serves moltd's `audit.list`. OpenClaw 2026.9
    /// has a method of that name with answers of another shape.
    pub fn has_audit_trail(&self) -> bool {
        self.product() == Product::Moltd && self.serves(Method::AuditList.as_str())
    }

    /// `a`: the audit trail on the History screen; from there, back to
    /// the update runs.
    pub(super) fn show_audit(&mut self) -> Vec<Command> {
        let shown = if self.screen == Screen::History && self.history.shown == Shown::Audit {
            Shown::Runs
        } else {
            Shown::Audit
        };
        self.history.shown = shown;
        self.show(Screen::History)
    }

    /// Loads the newest page (again).
    pub(super) fn request_audit(&mut self) -> Vec<Command> {
        self.request_audit_page(None)
    }

    fn request_audit_page(&mut self, before: Option<String>) -> Vec<Command> {
        if self.audit.in_flight.is_some() || self.conn != ConnState::Connected {
            return Vec::new();
        }
        if !self.has_audit_trail() {
            self.audit.unserved = Some(
                "this gateway serves no audit trail the console reads (moltd's audit.list)"
                    .to_owned(),
            );
            return Vec::new();
        }
        self.audit.unserved = None;
        self.audit.in_flight = Some(before.is_some());
        let params = AuditListParams {
            limit: Some(AUDIT_PAGE),
            before,
            ..AuditListParams::default()
        };
        vec![request(
            Purpose::Audit,
            Method::AuditList,
            serde_json::to_value(params).ok(),
        )]
    }

    pub(super) fn move_audit_selection(&mut self, by: isize) -> Vec<Command> {
        self.audit.move_selection(by);
        if by > 0 && self.audit.wants_more() {
            let before = self.audit.next_before.clone();
            return self.request_audit_page(before);
        }
        Vec::new()
    }

    pub(super) fn on_audit(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        let older = self.audit.in_flight.take().unwrap_or(false);
        let listed = super::answer::<AuditListResult>(Method::AuditList, result);
        let listed = match listed {
            Ok(listed) => listed,
            Err(problem) => {
                self.audit.error = Some(problem);
                return Vec::new();
            }
        };
        self.audit.error = None;
        self.audit.next_before = listed.next_before;
        match (&mut self.audit.entries, older) {
            (Some(entries), true) => {
                entries.extend(listed.entries);
                entries.truncate(MAX_AUDIT_SHOWN);
            }
            _ => {
                // The newest page again: keep the selected entry selected.
                let keep = self.audit.selected_entry().map(|e| e.id.clone());
                self.audit.selected = keep
                    .and_then(|id| listed.entries.iter().position(|e| e.id == id))
                    .unwrap_or(0);
                self.audit.entries = Some(listed.entries);
            }
        }
        Vec::new()
    }
}
