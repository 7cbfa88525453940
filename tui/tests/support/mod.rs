//! Starts the real `moltd` binary in a temp state dir for end-to-end tests.
#![allow(dead_code)]

pub mod pty;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// Env vars that would leak the developer's own gateway into a test.
pub const GATEWAY_ENV: &[&str] = &[
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_NO_AUTO_UPDATE",
    "OPENCLAW_NO_RESPAWN",
    "NOTIFY_SOCKET",
    "INVOCATION_ID",
];

/// `target/<profile>/moltd`, built once per test binary so it is never stale.
pub fn moltd_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        // Build into the dir of the molt binary under test, same profile.
        let molt = Path::new(env!("CARGO_BIN_EXE_molt"));
        let profile_dir = molt.parent().and_then(Path::file_name).unwrap();
        let profile = match profile_dir.to_str() {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "molt-daemon", "--bin", "moltd"])
            .args(["--profile", profile])
            .current_dir(workspace)
            .status()
            .expect("run cargo build for moltd");
        assert!(status.success(), "building moltd failed");
        let path = molt.with_file_name(format!("moltd{}", std::env::consts::EXE_SUFFIX));
        assert!(path.exists(), "{} missing after build", path.display());
        path
    })
}

/// A running `moltd`; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub version: String,
    pub pid: u32,
}

impl Daemon {
    /// Starts `moltd --port 0 --state-dir <dir>` and waits for its READY line.
    pub fn start(state_dir: &Path) -> Daemon {
        let stderr = std::fs::File::create(state_dir.with_extension("moltd-stderr.log"))
            .expect("stderr log file");
        let mut command = Command::new(moltd_path());
        command
            .args(["--port", "0", "--state-dir"])
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("MOLT_LOG", "debug");
        for var in GATEWAY_ENV {
            command.env_remove(var);
        }
        let mut child = command.spawn().expect("spawn moltd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("moltd printed no READY line");
            }
        };
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.len() == 4 && parts[0] == "READY",
            "unexpected first line from moltd: {line:?}"
        );
        Daemon {
            addr: parts[1].to_owned(),
            version: parts[2].to_owned(),
            pid: parts[3].parse().expect("pid"),
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// SIGTERM: the daemon drains and closes sessions with 1001. Does not
    /// wait; the daemon's close handshake needs our side to keep running.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token moltd generated and stored in the config on first start.
pub fn stored_token(state_dir: &Path) -> String {
    let text = std::fs::read_to_string(state_dir.join("openclaw.json")).expect("config");
    let config: serde_json::Value = serde_json::from_str(&text).expect("config JSON");
    config["gateway"]["auth"]["token"]
        .as_str()
        .expect("generated token")
        .to_owned()
}

/// `molt` with a clean gateway environment.
pub fn molt() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_molt"));
    for var in GATEWAY_ENV {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}
