//! One WebSocket connection: challenge → connect → hello-ok, then requests,
//! events with a per-connection `seq`, ticks and pings until it closes.
//!
//! Bounds a client cannot push past (see docs/operations.md, limits):
//! [`MAX_IN_FLIGHT`] requests at once (more get `RATE_LIMITED` at once,
//! never a task); what it is sent is bounded in bytes ([`outbox`]); a
//! client that stops reading is held back by TCP, then dropped; when it
//! goes, its requests are cancelled (an `update.run` finishes on its own:
//! the run is durable and has its own record).
//!
//! A stop drains: every request read is answered; after the `shutdown`
//! event the session stays open while the client still has requests in
//! flight, closing once it has been quiet for [`DRAIN_QUIET`] (a client
//! that follows the protocol moves to the successor at `shutdown` and
//! sends nothing more) or after [`DRAIN_GRACE`] at most.

pub mod admission;
mod handshake;
pub mod http;
pub mod outbox;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use molt_protocol::Request;
use molt_protocol::close::ServerClose;
use molt_protocol::error::{ErrorCode, ErrorShape};
use molt_protocol::event::{EventName, LogsLine, Tick};
use molt_protocol::frame::{ClientFrame, RequestFrame, ResponseFrame};
use molt_protocol::handshake::{
    ConnectChallenge, HANDSHAKE_TIMEOUT_MS, MAX_PAYLOAD, PRE_AUTH_MAX_PAYLOAD, TICK_INTERVAL_MS,
};
use molt_protocol::ids::RequestId;
use tokio::sync::{Notify, broadcast};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Upgrade, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::http::header::ORIGIN;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use self::admission::Pending;
use self::handshake::{frame_error, handshake};
use self::http::{Replay, Routed};
use self::outbox::{Events, MAX_BUFFERED_BYTES, Outbox, WRITE_DEADLINE};
use self::transport::{Accepted, Conn};
use crate::auth::Peer;
use crate::auth::origin::AllowedOrigins;
use crate::budget::ReadBudget;
use crate::gateway::{Caller, Gateway};
use crate::logging::{Throttled, ThrottledByKey};
use crate::methods::{self, SessionFlags};
use crate::metrics::metrics;

static REFUSED_AT_HANDSHAKE: Throttled = Throttled::new("connection refused at handshake");
static ORIGIN_REFUSED: ThrottledByKey = ThrottledByKey::new("browser origin not allowed");

/// Logs what the throttled lines of this module held back.
pub fn flush_throttled_logs() {
    REFUSED_AT_HANDSHAKE.flush();
    ORIGIN_REFUSED.flush();
    handshake::flush_throttled_logs();
}

/// What an unauthenticated peer may make us read: the HTTP upgrade plus one
/// pre-auth frame.
const PRE_AUTH_READ_BUDGET: u64 = (PRE_AUTH_MAX_PAYLOAD + 16 * 1024) as u64;
/// Requests one connection may have in flight; more are refused at once.
pub const MAX_IN_FLIGHT: u32 = 16;
/// A client silent for this many tick intervals is gone.
const SILENT_TICKS: u32 = 3;
/// While stopping: a session with nothing in flight closes after this long
/// without a request.
pub const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// While stopping: a session closes this long after the stop at most,
/// once its requests are answered. Long enough for a client on a loaded
/// machine to read `shutdown` and stop: the one request it may send in
/// between is read and answered, not lost to the close.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<Replay<Box<dyn Conn>>>;
type Source = futures_util::stream::SplitStream<Ws>;

