//! The restart driver: runs the scheduler on the runtime, broadcasts its
//! events and carries out each fired restart with the process's strategy.

use std::ffi::OsString;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditEntry, AuditOutcome};
use molt_protocol::event::EventName;
use molt_protocol::status::{
    PendingWork, RestartFailure, RestartInfo, RestartStrategy, SupervisorKind,
};
use molt_protocol::update::StepRecord;
use parking_lot::Mutex;
use tokio::signal::unix::Signal;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::inherit::HeldFds;
use super::respawn::{self, Parentage, ReadyTimeouts, SuccessorSpec};
use super::scheduler::{self, Action, Fire, Outcome, Rejected, RequesterId, Scheduled, Scheduler};
use crate::audit;
use crate::clock::unix_ms;
use crate::events::EventBus;
use crate::lifecycle::{Lifecycle, StopReason};
use crate::metrics::handoff::Heir;
use crate::metrics::metrics;

/// What an update expects of the handoff its restart causes: the successor
/// must report `version`; a failed handoff (this process keeps serving)
/// hands the failure to `on_failure`, which rolls the install back on the
/// blocking pool before `done` is told.
pub struct HandoffExpectation {
    pub version: String,
    pub on_failure: Box<dyn FnOnce(&HandoffFailure) + Send>,
    /// Told how the handoff ended, after any rollback: `Ok(successor pid)`
    /// (sent before this process drains; `None` when the supervisor starts
    /// the successor) or the failure. Dropped unanswered when a newer
    /// expectation replaces this one or the request is refused.
    pub done: tokio::sync::oneshot::Sender<HandoffOutcome>,
}

/// How a handoff with an expectation ended.
pub type HandoffOutcome = Result<Option<u32>, Arc<HandoffFailure>>;

/// Why a restart did not hand off: this process keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum HandoffFailure {
    #[error("no stable entrypoint to start a successor from")]
    NoEntrypoint,
    #[error("cannot pass the listener and lock on: {0}")]
    Fds(io::Error),
    /// It did not start, or did not get ready.
    #[error(transparent)]
    Successor(#[from] respawn::StartFailure),
    /// It got ready running another version than the one expected: old
    /// code over a new tree, or the reverse.
    #[error("successor pid {pid} runs version {running}, expected {expected}; stopped it")]
    WrongVersion {
        pid: u32,
        running: String,
        expected: String,
    },
    #[error("systemd did not take pid {pid} as the service's main process ({source}); stopped it")]
    NotMainPid { pid: u32, source: io::Error },
    /// This gateway was asked to stop while the successor started: nothing
    /// may go on serving.
    #[error("this gateway was asked to stop while successor pid {pid} started; stopped it")]
    Stopping { pid: u32 },
    /// The exec strategy's check of the entrypoint failed.
    #[error("{0}")]
    ExecPreflight(String),
}

impl HandoffFailure {
    /// The successor's start as a step, with what it printed, when it
    /// failed before READY and its output was relayed.
    pub fn successor_output(&self) -> Option<&StepRecord> {
        match self {
            Self::Successor(start) => start.output.as_deref(),
            _ => None,
        }
    }

    /// A stable name for the failure (the `reason` label of
    /// `moltd_restart_failures_total`).
    pub fn code(&self) -> &'static str {
        use respawn::SuccessorFailure as S;
        match self {
            Self::NoEntrypoint => "no-entrypoint",
            Self::Fds(_) => "fds",
            Self::Successor(start) => match start.failure {
                S::Spawn { .. } => "spawn-failed",
                S::Exited { .. } => "successor-exited",
                S::Refused { .. } => "successor-refused",
                S::NotReady { .. } => "successor-not-ready",
                S::BadReady(_) => "bad-ready",
            },
            Self::WrongVersion { .. } => "version-mismatch",
            Self::NotMainPid { .. } => "not-main-pid",
            Self::Stopping { .. } => "stopping",
            Self::ExecPreflight(_) => "exec-preflight",
        }
    }
}

