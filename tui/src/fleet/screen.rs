//! The Fleet screen: one live row per gateway. Each gateway has its own
//! network task (reconnecting with its own backoff) and its own [`App`],
//! fed every event of its gateway whether or not it is shown, so a row is
//! always that gateway's current state and `Enter` opens its full console
//! at once. A dead host only ever delays its own row.

use std::io;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::file::RolloutDefaults;
use super::panel::{self, Choosing, MAX_TARGET, RolloutEvent, RolloutPanel};
use super::record;
use super::settings::Setting;
use super::start::Request;
use super::{Fleet, Gateway};
use crate::app::keymap::TextKey;
use crate::app::{App, Command, ConnState, Event};
use crate::client::ClientMode;
use crate::net::{self, Backoff, NetCommand, NetEvent};
use crate::peer::Facts;
use crate::runtime::{RunError, TICK, color_enabled};
use crate::{term, ui};

/// Net events handled per redraw at most.
const NET_BATCH: usize = 512;
/// Events a gateway's task may queue before it waits for the screen.
const HOST_QUEUE: usize = 64;

/// How rows are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// As in the fleet file.
    File,
    Name,
    /// Unreachable first: what needs attention on top.
    State,
    Version,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::File => Sort::Name,
            Sort::Name => Sort::State,
            Sort::State => Sort::Version,
            Sort::Version => Sort::File,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::File => "file order",
            Sort::Name => "name",
            Sort::State => "state",
            Sort::Version => "version",
        }
    }
}

pub struct Host {
    pub gateway: Gateway,
    pub app: App,
}

impl Host {
    /// What the gateway last reported: its status, else its `hello-ok`.
    pub fn facts(&self) -> Option<Facts> {
        match (&self.app.status, &self.app.hello) {
            (Some(snapshot), _) => Some(snapshot.facts.clone()),
            (None, Some(hello)) => Some(Facts::read(hello, None)),
            (None, None) => None,
        }
    }

    fn rank(&self) -> u8 {
        match self.app.conn {
            ConnState::AuthFailed { .. } | ConnState::Incompatible { .. } => 0,
            ConnState::Reconnecting { .. } => 1,
            ConnState::Connecting | ConnState::HandingOff { .. } => 2,
            ConnState::Connected => 3,
        }
    }
}

/// What the Fleet screen shows and where the cursor is.
pub struct FleetView {
    pub path: String,
    pub hosts: Vec<Host>,
    /// Problems with the fleet file's entries.
    pub problems: Vec<String>,
    /// Row indices into `hosts`, filtered and sorted.
    pub order: Vec<usize>,
    /// Position in `order`.
    pub selected: usize,
    pub groups: Vec<String>,
    /// Index into `groups`; `None` shows every gateway.
    pub group: Option<usize>,
    pub sort: Sort,
    /// The gateway whose full console is open.
    pub open: Option<usize>,
    pub color: bool,
    pub panel: RolloutPanel,
    defaults: RolloutDefaults,
    now: Instant,
    dirty: bool,
}

/// What the view asks the loop to do.
#[derive(Debug, PartialEq)]
pub enum FleetCommand {
    Net(usize, NetCommand),
    /// Start, continue or roll back a rollout in a task of the loop.
    Rollout(Request),
    /// Apply a setting on these gateways, each with its own method.
    Apply(Setting, Vec<String>),
    Quit,
}

