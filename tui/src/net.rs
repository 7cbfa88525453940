//! The network task: owns the gateway client, reconnects on its own, runs
//! the app's requests and reports back with small messages. The app never
//! waits on the network; the network never touches app state.

use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::method::UpdateRunParams;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{
    Client, CloseInfo, CloseKind, ConnectError, ConnectOptions, Events, GatewayEvent, Incoming,
    RequestError,
};
use crate::peer::Hello;

/// What a request's answer is for; echoed back with the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    Status,
    /// `update.run` with `dryRun`: the target the confirm dialog shows.
    UpdatePreview,
    UpdateRun,
    UpdateStatus,
    UpdateCheck,
    History,
    /// `audit.list`: the History screen's audit trail.
    Audit,
    ConfigGet,
    ConfigPatch,
    /// `update.noAutoUpdate.set`.
    KillSwitch,
    LogsTail,
    /// OpenClaw 2026.9.x `update.runs.get`: the run followed.
    RunRecord,
    /// OpenClaw 2026.9.x `update.runs.list`: the History screen.
    RunsList,
    /// OpenClaw 2026.9.x `update.hold`.
    Hold,
}

/// How long to wait for an answer: `update.run` answers after its
/// commands, each bounded by its `timeoutMs` (docs/protocol.md), and the
/// handoff, so it gets all of them at their bound and a margin.
pub fn timeout_for(method: Method, params: Option<&Value>, default: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(60);
    if method != Method::UpdateRun {
        return default;
    }
    let dry_run = params
        .and_then(|p| p.get("dryRun"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if dry_run {
        return default.max(Duration::from_secs(60));
    }
    let run: UpdateRunParams = params
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_default();
    Duration::from_millis(run.commands_bound_ms()) + MARGIN
}

/// From the app to the network task.
#[derive(Clone, Debug, PartialEq)]
pub enum NetCommand {
    Request {
        purpose: Purpose,
        method: Method,
        params: Option<Value>,
    },
    /// A request by name, for a method only another gateway serves
    /// (OpenClaw's `update.runs.get`).
    Call {
        purpose: Purpose,
        method: String,
        params: Option<Value>,
    },
    /// Skip the current wait and try now (also after an auth failure,
    /// once the operator fixed the token).
    ReconnectNow,
}

/// From the network task to the app.
#[derive(Clone, Debug, PartialEq)]
pub enum NetEvent {
    /// A connection attempt starts; `attempt` 0 is the first of a series.
    Connecting {
        url: String,
        attempt: u32,
    },
    /// Handshake done. `handoff_gap` is the time from the 1012 close of the
    /// old process to this `hello-ok`, when this follows a handoff;
    /// `outage` what this console's attempts saw since the last session.
    Connected {
        hello: Box<Hello>,
        handoff_gap: Option<Duration>,
        outage: Option<Outage>,
    },
    /// The session ended.
    Closed(CloseInfo),
    /// Waiting `delay` before attempt `attempt`. `handoff`: polling fast
    /// because the gateway said it restarts.
    Retrying {
        attempt: u32,
        delay: Duration,
        handoff: bool,
        error: Option<String>,
    },
    /// The token was refused; no retry until [`NetCommand::ReconnectNow`].
    AuthFailed {
        message: String,
    },
    /// No protocol both sides speak; retrying cannot help, so none until
    /// [`NetCommand::ReconnectNow`].
    Incompatible {
        message: String,
    },
    Gateway(GatewayEvent),
    /// Events were dropped; refresh what derives from them.
    Lagged(u64),
    Response {
        purpose: Purpose,
        result: Result<Value, RequestError>,
    },
}

/// The gap between two sessions as this console's own connection attempts
/// saw it: how long the gateway's port refused connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// From the end of the last session to this `hello-ok`.
    pub gap: Duration,
    /// From the first refused attempt to the first attempt that reached
    /// the port again; `None` when no attempt was refused.
    pub dark: Option<Duration>,
    /// Attempts refused (nothing listened on the port).
    pub refused: u32,
    pub attempts: u32,
    /// The wait before the attempt that first reached the port again: the
    /// port came back at most this long before it was seen.
    pub precision: Duration,
}

/// Collects an [`Outage`] from the attempts after a session ended.
#[derive(Clone, Copy, Debug)]
struct OutageWatch {
    since: Instant,
    first_refused: Option<Instant>,
    reached: Option<(Instant, Duration)>,
    refused: u32,
    attempts: u32,
    last_delay: Duration,
}

impl OutageWatch {
    fn new(since: Instant) -> Self {
        Self {
            since,
            first_refused: None,
            reached: None,
            refused: 0,
            attempts: 0,
            last_delay: Duration::ZERO,
        }
    }

    /// An attempt started at `at` ended; `refused`: nothing listened.
    fn attempt(&mut self, at: Instant, refused: bool) {
        self.attempts += 1;
        if refused {
            self.refused += 1;
            self.first_refused.get_or_insert(at);
        } else if self.first_refused.is_some() && self.reached.is_none() {
            self.reached = Some((at, self.last_delay));
        }
    }

    fn finish(self, now: Instant) -> Outage {
        let (reached, precision) = self.reached.unwrap_or((now, self.last_delay));
        Outage {
            gap: now.saturating_duration_since(self.since),
            dark: self
                .first_refused
                .map(|first| reached.saturating_duration_since(first)),
            refused: self.refused,
            attempts: self.attempts,
            precision,
        }
    }
}

/// Produces the connect options for each attempt (re-running discovery, so
/// a daemon that came back on a new port is found).
pub type Resolve = Box<dyn FnMut() -> Result<ConnectOptions, String> + Send>;

/// Reconnect delays: fast polling while a handoff is expected, exponential
/// backoff otherwise.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub handoff_poll: Duration,
    /// How long to poll fast before polling slower.
    pub handoff_window: Duration,
    /// The poll after the fast window while a restart is still expected:
    /// a gateway that takes minutes to come back (OpenClaw 2026.4.x was
    /// measured dark for over a minute) is seen, and timed, to the second.
    pub handoff_slow_poll: Duration,
    /// How long a restart is expected before falling back to backoff.
    pub handoff_patience: Duration,
    /// A session shorter than this does not reset the backoff, so a gateway
    /// that accepts and drops at once is not hammered.
    pub stable_after: Duration,
    attempt: u32,
    handoff_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            handoff_poll: Duration::from_millis(50),
            handoff_window: Duration::from_secs(30),
            handoff_slow_poll: Duration::from_secs(1),
            handoff_patience: Duration::from_secs(10 * 60),
            stable_after: Duration::from_secs(10),
            attempt: 0,
            handoff_since: None,
        }
    }
}

