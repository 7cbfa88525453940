//! Who restarts moltd when it exits, which decides its restart strategy.

use molt_protocol::status::{RestartStrategy, SupervisorInfo, SupervisorKind};

/// Facts about the process's surroundings, gathered once at start.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// `--supervisor=` as given.
    pub flag: Option<String>,
    pub notify_socket: bool,
    pub invocation_id: bool,
    /// The parent process is the service manager (pid 1 or a `systemd` user
    /// manager), so we are a service's main process, not its child.
    pub parent_is_service_manager: bool,
    pub launchd_service: bool,
    /// Container or orchestrator markers (k8s env, `/.dockerenv`, ...).
    pub container: Option<String>,
    /// The supervisor a predecessor handed over with its handoff: a
    /// successor's parent is its predecessor, not the service manager,
    /// yet it serves the same service.
    pub inherited: Option<SupervisorKind>,
}

impl Surroundings {
    /// Reads the real environment and `/proc`.
    pub fn probe(
        flag: Option<String>,
        inherited: Option<SupervisorKind>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let container = if env("KUBERNETES_SERVICE_HOST").is_some() {
            Some("kubernetes".to_owned())
        } else if std::path::Path::new("/.dockerenv").exists() {
            Some("docker".to_owned())
        } else if std::path::Path::new("/run/.containerenv").exists() {
            Some("podman".to_owned())
        } else {
            env("container").filter(|v| !v.is_empty())
        };
        Self {
            flag,
            notify_socket: env("NOTIFY_SOCKET").is_some(),
            invocation_id: env("INVOCATION_ID").is_some(),
            parent_is_service_manager: parent_is_service_manager(),
            launchd_service: env("XPC_SERVICE_NAME").is_some_and(|v| v != "0")
                && cfg!(target_os = "macos"),
            container,
            inherited,
        }
    }
}

