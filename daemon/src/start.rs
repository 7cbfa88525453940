//! Startup in order (docs/operations.md, "What happens at start"): config
//! → lock → bind → serve. Every refusal happens before any heavy work and
//! maps to an exit code.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use molt_protocol::state;
use molt_protocol::status::{RestartStrategy, SupervisorKind};

use crate::config::{AuthMode, ConfigError, ConfigStore, PatchError};
use crate::env_file::{Env, read_env_file};
use crate::gateway::{Gateway, GatewayParts};
use crate::identity::{Identity, VERSION};
use crate::lock::{GatewayLock, LockError, LockInfo};
use crate::logging::LogHub;
use crate::paths::{PathsError, StatePaths};
use crate::restart::engine::{RestartEngine, Takeover};
use crate::restart::inherit::{Inherited, NotAccepted, ReadyPipe, VERDICT_WAIT, VerdictPipe};
use crate::restart::respawn::SuccessorSpec;
use crate::restart::scheduler::Scheduler;
use crate::{install, server, supervisor};
use molt_protocol::secret::MIN_TOKEN_CHARS;
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

mod listeners;

pub use listeners::{LISTEN_BACKLOG, refuse_queued};
use listeners::{
    adopt_listener, adoptable, bind_host, credentials, dup_listener, gateway_tls, listen,
    local_socket, same_address,
};

/// Exit code for refusals a supervisor must not retry
/// (`RestartPreventExitStatus=78`, `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "moltd",
    version = VERSION,
    about = "The molt gateway daemon: updates and restarts itself without going dark.",
    after_help = "Prints `READY <addr> <version> <pid>` on stdout once it serves.\n\
                  Exit codes: 0 stopped cleanly (or handed off to its successor), 1 unexpected \
                  error, 2 bad flags, 78 refused to start (config, lock or port held, unsafe \
                  bind, port not allowed, or a successor its predecessor did not accept) - do not \
                  restart."
)]
pub struct Options {
    /// Port to listen on (0 = any free port; the READY line tells which).
    #[arg(long)]
    pub port: Option<u16>,
    /// Bind mode (`loopback`, `lan`) or an IP address.
    #[arg(long)]
    pub bind: Option<String>,
    /// State directory (default $OPENCLAW_STATE_DIR, else ~/.openclaw).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// Name the supervisor that restarts moltd (`systemd`, `launchd`, any
    /// name, or `none`).
    #[arg(long)]
    pub supervisor: Option<String>,
    /// How to restart: hand off to a successor, exit for the supervisor,
    /// or exec in place.
    #[arg(long, value_enum)]
    pub restart_mode: Option<RestartMode>,
    /// Log line format on stderr and in the log file (overrides
    /// `logging.format`).
    #[arg(long, value_enum)]
    pub log_format: Option<crate::logging::LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// After the service stopped (systemd runs it as ExecStopPost= from the
    /// state dir's rescue/ copy): roll back an update whose version keeps
    /// failing. Without $SERVICE_RESULT it only says what is armed.
    Rescue,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    Respawn,
    Supervised,
    Exec,
}

impl From<RestartMode> for RestartStrategy {
    fn from(mode: RestartMode) -> Self {
        match mode {
            RestartMode::Respawn => RestartStrategy::Respawn,
            RestartMode::Supervised => RestartStrategy::Supervised,
            RestartMode::Exec => RestartStrategy::Exec,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    EnvFile { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("port {port} on {host} is in use by another process")]
    PortBusy { host: IpAddr, port: u16 },
    #[error(
        "refusing to listen on {host} without authentication: set gateway.auth.mode to \"token\" \
         or bind to loopback"
    )]
    UnsafeBind { host: IpAddr },
    #[error(
        "refusing to listen on {host} with a short credential ({sources}): use at least \
         {MIN_TOKEN_CHARS} characters, or bind to loopback"
    )]
    ShortToken { host: IpAddr, sources: String },
    #[error("--bind {0}: expected loopback, lan or an IP address")]
    BadBind(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot store the generated token in {path}: {source}")]
    StoreToken {
        path: PathBuf,
        source: Box<PatchError>,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A successor its predecessor did not accept: it goes without having
    /// claimed anything.
    #[error(transparent)]
    NotAccepted(#[from] NotAccepted),
}

impl StartError {
    /// 78 for refusals that a restart would only repeat; 1 for what may
    /// pass (out of memory or file descriptors while binding).
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Bind { source, .. }
                if !matches!(
                    source.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::AddrNotAvailable
                ) =>
            {
                1
            }
            _ => EXIT_CONFIG,
        }
    }
}

/// What the process brings to [`prepare`] besides flags.
#[derive(Default)]
pub struct Launch {
    /// The process environment (injected so tests do not depend on the
    /// caller's).
    pub process_env: HashMap<String, String>,
    pub logs: LogHub,
    /// What a predecessor or systemd handed over.
    pub inherited: Inherited,
    /// How to start a successor; `None` disables respawn and exec.
    pub successor: Option<SuccessorSpec>,
}

