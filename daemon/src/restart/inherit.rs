//! What a predecessor (or systemd) hands this process at start: the
//! listening socket, the local socket, the locked `gateway.lock` fd, a
//! readiness pipe and a verdict pipe.
//!
//! The listener uses systemd's `LISTEN_FDS` protocol (fd 3), so socket
//! activation and molt's own handoff share one path. The lock and the
//! pipes are named in
//! `MOLT_HANDOFF=lock=4,ready=5,verdict=6,local=7,from=<pid>,supervisor=<kind>`
//! (no pipes after an exec, which has no one to report to; `local` only
//! when the predecessor had a local socket; `supervisor` is the
//! predecessor's, which a successor serves under too). A predecessor that
//! relays the successor's output (`restart/relay.rs`) adds
//! `stdout=8,stderr=9`: its own stdout and stderr, which the successor
//! takes back as fds 1 and 2 when it reports READY.
//!
//! The two pipes are the two halves of a handoff. The successor reports
//! on `ready` (progress, then `READY <addr> <version> <pid>`); the
//! predecessor judges it (the version it must run, and under systemd
//! that systemd took it as the service's main process) and answers on
//! `verdict`: `ACCEPTED`, or `REJECTED <reason>` before it stops it. Only
//! an accepted successor names itself in `gateway.lock`, tells systemd it
//! is ready and runs its start work (finishing an update, the
//! auto-updater): a rejected one must leave no trace, since its
//! predecessor goes on serving and rolls the update back. A verdict pipe
//! that closes without a word means the predecessor died mid-handoff;
//! the successor then carries on, as the only process left. The wait is
//! bounded ([`VERDICT_WAIT`]). A predecessor that names no `verdict`
//! (an older moltd) accepts by handing off at all.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, PipeWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use molt_protocol::status::SupervisorKind;

pub const HANDOFF_ENV: &str = "MOLT_HANDOFF";
/// Where the successor finds each inherited fd.
pub const LISTENER_FD: RawFd = 3;
pub const LOCK_FD: RawFd = 4;
pub const READY_FD: RawFd = 5;
pub const VERDICT_FD: RawFd = 6;
pub const LOCAL_FD: RawFd = 7;
pub const STDOUT_FD: RawFd = 8;
pub const STDERR_FD: RawFd = 9;

/// How long a successor waits for its predecessor's verdict after READY.
/// The predecessor needs a version comparison and, under systemd, one
/// `MAINPID=` round trip (at most 5 s): this is a bound, not a pace.
pub const VERDICT_WAIT: Duration = Duration::from_secs(30);

/// The verdict lines, written by the predecessor and read by the successor.
const ACCEPTED: &str = "ACCEPTED";
const REJECTED: &str = "REJECTED";

/// Everything inherited; all `None` on a plain start.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listener: Option<std::net::TcpListener>,
    /// The local (Unix) socket, from a predecessor that had one.
    pub local: Option<std::os::unix::net::UnixListener>,
    pub lock: Option<File>,
    pub ready: Option<ReadyPipe>,
    /// Where the predecessor's verdict arrives (with `ready`, from a
    /// predecessor that judges its successor).
    pub verdict: Option<VerdictPipe>,
    /// The pid that handed over, when this is a molt handoff.
    pub predecessor: Option<u32>,
    /// The supervisor the predecessor ran under.
    pub supervisor: Option<SupervisorKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error("inherited listener (LISTEN_FDS): {0}")]
    Listener(io::Error),
    #[error("{HANDOFF_ENV}={value}: {problem}")]
    Handoff { value: String, problem: String },
}

