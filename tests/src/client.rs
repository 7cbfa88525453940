//! A raw WebSocket client of the gateway protocol that can also send what
//! a good client never would.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molt_protocol::frame::{ResponseFrame, ServerFrame};
use molt_protocol::handshake::HelloOk;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The token test configs set (see [`crate::moltd::write_config`]).
pub const TOKEN: &str = "test-token-0123456789-abcdef";
/// Bounds every wait so a broken server fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events seen while waiting for responses.
    pub events: Vec<(String, Value, Option<u64>)>,
    /// Every event `seq` seen, in arrival order.
    pub seqs: Vec<u64>,
}

impl Client {
    /// Opens the socket and reads the challenge.
    pub async fn open(url: &str) -> Self {
        Self::try_open(url).await.expect("ws connects")
    }

    /// Like [`Client::open`], `None` when the server drops the connection
    /// before the challenge (a stopping process does).
    pub async fn try_open(url: &str) -> Option<Self> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        Self::opened(ws).await
    }

    /// Opens the socket as a browser page would, with an `Origin` header:
    /// `Err` with the HTTP status when the server refuses the upgrade.
    pub async fn open_from_origin(url: &str, origin: &str) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a ws url");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("a header value"));
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("the upgrade is answered in time")
        {
            Ok((ws, _)) => Ok(Self::opened(ws).await.expect("challenge")),
            Err(Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("ws connect failed: {e}"),
        }
    }

    /// Opens the WebSocket over a TCP connection made earlier (which may
    /// have waited in the listen queue) and reads the challenge.
    pub async fn open_stream(url: &str, stream: std::net::TcpStream) -> Self {
        stream.set_nonblocking(true).unwrap();
        let stream = MaybeTlsStream::Plain(TcpStream::from_std(stream).unwrap());
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("ws handshake in time")
            .expect("ws connects");
        Self::opened(ws).await.expect("challenge")
    }

    async fn opened(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<Self> {
        let mut client = Self {
            ws,
            next_id: 0,
            events: Vec::new(),
            seqs: Vec::new(),
        };
        match client.frame().await? {
            ServerFrame::Event(e) => {
                assert_eq!(e.event, "connect.challenge");
                assert!(e.payload.unwrap()["nonce"].as_str().unwrap().len() >= 16);
            }
            other => panic!("expected challenge, got {other:?}"),
        }
        Some(client)
    }

    /// Sends `connect`; `None` if the server closes instead of answering.
    pub async fn try_connect(&mut self, token: &str, scopes: &[&str]) -> Option<HelloOk> {
        let id = self
            .send_request("connect", Self::connect_params(token, scopes))
            .await;
        loop {
            match self.frame().await? {
                ServerFrame::Res(res) if res.id.as_str() == id => {
                    return Some(res.into_result().expect("hello-ok"));
                }
                ServerFrame::Res(res) => panic!("unexpected response {res:?}"),
                ServerFrame::Event(_) => {}
            }
        }
    }

    pub fn connect_params(token: &str, scopes: &[&str]) -> Value {
        json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": {"id": "test", "version": "0", "platform": "linux", "mode": "test"},
            "role": "operator", "scopes": scopes, "auth": {"token": token}
        })
    }

    pub async fn connect(&mut self, token: &str, scopes: &[&str]) -> HelloOk {
        let res = self
            .request("connect", Self::connect_params(token, scopes))
            .await;
        res.into_result().expect("hello-ok")
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    pub async fn send_request(&mut self, method: &str, params: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.send_text(frame.to_string()).await;
        id
    }

    /// Like [`Client::send_request`], `None` when the connection is gone.
    pub async fn try_send_request(&mut self, method: &str, params: Value) -> Option<String> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.ws.send(Message::text(frame.to_string())).await.ok()?;
        Some(id)
    }

    pub async fn request(&mut self, method: &str, params: Value) -> ResponseFrame {
        let id = self.send_request(method, params).await;
        self.response(&id).await
    }

    /// The response with this id; events on the way are kept.
    pub async fn response(&mut self, id: &str) -> ResponseFrame {
        self.response_within(id, WAIT).await
    }

    /// [`Client::response`] for a request the server may work on without
    /// a frame for longer than [`WAIT`] (an `update.run` whose package
    /// manager runs): `wait` bounds each silence instead.
    pub async fn response_within(&mut self, id: &str, wait: Duration) -> ResponseFrame {
        loop {
            match self.frame_within(wait).await {
                Some(ServerFrame::Res(res)) if res.id.as_str() == id => return res,
                Some(ServerFrame::Res(res)) => panic!("unexpected response {res:?}"),
                Some(ServerFrame::Event(e)) => {
                    self.events
                        .push((e.event, e.payload.unwrap_or_default(), e.seq))
                }
                None => panic!("closed while waiting for response {id}"),
            }
        }
    }

    /// The response with this id, or `None` if the connection closes
    /// first; events on the way are kept. `wait` bounds each frame.
    pub async fn try_response(&mut self, id: &str, wait: Duration) -> Option<ResponseFrame> {
        loop {
            match self.frame_within(wait).await? {
                ServerFrame::Res(res) if res.id.as_str() == id => return Some(res),
                ServerFrame::Res(res) => panic!("unexpected response {res:?}"),
                ServerFrame::Event(e) => {
                    self.events
                        .push((e.event, e.payload.unwrap_or_default(), e.seq))
                }
            }
        }
    }

    /// Whether an event with this name has been seen (and kept).
    pub fn has_event(&self, name: &str) -> bool {
        self.events.iter().any(|(n, _, _)| n == name)
    }

    /// The next event with this name.
    pub async fn event(&mut self, name: &str) -> Value {
        self.event_within(name, WAIT).await
    }

    /// [`Client::event`], with `wait` bounding each silence (see
    /// [`Client::response_within`]).
    pub async fn event_within(&mut self, name: &str, wait: Duration) -> Value {
        if let Some(pos) = self.events.iter().position(|(n, _, _)| n == name) {
            return self.events.remove(pos).1;
        }
        loop {
            match self.frame_within(wait).await {
                Some(ServerFrame::Event(e)) if e.event == name => {
                    return e.payload.unwrap_or_default();
                }
                Some(ServerFrame::Event(e)) => {
                    self.events
                        .push((e.event, e.payload.unwrap_or_default(), e.seq))
                }
                Some(other) => panic!("unexpected frame {other:?}"),
                None => panic!("closed while waiting for event {name}"),
            }
        }
    }

    /// The next server frame, or None once closed.
    pub async fn frame(&mut self) -> Option<ServerFrame> {
        self.frame_within(WAIT).await
    }

    async fn frame_within(&mut self, wait: Duration) -> Option<ServerFrame> {
        loop {
            let message = tokio::time::timeout(wait, self.ws.next())
                .await
                .expect("server answers in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame = ServerFrame::parse(&text).expect("server frames parse");
                    if let ServerFrame::Event(e) = &frame {
                        self.seqs.extend(e.seq);
                    }
                    return Some(frame);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Reads until the server closes; the close code, if one was sent.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server closes in time");
            match message {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ServerFrame::Event(e)) = ServerFrame::parse(&text) {
                        self.events
                            .push((e.event, e.payload.unwrap_or_default(), e.seq));
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}
