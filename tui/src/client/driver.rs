//! The task that owns one WebSocket: writes requests, routes responses to
//! their callers, forwards events, and records how the connection ended.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molt_protocol::ids::RequestId;
use molt_protocol::{ErrorShape, ResponseFrame, ServerFrame};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{CloseInfo, ClosedBy, GatewayEvent, Incoming, RequestError, Ws, code};

/// Events buffered for a slow reader before they are counted as lagged.
pub(super) const EVENT_BUFFER: usize = 1024;
/// How long to wait for the peer's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(super) enum Outgoing {
    Request {
        id: RequestId,
        text: String,
        reply: oneshot::Sender<Result<Value, RequestError>>,
    },
    Close,
}

type Reply = oneshot::Sender<Result<Value, RequestError>>;

pub(super) struct Driver {
    ws: Ws,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    events: mpsc::Sender<Incoming>,
    closed: watch::Sender<Option<CloseInfo>>,
    silence: Duration,
    pending: HashMap<RequestId, Reply>,
    lagged: u64,
    last_seq: Option<u64>,
}

impl Driver {
    pub(super) fn new(
        ws: Ws,
        rx: mpsc::UnboundedReceiver<Outgoing>,
        events: mpsc::Sender<Incoming>,
        closed: watch::Sender<Option<CloseInfo>>,
        silence: Duration,
    ) -> Self {
        Self {
            ws,
            rx,
            events,
            closed,
            silence,
            pending: HashMap::new(),
            lagged: 0,
            last_seq: None,
        }
    }

    pub(super) async fn run(mut self) {
        let close = self.serve().await;
        tracing::info!(%close, "gateway connection closed");
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(RequestError::Disconnected {
                close: Some(close.clone()),
            }));
        }
        let _ = self.closed.send(Some(close.clone()));
        // Best effort: a reader that stopped reading still sees the close
        // through `Events::recv` once this sender is dropped.
        let _ = self.events.try_send(Incoming::Closed(close));
    }

    async fn serve(&mut self) -> CloseInfo {
        let mut deadline = Instant::now() + self.silence;
        loop {
            tokio::select! {
                biased;
                message = self.ws.next() => {
                    deadline = Instant::now() + self.silence;
                    match message {
                        Some(Ok(Message::Text(text))) => self.on_text(&text),
                        Some(Ok(Message::Close(frame))) => {
                            let close = close_info_from(frame.as_ref(), ClosedBy::Server);
                            self.finish_close().await;
                            return close;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return CloseInfo::dropped(e.to_string()),
                        None => return CloseInfo::dropped("connection closed"),
                    }
                }
                outgoing = self.rx.recv() => match outgoing {
                    Some(Outgoing::Request { id, text, reply }) => {
                        if let Err(e) = self.ws.send(Message::text(text)).await {
                            let close = CloseInfo::dropped(format!("send failed: {e}"));
                            let _ = reply.send(Err(RequestError::Disconnected {
                                close: Some(close.clone()),
                            }));
                            return close;
                        }
                        // Callers that timed out dropped their receiver.
                        self.pending.retain(|_, r| !r.is_closed());
                        self.pending.insert(id, reply);
                    }
                    Some(Outgoing::Close) | None => {
                        return self.close(code::NORMAL, "client closing").await;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(silence = ?self.silence, "gateway silent; closing");
                    return self.close(code::TICK_TIMEOUT, "tick timeout").await;
                }
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        match ServerFrame::parse(text) {
            Ok(ServerFrame::Res(res)) => self.on_response(res),
            Ok(ServerFrame::Event(frame)) => {
                if let (Some(last), Some(seq)) = (self.last_seq, frame.seq)
                    && seq != last + 1
                {
                    tracing::warn!(last, seq, "event sequence gap");
                }
                self.last_seq = frame.seq.or(self.last_seq);
                let seq = frame.seq;
                let event = GatewayEvent::from_frame(frame);
                if let GatewayEvent::Other {
                    name,
                    problem: Some(problem),
                    ..
                } = &event
                {
                    tracing::warn!(%name, %problem, "event payload did not decode");
                }
                self.deliver(Incoming::Event { event, seq });
            }
            // A bad frame is the server's bug; dropping the session over it
            // would blind the operator, so log and go on.
            Err(e) => tracing::warn!(error = %e, "unparseable frame from gateway"),
        }
    }

    fn on_response(&mut self, res: ResponseFrame) {
        let Some(reply) = self.pending.remove(&res.id) else {
            tracing::debug!(id = %res.id, "response for no waiting request");
            return;
        };
        let result = if res.ok {
            Ok(res.payload.unwrap_or(Value::Null))
        } else {
            Err(RequestError::Gateway(res.error.unwrap_or_else(|| {
                ErrorShape::internal("error response without error")
            })))
        };
        let _ = reply.send(result);
    }

    /// Never blocks on a slow reader: excess events are counted and the
    /// reader learns how many it missed.
    fn deliver(&mut self, incoming: Incoming) {
        if self.lagged > 0 {
            match self.events.try_send(Incoming::Lagged(self.lagged)) {
                Ok(()) => self.lagged = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.lagged += 1;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(incoming) {
            self.lagged += 1;
        }
    }

    async fn close(&mut self, code: u16, reason: &str) -> CloseInfo {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        // A stuck socket must not hold up the caller's exit.
        let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
        self.finish_close().await;
        CloseInfo::new(code, reason, ClosedBy::Client)
    }

    /// Reads until the close handshake completes, bounded.
    async fn finish_close(&mut self) {
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
}

pub(super) fn close_info_from(frame: Option<&CloseFrame>, by: ClosedBy) -> CloseInfo {
    match frame {
        Some(frame) => CloseInfo::new(u16::from(frame.code), frame.reason.as_str(), by),
        // A close frame without a status code.
        None => CloseInfo::new(code::NO_STATUS, "", by),
    }
}