impl Inherited {
    /// Takes the inherited fds. Must run before any thread starts: the
    /// `LISTEN_FDS` variables are removed from the environment so children
    /// (package managers) do not see them.
    pub fn take(env: &HashMap<String, String>, lock_path: &Path) -> Result<Self, InheritError> {
        let listener = listenfd::ListenFd::from_env()
            .take_tcp_listener(0)
            .map_err(InheritError::Listener)?;
        let Some(value) = env.get(HANDOFF_ENV).filter(|v| !v.is_empty()) else {
            return Ok(Self {
                listener,
                ..Self::default()
            });
        };
        let bad = |problem: String| InheritError::Handoff {
            value: value.clone(),
            problem,
        };
        let spec = parse_handoff(value).map_err(|p| bad(p.to_owned()))?;
        let lock = adopt(spec.lock, &|target| same_file(target, lock_path))
            .map_err(|e| bad(format!("lock fd {}: {e}", spec.lock)))?;
        let stdio = spec
            .stdio
            .map(|(out, err)| {
                let take =
                    |fd| adopt(fd, &|_| true).map_err(|e| bad(format!("stdio fd {fd}: {e}")));
                Ok::<_, InheritError>((take(out)?, take(err)?))
            })
            .transpose()?;
        let ready = spec
            .ready
            .map(|fd| {
                adopt(fd, &|target| target.to_string_lossy().starts_with("pipe:"))
                    .map(|owned| ReadyPipe {
                        pipe: PipeWriter::from(owned),
                        stdio,
                    })
                    .map_err(|e| bad(format!("ready fd {fd}: {e}")))
            })
            .transpose()?;
        let verdict = spec
            .verdict
            .map(|fd| {
                adopt(fd, &|target| target.to_string_lossy().starts_with("pipe:"))
                    .map(|owned| VerdictPipe::new(owned, spec.from))
                    .map_err(|e| bad(format!("verdict fd {fd}: {e}")))
            })
            .transpose()?;
        let local = spec
            .local
            .map(|fd| {
                adopt(fd, &|target| {
                    target.to_string_lossy().starts_with("socket:")
                })
                .map(std::os::unix::net::UnixListener::from)
                .map_err(|e| bad(format!("local fd {fd}: {e}")))
            })
            .transpose()?;
        Ok(Self {
            listener,
            local,
            lock: Some(File::from(lock)),
            ready,
            verdict,
            predecessor: Some(spec.from),
            supervisor: spec.supervisor,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
struct HandoffSpec {
    lock: RawFd,
    ready: Option<RawFd>,
    verdict: Option<RawFd>,
    /// The predecessor's stdout and stderr, taken back at READY.
    stdio: Option<(RawFd, RawFd)>,
    local: Option<RawFd>,
    from: u32,
    supervisor: Option<SupervisorKind>,
}

fn parse_handoff(value: &str) -> Result<HandoffSpec, &'static str> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in value.split(',') {
        let (key, val) = part.split_once('=').ok_or("expected key=value pairs")?;
        fields.insert(key, val);
    }
    let number = |key| -> Result<u32, &'static str> {
        fields
            .get(key)
            .ok_or("lock and from are required")?
            .parse()
            .map_err(|_| "fds and pid must be numbers")
    };
    let lock = number("lock")? as RawFd;
    let optional = |key| -> Result<Option<RawFd>, &'static str> {
        let fd = fields.contains_key(key).then(|| number(key)).transpose()?;
        Ok(fd.map(|fd| fd as RawFd))
    };
    let (ready, verdict, local) = (optional("ready")?, optional("verdict")?, optional("local")?);
    if verdict.is_some() && ready.is_none() {
        return Err("a verdict pipe comes with a readiness pipe");
    }
    let stdio = match (optional("stdout")?, optional("stderr")?) {
        (Some(out), Some(err)) if ready.is_some() => Some((out, err)),
        (None, None) => None,
        _ => return Err("stdout and stderr come together, with a readiness pipe"),
    };
    let fds: Vec<RawFd> = [Some(lock), ready, verdict, local]
        .into_iter()
        .chain(stdio.iter().flat_map(|&(out, err)| [Some(out), Some(err)]))
        .flatten()
        .collect();
    let distinct = fds.iter().enumerate().all(|(i, fd)| !fds[..i].contains(fd));
    if fds.iter().any(|&fd| fd <= 2) || !distinct {
        return Err("fds must be distinct and above 2");
    }
    let supervisor = fields
        .get("supervisor")
        .map(|name| SupervisorKind::from_wire(name).ok_or("unknown supervisor"))
        .transpose()?;
    Ok(HandoffSpec {
        lock,
        ready,
        verdict,
        stdio,
        local,
        from: number("from")?,
        supervisor,
    })
}

fn same_file(target: &Path, expected: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    canonical(target) == canonical(expected)
}

/// Takes ownership of an inherited fd after checking, through
/// `/proc/self/fd`, that it is open and points where it should.
fn adopt(fd: RawFd, points_at: &dyn Fn(&Path) -> bool) -> io::Result<OwnedFd> {
    let target: PathBuf = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    if !points_at(&target) {
        return Err(io::Error::other(format!(
            "points at {}, not what the handoff names",
            target.display()
        )));
    }
    // The one unsafe in moltd: adopting an fd number our predecessor passed
    // to us. SAFETY: it is open (checked above), it is ours by exec
    // inheritance, and nothing else in this process owns it; `take` runs
    // once, at start.
    #[allow(unsafe_code)]
    let inherited = unsafe { OwnedFd::from_raw_fd(fd) };
    // Duplicate with close-on-exec and close the original, so package
    // managers we run later never inherit the lock or the pipe. The
    // duplicate shares the open file description, and with it the flock.
    let owned = inherited.try_clone()?;
    drop(inherited);
    Ok(owned)
}

