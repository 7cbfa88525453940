//! Console state and the one function that changes it.
//!
//! `App::handle` is synchronous and does no I/O: events come in, state
//! changes, commands go out for the runtime to carry out. Time comes in
//! through [`App::set_now`], so tests control the clock.

pub mod keymap;

use std::time::{Duration, Instant};

use crossterm::event::{KeyEvent, KeyEventKind};
use molt_protocol::Method;
use molt_protocol::handshake::{HelloOk, PROTOCOL_VERSION};
use molt_protocol::status::StatusResult;

use crate::client::{CloseKind, GatewayEvent, RequestError};
use crate::net::{NetCommand, NetEvent, Purpose};
use keymap::Action;

/// How often the overview refreshes `status` while connected.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// Everything the main loop feeds the app.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    /// The terminal changed size.
    Resize,
    /// The loop's periodic timer (uptime display, status refresh).
    Tick,
    Net(NetEvent),
}

/// What the app asks the runtime to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Net(NetCommand),
    Quit,
}

/// The connection as the header shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// The gateway closed with 1012 (or announced a restart): its
    /// successor takes over; polling fast.
    HandingOff {
        attempt: u32,
    },
    Reconnecting {
        attempt: u32,
        error: Option<String>,
    },
    /// The token was refused; no retries until the operator asks.
    AuthFailed {
        message: String,
    },
}

/// The screens; later ones add tabs here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Overview,
}

impl Screen {
    pub const ALL: &'static [Screen] = &[Screen::Overview];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    fn step(self, forward: bool) -> Screen {
        let n = Self::ALL.len();
        let i = self.index();
        Self::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A one-line message in the footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

/// What `hello-ok` told about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSession {
    pub version: String,
    pub protocol: u32,
    pub conn_id: String,
}

/// The latest `status`, and when it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSnapshot {
    pub status: StatusResult,
    pub received_at: Instant,
}

pub struct App {
    pub url: String,
    /// Where the URL and token came from, for the operator.
    pub origin: String,
    pub conn: ConnState,
    pub server: Option<ServerSession>,
    pub status: Option<StatusSnapshot>,
    /// Why the last status refresh failed.
    pub status_error: Option<String>,
    /// Set while the connection is down: the status shown is old.
    pub disconnected_at: Option<Instant>,
    /// Shown while connected to a gateway newer than this console.
    pub version_notice: Option<String>,
    pub notice: Option<Notice>,
    pub screen: Screen,
    pub show_help: bool,
    /// False under `NO_COLOR`.
    pub color: bool,
    now: Instant,
    status_in_flight: bool,
    status_wanted: bool,
    last_status_request: Option<Instant>,
    /// pid and version of the process that handed off.
    handed_off_from: Option<(u32, String)>,
    dirty: bool,
    quit: bool,
}

impl App {
    pub fn new(url: impl Into<String>, color: bool, now: Instant) -> Self {
        Self {
            url: url.into(),
            origin: String::new(),
            conn: ConnState::Connecting,
            server: None,
            status: None,
            status_error: None,
            disconnected_at: None,
            version_notice: None,
            notice: None,
            screen: Screen::Overview,
            show_help: false,
            color,
            now,
            status_in_flight: false,
            status_wanted: false,
            last_status_request: None,
            handed_off_from: None,
            dirty: true,
            quit: false,
        }
    }

    /// The loop's clock, set before each event.
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn set_now(&mut self, now: Instant) {
        self.now = now.max(self.now);
    }

