//! Fakes for the update engine's tests: a scripted step runner standing in
//! for the package manager and git, a restarter that plays the restart
//! engine's part of a handoff, and npm-shaped trees on disk.

use std::collections::HashMap;
use std::fs::{self, Permissions};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use molt_protocol::status::{InstallInfo, RestartStrategy, SupervisorKind};
use molt_protocol::update::{InstallMode, StepRecord, Termination};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::UpdateSlot;
use super::context::{Restarter, RunContext, StepOutput, StepRunner};
use super::runs::RunStore;
use super::steps::StepSpec;
use crate::autoupdate::KillSwitch;
use crate::config::Settings;
use crate::events::EventBus;
use crate::install::layout::Install;
use crate::paths::StatePaths;
use crate::restart::engine::{HandoffExpectation, HandoffFailure, RestartRequest};
use crate::restart::scheduler::{Rejected, RequesterId, Scheduled};

/// The version the fake gateway runs.
pub const RUNNING: &str = "1.0.0";
/// The package the npm trees hold.
pub const PACKAGE: &str = "@molt/moltd";
const PKG_JSON: &str = r#"{"name":"@molt/moltd","version":"VERSION","bin":{"moltd":"bin/moltd"}}"#;
const LINK: &str = "../lib/node_modules/@molt/moltd/bin/moltd";

/// A package root at `version`: its manifest and a `bin/moltd` that
/// prints `moltd <version>`.
pub fn write_package(root: &Path, version: &str) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(
        root.join("package.json"),
        PKG_JSON.replace("VERSION", version),
    )
    .unwrap();
    write_binary(&root.join("bin/moltd"), version);
}

/// An executable that prints `moltd <version>`, as moltd's `--version`.
pub fn write_binary(path: &Path, version: &str) {
    fs::write(path, format!("#!/bin/sh\necho moltd {version}\n")).unwrap();
    fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
}

/// `P/lib/node_modules/@molt/moltd` at `version`, `P/bin/moltd` → it.
pub fn npm_install(p: &Path, version: &str) -> Install {
    let root = p.join("lib/node_modules/@molt/moltd");
    write_package(&root, version);
    fs::create_dir_all(p.join("bin")).unwrap();
    symlink(LINK, p.join("bin/moltd")).unwrap();
    Install {
        mode: InstallMode::Npm,
        package: PACKAGE.into(),
        prefix: p.to_path_buf(),
        root,
        entrypoint: p.join("bin/moltd"),
    }
}

/// What `npm i -g --prefix <stage>` leaves in `stage`.
pub fn npm_stage_at(stage: &Path, version: &str) {
    write_package(&stage.join("lib/node_modules/@molt/moltd"), version);
    fs::create_dir_all(stage.join("bin")).unwrap();
    symlink(LINK, stage.join("bin/moltd")).unwrap();
}

/// A stage of `version` beside `install`'s live tree.
pub fn npm_stage(install: &Install, version: &str) -> PathBuf {
    let stage = install.prefix.join(format!("lib/.molt-stage-{version}"));
    let _ = fs::remove_dir_all(&stage);
    npm_stage_at(&stage, version);
    stage
}

type Effect = Box<dyn Fn(&StepSpec) + Send + Sync>;

/// Holds a step until the test opens it, counting who waits there.
pub struct Gate {
    entered: tokio::sync::watch::Sender<usize>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: tokio::sync::watch::Sender::new(0),
            open: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Waits until `n` steps have reached the gate.
    pub async fn entered(&self, n: usize) {
        let mut entered = self.entered.subscribe();
        entered.wait_for(|e| *e >= n).await.unwrap();
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.entered.send_modify(|e| *e += 1);
        let mut open = self.open.subscribe();
        open.wait_for(|o| *o).await.unwrap();
    }
}

/// Answers each command by its step name: an exit code and stdout (exit 0
/// and no output for a step it was not told about), after running the
/// step's effect on disk if it has one.
#[derive(Default)]
pub struct FakeSteps {
    answers: Mutex<HashMap<String, (i32, String)>>,
    effects: Mutex<HashMap<String, Effect>>,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    ran: Mutex<Vec<StepSpec>>,
    tool: Option<PathBuf>,
}

impl FakeSteps {
    /// A package manager found at `/fake/<mode>`.
    pub fn with_tool() -> Self {
        Self {
            tool: Some(PathBuf::from("/fake/npm")),
            ..Self::default()
        }
    }

    pub fn answer(self, step: &str, exit: i32, stdout: &str) -> Self {
        self.answers
            .lock()
            .insert(step.to_owned(), (exit, stdout.to_owned()));
        self
    }

    pub fn on(self, step: &str, effect: impl Fn(&StepSpec) + Send + Sync + 'static) -> Self {
        self.effects
            .lock()
            .insert(step.to_owned(), Box::new(effect));
        self
    }

    /// Every `step` waits at `gate` before it answers.
    pub fn gated(self, step: &str, gate: Arc<Gate>) -> Self {
        self.gates.lock().insert(step.to_owned(), gate);
        self
    }

    /// The commands started, by step name, in order.
    pub fn ran(&self) -> Vec<String> {
        self.ran.lock().iter().map(|s| s.name.clone()).collect()
    }

    pub fn spec(&self, step: &str) -> StepSpec {
        let ran = self.ran.lock();
        ran.iter().find(|s| s.name == step).cloned().unwrap()
    }
}

