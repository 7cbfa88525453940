//! One WebSocket connection: challenge → connect → hello-ok, then requests,
//! events with a per-connection `seq`, ticks and pings until it closes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molt_protocol::close;
use molt_protocol::error::ErrorShape;
use molt_protocol::event::{EventName, LogsLine, Tick};
use molt_protocol::frame::{
    ClientFrame, EventFrame, FrameError, RequestFrame, ResponseFrame, ServerFrame, decode,
};
use molt_protocol::handshake::{
    ConnectChallenge, ConnectParams, HANDSHAKE_TIMEOUT_MS, MAX_PAYLOAD, PRE_AUTH_MAX_PAYLOAD,
    TICK_INTERVAL_MS, negotiate_protocol,
};
use molt_protocol::ids::RequestId;
use molt_protocol::{Request, Scope};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use crate::budget::{Budgeted, ReadBudget};
use crate::gateway::{Caller, Gateway};
use crate::methods::{self, SessionFlags};

/// What an unauthenticated peer may make us read: the HTTP upgrade plus one
/// pre-auth frame.
const PRE_AUTH_READ_BUDGET: u64 = (PRE_AUTH_MAX_PAYLOAD + 16 * 1024) as u64;
/// Frames queued for a slow client before it is dropped.
const OUTBOUND_CAPACITY: usize = 1024;
/// A client silent for this many tick intervals is gone.
const SILENT_TICKS: u32 = 3;

type Ws = WebSocketStream<Budgeted<TcpStream>>;
type Source = futures_util::stream::SplitStream<Ws>;

enum Outbound {
    Text(String),
    Ping,
    Close(u16, String),
}

/// Sends frames through the writer task and numbers events.
struct Outbox {
    tx: mpsc::Sender<Outbound>,
    seq: u64,
}

impl Outbox {
    /// Queues an event; false when the client is too slow to keep up.
    fn event(&mut self, event: EventName, payload: impl Serialize) -> bool {
        self.seq += 1;
        let frame = ServerFrame::Event(EventFrame {
            event: event.as_str().to_owned(),
            payload: serde_json::to_value(payload).ok(),
            seq: Some(self.seq),
        });
        self.tx.try_send(Outbound::Text(frame.to_text())).is_ok()
    }

    async fn respond(&self, response: ResponseFrame) {
        let _ = self
            .tx
            .send(Outbound::Text(ServerFrame::Res(response).to_text()))
            .await;
    }

    async fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Outbound::Close(code, reason.to_owned())).await;
    }
}

/// Why the handshake ended the connection.
struct Rejected {
    code: u16,
    reason: &'static str,
    response: Option<ResponseFrame>,
}

impl Rejected {
    fn close(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            response: None,
        }
    }

    fn answer(code: u16, reason: &'static str, id: RequestId, error: ErrorShape) -> Self {
        Self {
            code,
            reason,
            response: Some(ResponseFrame::failure(id, error)),
        }
    }
}

struct Granted {
    protocol: u32,
    scopes: Vec<Scope>,
    request_id: RequestId,
}

