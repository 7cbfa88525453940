//! Console state and the one function that changes it.
//!
//! `App::handle` is synchronous and does no I/O: events come in, state
//! changes, commands go out for the runtime to carry out. Time comes in
//! through [`App::set_now`], so tests control the clock.

mod audit;
mod config;
mod history;
pub mod keymap;
mod logs;
mod update;

pub use audit::{AUDIT_PAGE, AuditView, MAX_AUDIT_SHOWN, Shown};
pub use config::{ConfigRow, ConfigView, LoadedConfig, parse_duration_ms};
pub use history::HistoryView;
pub use logs::LogsView;
pub use update::{
    Choice, Dialog, Field, Preview, RunStage, RunView, StepView, TextInput, UpdateView, edit_text,
    validate_tag,
};

use std::time::{Duration, Instant};

use crossterm::event::{KeyEvent, KeyEventKind};
use molt_protocol::Method;
use molt_protocol::handshake::PROTOCOL_VERSION;

use crate::client::{CloseKind, GatewayEvent, RequestError};
use crate::format;
use crate::net::{NetCommand, NetEvent, Outage, Purpose};
use crate::peer::{Facts, Hello, Live, Product, UpdateApi};
use keymap::{Action, Mode, TextKey};

/// How often the overview refreshes `status` while connected.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);
/// How often while a restart, pending work or a run is under way.
pub const STATUS_REFRESH_IN_MOTION: Duration = Duration::from_secs(1);

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
    /// No protocol in common (a much newer or older gateway); no retries
    /// until the operator asks.
    Incompatible {
        message: String,
    },
}

/// The screens, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Update,
    History,
    Config,
    Logs,
}

impl Screen {
    pub const ALL: &'static [Screen] = &[
        Screen::Overview,
        Screen::Update,
        Screen::History,
        Screen::Config,
        Screen::Logs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Update => "Update",
            Screen::History => "History",
            Screen::Config => "Config",
            Screen::Logs => "Logs",
        }
    }

    /// `1`-`5`, or the screen's letter (`u` opens the dialog instead).
    pub fn for_key(c: char) -> Option<Screen> {
        match c {
            '1' | 'o' => Some(Screen::Overview),
            '2' => Some(Screen::Update),
            '3' | 'h' => Some(Screen::History),
            '4' | 'c' => Some(Screen::Config),
            '5' | 'l' => Some(Screen::Logs),
            _ => None,
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
    /// About the connection going away (an error, a `shutdown`): stale
    /// once connected again.
    pub until_connected: bool,
}

/// What `hello-ok` told about the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSession {
    pub product: Product,
    pub version: Option<String>,
    pub protocol: Option<u32>,
    pub conn_id: Option<String>,
}

/// A process handing the gateway to its successor, as the console saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub from_pid: Option<u32>,
    pub from_version: Option<String>,
    /// pid and version of the successor, once connected.
    pub to: Option<(Option<u32>, Option<String>)>,
    /// From the old process's close to the successor's `hello-ok`.
    pub gap: Option<Duration>,
}

/// `pid 4343 v0.1.0`, `v2026.4.26` (no pid reported) or `previous process`.
fn process_name(pid: Option<u32>, version: Option<&str>) -> String {
    match (pid, version) {
        (Some(pid), Some(version)) => format!("pid {pid} v{version}"),
        (None, Some(version)) => format!("v{version}"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, None) => "previous process".to_owned(),
    }
}

impl Handoff {
    /// `handing off: pid 4343 v0.1.0 → pid 5151 v0.2.0, gap 42 ms`.
    pub fn describe(&self) -> String {
        let from = process_name(self.from_pid, self.from_version.as_deref());
        match (&self.to, self.gap) {
            (Some((pid, version)), gap) => {
                let to = match (pid, version) {
                    (None, None) => "the new process".to_owned(),
                    _ => process_name(*pid, version.as_deref()),
                };
                match gap {
                    Some(gap) => format!("handed off: {from} → {to}, gap {}", format::gap(gap)),
                    None => format!("handed off: {from} → {to}"),
                }
            }
            (None, _) => format!("handing off: {from} → waiting for the successor"),
        }
    }
}

