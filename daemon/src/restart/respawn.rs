//! The predecessor's side of a handoff: start the successor through the
//! stable entrypoint with the listener, the lock, a readiness pipe and a
//! verdict pipe, and wait for it to prove it serves; the caller judges it
//! and gives the verdict ([`Successor::accept`], [`Successor::reject`]).
//! The port never closes: both processes hold the same listening socket
//! until the predecessor exits.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use molt_protocol::status::SupervisorKind;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use molt_protocol::update::{StepRecord, Termination};

use super::inherit::{HandoffFds, HandoffPipes, HeldFds, READY_FD, VerdictSender, hand_off_to};
use super::relay::Relay;

/// How to start the successor.
#[derive(Debug, Clone)]
pub struct SuccessorSpec {
    /// The stable entrypoint (e.g. `<prefix>/bin/moltd`), so a swapped
    /// install starts the new binary.
    pub entrypoint: PathBuf,
    pub args: Vec<OsString>,
    /// Relay its stdout and stderr through this process until READY and
    /// keep their head and tail, so a successor that dies at start leaves
    /// its words in the failure. Only for a successor that takes its
    /// output back at READY (this version or a newer one): an older one
    /// would write into a pipe that closes with this process.
    pub capture_output: bool,
}

/// How long the successor may take. Progress lines reset `idle`; `total`
/// caps the whole start, however chatty.
#[derive(Debug, Clone, Copy)]
pub struct ReadyTimeouts {
    pub idle: Duration,
    pub total: Duration,
}

impl ReadyTimeouts {
    pub fn from_idle(idle: Duration) -> Self {
        Self {
            idle,
            total: (idle * 4).max(Duration::from_secs(120)),
        }
    }
}

/// Whose child the successor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parentage {
    /// This process's: its exit status is ours to read.
    Ours,
    /// Started through an intermediate that exits at once, so the
    /// successor is adopted by the service manager (PID 1, or a user
    /// manager, which is a subreaper). A service manager that is then told
    /// it is the main process (`MAINPID=`) knows it as its own child, and
    /// stops it with the usual drain; an adopted-from-elsewhere main
    /// process gets SIGKILL right after SIGTERM. Its exit shows as the
    /// readiness pipe closing, without a status.
    Detached,
}

/// A successor that reported READY.
#[derive(Debug)]
pub struct Successor {
    pub pid: u32,
    pub addr: String,
    pub version: String,
    /// Kept so the successor is not killed or reaped by accident; it
    /// outlives this process. `None` when detached.
    pub child: Option<Child>,
    /// It waits for this before it claims anything; taken by the verdict.
    verdict: Option<VerdictSender>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuccessorFailure {
    #[error("cannot start successor {entrypoint}: {source}")]
    Spawn {
        entrypoint: String,
        source: io::Error,
    },
    #[error(
        "successor exited before it was ready ({}); last progress: {progress}",
        exit(status)
    )]
    Exited {
        status: Option<ExitStatus>,
        progress: String,
    },
    /// The successor said why before exiting (e.g. the config no longer
    /// parses).
    #[error("successor refused to start ({}): {reason}", exit(status))]
    Refused {
        status: Option<ExitStatus>,
        reason: String,
    },
    #[error("successor not ready after {waited_ms} ms (last progress: {progress}); stopped it")]
    NotReady { waited_ms: u64, progress: String },
    #[error("successor sent an unreadable READY line: {0:?}")]
    BadReady(String),
}

/// A successor that did not take over, and what it printed meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct StartFailure {
    pub failure: SuccessorFailure,
    /// Its start as a step, with the head and tail of its output, when
    /// the output was relayed ([`SuccessorSpec::capture_output`]).
    pub output: Option<Box<StepRecord>>,
}

impl SuccessorFailure {
    fn status(&self) -> Option<ExitStatus> {
        match self {
            Self::Exited { status, .. } | Self::Refused { status, .. } => *status,
            _ => None,
        }
    }

    fn termination(&self) -> Termination {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Self::Spawn { .. } => Termination::SpawnFailed,
            Self::NotReady { .. } => Termination::TimedOut,
            _ if self.status().and_then(|s| s.signal()).is_some() => Termination::Signaled,
            _ => Termination::Exited,
        }
    }
}

fn exit(status: &Option<ExitStatus>) -> String {
    match status {
        Some(status) => status.to_string(),
        None => "exit status unknown: the service manager reaped it".to_owned(),
    }
}