pub async fn serve_connection(stream: TcpStream, peer: SocketAddr, gw: Gateway) {
    let _counted = gw.connection_guard();
    let budget = ReadBudget::new(PRE_AUTH_READ_BUDGET);
    let deadline = Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    // tungstenite's default 128 KiB read buffer per connection (zeroed on
    // every read) dominated memory with many clients; 8 KiB grows on demand.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD));
    let accept = tokio_tungstenite::accept_async_with_config(
        Budgeted::new(stream, budget.clone()),
        Some(config),
    );
    // A connection not yet authenticated has no work to drain: a stop ends
    // it at once instead of holding the old process for a timeout.
    let stopping = gw.stopping().clone();
    let upgraded = tokio::select! {
        upgraded = timeout_at(deadline, accept) => upgraded,
        () = stopping.cancelled() => return,
    };
    let ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "websocket upgrade timed out");
            return;
        }
    };
    let (sink, mut source) = ws.split();
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let writer = tokio::spawn(write_loop(sink, rx));
    let mut out = Outbox { tx, seq: 0 };
    let (conn, conn_id) = gw.next_conn();

    out.event(
        EventName::ConnectChallenge,
        ConnectChallenge {
            nonce: nonce(),
            ts: crate::gateway::unix_ms(),
        },
    );
    let handshaken = tokio::select! {
        handshaken = timeout_at(deadline, handshake(&mut source, &gw)) => handshaken,
        () = stopping.cancelled() => {
            out.close(gw.close_code(), "gateway stopping").await;
            finish(out, writer).await;
            return;
        }
    };
    let granted = match handshaken {
        Ok(Ok(granted)) => granted,
        Ok(Err(rejected)) => {
            tracing::info!(%peer, reason = rejected.reason, "connection refused at handshake");
            if let Some(response) = rejected.response {
                out.respond(response).await;
            }
            out.close(rejected.code, rejected.reason).await;
            finish(out, writer).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            out.close(close::POLICY, "handshake timeout").await;
            finish(out, writer).await;
            return;
        }
    };
    budget.lift();
    let caller = Caller {
        conn,
        conn_id: conn_id.clone(),
        scopes: granted.scopes.clone(),
    };
    let hello = gw.hello(granted.protocol, conn_id.clone(), granted.scopes);
    out.respond(ResponseFrame::success(
        granted.request_id,
        serde_json::to_value(hello).unwrap_or_default(),
    ))
    .await;
    tracing::debug!(%peer, %conn_id, protocol = granted.protocol, "client connected");

    let close = serve_authenticated(&mut source, &mut out, &gw, &caller).await;
    if let Some((code, reason)) = close {
        out.close(code, &reason).await;
    }
    finish(out, writer).await;
    tracing::debug!(%peer, %conn_id, "client disconnected");
}

/// Reads the first request, which must be a valid `connect`.
async fn handshake(source: &mut Source, gw: &Gateway) -> Result<Granted, Rejected> {
    let text = loop {
        match source.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err(Rejected::close(
                    close::UNSUPPORTED_DATA,
                    "binary frames are not supported",
                ));
            }
            Some(Err(WsError::Capacity(_))) => {
                return Err(Rejected::close(close::TOO_BIG, "frame too large"));
            }
            // The read budget ran out: more than one pre-auth frame's worth.
            Some(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Rejected::close(
                    close::TOO_BIG,
                    "frame too large before connect",
                ));
            }
            _ => return Err(Rejected::close(close::NORMAL, "closed before connect")),
        }
    };
    if text.len() > PRE_AUTH_MAX_PAYLOAD {
        return Err(Rejected::close(
            close::TOO_BIG,
            "frame too large before connect",
        ));
    }
    let frame = ClientFrame::parse(&text).map_err(|e| {
        Rejected::answer(
            close::POLICY,
            "invalid handshake",
            RequestId::from(""),
            frame_error(&e),
        )
    })?;
    let id = frame.id.clone();
    let reject = |code, reason, error| Rejected::answer(code, reason, id.clone(), error);
    if frame.method != "connect" {
        return Err(reject(
            close::POLICY,
            "invalid handshake",
            ErrorShape::invalid_request(format!(
                "the first request must be connect, got {}",
                frame.method
            )),
        ));
    }
    let params: ConnectParams = decode(frame.params.clone().unwrap_or_default()).map_err(|e| {
        reject(
            close::POLICY,
            "invalid handshake",
            ErrorShape::invalid_request(format!("invalid connect params: {e}")),
        )
    })?;
    let protocol = negotiate_protocol(params.min_protocol, params.max_protocol).map_err(|e| {
        reject(
            close::PROTOCOL_ERROR,
            "protocol mismatch",
            ErrorShape::invalid_request(e.to_string())
                .with_details(json!({ "expectedProtocol": e.expected_protocol() })),
        )
    })?;
    if params.role != "operator" {
        return Err(reject(
            close::POLICY,
            "unsupported role",
            ErrorShape::invalid_request(format!(
                "role {} is not supported: molt serves operators",
                params.role
            )),
        ));
    }
    if !gw.auth().accepts(params.auth.token.as_deref()) {
        return Err(reject(
            close::POLICY,
            "unauthorized",
            ErrorShape::invalid_request("unauthorized: gateway token missing or wrong")
                .with_details(json!({ "code": "AUTH_FAILED" })),
        ));
    }
    let mut scopes: Vec<Scope> = params
        .scopes
        .iter()
        .filter_map(|s| Scope::from_wire(s))
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(Scope::Read);
    }
    Ok(Granted {
        protocol,
        scopes,
        request_id: id,
    })
}

