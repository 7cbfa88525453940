//! The restart scheduler as a pure state machine (the rules: docs/design.md,
//! "Restart rules").
//!
//! No timers, no I/O: every call takes `now`, and the driver sleeps until the
//! returned wake-up time. `poll` is safe to call at any moment (it acts only
//! when something is due), so the driver polls after every event and on every
//! wake-up, executes the returned action, and always reports the outcome of a
//! `Fire` through `completed`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use molt_daemon::restart::scheduler::*;
//!
//! let t0 = Instant::now();
//! let mut s = Scheduler::new(4242, RestartMode::Respawn, DEFAULT_DEFERRAL_TIMEOUT_MS);
//! let scheduled = s.request(t0, RestartRequest::new("config change")).unwrap();
//! assert_eq!(scheduled.delay_ms, 2000);
//!
//! let step = s.poll(t0, |_| PendingWork::default());
//! assert!(step.action.is_none());
//! let wake = step.wake_at.unwrap();
//! let step = s.poll(wake, |_requesters| PendingWork::default());
//! assert!(matches!(step.action, Some(Action::Fire(_))));
//! s.completed(wake + Duration::from_secs(1), Outcome::HandedOff);
//! assert_eq!(s.snapshot(wake).state, Phase::Idle);
//! ```

use std::time::{Duration, Instant};

use serde::Serialize;

/// Delay when the request names none.
pub const DEFAULT_DELAY_MS: u64 = 2_000;
/// Upper bound for a requested delay.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Quiet period after a successful handoff.
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// How often pending work is re-checked while deferring.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// `gateway.reload.deferralTimeoutMs` default.
pub const DEFAULT_DEFERRAL_TIMEOUT_MS: u64 = 300_000;

/// The connection that asked for a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequesterId(pub u64);

/// Payload of the `restart.deferred` event.
pub use molt_protocol::event::RestartDeferred as Deferred;
/// Work that holds back a deferrable restart (requesters' own excluded).
pub use molt_protocol::status::PendingWork;
/// The scheduler's phase, as `status` reports it.
pub use molt_protocol::status::RestartPhase as Phase;
/// How this process restarts; echoed in every [`Scheduled`].
pub use molt_protocol::status::RestartStrategy as RestartMode;

/// A request to restart. `A` is what the caller expects of the handoff the
/// restart causes (an update: the version its successor must run); the
/// scheduler carries it to the [`Fire`] and never looks inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest<A = ()> {
    pub reason: String,
    pub delay_ms: Option<u64>,
    /// Fire without waiting for pending work (package swaps).
    pub skip_deferral: bool,
    pub skip_cooldown: bool,
    /// Its own in-flight request must not count as pending work.
    pub requester: Option<RequesterId>,
    /// A newer request's expectation replaces the pending one's (it
    /// describes what is on disk now); a request without one leaves it, so
    /// whichever request fires, the successor is held to the install.
    pub expectation: Option<A>,
}

impl<A> Default for RestartRequest<A> {
    fn default() -> Self {
        Self {
            reason: String::new(),
            delay_ms: None,
            skip_deferral: false,
            skip_cooldown: false,
            requester: None,
            expectation: None,
        }
    }
}

impl<A> RestartRequest<A> {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }
}

/// The answer to a request; [`Scheduled::to_wire`] is what clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub pid: u32,
    /// Time from the request until the restart fires, cooldown included.
    pub delay_ms: u64,
    /// The reason the restart will report (coalescing may keep an earlier one).
    pub reason: String,
    pub mode: RestartMode,
    pub coalesced: bool,
    pub cooldown_ms_applied: u64,
    pub fire_at: Instant,
}

