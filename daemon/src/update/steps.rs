//! The step runner: one external command of an update (a package manager's
//! metadata query or install, a git command, a build), run as an argv vector
//! — never through a shell — and recorded as a [`StepRecord`].
//!
//! Rules every step follows:
//! * stdin is `/dev/null`; the child leads its own process group, and
//!   nothing in that group outlives the step: when the step ends (the
//!   command exited, timed out or was cancelled) the group gets SIGTERM,
//!   then SIGKILL after a short grace, and the command is reaped.
//! * The daemon's handoff and systemd variables ([`SCRUBBED_ENV`]) never
//!   reach the child, so a package manager or build cannot mistake itself
//!   for moltd's successor or notify systemd in moltd's name.
//! * stdout and stderr are read concurrently and kept as the first and last
//!   [`HEAD_TAIL_BYTES`] of each: bounded memory, whatever the command
//!   prints.
//! * The runner never panics and always returns a record; a command that
//!   cannot start is a `spawn-failed` step, not an error.
//!
//! ## Head and tail
//! `stdoutHead` is the first 4 KiB of stdout, `stdoutTail` the last 4 KiB
//! (same for stderr). When the whole output fits in 4 KiB, head and tail
//! are **both the whole text** (between 4 and 8 KiB they overlap): a client
//! that shows only the tail — OpenClaw's step records have only tails —
//! always sees the end of the output. Bytes are decoded as lossy UTF-8; a
//! character cut by the 4 KiB boundary is dropped rather than shown as `�`.
//!
//! molt's own notes (why the step was stopped, a signal, a spawn error) are
//! appended to `stderrTail` on their own lines starting with `molt: `; the
//! heads hold only what the command printed.

use std::fmt::Write as _;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use molt_protocol::update::{StepRecord, Termination};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::output::{HeadTail, pump};
use crate::restart::inherit::HANDOFF_ENV;

pub use crate::output::{HEAD_TAIL_BYTES, shell_quote};

/// Variables removed from every step's environment: moltd's handoff marker
/// and the socket-activation / notify variables systemd gave moltd.
pub const SCRUBBED_ENV: [&str; 5] = [
    HANDOFF_ENV,
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

/// How long the process group has between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// How long the pipes may stay open once the process group is dead (a
/// daemon that left the group but kept our stdout): then we stop reading.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// One external command of an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec {
    /// The step's name in the record (`"install"`, `"fetch"`, …).
    pub name: String,
    /// Program and arguments; `argv[0]` is looked up on `PATH` when it has
    /// no `/`. Never a shell string.
    pub argv: Vec<String>,
    /// Working directory; the daemon's own when `None`.
    pub cwd: Option<PathBuf>,
    /// Added to (or overriding) the daemon's environment, before the
    /// [`SCRUBBED_ENV`] variables are removed.
    pub env: Vec<(String, String)>,
    /// From the start of the command until it is stopped as `timed-out`.
    pub timeout: Duration,
}

/// Runs `spec` to completion (or until its timeout or `cancel`) and
/// records it. Never panics; see the module docs for the rules.
///
/// Terminations: `exited` (with `exitCode`), `signaled` (the command died
/// of a signal, or `cancel` fired), `timed-out`, `spawn-failed` (the error
/// in `stderrTail`). For `timed-out` and a cancel, `exitCode` is set only
/// when the command exited by itself after SIGTERM.
pub async fn run_step(spec: &StepSpec, cancel: &CancellationToken) -> StepRecord {
    run(spec, cancel, KILL_GRACE, None).await.0
}

/// Like [`run_step`], and also keeps the whole stdout up to `max_stdout`
/// bytes, for steps whose output molt parses (a registry metadata query is
/// often larger than the 8 KiB a record keeps). The text is `None` when
/// stdout exceeded `max_stdout` or the command could not start.
pub async fn run_step_with_stdout(
    spec: &StepSpec,
    cancel: &CancellationToken,
    max_stdout: usize,
) -> (StepRecord, Option<String>) {
    run(spec, cancel, KILL_GRACE, Some(max_stdout)).await
}