/// Serves requests and forwards events until the client leaves or the
/// gateway stops. Returns the close frame to send, if any.
async fn serve_authenticated(
    source: &mut Source,
    out: &mut Outbox,
    gw: &Gateway,
    caller: &Caller,
) -> Option<(u16, String)> {
    let flags = SessionFlags::default();
    let mut events = gw.subscribe();
    let mut log_lines = gw.logs().subscribe();
    let tick_every = Duration::from_millis(TICK_INTERVAL_MS);
    let mut ticks = tokio::time::interval_at(Instant::now() + tick_every, tick_every);
    let mut last_heard = Instant::now();
    let stop = gw.sessions_stop().clone();

    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                // Deliver what was broadcast before the stop (the `shutdown`
                // event above all) before closing.
                while let Ok(broadcast) = events.try_recv() {
                    out.event(broadcast.event, &broadcast.payload);
                }
                return Some((gw.close_code(), "gateway stopping".to_owned()));
            }
            message = source.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => handle_text(&text, out, gw, caller, &flags),
                    Some(Ok(Message::Binary(_))) => {
                        return Some((close::UNSUPPORTED_DATA, "binary frames are not supported".to_owned()));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        return Some((close::TOO_BIG, "frame too large".to_owned()));
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                }
            }
            event = events.recv() => match event {
                Ok(broadcast) => {
                    if !out.event(broadcast.event, &broadcast.payload) {
                        return Some((close::POLICY, "slow consumer".to_owned()));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(conn_id = %caller.conn_id, missed, "session missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            // Always polled: a guard here would not be re-checked when a
            // handler turns following on.
            line = log_lines.recv() => {
                if let Ok(line) = line
                    && flags.follow_logs.load(Ordering::Relaxed)
                    && !out.event(EventName::LogsLine, LogsLine { line })
                {
                    return Some((close::POLICY, "slow consumer".to_owned()));
                }
            }
            _ = ticks.tick() => {
                if last_heard.elapsed() > tick_every * SILENT_TICKS {
                    return Some((close::GOING_AWAY, "client silent".to_owned()));
                }
                if !out.event(EventName::Tick, Tick { ts: crate::gateway::unix_ms() }) {
                    return Some((close::POLICY, "slow consumer".to_owned()));
                }
                let _ = out.tx.try_send(Outbound::Ping);
            }
        }
    }
}

fn handle_text(text: &str, out: &Outbox, gw: &Gateway, caller: &Caller, flags: &SessionFlags) {
    let frame: RequestFrame = match ClientFrame::parse(text) {
        Ok(frame) => frame,
        Err(e) => {
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(RequestId::from))
                .unwrap_or_else(|| RequestId::from(""));
            respond_later(out, ResponseFrame::failure(id, frame_error(&e)));
            return;
        }
    };
    let request = match Request::from_frame(&frame) {
        Ok(request) => request,
        Err(error) => {
            respond_later(out, ResponseFrame::failure(frame.id, error));
            return;
        }
    };
    let (gw, caller, flags, tx) = (gw.clone(), caller.clone(), flags.clone(), out.tx.clone());
    let guard = gw.request_guard(caller.conn);
    gw.clone().requests().spawn(async move {
        let _guard = guard;
        let response = match methods::dispatch(&gw, &caller, &flags, request).await {
            Ok(payload) => ResponseFrame::success(frame.id, payload),
            Err(error) => ResponseFrame::failure(frame.id, error),
        };
        let _ = tx
            .send(Outbound::Text(ServerFrame::Res(response).to_text()))
            .await;
    });
}

fn respond_later(out: &Outbox, response: ResponseFrame) {
    let tx = out.tx.clone();
    let text = ServerFrame::Res(response).to_text();
    // try_send keeps the read loop non-blocking; a full queue means a client
    // too slow for its own errors, which the event path will drop.
    let _ = tx.try_send(Outbound::Text(text));
}

fn frame_error(e: &FrameError) -> ErrorShape {
    ErrorShape::invalid_request(e.to_string())
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Outbound>,
) {
    while let Some(item) = rx.recv().await {
        let result = match item {
            Outbound::Text(text) => sink.send(Message::text(text)).await,
            Outbound::Ping => sink.send(Message::Ping(Default::default())).await,
            Outbound::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        };
        if result.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Lets the writer flush what is queued (bounded), then ends it.
async fn finish(out: Outbox, mut writer: tokio::task::JoinHandle<()>) {
    drop(out);
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