impl Scheduled {
    pub fn to_wire(&self) -> molt_protocol::method::RestartScheduled {
        molt_protocol::method::RestartScheduled {
            // A refusal is an error, never a Scheduled.
            ok: true,
            pid: self.pid,
            signal: None,
            delay_ms: self.delay_ms,
            reason: self.reason.clone(),
            mode: self.mode,
            coalesced: self.coalesced,
            cooldown_ms_applied: self.cooldown_ms_applied,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// See [`Scheduler::request`] for why this is not queued.
    #[error("a restart is already in flight ({reason}); retry once it completes")]
    InFlight { reason: String },
}

/// Restart now, holding the successor to `expectation`, then report
/// through `completed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire<A = ()> {
    pub reason: String,
    pub expectation: Option<A>,
    pub forced: bool,
    /// Work still pending when the deferral timed out.
    pub pending_work: Option<PendingWork>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<A = ()> {
    /// Broadcast `restart.deferred`.
    Deferred(Deferred),
    Fire(Fire<A>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll<A = ()> {
    pub action: Option<Action<A>>,
    /// Poll again at this time; `None` until the next event.
    pub wake_at: Option<Instant>,
}

/// How a fired restart ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    HandedOff,
    Failed { reason: String },
    Rejected { reason: String },
}

/// The scheduler's state for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub state: Phase,
    pub reason: Option<String>,
    pub forced: bool,
    pub fire_in_ms: Option<u64>,
    pub deferred_ms: Option<u64>,
    #[serde(skip)]
    pub fire_at: Option<Instant>,
    #[serde(skip)]
    pub deferred_since: Option<Instant>,
}

/// A restart that has not fired yet.
#[derive(Debug)]
struct Pending<A> {
    reason: String,
    fire_at: Instant,
    forced: bool,
    expectation: Option<A>,
    requesters: Vec<RequesterId>,
}

#[derive(Debug)]
enum State<A> {
    Idle,
    Scheduled(Pending<A>),
    /// Never forced: a forced request moves the restart back to `Scheduled`.
    Deferring {
        pending: Pending<A>,
        since: Instant,
        next_check: Instant,
    },
    InFlight {
        reason: String,
        forced: bool,
    },
}

#[derive(Debug)]
pub struct Scheduler<A = ()> {
    pid: u32,
    mode: RestartMode,
    deferral_timeout_ms: u64,
    cooldown: Duration,
    last_restart: Option<Instant>,
    state: State<A>,
}

impl<A> Scheduler<A> {
    /// `deferral_timeout_ms` 0 waits for pending work forever.
    pub fn new(pid: u32, mode: RestartMode, deferral_timeout_ms: u64) -> Self {
        Self {
            pid,
            mode,
            deferral_timeout_ms,
            cooldown: COOLDOWN,
            last_restart: None,
            state: State::Idle,
        }
    }

    /// Replaces the default 30 s cooldown (`gateway.reload.cooldownMs`).
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// A successor started by a restart passes its start time so the
    /// cooldown spans the handoff.
    pub fn with_last_restart(mut self, at: Instant) -> Self {
        self.last_restart = Some(at);
        self
    }

    /// Applies to a deferral already under way.
    pub fn set_deferral_timeout(&mut self, ms: u64) {
        self.deferral_timeout_ms = ms;
    }

    /// Schedules a restart or folds the request into the pending one.
    ///
    /// While a restart is in flight the request is rejected, not queued:
    /// anything queued would have to outlive the in-flight restart, and state
    /// that outlives its restart is what let OpenClaw coalesce every later
    /// restart into a dead one. After a handoff this process is on its way
    /// out anyway; after a failure the caller gets a retryable error and the
    /// scheduler is already idle.
    pub fn request(&mut self, now: Instant, req: RestartRequest<A>) -> Result<Scheduled, Rejected> {
        if let State::InFlight { reason, .. } = &self.state {
            return Err(Rejected::InFlight {
                reason: reason.clone(),
            });
        }
        let delay =
            Duration::from_millis(req.delay_ms.unwrap_or(DEFAULT_DELAY_MS).min(MAX_DELAY_MS));
        let asked = now + delay;
        let fire_at = match self.last_restart {
            Some(last) if !req.skip_cooldown => asked.max(last + self.cooldown),
            _ => asked,
        };
        let cooldown_ms_applied = millis(fire_at - asked);

        // `deferral` is kept only while the restart stays deferrable.
        let (pending, coalesced, deferral) = match std::mem::replace(&mut self.state, State::Idle) {
            State::Scheduled(mut pending) => {
                let coalesced = pending.absorb(req, fire_at);
                (pending, coalesced, None)
            }
            State::Deferring {
                mut pending,
                since,
                next_check,
            } => {
                let coalesced = pending.absorb(req, fire_at);
                let deferral = (!pending.forced).then_some((since, next_check));
                (pending, coalesced, deferral)
            }
            // InFlight returned above.
            State::Idle | State::InFlight { .. } => {
                let pending = Pending {
                    reason: req.reason,
                    fire_at,
                    forced: req.skip_deferral,
                    expectation: req.expectation,
                    requesters: req.requester.into_iter().collect(),
                };
                (pending, false, None)
            }
        };
        let scheduled = Scheduled {
            pid: self.pid,
            delay_ms: millis(pending.fire_at.saturating_duration_since(now)),
            reason: pending.reason.clone(),
            mode: self.mode,
            coalesced,
            cooldown_ms_applied,
            fire_at: pending.fire_at,
        };
        self.state = match deferral {
            Some((since, next_check)) => State::Deferring {
                pending,
                since,
                next_check,
            },
            None => State::Scheduled(pending),
        };
        Ok(scheduled)
    }

    /// Advances the machine to `now`. `pending_work` is called (at most once)
    /// only when a deferrable restart is due; it gets the requesters whose
    /// own requests must not be counted.
    pub fn poll(
        &mut self,
        now: Instant,
        pending_work: impl FnOnce(&[RequesterId]) -> PendingWork,
    ) -> Poll<A> {
        let action = match std::mem::replace(&mut self.state, State::Idle) {
            State::Scheduled(pending) if now < pending.fire_at => {
                self.state = State::Scheduled(pending);
                None
            }
            State::Scheduled(pending) if pending.forced => Some(self.fire(pending, None)),
            State::Scheduled(pending) => Some(self.check(now, pending, now, pending_work)),
            State::Deferring {
                pending,
                since,
                next_check,
            } if now < next_check => {
                self.state = State::Deferring {
                    pending,
                    since,
                    next_check,
                };
                None
            }
            State::Deferring { pending, since, .. } => {
                Some(self.check(now, pending, since, pending_work))
            }
            state @ (State::Idle | State::InFlight { .. }) => {
                self.state = state;
                None
            }
        };
        Poll {
            action,
            wake_at: self.next_wake(),
        }
    }

    /// Ends the in-flight restart, whatever happened. Only a handoff starts
    /// the cooldown. A report with nothing in flight is stale and ignored.
    pub fn completed(&mut self, now: Instant, outcome: Outcome) {
        if !matches!(self.state, State::InFlight { .. }) {
            return;
        }
        self.state = State::Idle;
        if outcome == Outcome::HandedOff {
            self.last_restart = Some(now);
        }
    }

    /// When the driver must poll next, if anything is pending.
    pub fn next_wake(&self) -> Option<Instant> {
        match &self.state {
            State::Scheduled(pending) => Some(pending.fire_at),
            State::Deferring { next_check, .. } => Some(*next_check),
            State::Idle | State::InFlight { .. } => None,
        }
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let idle = Snapshot {
            state: Phase::Idle,
            reason: None,
            forced: false,
            fire_in_ms: None,
            deferred_ms: None,
            fire_at: None,
            deferred_since: None,
        };
        match &self.state {
            State::Idle => idle,
            State::Scheduled(pending) => Snapshot {
                state: Phase::Scheduled,
                reason: Some(pending.reason.clone()),
                forced: pending.forced,
                fire_in_ms: Some(millis(pending.fire_at.saturating_duration_since(now))),
                fire_at: Some(pending.fire_at),
                ..idle
            },
            State::Deferring { pending, since, .. } => Snapshot {
                state: Phase::Deferring,
                reason: Some(pending.reason.clone()),
                fire_in_ms: Some(0),
                deferred_ms: Some(millis(now.saturating_duration_since(*since))),
                fire_at: Some(pending.fire_at),
                deferred_since: Some(*since),
                ..idle
            },
            State::InFlight { reason, forced } => Snapshot {
                state: Phase::InFlight,
                reason: Some(reason.clone()),
                forced: *forced,
                ..idle
            },
        }
    }

    /// The deferral check for a due, deferrable restart.
    fn check(
        &mut self,
        now: Instant,
        pending: Pending<A>,
        since: Instant,
        pending_work: impl FnOnce(&[RequesterId]) -> PendingWork,
    ) -> Action<A> {
        let work = pending_work(&pending.requesters);
        let waited = now.saturating_duration_since(since);
        let timeout =
            (self.deferral_timeout_ms > 0).then(|| Duration::from_millis(self.deferral_timeout_ms));
        if work.total() == 0 {
            return self.fire(pending, None);
        }
        if timeout.is_some_and(|t| waited >= t) {
            return self.fire(pending, Some(work));
        }
        let next_poll = now + POLL_INTERVAL;
        let next_check = timeout.map_or(next_poll, |t| next_poll.min(since + t));
        self.state = State::Deferring {
            pending,
            since,
            next_check,
        };
        Action::Deferred(Deferred {
            pending_work: work,
            waited_ms: millis(waited),
            timeout_ms: self.deferral_timeout_ms,
        })
    }

    fn fire(&mut self, pending: Pending<A>, pending_work: Option<PendingWork>) -> Action<A> {
        self.state = State::InFlight {
            reason: pending.reason.clone(),
            forced: pending.forced,
        };
        Action::Fire(Fire {
            reason: pending.reason,
            expectation: pending.expectation,
            forced: pending.forced,
            pending_work,
        })
    }
}

impl<A> Pending<A> {
    /// Folds a request that fires at `fire_at` into this restart; returns
    /// whether it was coalesced (false when it upgraded this one to forced).
    fn absorb(&mut self, req: RestartRequest<A>, fire_at: Instant) -> bool {
        let upgrade = req.skip_deferral && !self.forced;
        if req.expectation.is_some() {
            self.expectation = req.expectation;
        }
        // Coalesced or upgraded, the restart fires at the earlier time.
        self.fire_at = self.fire_at.min(fire_at);
        self.forced |= req.skip_deferral;
        // Update reasons win; otherwise a forced upgrade brings its own.
        let new_reason_wins = match (is_update(&req.reason), is_update(&self.reason)) {
            (true, false) => true,
            (false, true) => false,
            _ => upgrade,
        };
        if new_reason_wins {
            self.reason = req.reason;
        }
        if let Some(id) = req.requester
            && !self.requesters.contains(&id)
        {
            self.requesters.push(id);
        }
        !upgrade
    }
}

fn is_update(reason: &str) -> bool {
    reason.starts_with("update")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
