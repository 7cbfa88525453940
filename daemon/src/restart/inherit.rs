//! What a predecessor (or systemd) hands this process at start: the
//! listening socket, the locked `gateway.lock` fd and a readiness pipe.
//!
//! The listener uses systemd's `LISTEN_FDS` protocol (fd 3), so socket
//! activation and molt's own handoff share one path. The lock and the
//! pipe are named in `MOLT_HANDOFF=lock=4,ready=5,from=<pid>,supervisor=<kind>`
//! (no `ready` after an exec, which has no one to report to; `supervisor`
//! is the predecessor's, which a successor serves under too).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, PipeWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use molt_protocol::status::SupervisorKind;

pub const HANDOFF_ENV: &str = "MOLT_HANDOFF";
/// Where the successor finds each inherited fd.
pub const LISTENER_FD: RawFd = 3;
pub const LOCK_FD: RawFd = 4;
pub const READY_FD: RawFd = 5;

/// Everything inherited; all `None` on a plain start.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listener: Option<std::net::TcpListener>,
    pub lock: Option<File>,
    pub ready: Option<ReadyPipe>,
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
        let ready = spec
            .ready
            .map(|fd| {
                adopt(fd, &|target| target.to_string_lossy().starts_with("pipe:"))
                    .map(|owned| ReadyPipe(PipeWriter::from(owned)))
                    .map_err(|e| bad(format!("ready fd {fd}: {e}")))
            })
            .transpose()?;
        Ok(Self {
            listener,
            lock: Some(File::from(lock)),
            ready,
            predecessor: Some(spec.from),
            supervisor: spec.supervisor,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
struct HandoffSpec {
    lock: RawFd,
    ready: Option<RawFd>,
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
    let ready = fields
        .contains_key("ready")
        .then(|| number("ready"))
        .transpose()?;
    let ready = ready.map(|fd| fd as RawFd);
    if lock <= 2 || ready.is_some_and(|fd| fd <= 2 || fd == lock) {
        return Err("fds must be distinct and above 2");
    }
    let supervisor = fields
        .get("supervisor")
        .map(|name| SupervisorKind::from_wire(name).ok_or("unknown supervisor"))
        .transpose()?;
    Ok(HandoffSpec {
        lock,
        ready,
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
pub struct ReadyPipe(PipeWriter);

impl ReadyPipe {
    pub fn progress(&mut self, stage: &str) {
        // A vanished predecessor is not our failure; it gave up waiting.
        let _ = writeln!(self.0, "PROGRESS {stage}");
    }

    pub fn ready(mut self, line: &str) {
        let _ = writeln!(self.0, "{line}");
    }

    /// Why this process will not serve (it exits next).
    pub fn refused(mut self, reason: &str) {
        let reason = reason.replace(['\r', '\n'], " ");
        let _ = writeln!(self.0, "REFUSED {reason}");
    }
}

/// The fds a successor inherits the handoff through.
pub struct HandoffFds {
    pub listener: OwnedFd,
    pub lock: OwnedFd,
    /// The readiness pipe's write end (respawn); `None` for exec, where
    /// the process itself carries on.
    pub ready: Option<OwnedFd>,
}

/// Sets up `command` to start a successor of process `from`, which runs
/// under `supervisor`: the listener as systemd's `LISTEN_FDS` fd 3 (no
/// stale `LISTEN_PID`/`LISTEN_FDNAMES` of our own start), the lock and
/// readiness fds, and [`HANDOFF_ENV`] naming them.
pub fn hand_off_to(
    command: &mut std::process::Command,
    fds: HandoffFds,
    from: u32,
    supervisor: SupervisorKind,
) -> Result<(), command_fds::FdMappingCollision> {
    use command_fds::{CommandFdExt, FdMapping};
    let mut handoff = format!("lock={LOCK_FD}");
    let mut mappings = vec![
        FdMapping {
            parent_fd: fds.listener,
            child_fd: LISTENER_FD,
        },
        FdMapping {
            parent_fd: fds.lock,
            child_fd: LOCK_FD,
        },
    ];
    if let Some(ready) = fds.ready {
        handoff.push_str(&format!(",ready={READY_FD}"));
        mappings.push(FdMapping {
            parent_fd: ready,
            child_fd: READY_FD,
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
            parse_handoff("lock=4,ready=5,from=77"),
            Ok(HandoffSpec {
                lock: 4,
                ready: Some(5),
                from: 77,
                supervisor: None,
            })
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
            "lock=1,ready=5,from=1",
            "lock=x,ready=5,from=1",
            "lock=4,ready=5,from=1,supervisor=upstart",
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
}
