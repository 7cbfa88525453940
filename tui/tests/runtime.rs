//! The real main loop, driven by synthetic keys into a `TestBackend`, with
//! the network side played by channels.

mod common;

use std::io;
use std::time::Instant;

use common::*;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use futures_util::StreamExt;
use molt_console::app::App;
use molt_console::net::{NetCommand, NetEvent, Purpose};
use molt_console::runtime::{LoopExit, NetLink, RunError, run_loop};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;
use tokio_stream_shim::channel_stream;

/// A tiny stand-in for `tokio_stream::wrappers::UnboundedReceiverStream`.
mod tokio_stream_shim {
    use futures_util::Stream;
    use tokio::sync::mpsc;

    pub fn channel_stream<T>(rx: mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

fn press(c: char) -> io::Result<TermEvent> {
    Ok(TermEvent::Key(KeyEvent::from(KeyCode::Char(c))))
}

struct Harness {
    terminal: Terminal<TestBackend>,
    app: App,
    link: NetLink,
    net_tx: mpsc::Sender<NetEvent>,
    commands: mpsc::UnboundedReceiver<NetCommand>,
    base: Instant,
}

fn harness() -> Harness {
    let base = Instant::now();
    let (net_tx, events) = mpsc::channel(16);
    let (command_tx, commands) = mpsc::unbounded_channel();
    Harness {
        terminal: Terminal::new(TestBackend::new(80, 24)).unwrap(),
        app: App::new(URL, true, base),
        link: NetLink {
            events,
            commands: command_tx,
        },
        net_tx,
        commands,
        base,
    }
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    terminal.backend().to_string()
}

#[tokio::test]
async fn keys_drive_the_loop_help_then_quit() {
    let mut h = harness();
    let keys = futures_util::stream::iter([press('?'), press('q')]);
    let base = h.base;
    let exit = run_loop(
        &mut h.terminal,
        &mut h.app,
        keys,
        &mut h.link,
        std::future::pending(),
        move || base,
    )
    .await
    .unwrap();
    assert_eq!(exit, LoopExit::Quit);
    // The last frame drawn is the one after '?'.
    assert!(screen(&h.terminal).contains("show / hide this help"));
}

#[tokio::test]
async fn network_results_are_drawn_and_requests_go_out() {
    let mut h = harness();
    let (key_tx, key_rx) = mpsc::unbounded_channel();
    let base = h.base;
    let net_tx = h.net_tx.clone();
    let driver = async {
        let molt_console::app::Event::Net(hello) = connected(status()) else {
            unreachable!()
        };
        net_tx.send(hello).await.unwrap();
        // Wait (without sleeping) until the loop has drained its channel:
        // on this single-threaded runtime it then has drawn the frame too.
        while net_tx.capacity() < net_tx.max_capacity() {
            tokio::task::yield_now().await;
        }
        key_tx.send(press('q')).unwrap();
    };
    let (exit, ()) = tokio::join!(
        run_loop(
            &mut h.terminal,
            &mut h.app,
            channel_stream(key_rx),
            &mut h.link,
            std::future::pending(),
            move || base,
        ),
        driver
    );
    assert_eq!(exit.unwrap(), LoopExit::Quit);
    let text = screen(&h.terminal);
    assert!(text.contains("connected"), "{text}");
    assert!(text.contains("4343, up 1h 02m 03s"), "{text}");
    // hello-ok made the app ask for a fresh status.
    assert!(matches!(
        h.commands.try_recv(),
        Ok(NetCommand::Request {
            purpose: Purpose::Status,
            ..
        })
    ));
}

#[tokio::test]
async fn end_of_input_and_shutdown_end_the_loop() {
    let mut h = harness();
    let base = h.base;
    let exit = run_loop(
        &mut h.terminal,
        &mut h.app,
        futures_util::stream::empty(),
        &mut h.link,
        std::future::pending(),
        move || base,
    )
    .await
    .unwrap();
    assert_eq!(exit, LoopExit::InputClosed);

    let exit = run_loop(
        &mut h.terminal,
        &mut h.app,
        futures_util::stream::pending(),
        &mut h.link,
        async {},
        move || base,
    )
    .await
    .unwrap();
    assert_eq!(exit, LoopExit::Shutdown);
}

#[tokio::test]
async fn a_dead_network_task_is_an_error_not_a_hang() {
    let mut h = harness();
    drop(h.net_tx);
    let base = h.base;
    let result = run_loop(
        &mut h.terminal,
        &mut h.app,
        futures_util::stream::pending::<io::Result<TermEvent>>().boxed(),
        &mut h.link,
        std::future::pending(),
        move || base,
    )
    .await;
    assert!(matches!(result, Err(RunError::NetworkGone)));
}
