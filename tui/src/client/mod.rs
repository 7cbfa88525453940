//! An async gateway client: handshake, correlated requests, an event stream
//! and a truthful close code. Used by the console's network task, by the
//! scriptable subcommands and by end-to-end tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use molt_console::client::{Client, ClientMode, ConnectOptions};
//! use molt_protocol::Method;
//! let options = ConnectOptions::new("ws://127.0.0.1:18789", Some("token".into()), ClientMode::Cli);
//! let (client, _events) = Client::connect(&options).await?;
//! let status = client.request(Method::Status, None).await?;
//! println!("{status}");
//! client.close().await;
//! # Ok(()) }
//! ```

mod driver;
mod error;
mod event;
pub mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molt_protocol::handshake::{
    ClientInfo, ConnectAuth, ConnectParams, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use molt_protocol::ids::RequestId;
use molt_protocol::{ClientFrame, Method, RequestFrame, Scope, ServerFrame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, Message};

pub use error::{CloseInfo, CloseKind, ClosedBy, ConnectError, RequestError, code};
pub use event::GatewayEvent;

use crate::peer::Hello;
use driver::{Driver, Outgoing};

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn transport::Conn>>;

/// The `client.id` molt sends in `connect`: one of OpenClaw's
/// `GATEWAY_CLIENT_IDS` (any other id is refused there; moltd takes any).
/// `gateway-client` with mode `backend` is the identity OpenClaw grants an
/// operator's scopes to on a direct loopback connection with the gateway
/// token and no device identity, in 2026.4.x as in 2026.9.x (checked
/// against both: `cli`/`cli` gets no scopes from 2026.4.26, and
/// `openclaw-tui` needs a device identity).
pub const CLIENT_ID: &str = "gateway-client";
/// The `client.mode` that goes with [`CLIENT_ID`].
pub const CLIENT_MODE: &str = "backend";

/// Which part of molt connects, for the gateway's logs (`displayName`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// The interactive console.
    Tui,
    /// A scriptable subcommand or a test.
    Cli,
}

impl ClientMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tui => "tui",
            Self::Cli => "cli",
        }
    }

    /// `client.displayName`: `molt console` or `molt cli`.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Tui => "molt console",
            Self::Cli => "molt cli",
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ws://` or `wss://`; used when there is no usable local socket.
    pub url: String,
    /// The gateway's local socket, tried first: it needs no token.
    pub local_socket: Option<PathBuf>,
    /// The SHA-256 fingerprint (64 lowercase hex digits) a `wss://`
    /// gateway's certificate must have.
    pub tls_pin: Option<String>,
    pub token: Option<String>,
    pub mode: ClientMode,
    /// Bounds TCP connect, upgrade, challenge and `hello-ok` together.
    pub connect_timeout: Duration,
    /// Default per-request timeout.
    pub request_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>, token: Option<String>, mode: ClientMode) -> Self {
        Self {
            url: url.into(),
            local_socket: None,
            tls_pin: None,
            token,
            mode,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
        }
    }

    /// The `connect` request params this client sends.
    pub fn connect_params(&self) -> ConnectParams {
        ConnectParams {
            min_protocol: MIN_PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client: ClientInfo {
                id: CLIENT_ID.to_owned(),
                display_name: Some(self.mode.display_name().to_owned()),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                platform: std::env::consts::OS.to_owned(),
                mode: CLIENT_MODE.to_owned(),
            },
            role: "operator".to_owned(),
            scopes: vec![Scope::Read.as_str().into(), Scope::Admin.as_str().into()],
            auth: ConnectAuth {
                token: self.token.clone(),
                password: None,
            },
            device: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("local_socket", &self.local_socket)
            .field("tls_pin", &self.tls_pin)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("mode", &self.mode)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A connected, authenticated gateway session. Cheap to clone; the socket
/// closes (code 1000) when the last clone is dropped or on [`Client::close`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Outgoing>,
    hello: Hello,
    url: String,
    request_timeout: Duration,
    next_id: AtomicU64,
    closed: watch::Receiver<Option<CloseInfo>>,
}

/// One item of the event stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Event {
        event: GatewayEvent,
        seq: Option<u64>,
    },
    /// This many events were dropped because the reader fell behind; state
    /// derived from events should be refreshed.
    Lagged(u64),
    /// The connection ended. Returned again on every later call.
    Closed(CloseInfo),
}