/// Serves one accepted connection from `peer` (as its listener vouches
/// for it). `pending` holds its place among the unauthenticated ones
/// until `hello-ok`; when a newer connection evicts it, it ends.
pub async fn serve_connection(accepted: Accepted, mut peer: Peer, pending: Pending, gw: Gateway) {
    let _counted = gw.connection_guard();
    let budget = ReadBudget::new(PRE_AUTH_READ_BUDGET);
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    // tungstenite's default 128 KiB read buffer per connection (zeroed on
    // every read) dominated memory with many clients; 8 KiB grows on demand.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD));
    // A connection not yet authenticated has no work to drain: a stop ends
    // it at once instead of holding the old process for a timeout.
    let stopping = gw.stopping().clone();
    // A TLS handshake, the request's head and the upgrade share the
    // handshake's deadline. Plain HTTP (the metrics) is answered here; the
    // rest is a WebSocket.
    let route = async {
        let stream = accepted.open(&budget).await?;
        http::route(stream, &gw, &peer).await
    };
    let routed = tokio::select! {
        routed = timeout_at(deadline, route) => routed,
        () = stopping.cancelled() => return,
        () = pending.evicted.cancelled() => return,
    };
    let stream = match routed {
        Ok(Ok(Routed::WebSocket(stream))) => stream,
        Ok(Ok(Routed::Answered)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "reading the request failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "request not read in time");
            return;
        }
    };
    let allowed = gw.allowed_origins();
    let mut origin = None;
    // The callback's shape is tungstenite's, large error and all.
    #[allow(clippy::result_large_err)]
    let check =
        |request: &Upgrade, response| check_origin(&allowed, request, response, &mut origin);
    let accept = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
    let upgraded = tokio::select! {
        upgraded = timeout_at(deadline, accept) => upgraded,
        () = stopping.cancelled() => return,
        () = pending.evicted.cancelled() => return,
    };
    let ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(_)) if origin.as_ref().is_some_and(|o: &Origin| !o.allowed) => {
            let origin = origin.map(|o| o.value).unwrap_or_default();
            ORIGIN_REFUSED.note(
                &origin,
                format_args!("{origin} from {peer} (refused with 403)"),
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "websocket upgrade timed out");
            return;
        }
    };
    if let (Peer::Tcp { origin: slot, .. }, Some(origin)) = (&mut peer, origin) {
        *slot = Some(origin.value);
    }
    let (sink, mut source) = ws.split();
    let (outbox, writer) = Outbox::start(sink, MAX_BUFFERED_BYTES);
    let mut events = Events::new(outbox.clone());
    let (conn, conn_id) = gw.next_conn();

    let _ = events.send(
        EventName::ConnectChallenge,
        ConnectChallenge {
            nonce: nonce(),
            ts: crate::clock::unix_ms(),
        },
    );
    let handshaken = tokio::select! {
        handshaken = timeout_at(deadline, handshake(&mut source, &gw, &peer)) => handshaken,
        () = stopping.cancelled() => {
            outbox.close(gw.close());
            finish(events, outbox, writer).await;
            return;
        }
        () = pending.evicted.cancelled() => {
            outbox.close(ServerClose::TooManyUnauthenticated);
            finish(events, outbox, writer).await;
            return;
        }
    };
    let granted = match handshaken {
        Ok(Ok(granted)) => granted,
        Ok(Err(rejected)) => {
            REFUSED_AT_HANDSHAKE.note(format_args!("{peer}: {}", rejected.close.reason()));
            if let Some(response) = rejected.response {
                let _ = outbox.respond_now(response);
            }
            outbox.close(rejected.close);
            finish(events, outbox, writer).await;
            return;
        }
        Err(_) => {
            REFUSED_AT_HANDSHAKE.note(format_args!("{peer}: handshake timeout"));
            outbox.close(ServerClose::HandshakeTimeout);
            finish(events, outbox, writer).await;
            return;
        }
    };
    budget.lift();
    // Authenticated: no longer one of the pending few.
    drop(pending);
    let caller = Caller {
        conn,
        peer: peer.to_string(),
        conn_id: conn_id.clone(),
        client_id: granted.client_id.clone(),
        credential: granted.credential.as_str(),
        scopes: granted.scopes.clone(),
    };
    let hello = methods::hello(&gw, granted.protocol, conn_id.clone(), granted.scopes);
    let _ = outbox.respond_now(ResponseFrame::success(
        granted.request_id,
        serde_json::to_value(hello).unwrap_or_default(),
    ));
    tracing::debug!(
        %peer, %conn_id, protocol = granted.protocol,
        credential = granted.credential.as_str(), "client connected"
    );

    let mut session = Session {
        gw: gw.clone(),
        caller,
        flags: SessionFlags::default(),
        events,
        in_flight: Arc::new(InFlight::default()),
        cancel: CancellationToken::new(),
    };
    let close = session.serve(&mut source).await;
    // Requests of a connection that is gone have no one to answer.
    session.cancel.cancel();
    let Session { events, .. } = session;
    match close {
        Some(Close::Polite(close)) => outbox.close(close),
        Some(Close::Drop(reason)) => {
            tracing::info!(%peer, %conn_id, %reason, "dropping the connection: slow consumer");
            outbox.close_with(ServerClose::SlowConsumer, Some(&reason));
        }
        None => {}
    }
    finish(events, outbox, writer).await;
    tracing::debug!(%peer, %conn_id, "client disconnected");
}