impl std::fmt::Debug for HandoffExpectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffExpectation")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A restart request as the engine takes it: with the expectation, if an
/// update caused it.
pub type RestartRequest = scheduler::RestartRequest<HandoffExpectation>;

/// How a verified successor takes over beyond this process's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Nobody else needs telling.
    Plain,
    /// systemd tracks this process as the service's main process: name the
    /// successor with `MAINPID=` before exiting, so systemd follows it
    /// instead of seeing the service's main process exit.
    SystemdMainPid,
}

/// The scheduler plus what the driver needs around it.
pub struct RestartEngine {
    scheduler: Mutex<Scheduler<HandoffExpectation>>,
    wake: Notify,
    last_failure: Mutex<Option<RestartFailure>>,
    strategy: RestartStrategy,
    takeover: Takeover,
    /// Who started this process, told to the successor.
    supervisor: SupervisorKind,
    successor: Option<SuccessorSpec>,
    successor_timeout: Duration,
}

/// What the driver asks of the gateway it restarts.
pub trait Host: Send + Sync + 'static {
    /// Work that defers a restart, leaving out the requesters' own
    /// in-flight requests.
    fn pending_work_excluding(&self, requesters: &[RequesterId]) -> PendingWork;
    /// Duplicates of the sockets and the locked lock fd for a successor.
    fn handoff_fds(&self) -> io::Result<HeldFds>;
    /// Called just before `heir` is accepted: what it takes over from
    /// this process (the metrics) is handed over now. (Under exec or a
    /// supervisor, that happens once drained, before the exec or exit.)
    fn hand_over(&self, _heir: Heir) {}
    /// Writes a change the engine was asked for outside any method (a
    /// signal) to the audit trail.
    fn audit(&self, _entry: AuditEntry) {}
}

impl RestartEngine {
    pub fn new(
        scheduler: Scheduler<HandoffExpectation>,
        strategy: RestartStrategy,
        successor: Option<SuccessorSpec>,
        successor_timeout: Duration,
    ) -> Self {
        Self {
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            last_failure: Mutex::new(None),
            strategy,
            takeover: Takeover::Plain,
            supervisor: SupervisorKind::None,
            successor,
            successor_timeout,
        }
    }

    pub fn with_takeover(mut self, takeover: Takeover) -> Self {
        self.takeover = takeover;
        self
    }

    pub fn with_supervisor(mut self, supervisor: SupervisorKind) -> Self {
        self.supervisor = supervisor;
        self
    }

    pub fn strategy(&self) -> RestartStrategy {
        self.strategy
    }

    /// Schedules a restart, or folds it into the pending one.
    pub fn request(&self, request: RestartRequest) -> Result<Scheduled, Rejected> {
        let reason = request.reason.clone();
        let result = self
            .scheduler
            .lock()
            .request(Instant::now().into_std(), request);
        match &result {
            Ok(scheduled) => tracing::info!(
                %reason, delay_ms = scheduled.delay_ms, coalesced = scheduled.coalesced,
                cooldown_ms = scheduled.cooldown_ms_applied, "restart scheduled"
            ),
            Err(e) => tracing::warn!(%reason, "restart request refused: {e}"),
        }
        self.wake.notify_one();
        result
    }

    pub fn set_deferral_timeout(&self, ms: u64) {
        self.scheduler.lock().set_deferral_timeout(ms);
        self.wake.notify_one();
    }

    /// The engine's state for `status`.
    pub fn info(&self) -> RestartInfo {
        let snapshot = self.scheduler.lock().snapshot(Instant::now().into_std());
        RestartInfo {
            strategy: self.strategy,
            phase: snapshot.state,
            reason: snapshot.reason,
            fire_at: snapshot.fire_in_ms.map(|ms| unix_ms() + ms),
            forced: snapshot.forced,
            last_failure: self.last_failure.lock().clone(),
        }
    }
}

