//! The exec strategy (opt-in): the same pid replaces its image through the
//! stable entrypoint, keeping the listener and the lock open across exec.

use std::io;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use molt_protocol::status::SupervisorKind;

use super::inherit::{HandoffFds, HeldFds, hand_off_to};
use super::respawn::{SuccessorSpec, spawn_when_not_busy};

/// Before draining, prove the entrypoint runs and, after an update, that
/// it is the version the update installed (`expected`): after exec there
/// is no old process left to keep serving, so a wrong image is refused
/// here and the update rolled back, as a respawn's wrong successor is.
pub async fn preflight(spec: Option<&SuccessorSpec>, expected: Option<&str>) -> Result<(), String> {
    let spec = spec.ok_or("no stable entrypoint to exec")?;
    let entrypoint = spec.entrypoint.display();
    let run = async {
        let mut command = tokio::process::Command::new(&spec.entrypoint);
        command
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = spawn_when_not_busy(|| command.spawn(), |_| {}).await?;
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => out,
        Ok(Ok(out)) => {
            return Err(format!(
                "{entrypoint} --version failed ({}); not exec'ing",
                out.status
            ));
        }
        Ok(Err(e)) => return Err(format!("cannot run {entrypoint}: {e}")),
        Err(_) => return Err(format!("{entrypoint} --version hung")),
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    // `moltd <version>`, as clap prints it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reported = stdout
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().last())
        .unwrap_or_default();
    if reported == expected {
        return Ok(());
    }
    Err(format!(
        "{entrypoint} reports version {reported:?}, expected {expected}; not exec'ing"
    ))
}

/// Replaces this process. Returns only on failure.
pub fn exec_successor(
    spec: &SuccessorSpec,
    held: HeldFds,
    supervisor: SupervisorKind,
) -> io::Error {
    let mut command = std::process::Command::new(&spec.entrypoint);
    command.args(&spec.args);
    let fds = HandoffFds { held, pipes: None };
    if let Err(e) = hand_off_to(&mut command, fds, std::process::id(), supervisor) {
        return io::Error::other(e.to_string());
    }
    command.exec()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entrypoint(dir: &std::path::Path, version: &str) -> SuccessorSpec {
        let path = dir.join("moltd");
        std::fs::write(&path, format!("#!/bin/sh\necho moltd {version}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        SuccessorSpec {
            entrypoint: path,
            args: Vec::new(),
            capture_output: false,
        }
    }

    #[tokio::test]
    async fn the_exec_preflight_refuses_an_image_of_another_version() {
        let dir = tempfile::tempdir().unwrap();
        let spec = entrypoint(dir.path(), "1.0.0");
        assert_eq!(preflight(Some(&spec), None).await, Ok(()));
        assert_eq!(preflight(Some(&spec), Some("1.0.0")).await, Ok(()));
        let refused = preflight(Some(&spec), Some("2.0.0")).await.unwrap_err();
        assert!(
            refused.ends_with("reports version \"1.0.0\", expected 2.0.0; not exec'ing"),
            "{refused}"
        );
    }
}
