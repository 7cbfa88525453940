//! Running external commands (npm, pnpm, bun, scripts) with a deadline and
//! captured output, so a failing or hanging tool shows up as a readable error.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Default deadline for one package-manager command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// A finished command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

/// Runs `cmd` (stdin null, stdout/stderr captured) and fails unless it exits 0
/// within `timeout`. The error names the command and carries both outputs.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput> {
    spawn(cmd)?.finish(timeout)
}

/// Like [`run`], but returns the output whatever the exit status. Still fails
/// if the command cannot be started or exceeds `timeout` (it is then killed).
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput> {
    spawn(cmd)?.wait(timeout)
}

/// Starts `cmd` (stdin null, stdout/stderr captured) without waiting for it:
/// for a command that blocks while the test does something else.
pub fn spawn(cmd: &mut Command) -> Result<Running> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    Ok(Running {
        what: describe(cmd),
        child,
        stdout,
        stderr,
        started,
    })
}

/// A command started by [`spawn`].
pub struct Running {
    what: String,
    child: Child,
    stdout: Captured,
    stderr: Captured,
    started: Instant,
}

impl Running {
    /// Waits until the command exits, at most `timeout` after it started
    /// (then it is killed and this fails); the output whatever the exit
    /// status.
    pub fn wait(mut self, timeout: Duration) -> Result<CmdOutput> {
        let deadline = self.started + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = self.stdout.take();
                let stderr = self.stderr.take();
                bail!(
                    "command timed out after {timeout:?}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        Ok(CmdOutput {
            status,
            stdout: self.stdout.take(),
            stderr: self.stderr.take(),
            duration: self.started.elapsed(),
        })
    }

    /// Like [`Running::wait`], failing unless the command exits 0.
    pub fn finish(self, timeout: Duration) -> Result<CmdOutput> {
        let what = self.what.clone();
        let out = self.wait(timeout)?;
        if !out.status.success() {
            bail!(
                "command failed ({}): {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }
}

/// Output read from a pipe by a background thread.
pub(crate) struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    reader: thread::JoinHandle<()>,
}

impl Captured {
    /// Everything read so far, without waiting.
    pub(crate) fn snapshot(&self) -> String {
        let buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Everything read so far, after giving the reader a short grace period
    /// to reach end of file (a grandchild may keep the pipe open: never
    /// block on it).
    pub(crate) fn take(self) -> String {
        self.wait_for_eof(Duration::from_secs(5));
        self.snapshot()
    }

    /// Waits up to `grace` for the reader to reach end of file.
    pub(crate) fn wait_for_eof(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

pub(crate) fn drain(pipe: Option<impl Read + Send + 'static>) -> Captured {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let reader = thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
    });
    Captured { buf, reader }
}

/// `program arg arg …` with the working directory, for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!(" (in {})", dir.display()));
    }
    s
}
