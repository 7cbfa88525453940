//! The restart driver: runs the scheduler on the runtime, broadcasts its
//! events and carries out each fired restart with the process's strategy.

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use molt_protocol::event::EventName;
use molt_protocol::status::{RestartFailure, RestartInfo, RestartStrategy};
use tokio::signal::unix::Signal;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::respawn::{self, ReadyTimeouts, SuccessorSpec};
use super::scheduler::{
    Action, Fire, HookId, Outcome, Rejected, RestartRequest, Scheduled, Scheduler,
};
use crate::gateway::{Gateway, StopReason, unix_ms};

/// Work to run right before a restart fires (e.g. writing the sentinel).
pub type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What an update expects of the next handoff: the successor must report
/// `version`, and a failed handoff (the old process keeps serving) hands
/// the reason to `on_failure`, which rolls the install back.
pub struct HandoffExpectation {
    pub version: String,
    pub on_failure: Box<dyn FnOnce(String) -> Hook + Send>,
    /// Told how the handoff ended, after any rollback: `Ok(successor pid)`
    /// (sent before this process drains) or `Err(reason)`.
    pub done: tokio::sync::oneshot::Sender<Result<Option<u32>, String>>,
}

/// The scheduler plus what the driver needs around it.
pub struct RestartEngine {
    scheduler: Mutex<Scheduler>,
    wake: Notify,
    hooks: Mutex<HashMap<HookId, Hook>>,
    next_hook: AtomicU64,
    last_failure: Mutex<Option<RestartFailure>>,
    strategy: RestartStrategy,
    successor: Option<SuccessorSpec>,
    successor_timeout: Duration,
    expectation: Mutex<Option<HandoffExpectation>>,
}

impl RestartEngine {
    pub fn new(
        scheduler: Scheduler,
        strategy: RestartStrategy,
        successor: Option<SuccessorSpec>,
        successor_timeout: Duration,
    ) -> Self {
        Self {
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            hooks: Mutex::new(HashMap::new()),
            next_hook: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            strategy,
            successor,
            successor_timeout,
            expectation: Mutex::new(None),
        }
    }

    /// Disarms them (the restart was refused).
    pub fn clear_expectation(&self) {
        lock(&self.expectation).take();
    }

    /// Arms the checks for the next handoff (see [`HandoffExpectation`]).
    pub fn expect_on_next_handoff(&self, expectation: HandoffExpectation) {
        *lock(&self.expectation) = Some(expectation);
    }

    pub fn strategy(&self) -> RestartStrategy {
        self.strategy
    }

    /// Schedules a restart; `hook` runs right before it fires, unless a
    /// later forced request supersedes it.
    pub fn request(
        &self,
        mut request: RestartRequest,
        hook: Option<Hook>,
    ) -> Result<Scheduled, Rejected> {
        let hook_id = hook.map(|hook| {
            let id = HookId(self.next_hook.fetch_add(1, Ordering::Relaxed));
            lock(&self.hooks).insert(id, hook);
            id
        });
        request.hook = hook_id;
        let reason = request.reason.clone();
        let result = lock(&self.scheduler).request(Instant::now().into_std(), request);
        match &result {
            Ok(scheduled) => tracing::info!(
                %reason, delay_ms = scheduled.delay_ms, coalesced = scheduled.coalesced,
                cooldown_ms = scheduled.cooldown_ms_applied, "restart scheduled"
            ),
            Err(e) => {
                if let Some(id) = hook_id {
                    lock(&self.hooks).remove(&id);
                }
                tracing::warn!(%reason, "restart request refused: {e}");
            }
        }
        self.wake.notify_one();
        result
    }

    pub fn set_deferral_timeout(&self, ms: u64) {
        lock(&self.scheduler).set_deferral_timeout(ms);
        self.wake.notify_one();
    }

