//! The client library, the network task and the console loop against the
//! real `moltd` binary.

mod common;
mod support;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use molt_console::app::App;
use molt_console::client::{
    Client, ClientMode, CloseKind, ConnectError, ConnectOptions, Incoming, RequestError,
};
use molt_console::net::{self, Backoff, NetCommand, NetEvent, Purpose};
use molt_console::runtime::{LoopExit, NetLink, run_loop};
use molt_console::target::{self, Env, Overrides};
use molt_protocol::Method;
use molt_protocol::error::ErrorCode;
use molt_protocol::method::HealthResult;
use molt_protocol::status::StatusResult;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use support::{Daemon, stored_token};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn options(daemon: &Daemon, token: Option<String>) -> ConnectOptions {
    ConnectOptions::new(daemon.url(), token, ClientMode::Cli)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_handshake_requests_and_the_close_code_on_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let token = stored_token(&state);

    let (client, mut events) = Client::connect(&options(&daemon, Some(token)))
        .await
        .expect("connect");
    let hello = client.hello();
    assert_eq!(hello.protocol, Some(4));
    assert_eq!(
        hello.server.version.as_deref(),
        Some(daemon.version.as_str())
    );
    assert_eq!(hello.snapshot["pid"], daemon.pid);

    let status: StatusResult = client.call(Method::Status, &()).await.unwrap();
    assert_eq!(
        (status.pid, status.version.as_str()),
        (daemon.pid, daemon.version.as_str())
    );
    let health: HealthResult = client.call(Method::Health, &()).await.unwrap();
    assert!(health.ok);

    // A bad request is the gateway's typed error, and the session goes on.
    let error = client
        .request(Method::ConfigPatch, Some(json!({"raw": "{}"})))
        .await
        .unwrap_err();
    let shape = error.gateway_error().expect("a gateway error");
    assert_eq!(shape.code, ErrorCode::InvalidRequest);
    assert!(shape.message.contains("baseHash"), "{}", shape.message);
    assert!(client.request(Method::Health, None).await.is_ok());

    daemon.terminate();
    let close = within("the close", async {
        loop {
            if let Incoming::Closed(close) = events.recv().await {
                break close;
            }
        }
    })
    .await;
    assert_eq!(close.kind(), CloseKind::Stopping, "{close}");
    assert_eq!(close.code, 1001);
    // Later requests fail fast with the reason, never hang.
    match client.request(Method::Health, None).await {
        Err(RequestError::Disconnected { close: Some(c) }) => assert_eq!(c.code, 1001),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let error = Client::connect(&options(&daemon, Some("wrong".into())))
        .await
        .unwrap_err();
    assert!(error.is_auth_failure(), "{error:?}");
    let error = Client::connect(&options(&daemon, None)).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::AuthFailed { .. }),
        "{error:?}"
    );
}

