//! The real `moltd` binary as a child process: every READY line it (and
//! each successor, which shares its stdout) prints arrives on a channel.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One `READY <addr> <version> <pid>` line (molt-protocol's format).
pub use molt_protocol::ready::ReadyLine as Ready;

/// Variables that would leak the developer's own gateway (or supervisor)
/// into a test's moltd or molt.
pub const GATEWAY_ENV: &[&str] = &[
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_NO_AUTO_UPDATE",
    "OPENCLAW_NO_RESPAWN",
    "NOTIFY_SOCKET",
    "INVOCATION_ID",
];

/// A command for moltd on `state`, isolated from the caller's env.
pub fn command(entrypoint: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(entrypoint);
    cmd.arg("--state-dir").arg(state).args(args);
    for var in GATEWAY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("MOLT_LOG", "info");
    // A moltd built in this checkout is a git install, and its registry
    // check is a `git ls-remote origin`: git may reach local repositories
    // only (the update tests' bare upstreams), never a network remote.
    cmd.env("GIT_ALLOW_PROTOCOL", "file");
    cmd
}

pub struct Moltd {
    pub child: Child,
    pub first: Ready,
    readies: mpsc::Receiver<Ready>,
    /// Every pid seen, so Drop can stop successors (not our children).
    pids: Vec<u32>,
    /// The `--state-dir` it serves: Drop also stops any moltd on it whose
    /// READY line was never read (a successor a test did not wait for).
    state: Option<std::path::PathBuf>,
}

impl Moltd {
    /// Starts moltd from `entrypoint` and waits for its first READY line.
    pub fn start_from(entrypoint: &Path, state: &Path, args: &[&str]) -> Moltd {
        Self::spawn(command(entrypoint, state, args))
    }

    /// Starts `cmd` (built with [`command`], plus whatever a test adds:
    /// env, inherited fds) and waits for its first READY line.
    pub fn spawn(mut cmd: Command) -> Moltd {
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let state = {
            let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
            args.windows(2)
                .find(|w| w[0] == "--state-dir")
                .map(|w| std::path::PathBuf::from(w[1]))
        };
        // A binary copied a moment ago can be "busy" while another thread of
        // this test process forks (the child holds the write fd until exec).
        let mut attempts = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                spawned => break spawned.expect("moltd starts"),
            }
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, readies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ready) = Ready::parse(&line)
                    && tx.send(ready).is_err()
                {
                    break;
                }
            }
        });
        let first = readies
            .recv_timeout(Duration::from_secs(20))
            .expect("moltd prints READY");
        Moltd {
            child,
            pids: vec![first.pid],
            first,
            readies,
            state,
        }
    }

    /// The next READY line (a successor's), within `timeout`.
    pub fn next_ready(&mut self, timeout: Duration) -> Option<Ready> {
        let ready = self.readies.recv_timeout(timeout).ok()?;
        self.pids.push(ready.pid);
        Some(ready)
    }

    /// Waits (bounded) for the process to exit; READY lines printed on the
    /// way are kept. Exit is seen as EOF on its stdout (moltd's children do
    /// not outlive it), so there is no polling.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.readies.recv_timeout(left) {
                Ok(ready) => self.pids.push(ready.pid),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.child.wait().ok(),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
            }
        }
    }

    /// Sends a signal to a pid with kill(1).
    pub fn signal(pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for Moltd {
    fn drop(&mut self) {
        while let Ok(ready) = self.readies.try_recv() {
            self.pids.push(ready.pid);
        }
        if let Some(state) = &self.state {
            self.pids.extend(serving(state));
        }
        for pid in &self.pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Pids of live moltd processes serving `state`.
pub fn serving(state: &Path) -> Vec<u32> {
    let state = state.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_moltd = args.iter().any(|a| a.ends_with(b"moltd"));
        let on_state = args
            .windows(2)
            .any(|w| w[0] == b"--state-dir" && w[1] == state);
        if is_moltd && on_state && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The pid `gateway.lock` in `state` names: the process that claimed the
/// gateway last.
pub fn lock_holder(state: &Path) -> u32 {
    let path = state.join("gateway.lock");
    let text = std::fs::read_to_string(&path).expect("gateway.lock is readable");
    let info: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()));
    info["pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("{} names no pid: {text}", path.display()))
}

/// Replaces `path` atomically with a shell script.
pub fn replace_with_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes `openclaw.json` with the test token, registry checks off, and
/// `extra` merged in.
pub fn write_config(state: &Path, extra: serde_json::Value) {
    // No registry check unless a test asks for one: a check is a child
    // process (and, from a build inside a checkout, a `git ls-remote`).
    let mut config = serde_json::json!({
        "gateway": { "auth": { "token": crate::client::TOKEN } },
        "update": { "checkOnStart": false },
    });
    merge(&mut config, extra);
    std::fs::write(
        state.join("openclaw.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// Merges `patch` into `target`, objects key by key (JSON merge patch
/// without deletions).
pub fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}