/// The successor's side of the readiness pipe: `PROGRESS <stage>` lines
/// while starting, then one `READY <addr> <version> <pid>` line, or one
/// `REFUSED <reason>` line before it exits.
#[derive(Debug)]
pub struct ReadyPipe {
    pipe: PipeWriter,
    /// The predecessor's own stdout and stderr, when it relays ours.
    stdio: Option<(OwnedFd, OwnedFd)>,
}

impl ReadyPipe {
    pub fn progress(&mut self, stage: &str) {
        // A vanished predecessor is not our failure; it gave up waiting.
        let _ = writeln!(self.pipe, "PROGRESS {stage}");
    }

    /// Takes back the predecessor's stdout and stderr, which outlive it,
    /// then reports READY.
    pub fn ready(mut self, line: &str) {
        if let Some((out, err)) = self.stdio.take()
            && let Err(e) =
                rustix::stdio::dup2_stdout(&out).and_then(|()| rustix::stdio::dup2_stderr(&err))
        {
            tracing::warn!("cannot take back stdout and stderr from the predecessor: {e}");
        }
        let _ = writeln!(self.pipe, "{line}");
    }

    /// Why this process will not serve (it exits next).
    pub fn refused(mut self, reason: &str) {
        let reason = reason.replace(['\r', '\n'], " ");
        let _ = writeln!(self.pipe, "REFUSED {reason}");
    }
}

/// The successor's side of the verdict pipe: its predecessor's judgement
/// after READY.
#[derive(Debug)]
pub struct VerdictPipe {
    pipe: OwnedFd,
    /// The predecessor, to tell a pipe closed by its death from one closed
    /// without a verdict. `None` if it was gone before this process
    /// looked.
    predecessor: Option<OwnedFd>,
    from: u32,
}

/// How a successor came to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The predecessor accepted it.
    ByPredecessor,
    /// The predecessor died before it gave a verdict: this process is the
    /// only one left to serve.
    PredecessorGone,
}

/// Why a successor must not serve: it exits without claiming anything.
#[derive(Debug, thiserror::Error)]
pub enum NotAccepted {
    #[error("the predecessor (pid {from}) rejected this process: {reason}")]
    Rejected { from: u32, reason: String },
    #[error("the predecessor (pid {from}) closed the handoff without a verdict and still runs")]
    Closed { from: u32 },
    #[error("the predecessor (pid {from}) gave no verdict within {} s", waited.as_secs())]
    TimedOut { from: u32, waited: Duration },
    #[error("the predecessor (pid {from}) sent an unreadable verdict: {line:?}")]
    Unreadable { from: u32, line: String },
    #[error("reading the verdict of the predecessor (pid {from}): {source}")]
    Io { from: u32, source: io::Error },
}

impl VerdictPipe {
    fn new(pipe: OwnedFd, from: u32) -> Self {
        let predecessor = rustix::process::Pid::from_raw(from as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        Self {
            pipe,
            predecessor,
            from,
        }
    }

    /// Waits (at most `wait`) for the predecessor's verdict.
    pub async fn wait(self, wait: Duration) -> Result<Accepted, NotAccepted> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let from = self.from;
        let io = |source| NotAccepted::Io { from, source };
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(self.pipe).map_err(io)?;
        let mut lines = BufReader::new(receiver).lines();
        let line = match tokio::time::timeout(wait, lines.next_line()).await {
            Err(_) => return Err(NotAccepted::TimedOut { from, waited: wait }),
            Ok(line) => line.map_err(io)?,
        };
        match line
            .as_deref()
            .map(|l| l.split_once(' ').unwrap_or((l, "")))
        {
            Some((ACCEPTED, "")) => Ok(Accepted::ByPredecessor),
            Some((REJECTED, reason)) => Err(NotAccepted::Rejected {
                from,
                reason: reason.to_owned(),
            }),
            Some(_) => Err(NotAccepted::Unreadable {
                from,
                line: line.unwrap_or_default(),
            }),
            None if self.predecessor.as_ref().is_none_or(has_exited) => {
                Ok(Accepted::PredecessorGone)
            }
            None => Err(NotAccepted::Closed { from }),
        }
    }
}

/// Whether the process behind `pidfd` has exited (a pidfd turns readable
/// then, reaped or not).
fn has_exited(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok_and(|ready| ready > 0)
}

