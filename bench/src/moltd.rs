//! The real release `moltd`: found (and rebuilt, so figures never come from
//! a stale binary), started in a fresh temp state dir, timed to its READY
//! line (and each successor's, on the same stdout), its memory and fds read
//! from /proc, and killed on drop with every successor.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use tempfile::TempDir;

/// The gateway token written into every temp config.
pub const TOKEN: &str = "bench-token-0123456789abcdef";

/// The workspace root (this crate lives in `<root>/bench`).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
}

/// `--moltd PATH` as given, else `<target>/release/moltd`, built first
/// with `cargo build --release -p molt-daemon` unless `build` is false.
pub fn locate(explicit: Option<PathBuf>, build: bool) -> Result<PathBuf> {
    if let Some(path) = explicit {
        ensure!(path.is_file(), "--moltd {}: no such file", path.display());
        return Ok(path);
    }
    let root = workspace_root();
    if build {
        build_release("molt-daemon")?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("release").join("moltd");
    ensure!(
        path.is_file(),
        "{} not found: run `cargo build --release -p molt-daemon` or pass --moltd PATH",
        path.display()
    );
    Ok(path)
}

/// `cargo build --release -p <package>` in the workspace, wherever the
/// bench was started from.
pub fn build_release(package: &str) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", package])
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo build --release -p {package}"))?;
    ensure!(
        status.success(),
        "cargo build --release -p {package} failed: {status}"
    );
    Ok(())
}

/// `moltd --version`, e.g. "0.1.0".
pub fn version(moltd: &Path) -> Result<String> {
    let out = Command::new(moltd)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", moltd.display()))?;
    ensure!(out.status.success(), "moltd --version: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().last().unwrap_or("?").to_owned())
}

/// How long a READY line may take, so a hung moltd fails the run.
const READY_WAIT: Duration = Duration::from_secs(20);

/// One `READY <addr> <version> <pid>` line and when it arrived.
#[derive(Debug, Clone)]
pub struct Ready {
    pub addr: String,
    pub pid: u32,
    pub at: Instant,
}

impl Ready {
    fn parse(line: &str, at: Instant) -> Option<Self> {
        let ready = molt_protocol::ready::ReadyLine::parse(line)?;
        Some(Self {
            addr: ready.addr,
            pid: ready.pid,
            at,
        })
    }
}

/// A moltd serving from its own temp state dir; killed on drop, with
/// every successor it started.
pub struct Running {
    child: Child,
    pub addr: String,
    pub pid: u32,
    /// Spawn to READY line.
    pub ready_after: Duration,
    /// READY lines on the shared stdout, read by a thread.
    readies: mpsc::Receiver<Ready>,
    state: PathBuf,
    /// The state dir and stderr.log; removed after the process is gone.
    _dir: TempDir,
}

impl Running {
    /// Starts moltd on port 0 in a fresh state dir and waits for READY.
    pub fn start(moltd: &Path) -> Result<Self> {
        Self::start_with(moltd, &[], Value::Null)
    }

    /// Like [`Running::start`] with extra flags and `gateway.reload`
    /// settings (none when `reload` is null).
    pub fn start_with(moltd: &Path, args: &[&str], reload: Value) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp state dir")?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state).context("creating the state dir")?;
        // The registry check is off: these figures are the daemon's, not
        // the network's.
        let mut config = serde_json::json!({
            "gateway": { "auth": { "token": TOKEN } },
            "update": { "checkOnStart": false },
        });
        if !reload.is_null() {
            config["gateway"]["reload"] = reload;
        }
        std::fs::write(state.join("openclaw.json"), config.to_string())
            .context("writing openclaw.json")?;
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).context("creating stderr.log")?;

        let mut cmd = Command::new(moltd);
        cmd.args(["--port", "0", "--state-dir"])
            .arg(&state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for key in [
            "OPENCLAW_STATE_DIR",
            "OPENCLAW_CONFIG_PATH",
            "OPENCLAW_GATEWAY_TOKEN",
            "NOTIFY_SOCKET",
            "INVOCATION_ID",
        ] {
            cmd.env_remove(key);
        }

        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", moltd.display()))?;
        let stdout = child.stdout.take().context("moltd's stdout")?;
        let (tx, readies) = mpsc::channel();
        // Successors inherit this stdout; the thread ends when they all
        // have closed it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ready) = Ready::parse(&line, Instant::now())
                    && tx.send(ready).is_err()
                {
                    break;
                }
            }
        });
        let Ok(first) = readies.recv_timeout(READY_WAIT) else {
            let _ = child.kill();
            let status = child.wait()?;
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            bail!("moltd did not print READY ({status}); stderr:\n{log}");
        };
        Ok(Self {
            child,
            addr: first.addr,
            pid: first.pid,
            ready_after: first.at - started,
            readies,
            state,
            _dir: dir,
        })
    }

    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The next READY line: a successor's.
    pub fn next_ready(&self) -> Result<Ready> {
        self.readies
            .recv_timeout(READY_WAIT)
            .map_err(|_| anyhow!("no successor READY within {READY_WAIT:?}"))
    }

    pub fn memory(&self) -> Result<Memory> {
        memory(self.pid)
    }

    /// Live moltd processes serving this state dir: the first and every
    /// successor that has not exited.
    pub fn serving(&self) -> Vec<u32> {
        let mut pids = molt_e2e::moltd::serving(&self.state);
        pids.sort_unstable();
        pids
    }

    /// moltd's scheduler totals so far, summed over its threads. Threads
    /// that exited are not counted; moltd's runtime threads live as long
    /// as it does.
    pub fn sched(&self) -> Result<Sched> {
        let tasks = format!("/proc/{}/task", self.pid);
        let mut total = Sched::default();
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            let path = task?.path().join("schedstat");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let one = Sched::parse(&text)
                .with_context(|| format!("unexpected {}: {text:?}", path.display()))?;
            total = total + one;
        }
        Ok(total)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Successors are not our children: kill them by pid.
        for pid in self.serving() {
            if pid != self.pid {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use molt_e2e::memory::{Memory, memory};

/// What each open fd of `pid` points at, sorted, by kind for sockets,
/// pipes and anon inodes (`socket`, `pipe`, `anon_inode`), else the path.
pub fn fds(pid: u32) -> Result<Vec<String>> {
    let dir = format!("/proc/{pid}/fd");
    let mut kinds: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir}"))?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| {
            let target = target.to_string_lossy().into_owned();
            match target.split_once(':') {
                Some((kind, _)) if !target.starts_with('/') => kind.to_owned(),
                _ => target,
            }
        })
        .collect();
    kinds.sort();
    Ok(kinds)
}