/// A gateway that holds its lock and its listener, ready to serve.
pub struct Prepared {
    gateway: Gateway,
    listeners: server::Listeners,
    addr: SocketAddr,
    ready_pipe: Option<ReadyPipe>,
    /// The predecessor's verdict on this process, after READY.
    verdict: Option<VerdictPipe>,
    /// The lock came from a predecessor (a respawn or this pid before an
    /// exec), whose details it still names until this process claims it.
    lock_inherited: bool,
    sigusr1: Option<Signal>,
}

impl Prepared {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// `READY <addr> <version> <pid>`.
    pub fn ready_line(&self) -> String {
        let id = self.gateway.identity();
        molt_protocol::ready::ReadyLine {
            addr: self.addr.to_string(),
            version: id.version.clone(),
            pid: id.pid,
        }
        .to_string()
    }

    /// Announces readiness: to the predecessor waiting on the handoff
    /// pipe first; once it accepted this process (or died mid-handoff),
    /// in `gateway.lock` and to systemd. A successor that was not accepted
    /// has claimed nothing and must exit without serving or starting any
    /// work: its predecessor serves on (docs/design.md, "Restart rules").
    pub async fn announce_ready(&mut self) -> Result<(), StartError> {
        let line = self.ready_line();
        if let Some(pipe) = self.ready_pipe.take() {
            pipe.ready(&line);
        }
        if let Some(verdict) = self.verdict.take() {
            let accepted = verdict.wait(VERDICT_WAIT).await?;
            tracing::info!(?accepted, "taking over from the predecessor");
        }
        let inherited = std::mem::take(&mut self.lock_inherited);
        // Accepted, or started by a supervisor after a restart: the
        // predecessor's counts go on here.
        self.gateway.take_over(inherited);
        if inherited && let Err(e) = self.gateway.claim_lock() {
            tracing::warn!("cannot record this process in the lock file: {e}");
        }
        crate::supervisor::notify_ready(&line);
        Ok(())
    }

    /// Serves until `shutdown` completes or the gateway stops itself.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Prepared {
            gateway,
            listeners,
            sigusr1,
            ..
        } = self;
        let driver = {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.drive_restarts(sigusr1).await })
        };
        server::serve(listeners, gateway, shutdown).await;
        driver.abort();
        let _ = driver.await;
    }
}

/// Reads config, takes (or adopts) the lock, binds (or adopts) the
/// listener. A refusal is also sent to a predecessor waiting on the
/// handoff pipe, so that it can report why its successor did not start.
pub async fn prepare(options: &Options, mut launch: Launch) -> Result<Prepared, StartError> {
    let mut ready_pipe = launch.inherited.ready.take();
    let verdict = launch.inherited.verdict.take();
    match prepare_with(options, launch, &mut ready_pipe).await {
        Ok(prepared) => Ok(Prepared {
            ready_pipe,
            verdict,
            ..prepared
        }),
        Err(e) => {
            if let Some(pipe) = ready_pipe {
                pipe.refused(&e.to_string());
            }
            Err(e)
        }
    }
}