/// The predecessor's side of the verdict pipe. Dropped without a verdict,
/// it rejects: only a predecessor that dies says nothing.
#[derive(Debug)]
pub struct VerdictSender(Option<PipeWriter>);

impl VerdictSender {
    pub fn new(pipe: PipeWriter) -> Self {
        Self(Some(pipe))
    }

    /// The successor passed every check: it may claim the gateway.
    pub fn accept(mut self) {
        self.send(ACCEPTED);
    }

    /// The successor failed a check; it is stopped next.
    pub fn reject(mut self, reason: &str) {
        let reason = reason.replace(['\r', '\n'], " ");
        self.send(&format!("{REJECTED} {reason}"));
    }

    fn send(&mut self, line: &str) {
        if let Some(mut pipe) = self.0.take() {
            // One short line is written whole (below PIPE_BUF). A
            // successor that is gone no longer needs it.
            let _ = writeln!(pipe, "{line}");
        }
    }
}

impl Drop for VerdictSender {
    fn drop(&mut self) {
        self.send(&format!("{REJECTED} the handoff was abandoned"));
    }
}

/// The readiness and verdict pipes of a respawn: the successor's ends.
pub struct HandoffPipes {
    /// The readiness pipe's write end.
    pub ready: OwnedFd,
    /// The verdict pipe's read end.
    pub verdict: OwnedFd,
    /// This process's stdout and stderr, when it relays the successor's.
    pub stdio: Option<(OwnedFd, OwnedFd)>,
}

/// What the gateway holds and a successor takes over: duplicates of its
/// sockets and of the locked lock fd.
pub struct HeldFds {
    pub listener: OwnedFd,
    /// The local (Unix) socket, when this process has one.
    pub local: Option<OwnedFd>,
    pub lock: OwnedFd,
}

/// The fds a successor inherits the handoff through.
pub struct HandoffFds {
    pub held: HeldFds,
    /// `None` for exec, where the process itself carries on.
    pub pipes: Option<HandoffPipes>,
}