struct NetTask {
    commands: mpsc::UnboundedSender<NetCommand>,
    events: mpsc::Receiver<NetEvent>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl NetTask {
    /// Runs the network task with the console's discovery on `state`.
    fn start(state: &Path, token: Option<String>) -> NetTask {
        let overrides = Overrides {
            token,
            state_dir: Some(state.to_owned()),
            ..Overrides::default()
        };
        let resolve: net::Resolve = Box::new(move || {
            target::discover(&overrides, &Env::default())
                .map(|t| ConnectOptions::new(t.url, t.token, ClientMode::Tui))
                .map_err(|e| e.to_string())
        });
        let mut backoff = Backoff::default();
        backoff.initial = Duration::from_millis(20);
        backoff.max = Duration::from_millis(200);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(net::run(
            resolve,
            backoff,
            command_rx,
            event_tx,
            cancel.clone(),
        ));
        NetTask {
            commands,
            events,
            cancel,
            task,
        }
    }

    async fn next(&mut self) -> NetEvent {
        within("a network event", self.events.recv())
            .await
            .expect("network task alive")
    }

    /// The next event that is not a gateway event (ticks, shutdown...).
    async fn next_session_event(&mut self) -> NetEvent {
        loop {
            match self.next().await {
                NetEvent::Gateway(_) => continue,
                other => return other,
            }
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        within("the network task to stop", self.task).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_task_reconnects_to_a_restarted_daemon_on_its_new_port() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let first = Daemon::start(&state);
    let mut net = NetTask::start(&state, None);

    assert!(matches!(
        net.next().await,
        NetEvent::Connecting { attempt: 0, url } if url == first.url()
    ));
    match net.next().await {
        NetEvent::Connected {
            hello,
            handoff_gap,
            outage,
        } => {
            assert_eq!(hello.snapshot["pid"], first.pid);
            assert_eq!(handoff_gap, None);
            assert_eq!(outage, None, "the first session follows no outage");
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    net.commands
        .send(NetCommand::Request {
            purpose: Purpose::Status,
            method: Method::Status,
            params: None,
        })
        .unwrap();
    match net.next_session_event().await {
        NetEvent::Response {
            purpose: Purpose::Status,
            result: Ok(value),
        } => assert_eq!(value["pid"], first.pid),
        other => panic!("expected the status, got {other:?}"),
    }

    first.terminate();
    match net.next_session_event().await {
        NetEvent::Closed(close) => assert_eq!(close.code, 1001),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(matches!(
        net.next_session_event().await,
        NetEvent::Retrying {
            attempt: 1,
            handoff: false,
            ..
        }
    ));
    drop(first);

    // A new daemon on the same state dir, on another free port: found
    // again through its gateway.lock.
    let second = Daemon::start(&state);
    let hello = within("the reconnect", async {
        loop {
            if let NetEvent::Connected { hello, .. } = net.next().await {
                break hello;
            }
        }
    })
    .await;
    assert_eq!(hello.snapshot["pid"], second.pid);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_task_moves_at_shutdown_and_loses_no_request_across_handoffs() {
    use molt_e2e::moltd::Ready;
    use molt_e2e::restarts::{client, force_restart};
    const HANDOFFS: usize = 10;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start_with(&state, json!({"gateway": {"reload": {"cooldownMs": 0}}}));
    let mut net = NetTask::start(&state, None);
    let status = || NetCommand::Request {
        purpose: Purpose::Status,
        method: Method::Status,
        params: None,
    };

    // One status request always outstanding, the next sent the moment
    // its predecessor is answered, through every handoff.
    let (mut pids, mut answered) = (Vec::new(), 0);
    while pids.len() <= HANDOFFS {
        match net.next().await {
            NetEvent::Connected { hello, .. } => {
                let pid = hello.snapshot["pid"].as_u64().unwrap() as u32;
                pids.push(pid);
                if pids.len() == 1 {
                    net.commands.send(status()).unwrap();
                }
                if pids.len() <= HANDOFFS {
                    let ready = Ready {
                        addr: daemon.addr.clone(),
                        version: daemon.version.clone(),
                        pid,
                    };
                    force_restart(&mut client(&ready).await).await;
                }
            }
            NetEvent::Response { purpose, result } => {
                assert_eq!(purpose, Purpose::Status);
                if let Err(error) = result {
                    panic!("a status request was lost at a handoff: {error}");
                }
                answered += 1;
                net.commands.send(status()).unwrap();
            }
            _ => {}
        }
    }
    pids.dedup();
    assert_eq!(
        pids.len(),
        HANDOFFS + 1,
        "a new process each time: {pids:?}"
    );
    assert!(answered > 0);
    net.stop().await;
}

#[tokio::test]
async fn network_task_does_not_retry_a_refused_token_until_told() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _daemon = Daemon::start(&state);
    let mut net = NetTask::start(&state, Some("wrong".into()));

    assert!(matches!(
        net.next().await,
        NetEvent::Connecting { attempt: 0, .. }
    ));
    assert!(matches!(net.next().await, NetEvent::AuthFailed { .. }));
    // Requests meanwhile are answered, not queued forever.
    net.commands
        .send(NetCommand::Request {
            purpose: Purpose::Status,
            method: Method::Status,
            params: None,
        })
        .unwrap();
    assert!(matches!(
        net.next().await,
        NetEvent::Response {
            result: Err(RequestError::Disconnected { .. }),
            ..
        }
    ));
    // Nothing else happened in between: no retry loop. Only the operator's
    // retry starts the next attempt.
    net.commands.send(NetCommand::ReconnectNow).unwrap();
    assert!(matches!(
        net.next().await,
        NetEvent::Connecting { attempt: 0, .. }
    ));
    assert!(matches!(net.next().await, NetEvent::AuthFailed { .. }));
    net.stop().await;
}

/// The whole console: real daemon, real network task, real loop; only the
/// terminal is a `TestBackend` and the keys are synthetic.
#[tokio::test]
async fn console_shows_the_running_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let daemon = Daemon::start(&state);
    let mut net = NetTask::start(&state, None);

    // Tee the network events so the test knows when the status arrived.
    let (loop_tx, loop_rx) = mpsc::channel(64);
    let probe = loop_tx.clone();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let mut from_net = std::mem::replace(&mut net.events, mpsc::channel(1).1);
    let tee = tokio::spawn(async move {
        while let Some(event) = from_net.recv().await {
            let status = matches!(
                &event,
                NetEvent::Response {
                    purpose: Purpose::Status,
                    result: Ok(_)
                }
            );
            if loop_tx.send(event).await.is_err() {
                break;
            }
            if status {
                let _ = seen_tx.send(());
            }
        }
    });
    let mut link = NetLink {
        events: loop_rx,
        commands: net.commands.clone(),
    };
    let (key_tx, key_rx) = mpsc::unbounded_channel::<std::io::Result<TermEvent>>();
    let keys = Box::pin(futures_util::stream::unfold(key_rx, |mut rx| async move {
        rx.recv().await.map(|k| (k, rx))
    }));

    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new("", false, Instant::now());
    let driver = async {
        within("the status", seen_rx.recv()).await;
        // Single-threaded runtime: once the loop drained its channel it has
        // also drawn, because drawing happens before its next await.
        while probe.capacity() < probe.max_capacity() {
            tokio::task::yield_now().await;
        }
        key_tx
            .send(Ok(TermEvent::Key(KeyEvent::from(KeyCode::Char('q')))))
            .unwrap();
    };
    let (exit, ()) = tokio::join!(
        run_loop(
            &mut terminal,
            &mut app,
            keys,
            &mut link,
            std::future::pending(),
            Instant::now,
        ),
        driver
    );
    assert_eq!(exit.unwrap(), LoopExit::Quit);
    let screen = terminal.backend().to_string();
    assert!(screen.contains(&daemon.url()), "{screen}");
    assert!(screen.contains("connected"), "{screen}");
    assert!(
        screen.contains(&format!("pid          {},", daemon.pid)),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("moltd {}", daemon.version)),
        "{screen}"
    );
    tee.abort();
    net.stop().await;
}
