//! A minimal operator client: TCP with Nagle off, the WebSocket upgrade,
//! the challenge/connect handshake, then sequential requests. Events
//! (ticks) are skipped, or collected until the server closes. Every wait is
//! bounded so a hung daemon fails the run instead of hanging it.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use molt_protocol::frame::ServerFrame;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

pub struct Client {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// The pid that answered the handshake (hello-ok `snapshot.pid`).
    pub pid: u64,
}

/// How the server ended a connection.
#[derive(Debug)]
pub struct Closed {
    /// The close frame's code; `None` when the connection just ended.
    pub code: Option<u16>,
    /// Events received before the close, in order.
    pub events: Vec<String>,
}

impl Client {
    /// Connects to `addr` (`host:port`) and completes the handshake with
    /// read and admin scopes.
    pub async fn connect(addr: &str, token: &str) -> Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .context("WebSocket upgrade")?;
        let mut client = Self {
            ws,
            next_id: 0,
            pid: 0,
        };
        match client.frame().await? {
            ServerFrame::Event(e) if e.event == "connect.challenge" => {}
            other => bail!("expected connect.challenge, got {other:?}"),
        }
        let hello = client
            .request(
                "connect",
                json!({
                    "minProtocol": 3, "maxProtocol": 4,
                    "client": {"id": "bench", "version": "0", "platform": "linux", "mode": "bench"},
                    "role": "operator",
                    "scopes": ["operator.read", "operator.admin"],
                    "auth": {"token": token},
                }),
            )
            .await
            .context("connect handshake")?;
        if hello["type"] != "hello-ok" {
            bail!("expected hello-ok, got {hello}");
        }
        client.pid = hello["snapshot"]["pid"].as_u64().unwrap_or_default();
        Ok(client)
    }

    /// Sends one request and waits for its response; the payload, or the
    /// server's error as an error.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .with_context(|| format!("sending {method}"))?;
        loop {
            match self.frame().await? {
                ServerFrame::Res(res) if res.id.as_str() == id => {
                    return match (res.ok, res.payload, res.error) {
                        (true, payload, _) => Ok(payload.unwrap_or_default()),
                        (false, _, error) => Err(anyhow!("{method} failed: {error:?}")),
                    };
                }
                ServerFrame::Res(res) => bail!("response to {} while waiting for {id}", res.id),
                ServerFrame::Event(_) => continue,
            }
        }
    }

    /// Reads until the server closes, noting the events on the way.
    pub async fn closed(&mut self) -> Result<Closed> {
        let mut events = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .map_err(|_| anyhow!("moltd did not close within {WAIT:?}"))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ServerFrame::Event(e)) = ServerFrame::parse(&text) {
                        events.push(e.event);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    return Ok(Closed { code, events });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading from moltd"),
                None => return Ok(Closed { code: None, events }),
            }
        }
    }

    async fn frame(&mut self) -> Result<ServerFrame> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame from moltd within {WAIT:?}"))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return ServerFrame::parse(&text).context("parsing a server frame");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(other)) => bail!("unexpected message {other:?}"),
                Some(Err(e)) => return Err(e).context("reading from moltd"),
                None => bail!("moltd closed the connection"),
            }
        }
    }
}