    /// Whether the screen must be redrawn; clears the flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn set_notice(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some(Notice {
            level,
            text: text.into(),
        });
        self.dirty = true;
    }

    /// The gateway's uptime now: extrapolated while connected, frozen at
    /// the disconnect otherwise (the process may be gone).
    pub fn uptime(&self) -> Option<Duration> {
        let snap = self.status.as_ref()?;
        let base = Duration::from_millis(snap.status.uptime_ms);
        let until = self.disconnected_at.unwrap_or(self.now);
        Some(base + until.saturating_duration_since(snap.received_at))
    }

    /// The gateway's wall clock now (Unix ms), from its own answers; used
    /// for "in 5m" / "3h ago" so a skewed local clock does not matter.
    pub fn gateway_now_ms(&self) -> Option<u64> {
        let snap = self.status.as_ref()?;
        let uptime = u64::try_from(self.uptime()?.as_millis()).unwrap_or(u64::MAX);
        Some(snap.status.started_at.saturating_add(uptime))
    }

    /// How long the connection has been down.
    pub fn disconnected_for(&self) -> Option<Duration> {
        self.disconnected_at
            .map(|at| self.now.saturating_duration_since(at))
    }

    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Key(key) if key.kind == KeyEventKind::Release => Vec::new(),
            Event::Key(key) => match keymap::action_for(key) {
                Some(action) => self.act(action),
                None => Vec::new(),
            },
            Event::Resize => {
                self.dirty = true;
                Vec::new()
            }
            Event::Tick => self.on_tick(),
            Event::Net(event) => self.on_net(event),
        }
    }

    fn act(&mut self, action: Action) -> Vec<Command> {
        if self.show_help && !matches!(action, Action::Quit | Action::ToggleHelp | Action::Back) {
            return Vec::new();
        }
        self.dirty = true;
        match action {
            Action::Quit => {
                self.quit = true;
                return vec![Command::Quit];
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::Back => {
                if self.show_help {
                    self.show_help = false;
                } else {
                    self.notice = None;
                }
            }
            Action::NextScreen => self.screen = self.screen.step(true),
            Action::PrevScreen => self.screen = self.screen.step(false),
            Action::Refresh => {
                return match self.conn {
                    ConnState::Connected => self.request_status(true),
                    ConnState::Connecting => Vec::new(),
                    _ => vec![Command::Net(NetCommand::ReconnectNow)],
                };
            }
        }
        Vec::new()
    }

    fn on_tick(&mut self) -> Vec<Command> {
        // Uptime and "disconnected for" change every second.
        if self.status.is_some() || self.disconnected_at.is_some() {
            self.dirty = true;
        }
        let due = self
            .last_status_request
            .is_none_or(|at| self.now.saturating_duration_since(at) >= STATUS_REFRESH);
        if self.conn == ConnState::Connected && due {
            return self.request_status(false);
        }
        Vec::new()
    }

    /// Asks for `status` unless one is in flight; `again` queues one more
    /// after it, so a change that raced the in-flight answer is not missed.
    fn request_status(&mut self, again: bool) -> Vec<Command> {
        if self.status_in_flight {
            self.status_wanted |= again;
            return Vec::new();
        }
        self.status_in_flight = true;
        self.status_wanted = false;
        self.last_status_request = Some(self.now);
        vec![Command::Net(NetCommand::Request {
            purpose: Purpose::Status,
            method: Method::Status,
            params: None,
        })]
    }

    fn on_net(&mut self, event: NetEvent) -> Vec<Command> {
        // Ticks and log lines change nothing shown here: no redraw.
        let NetEvent::Gateway(event) = event else {
            self.dirty = true;
            return self.on_session_event(event);
        };
        self.on_gateway_event(event)
    }

    fn on_session_event(&mut self, event: NetEvent) -> Vec<Command> {
        match event {
            NetEvent::Connecting { url, attempt } => {
                self.url = url;
                if attempt == 0 && !matches!(self.conn, ConnState::HandingOff { .. }) {
                    self.conn = ConnState::Connecting;
                }
                Vec::new()
            }
            NetEvent::Connected { hello, handoff_gap } => self.on_connected(*hello, handoff_gap),
            NetEvent::Closed(close) => {
                self.disconnected_at = Some(self.now);
                self.status_in_flight = false;
                self.server = None;
                self.version_notice = None;
                self.handed_off_from = self
                    .status
                    .as_ref()
                    .map(|s| (s.status.pid, s.status.version.clone()));
                self.conn = if close.kind() == CloseKind::HandOff {
                    ConnState::HandingOff { attempt: 0 }
                } else {
                    ConnState::Reconnecting {
                        attempt: 0,
                        error: Some(close.to_string()),
                    }
                };
                Vec::new()
            }
            NetEvent::Retrying {
                attempt,
                handoff,
                error,
                ..
            } => {
                if self.disconnected_at.is_none() && self.status.is_some() {
                    self.disconnected_at = Some(self.now);
                }
                self.conn = if handoff {
                    ConnState::HandingOff { attempt }
                } else {
                    let previous = match &self.conn {
                        ConnState::Reconnecting { error, .. } => error.clone(),
                        _ => None,
                    };
                    ConnState::Reconnecting {
                        attempt,
                        error: error.or(previous),
                    }
                };
                Vec::new()
            }
            NetEvent::AuthFailed { message } => {
                self.conn = ConnState::AuthFailed { message };
                self.status_in_flight = false;
                if self.disconnected_at.is_none() && self.status.is_some() {
                    self.disconnected_at = Some(self.now);
                }
                Vec::new()
            }
            NetEvent::Gateway(event) => self.on_gateway_event(event),
            NetEvent::Lagged(_) => self.request_status(true),
            NetEvent::Response { purpose, result } => match purpose {
                Purpose::Status => self.on_status(result),
            },
        }
    }

    fn on_connected(&mut self, hello: HelloOk, handoff_gap: Option<Duration>) -> Vec<Command> {
        self.conn = ConnState::Connected;
        self.disconnected_at = None;
        self.status_error = None;
        self.status_in_flight = false;
        self.status_wanted = false;
        self.version_notice = version_notice(&hello);
        self.server = Some(ServerSession {
            version: hello.server.version.clone(),
            protocol: hello.protocol,
            conn_id: hello.server.conn_id.to_string(),
        });
        if let Some(gap) = handoff_gap {
            let from = self
                .handed_off_from
                .take()
                .map(|(pid, version)| format!("pid {pid} ({version})"))
                .unwrap_or_else(|| "previous process".to_owned());
            let to = &hello.snapshot;
            self.set_notice(
                Level::Info,
                format!(
                    "handoff: {from} -> pid {} ({}), gap {} ms",
                    to.pid,
                    to.version,
                    gap.as_millis()
                ),
            );
        } else if matches!(&self.notice, Some(n) if n.level == Level::Error) {
            // Connection errors are stale once connected.
            self.notice = None;
        }
        self.status = Some(StatusSnapshot {
            status: hello.snapshot,
            received_at: self.now,
        });
        self.request_status(false)
    }

    fn on_gateway_event(&mut self, event: GatewayEvent) -> Vec<Command> {
        match event {
            GatewayEvent::Shutdown(shutdown) => {
                let text = match shutdown.restart_expected_ms {
                    Some(ms) => format!(
                        "gateway restarting ({}), back in ~{} ms",
                        shutdown.reason, ms
                    ),
                    None => format!("gateway shutting down ({})", shutdown.reason),
                };
                self.set_notice(Level::Warn, text);
                Vec::new()
            }
            GatewayEvent::RestartScheduled(_)
            | GatewayEvent::RestartDeferred(_)
            | GatewayEvent::UpdateProgress(_)
            | GatewayEvent::UpdateAvailable(_)
            | GatewayEvent::ConfigChanged(_) => self.request_status(true),
            GatewayEvent::Tick(_) | GatewayEvent::LogsLine(_) | GatewayEvent::Other { .. } => {
                Vec::new()
            }
        }
    }

    fn on_status(&mut self, result: Result<serde_json::Value, RequestError>) -> Vec<Command> {
        self.status_in_flight = false;
        match result {
            Ok(value) => match molt_protocol::frame::decode::<StatusResult>(value) {
                Ok(status) => {
                    self.status = Some(StatusSnapshot {
                        status,
                        received_at: self.now,
                    });
                    self.status_error = None;
                }
                Err(problem) => {
                    self.status_error = Some(format!("status did not decode: {problem}"));
                }
            },
            // The connection state already says so.
            Err(RequestError::Disconnected { .. }) => return Vec::new(),
            Err(error) => self.status_error = Some(error.to_string()),
        }
        if self.status_wanted && self.conn == ConnState::Connected {
            return self.request_status(false);
        }
        Vec::new()
    }
}

/// A notice when the gateway is newer than this console: it still works,
/// but may have features this console cannot show.
pub fn version_notice(hello: &HelloOk) -> Option<String> {
    let server_protocol = hello.snapshot.build.protocol.max(hello.protocol);
    if server_protocol > PROTOCOL_VERSION {
        return Some(format!(
            "gateway speaks protocol {server_protocol}, this console {PROTOCOL_VERSION}: update molt"
        ));
    }
    let ours = semver::Version::parse(env!("CARGO_PKG_VERSION")).ok()?;
    let theirs = semver::Version::parse(&hello.server.version).ok()?;
    (theirs > ours).then(|| {
        format!("gateway {theirs} is newer than this console {ours}: some features may be missing")
    })
}