impl Backoff {
    /// Consecutive failed attempts so far (0 while connected).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the handoff this series waits for began.
    pub fn handoff_since(&self) -> Option<Instant> {
        self.handoff_since
    }

    /// A restart is expected: the gateway said so, and not too long ago.
    pub fn in_handoff(&self, now: Instant) -> bool {
        self.handoff_since
            .is_some_and(|since| now.duration_since(since) < self.handoff_patience)
    }

    /// A session ended after `lived`.
    pub fn on_close(&mut self, now: Instant, lived: Duration, handoff: bool) {
        if handoff {
            self.attempt = 0;
            self.handoff_since = Some(now);
        } else if lived >= self.stable_after {
            self.attempt = 0;
            self.handoff_since = None;
        }
        self.attempt += 1;
    }

    /// An attempt failed before a session started.
    pub fn on_failure(&mut self, now: Instant, handoff: bool) {
        if handoff && self.handoff_since.is_none() {
            self.handoff_since = Some(now);
        }
        self.attempt += 1;
    }

    pub fn on_connected(&mut self) {
        self.handoff_since = None;
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
        self.handoff_since = None;
    }

    /// How long to wait before the next attempt.
    pub fn delay(&self, now: Instant) -> Duration {
        if let Some(since) = self.handoff_since {
            let waited = now.duration_since(since);
            if waited < self.handoff_window {
                return self.handoff_poll;
            }
            if waited < self.handoff_patience {
                return self.handoff_slow_poll;
            }
        }
        let doublings = self.attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Why the task stops.
enum Stop {
    Cancelled,
    /// The app dropped its end.
    AppGone,
}

/// Runs until `cancel` fires or the app drops its channels.
pub async fn run(
    mut resolve: Resolve,
    mut backoff: Backoff,
    mut commands: mpsc::UnboundedReceiver<NetCommand>,
    out: mpsc::Sender<NetEvent>,
    cancel: CancellationToken,
) {
    let stop = connect_loop(&mut resolve, &mut backoff, &mut commands, &out, &cancel).await;
    match stop {
        Stop::Cancelled => tracing::debug!("network task cancelled"),
        Stop::AppGone => tracing::debug!("network task: app gone"),
    }
}

async fn connect_loop(
    resolve: &mut Resolve,
    backoff: &mut Backoff,
    commands: &mut mpsc::UnboundedReceiver<NetCommand>,
    out: &mpsc::Sender<NetEvent>,
    cancel: &CancellationToken,
) -> Stop {
    let mut outage: Option<OutageWatch> = None;
    loop {
        let error = match resolve() {
            Err(problem) => {
                tracing::warn!(%problem, "cannot resolve the gateway");
                backoff.on_failure(Instant::now(), false);
                Some(problem)
            }
            Ok(options) => {
                let attempt = backoff.attempt();
                let url = options.url.clone();
                if let Err(stop) = emit(out, NetEvent::Connecting { url, attempt }).await {
                    return stop;
                }
                let attempted_at = Instant::now();
                let connected = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Stop::Cancelled,
                    result = Client::connect(&options) => result,
                };
                if let Some(watch) = &mut outage {
                    let refused = matches!(connected, Err(ConnectError::Refused { .. }));
                    watch.attempt(attempted_at, refused);
                }
                match connected {
                    Ok((client, events)) => {
                        let handoff_gap = backoff.handoff_since().map(|t| t.elapsed());
                        let seen = outage.take().map(|w| w.finish(Instant::now()));
                        backoff.on_connected();
                        tracing::info!(url = %options.url, server = ?client.hello().server.version, ?handoff_gap, outage = ?seen, "connected");
                        let hello = Box::new(client.hello().clone());
                        let connected = NetEvent::Connected {
                            hello,
                            handoff_gap,
                            outage: seen,
                        };
                        if let Err(stop) = emit(out, connected).await {
                            return stop;
                        }
                        let started = Instant::now();
                        let ended = match session(client, events, commands, out, cancel).await {
                            Ok(ended) => ended,
                            Err(stop) => return stop,
                        };
                        let handoff =
                            ended.close.kind() == CloseKind::HandOff || ended.restart_expected;
                        outage = Some(OutageWatch::new(Instant::now()));
                        backoff.on_close(Instant::now(), started.elapsed(), handoff);
                        if let Err(stop) = emit(out, NetEvent::Closed(ended.close)).await {
                            return stop;
                        }
                        None
                    }
                    Err(ConnectError::AuthFailed { message }) => {
                        tracing::warn!(%message, "authentication failed; not retrying");
                        if let Err(stop) = emit(out, NetEvent::AuthFailed { message }).await {
                            return stop;
                        }
                        if let Err(stop) = wait(None, false, commands, out, cancel).await {
                            return stop;
                        }
                        backoff.reset();
                        continue;
                    }
                    Err(ConnectError::ProtocolMismatch {
                        server_expects,
                        message,
                    }) => {
                        let message = incompatible(server_expects, &message);
                        tracing::warn!(%message, "no common protocol; not retrying");
                        if let Err(stop) = emit(out, NetEvent::Incompatible { message }).await {
                            return stop;
                        }
                        if let Err(stop) = wait(None, false, commands, out, cancel).await {
                            return stop;
                        }
                        backoff.reset();
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "connect failed");
                        backoff.on_failure(Instant::now(), error.is_handoff());
                        Some(error.to_string())
                    }
                }
            }
        };
        let now = Instant::now();
        let delay = backoff.delay(now);
        if let Some(watch) = &mut outage {
            watch.last_delay = delay;
        }
        let holding = backoff.in_handoff(now);
        let retrying = NetEvent::Retrying {
            attempt: backoff.attempt(),
            delay,
            handoff: holding,
            error,
        };
        if let Err(stop) = emit(out, retrying).await {
            return stop;
        }
        if let Err(stop) = wait(Some(delay), holding, commands, out, cancel).await {
            return stop;
        }
    }
}