/// Starts the successor and waits for `READY <addr> <version> <pid>`.
/// On any failure the successor is stopped and reaped, and this process
/// goes on serving.
pub async fn start_successor(
    spec: &SuccessorSpec,
    held: HeldFds,
    own_pid: u32,
    supervisor: SupervisorKind,
    parentage: Parentage,
    timeouts: ReadyTimeouts,
) -> Result<Successor, StartFailure> {
    let started = Instant::now();
    let mut relay = None;
    let result = start(
        spec, held, own_pid, supervisor, parentage, timeouts, &mut relay,
    )
    .await;
    let failure = match result {
        Ok(successor) => return Ok(successor),
        Err(failure) => failure,
    };
    let output = match relay {
        Some(relay) => {
            let (stdout, stderr) = relay.finish(timeouts.idle).await;
            let mut argv = vec![spec.entrypoint.display().to_string()];
            argv.extend(spec.args.iter().map(|a| a.to_string_lossy().into_owned()));
            Some(Box::new(StepRecord {
                name: "restart".to_owned(),
                command: crate::output::shell_quote(&argv),
                argv,
                cwd: None,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                exit_code: failure.status().and_then(|s| s.code()),
                termination: failure.termination(),
                stdout_head: stdout.head_text(),
                stdout_tail: stdout.tail_text(),
                stderr_head: stderr.head_text(),
                stderr_tail: stderr.tail_text(),
            }))
        }
        None => None,
    };
    Err(StartFailure { failure, output })
}

#[allow(clippy::too_many_arguments)]
async fn start(
    spec: &SuccessorSpec,
    held: HeldFds,
    own_pid: u32,
    supervisor: SupervisorKind,
    parentage: Parentage,
    timeouts: ReadyTimeouts,
    relay: &mut Option<Relay>,
) -> Result<Successor, SuccessorFailure> {
    let spawn_failed = |source| SuccessorFailure::Spawn {
        entrypoint: spec.entrypoint.display().to_string(),
        source,
    };
    let (reader, writer) = io::pipe().map_err(spawn_failed)?;
    let (verdict_reader, verdict_writer) = io::pipe().map_err(spawn_failed)?;
    let verdict = VerdictSender::new(verdict_writer);
    let mut command = Command::new(&spec.entrypoint);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let stdio = if spec.capture_output {
        let (ours, stdio) = Relay::plumb(&mut command).map_err(spawn_failed)?;
        *relay = Some(ours);
        Some(stdio)
    } else {
        None
    };
    let fds = HandoffFds {
        held,
        pipes: Some(HandoffPipes {
            ready: OwnedFd::from(writer),
            verdict: OwnedFd::from(verdict_reader),
            stdio,
        }),
    };
    hand_off_to(command.as_std_mut(), fds, own_pid, supervisor)
        .map_err(|e| spawn_failed(io::Error::other(e.to_string())))?;
    if parentage == Parentage::Detached {
        detach(command.as_std_mut());
    }
    let mut spawned = spawn_when_not_busy(|| command.spawn(), |_| {})
        .await
        .map_err(spawn_failed)?;
    // Our copies of the successor's ends must close, or EOF never comes.
    drop(command);
    if let Some(relay) = relay.as_mut() {
        relay.start();
    }
    // Until READY is in, a start that is given up (its future dropped, or
    // a second stop signal) takes the successor with it.
    let mut starting = Starting::default();
    if parentage == Parentage::Ours {
        starting.add(spawned.id());
    }
    let mut child = match parentage {
        Parentage::Ours => Some(spawned),
        Parentage::Detached => {
            // The intermediate exits at once; a failed exec was reported
            // by spawn already.
            let status = spawned.wait().await.map_err(spawn_failed)?;
            if !status.success() {
                return Err(spawn_failed(io::Error::other(format!(
                    "the intermediate process failed ({status})"
                ))));
            }
            None
        }
    };

    let receiver = pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(spawn_failed)?;
    let mut lines = BufReader::new(receiver).lines();
    let started = Instant::now();
    let mut reports = Reports::default();
    let mut idle_deadline = started + timeouts.idle;
    let total_deadline = started + timeouts.total;

    let failure = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if reports.note(&line) {
                        starting.add(reports.successor_pid);
                        idle_deadline = Instant::now() + timeouts.idle;
                    } else if line.starts_with("READY ") {
                        match parse_ready(&line) {
                            Some((addr, version, pid)) => {
                                starting.disarm();
                                return Ok(Successor { pid, addr, version, child, verdict: Some(verdict) });
                            }
                            None => break SuccessorFailure::BadReady(line),
                        }
                    }
                }
                // EOF: the successor closed the pipe without READY; its
                // exit status (if it is our child) says why.
                Ok(None) | Err(_) => {
                    let Some(child) = child.as_mut() else {
                        break reports.exited(None);
                    };
                    let status = tokio::time::timeout(timeouts.idle, child.wait()).await;
                    match status {
                        Ok(Ok(status)) => break reports.exited(Some(status)),
                        _ => break SuccessorFailure::NotReady {
                            waited_ms: started.elapsed().as_millis() as u64,
                            progress: std::mem::take(&mut reports.progress),
                        },
                    }
                }
            },
            Some(Ok(status)) = async { Some(child.as_mut()?.wait().await) } => {
                // What it wrote before exiting is still in the pipe.
                while let Ok(Ok(Some(line))) =
                    tokio::time::timeout(timeouts.idle, lines.next_line()).await
                {
                    reports.note(&line);
                }
                break reports.exited(Some(status));
            }
            () = tokio::time::sleep_until(idle_deadline.min(total_deadline)) => {
                break SuccessorFailure::NotReady {
                    waited_ms: started.elapsed().as_millis() as u64,
                    progress: std::mem::take(&mut reports.progress),
                };
            }
        }
    };
    // Never leave a half-started successor behind.
    let own_child = child.as_ref().and_then(Child::id);
    if let Some(pid) = reports.successor_pid.filter(|&pid| Some(pid) != own_child) {
        kill_pid(pid);
        if child.is_none() {
            wait_gone(pid, timeouts.idle).await;
        }
    }
    if let Some(mut child) = child {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // Reaped above: its pid may name another process by now.
    starting.disarm();
    Err(failure)
}

