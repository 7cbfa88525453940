//! Starts the real `moltd` binary in a temp state dir for end-to-end tests.
#![allow(dead_code)]

pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub use molt_e2e::moltd::GATEWAY_ENV;

/// The moltd binary built for the current sources by `scripts/test`
/// before the runner starts (tests never build: see
/// `molt_e2e::versions`); it reports [`molt_e2e::updates::OLD`].
pub fn moltd_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        molt_e2e::versions::moltd_binary(molt_e2e::updates::OLD).unwrap_or_else(|e| panic!("{e:#}"))
    })
}

/// A running `moltd` on its own state dir (registry checks off); it and
/// any successor are stopped on drop.
pub struct Daemon {
    pub addr: String,
    pub version: String,
    pub pid: u32,
    moltd: molt_e2e::moltd::Moltd,
}

impl Daemon {
    /// Starts `moltd --port 0 --state-dir <dir>` and waits for its READY line.
    pub fn start(state_dir: &Path) -> Daemon {
        Daemon::start_with(state_dir, serde_json::json!({}))
    }

    /// [`Daemon::start`] with `config` merged into the test config.
    pub fn start_with(state_dir: &Path, config: serde_json::Value) -> Daemon {
        std::fs::create_dir_all(state_dir).expect("state dir");
        molt_e2e::moltd::write_config(state_dir, config);
        let mut command = molt_e2e::moltd::command(moltd_path(), state_dir, &["--port", "0"]);
        command.env("MOLT_LOG", "debug");
        let moltd = molt_e2e::moltd::Moltd::spawn(command);
        Daemon {
            addr: moltd.first.addr.clone(),
            version: moltd.first.version.clone(),
            pid: moltd.first.pid,
            moltd,
        }
    }

    pub fn url(&self) -> String {
        self.moltd.first.url()
    }

    /// SIGTERM: the daemon drains and closes sessions with 1001. Does not
    /// wait; the daemon's close handshake needs our side to keep running.
    pub fn terminate(&self) {
        molt_e2e::moltd::Moltd::signal(self.pid, "TERM");
    }
}

/// The token in the state dir's config.
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