/// A browser's `Origin` header, and whether it may connect.
struct Origin {
    value: String,
    allowed: bool,
}

/// The upgrade's check of a browser's `Origin` (see [`crate::auth::origin`]):
/// a page from an origin not allowed gets 403 and no WebSocket.
#[allow(clippy::result_large_err)] // tungstenite's callback type
fn check_origin(
    allowed: &AllowedOrigins,
    request: &Upgrade,
    response: Response,
    seen: &mut Option<Origin>,
) -> Result<Response, ErrorResponse> {
    let mut values = request.headers().get_all(ORIGIN).iter();
    let Some(first) = values.next() else {
        return Ok(response);
    };
    let value: String = String::from_utf8_lossy(first.as_bytes())
        .chars()
        .take(MAX_ORIGIN_CHARS)
        .collect();
    // More than one Origin is no browser's doing.
    let ok = values.next().is_none() && allowed.allows(&value);
    *seen = Some(Origin { value, allowed: ok });
    if ok {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some(
        "origin not allowed: add it to gateway.controlUi.allowedOrigins\n".to_owned(),
    ));
    *refusal.status_mut() = StatusCode::FORBIDDEN;
    Err(refusal)
}

/// How much of an `Origin` header is kept for the log.
const MAX_ORIGIN_CHARS: usize = 200;

/// How a session ends from our side.
enum Close {
    /// A close frame.
    Polite(ServerClose),
    /// The client does not read: 1008 `slow consumer: <what did not
    /// fit>` if it can be sent without waiting, else the socket is shut.
    Drop(String),
}

/// One connection's requests in flight, and a wake-up when one ends.
#[derive(Default)]
struct InFlight {
    count: AtomicU32,
    ended: Notify,
}

struct Session {
    gw: Gateway,
    caller: Caller,
    flags: SessionFlags,
    events: Events,
    in_flight: Arc<InFlight>,
    /// Cancelled when the connection ends: its requests stop.
    cancel: CancellationToken,
}