/// The record of a step molt does itself (stage, swap): `termination:
/// internal`, `exitCode` 0, or 1 with `error` in `stderrTail`, no command.
pub fn internal_step(name: &str, started: Instant, error: Option<&str>) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        command: String::new(),
        argv: Vec::new(),
        cwd: None,
        duration_ms: millis(started.elapsed()),
        exit_code: Some(if error.is_none() { 0 } else { 1 }),
        termination: Termination::Internal,
        stdout_head: String::new(),
        stdout_tail: String::new(),
        stderr_head: String::new(),
        stderr_tail: error.unwrap_or_default().to_owned(),
    }
}

/// Why the step stopped waiting for the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Exited,
    TimedOut,
    Cancelled,
}

async fn run(
    spec: &StepSpec,
    cancel: &CancellationToken,
    grace: Duration,
    max_stdout: Option<usize>,
) -> (StepRecord, Option<String>) {
    let started = Instant::now();
    let mut record = StepRecord {
        name: spec.name.clone(),
        command: shell_quote(&spec.argv),
        argv: spec.argv.clone(),
        cwd: spec.cwd.as_ref().map(|p| p.display().to_string()),
        duration_ms: 0,
        exit_code: None,
        termination: Termination::SpawnFailed,
        stdout_head: String::new(),
        stdout_tail: String::new(),
        stderr_head: String::new(),
        stderr_tail: String::new(),
    };

    let mut child = match spawn(spec) {
        Ok(child) => child,
        Err(message) => {
            record.stderr_tail = format!("molt: {message}\n");
            record.duration_ms = millis(started.elapsed());
            return (record, None);
        }
    };
    // A spawned child has a pid until it is reaped, and only we reap it.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let mut guard = GroupGuard(pgid);
    let mut exit = ExitWatch::new(pgid);

    let mut out = HeadTail::new(max_stdout);
    let mut err = HeadTail::new(None);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut notes = Vec::new();

    let status = {
        let io = async {
            tokio::join!(pump(stdout, &mut out), pump(stderr, &mut err));
        };
        tokio::pin!(io);
        let mut io_done = false;
        let mut exited = false;

        // 1. Run until the command exits, times out or is cancelled, reading
        //    its output all along.
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let end = loop {
            tokio::select! {
                biased;
                () = exit.wait(&mut child) => {
                    exited = true;
                    break End::Exited;
                }
                () = cancel.cancelled() => break End::Cancelled,
                () = &mut deadline => break End::TimedOut,
                () = &mut io, if !io_done => io_done = true,
            }
        };

        // 2. Stop the group: SIGTERM, then wait for the command to exit and
        //    the pipes to close (every writer gone) within the grace. After
        //    a normal exit this only catches stragglers left in the group
        //    (usually none: it then returns at once).
        signal_group(pgid, Signal::TERM);
        let settle = async {
            if !exited {
                exit.wait(&mut child).await;
            }
            if !io_done {
                (&mut io).await;
                io_done = true;
            }
        };
        let settled = tokio::time::timeout(grace, settle).await.is_ok();

        // 3. SIGKILL whatever is left. The leader is not reaped yet, so its
        //    pid still names this group and no other.
        signal_group(pgid, Signal::KILL);
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                notes.push(format!("cannot reap the process: {e}"));
                None
            }
            Err(_) => {
                // Stuck in the kernel (uninterruptible I/O); tokio reaps it
                // once it goes, as the child is dropped with kill_on_drop.
                notes.push(format!(
                    "the process did not die within {grace:?} of SIGKILL"
                ));
                None
            }
        };
        guard.disarm();

        // 4. The rest of the output, unless something outside the group
        //    holds the pipes open.
        if !io_done && tokio::time::timeout(OUTPUT_GRACE, &mut io).await.is_err() {
            notes.push("output still open after the process group ended; stopped reading".into());
        }

        match end {
            End::Exited => {}
            End::TimedOut | End::Cancelled => {
                let why = if end == End::TimedOut {
                    format!("timed out after {:?}", spec.timeout)
                } else {
                    "cancelled".to_owned()
                };
                let how = if settled {
                    "stopped the process group with SIGTERM".to_owned()
                } else {
                    format!("sent SIGTERM to the process group, then SIGKILL after {grace:?}")
                };
                notes.insert(0, format!("{why}; {how}"));
            }
        }
        record.termination = match end {
            End::Exited => Termination::Exited,
            End::TimedOut => Termination::TimedOut,
            End::Cancelled => Termination::Signaled,
        };
        status
    };

    if let Some(status) = status {
        record.exit_code = status.code();
        // A command that died of a signal before we sent any.
        if let Some(signal) = status.signal()
            && record.termination == Termination::Exited
        {
            record.termination = Termination::Signaled;
            notes.push(format!("killed by signal {signal}"));
        }
    }
    record.duration_ms = millis(started.elapsed());

    let full_stdout = out.full_text();
    record.stdout_head = out.head_text();
    record.stdout_tail = out.tail_text();
    record.stderr_head = err.head_text();
    record.stderr_tail = err.tail_text();
    for note in notes {
        if !record.stderr_tail.is_empty() && !record.stderr_tail.ends_with('\n') {
            record.stderr_tail.push('\n');
        }
        let _ = writeln!(record.stderr_tail, "molt: {note}");
    }
    (record, full_stdout)
}