/// The events of one connection, ending with [`Incoming::Closed`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Incoming>,
    closed: watch::Receiver<Option<CloseInfo>>,
}

impl Events {
    pub async fn recv(&mut self) -> Incoming {
        match self.rx.recv().await {
            Some(incoming) => incoming,
            // The driver publishes the close before it drops the sender.
            None => Incoming::Closed(
                self.closed
                    .borrow()
                    .clone()
                    .unwrap_or_else(|| CloseInfo::dropped("connection task ended")),
            ),
        }
    }
}

impl Client {
    /// Connects, answers the challenge with `connect` and waits for
    /// `hello-ok`.
    pub async fn connect(options: &ConnectOptions) -> Result<(Client, Events), ConnectError> {
        let (ws, hello) = tokio::time::timeout(options.connect_timeout, handshake(options))
            .await
            .map_err(|_| ConnectError::Unreachable {
                url: options.url.clone(),
                reason: format!(
                    "no hello-ok within {}s",
                    options.connect_timeout.as_secs_f32()
                ),
            })??;
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::channel(driver::EVENT_BUFFER);
        let (closed_tx, closed_rx) = watch::channel(None);
        // Two silent tick intervals mean the server (or the path) is gone.
        let tick = hello
            .tick_interval_ms
            .unwrap_or(molt_protocol::handshake::TICK_INTERVAL_MS);
        let silence = Duration::from_millis(tick.max(1000) * 2) + Duration::from_secs(1);
        let driver = Driver::new(ws, rx, events_tx, closed_tx, silence);
        // Ends when the socket closes or every Client clone is gone.
        tokio::spawn(driver.run());
        let client = Client {
            inner: Arc::new(Inner {
                tx,
                hello,
                url: options.url.clone(),
                request_timeout: options.request_timeout,
                next_id: AtomicU64::new(1),
                closed: closed_rx.clone(),
            }),
        };
        Ok((
            client,
            Events {
                rx: events_rx,
                closed: closed_rx,
            },
        ))
    }

    /// The gateway's `hello-ok`, including its status snapshot.
    pub fn hello(&self) -> &Hello {
        &self.inner.hello
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The default per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.inner.closed.borrow().clone()
    }

    /// Sends a request and waits for its response, up to the default timeout.
    pub async fn request(
        &self,
        method: Method,
        params: Option<Value>,
    ) -> Result<Value, RequestError> {
        self.request_with_timeout(method, params, self.inner.request_timeout)
            .await
    }

    pub async fn request_with_timeout(
        &self,
        method: Method,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        self.call_named(method.as_str(), params, timeout).await
    }

    /// A request by method name: for methods of another gateway (OpenClaw
    /// 2026.9.x's `update.runs.get`) that moltd does not serve.
    pub async fn call_named(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let id = RequestId(
            self.inner
                .next_id
                .fetch_add(1, Ordering::Relaxed)
                .to_string(),
        );
        let text = ClientFrame::Req(RequestFrame {
            id: id.clone(),
            method: method.to_owned(),
            params,
        })
        .to_text();
        let (reply, answer) = oneshot::channel();
        let disconnected = || RequestError::Disconnected {
            close: self.close_info(),
        };
        self.inner
            .tx
            .send(Outgoing::Request { id, text, reply })
            .map_err(|_| disconnected())?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(disconnected()),
            Err(_) => Err(RequestError::Timeout {
                method: method.to_owned(),
                timeout,
            }),
        }
    }

    /// [`Client::request`] with typed params and result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
    ) -> Result<R, RequestError> {
        let params = serde_json::to_value(params).map_err(|e| RequestError::Decode {
            method: method.as_str().to_owned(),
            problem: e.to_string(),
        })?;
        let params = (!params.is_null()).then_some(params);
        let value = self.request(method, params).await?;
        molt_protocol::frame::decode(value).map_err(|problem| RequestError::Decode {
            method: method.as_str().to_owned(),
            problem,
        })
    }

    /// Closes with 1000 and waits until the connection is down.
    pub async fn close(self) -> CloseInfo {
        let mut closed = self.inner.closed.clone();
        let _ = self.inner.tx.send(Outgoing::Close);
        let result = closed.wait_for(Option::is_some).await.map(|c| c.clone());
        match result {
            Ok(Some(info)) => info,
            _ => CloseInfo::dropped("connection task ended"),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url)
            .field("server", &self.inner.hello.server)
            .finish_non_exhaustive()
    }
}