pub use molt_e2e::moltd::alive;

/// One line of `/proc/<pid>/task/<tid>/schedstat`: time on a CPU, time
/// runnable but waiting for one, and how many times it was scheduled in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sched {
    pub run: Duration,
    pub wait: Duration,
    pub slices: u64,
}

impl Sched {
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (run, wait, slices) = (fields.next()??, fields.next()??, fields.next()??);
        Some(Self {
            run: Duration::from_nanos(run),
            wait: Duration::from_nanos(wait),
            slices,
        })
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Sched) -> Sched {
        Sched {
            run: self.run.saturating_sub(earlier.run),
            wait: self.wait.saturating_sub(earlier.wait),
            slices: self.slices.saturating_sub(earlier.slices),
        }
    }
}

impl std::ops::Add for Sched {
    type Output = Sched;
    fn add(self, other: Sched) -> Sched {
        Sched {
            run: self.run + other.run,
            wait: self.wait + other.wait,
            slices: self.slices + other.slices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_run_wait_and_slices_from_schedstat() {
        let before = Sched::parse("1000 200 3\n").unwrap();
        let after = Sched::parse("5000 700 10\n").unwrap();
        let d = after.since(before);
        assert_eq!(d.run, Duration::from_nanos(4000));
        assert_eq!(d.wait, Duration::from_nanos(500));
        assert_eq!(d.slices, 7);
        assert_eq!((before + before).slices, 6);
        assert_eq!(Sched::parse("12 x 3"), None);
    }
}
