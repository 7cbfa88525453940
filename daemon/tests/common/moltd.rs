//! The real `moltd` built by this package, through the shared fixtures.

use std::path::{Path, PathBuf};

pub use molt_e2e::moltd::*;

pub const MOLTD: &str = env!("CARGO_BIN_EXE_moltd");

/// Starts this package's moltd and waits for its first READY line.
pub fn start(state: &Path, args: &[&str]) -> Moltd {
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