async fn prepare_with(
    options: &Options,
    launch: Launch,
    ready_pipe: &mut Option<ReadyPipe>,
) -> Result<Prepared, StartError> {
    let Launch {
        process_env,
        logs,
        inherited,
        successor,
    } = launch;
    let progress = |pipe: &mut Option<ReadyPipe>, stage: &str| {
        if let Some(pipe) = pipe.as_mut() {
            pipe.progress(stage);
        }
    };
    let identity = Identity::current();
    progress(ready_pipe, &format!("started {}", identity.pid));
    let lookup = |key: &str| process_env.get(key).cloned();
    let paths = StatePaths::resolve(options.state_dir.as_deref(), &lookup)?;
    crate::fsutil::ensure_private_dir(&paths.state_dir).map_err(|source| StartError::EnvFile {
        path: paths.state_dir.clone(),
        source,
    })?;
    let env_file = read_env_file(&paths.env_path).map_err(|source| StartError::EnvFile {
        path: paths.env_path.clone(),
        source,
    })?;
    let env = Env::new(process_env.clone(), env_file);
    let mut config = ConfigStore::open(&paths.config_path)?;
    let settings = config.settings()?;
    progress(ready_pipe, "config");

    let port = options.port.unwrap_or(settings.gateway.port);
    let host = bind_host(options.bind.as_deref(), &settings)?;
    // Socket activation (an inherited listener without a molt handoff):
    // the socket unit decides where moltd listens. Binding the configured
    // address instead would leave the activated port queueing connections
    // that nobody ever accepts.
    let activated = match (&inherited.listener, inherited.predecessor) {
        (Some(listener), None) => {
            Some(listener.local_addr().map_err(|source| StartError::Bind {
                addr: SocketAddr::new(host, port),
                source,
            })?)
        }
        _ => None,
    };
    let listen_host = activated.map_or(host, |a| a.ip());

    if settings.gateway.auth_mode == AuthMode::None && !listen_host.is_loopback() {
        return Err(StartError::UnsafeBind { host: listen_host });
    }

    let lock_inherited = inherited.lock.is_some();
    let mut lock = match inherited.lock {
        Some(file) => GatewayLock::from_inherited(file, &paths.lock_path)?,
        None => GatewayLock::acquire(
            &paths.lock_path,
            LockInfo {
                pid: identity.pid,
                started_at: identity.started_at_ms,
                port,
                version: identity.version.clone(),
            },
        )?,
    };
    progress(ready_pipe, "lock");

    let auth = credentials(&settings, &env, &mut config, &paths)?;
    let short = auth.short_tokens();
    if !short.is_empty() {
        if !listen_host.is_loopback() {
            return Err(StartError::ShortToken {
                host: listen_host,
                sources: short.join(", "),
            });
        }
        tracing::warn!(
            credentials = %short.join(", "),
            "a credential is shorter than {MIN_TOKEN_CHARS} characters: easy to guess"
        );
    }
    let tls = gateway_tls(&settings, &paths)?;

    let addr = SocketAddr::new(host, port);
    let listener = match (inherited.listener, activated) {
        (Some(listener), Some(have)) => {
            if !same_address(have, addr) {
                tracing::warn!(
                    %have, configured = %addr,
                    "serving on the socket systemd passed in, not the configured address; \
                     change ListenStream= in the socket unit to move the gateway"
                );
            }
            adopt_listener(listener, have)?
        }
        (inherited, _) => match adoptable(inherited, addr) {
            Some(listener) => adopt_listener(listener, addr)?,
            None => listen(addr).map_err(|source| {
                if source.kind() == io::ErrorKind::AddrInUse {
                    StartError::PortBusy { host, port }
                } else {
                    StartError::Bind { addr, source }
                }
            })?,
        },
    };
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    if addr.port() != port && inherited.predecessor.is_none() {
        lock.set_port(addr.port())?;
    }
    let listener_fd = dup_listener(&listener, addr)?;
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "serving a non-loopback address without TLS: set gateway.tls.enabled so tokens \
             and traffic are encrypted"
        );
    }
    let local = local_socket(
        inherited.local,
        &paths.state_dir.join(state::LOCAL_SOCKET_FILE),
    );
    let local_fd = match &local {
        Some(local) => Some(
            local
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    progress(ready_pipe, "listener");
    // Installed before READY: the default action of SIGUSR1 is to die.
    let sigusr1 =
        signal(SignalKind::user_defined1()).map_err(|source| StartError::Bind { addr, source })?;

    let surroundings =
        supervisor::Surroundings::probe(options.supervisor.clone(), inherited.supervisor, &lookup);
    let supervisor_info = supervisor::detect(&surroundings);
    let restart_mode = options.restart_mode.map(Into::into);
    let systemd_notify = supervisor::can_notify(&lookup);
    let strategy = supervisor::strategy(
        &supervisor_info,
        restart_mode,
        env.flag("OPENCLAW_NO_RESPAWN"),
        identity.pid == 1,
        systemd_notify,
    );
    let install = install::detect(
        successor.as_ref().map(|s| s.entrypoint.as_path()),
        surroundings.container.as_deref(),
    );
    let mut scheduler =
        Scheduler::new(identity.pid, strategy, settings.gateway.deferral_timeout_ms)
            .with_cooldown(Duration::from_millis(settings.gateway.cooldown_ms));
    if inherited.predecessor.is_some() {
        // The cooldown spans the handoff that started us.
        scheduler = scheduler.with_last_restart(std::time::Instant::now());
    }
    let takeover = if supervisor_info.kind == SupervisorKind::Systemd
        && strategy == RestartStrategy::Respawn
        && systemd_notify
    {
        Takeover::SystemdMainPid
    } else {
        Takeover::Plain
    };
    let restart = RestartEngine::new(
        scheduler,
        strategy,
        successor,
        Duration::from_millis(settings.gateway.successor_timeout_ms),
    )
    .with_takeover(takeover);
    tracing::info!(
        %addr, version = %identity.version, surface = ?install.surface,
        supervisor = ?supervisor_info.kind, ?strategy, "gateway prepared"
    );

    let auto = std::sync::Arc::new(crate::autoupdate::Shared::load(
        &paths.update_check_path,
        identity.started_at_ms,
    ));
    let gateway = Gateway::new(GatewayParts {
        auto,
        identity,
        paths,
        config,
        settings,
        env,
        auth,
        listen: addr,
        install,
        supervisor: supervisor_info,
        logs,
        restart,
        listener_fd,
        local_fd,
        lock,
    });
    Ok(Prepared {
        gateway,
        listeners: server::Listeners {
            tcp: listener,
            tls: tls.map(|tls| tls.acceptor),
            local,
        },
        addr,
        ready_pipe: None,
        verdict: None,
        lock_inherited,
        sigusr1: Some(sigusr1),
    })
}