    /// The engine's state for `status`.
    pub fn info(&self) -> RestartInfo {
        let snapshot = lock(&self.scheduler).snapshot(Instant::now().into_std());
        RestartInfo {
            strategy: self.strategy,
            phase: snapshot.state,
            reason: snapshot.reason,
            fire_at: snapshot.fire_in_ms.map(|ms| unix_ms() + ms),
            forced: snapshot.forced,
            last_failure: lock(&self.last_failure).clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the scheduler until the gateway stops. `sigusr1` schedules a
/// restart with reason `SIGUSR1`.
pub async fn drive(gw: Gateway, mut sigusr1: Option<Signal>) {
    let engine = gw.restart();
    loop {
        let poll = lock(&engine.scheduler).poll(Instant::now().into_std(), |requesters| {
            gw.pending_work_excluding(requesters)
        });
        match poll.action {
            Some(Action::Deferred(deferred)) => {
                tracing::info!(
                    pending = deferred.pending_work.total(),
                    waited_ms = deferred.waited_ms,
                    timeout_ms = deferred.timeout_ms,
                    "restart deferred: waiting on pending work"
                );
                gw.broadcast(EventName::RestartDeferred, deferred);
            }
            Some(Action::Fire(fire)) => {
                let outcome = execute(&gw, engine, fire).await;
                let handed_off = outcome == Outcome::HandedOff;
                lock(&engine.scheduler).completed(Instant::now().into_std(), outcome);
                if handed_off {
                    return;
                }
                continue;
            }
            None => {}
        }
        let wake_at = poll.wake_at.map(Instant::from_std);
        tokio::select! {
            biased;
            () = gw.stopping().cancelled() => return,
            Some(()) = async { sigusr1.as_mut()?.recv().await } => {
                if let Ok(scheduled) = engine.request(RestartRequest::new("SIGUSR1"), None) {
                    gw.broadcast(EventName::RestartScheduled, scheduled.to_wire());
                }
            }
            () = engine.wake.notified() => {}
            () = async { tokio::time::sleep_until(wake_at.unwrap_or_else(Instant::now)).await }, if wake_at.is_some() => {}
        }
    }
}

async fn execute(gw: &Gateway, engine: &RestartEngine, fire: Fire) -> Outcome {
    tracing::info!(reason = %fire.reason, forced = fire.forced, strategy = ?engine.strategy, "restart firing");
    // Only the named hook runs; superseded ones are dropped unrun.
    let hook = {
        let mut hooks = lock(&engine.hooks);
        let hook = fire.hook.and_then(|id| hooks.remove(&id));
        hooks.clear();
        hook
    };
    if let Some(hook) = hook {
        hook.await;
    }
    let expectation = lock(&engine.expectation).take();
    let expected = expectation.as_ref().map(|e| e.version.clone());
    let result = match engine.strategy {
        RestartStrategy::Respawn => respawn(gw, engine, expected.as_deref()).await.map(Some),
        RestartStrategy::Supervised => {
            crate::supervisor::notify_stopping();
            Ok(None)
        }
        RestartStrategy::Exec => super::exec::preflight(engine.successor.as_ref())
            .await
            .map(|()| None),
    };
    match result {
        Ok(successor_pid) => {
            if let Some(expectation) = expectation {
                let _ = expectation.done.send(Ok(successor_pid));
            }
            gw.stop(StopReason::restart(&fire.reason, engine.strategy));
            Outcome::HandedOff
        }
        Err(reason) => {
            tracing::error!(%reason, "restart failed; this process keeps serving");
            *lock(&engine.last_failure) = Some(RestartFailure {
                at: unix_ms(),
                reason: reason.clone(),
            });
            if let Some(expectation) = expectation {
                (expectation.on_failure)(reason.clone()).await;
                let _ = expectation.done.send(Err(reason.clone()));
            }
            Outcome::Failed { reason }
        }
    }
}

/// Starts the successor; its pid once it proved itself.
async fn respawn(
    gw: &Gateway,
    engine: &RestartEngine,
    expected_version: Option<&str>,
) -> Result<u32, String> {
    let spec = engine
        .successor
        .as_ref()
        .ok_or("no stable entrypoint to start a successor from")?;
    let (listener, lock) = gw
        .handoff_fds()
        .map_err(|e| format!("cannot pass the listener and lock on: {e}"))?;
    let timeouts = ReadyTimeouts::from_idle(engine.successor_timeout);
    match respawn::start_successor(spec, listener, lock, gw.identity().pid, timeouts).await {
        Ok(successor) => {
            if let Some(expected) = expected_version
                && successor.version != expected
            {
                let reason = format!(
                    "successor pid {} runs version {}, expected {expected}; stopped it",
                    successor.pid, successor.version
                );
                successor.stop().await;
                return Err(reason);
            }
            tracing::info!(
                pid = successor.pid, version = %successor.version, addr = %successor.addr,
                "successor ready; handing off"
            );
            Ok(successor.pid)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The successor to start: the stable entrypoint with this process's args.
pub fn successor_spec(entrypoint: Option<std::path::PathBuf>) -> Option<SuccessorSpec> {
    Some(SuccessorSpec {
        entrypoint: entrypoint?,
        args: std::env::args_os().skip(1).collect::<Vec<OsString>>(),
    })
}