/// Runs the scheduler until the gateway stops. `sigusr1` schedules a
/// restart with reason `SIGUSR1`.
pub async fn drive(
    engine: Arc<RestartEngine>,
    host: impl Host,
    events: EventBus,
    lifecycle: Arc<Lifecycle>,
    mut sigusr1: Option<Signal>,
) {
    let engine = &*engine;
    loop {
        let poll = engine
            .scheduler
            .lock()
            .poll(Instant::now().into_std(), |requesters| {
                host.pending_work_excluding(requesters)
            });
        match poll.action {
            Some(Action::Deferred(deferred)) => {
                tracing::info!(
                    pending = deferred.pending_work.total(),
                    waited_ms = deferred.waited_ms,
                    timeout_ms = deferred.timeout_ms,
                    "restart deferred: waiting on pending work"
                );
                events.send(EventName::RestartDeferred, deferred);
            }
            Some(Action::Fire(fire)) => {
                events.send(EventName::RestartChanged, engine.info());
                let outcome = execute(&host, &lifecycle, engine, fire).await;
                let handed_off = outcome == Outcome::HandedOff;
                engine
                    .scheduler
                    .lock()
                    .completed(Instant::now().into_std(), outcome);
                if handed_off {
                    return;
                }
                // No close follows a failed restart: clients learn here
                // that this process serves on, idle, and why.
                events.send(EventName::RestartChanged, engine.info());
                continue;
            }
            None => {}
        }
        let wake_at = poll.wake_at.map(Instant::from_std);
        tokio::select! {
            biased;
            () = lifecycle.stopping().cancelled() => return,
            Some(()) = async { sigusr1.as_mut()?.recv().await } => {
                let outcome = match engine.request(RestartRequest::new("SIGUSR1")) {
                    Ok(scheduled) => {
                        events.send(EventName::RestartScheduled, scheduled.to_wire());
                        AuditOutcome::ok()
                    }
                    Err(rejected) => AuditOutcome::failed("rejected", &rejected.to_string()),
                };
                let signal = Actor::Signal { signal: "SIGUSR1".to_owned() };
                host.audit(audit::entry(AuditAction::SignalRestart, signal, serde_json::json!({}), outcome, None));
            }
            () = engine.wake.notified() => {}
            () = async { tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)).await }, if wake_at.is_some() => {}
        }
    }
}

async fn execute(
    host: &impl Host,
    lifecycle: &Lifecycle,
    engine: &RestartEngine,
    fire: Fire<HandoffExpectation>,
) -> Outcome {
    tracing::info!(reason = %fire.reason, forced = fire.forced, strategy = ?engine.strategy, "restart firing");
    let fired = Instant::now();
    let expectation = fire.expectation;
    let expected = expectation.as_ref().map(|e| e.version.clone());
    let result = match engine.strategy {
        RestartStrategy::Respawn => respawn(host, lifecycle, engine, expected.as_deref(), fired)
            .await
            .map(Some),
        RestartStrategy::Supervised => {
            crate::supervisor::notify_stopping();
            Ok(None)
        }
        RestartStrategy::Exec => {
            super::exec::preflight(engine.successor.as_ref(), expected.as_deref())
                .await
                .map(|()| None)
                .map_err(HandoffFailure::ExecPreflight)
        }
    };
    match result {
        Ok(successor_pid) => {
            if engine.strategy != RestartStrategy::Respawn {
                metrics().handed_off(fired.elapsed().as_secs_f64());
            }
            if let Some(expectation) = expectation {
                let _ = expectation.done.send(Ok(successor_pid));
            }
            lifecycle.stop(StopReason::restart(&fire.reason, engine.strategy));
            Outcome::HandedOff
        }
        Err(failure) => {
            let reason = failure.to_string();
            tracing::error!(%reason, "restart failed; this process keeps serving");
            metrics().restart_failed(failure.code());
            *engine.last_failure.lock() = Some(RestartFailure {
                at: unix_ms(),
                reason: reason.clone(),
                successor: failure.successor_output().cloned(),
            });
            if let Some(expectation) = expectation {
                let failure = Arc::new(failure);
                let rollback = expectation.on_failure;
                let why = Arc::clone(&failure);
                if let Err(e) = tokio::task::spawn_blocking(move || rollback(&why)).await {
                    tracing::error!("the rollback after a failed handoff panicked: {e}");
                }
                let _ = expectation.done.send(Err(failure));
            }
            Outcome::Failed { reason }
        }
    }
}

