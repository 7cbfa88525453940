//! The real `moltd` built by this package, through the shared fixtures.

use std::path::{Path, PathBuf};

pub use molt_e2e::moltd::*;

pub const MOLTD: &str = env!("CARGO_BIN_EXE_moltd");

/// Starts this package's moltd and waits for its first READY line. A
/// state dir without a config gets one that turns the registry check off
/// and sets nothing else: moltd built in this checkout counts as a git
/// install, whose check would ask the checkout's remote.
pub fn start(state: &Path, args: &[&str]) -> Moltd {
    let config = state.join("openclaw.json");
    if !config.exists() {
        std::fs::write(&config, r#"{"update": {"checkOnStart": false}}"#).unwrap();
    }
    Moltd::start_from(Path::new(MOLTD), state, args)
}

/// A copy of moltd at `<dir>/bin/moltd`, so a test can replace the
/// entrypoint the gateway restarts through.
pub fn private_entrypoint(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("moltd");
    std::fs::copy(MOLTD, &path).unwrap();
    path
}