/// What to tell the operator when no protocol is shared.
pub fn incompatible(server_expects: Option<u32>, message: &str) -> String {
    use molt_protocol::handshake::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
    match server_expects {
        Some(p) if p > PROTOCOL_VERSION => format!(
            "the gateway speaks protocol {p}, this console {MIN_PROTOCOL_VERSION}-{PROTOCOL_VERSION}: update molt"
        ),
        Some(p) => format!(
            "the gateway speaks protocol {p}, this console {MIN_PROTOCOL_VERSION}-{PROTOCOL_VERSION}: update moltd"
        ),
        None => format!("no common protocol with the gateway: {message}"),
    }
}

async fn emit(out: &mpsc::Sender<NetEvent>, event: NetEvent) -> Result<(), Stop> {
    out.send(event).await.map_err(|_| Stop::AppGone)
}

/// Waits `delay` (or until told, with `None`), answering requests with
/// "not connected" meanwhile, or, `holding` them during a handoff, leaving
/// them for the successor (the handoff's patience bounds how long).
/// Returns early on `ReconnectNow`.
async fn wait(
    delay: Option<Duration>,
    holding: bool,
    commands: &mut mpsc::UnboundedReceiver<NetCommand>,
    out: &mpsc::Sender<NetEvent>,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let sleep = async {
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(Stop::Cancelled),
            command = commands.recv(), if !holding => match command {
                None => return Err(Stop::AppGone),
                Some(NetCommand::ReconnectNow) => return Ok(()),
                Some(NetCommand::Request { purpose, .. } | NetCommand::Call { purpose, .. }) => {
                    let result = Err(RequestError::Disconnected { close: None });
                    emit(out, NetEvent::Response { purpose, result }).await?;
                }
            },
            () = &mut sleep => return Ok(()),
        }
    }
}