impl FleetView {
    pub fn new(fleet: &Fleet, color: bool, now: Instant) -> FleetView {
        let hosts = fleet
            .gateways
            .iter()
            .map(|gateway| {
                let mut app = App::new(gateway.address(), color, now);
                app.origin = format!(
                    "{} ({} line {})",
                    gateway.name,
                    fleet.path.display(),
                    gateway.line
                );
                Host {
                    gateway: gateway.clone(),
                    app,
                }
            })
            .collect();
        let mut view = FleetView {
            path: fleet.path.display().to_string(),
            hosts,
            problems: fleet
                .errors
                .iter()
                .chain(&fleet.warnings)
                .cloned()
                .collect(),
            order: Vec::new(),
            selected: 0,
            groups: fleet.groups().into_iter().map(str::to_owned).collect(),
            group: None,
            sort: Sort::File,
            open: None,
            color,
            panel: last_rollout(fleet),
            defaults: fleet.rollout.clone(),
            now,
            dirty: true,
        };
        view.reorder();
        view
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn set_now(&mut self, now: Instant) {
        self.now = now.max(self.now);
        for host in &mut self.hosts {
            host.app.set_now(self.now);
        }
    }

    pub fn take_dirty(&mut self) -> bool {
        let mut dirty = std::mem::take(&mut self.dirty);
        // Every app's flag is cleared: a hidden console must not keep the
        // screen redrawing.
        for (i, host) in self.hosts.iter_mut().enumerate() {
            let changed = host.app.take_dirty();
            dirty |= changed && (self.open.is_none() || self.open == Some(i));
        }
        dirty
    }

    pub fn group_name(&self) -> Option<&str> {
        self.group.map(|g| self.groups[g].as_str())
    }

    fn reorder(&mut self) {
        let group = self.group_name().map(str::to_owned);
        let mut order: Vec<usize> = (0..self.hosts.len())
            .filter(|i| {
                group
                    .as_deref()
                    .is_none_or(|g| self.hosts[*i].gateway.in_group(g))
            })
            .collect();
        match self.sort {
            Sort::File => {}
            Sort::Name => order.sort_by(|a, b| {
                self.hosts[*a]
                    .gateway
                    .name
                    .cmp(&self.hosts[*b].gateway.name)
            }),
            Sort::State => order.sort_by_key(|i| self.hosts[*i].rank()),
            Sort::Version => order.sort_by_key(|i| {
                self.hosts[*i]
                    .facts()
                    .and_then(|f| f.version)
                    .and_then(|v| semver::Version::parse(&v).ok())
            }),
        }
        let keep = self.order.get(self.selected).copied();
        self.order = order;
        self.selected = keep
            .and_then(|k| self.order.iter().position(|i| *i == k))
            .unwrap_or(0)
            .min(self.order.len().saturating_sub(1));
        self.dirty = true;
    }

    /// Handles one event; the commands for the loop.
    pub fn handle(&mut self, event: FleetEvent) -> Vec<FleetCommand> {
        match event {
            FleetEvent::Net(i, event) => {
                let Some(host) = self.hosts.get_mut(i) else {
                    return Vec::new();
                };
                let commands = host.app.handle(Event::Net(event));
                if self.sort == Sort::State || self.sort == Sort::Version {
                    self.reorder();
                }
                self.dirty |= self.open.is_none();
                lift(i, commands)
            }
            FleetEvent::Tick => {
                let mut out = Vec::new();
                for (i, host) in self.hosts.iter_mut().enumerate() {
                    out.extend(lift(i, host.app.handle(Event::Tick)));
                }
                self.dirty |= self.open.is_none();
                out
            }
            FleetEvent::Resize => {
                self.dirty = true;
                Vec::new()
            }
            FleetEvent::Key(key) => self.key(key),
            FleetEvent::Rollout(event) => {
                self.panel.handle(event);
                self.dirty |= self.open.is_none();
                Vec::new()
            }
        }
    }

    fn key(&mut self, key: KeyEvent) -> Vec<FleetCommand> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if let Some(i) = self.open {
            let app = &mut self.hosts[i].app;
            let idle = !app.show_help
                && app.update.dialog.is_none()
                && app.text_input().is_none()
                && app.notice.is_none();
            if key.code == KeyCode::Esc && idle {
                self.open = None;
                self.dirty = true;
                return Vec::new();
            }
            return lift(i, app.handle(Event::Key(key)));
        }
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            return vec![FleetCommand::Quit];
        }
        // Ctrl-Q is not q, Alt-g is not g.
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return Vec::new();
        }
        if self.panel.prompt.is_some() {
            return self.prompt_key(key);
        }
        if let Some(choosing) = self.panel.choosing {
            self.dirty = true;
            let on = match key.code {
                KeyCode::Char('y') => true,
                KeyCode::Char('n') => false,
                KeyCode::Esc => {
                    self.panel.choosing = None;
                    return Vec::new();
                }
                _ => return Vec::new(),
            };
            self.panel.choosing = None;
            self.panel.applied = None;
            let names = self
                .order
                .iter()
                .map(|i| self.hosts[*i].gateway.name.clone())
                .collect();
            return vec![FleetCommand::Apply(choosing.setting(on), names)];
        }
        if let KeyCode::Char(c @ ('K' | 'A')) = key.code {
            self.dirty = true;
            self.panel.prompt = None;
            self.panel.choosing = Some(if c == 'K' {
                Choosing::KillSwitch
            } else {
                Choosing::AutoUpdate
            });
            return Vec::new();
        }
        if let KeyCode::Char(c @ ('U' | 'R' | 'S' | 'B')) = key.code {
            self.dirty = true;
            return self.rollout_key(c);
        }
        let page = 10;
        let last = self.order.len().saturating_sub(1);
        match key.code {
            KeyCode::Char('q') => return vec![FleetCommand::Quit],
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(page),
            KeyCode::PageDown => self.selected = (self.selected + page).min(last),
            KeyCode::Home => self.selected = 0,
            KeyCode::End => self.selected = last,
            KeyCode::Enter => {
                if let Some(i) = self.order.get(self.selected).copied() {
                    self.open = Some(i);
                    self.hosts[i].app.set_now(self.now);
                    // Draw it whole at once.
                    let _ = self.hosts[i].app.handle(Event::Resize);
                }
            }
            KeyCode::Char('g') => {
                self.group = match self.group {
                    None if !self.groups.is_empty() => Some(0),
                    Some(g) if g + 1 < self.groups.len() => Some(g + 1),
                    _ => None,
                };
                self.reorder();
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.reorder();
            }
            KeyCode::Char('r') => {
                return self
                    .order
                    .iter()
                    .filter(|i| self.hosts[**i].app.conn != ConnState::Connected)
                    .map(|i| FleetCommand::Net(*i, NetCommand::ReconnectNow))
                    .collect();
            }
            _ => return Vec::new(),
        }
        self.dirty = true;
        Vec::new()
    }

    /// `U` types a target; `R` resumes the unfinished rollout, `S`
    /// continues it without the gateway it halted at, `B` rolls its
    /// verified gateways back.
    fn rollout_key(&mut self, key: char) -> Vec<FleetCommand> {
        if self.panel.running {
            self.panel.error = Some("a rollout is running; wait for it to end".to_owned());
            return Vec::new();
        }
        if key == 'U' {
            self.panel.prompt = Some(String::new());
            self.panel.error = None;
            return Vec::new();
        }
        let Some(unfinished) = self.panel.unfinished() else {
            self.panel.error = Some("no halted rollout to continue: U starts one".to_owned());
            return Vec::new();
        };
        let mut request = self.request(None);
        match key {
            'R' => request.resume = true,
            'B' => request.rollback = true,
            _ => match &unfinished.halt {
                Some(halt) => request.skip = vec![halt.host.clone()],
                None => {
                    self.panel.error = Some("nothing halted to skip: R resumes".to_owned());
                    return Vec::new();
                }
            },
        }
        self.start(request)
    }

    fn prompt_key(&mut self, key: KeyEvent) -> Vec<FleetCommand> {
        self.dirty = true;
        let Some(target) = &mut self.panel.prompt else {
            return Vec::new();
        };
        match crate::app::keymap::text_key(key) {
            Some(TextKey::Discard) => self.panel.prompt = None,
            Some(edit) => {
                if !crate::app::edit_text(target, &edit, MAX_TARGET) {
                    return Vec::new();
                }
                let target = target.trim().to_owned();
                if let Err(problem) = crate::app::validate_tag(&target) {
                    self.panel.error = Some(format!("bad target {target:?}: {problem}"));
                    return Vec::new();
                }
                self.panel.prompt = None;
                let mut request = self.request((!target.is_empty()).then_some(target));
                // Asked on the screen, with the last rollout's state shown.
                request.new = true;
                return self.start(request);
            }
            None => {}
        }
        Vec::new()
    }

    /// A request on the gateways shown (the group filter) with the fleet
    /// file's waves.
    fn request(&self, target: Option<String>) -> Request {
        Request {
            target,
            group: self.group_name().map(str::to_owned),
            wave: self.defaults.wave,
            canary: self.defaults.canary.clone(),
            resume: false,
            skip: Vec::new(),
            rollback: false,
            new: false,
        }
    }

    fn start(&mut self, request: Request) -> Vec<FleetCommand> {
        self.panel.running = true;
        self.panel.error = None;
        self.panel.log.clear();
        vec![FleetCommand::Rollout(request)]
    }
}