/// The latest facts, and when they arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSnapshot {
    pub facts: Facts,
    pub received_at: Instant,
    /// When the uptime in `facts` was true (OpenClaw sends it only in the
    /// `hello-ok` snapshot).
    pub uptime_at: Instant,
}

#[derive(Clone)]
pub struct App {
    pub url: String,
    /// Where the URL and token came from, for the operator.
    pub origin: String,
    pub conn: ConnState,
    pub server: Option<ServerSession>,
    /// The `hello-ok` of the current session, or of the last one while
    /// disconnected.
    pub hello: Option<Hello>,
    /// What this console's attempts saw between the last two sessions.
    pub outage: Option<Outage>,
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
    /// The latest handoff, while it runs and after.
    pub handoff: Option<Handoff>,
    pub update: UpdateView,
    pub history: HistoryView,
    /// The History screen's audit trail (`a`).
    pub audit: AuditView,
    pub config: ConfigView,
    pub logs: LogsView,
    /// Lines of the Overview scrolled off its top (Up/Down, when it is
    /// taller than the terminal).
    pub overview_scroll: usize,
    /// How many lines the Overview's last draw could not show: the most
    /// [`App::overview_scroll`] can be.
    pub overview_overflow: std::cell::Cell<usize>,
    /// Advances on each tick while something is in progress.
    pub spinner: usize,
    now: Instant,
    status_in_flight: bool,
    status_wanted: bool,
    last_status_request: Option<Instant>,
    /// A `shutdown` event said a restart follows: the close that comes is
    /// a handoff whatever its code (a supervised restart closes with 1001).
    restart_announced: bool,
    dirty: bool,
    quit: bool,
}

/// A position in a list moved `by` rows, kept between 0 and `last`.
pub(crate) fn moved(position: usize, by: isize, last: usize) -> usize {
    position.saturating_add_signed(by).min(last)
}

/// A result as `T`, or text naming the method that answered oddly.
fn decode<T: serde::de::DeserializeOwned>(
    method: Method,
    value: serde_json::Value,
) -> Result<T, String> {
    molt_protocol::frame::decode(value)
        .map_err(|problem| format!("unexpected {} result: {problem}", method.as_str()))
}

/// A response as `T`: the request's error or a decoding problem as text.
fn answer<T: serde::de::DeserializeOwned>(
    method: Method,
    result: Result<serde_json::Value, crate::client::RequestError>,
) -> Result<T, String> {
    result
        .map_err(|e| e.to_string())
        .and_then(|v| decode(method, v))
}

