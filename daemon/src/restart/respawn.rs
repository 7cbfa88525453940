//! The predecessor's side of a handoff: start the successor through the
//! stable entrypoint with the listener, the lock and a readiness pipe, and
//! wait for it to prove it serves. The port never closes: both processes
//! hold the same listening socket until the predecessor exits.

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

use super::inherit::{HandoffFds, hand_off_to};

/// How to start the successor.
#[derive(Debug, Clone)]
pub struct SuccessorSpec {
    /// The stable entrypoint (e.g. `<prefix>/bin/moltd`), so a swapped
    /// install starts the new binary.
    pub entrypoint: PathBuf,
    pub args: Vec<OsString>,
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

/// A successor that reported READY.
#[derive(Debug)]
pub struct Successor {
    pub pid: u32,
    pub addr: String,
    pub version: String,
    /// Kept so the successor is not killed or reaped by accident; it
    /// outlives this process.
    pub child: Child,
}

#[derive(Debug, thiserror::Error)]
pub enum SuccessorFailure {
    #[error("cannot start successor {entrypoint}: {source}")]
    Spawn {
        entrypoint: String,
        source: io::Error,
    },
    #[error("successor exited before it was ready ({status}); last progress: {progress}")]
    Exited {
        status: ExitStatus,
        progress: String,
    },
    /// The successor said why before exiting (e.g. the config no longer
    /// parses).
    #[error("successor refused to start ({status}): {reason}")]
    Refused { status: ExitStatus, reason: String },
    #[error("successor not ready after {waited_ms} ms (last progress: {progress}); stopped it")]
    NotReady { waited_ms: u64, progress: String },
    #[error("successor sent an unreadable READY line: {0:?}")]
    BadReady(String),
}

/// Starts the successor and waits for `READY <addr> <version> <pid>`.
/// On any failure the successor is stopped and reaped, and this process
/// goes on serving.
pub async fn start_successor(
    spec: &SuccessorSpec,
    listener: OwnedFd,
    lock: OwnedFd,
    own_pid: u32,
    supervisor: SupervisorKind,
    timeouts: ReadyTimeouts,
) -> Result<Successor, SuccessorFailure> {
    let spawn_failed = |source| SuccessorFailure::Spawn {
        entrypoint: spec.entrypoint.display().to_string(),
        source,
    };
    let (reader, writer) = io::pipe().map_err(spawn_failed)?;
    let mut command = Command::new(&spec.entrypoint);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let fds = HandoffFds {
        listener,
        lock,
        ready: Some(OwnedFd::from(writer)),
    };
    hand_off_to(command.as_std_mut(), fds, own_pid, supervisor)
        .map_err(|e| spawn_failed(io::Error::other(e.to_string())))?;
    let mut child = command.spawn().map_err(spawn_failed)?;
    // Our copy of the write end must close, or EOF never comes.
    drop(command);

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
                        idle_deadline = Instant::now() + timeouts.idle;
                    } else if line.starts_with("READY ") {
                        match parse_ready(&line) {
                            Some((addr, version, pid)) => {
                                return Ok(Successor { pid, addr, version, child });
                            }
                            None => break SuccessorFailure::BadReady(line),
                        }
                    }
                }
                // EOF: the successor closed the pipe without READY; its
                // exit status says why.
                Ok(None) | Err(_) => {
                    let status = tokio::time::timeout(timeouts.idle, child.wait()).await;
                    match status {
                        Ok(Ok(status)) => break reports.exited(status),
                        _ => break SuccessorFailure::NotReady {
                            waited_ms: started.elapsed().as_millis() as u64,
                            progress: std::mem::take(&mut reports.progress),
                        },
                    }
                }
            },
            status = child.wait() => {
                if let Ok(status) = status {
                    // What it wrote before exiting is still in the pipe.
                    while let Ok(Ok(Some(line))) =
                        tokio::time::timeout(timeouts.idle, lines.next_line()).await
                    {
                        reports.note(&line);
                    }
                    break reports.exited(status);
                }
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
    if let Some(pid) = reports.successor_pid.filter(|&pid| Some(pid) != child.id()) {
        kill_pid(pid);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Err(failure)
}

impl Successor {
    /// Stops a successor that came up wrong (e.g. the wrong version).
    pub async fn stop(mut self) {
        kill_pid(self.pid);
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
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

    fn exited(&mut self, status: ExitStatus) -> SuccessorFailure {
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
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse_strictly() {
        assert_eq!(
            parse_ready("READY 127.0.0.1:1 1.2.3 42"),
            Some(("127.0.0.1:1".into(), "1.2.3".into(), 42))
        );
        for bad in [
            "READY",
            "READY a b",
            "READY a b c d",
            "READY a b notapid",
            "NOPE a b 1",
        ] {
            assert_eq!(parse_ready(bad), None, "{bad}");
        }
    }

    fn fds() -> (OwnedFd, OwnedFd) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("gateway.lock")).unwrap();
        (OwnedFd::from(listener), OwnedFd::from(lock))
    }

    fn script(body: &str) -> (tempfile::TempDir, SuccessorSpec) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moltd");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = SuccessorSpec {
            entrypoint: path,
            args: vec![],
        };
        (dir, spec)
    }

    fn quick() -> ReadyTimeouts {
        ReadyTimeouts {
            idle: Duration::from_millis(300),
            total: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_successor_that_exits_is_reported_with_its_status() {
        let (_dir, spec) = script("echo PROGRESS config >&5; exit 3");
        let (listener, lock) = fds();
        let err = start_successor(&spec, listener, lock, 1, SupervisorKind::None, quick())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SuccessorFailure::Exited { status, progress }
                if status.code() == Some(3) && progress == "config"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_successor_is_stopped_after_the_idle_timeout() {
        let (_dir, spec) = script("exec sleep 30");
        let (listener, lock) = fds();
        let err = start_successor(&spec, listener, lock, 1, SupervisorKind::None, quick())
            .await
            .unwrap_err();
        assert!(matches!(err, SuccessorFailure::NotReady { .. }), "{err}");
    }

    #[tokio::test]
    async fn progress_extends_the_wait_and_ready_names_the_successor() {
        let (_dir, spec) = script(
            "for s in a b c d; do echo PROGRESS $s >&5; sleep 0.7; done\n\
             echo \"READY 127.0.0.1:9 9.9.9 $$\" >&5\nexec sleep 5",
        );
        let (listener, lock) = fds();
        // 2.8 s of start-up against a 2 s idle bound: only progress can
        // carry it, with over a second of margin per line on a busy runner.
        let timeouts = ReadyTimeouts {
            idle: Duration::from_secs(2),
            total: Duration::from_secs(10),
        };
        let mut ok = start_successor(&spec, listener, lock, 1, SupervisorKind::None, timeouts)
            .await
            .unwrap();
        assert_eq!(ok.version, "9.9.9");
        assert_eq!(Some(ok.pid), ok.child.id());
        ok.child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn a_successor_behind_a_wrapper_is_stopped_too() {
        // Like pnpm's bin: a shell that runs the real program without exec.
        let (dir, spec) = script("\"$0.real\"; exit $?");
        let real = dir.path().join("moltd.real");
        std::fs::write(
            &real,
            "#!/bin/sh\necho \"PROGRESS started $$\" >&5\nexec sleep 600\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (listener, lock) = fds();
        let err = start_successor(&spec, listener, lock, 1, SupervisorKind::None, quick())
            .await
            .unwrap_err();
        let SuccessorFailure::NotReady { progress, .. } = err else {
            panic!("{err}");
        };
        let pid: u32 = progress.strip_prefix("started ").unwrap().parse().unwrap();
        // Reaped by its shell parent once killed; either way not running.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_entrypoint_is_a_spawn_failure() {
        let spec = SuccessorSpec {
            entrypoint: PathBuf::from("/nonexistent/moltd"),
            args: vec![],
        };
        let (listener, lock) = fds();
        let err = start_successor(&spec, listener, lock, 1, SupervisorKind::None, quick())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/moltd"), "{err}");
    }
}