/// The panel as the record of this fleet's last rollout leaves it.
fn last_rollout(fleet: &Fleet) -> RolloutPanel {
    let record = record::path_for(&fleet.path).and_then(|path| record::load(&path));
    match record {
        Ok(rollout) => RolloutPanel::new(rollout, None),
        Err(e) => RolloutPanel::new(None, Some(e.to_string())),
    }
}

fn lift(i: usize, commands: Vec<Command>) -> Vec<FleetCommand> {
    commands
        .into_iter()
        .map(|c| match c {
            Command::Net(net) => FleetCommand::Net(i, net),
            Command::Quit => FleetCommand::Quit,
        })
        .collect()
}

/// What the fleet loop feeds the view.
#[derive(Clone, Debug, PartialEq)]
pub enum FleetEvent {
    Key(KeyEvent),
    Resize,
    Tick,
    Net(usize, NetEvent),
    Rollout(RolloutEvent),
}

/// The loop's ends of every gateway's network task.
pub struct FleetLink {
    pub events: mpsc::Receiver<(usize, NetEvent)>,
    pub commands: Vec<mpsc::UnboundedSender<NetCommand>>,
    /// The fleet a rollout task runs on, and its progress back.
    pub fleet: Fleet,
    pub rollout_tx: mpsc::UnboundedSender<RolloutEvent>,
    pub rollouts: mpsc::UnboundedReceiver<RolloutEvent>,
}