/// The request id of `connect`; later requests count up from 1.
const CONNECT_ID: &str = "connect";

async fn handshake(options: &ConnectOptions) -> Result<(Ws, Hello), ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        url: options.url.clone(),
        reason,
    };
    let local = match &options.local_socket {
        Some(path) => transport::open_local(path).await?,
        None => None,
    };
    let opened = match local {
        Some(opened) => opened,
        None => transport::open_tcp(&options.url, options.tls_pin.as_deref()).await?,
    };
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(opened.url.as_str(), opened.stream, None)
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(response)
                    if matches!(response.status().as_u16(), 401 | 403) =>
                {
                    ConnectError::AuthFailed {
                        message: format!("HTTP {} on upgrade", response.status()),
                    }
                }
                tungstenite::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    ConnectError::Refused {
                        url: options.url.clone(),
                    }
                }
                tungstenite::Error::Io(io) => unreachable(io.to_string()),
                other => unreachable(other.to_string()),
            })?;

    loop {
        match next_frame(&mut ws).await? {
            ServerFrame::Event(event) if event.event == "connect.challenge" => break,
            other => tracing::debug!(?other, "frame before connect.challenge ignored"),
        }
    }

    let params = serde_json::to_value(options.connect_params())
        .map_err(|e| ConnectError::Handshake(format!("cannot encode connect: {e}")))?;
    let frame = ClientFrame::Req(RequestFrame {
        id: RequestId::from(CONNECT_ID),
        method: Method::Connect.as_str().to_owned(),
        params: Some(params),
    });
    ws.send(Message::text(frame.to_text()))
        .await
        .map_err(|e| unreachable(format!("sending connect: {e}")))?;

    let response = loop {
        match next_frame(&mut ws).await? {
            ServerFrame::Res(res) if res.id.as_str() == CONNECT_ID => break res,
            other => tracing::debug!(?other, "frame before hello-ok ignored"),
        }
    };
    if !response.ok {
        let error = response
            .error
            .unwrap_or_else(|| molt_protocol::ErrorShape::internal("connect failed"));
        return Err(ConnectError::from_rejection(error));
    }
    let payload = response.payload.unwrap_or(Value::Null);
    let hello = Hello::from_payload(payload)
        .map_err(|e| ConnectError::Handshake(format!("unexpected hello-ok: {e}")))?;
    Ok((ws, hello))
}

/// The next protocol frame; pings and pongs are handled by tungstenite.
async fn next_frame(ws: &mut Ws) -> Result<ServerFrame, ConnectError> {
    loop {
        let message = match ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(ConnectError::Closed(CloseInfo::dropped(e.to_string()))),
            None => {
                return Err(ConnectError::Closed(CloseInfo::dropped(
                    "connection closed",
                )));
            }
        };
        match message {
            Message::Text(text) => {
                return ServerFrame::parse(&text)
                    .map_err(|e| ConnectError::Handshake(format!("bad frame from gateway: {e}")));
            }
            Message::Close(frame) => {
                let close = driver::close_info_from(frame.as_ref(), ClosedBy::Server);
                let reason = close.reason.to_lowercase();
                let auth = close.kind() == CloseKind::Refused
                    && (reason.contains("unauthorized") || reason.contains("auth"));
                return Err(if auth {
                    ConnectError::AuthFailed {
                        message: close.reason,
                    }
                } else {
                    ConnectError::Closed(close)
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_params_ask_for_operator_read_and_admin() {
        let options = ConnectOptions::new("ws://x", Some("t".into()), ClientMode::Tui);
        let params = options.connect_params();
        assert_eq!((params.min_protocol, params.max_protocol), (3, 4));
        // What OpenClaw accepts (GATEWAY_CLIENT_IDS / GATEWAY_CLIENT_MODES).
        assert_eq!(params.client.id, "gateway-client");
        assert_eq!(params.client.mode, "backend");
        assert!(molt_protocol::handshake::OPENCLAW_CLIENT_IDS.contains(&CLIENT_ID));
        assert!(molt_protocol::handshake::OPENCLAW_CLIENT_MODES.contains(&CLIENT_MODE));
        assert_eq!(params.client.display_name.as_deref(), Some("molt console"));
        assert_eq!(params.client.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(params.role, "operator");
        assert_eq!(params.scopes, ["operator.read", "operator.admin"]);
        assert_eq!(params.auth.token.as_deref(), Some("t"));
        assert!(!format!("{options:?}").contains("\"t\""));
    }
}
