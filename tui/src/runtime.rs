//! The main loop and the console entry point.
//!
//! The loop is generic over the terminal backend and the input stream, so
//! tests drive the real loop with synthetic keys into a `TestBackend`.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyEventKind};
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Command, Event, Level};
use crate::client::ClientMode;
use crate::net::{self, Backoff, NetCommand, NetEvent};
use crate::target::{self, Env, Overrides, PinSource, Target, TokenSource, UrlSource};
use crate::{term, ui};

/// Period of [`Event::Tick`].
pub const TICK: Duration = Duration::from_secs(1);
/// Net events handled per redraw at most, so a burst costs one frame and
/// keys still get through.
const NET_BATCH: usize = 256;

/// Why the loop ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    Quit,
    InputClosed,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("terminal: {0}")]
    Io(#[from] io::Error),
    #[error("the network task stopped unexpectedly")]
    NetworkGone,
    #[error(transparent)]
    Discover(#[from] target::DiscoverError),
}

/// The loop's ends of the network task's channels.
pub struct NetLink {
    pub events: mpsc::Receiver<NetEvent>,
    pub commands: mpsc::UnboundedSender<NetCommand>,
}

/// Runs until quit, end of input or `shutdown`. Draws only when the app is
/// dirty. `clock` is read before each event.
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: S,
    net: &mut NetLink,
    shutdown: impl Future<Output = ()>,
    clock: impl Fn() -> Instant,
) -> Result<LoopExit, RunError>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    draw(terminal, app)?;
    loop {
        let event = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(LoopExit::Shutdown),
            input = input.next() => match input {
                None => return Ok(LoopExit::InputClosed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(event)) => match translate(event) {
                    Some(event) => event,
                    None => continue,
                },
            },
            event = net.events.recv() => Event::Net(event.ok_or(RunError::NetworkGone)?),
            _ = ticker.tick() => Event::Tick,
        };
        if apply(app, event, &net.commands, &clock)? {
            return Ok(LoopExit::Quit);
        }
        for _ in 0..NET_BATCH {
            let Ok(event) = net.events.try_recv() else {
                break;
            };
            if apply(app, Event::Net(event), &net.commands, &clock)? {
                return Ok(LoopExit::Quit);
            }
        }
        draw(terminal, app)?;
    }
}

fn draw<B>(terminal: &mut Terminal<B>, app: &mut App) -> Result<(), RunError>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if app.take_dirty() {
        terminal
            .draw(|frame| ui::render(app, frame))
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Handles one event and carries out its commands; true means quit.
fn apply(
    app: &mut App,
    event: Event,
    commands: &mpsc::UnboundedSender<NetCommand>,
    clock: &impl Fn() -> Instant,
) -> Result<bool, RunError> {
    app.set_now(clock());
    for command in app.handle(event) {
        match command {
            Command::Quit => return Ok(true),
            Command::Net(command) => commands.send(command).map_err(|_| RunError::NetworkGone)?,
        }
    }
    Ok(false)
}

fn translate(event: TermEvent) -> Option<Event> {
    match event {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => Some(Event::Key(key)),
        TermEvent::Resize(..) => Some(Event::Resize),
        _ => None,
    }
}

/// How the console found its target, in words.
pub fn describe_origin(target: &Target) -> String {
    let url = match &target.url_source {
        UrlSource::Flag => "url from --url".to_owned(),
        UrlSource::LockFile { pid } => format!(
            "url from {} (pid {pid})",
            target
                .state_dir
                .join(molt_protocol::state::LOCK_FILE)
                .display()
        ),
        UrlSource::Config => format!("url from {}", target.config_path.display()),
        UrlSource::Default => "url: default port (no config, no running daemon found)".to_owned(),
    };
    let token = match target.token_source {
        TokenSource::Flag => "token from --token".to_owned(),
        TokenSource::Env => "token from OPENCLAW_GATEWAY_TOKEN".to_owned(),
        TokenSource::Config => format!("token from {}", target.config_path.display()),
        TokenSource::None => "no token".to_owned(),
    };
    let pin = match &target.tls_pin {
        Some((_, PinSource::Flag)) => "; certificate pinned by --tls-fingerprint".to_owned(),
        Some((_, PinSource::Certificate(path))) => {
            format!("; certificate pinned from {}", path.display())
        }
        None => String::new(),
    };
    match &target.local_socket {
        Some(socket) => format!(
            "local socket {} (no token needed), else {url}; {token}{pin}",
            socket.display()
        ),
        None => format!("{url}; {token}{pin}"),
    }
}

/// `NO_COLOR` set to anything non-empty turns colors off (no-color.org).
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The interactive console on the real terminal.
pub async fn run_console(overrides: Overrides, env: Env) -> Result<(), RunError> {
    let target = target::discover(&overrides, &env)?;
    tracing::info!(?target, "console starting");

    let mut app = App::new(target.url.clone(), color_enabled(), Instant::now());
    app.origin = describe_origin(&target);
    if let Some(warning) = target.warnings.first() {
        app.set_notice(Level::Warn, warning.clone());
    }

    let resolve: net::Resolve = Box::new(move || {
        target::discover(&overrides, &env)
            .map(|t| t.connect_options(ClientMode::Tui))
            .map_err(|e| e.to_string())
    });
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::channel(NET_BATCH);
    let cancel = CancellationToken::new();
    let network = tokio::spawn(net::run(
        resolve,
        Backoff::default(),
        command_rx,
        event_tx,
        cancel.clone(),
    ));
    let mut link = NetLink {
        events: event_rx,
        commands: command_tx,
    };

    let result = match term::enter() {
        Ok((mut terminal, guard)) => {
            let input = crossterm::event::EventStream::new();
            let result = run_loop(
                &mut terminal,
                &mut app,
                input,
                &mut link,
                shutdown_signal(),
                Instant::now,
            )
            .await;
            drop(guard);
            result.map(|exit| tracing::info!(?exit, "console stopped"))
        }
        Err(e) => Err(e.into()),
    };

    cancel.cancel();
    // The network task closes its socket politely; do not hang on it.
    if tokio::time::timeout(Duration::from_secs(3), network)
        .await
        .is_err()
    {
        tracing::warn!("network task did not stop in time");
    }
    result
}

/// SIGTERM, SIGHUP (the SSH session died) or SIGINT end the console
/// cleanly. In raw mode Ctrl-C arrives as a key, not as SIGINT.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::interrupt(),
        ];
        let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
        if streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
        futures_util::future::select_all(waits).await;
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