/// Starts one network task per gateway, each with its own backoff; their
/// events arrive tagged with the gateway's index.
pub fn connect_all(fleet: &Fleet, cancel: &CancellationToken, tasks: &TaskTracker) -> FleetLink {
    let (tx, events) = mpsc::channel(NET_BATCH);
    let mut commands = Vec::new();
    for (i, gateway) in fleet.gateways.iter().enumerate() {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (host_tx, mut host_rx) = mpsc::channel(HOST_QUEUE);
        let gateway = gateway.clone();
        let resolve: net::Resolve = Box::new(move || gateway.connect_options(ClientMode::Tui));
        tasks.spawn(net::run(
            resolve,
            Backoff::default(),
            command_rx,
            host_tx,
            cancel.clone(),
        ));
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(event) = host_rx.recv().await {
                if tx.send((i, event)).await.is_err() {
                    break;
                }
            }
        });
        commands.push(command_tx);
    }
    let (rollout_tx, rollouts) = mpsc::unbounded_channel();
    FleetLink {
        events,
        commands,
        fleet: fleet.clone(),
        rollout_tx,
        rollouts,
    }
}

/// Runs the Fleet screen until quit, end of input or `shutdown`.
pub async fn run_loop<B, S>(
    terminal: &mut Terminal<B>,
    view: &mut FleetView,
    mut input: S,
    link: &mut FleetLink,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    draw(terminal, view)?;
    loop {
        let event = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            input = input.next() => match input {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(TermEvent::Key(key))) => FleetEvent::Key(key),
                Some(Ok(TermEvent::Resize(..))) => FleetEvent::Resize,
                Some(Ok(_)) => continue,
            },
            Some((i, event)) = link.events.recv() => FleetEvent::Net(i, event),
            Some(event) = link.rollouts.recv() => FleetEvent::Rollout(event),
            _ = ticker.tick() => FleetEvent::Tick,
        };
        if apply(view, event, link)? {
            return Ok(());
        }
        for _ in 0..NET_BATCH {
            let Ok((i, event)) = link.events.try_recv() else {
                break;
            };
            if apply(view, FleetEvent::Net(i, event), link)? {
                return Ok(());
            }
        }
        draw(terminal, view)?;
    }
}

fn apply(view: &mut FleetView, event: FleetEvent, link: &FleetLink) -> Result<bool, RunError> {
    view.set_now(Instant::now());
    for command in view.handle(event) {
        match command {
            FleetCommand::Quit => return Ok(true),
            // Quitting mid-rollout leaves its record `running`: the next
            // console shows where it stopped and resumes it.
            FleetCommand::Rollout(request) => {
                tokio::spawn(panel::run(
                    link.fleet.clone(),
                    request,
                    link.rollout_tx.clone(),
                ));
            }
            FleetCommand::Apply(setting, names) => {
                tokio::spawn(panel::apply(
                    link.fleet.clone(),
                    setting,
                    names,
                    link.rollout_tx.clone(),
                ));
            }
            FleetCommand::Net(i, command) => {
                // A gateway's task that stopped only loses its own row.
                if let Some(tx) = link.commands.get(i) {
                    let _ = tx.send(command);
                }
            }
        }
    }
    Ok(false)
}

fn draw<B>(terminal: &mut Terminal<B>, view: &mut FleetView) -> Result<(), RunError>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if view.take_dirty() {
        terminal
            .draw(|frame| match view.open {
                Some(i) => ui::render(&view.hosts[i].app, frame),
                None => ui::fleet::render(view, frame),
            })
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// The Fleet screen on the real terminal.
pub async fn run(fleet: Fleet) -> Result<(), RunError> {
    tracing::info!(path = %fleet.path.display(), gateways = fleet.gateways.len(), "fleet console starting");
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut link = connect_all(&fleet, &cancel, &tasks);
    let mut view = FleetView::new(&fleet, color_enabled(), Instant::now());
    let result = match term::enter() {
        Ok((mut terminal, guard)) => {
            let input = crossterm::event::EventStream::new();
            let result = run_loop(
                &mut terminal,
                &mut view,
                input,
                &mut link,
                crate::runtime::shutdown_signal(),
            )
            .await;
            drop(guard);
            result
        }
        Err(e) => Err(e.into()),
    };
    cancel.cancel();
    tasks.close();
    // The tasks close their sockets politely; do not hang on them.
    if tokio::time::timeout(Duration::from_secs(3), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("network tasks did not stop in time");
    }
    result
}