impl StepRunner for FakeSteps {
    fn tool(&self, _mode: InstallMode) -> Option<PathBuf> {
        self.tool.clone()
    }

    fn run<'a>(
        &'a self,
        spec: &'a StepSpec,
        _cancel: &'a CancellationToken,
        _max_stdout: usize,
    ) -> Pin<Box<dyn std::future::Future<Output = StepOutput> + Send + 'a>> {
        self.ran.lock().push(spec.clone());
        if let Some(effect) = self.effects.lock().get(&spec.name) {
            effect(spec);
        }
        let (exit, stdout) = self
            .answers
            .lock()
            .get(&spec.name)
            .cloned()
            .unwrap_or_default();
        let record = StepRecord {
            name: spec.name.clone(),
            command: spec.argv.join(" "),
            argv: spec.argv.clone(),
            cwd: spec.cwd.as_ref().map(|c| c.display().to_string()),
            duration_ms: 1,
            exit_code: Some(exit),
            termination: Termination::Exited,
            stdout_head: String::new(),
            stdout_tail: stdout.clone(),
            stderr_head: String::new(),
            stderr_tail: if exit == 0 {
                String::new()
            } else {
                "boom".to_owned()
            },
        };
        let gate = self.gates.lock().get(&spec.name).cloned();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.pass().await;
            }
            (record, Some(stdout))
        })
    }
}

/// How the fake restart engine answers a request.
#[derive(Clone, Debug)]
pub enum Handoff {
    /// The successor proved itself.
    Succeeds,
    /// The successor failed: the rollback runs, then the failure is told.
    Fails(Arc<HandoffFailure>),
    /// Another restart is in flight.
    Rejected,
    /// Scheduled; nothing fires while the test runs.
    Pending,
}

/// A restart request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    pub reason: String,
    pub delay_ms: Option<u64>,
    pub skip_deferral: bool,
    pub skip_cooldown: bool,
    pub requester: Option<RequesterId>,
    pub expected_version: Option<String>,
}

/// Plays the restart engine: a handoff ends as [`Handoff`] says, with the
/// rollback on the blocking pool before the outcome is told, as the real
/// engine does.
pub struct FakeRestarter {
    handoff: Handoff,
    pub requests: Mutex<Vec<Requested>>,
    /// Expectations of restarts that never fire, kept so their run waits.
    pending: Mutex<Vec<HandoffExpectation>>,
}

impl FakeRestarter {
    pub fn new(handoff: Handoff) -> Arc<Self> {
        Arc::new(Self {
            handoff,
            requests: Mutex::default(),
            pending: Mutex::default(),
        })
    }
}

impl Restarter for FakeRestarter {
    fn request(&self, request: RestartRequest) -> Result<Scheduled, Rejected> {
        if let Handoff::Rejected = self.handoff {
            return Err(Rejected::InFlight {
                reason: "operator".to_owned(),
            });
        }
        self.requests.lock().push(Requested {
            reason: request.reason.clone(),
            delay_ms: request.delay_ms,
            skip_deferral: request.skip_deferral,
            skip_cooldown: request.skip_cooldown,
            requester: request.requester,
            expected_version: request.expectation.as_ref().map(|e| e.version.clone()),
        });
        let scheduled = Scheduled {
            pid: std::process::id(),
            delay_ms: request.delay_ms.unwrap_or(2000),
            reason: request.reason,
            mode: RestartStrategy::Respawn,
            coalesced: false,
            cooldown_ms_applied: 0,
            fire_at: Instant::now(),
        };
        let Some(expectation) = request.expectation else {
            return Ok(scheduled);
        };
        match self.handoff.clone() {
            Handoff::Succeeds => {
                let _ = expectation.done.send(Ok(Some(4242)));
            }
            Handoff::Fails(failure) => {
                tokio::spawn(async move {
                    let (rollback, why) = (expectation.on_failure, Arc::clone(&failure));
                    tokio::task::spawn_blocking(move || rollback(&why))
                        .await
                        .unwrap();
                    let _ = expectation.done.send(Err(failure));
                });
            }
            Handoff::Pending => self.pending.lock().push(expectation),
            Handoff::Rejected => unreachable!(),
        }
        Ok(scheduled)
    }
}

/// A run context on a state dir under `dir`, with the fakes given.
pub fn context(
    dir: &Path,
    install: InstallInfo,
    steps: Arc<FakeSteps>,
    restart: Arc<FakeRestarter>,
) -> RunContext {
    let paths = StatePaths::in_dir(dir.join("state"), None);
    fs::create_dir_all(&paths.state_dir).unwrap();
    RunContext {
        runs: RunStore::new(paths.runs_path.clone()),
        events: EventBus::default(),
        restart,
        cancel: CancellationToken::new(),
        steps,
        slot: Arc::new(UpdateSlot::default()),
        paths,
        install,
        supervisor: SupervisorKind::None,
        version: RUNNING.to_owned(),
        settings: Settings::default().update,
        restart_enabled: true,
        kill_switch: Arc::new(|| KillSwitch { source: None }),
    }
}

/// What `install::detect` reports for `install`.
pub fn installed(install: &Install) -> InstallInfo {
    InstallInfo {
        surface: install.mode,
        root: Some(install.root.display().to_string()),
        entrypoint: Some(install.entrypoint.display().to_string()),
        source: "detected".to_owned(),
    }
}