fn parent_is_service_manager() -> bool {
    let ppid = std::os::unix::process::parent_id();
    if ppid == 1 {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{ppid}/comm"))
        .map(|comm| comm.trim() == "systemd")
        .unwrap_or(false)
}

/// Decides the supervisor from what was probed. An explicit flag wins;
/// `--supervisor=none` forces unsupervised; then what a predecessor handed
/// over.
pub fn detect(s: &Surroundings) -> SupervisorInfo {
    if let Some(flag) = s.flag.as_deref() {
        let kind = match flag {
            "none" => SupervisorKind::None,
            "systemd" => SupervisorKind::Systemd,
            "launchd" => SupervisorKind::Launchd,
            _ => SupervisorKind::Custom,
        };
        return SupervisorInfo {
            kind,
            detail: Some(format!("--supervisor={flag}")),
        };
    }
    if let Some(kind) = s.inherited {
        return SupervisorInfo {
            kind,
            detail: Some("handed over by the predecessor".to_owned()),
        };
    }
    if (s.notify_socket || s.invocation_id) && s.parent_is_service_manager {
        return SupervisorInfo {
            kind: SupervisorKind::Systemd,
            detail: Some(if s.notify_socket {
                "NOTIFY_SOCKET".to_owned()
            } else {
                "INVOCATION_ID".to_owned()
            }),
        };
    }
    if s.launchd_service {
        return SupervisorInfo {
            kind: SupervisorKind::Launchd,
            detail: Some("XPC_SERVICE_NAME".to_owned()),
        };
    }
    if let Some(container) = &s.container {
        return SupervisorInfo {
            kind: SupervisorKind::External,
            detail: Some(container.clone()),
        };
    }
    SupervisorInfo {
        kind: SupervisorKind::None,
        detail: None,
    }
}

/// Tells systemd we serve (no-op without `NOTIFY_SOCKET`).
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd we are stopping on purpose (no-op without `NOTIFY_SOCKET`).
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Whether systemd can be told a new main process (`NOTIFY_SOCKET` set).
pub fn can_notify(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// How long systemd may take to confirm it processed `MAINPID=`.
const BARRIER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Names `pid` (our verified successor, in the service's cgroup) as the
/// service's main process, and returns once systemd has processed that
/// (`BARRIER=1`, as `sd_notify_barrier(3)` does): after this, our exit is
/// no longer the service's exit, so `Restart=` never fires for a handoff.
pub async fn hand_over_main_pid(pid: u32, status: &str) -> std::io::Result<()> {
    use sd_notify::NotifyState;
    use std::os::fd::{AsFd, OwnedFd};
    use tokio::io::AsyncReadExt;
    if !can_notify(&|key| std::env::var(key).ok()) {
        return Err(std::io::Error::other("NOTIFY_SOCKET is not set"));
    }
    sd_notify::notify(&[NotifyState::MainPid(pid), NotifyState::Status(status)])?;
    let (reader, writer) = std::io::pipe()?;
    sd_notify::notify_with_fds(&[NotifyState::Custom("BARRIER=1")], &[writer.as_fd()])?;
    // systemd closes its copy of the write end once it has processed every
    // message before the barrier; with ours closed too, the read end sees EOF.
    drop(writer);
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(BARRIER_TIMEOUT, reader.read(&mut byte)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(_)) => Err(std::io::Error::other("unexpected data on the barrier pipe")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(format!(
            "systemd did not confirm MAINPID={pid} within {BARRIER_TIMEOUT:?}"
        ))),
    }
}

/// How to restart: an explicit mode wins, then `OPENCLAW_NO_RESPAWN`
/// (custom supervisors that want the same pid), then the supervisor. A
/// container runtime is not a restarter to rely on (without a restart
/// policy an exit is final), so there moltd hands off itself: respawn, or
/// exec when it is the container's PID 1, whose exit would end the
/// container. Under systemd moltd also hands off itself when it can name
/// the successor as the new main process (`systemd_notify`): a successor
/// that fails is then stopped and rolled back while this process serves,
/// instead of systemd restarting into it.
pub fn strategy(
    supervisor: &SupervisorInfo,
    explicit: Option<RestartStrategy>,
    no_respawn: bool,
    is_pid1: bool,
    systemd_notify: bool,
) -> RestartStrategy {
    if let Some(mode) = explicit {
        return mode;
    }
    if no_respawn {
        return RestartStrategy::Exec;
    }
    match supervisor.kind {
        SupervisorKind::None => RestartStrategy::Respawn,
        SupervisorKind::External if is_pid1 => RestartStrategy::Exec,
        SupervisorKind::External => RestartStrategy::Respawn,
        SupervisorKind::Systemd if systemd_notify => RestartStrategy::Respawn,
        SupervisorKind::Systemd | SupervisorKind::Launchd | SupervisorKind::Custom => {
            RestartStrategy::Supervised
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: Surroundings) -> SupervisorKind {
        detect(&s).kind
    }

    #[test]
    fn detection_table() {
        assert_eq!(kind(Surroundings::default()), SupervisorKind::None);
        let systemd = Surroundings {
            notify_socket: true,
            invocation_id: true,
            parent_is_service_manager: true,
            ..Default::default()
        };
        assert_eq!(kind(systemd.clone()), SupervisorKind::Systemd);
        // A child of a service (npm run by moltd) inherits the variables but
        // is not the service.
        let child = Surroundings {
            parent_is_service_manager: false,
            ..systemd.clone()
        };
        assert_eq!(kind(child.clone()), SupervisorKind::None);
        let container = Surroundings {
            container: Some("kubernetes".into()),
            ..Default::default()
        };
        assert_eq!(kind(container), SupervisorKind::External);
        let flagged = Surroundings {
            flag: Some("runit".into()),
            ..systemd.clone()
        };
        assert_eq!(kind(flagged), SupervisorKind::Custom);
        let forced_none = Surroundings {
            flag: Some("none".into()),
            ..systemd.clone()
        };
        assert_eq!(kind(forced_none), SupervisorKind::None);
        // A successor is its predecessor's child, yet serves the service.
        let successor = Surroundings {
            inherited: Some(SupervisorKind::Systemd),
            ..child
        };
        assert_eq!(kind(successor), SupervisorKind::Systemd);
    }

    #[test]
    fn strategy_table() {
        let none = detect(&Surroundings::default());
        let systemd = SupervisorInfo {
            kind: SupervisorKind::Systemd,
            detail: None,
        };
        let container = SupervisorInfo {
            kind: SupervisorKind::External,
            detail: Some("docker".into()),
        };
        let launchd = SupervisorInfo {
            kind: SupervisorKind::Launchd,
            detail: None,
        };
        // (supervisor, explicit, OPENCLAW_NO_RESPAWN, pid 1, NOTIFY_SOCKET, strategy)
        let cases = [
            (&none, None, false, false, false, RestartStrategy::Respawn),
            (&systemd, None, false, false, true, RestartStrategy::Respawn),
            (
                &systemd,
                None,
                false,
                false,
                false,
                RestartStrategy::Supervised,
            ),
            (
                &launchd,
                None,
                false,
                false,
                true,
                RestartStrategy::Supervised,
            ),
            (&none, None, true, false, false, RestartStrategy::Exec),
            (
                &systemd,
                Some(RestartStrategy::Supervised),
                false,
                false,
                true,
                RestartStrategy::Supervised,
            ),
            (
                &systemd,
                Some(RestartStrategy::Respawn),
                true,
                false,
                false,
                RestartStrategy::Respawn,
            ),
            (
                &container,
                None,
                false,
                false,
                false,
                RestartStrategy::Respawn,
            ),
            // PID 1 of a container must keep its pid.
            (&container, None, false, true, false, RestartStrategy::Exec),
        ];
        for (supervisor, explicit, no_respawn, pid1, notify, want) in cases {
            assert_eq!(
                strategy(supervisor, explicit, no_respawn, pid1, notify),
                want,
                "{supervisor:?} {explicit:?} no_respawn={no_respawn} pid1={pid1} notify={notify}"
            );
        }
    }
}
