//! The Fleet screen's rollout panel: the latest rollout of this fleet (read
//! from its record when the screen opens, so a console closed mid-rollout
//! shows where it stopped), what the running one says, and the target
//! being typed. The rollout itself runs in a task of the screen's loop
//! ([`super::screen`]) with the engine `molt fleet update` uses.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::Fleet;
use super::record::{HostEntry, Rollout, State};
use super::rollout::{HostResult, Observer, Options};
use super::settings::{self, Setting};
use super::start::{self, Request};
use crate::cli::CliError;

/// Lines of the running rollout's progress kept for the panel.
pub const LOG_LINES: usize = 100;
/// The longest target the prompt takes (a version or dist-tag).
pub const MAX_TARGET: usize = 64;

/// Each gateway's name and how applying a setting there went.
pub type Outcomes = Vec<(String, Result<(), String>)>;

/// What a rollout task tells the screen.
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutEvent {
    /// Planned or continued: the record it starts from.
    Started(Rollout),
    Said(String),
    HostDone(HostEntry),
    /// The record as it ended, or why it could not run.
    Finished(Result<Rollout, String>),
    /// A setting applied across the gateways shown: each one's outcome.
    Applied(Setting, Outcomes),
}

/// Sends a rollout's progress to the screen's loop.
pub struct ToScreen(pub mpsc::UnboundedSender<RolloutEvent>);

impl Observer for ToScreen {
    fn say(&mut self, line: &str) {
        let _ = self.0.send(RolloutEvent::Said(line.to_owned()));
    }

    fn host_done(&mut self, result: &HostResult) {
        let _ = self.0.send(RolloutEvent::HostDone(result.entry.clone()));
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutPanel {
    /// The latest rollout of this fleet file.
    pub record: Option<Rollout>,
    pub running: bool,
    /// The running rollout's progress, newest last.
    pub log: VecDeque<String>,
    /// The target being typed after `U`; empty means each channel's latest.
    pub prompt: Option<String>,
    /// Why the last action did not start, or how it failed.
    pub error: Option<String>,
    /// `K` or `A` pressed: which setting waits for on (`y`) or off (`n`).
    pub choosing: Option<Choosing>,
    /// The last setting applied across the fleet, per gateway.
    pub applied: Option<(Setting, Outcomes)>,
}

/// The setting `K` or `A` is about to set on the gateways shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choosing {
    KillSwitch,
    AutoUpdate,
}

impl Choosing {
    pub fn setting(self, on: bool) -> Setting {
        match self {
            Choosing::KillSwitch => Setting::KillSwitch(on),
            Choosing::AutoUpdate => Setting::AutoUpdate(on),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Choosing::KillSwitch => "the kill switch",
            Choosing::AutoUpdate => "auto-update",
        }
    }
}

impl RolloutPanel {
    pub fn new(record: Option<Rollout>, error: Option<String>) -> RolloutPanel {
        RolloutPanel {
            record,
            error,
            ..RolloutPanel::default()
        }
    }

    /// Whether the panel has anything to show.
    pub fn visible(&self) -> bool {
        self.record.is_some()
            || self.prompt.is_some()
            || self.error.is_some()
            || self.running
            || self.choosing.is_some()
            || self.applied.is_some()
    }

    /// The latest rollout stopped before its end: it can be resumed,
    /// continued without the halted gateway, or rolled back.
    pub fn unfinished(&self) -> Option<&Rollout> {
        self.record
            .as_ref()
            .filter(|r| !self.running && matches!(r.state, State::Running | State::Halted))
    }

    pub fn handle(&mut self, event: RolloutEvent) {
        match event {
            RolloutEvent::Started(rollout) => {
                self.record = Some(rollout);
                self.error = None;
            }
            RolloutEvent::Said(line) => self.say(line),
            RolloutEvent::HostDone(entry) => {
                if let Some(record) = &mut self.record {
                    record.set(entry);
                }
            }
            RolloutEvent::Applied(setting, results) => self.applied = Some((setting, results)),
            RolloutEvent::Finished(result) => {
                self.running = false;
                match result {
                    Ok(rollout) => self.record = Some(rollout),
                    Err(error) => self.error = Some(error),
                }
            }
        }
    }

    fn say(&mut self, line: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}

/// Runs what `request` asks on `fleet` for the screen: progress and the
/// end go to `tx`, nothing to the terminal.
pub async fn run(fleet: Fleet, request: Request, tx: mpsc::UnboundedSender<RolloutEvent>) {
    let result = run_inner(&fleet, &request, &tx).await;
    let _ = tx.send(RolloutEvent::Finished(result.map_err(|e| e.to_string())));
}

async fn run_inner(
    fleet: &Fleet,
    request: &Request,
    tx: &mpsc::UnboundedSender<RolloutEvent>,
) -> Result<Rollout, CliError> {
    let options = Options {
        note: None,
        pause: fleet.rollout.pause,
        max_unavailable: fleet.rollout.max_unavailable,
        host_timeout: fleet.rollout.host_timeout,
        quiet: true,
    };
    let mut prepared = start::prepare(fleet, request)?;
    let _ = tx.send(RolloutEvent::Started(prepared.rollout.clone()));
    if !request.rollback {
        start::check_reachable(&prepared.planned).await?;
    }
    let mut observer = ToScreen(tx.clone());
    start::run(
        fleet,
        &mut prepared,
        request.rollback,
        &options,
        &mut observer,
    )
    .await?;
    Ok(prepared.rollout)
}

/// Applies `setting` on `names` of `fleet` for the screen; the outcome of
/// each goes to `tx`.
pub async fn apply(
    fleet: Fleet,
    setting: Setting,
    names: Vec<String>,
    tx: mpsc::UnboundedSender<RolloutEvent>,
) {
    let gateways: Vec<&super::Gateway> = names.iter().filter_map(|n| fleet.gateway(n)).collect();
    let results = settings::apply_all(&gateways, setting).await;
    let outcomes = gateways
        .iter()
        .zip(results)
        .map(|(g, r)| (g.name.clone(), r.map_err(|e| e.to_string())))
        .collect();
    let _ = tx.send(RolloutEvent::Applied(setting, outcomes));
}