impl Session {
    /// Serves requests and forwards events until the client leaves, the
    /// gateway stops, or a bound is broken. Returns how to close, if we
    /// close.
    async fn serve(&mut self, source: &mut Source) -> Option<Close> {
        let mut bus = self.gw.subscribe();
        let mut log_lines = self.gw.logs().subscribe();
        let tick_every = Duration::from_millis(TICK_INTERVAL_MS);
        let mut ticks = tokio::time::interval_at(Instant::now() + tick_every, tick_every);
        let mut last_heard = Instant::now();
        let stopping = self.gw.stopping().clone();
        let forced = self.gw.sessions_stop().clone();
        let outbox = self.events.outbox().clone();
        let mut full_since: Option<Instant> = None;
        let mut draining_since: Option<Instant> = None;
        let mut last_request = Instant::now();

        loop {
            // Armed before the count is read, so no ending is missed.
            let ended = self.in_flight.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            full_since = match (outbox.is_full(), full_since) {
                (true, None) => Some(Instant::now()),
                (true, since) => since,
                (false, _) => None,
            };
            let in_flight = self.in_flight.count.load(Ordering::Acquire);
            let drained_at = draining_since
                .map(|since| (since.max(last_request) + DRAIN_QUIET).min(since + DRAIN_GRACE));
            if in_flight == 0 && drained_at.is_some_and(|at| Instant::now() >= at) {
                return Some(Close::Polite(self.gw.close()));
            }
            tokio::select! {
                biased;
                () = forced.cancelled() => {
                    // Deliver what was broadcast before the stop (the
                    // `shutdown` event above all) before closing.
                    while let Ok(broadcast) = bus.try_recv() {
                        let _ = self.events.send(broadcast.event, &broadcast.payload);
                    }
                    return Some(Close::Polite(self.gw.close()));
                }
                () = outbox.gone().cancelled() => return None,
                () = stopping.cancelled(), if draining_since.is_none() => {
                    draining_since = Some(Instant::now());
                }
                () = ended => {}
                () = sleep_until(drained_at) => {}
                () = sleep_until(full_since.map(|since| since + WRITE_DEADLINE)) => {
                    return Some(Close::Drop(format!(
                        "{MAX_BUFFERED_BYTES} bytes queued for {WRITE_DEADLINE:?}"
                    )));
                }
                // Nothing more is read while the client's queue is full:
                // TCP then holds a client that sends without reading.
                () = outbox.room(), if full_since.is_some() => {}
                message = source.next(), if full_since.is_none() => {
                    last_heard = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            last_request = Instant::now();
                            if let Err(reason) = self.handle_text(&text) {
                                return Some(Close::Drop(reason));
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return Some(Close::Polite(ServerClose::BinaryFrame));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                            return Some(Close::Polite(ServerClose::TooLarge));
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                    }
                }
                event = bus.recv() => match event {
                    Ok(broadcast) => {
                        if self.events.send(broadcast.event, &broadcast.payload).is_err() {
                            return Some(Close::Drop("events did not fit".to_owned()));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(conn_id = %self.caller.conn_id, missed, "session missed events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                // Always polled: a guard here would not be re-checked when a
                // handler turns following on.
                line = log_lines.recv() => {
                    if let Ok(line) = line
                        && self.flags.follow_logs.load(Ordering::Relaxed)
                        && self.events.send(EventName::LogsLine, LogsLine { line }).is_err()
                    {
                        return Some(Close::Drop("log lines did not fit".to_owned()));
                    }
                }
                _ = ticks.tick() => {
                    if last_heard.elapsed() > tick_every * SILENT_TICKS {
                        return Some(Close::Polite(ServerClose::ClientSilent));
                    }
                    if self.events.send(EventName::Tick, Tick { ts: crate::clock::unix_ms() }).is_err() {
                        return Some(Close::Drop("ticks did not fit".to_owned()));
                    }
                    outbox.ping();
                }
            }
        }
    }

    /// Answers one text frame: an error at once, or a task for the
    /// request. `Err` when even an error could not be queued.
    fn handle_text(&self, text: &str) -> Result<(), String> {
        let outbox = self.events.outbox();
        let refuse = |id: RequestId, error: ErrorShape| {
            outbox
                .respond_now(ResponseFrame::failure(id, error))
                .map_err(|_| "its own errors did not fit".to_owned())
        };
        let frame: RequestFrame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(RequestId::from))
                    .unwrap_or_else(|| RequestId::from(""));
                return refuse(id, frame_error(&e));
            }
        };
        let request = match Request::from_frame(&frame) {
            Ok(request) => request,
            Err(error) => return refuse(frame.id, error),
        };
        let in_flight = &self.in_flight;
        if in_flight.count.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            in_flight.count.fetch_sub(1, Ordering::AcqRel);
            return refuse(
                frame.id,
                ErrorShape::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{MAX_IN_FLIGHT} requests of this connection are in flight; \
                         wait for their answers"
                    ),
                )
                .retry_after(100),
            );
        }
        let counted = InFlightGuard(Arc::clone(in_flight));
        // An update run is durable and reports through its record: it
        // finishes even if the connection that started it goes.
        let cancel = match request {
            Request::UpdateRun(_) => CancellationToken::new(),
            _ => self.cancel.clone(),
        };
        let (gw, caller, flags, outbox) = (
            self.gw.clone(),
            self.caller.clone(),
            self.flags.clone(),
            outbox.clone(),
        );
        let pending = gw.request_guard(caller.conn);
        let method = request.method();
        self.gw.requests().spawn(async move {
            let answer = async {
                let response = match methods::dispatch(&gw, &caller, &flags, request).await {
                    Ok(payload) => {
                        metrics().request(method.as_str(), "ok");
                        ResponseFrame::success(frame.id, payload)
                    }
                    Err(error) => {
                        metrics().request(method.as_str(), error.code.as_str());
                        ResponseFrame::failure(frame.id, error)
                    }
                };
                let _ = outbox.respond(response).await;
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                () = answer => {}
            }
            drop((pending, counted));
        });
        Ok(())
    }
}

/// Counts a request of this connection until its answer is queued.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Lets the writer flush what is queued (bounded), then ends it.
async fn finish(events: Events, outbox: Outbox, mut writer: tokio::task::JoinHandle<()>) {
    drop((events, outbox));
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}