/// Why a command could not start; recorded in its `stderrTail`.
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    #[error("empty argv: nothing to run")]
    EmptyArgv,
    #[error("cannot start {program}: working directory {} is not a directory ({source})", cwd.display())]
    NoCwd {
        program: String,
        cwd: PathBuf,
        source: io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
}

fn spawn(spec: &StepSpec) -> Result<Child, SpawnError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(SpawnError::EmptyArgv);
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let program = program.clone();
    cmd.spawn().map_err(|source| match &spec.cwd {
        Some(cwd) if !cwd.is_dir() => SpawnError::NoCwd {
            program,
            cwd: cwd.clone(),
            source,
        },
        _ => SpawnError::Spawn { program, source },
    })
}

/// Sends `signal` to the group; a group that is already gone is fine.
fn signal_group(pgid: Option<Pid>, signal: Signal) {
    let Some(pgid) = pgid else { return };
    match rustix::process::kill_process_group(pgid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => tracing::warn!(
            pgid = pgid.as_raw_nonzero().get(),
            ?signal,
            "cannot signal step process group: {e}"
        ),
    }
}

/// SIGKILLs the group if the step future is dropped before it reaped the
/// command (the caller gave up on it), so no step outlives its runner.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::KILL);
    }
}

/// Waits for the command to exit **without reaping it** (`waitid` with
/// `WNOWAIT`, checked on every SIGCHLD), so its pid keeps naming the
/// process group until we have signalled the whole group. If SIGCHLD
/// cannot be watched it falls back to `Child::wait`, which reaps.
enum ExitWatch {
    Peek { pid: Pid, sigchld: SignalStream },
    Reap,
}

impl ExitWatch {
    fn new(pid: Option<Pid>) -> Self {
        let Some(pid) = pid else { return Self::Reap };
        match signal(SignalKind::child()) {
            Ok(sigchld) => Self::Peek { pid, sigchld },
            Err(e) => {
                tracing::debug!("cannot watch SIGCHLD, waiting for steps by reaping: {e}");
                Self::Reap
            }
        }
    }

    /// Returns once the command has exited. Cancel-safe.
    async fn wait(&mut self, child: &mut Child) {
        if let Self::Peek { pid, sigchld } = self {
            // The listener exists before the check, so an exit after the
            // check wakes it.
            loop {
                let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
                match rustix::process::waitid(WaitId::Pid(*pid), options) {
                    Ok(Some(_)) => return,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!("waitid on a step failed, waiting by reaping: {e}");
                        break;
                    }
                }
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
            *self = Self::Reap;
        }
        let _ = child.wait().await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
