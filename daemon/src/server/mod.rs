//! The accept loop: one task per connection, from the TCP listener (plain
//! or TLS) and the local socket, a connection cap, a bound on
//! unauthenticated connections (per peer and in all, see
//! [`session::admission`]), backoff on accept errors, refusals logged at a
//! bounded rate, and an orderly drain on stop.

pub mod local;

use std::sync::Arc;
use std::time::Duration;

use molt_protocol::event::{EventName, Shutdown};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::auth::Peer;
use crate::gateway::Gateway;
use crate::lifecycle::StopReason;
use crate::logging::{THROTTLE_WINDOW, Throttled};
use crate::session::transport::{Accepted, admission_key};
use crate::session::{self, admission::Admission};
use crate::tls::TlsAcceptor;

/// Where the gateway accepts connections.
pub struct Listeners {
    pub tcp: TcpListener,
    /// Set when `gateway.tls` is on: every TCP connection speaks TLS.
    pub tls: Option<TlsAcceptor>,
    /// The local socket, unless it could not be bound.
    pub local: Option<UnixListener>,
}

static OVER_LIMIT: Throttled = Throttled::new("connection limit reached; closing new connections");
static EVICTED: Throttled =
    Throttled::new("too many unauthenticated connections; evicted the oldest");

/// Connections served at once; more are closed at accept. Twice the
/// unauthenticated bound, so a flood leaves room for real sessions.
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection just accepted.
enum Arrival {
    Client(Accepted, Peer),
    /// A local peer of another user (its uid, when the kernel said).
    Stranger(tokio::net::UnixStream, Option<u32>),
}

impl Arrival {
    fn who(&self) -> String {
        match self {
            Arrival::Client(_, peer) => peer.to_string(),
            Arrival::Stranger(_, uid) => format!("local uid {uid:?}"),
        }
    }
}

/// How long a stop waits for in-flight requests before closing sessions.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listeners` until `stop` is cancelled, then drains: stops
/// accepting, announces `shutdown`, lets in-flight requests finish
/// (bounded), closes every session with the gateway's close code.
pub async fn serve(listeners: Listeners, gw: Gateway, shutdown: impl Future<Output = ()>) {
    let stop = gw.stopping().clone();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let admission = Admission::default();
    let sessions = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    let mut summaries = tokio::time::interval(THROTTLE_WINDOW);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = &mut shutdown => {
                gw.stop(StopReason::stop());
                break;
            }
            _ = summaries.tick() => {
                for throttled in [&OVER_LIMIT, &EVICTED] {
                    throttled.flush();
                }
                session::flush_throttled_logs();
                local::flush_throttled_logs();
                continue;
            }
            accepted = listeners.tcp.accept() => accepted.map(|(stream, addr)| {
                let _ = stream.set_nodelay(true);
                let accepted = match &listeners.tls {
                    Some(tls) => Accepted::Tls(stream, tls.clone()),
                    None => Accepted::Tcp(stream),
                };
                Arrival::Client(accepted, Peer::tcp(addr))
            }),
            accepted = local::accept(listeners.local.as_ref()) => {
                accepted.map(|stream| match local::owner(&stream) {
                    Ok(uid) => Arrival::Client(Accepted::Local(stream), Peer::LocalOwner { uid }),
                    Err(uid) => Arrival::Stranger(stream, uid),
                })
            }
        };
        let arrival = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(10);
                pair
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; backing off {backoff:?}");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            OVER_LIMIT.note(format_args!(
                "{MAX_CONNECTIONS} connections, refused {}",
                arrival.who()
            ));
            continue;
        };
        let (accepted, peer) = match arrival {
            Arrival::Client(accepted, peer) => (accepted, peer),
            Arrival::Stranger(stream, uid) => {
                // Counted as a connection until answered, so a flood of
                // refusals stays bounded too.
                sessions.spawn(async move {
                    local::refuse(stream, uid).await;
                    drop(permit);
                });
                continue;
            }
        };
        let (pending, evicted) = admission.admit(admission_key(&peer), std::time::Instant::now());
        if evicted > 0 {
            EVICTED.note(format_args!("{evicted} for {peer}"));
        }
        let gw = gw.clone();
        sessions.spawn(async move {
            session::serve_connection(accepted, peer, pending, gw).await;
            drop(permit);
        });
    }
    drop(listeners);

    let why = gw.stop_reason();
    tracing::info!(reason = %why.reason, "stopping: draining in-flight requests");
    gw.broadcast(
        EventName::Shutdown,
        Shutdown {
            reason: why.reason,
            restart_expected_ms: why.restart_expected_ms,
        },
    );
    // Each session answers what it has read and closes once its client is
    // done (see session); the request tracker also covers work that
    // outlives its connection (an update run).
    gw.requests().close();
    sessions.close();
    let drained = async {
        sessions.wait().await;
        gw.requests().wait().await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!("in-flight requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
    }
    if !gw.stop_reason().exec_after {
        gw.release_listener();
    }
    gw.sessions_stop().cancel();
    if tokio::time::timeout(Duration::from_secs(5), sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("sessions did not close in time");
    }
}