/// A successor that is starting, killed when the start is given up before
/// READY (dropped mid-way, or [`kill_starting`]). Held by pidfd, so a pid
/// reused after the successor died is never signalled.
#[derive(Default)]
struct Starting {
    pids: Vec<(u32, OwnedFd)>,
}

/// The successor starting now, for a forced exit, which runs no drop.
static STARTING: parking_lot::Mutex<Vec<u32>> = parking_lot::Mutex::new(Vec::new());

impl Starting {
    fn add(&mut self, pid: Option<u32>) {
        let Some(pid) = pid.filter(|pid| !self.pids.iter().any(|(p, _)| p == pid)) else {
            return;
        };
        let Some(raw) = rustix::process::Pid::from_raw(pid as i32) else {
            return;
        };
        if let Ok(pidfd) = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
            self.pids.push((pid, pidfd));
            STARTING.lock().push(pid);
        }
    }

    /// Forgets the successor: it is ready, or already reaped.
    fn disarm(&mut self) {
        let pids: Vec<u32> = self.pids.drain(..).map(|(pid, _)| pid).collect();
        STARTING.lock().retain(|pid| !pids.contains(pid));
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        for (_, pidfd) in &self.pids {
            let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
        }
        self.disarm();
    }
}

/// Kills a successor that is starting right now (a forced exit).
pub fn kill_starting() {
    for pid in STARTING.lock().drain(..) {
        kill_pid(pid);
    }
}

/// Spawn attempts while the executable is busy (ETXTBSY).
pub const BUSY_ATTEMPTS: u32 = 20;

