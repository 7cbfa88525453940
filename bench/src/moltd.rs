//! The real release `moltd`: found (and rebuilt, so figures never come from
//! a stale binary), started in a fresh temp state dir, timed to its READY
//! line, its memory read from /proc, and killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
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
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "-p", "molt-daemon"])
            .current_dir(root)
            .status()
            .context("running cargo build --release -p molt-daemon")?;
        ensure!(
            status.success(),
            "cargo build --release -p molt-daemon failed: {status}"
        );
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

/// A moltd serving from its own temp state dir; killed on drop.
pub struct Running {
    child: Child,
    pub addr: String,
    pub pid: u32,
    /// Spawn to READY line.
    pub ready_after: Duration,
    /// The state dir and stderr.log; removed after the process is gone.
    _dir: TempDir,
}

impl Running {
    /// Starts moltd on port 0 in a fresh state dir and waits for READY.
    pub fn start(moltd: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp state dir")?;
        let state = dir.path().join("state");
        std::fs::create_dir(&state).context("creating the state dir")?;
        // The registry check is off: these figures are the daemon's, not
        // the network's.
        let config = serde_json::json!({
            "gateway": { "auth": { "token": TOKEN } },
            "update": { "checkOnStart": false },
        });
        std::fs::write(state.join("openclaw.json"), config.to_string())
            .context("writing openclaw.json")?;
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).context("creating stderr.log")?;

        let mut cmd = Command::new(moltd);
        cmd.args(["--port", "0", "--state-dir"])
            .arg(&state)
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
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let ready_after = started.elapsed();

        let parts: Vec<&str> = line.split_whitespace().collect();
        let (addr, pid) = match (read, parts.as_slice()) {
            (Some(Ok(_)), ["READY", addr, _version, pid]) => (addr.to_string(), pid.parse()?),
            _ => {
                let _ = child.kill();
                let status = child.wait()?;
                let log =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                bail!("moltd did not print READY (got {line:?}, {status}); stderr:\n{log}");
            }
        };
        Ok(Self {
            child,
            addr,
            pid,
            ready_after,
            _dir: dir,
        })
    }

    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Memory::parse(&status).with_context(|| format!("no VmRSS/VmHWM in {path}"))
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// Resident memory from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        };
        Some(Self {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    pub fn rss_mib(self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_hwm_from_proc_status() {
        let status =
            "Name:\tmoltd\nVmPeak:\t  10000 kB\nVmHWM:\t    6144 kB\nVmRSS:\t    5120 kB\n";
        let m = Memory::parse(status).unwrap();
        assert_eq!((m.rss_kib, m.hwm_kib), (5120, 6144));
        assert_eq!(m.rss_mib(), 5.0);
        assert_eq!(Memory::parse("Name:\tx\n"), None);
    }

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
