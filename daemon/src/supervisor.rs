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
}

impl Surroundings {
    /// Reads the real environment and `/proc`.
    pub fn probe(flag: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> Self {
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
/// `--supervisor=none` forces unsupervised.
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

/// How to restart: an explicit mode wins, then `OPENCLAW_NO_RESPAWN`
/// (custom supervisors that want the same pid), then the supervisor. A
/// container runtime is not a restarter to rely on (without a restart
/// policy an exit is final), so there moltd hands off itself: respawn, or
/// exec when it is the container's PID 1, whose exit would end the
/// container.
pub fn strategy(
    supervisor: &SupervisorInfo,
    explicit: Option<RestartStrategy>,
    no_respawn: bool,
    is_pid1: bool,
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
        assert_eq!(kind(child), SupervisorKind::None);
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
            ..systemd
        };
        assert_eq!(kind(forced_none), SupervisorKind::None);
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
        assert_eq!(
            strategy(&none, None, false, false),
            RestartStrategy::Respawn
        );
        assert_eq!(
            strategy(&systemd, None, false, false),
            RestartStrategy::Supervised
        );
        assert_eq!(strategy(&none, None, true, false), RestartStrategy::Exec);
        assert_eq!(
            strategy(&systemd, Some(RestartStrategy::Respawn), true, false),
            RestartStrategy::Respawn
        );
        assert_eq!(
            strategy(&container, None, false, false),
            RestartStrategy::Respawn
        );
        assert_eq!(
            strategy(&container, None, false, true),
            RestartStrategy::Exec,
            "PID 1 of a container must keep its pid"
        );
    }
}