/// `spawn`, again while it fails with ETXTBSY: an entrypoint the update
/// just wrote can still be open for writing in a process that forked
/// meanwhile (the fd lives until that child execs). Up to
/// [`BUSY_ATTEMPTS`], backing off 5 ms doubling to 200 ms (about 3 s in
/// all); `busy` hears each failed attempt.
pub async fn spawn_when_not_busy<T>(
    mut spawn: impl FnMut() -> io::Result<T>,
    mut busy: impl FnMut(u32),
) -> io::Result<T> {
    let mut backoff = Duration::from_millis(5);
    let mut attempt = 1;
    loop {
        match spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < BUSY_ATTEMPTS => {
                tracing::debug!(attempt, "the entrypoint is busy (ETXTBSY); retrying");
                busy(attempt);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Makes the spawned process fork once more and exit, so that what execs
/// is adopted by the service manager (see [`Parentage::Detached`]). The
/// intermediate names the successor on the readiness pipe first
/// (`PROGRESS started <pid>`), so even one that dies before saying
/// anything can be stopped.
fn detach(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // The second of moltd's unsafe blocks: a fork between fork and exec.
    // SAFETY: runs in the freshly forked child, which has one thread; it
    // calls only async-signal-safe functions (fork, write, _exit) and
    // allocates nothing. The readiness pipe is already on READY_FD here
    // (the fd mappings run first, as they were added first).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => Ok(()),
            successor => {
                let mut line = *b"PROGRESS started                      ";
                let len = format_pid(successor as u32, &mut line);
                libc::write(READY_FD, line.as_ptr().cast(), len);
                libc::_exit(0)
            }
        });
    }
}

/// Writes `<pid>\n` after the `PROGRESS started ` prefix in `line`;
/// returns the length used. No allocation: it runs between fork and exec.
fn format_pid(mut pid: u32, line: &mut [u8; 38]) -> usize {
    const PREFIX: usize = "PROGRESS started ".len();
    let mut digits = [0u8; 10];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..n {
        line[PREFIX + i] = digits[n - 1 - i];
    }
    line[PREFIX + n] = b'\n';
    PREFIX + n + 1
}

impl Successor {
    /// It passed every check: it claims the gateway and serves. Its pid.
    pub fn accept(mut self) -> u32 {
        if let Some(verdict) = self.verdict.take() {
            verdict.accept();
        }
        self.pid
    }

    /// It came up wrong (e.g. the wrong version): it hears why, claims
    /// nothing, and is stopped.
    pub async fn reject(mut self, reason: &str) {
        if let Some(verdict) = self.verdict.take() {
            verdict.reject(reason);
        }
        self.stop().await;
    }

    /// Stops a successor that came up wrong; unless rejected first, it
    /// hears that the handoff was abandoned.
    pub async fn stop(self) {
        kill_pid(self.pid);
        match self.child {
            Some(mut child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            None => wait_gone(self.pid, STOP_WAIT).await,
        }
    }
}

/// How long a stopped, detached successor may take to be gone.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Waits (bounded) until `pid`, not our child, has exited: its pidfd
/// turns readable then.
async fn wait_gone(pid: u32, timeout: Duration) {
    let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
        return;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return; // already gone
    };
    let _ = tokio::task::spawn_blocking(move || {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        poll(&mut fds, Some(&timeout))
    })
    .await;
}

fn kill_pid(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// What a successor said on the readiness pipe before READY.
struct Reports {
    /// The last `PROGRESS` stage.
    progress: String,
    /// A `REFUSED` reason: it will not start, and says why.
    refusal: Option<String>,
    /// A wrapper (pnpm's bin is a shell script that does not exec) makes
    /// the successor a grandchild; it names itself first (`PROGRESS
    /// started <pid>`) so a failed start can be stopped, not just its
    /// wrapper.
    successor_pid: Option<u32>,
}

impl Default for Reports {
    fn default() -> Self {
        Reports {
            progress: "none".to_owned(),
            refusal: None,
            successor_pid: None,
        }
    }
}

impl Reports {
    /// Records a `PROGRESS` or `REFUSED` line; true for progress.
    fn note(&mut self, line: &str) -> bool {
        if let Some(stage) = line.strip_prefix("PROGRESS ") {
            if let Some(pid) = stage.strip_prefix("started ") {
                self.successor_pid = pid.trim().parse().ok();
            }
            self.progress = stage.to_owned();
            true
        } else {
            if let Some(reason) = line.strip_prefix("REFUSED ") {
                self.refusal = Some(reason.to_owned());
            }
            false
        }
    }

    fn exited(&mut self, status: Option<ExitStatus>) -> SuccessorFailure {
        match self.refusal.take() {
            Some(reason) => SuccessorFailure::Refused { status, reason },
            None => SuccessorFailure::Exited {
                status,
                progress: std::mem::take(&mut self.progress),
            },
        }
    }
}

fn parse_ready(line: &str) -> Option<(String, String, u32)> {
    let mut parts = line.split_whitespace();
    let (Some("READY"), Some(addr), Some(version), Some(pid), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((addr.to_owned(), version.to_owned(), pid.parse().ok()?))
}

#[cfg(test)]
mod tests;
