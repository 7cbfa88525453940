//! The running gateway: a cheap `Clone` handle around `Arc<Inner>` that
//! composes the core state and the engines, and keeps the connection
//! state (connections, in-flight requests, the stop). Engines never see
//! it: each gets the few things it needs ([`Gateway::run_context`], the
//! restart [`Host`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use molt_protocol::Scope;
use molt_protocol::actor::Actor;
use molt_protocol::audit::AuditEntry;
use molt_protocol::event::EventName;
use molt_protocol::handshake::PROTOCOL_VERSION;
use molt_protocol::ids::ConnId;
use molt_protocol::status::{
    AutoUpdateState, BuildInfo, InstallInfo, PendingWork, StatusResult, SupervisorInfo,
};
use molt_protocol::update::UpdateAvailable;
use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;
use tokio::signal::unix::Signal;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::auth::Credentials;
use crate::auth::guesses::Guesses;
use crate::auth::origin::AllowedOrigins;
use crate::autoupdate::kill_switch::NO_AUTO_UPDATE_ENV;
use crate::autoupdate::{self, KillSwitch};
use crate::clock::unix_ms;
use crate::config::{ConfigStore, Settings};
use crate::env_file::Env;
use crate::events::{Broadcast, EventBus};
use crate::holds::Holds;
use crate::identity::Identity;
use crate::lifecycle::{Lifecycle, StopReason};
use crate::lock::{GatewayLock, LockInfo};
use crate::logging::LogHub;
use crate::paths::StatePaths;
use crate::restart::engine::{self, RestartEngine};
use crate::update::check::CheckFlight;
use crate::update::context::{RunContext, SystemSteps};
use crate::update::runs::RunStore;
use crate::update::{UpdateSlot, resume};

/// The auto-updater wired to this gateway and the update engine.
pub mod auto;
mod guards;
mod handoff;

pub use guards::{CountGuard, RequestGuard};

/// Who is asking, for method handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub conn_id: ConnId,
    /// Where the client is (its address, or the local socket and its
    /// uid), which names it to a person reading a run.
    pub peer: String,
    /// `client.id` from its `connect`.
    pub client_id: String,
    /// The credential it authenticated with (`gateway-token`, ...).
    pub credential: &'static str,
    /// The connection's number, which identifies it to the restart
    /// scheduler (its own requests never defer its restart).
    pub conn: u64,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The caller as the audit trail and update runs name it.
    pub fn actor(&self) -> Actor {
        Actor::client(&self.client_id, &self.peer, self.conn_id.clone())
            .with_credential(self.credential)
    }
}

pub struct GatewayParts {
    pub identity: Identity,
    pub paths: StatePaths,
    pub config: ConfigStore,
    pub settings: Settings,
    pub env: Env,
    pub auth: Credentials,
    pub listen: SocketAddr,
    pub install: InstallInfo,
    pub supervisor: SupervisorInfo,
    pub logs: LogHub,
    pub restart: RestartEngine,
    /// A duplicate of the listening socket, passed to a successor.
    pub listener_fd: OwnedFd,
    /// A duplicate of the local socket, when there is one.
    pub local_fd: Option<OwnedFd>,
    pub lock: GatewayLock,
    /// The auto-updater's state (`update-check.json`).
    pub auto: Arc<autoupdate::Shared>,
}

struct Inner {
    identity: Identity,
    paths: StatePaths,
    runs: RunStore,
    audit: AuditLog,
    config: Mutex<ConfigStore>,
    settings: Mutex<Settings>,
    env: Mutex<Env>,
    auth: Credentials,
    /// Failed authentications per peer address.
    guesses: Mutex<Guesses>,
    listen: SocketAddr,
    install: InstallInfo,
    supervisor: SupervisorInfo,
    logs: LogHub,
    restart: Arc<RestartEngine>,
    /// Released once stopped, unless an exec still needs it.
    listener_fd: Mutex<Option<OwnedFd>>,
    local_fd: Mutex<Option<OwnedFd>>,
    lock: Mutex<GatewayLock>,
    auto: Arc<autoupdate::Shared>,
    /// In-flight requests per connection number.
    in_flight_by_conn: Mutex<HashMap<u64, u32>>,
    update_slot: Arc<UpdateSlot>,
    /// The registry check in flight, shared by `update.check` callers and
    /// the auto-updater.
    check_flight: CheckFlight,
    /// The newest version the last check found, if newer than this one.
    update_available: Mutex<Option<UpdateAvailable>>,
    events: EventBus,
    holds: Mutex<Holds>,
    connections: AtomicU32,
    next_conn: AtomicU32,
    lifecycle: Arc<Lifecycle>,
    /// Cancelled when sessions must close (after in-flight work drained).
    sessions_stop: CancellationToken,
    /// Request handlers, drained on stop.
    requests: TaskTracker,
    /// Cancelled at the first accepted connection.
    accepted: CancellationToken,
}

