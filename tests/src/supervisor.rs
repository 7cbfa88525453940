//! A supervisor that moltd cannot hand a process to (runit, s6, a shell
//! loop): a script that starts moltd, and starts it again after every
//! exit, as systemd's `Restart=always` does, except after exit 78
//! (`RestartPreventExitStatus=78`). After each exit it runs the rescue
//! step the way systemd's `ExecStopPost=` does, when an update armed one:
//! `<state>/rescue/moltd rescue` with `SERVICE_RESULT`, `EXIT_CODE` and
//! `EXIT_STATUS` describing the exit. It gives up after [`MAX_STARTS`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::moltd::{Moltd, command};

/// Starts after which the supervisor gives up (exit 1): a version that
/// never starts does not loop for the rest of the test.
pub const MAX_STARTS: u32 = 10;

/// The supervisor script, and the moltd processes it started; dropping it
/// stops the script first, so that it starts nothing more, then moltd.
pub struct Supervised {
    pub moltd: Moltd,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.moltd.child.id().to_string()])
            .status();
    }
}

/// Writes the supervisor script for moltd at `entrypoint` on `state`,
/// started with `args`, into `dir`.
pub fn script(dir: &Path, entrypoint: &Path, state: &Path, args: &[&str]) -> Result<PathBuf> {
    let path = dir.join("supervise.sh");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    crate::npm_package::write_script(
        &path,
        &format!(
            r#"#!/bin/sh
starts=0
while [ "$starts" -lt {MAX_STARTS} ]; do
  starts=$((starts + 1))
  '{entrypoint}' --state-dir '{state}' {args}
  code=$?
  [ "$code" -eq 78 ] && exit 78
  if [ -x '{state}/rescue/moltd' ]; then
    result=exit-code
    [ "$code" -eq 0 ] && result=success
    SERVICE_RESULT=$result EXIT_CODE=exited EXIT_STATUS=$code \
      '{state}/rescue/moltd' rescue --state-dir '{state}'
  fi
done
exit 1
"#,
            entrypoint = entrypoint.display(),
            state = state.display(),
            args = quoted.join(" "),
        ),
    )?;
    Ok(path)
}

/// Starts moltd at `entrypoint` on `state` under the supervisor script
/// (written into `dir`) with `args` and `env`, and waits for its first
/// READY line.
pub fn start(
    dir: &Path,
    entrypoint: &Path,
    state: &Path,
    args: &[&str],
    env: Vec<(String, OsString)>,
) -> Result<Supervised> {
    let script = script(dir, entrypoint, state, args)?;
    let mut cmd = command(&script, state, &[]);
    cmd.envs(env);
    Ok(Supervised {
        moltd: Moltd::spawn(cmd),
    })
}