struct Ended {
    close: CloseInfo,
    /// A `shutdown` event announced a restart before the close.
    restart_expected: bool,
}

async fn session(
    client: Client,
    mut events: Events,
    commands: &mut mpsc::UnboundedReceiver<NetCommand>,
    out: &mpsc::Sender<NetEvent>,
    cancel: &CancellationToken,
) -> Result<Ended, Stop> {
    // Dropped (and so aborted) with the session.
    let mut requests: JoinSet<(Purpose, Result<Value, RequestError>)> = JoinSet::new();
    let mut restart_expected = false;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                client.close().await;
                return Err(Stop::Cancelled);
            }
            // After `shutdown` the process only finishes what it read: once
            // our answers are in, move to the successor. Commands wait in
            // the channel for the next session, so none is sent into a
            // closing connection (docs/protocol.md, "Limits and liveness").
            () = std::future::ready(()), if restart_expected && requests.is_empty() => {
                let close = client.close().await;
                return Ok(Ended { close, restart_expected });
            }
            command = commands.recv(), if !restart_expected => match command {
                None => {
                    client.close().await;
                    return Err(Stop::AppGone);
                }
                Some(NetCommand::ReconnectNow) => {}
                Some(NetCommand::Request { purpose, method, params }) => {
                    let client = client.clone();
                    let timeout = timeout_for(method, params.as_ref(), client.request_timeout());
                    requests.spawn(async move {
                        (purpose, client.request_with_timeout(method, params, timeout).await)
                    });
                }
                Some(NetCommand::Call { purpose, method, params }) => {
                    let client = client.clone();
                    let timeout = client.request_timeout();
                    requests.spawn(async move {
                        (purpose, client.call_named(&method, params, timeout).await)
                    });
                }
            },
            Some(done) = requests.join_next(), if !requests.is_empty() => {
                if let Ok((purpose, result)) = done {
                    emit(out, NetEvent::Response { purpose, result }).await?;
                }
            }
            incoming = events.recv() => match incoming {
                Incoming::Event { event, .. } => {
                    if let GatewayEvent::Shutdown(shutdown) = &event {
                        restart_expected = shutdown.restart_expected_ms.is_some();
                    }
                    emit(out, NetEvent::Gateway(event)).await?;
                }
                Incoming::Lagged(n) => emit(out, NetEvent::Lagged(n)).await?,
                Incoming::Closed(close) => {
                    // In-flight requests fail fast once the driver is gone.
                    while let Some(done) = requests.join_next().await {
                        if let Ok((purpose, result)) = done {
                            emit(out, NetEvent::Response { purpose, result }).await?;
                        }
                    }
                    return Ok(Ended { close, restart_expected });
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_from_250ms_to_30s() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..10 {
            backoff.on_failure(now, false);
            delays.push(backoff.delay(now));
        }
        let expected: Vec<Duration> =
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
                .iter()
                .map(|ms| MS * *ms)
                .collect();
        assert_eq!(delays, expected);
        assert_eq!(backoff.attempt(), 10);
    }

    #[test]
    fn handoff_polls_fast_then_falls_back() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        backoff.on_failure(now, false);
        backoff.on_failure(now, false);
        backoff.on_close(now, Duration::from_secs(1), true);
        assert_eq!(backoff.attempt(), 1);
        assert!(backoff.in_handoff(now));
        assert_eq!(backoff.delay(now), backoff.handoff_poll);
        backoff.on_failure(now + MS * 50, false);
        assert_eq!(backoff.delay(now + MS * 100), backoff.handoff_poll);
        // A slow restart is still polled once a second, then backed off.
        let later = now + backoff.handoff_window;
        assert!(backoff.in_handoff(later));
        assert_eq!(backoff.delay(later), MS * 1000);
        let much_later = now + backoff.handoff_patience;
        assert!(!backoff.in_handoff(much_later));
        assert_eq!(backoff.delay(much_later), MS * 500);
        backoff.on_connected();
        assert_eq!(backoff.handoff_since(), None);
    }

    #[test]
    fn update_run_outlives_the_default_timeout() {
        use serde_json::json;
        let default = Duration::from_secs(15);
        assert_eq!(timeout_for(Method::Status, None, default), default);
        let run = json!({"note": "x"});
        assert_eq!(
            timeout_for(Method::UpdateRun, Some(&run), default),
            Duration::from_secs(9 * 20 * 60 + 60)
        );
        let bounded = json!({"timeoutMs": 120_000});
        assert_eq!(
            timeout_for(Method::UpdateRun, Some(&bounded), default),
            Duration::from_secs(9 * 120 + 60)
        );
        let dry = json!({"dryRun": true});
        assert_eq!(
            timeout_for(Method::UpdateRun, Some(&dry), default),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn the_dark_port_is_timed_by_the_refused_attempts() {
        let closed = Instant::now();
        let mut watch = OutageWatch::new(closed);
        watch.last_delay = MS * 50;
        watch.attempt(closed + MS * 50, true);
        watch.last_delay = MS * 1000;
        watch.attempt(closed + MS * 1050, true);
        watch.attempt(closed + MS * 2050, true);
        // The port accepts again (the handshake may still fail).
        watch.attempt(closed + MS * 3050, false);
        watch.attempt(closed + MS * 4050, false);
        let outage = watch.finish(closed + MS * 4100);
        assert_eq!(
            outage,
            Outage {
                gap: MS * 4100,
                dark: Some(MS * 3000),
                refused: 3,
                attempts: 5,
                precision: MS * 1000,
            }
        );
        // A gateway that never refused was never dark.
        let mut watch = OutageWatch::new(closed);
        watch.attempt(closed + MS * 10, false);
        assert_eq!(watch.finish(closed + MS * 20).dark, None);
    }

    #[test]
    fn short_sessions_keep_backing_off() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        backoff.on_close(now, Duration::from_millis(10), false);
        backoff.on_close(now, Duration::from_millis(10), false);
        backoff.on_close(now, Duration::from_millis(10), false);
        assert_eq!(backoff.delay(now), MS * 1000);
        backoff.on_close(now, Duration::from_secs(60), false);
        assert_eq!(backoff.attempt(), 1);
        assert_eq!(backoff.delay(now), MS * 250);
    }
}
