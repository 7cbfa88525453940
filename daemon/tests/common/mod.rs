//! Test fixtures: a real gateway on 127.0.0.1:0 in a temp state dir, and a
//! raw WebSocket client that can also send what a good client never would.

#![allow(dead_code)]

pub mod moltd;
pub mod restarts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use molt_daemon::gateway::Gateway;
use molt_daemon::logging::LogHub;
use molt_daemon::start::{Launch, Options, prepare};
use molt_protocol::frame::{ResponseFrame, ServerFrame};
use molt_protocol::handshake::HelloOk;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-token-0123456789";
/// Bounds every wait so a broken server fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestGateway {
    pub dir: TempDir,
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub logs: LogHub,
    task: JoinHandle<()>,
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with_config(json!({ "gateway": { "auth": { "token": TOKEN } } })).await
    }

    pub async fn start_with_config(config: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("openclaw.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let options = Options {
            port: Some(0),
            state_dir: Some(dir.path().to_owned()),
            ..Options::default()
        };
        let logs = LogHub::default();
        let launch = Launch {
            process_env: HashMap::new(),
            logs: logs.clone(),
            ..Launch::default()
        };
        let prepared = prepare(&options, launch).await.expect("gateway starts");
        let addr = prepared.addr();
        let gateway = prepared.gateway().clone();
        let task = tokio::spawn(prepared.serve(std::future::pending()));
        Self {
            dir,
            addr,
            gateway,
            logs,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub async fn client(&self) -> Client {
        let mut client = Client::open(&self.url()).await;
        client
            .connect(TOKEN, &["operator.read", "operator.admin"])
            .await;
        client
    }

    /// Stops like SIGTERM and waits for the server to finish.
    pub async fn stop(self) {
        self.gateway.stop(molt_daemon::gateway::StopReason::stop());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("server stops in time")
            .unwrap();
    }
}

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

    pub async fn request(&mut self, method: &str, params: Value) -> ResponseFrame {
        let id = self.send_request(method, params).await;
        self.response(&id).await
    }

    /// The response with this id; events on the way are kept.
    pub async fn response(&mut self, id: &str) -> ResponseFrame {
        loop {
            match self.frame().await {
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

    /// The next event with this name.
    pub async fn event(&mut self, name: &str) -> Value {
        if let Some(pos) = self.events.iter().position(|(n, _, _)| n == name) {
            return self.events.remove(pos).1;
        }
        loop {
            match self.frame().await {
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
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
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
