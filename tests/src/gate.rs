//! A gate: a named pipe that a process the test does not control (a
//! package manager, a successor moltd) waits on, so the test can act at
//! a precise point of a run instead of racing it.
//!
//! The waiting side opens the pipe to read (`cat <gate>`, or moltd
//! opening a state file), which blocks until the test opens it to write:
//! [`Gate::reached`] returns exactly then, a real rendezvous. The waiting
//! side then reads until the test drops the returned [`Held`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{COMMAND_TIMEOUT, run};

pub struct Gate {
    path: PathBuf,
}

/// A gate reached and held shut: what waits on it goes on once dropped.
pub struct Held(#[allow(dead_code)] File);

impl Gate {
    /// Makes the named pipe at `path`.
    pub fn new(path: &Path) -> Result<Gate> {
        run(Command::new("mkfifo").arg(path), COMMAND_TIMEOUT)
            .with_context(|| format!("mkfifo {}", path.display()))?;
        Ok(Gate {
            path: path.to_path_buf(),
        })
    }

    /// The gate already made at `path`.
    pub fn at(path: &Path) -> Gate {
        Gate {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (at most `timeout`) until something opens the gate to wait on
    /// it; it then waits until the returned [`Held`] is dropped.
    pub fn reached(&self, timeout: Duration) -> Result<Held> {
        let (tx, rx) = mpsc::channel();
        let path = self.path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(File::options().write(true).open(&path));
        });
        match rx.recv_timeout(timeout) {
            Ok(opened) => Ok(Held(opened.context("open the gate")?)),
            Err(_) => {
                // Free the thread still blocked in open: be the reader.
                use std::os::unix::fs::OpenOptionsExt;
                let _ = File::options()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&self.path);
                bail!(
                    "nothing reached the gate {} within {timeout:?}",
                    self.path.display()
                )
            }
        }
    }
}