/// Starts the successor; its pid once it proved itself and, under
/// systemd, once systemd follows it as the service's main process. Only
/// then is it accepted (and claims the gateway); a successor that fails a
/// check is rejected and stopped, and leaves no trace.
async fn respawn(
    host: &impl Host,
    lifecycle: &Lifecycle,
    engine: &RestartEngine,
    expected_version: Option<&str>,
    fired: Instant,
) -> Result<u32, HandoffFailure> {
    let spec = engine
        .successor
        .as_ref()
        .ok_or(HandoffFailure::NoEntrypoint)?;
    let held = host.handoff_fds().map_err(HandoffFailure::Fds)?;
    let timeouts = ReadyTimeouts::from_idle(engine.successor_timeout);
    // systemd must know the process it is told about as its own child.
    let parentage = match engine.takeover {
        Takeover::SystemdMainPid => Parentage::Detached,
        Takeover::Plain => Parentage::Ours,
    };
    let spec = SuccessorSpec {
        capture_output: takes_output_back(expected_version),
        ..spec.clone()
    };
    let successor = respawn::start_successor(
        &spec,
        held,
        std::process::id(),
        engine.supervisor,
        parentage,
        timeouts,
    )
    .await?;
    if let Some(expected) = expected_version
        && successor.version != expected
    {
        let failure = HandoffFailure::WrongVersion {
            pid: successor.pid,
            running: successor.version.clone(),
            expected: expected.to_owned(),
        };
        successor.reject(&failure.to_string()).await;
        return Err(failure);
    }
    // Asked to stop while the successor started: nothing may go on
    // serving after that, so it goes too.
    if lifecycle.is_stopping() {
        let failure = HandoffFailure::Stopping { pid: successor.pid };
        successor.reject(&failure.to_string()).await;
        return Err(failure);
    }
    if engine.takeover == Takeover::SystemdMainPid {
        let status = format!(
            "READY {} {} {}",
            successor.addr, successor.version, successor.pid
        );
        if let Err(source) = crate::supervisor::hand_over_main_pid(successor.pid, &status).await {
            let failure = HandoffFailure::NotMainPid {
                pid: successor.pid,
                source,
            };
            successor.reject(&failure.to_string()).await;
            return Err(failure);
        }
    }
    tracing::info!(
        pid = successor.pid, version = %successor.version, addr = %successor.addr,
        "successor ready; handing off"
    );
    // Counted before the counts go to the successor, which serves them on.
    metrics().handed_off(fired.elapsed().as_secs_f64());
    host.hand_over(Heir::Pid(successor.pid));
    Ok(successor.accept())
}

/// Whether the successor takes its stdout and stderr back at READY, so its
/// output can be relayed while it starts: this version and newer ones do.
/// A plain restart runs the install this process came from.
fn takes_output_back(expected_version: Option<&str>) -> bool {
    let Some(expected) = expected_version else {
        return true;
    };
    let parse = |v: &str| semver::Version::parse(v).ok();
    match (parse(expected), parse(crate::identity::VERSION)) {
        (Some(expected), Some(own)) => expected >= own,
        _ => false,
    }
}