impl App {
    pub fn new(url: impl Into<String>, color: bool, now: Instant) -> Self {
        Self {
            url: url.into(),
            origin: String::new(),
            conn: ConnState::Connecting,
            server: None,
            hello: None,
            outage: None,
            status: None,
            status_error: None,
            disconnected_at: None,
            version_notice: None,
            notice: None,
            screen: Screen::Overview,
            show_help: false,
            color,
            handoff: None,
            update: UpdateView::default(),
            history: HistoryView::default(),
            audit: AuditView::default(),
            config: ConfigView::default(),
            logs: LogsView::default(),
            overview_scroll: 0,
            overview_overflow: std::cell::Cell::new(0),
            spinner: 0,
            now,
            status_in_flight: false,
            status_wanted: false,
            last_status_request: None,
            restart_announced: false,
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
            until_connected: level == Level::Error,
        });
        self.dirty = true;
    }

    /// The gateway's uptime now: extrapolated while connected, frozen at
    /// the disconnect otherwise (the process may be gone).
    pub fn uptime(&self) -> Option<Duration> {
        let snap = self.status.as_ref()?;
        let base = Duration::from_millis(snap.facts.uptime_ms?);
        let until = self.disconnected_at.unwrap_or(self.now);
        Some(base + until.saturating_duration_since(snap.uptime_at))
    }

    /// The gateway's wall clock now (Unix ms), from its own answers; used
    /// for "in 5m" / "3h ago" so a skewed local clock does not matter.
    pub fn gateway_now_ms(&self) -> Option<u64> {
        let snap = self.status.as_ref()?;
        let uptime = u64::try_from(self.uptime()?.as_millis()).unwrap_or(u64::MAX);
        Some(snap.facts.started_at?.saturating_add(uptime))
    }

    /// The facts, when the gateway has told any.
    pub fn facts(&self) -> Option<&Facts> {
        self.status.as_ref().map(|s| &s.facts)
    }

    /// How the gateway updates itself (moltd's protocol until told).
    pub fn update_api(&self) -> UpdateApi {
        self.hello
            .as_ref()
            .map_or(UpdateApi::Molt, Hello::update_api)
    }

    /// Which gateway answers.
    pub fn product(&self) -> Product {
        self.hello.as_ref().map_or(Product::Moltd, Hello::product)
    }

    /// Whether the gateway serves `method` (assumed until told).
    pub fn serves(&self, method: &str) -> bool {
        self.hello
            .as_ref()
            .is_none_or(|h| h.features.serves(method))
    }

    /// What the process of the current session says it is.
    pub fn live(&self) -> Option<Live> {
        Some(Live::of(self.hello.as_ref()?, self.facts()?))
    }

    /// How long the connection has been down.
    pub fn disconnected_for(&self) -> Option<Duration> {
        self.disconnected_at
            .map(|at| self.now.saturating_duration_since(at))
    }

    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Key(key) if key.kind == KeyEventKind::Release => Vec::new(),
            Event::Key(key) => self.on_key(key),
            Event::Resize => {
                self.dirty = true;
                Vec::new()
            }
            Event::Tick => self.on_tick(),
            Event::Net(event) => self.on_net(event),
        }
    }

    /// Which key table applies now.
    pub fn key_mode(&self) -> Mode {
        if self.screen == Screen::Update && self.update.dialog.is_some() {
            Mode::Dialog
        } else {
            Mode::Screen
        }
    }

    /// The text field that has the focus, if any.
    pub fn text_input(&self) -> Option<&TextInput> {
        if self.show_help {
            return None;
        }
        match self.screen {
            Screen::Update => self.update.dialog.as_ref()?.editing.as_ref(),
            Screen::Config => self.config.editing.as_ref(),
            Screen::Logs => self.logs.searching.as_ref(),
            _ => None,
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if self.text_input().is_some() {
            let Some(key) = keymap::text_key(key) else {
                return Vec::new();
            };
            self.dirty = true;
            if key == TextKey::Quit {
                self.quit = true;
                return vec![Command::Quit];
            }
            return match self.screen {
                Screen::Update => self.update_text_key(key),
                Screen::Logs => {
                    self.logs.search_key(&key);
                    Vec::new()
                }
                _ => self.config_text_key(key),
            };
        }
        match keymap::action_for(key, self.key_mode()) {
            Some(action) => self.act(action),
            None => Vec::new(),
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
                vec![Command::Quit]
            }
            Action::ToggleHelp => {
                self.show_help = !self.show_help;
                Vec::new()
            }
            Action::Back => {
                if self.show_help {
                    self.show_help = false;
                } else if self.screen == Screen::Update && self.update.dialog.is_some() {
                    self.update.dialog = None;
                } else {
                    self.notice = None;
                }
                Vec::new()
            }
            Action::NextScreen => self.show(self.screen.step(true)),
            Action::PrevScreen => self.show(self.screen.step(false)),
            Action::Show(screen) => self.show(screen),
            Action::ShowAudit => self.show_audit(),
            Action::OpenUpdate => {
                let mut commands = self.show(Screen::Update);
                commands.extend(self.open_update_dialog());
                commands
            }
            Action::Refresh => match self.conn {
                ConnState::Connected => self.refresh_screen(),
                ConnState::Connecting => Vec::new(),
                _ => vec![Command::Net(NetCommand::ReconnectNow)],
            },
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-(PAGE as isize)),
            Action::PageDown => self.move_selection(PAGE as isize),
            Action::Activate => match self.screen {
                Screen::Config => self.config_activate(),
                Screen::Update => self.update_activate(),
                Screen::Logs => {
                    self.logs.toggle_pause();
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Action::SwitchChoice => {
                if let Some(dialog) = &mut self.update.dialog {
                    dialog.switch_choice();
                }
                Vec::new()
            }
            Action::EditNote => self.update_edit(Field::Note),
            Action::EditTarget => self.update_edit(Field::Target),
            Action::Pause => match self.screen {
                Screen::Logs => {
                    self.logs.toggle_pause();
                    Vec::new()
                }
                Screen::Update => self.hold_campaign(),
                _ => Vec::new(),
            },
            Action::Follow => {
                if self.screen == Screen::Logs {
                    self.logs.follow();
                }
                Vec::new()
            }
            Action::Wrap
            | Action::Side(_)
            | Action::LevelFilter
            | Action::Search
            | Action::FindNext { .. } => {
                if self.screen == Screen::Logs {
                    self.logs_act(action);
                }
                Vec::new()
            }
        }
    }

    /// Switches screens and loads what the new one shows.
    fn show(&mut self, screen: Screen) -> Vec<Command> {
        self.screen = screen;
        if self.conn != ConnState::Connected {
            return Vec::new();
        }
        match screen {
            Screen::Overview => Vec::new(),
            Screen::Update => self.request_update_status(),
            Screen::History => self.request_history_shown(),
            Screen::Config => self.request_config(),
            Screen::Logs => self.request_logs(),
        }
    }

    /// What the History screen lists: the update runs or the audit trail.
    fn request_history_shown(&mut self) -> Vec<Command> {
        match self.history.shown {
            Shown::Runs => self.request_history(),
            Shown::Audit => self.request_audit(),
        }
    }

    /// `r` while connected: reload what the current screen shows.
    fn refresh_screen(&mut self) -> Vec<Command> {
        let mut commands = self.request_status(true);
        commands.extend(match self.screen {
            Screen::Overview => Vec::new(),
            Screen::Update => {
                let mut c = self.request_update_status();
                if self.serves(Method::UpdateCheck.as_str()) {
                    c.push(request(Purpose::UpdateCheck, Method::UpdateCheck, None));
                }
                c
            }
            Screen::History => self.request_history_shown(),
            Screen::Config => self.request_config(),
            Screen::Logs => {
                self.logs.subscribed = false;
                self.request_logs()
            }
        });
        commands
    }

    fn move_selection(&mut self, by: isize) -> Vec<Command> {
        match self.screen {
            Screen::History if self.history.shown == Shown::Audit => {
                return self.move_audit_selection(by);
            }
            Screen::History => self.history.move_selection(by),
            Screen::Config => self.config.move_selection(by),
            Screen::Logs => self.logs.scroll_by(-by),
            Screen::Overview => {
                self.overview_scroll =
                    moved(self.overview_scroll, by, self.overview_overflow.get());
                self.dirty = true;
            }
            _ => {}
        }
        Vec::new()
    }

    /// Whether the screen shows something that changes with time alone:
    /// uptime, "3m ago", a spinner. Only then does a tick redraw.
    fn shows_time(&self) -> bool {
        match self.screen {
            Screen::Overview => self.status.is_some() || self.disconnected_at.is_some(),
            Screen::Update => self.status.is_some() || self.update.busy(),
            Screen::History => match self.history.shown {
                Shown::Runs => self.history.runs.is_some(),
                Shown::Audit => self.audit.entries.is_some(),
            },
            Screen::Config => self.config.saving.is_some(),
            Screen::Logs => false,
        }
    }

    fn on_tick(&mut self) -> Vec<Command> {
        if self.shows_time() {
            self.dirty = true;
        }
        let mut commands = Vec::new();
        if self.update.busy() || self.config.saving.is_some() {
            self.spinner = self.spinner.wrapping_add(1);
        }
        if self.update.busy() {
            commands.extend(self.update_tick());
        }
        if self.screen == Screen::Logs {
            commands.extend(self.poll_logs());
        }
        let every = if self.in_motion() {
            STATUS_REFRESH_IN_MOTION
        } else {
            STATUS_REFRESH
        };
        let due = self
            .last_status_request
            .is_none_or(|at| self.now.saturating_duration_since(at) >= every);
        if self.conn == ConnState::Connected && due {
            commands.extend(self.request_status(false));
        }
        commands
    }

    /// Whether the last status shows something about to change: a restart
    /// scheduled or under way, pending work, a run in progress. A restart
    /// that fails without a handoff sends no close, so only `status` says
    /// it is over.
    fn in_motion(&self) -> bool {
        if self.update.busy() {
            return true;
        }
        let Some(status) = &self.status else {
            return false;
        };
        let facts = &status.facts;
        let restarting = facts
            .restart
            .as_ref()
            .is_some_and(|r| r.phase != molt_protocol::status::RestartPhase::Idle);
        let pending = facts.pending_work.is_some_and(|p| p.total() > 0);
        restarting || pending
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
        vec![request(Purpose::Status, Method::Status, None)]
    }

    fn on_net(&mut self, event: NetEvent) -> Vec<Command> {
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
            NetEvent::Connected {
                hello,
                handoff_gap,
                outage,
            } => self.on_connected(*hello, handoff_gap, outage),
            NetEvent::Closed(close) => self.on_closed(close),
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
            NetEvent::Incompatible { message } => {
                self.conn = ConnState::Incompatible { message };
                self.status_in_flight = false;
                if self.disconnected_at.is_none() && self.status.is_some() {
                    self.disconnected_at = Some(self.now);
                }
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
            NetEvent::Lagged(_) => {
                let mut commands = self.request_status(true);
                if self.screen == Screen::Config {
                    commands.extend(self.request_config());
                }
                commands
            }
            NetEvent::Response { purpose, result } => self.on_response(purpose, result),
        }
    }

    fn on_response(
        &mut self,
        purpose: Purpose,
        result: Result<serde_json::Value, RequestError>,
    ) -> Vec<Command> {
        match purpose {
            Purpose::Status => self.on_status(result),
            Purpose::UpdatePreview => self.on_update_preview(result),
            Purpose::UpdateRun => self.on_update_run(result),
            Purpose::UpdateStatus => self.on_update_status(result),
            Purpose::UpdateCheck => self.on_update_check(result),
            Purpose::History => self.on_history(result),
            Purpose::Audit => self.on_audit(result),
            Purpose::ConfigGet => self.on_config_get(result),
            Purpose::ConfigPatch => self.on_config_patch(result),
            Purpose::KillSwitch => self.on_kill_switch(result),
            Purpose::LogsTail => self.on_logs_tail(result),
            Purpose::RunRecord => self.on_run_record(result),
            Purpose::RunsList => self.on_history(result),
            Purpose::Hold => self.on_hold(result),
        }
    }

    fn on_closed(&mut self, close: crate::client::CloseInfo) -> Vec<Command> {
        self.disconnected_at = Some(self.now);
        self.status_in_flight = false;
        self.server = None;
        self.version_notice = None;
        self.logs.subscribed = false;
        self.config.in_flight = false;
        let handoff =
            close.kind() == CloseKind::HandOff || std::mem::take(&mut self.restart_announced);
        self.conn = if handoff {
            self.handoff = Some(Handoff {
                from_pid: self.facts().and_then(|f| f.pid),
                from_version: self.facts().and_then(|f| f.version.clone()),
                to: None,
                gap: None,
            });
            ConnState::HandingOff { attempt: 0 }
        } else {
            ConnState::Reconnecting {
                attempt: 0,
                error: Some(close.to_string()),
            }
        };
        self.update_on_closed();
        Vec::new()
    }

    fn on_connected(
        &mut self,
        hello: Hello,
        handoff_gap: Option<Duration>,
        outage: Option<Outage>,
    ) -> Vec<Command> {
        self.conn = ConnState::Connected;
        self.disconnected_at = None;
        self.status_error = None;
        self.status_in_flight = false;
        self.status_wanted = false;
        self.version_notice = version_notice(&hello);
        self.server = Some(ServerSession {
            product: hello.product(),
            version: hello.server.version.clone(),
            protocol: hello.protocol,
            conn_id: hello.server.conn_id.clone(),
        });
        if outage.is_some() {
            self.outage = outage;
        }
        let facts = Facts::read(&hello, None);
        if let Some(gap) = handoff_gap {
            let to = (facts.pid, facts.version.clone());
            let handoff = self.handoff.get_or_insert(Handoff {
                from_pid: None,
                from_version: None,
                to: None,
                gap: None,
            });
            handoff.to = Some(to);
            handoff.gap = Some(gap);
            let text = handoff.describe();
            self.set_notice(Level::Info, text);
        } else if self.notice.as_ref().is_some_and(|n| n.until_connected) {
            self.notice = None;
        }
        self.status = Some(StatusSnapshot {
            facts,
            received_at: self.now,
            uptime_at: self.now,
        });
        self.hello = Some(hello);
        let mut commands = self.request_status(false);
        commands.extend(self.update_on_connected());
        // Follow and loaded data were per connection; load them again.
        commands.extend(match self.screen {
            Screen::Logs => self.request_logs(),
            Screen::Config => self.request_config(),
            Screen::History => self.request_history_shown(),
            Screen::Update => self.request_update_status(),
            Screen::Overview => Vec::new(),
        });
        commands
    }

    fn on_gateway_event(&mut self, event: GatewayEvent) -> Vec<Command> {
        match event {
            GatewayEvent::Shutdown(shutdown) => {
                self.restart_announced = shutdown.restart_expected_ms.is_some();
                let text = match shutdown.restart_expected_ms {
                    Some(ms) => format!(
                        "gateway restarting ({}), back in ~{} ms",
                        shutdown.reason, ms
                    ),
                    None => format!("gateway shutting down ({})", shutdown.reason),
                };
                self.set_notice(Level::Warn, text);
                if let Some(notice) = &mut self.notice {
                    notice.until_connected = true;
                }
                Vec::new()
            }
            GatewayEvent::UpdateProgress(progress) => {
                self.dirty = true;
                let mut commands = self.on_update_progress(progress);
                commands.extend(self.request_status(true));
                commands
            }
            GatewayEvent::ConfigChanged(changed) => {
                let mut commands = self.request_status(true);
                // A change is a new audit entry.
                if self.screen == Screen::History && self.history.shown == Shown::Audit {
                    commands.extend(self.request_audit());
                }
                if self.config.is_stale(&changed.hash) {
                    commands.extend(self.request_config());
                }
                commands
            }
            GatewayEvent::UpdateRunChanged(changed) => {
                self.dirty = true;
                self.on_run_changed(changed)
            }
            GatewayEvent::RestartScheduled(_)
            | GatewayEvent::RestartDeferred(_)
            | GatewayEvent::RestartChanged(_)
            | GatewayEvent::UpdateAvailable(_) => self.request_status(true),
            GatewayEvent::LogsLine(line) => {
                // Only the Logs screen shows lines: redraw only there.
                if self.logs.push(line.line) && self.screen == Screen::Logs {
                    self.dirty = true;
                }
                Vec::new()
            }
            GatewayEvent::Tick(_) | GatewayEvent::Other { .. } => Vec::new(),
        }
    }

    fn on_status(&mut self, result: Result<serde_json::Value, RequestError>) -> Vec<Command> {
        self.status_in_flight = false;
        match result {
            // Read leniently: a field this console does not know, or one a
            // newer gateway renamed, is unknown, never an error.
            Ok(value) if value.is_object() => {
                if let Some(hello) = &self.hello {
                    let uptime_at = match (value.get("uptimeMs"), &self.status) {
                        (None, Some(previous)) => previous.uptime_at,
                        _ => self.now,
                    };
                    self.status = Some(StatusSnapshot {
                        facts: Facts::read(hello, Some(&value)),
                        received_at: self.now,
                        uptime_at,
                    });
                }
                self.status_error = None;
            }
            Ok(other) => {
                self.status_error = Some(format!(
                    "status is not an object: {}",
                    crate::format::clip(&other.to_string(), 60)
                ));
            }
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

/// Rows moved by PgUp / PgDn.
pub const PAGE: usize = 10;

fn request(purpose: Purpose, method: Method, params: Option<serde_json::Value>) -> Command {
    Command::Net(NetCommand::Request {
        purpose,
        method,
        params,
    })
}

/// A notice when the gateway is newer than this console: it still works,
/// but may have features this console cannot show.
pub fn version_notice(hello: &Hello) -> Option<String> {
    let built = hello
        .snapshot
        .pointer("/build/protocol")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    let server_protocol = built.max(hello.protocol.unwrap_or(0));
    if server_protocol > PROTOCOL_VERSION {
        return Some(format!(
            "gateway speaks protocol {server_protocol}, this console {PROTOCOL_VERSION}: update molt"
        ));
    }
    // Versions of another product (OpenClaw) say nothing about this one.
    if hello.product() != Product::Moltd {
        return None;
    }
    let ours = semver::Version::parse(env!("CARGO_PKG_VERSION")).ok()?;
    let theirs = semver::Version::parse(hello.server.version.as_deref()?).ok()?;
    (theirs > ours).then(|| {
        format!("gateway {theirs} is newer than this console {ours}: some features may be missing")
    })
}