/// How long the start-up clean-up waits for a first connection.
pub const CLEANUP_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    pub fn new(parts: GatewayParts) -> Self {
        let restart = parts.restart.with_supervisor(parts.supervisor.kind);
        let rate_limit = parts.settings.gateway.rate_limit;
        Self {
            inner: Arc::new(Inner {
                identity: parts.identity,
                runs: RunStore::new(parts.paths.runs_path.clone()),
                audit: AuditLog::new(parts.paths.audit_path.clone()),
                paths: parts.paths,
                config: Mutex::new(parts.config),
                settings: Mutex::new(parts.settings),
                env: Mutex::new(parts.env),
                guesses: Mutex::new(Guesses::new(rate_limit)),
                auth: parts.auth,
                listen: parts.listen,
                install: parts.install,
                supervisor: parts.supervisor,
                logs: parts.logs,
                restart: Arc::new(restart),
                listener_fd: Mutex::new(Some(parts.listener_fd)),
                local_fd: Mutex::new(parts.local_fd),
                lock: Mutex::new(parts.lock),
                auto: parts.auto,
                in_flight_by_conn: Mutex::new(HashMap::new()),
                update_slot: Arc::default(),
                check_flight: CheckFlight::default(),
                update_available: Mutex::new(None),
                events: EventBus::default(),
                holds: Mutex::new(Holds::default()),
                connections: AtomicU32::new(0),
                next_conn: AtomicU32::new(0),
                lifecycle: Arc::default(),
                sessions_stop: CancellationToken::new(),
                requests: TaskTracker::new(),
                accepted: CancellationToken::new(),
            }),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub fn paths(&self) -> &StatePaths {
        &self.inner.paths
    }

    /// `update-runs.jsonl`, shared so its newest run is read once per change.
    pub fn runs(&self) -> &RunStore {
        &self.inner.runs
    }

    /// `audit.jsonl`.
    pub fn audit_log(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Writes `entry` to the audit trail (on the blocking pool: it
    /// fsyncs); a failure is logged, never the caller's.
    pub async fn audit(&self, entry: AuditEntry) {
        let trail = self.inner.audit.clone();
        match tokio::task::spawn_blocking(move || trail.append(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("audit entry not written: {e}"),
            Err(e) => tracing::error!("writing the audit entry did not finish: {e}"),
        }
    }

    pub fn install(&self) -> &InstallInfo {
        &self.inner.install
    }

    pub fn auth(&self) -> &Credentials {
        &self.inner.auth
    }

    pub fn guesses(&self) -> MutexGuard<'_, Guesses> {
        self.inner.guesses.lock()
    }

    /// The browser origins a handshake may come from, as configured now.
    pub fn allowed_origins(&self) -> AllowedOrigins {
        AllowedOrigins::new(
            self.inner.settings.lock().gateway.allowed_origins.clone(),
            self.inner.listen.port(),
        )
    }

    pub fn logs(&self) -> &LogHub {
        &self.inner.logs
    }

    pub fn config(&self) -> MutexGuard<'_, ConfigStore> {
        self.inner.config.lock()
    }

    pub fn settings(&self) -> Settings {
        self.inner.settings.lock().clone()
    }

    /// Applies settings live, wherever they came from (`config.patch` or a
    /// hand edit seen on reload); the auto-updater re-plans, since
    /// `update.*` may have changed.
    pub fn set_settings(&self, settings: Settings) {
        self.inner
            .restart
            .set_deferral_timeout(settings.gateway.deferral_timeout_ms);
        self.inner
            .guesses
            .lock()
            .set_limit(settings.gateway.rate_limit);
        *self.inner.settings.lock() = settings;
        self.inner.auto.wake();
    }

    pub fn holds(&self) -> MutexGuard<'_, Holds> {
        self.inner.holds.lock()
    }

    /// A new connection's number and wire id.
    pub fn next_conn(&self) -> (u64, ConnId) {
        let n = u64::from(self.inner.next_conn.fetch_add(1, Ordering::Relaxed)) + 1;
        (n, ConnId(format!("{}-{n}", self.inner.identity.pid)))
    }

    pub fn restart(&self) -> &RestartEngine {
        &self.inner.restart
    }

    /// Runs the restart scheduler until the gateway stops.
    pub async fn drive_restarts(&self, sigusr1: Option<Signal>) {
        let inner = &self.inner;
        engine::drive(
            Arc::clone(&inner.restart),
            self.clone(),
            inner.events.clone(),
            Arc::clone(&inner.lifecycle),
            sigusr1,
        )
        .await;
    }

    /// What one update run (or check) is given: the live settings as they
    /// stand now, the real package managers, this gateway's stop.
    pub fn run_context(&self) -> RunContext {
        let inner = &self.inner;
        let settings = self.settings();
        let gw = self.clone();
        RunContext {
            runs: inner.runs.clone(),
            events: inner.events.clone(),
            restart: inner.restart.clone(),
            cancel: inner.lifecycle.stopping().clone(),
            steps: Arc::new(SystemSteps),
            slot: Arc::clone(&inner.update_slot),
            paths: inner.paths.clone(),
            install: inner.install.clone(),
            supervisor: inner.supervisor.kind,
            version: inner.identity.version.clone(),
            settings: settings.update,
            restart_enabled: settings.restart_enabled,
            kill_switch: Arc::new(move || gw.kill_switch()),
        }
    }

    /// At start: finishes what a predecessor's update left (on the
    /// blocking pool: it reads and writes state files), and leaves the
    /// clean-up of big trees for once a client was accepted.
    pub async fn resume_updates(&self) {
        let gw = self.clone();
        let resumed = tokio::task::spawn_blocking(move || {
            resume::resume(gw.runs(), gw.paths(), gw.install(), gw.identity())
        })
        .await;
        match resumed {
            Ok(cleanup) => self.clean_up_once_serving(cleanup),
            Err(e) => tracing::error!("resuming the update state did not finish: {e}"),
        }
    }

    /// Runs `cleanup` after the first accepted connection (or
    /// [`CLEANUP_AFTER`] of serving with none), never before: removing a
    /// big leftover tree must not keep the port from answering.
    fn clean_up_once_serving(&self, cleanup: resume::Cleanup) {
        let accepted = self.inner.accepted.clone();
        let stopping = self.stopping().clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = stopping.cancelled() => return,
                () = accepted.cancelled() => {}
                () = tokio::time::sleep(CLEANUP_AFTER) => {}
            }
            if let Err(e) = tokio::task::spawn_blocking(move || cleanup.run()).await {
                tracing::warn!("the start-up clean-up did not finish: {e}");
            }
        });
    }

    /// The one registry check that runs at a time.
    pub fn check_flight(&self) -> &CheckFlight {
        &self.inner.check_flight
    }

    pub fn update_available(&self) -> Option<UpdateAvailable> {
        self.inner.update_available.lock().clone()
    }

    /// Records what the last check found; a newer version than the one
    /// announced before is logged and broadcast as `update.available`.
    pub fn announce_update(&self, available: Option<UpdateAvailable>) {
        let mut current = self.inner.update_available.lock();
        if *current == available {
            return;
        }
        *current = available.clone();
        drop(current);
        if let Some(available) = available {
            tracing::info!(
                current = %available.current_version, latest = %available.latest_version,
                channel = available.channel.as_str(), "update available"
            );
            self.broadcast(EventName::UpdateAvailable, &available);
        }
    }

    pub fn supervisor_info(&self) -> &SupervisorInfo {
        &self.inner.supervisor
    }

    /// Closes this process's hold on the listening sockets, so a stopped
    /// gateway refuses connections (a successor keeps its own copies).
    pub fn release_listener(&self) {
        self.inner.listener_fd.lock().take();
        self.inner.local_fd.lock().take();
    }

    /// Writes this process into `gateway.lock` (a successor does so once
    /// it serves, not before: a failed handoff must leave the holder named).
    pub fn claim_lock(&self) -> Result<(), crate::lock::LockError> {
        let id = &self.inner.identity;
        self.inner.lock.lock().update_info(LockInfo {
            pid: id.pid,
            started_at: id.started_at_ms,
            port: self.inner.listen.port(),
            version: id.version.clone(),
        })
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Broadcast>> {
        self.inner.events.subscribe()
    }

    pub fn broadcast(&self, event: EventName, payload: impl Serialize) {
        self.inner.events.send(event, payload);
    }

    /// Counts a connection for as long as the guard lives.
    pub fn connection_guard(&self) -> CountGuard {
        self.inner.accepted.cancel();
        CountGuard::new(self.clone(), |inner| &inner.connections)
    }

    /// Counts an in-flight request of connection `conn` for as long as the
    /// guard lives.
    pub fn request_guard(&self, conn: u64) -> RequestGuard {
        *self.inner.in_flight_by_conn.lock().entry(conn).or_default() += 1;
        RequestGuard {
            gateway: self.clone(),
            conn,
        }
    }

    pub fn requests(&self) -> &TaskTracker {
        &self.inner.requests
    }

    pub fn sessions_stop(&self) -> &CancellationToken {
        &self.inner.sessions_stop
    }

    /// Begins an orderly stop; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        self.inner.lifecycle.stop(reason);
    }

    pub fn stopping(&self) -> &CancellationToken {
        self.inner.lifecycle.stopping()
    }

    pub fn stop_reason(&self) -> StopReason {
        self.inner.lifecycle.stop_reason()
    }

    /// The close code sessions send when the gateway stops.
    pub fn close(&self) -> molt_protocol::close::ServerClose {
        self.stop_reason().close
    }

    /// Pending work that defers a restart. `exclude` requests are the
    /// caller's own (they must not defer themselves).
    pub fn pending_work(&self, exclude: u32) -> PendingWork {
        let in_flight: u32 = self.inner.in_flight_by_conn.lock().values().sum();
        PendingWork {
            in_flight_requests: in_flight.saturating_sub(exclude),
            holds: self.holds().active(Instant::now()),
            update_steps: u32::from(self.inner.update_slot.current().is_some()),
        }
    }

    /// `OPENCLAW_NO_AUTO_UPDATE` as it stands now. The update flow checks
    /// it again before an automatic run schedules its restart.
    pub fn kill_switch(&self) -> KillSwitch {
        KillSwitch::from_env(&self.inner.env.lock())
    }

    /// Persists the kill switch in `.env` and applies it live (see
    /// [`autoupdate::kill_switch::set`]); the auto-updater re-plans at once.
    pub fn set_kill_switch(
        &self,
        enabled: bool,
    ) -> Result<KillSwitch, autoupdate::kill_switch::SetError> {
        let switch = {
            let mut env = self.inner.env.lock();
            autoupdate::kill_switch::set(&mut env, &self.inner.paths.env_path, enabled)?
        };
        tracing::info!(
            enabled, source = ?switch.source,
            "{NO_AUTO_UPDATE_ENV} {}",
            if switch.blocked() { "set: automatic updates are held" } else { "cleared" }
        );
        self.inner.auto.wake();
        Ok(switch)
    }

    /// The auto-updater's shared state, for its driver.
    pub fn auto(&self) -> &Arc<autoupdate::Shared> {
        &self.inner.auto
    }

    /// The auto-updater's live inputs; `None` if the running version is
    /// not semver (a hand-stamped build), which no registry version can
    /// be compared with.
    pub fn auto_live(&self) -> Option<autoupdate::Live> {
        Some(autoupdate::Live {
            settings: self.settings().update,
            install: self.inner.install.surface,
            kill_switch: self.kill_switch(),
            running: semver::Version::parse(&self.inner.identity.version).ok()?,
        })
    }

    /// `status.auto`: settings, the kill switch and, while the driver
    /// runs, its next check and apply times (the same evaluation it uses).
    pub fn auto_update_state(&self) -> AutoUpdateState {
        let settings = self.settings();
        let switch = self.kill_switch();
        let plan = self
            .auto_live()
            .filter(|_| self.inner.auto.driving())
            .map(|live| self.inner.auto.plan(&live, unix_ms()));
        AutoUpdateState {
            enabled: settings.update.auto.enabled,
            channel: settings.update.channel,
            blocked_by: switch.blocked().then(|| "env".to_owned()),
            source: switch.source,
            next_check_at: plan.as_ref().and_then(|p| p.next_check_at),
            next_apply_at: plan.and_then(|p| p.next_apply_at),
        }
    }

    /// What a metrics scrape reads as it stands.
    pub fn metrics_live(&self) -> crate::metrics::Live {
        let id = &self.inner.identity;
        crate::metrics::Live {
            version: id.version.clone(),
            started_at_ms: id.started_at_ms,
            connections: self.inner.connections.load(Ordering::Relaxed),
            kill_switch: self.kill_switch().blocked(),
            update_available: self
                .update_available()
                .map(|a| (a.latest_version, a.channel.as_str().to_owned())),
        }
    }

    /// The `status` result; `exclude` as in [`Gateway::pending_work`].
    pub fn status(&self, exclude: u32) -> StatusResult {
        let id = &self.inner.identity;
        StatusResult {
            version: id.version.clone(),
            build: BuildInfo {
                version: id.version.clone(),
                protocol: PROTOCOL_VERSION,
                profile: if cfg!(debug_assertions) {
                    "debug".to_owned()
                } else {
                    "release".to_owned()
                },
            },
            pid: id.pid,
            started_at: id.started_at_ms,
            uptime_ms: id.uptime_ms(),
            listen: self.inner.listen.to_string(),
            state_dir: self.inner.paths.state_dir.display().to_string(),
            install: self.inner.install.clone(),
            supervisor: self.inner.supervisor.clone(),
            restart: self.inner.restart.info(),
            pending_work: self.pending_work(exclude),
            auto: self.auto_update_state(),
            update_available: self.update_available(),
            latest_run: self.inner.runs.latest(),
            connections: self.inner.connections.load(Ordering::Relaxed),
            auth: Some(self.inner.auth.status()),
        }
    }
}