/// The successor to start: the stable entrypoint with this process's args.
pub fn successor_spec(entrypoint: Option<std::path::PathBuf>) -> Option<SuccessorSpec> {
    Some(SuccessorSpec {
        entrypoint: entrypoint?,
        args: std::env::args_os().skip(1).collect::<Vec<OsString>>(),
        capture_output: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::scheduler::{DEFAULT_DEFERRAL_TIMEOUT_MS, RestartMode};

    /// A gateway with the pending work the test sets and no fds to pass.
    #[derive(Clone, Default)]
    struct FakeHost(Arc<Mutex<PendingWork>>);

    impl Host for FakeHost {
        fn pending_work_excluding(&self, _requesters: &[RequesterId]) -> PendingWork {
            *self.0.lock()
        }

        fn handoff_fds(&self) -> io::Result<HeldFds> {
            Err(io::Error::other("no listener in this test"))
        }
    }

    type Outcome = tokio::sync::oneshot::Receiver<HandoffOutcome>;

    fn engine(strategy: RestartStrategy) -> Arc<RestartEngine> {
        let scheduler = Scheduler::new(1, strategy, DEFAULT_DEFERRAL_TIMEOUT_MS);
        Arc::new(RestartEngine::new(
            scheduler,
            strategy,
            None,
            Duration::from_secs(5),
        ))
    }

    /// An update's restart: at once, holding the successor to 2.0.0;
    /// `rolled_back` is set if the rollback runs.
    fn update_restart(engine: &RestartEngine, rolled_back: Arc<Mutex<Option<String>>>) -> Outcome {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let expectation = HandoffExpectation {
            version: "2.0.0".to_owned(),
            on_failure: Box::new(move |failure| *rolled_back.lock() = Some(failure.to_string())),
            done,
        };
        let request = RestartRequest {
            reason: "update.run".to_owned(),
            delay_ms: Some(0),
            expectation: Some(expectation),
            ..RestartRequest::default()
        };
        engine.request(request).unwrap();
        outcome
    }

    /// Drives `engine` for a gateway without pending work until
    /// `lifecycle` stops.
    fn spawn_driver(
        engine: &Arc<RestartEngine>,
        lifecycle: &Arc<Lifecycle>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(drive(
            Arc::clone(engine),
            FakeHost::default(),
            EventBus::default(),
            Arc::clone(lifecycle),
            None,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_waits_out_pending_work_then_stops_and_tells_its_request() {
        let engine = engine(RestartMode::Supervised);
        let (host, events, lifecycle) = (FakeHost::default(), EventBus::default(), Arc::default());
        *host.0.lock() = PendingWork {
            holds: 1,
            ..PendingWork::default()
        };
        let rolled_back = Arc::default();
        let outcome = update_restart(&engine, Arc::clone(&rolled_back));
        let mut seen = events.subscribe();
        let driver = tokio::spawn(drive(
            engine,
            host.clone(),
            events.clone(),
            Arc::clone(&lifecycle),
            None,
        ));

        let deferred = seen.recv().await.unwrap();
        assert_eq!(deferred.event, EventName::RestartDeferred);
        assert!(!lifecycle.is_stopping(), "a hold defers the restart");
        *host.0.lock() = PendingWork::default();
        // Supervised: the supervisor starts the successor, so no pid.
        assert_eq!(outcome.await.unwrap().ok(), Some(None));
        driver.await.unwrap();
        let why = lifecycle.stop_reason();
        assert_eq!(why.reason, "restart: update.run");
        assert_eq!(why.close, molt_protocol::close::ServerClose::HandOff);
        assert_eq!(*rolled_back.lock(), None);
    }

    #[tokio::test]
    async fn an_exec_into_another_version_is_refused_and_rolled_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let entrypoint = dir.path().join("moltd");
        std::fs::write(&entrypoint, "#!/bin/sh\necho moltd 1.0.0\n").unwrap();
        std::fs::set_permissions(&entrypoint, std::fs::Permissions::from_mode(0o755)).unwrap();
        let scheduler = Scheduler::new(1, RestartMode::Exec, DEFAULT_DEFERRAL_TIMEOUT_MS);
        let spec = SuccessorSpec {
            entrypoint,
            args: Vec::new(),
            capture_output: false,
        };
        let engine = Arc::new(RestartEngine::new(
            scheduler,
            RestartMode::Exec,
            Some(spec),
            Duration::from_secs(5),
        ));
        let lifecycle: Arc<Lifecycle> = Arc::default();
        let rolled_back = Arc::default();
        // The update installed 2.0.0; the entrypoint runs 1.0.0.
        let outcome = update_restart(&engine, Arc::clone(&rolled_back));
        let driver = spawn_driver(&engine, &lifecycle);
        let failure = outcome.await.unwrap().unwrap_err();
        assert!(
            matches!(&*failure, HandoffFailure::ExecPreflight(reason) if reason.contains("expected 2.0.0")),
            "{failure}"
        );
        let reason = failure.to_string();
        assert_eq!(rolled_back.lock().as_deref(), Some(reason.as_str()));
        assert!(
            !lifecycle.is_stopping(),
            "no exec: this process keeps serving"
        );
        lifecycle.stop(StopReason::stop());
        driver.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_handoff_rolls_back_before_telling_and_this_process_keeps_serving() {
        // Respawn with no entrypoint to start a successor from: it fails.
        let engine = engine(RestartMode::Respawn);
        let lifecycle: Arc<Lifecycle> = Arc::default();
        let rolled_back = Arc::default();
        let outcome = update_restart(&engine, Arc::clone(&rolled_back));
        let driver = spawn_driver(&engine, &lifecycle);

        let failure = outcome.await.unwrap().unwrap_err();
        assert!(
            matches!(*failure, HandoffFailure::NoEntrypoint),
            "{failure}"
        );
        let reason = failure.to_string();
        assert_eq!(
            rolled_back.lock().as_deref(),
            Some(reason.as_str()),
            "the rollback ran, with the reason, before the outcome was told"
        );
        assert!(!lifecycle.is_stopping(), "this process keeps serving");
        assert_eq!(engine.info().last_failure.map(|f| f.reason), Some(reason));
        lifecycle.stop(StopReason::stop());
        driver.await.unwrap();
    }

    #[test]
    fn every_failure_has_its_own_reason_label_and_the_docs_list_it() {
        use respawn::SuccessorFailure as S;
        let start = |failure| {
            HandoffFailure::Successor(respawn::StartFailure {
                failure,
                output: None,
            })
        };
        let failures = [
            HandoffFailure::NoEntrypoint,
            HandoffFailure::Fds(io::Error::other("x")),
            start(S::Spawn {
                entrypoint: "x".into(),
                source: io::Error::other("x"),
            }),
            start(S::Exited {
                status: None,
                progress: String::new(),
            }),
            start(S::Refused {
                status: None,
                reason: String::new(),
            }),
            start(S::NotReady {
                waited_ms: 1,
                progress: String::new(),
            }),
            start(S::BadReady(String::new())),
            HandoffFailure::WrongVersion {
                pid: 1,
                running: "1".into(),
                expected: "2".into(),
            },
            HandoffFailure::NotMainPid {
                pid: 1,
                source: io::Error::other("x"),
            },
            HandoffFailure::Stopping { pid: 1 },
            HandoffFailure::ExecPreflight(String::new()),
        ];
        let codes: std::collections::BTreeSet<&str> = failures.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), failures.len(), "{codes:?}");
        let docs = include_str!("../../../docs/operations.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `moltd_restart_failures_total`"))
            .expect("the metric's row in docs/operations.md");
        for code in codes {
            assert!(
                row.contains(&format!("`{code}`")),
                "{code} missing from: {row}"
            );
        }
    }
}