/// Sets up `command` to start a successor of process `from`, which runs
/// under `supervisor`: the listener as systemd's `LISTEN_FDS` fd 3 (no
/// stale `LISTEN_PID`/`LISTEN_FDNAMES` of our own start), the lock and
/// the pipes, and [`HANDOFF_ENV`] naming them.
pub fn hand_off_to(
    command: &mut std::process::Command,
    fds: HandoffFds,
    from: u32,
    supervisor: SupervisorKind,
) -> Result<(), command_fds::FdMappingCollision> {
    use command_fds::{CommandFdExt, FdMapping};
    let mut handoff = format!("lock={LOCK_FD}");
    let HeldFds {
        listener,
        local,
        lock,
    } = fds.held;
    let mut mappings = vec![
        FdMapping {
            parent_fd: listener,
            child_fd: LISTENER_FD,
        },
        FdMapping {
            parent_fd: lock,
            child_fd: LOCK_FD,
        },
    ];
    if let Some(pipes) = fds.pipes {
        handoff.push_str(&format!(",ready={READY_FD},verdict={VERDICT_FD}"));
        mappings.push(FdMapping {
            parent_fd: pipes.ready,
            child_fd: READY_FD,
        });
        mappings.push(FdMapping {
            parent_fd: pipes.verdict,
            child_fd: VERDICT_FD,
        });
        if let Some((stdout, stderr)) = pipes.stdio {
            handoff.push_str(&format!(",stdout={STDOUT_FD},stderr={STDERR_FD}"));
            mappings.push(FdMapping {
                parent_fd: stdout,
                child_fd: STDOUT_FD,
            });
            mappings.push(FdMapping {
                parent_fd: stderr,
                child_fd: STDERR_FD,
            });
        }
    }
    if let Some(local) = local {
        handoff.push_str(&format!(",local={LOCAL_FD}"));
        mappings.push(FdMapping {
            parent_fd: local,
            child_fd: LOCAL_FD,
        });
    }
    handoff.push_str(&format!(",from={from},supervisor={}", supervisor.as_str()));
    command
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env(HANDOFF_ENV, handoff);
    command.fd_mappings(mappings).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_spec_parses_and_rejects_nonsense() {
        assert_eq!(
            parse_handoff("lock=4,ready=5,verdict=6,from=77"),
            Ok(HandoffSpec {
                lock: 4,
                ready: Some(5),
                verdict: Some(6),
                stdio: None,
                local: None,
                from: 77,
                supervisor: None,
            })
        );
        assert_eq!(
            parse_handoff("lock=4,ready=5,verdict=6,stdout=8,stderr=9,from=77").map(|s| s.stdio),
            Ok(Some((8, 9))),
            "a predecessor that relays the successor's output"
        );
        assert_eq!(
            parse_handoff("lock=4,ready=5,verdict=6,local=7,from=77").map(|s| s.local),
            Ok(Some(7))
        );
        assert_eq!(
            parse_handoff("lock=4,ready=5,from=77").map(|s| s.verdict),
            Ok(None),
            "an older predecessor gives no verdict"
        );
        assert_eq!(
            parse_handoff("lock=4,ready=5,from=77,supervisor=systemd").map(|s| s.supervisor),
            Ok(Some(SupervisorKind::Systemd))
        );
        assert_eq!(
            parse_handoff("lock=4,from=77").map(|s| s.ready),
            Ok(None),
            "exec hands over no pipe"
        );
        for bad in [
            "",
            "lock=4",
            "lock=4,ready=4,from=1",
            "lock=4,ready=5,verdict=5,from=1",
            "lock=4,ready=5,verdict=4,from=1",
            "lock=4,verdict=6,from=1",
            "lock=4,ready=5,verdict=6,local=6,from=1",
            "lock=4,local=x,from=1",
            "lock=1,ready=5,from=1",
            "lock=x,ready=5,from=1",
            "lock=4,ready=5,from=1,supervisor=upstart",
            "lock=4,ready=5,stdout=7,from=1",
            "lock=4,stdout=7,stderr=8,from=1",
            "lock=4,ready=5,stdout=7,stderr=5,from=1",
            "lock=4,ready=5,stdout=2,stderr=8,from=1",
        ] {
            assert!(parse_handoff(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn adopt_refuses_an_fd_that_points_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("other")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let err = adopt(fd, &|t| same_file(t, &dir.path().join("gateway.lock"))).unwrap_err();
        assert!(err.to_string().contains("points at"), "{err}");
        // Not adopted: `file` still owns the fd.
        drop(file);
        assert!(adopt(9999, &|_| true).is_err(), "a closed fd is refused");
    }

    /// A verdict pipe from this process to itself, as if `predecessor`
    /// had handed over.
    fn verdict_pipe(predecessor: u32) -> (VerdictSender, VerdictPipe) {
        let (reader, writer) = io::pipe().unwrap();
        (
            VerdictSender::new(writer),
            VerdictPipe::new(OwnedFd::from(reader), predecessor),
        )
    }

    const WAIT: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn an_accepted_successor_serves_and_a_rejected_one_hears_why() {
        let me = std::process::id();
        let (sender, pipe) = verdict_pipe(me);
        sender.accept();
        assert_eq!(pipe.wait(WAIT).await.unwrap(), Accepted::ByPredecessor);

        let (sender, pipe) = verdict_pipe(me);
        sender.reject("successor pid 9 runs version 1.0.0,\nexpected 2.0.0");
        let err = pipe.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(&err, NotAccepted::Rejected { from, reason }
                if *from == me && reason == "successor pid 9 runs version 1.0.0, expected 2.0.0"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_dropped_verdict_rejects_and_only_a_dead_predecessor_says_nothing() {
        let me = std::process::id();
        let (sender, pipe) = verdict_pipe(me);
        drop(sender);
        let err = pipe.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(&err, NotAccepted::Rejected { reason, .. } if reason.contains("abandoned")),
            "{err}"
        );

        // The pipe closes without a word: the predecessor died, or not.
        let (reader, writer) = io::pipe().unwrap();
        drop(writer);
        let alive = VerdictPipe::new(OwnedFd::from(reader), me);
        let err = alive.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(err, NotAccepted::Closed { from } if from == me),
            "{err}"
        );

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let (reader, writer) = io::pipe().unwrap();
        // Opened while it runs (or just exited, unreaped), as a successor
        // does at start; then it is gone.
        let gone = VerdictPipe::new(OwnedFd::from(reader), child.id());
        child.wait().unwrap();
        drop(writer);
        assert_eq!(gone.wait(WAIT).await.unwrap(), Accepted::PredecessorGone);
    }

    #[tokio::test(start_paused = true)]
    async fn a_predecessor_that_never_answers_is_not_waited_for_forever() {
        let (sender, pipe) = verdict_pipe(std::process::id());
        let err = pipe.wait(WAIT).await.unwrap_err();
        assert!(
            matches!(err, NotAccepted::TimedOut { waited, .. } if waited == WAIT),
            "{err}"
        );
        drop(sender);
    }
}
