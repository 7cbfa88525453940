//! The exec strategy (opt-in): the same pid replaces its image through the
//! stable entrypoint, keeping the listener and the lock open across exec.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use molt_protocol::status::SupervisorKind;

use super::inherit::{HandoffFds, hand_off_to};
use super::respawn::SuccessorSpec;

/// Before draining, prove the entrypoint runs at all: after exec there is
/// no old process left to keep serving.
pub async fn preflight(spec: Option<&SuccessorSpec>) -> Result<(), String> {
    let spec = spec.ok_or("no stable entrypoint to exec")?;
    let run = tokio::process::Command::new(&spec.entrypoint)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "{} --version failed ({}); not exec'ing",
            spec.entrypoint.display(),
            out.status
        )),
        Ok(Err(e)) => Err(format!("cannot run {}: {e}", spec.entrypoint.display())),
        Err(_) => Err(format!("{} --version hung", spec.entrypoint.display())),
    }
}

/// Replaces this process. Returns only on failure.
pub fn exec_successor(
    spec: &SuccessorSpec,
    listener: OwnedFd,
    lock: OwnedFd,
    supervisor: SupervisorKind,
) -> io::Error {
    let mut command = std::process::Command::new(&spec.entrypoint);
    command.args(&spec.args);
    let fds = HandoffFds {
        listener,
        lock,
        pipes: None,
    };
    if let Err(e) = hand_off_to(&mut command, fds, std::process::id(), supervisor) {
        return io::Error::other(e.to_string());
    }
    command.exec()
}
