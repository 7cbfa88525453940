//! Global installs of a package with the REAL package managers into a temp
//! prefix, the way an operator installs moltd (`npm i -g`, `pnpm add -g`,
//! `bun add -g`).
//!
//! Layouts observed with npm 11.19, pnpm 10.34.9 and bun 1.4.5 (details in
//! `docs/install-layouts.md`; `tests/tests/registry_fixture.rs` asserts them):
//!
//! * npm (`npm i -g --prefix P pkg@v`): package root `P/lib/node_modules/<name>`
//!   (a real directory, replaced by a new one on upgrade); bin `P/bin/moltd`
//!   is a *relative symlink* to `../lib/node_modules/<name>/bin/moltd`.
//! * pnpm (`PNPM_HOME=P pnpm add -g pkg@v`; global dir `P/global`, bin dir
//!   `P`, store `P/store`): the global project is `P/global/5` (`5` is
//!   pnpm's layout version) with `package.json` and `pnpm-lock.yaml`;
//!   `P/global/5/node_modules/<name>` is a *symlink* to
//!   `../../.pnpm/<name, / as +>@<v>/node_modules/<name>` (`.pnpm` sits in
//!   `P/global/5`), whose files are *hard links* into the store. The bin
//!   `P/moltd` is a generated `/bin/sh` *wrapper script* naming the
//!   absolute, *version-specific* `.pnpm/…@<v>/…` path; it `exec`s the
//!   shebang interpreter of a script target, but runs a native (ELF) target
//!   as a *child* (`"$target" "$@"; exit $?`). Upgrades rewrite the wrapper
//!   and keep the old `.pnpm/…@<old>` tree. pnpm refuses `-g` unless `P` is
//!   on `PATH`.
//! * bun (`BUN_INSTALL=P bun add -g pkg@v`): package root
//!   `P/install/global/node_modules/<name>` (a real directory, files *hard
//!   links* into the cache `P/install/cache`, replaced on upgrade); the
//!   global project files are `P/install/global/package.json` and `bun.lock`;
//!   bin `P/bin/moltd` is a *relative symlink* to
//!   `../install/global/node_modules/<name>/bin/moltd`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::npm_package::{BIN_NAME, npm};
use crate::process::{COMMAND_TIMEOUT, run};
use crate::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Npm,
    Pnpm,
    Bun,
}

impl PackageManager {
    pub const ALL: [PackageManager; 3] = [Self::Npm, Self::Pnpm, Self::Bun];

    pub fn name(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pnpm => "pnpm",
            Self::Bun => "bun",
        }
    }

    /// Where this manager puts the bin entrypoint under `prefix`.
    pub fn bin_path(self, prefix: &Path) -> PathBuf {
        match self {
            Self::Npm | Self::Bun => prefix.join("bin").join(BIN_NAME),
            Self::Pnpm => prefix.join(BIN_NAME),
        }
    }

    /// The global node_modules directory under `prefix` (the package root is
    /// `<this>/<name>`). For pnpm it is looked up, since it includes pnpm's
    /// layout version (`global/5`).
    pub fn global_modules_dir(self, prefix: &Path) -> Result<PathBuf> {
        Ok(match self {
            Self::Npm => prefix.join("lib/node_modules"),
            Self::Bun => prefix.join("install/global/node_modules"),
            Self::Pnpm => pnpm_global_project(prefix)?.join("node_modules"),
        })
    }
}

impl std::fmt::Display for PackageManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of a global install.
#[derive(Debug, Clone)]
pub struct GlobalInstall {
    pub manager: PackageManager,
    pub prefix: PathBuf,
    /// The installed `moltd` entrypoint (symlink for npm/bun, wrapper script
    /// for pnpm).
    pub bin: PathBuf,
    /// The package root as the manager exposes it (for pnpm a symlink into
    /// its virtual store).
    pub package_dir: PathBuf,
    pub duration: Duration,
}

/// Installs `package@version_or_tag` globally into `prefix` with `manager`,
/// from `registry`. Returns where things landed.
pub fn install_global(
    registry: &Registry,
    manager: PackageManager,
    prefix: &Path,
    package: &str,
    version_or_tag: &str,
) -> Result<GlobalInstall> {
    std::fs::create_dir_all(prefix)?;
    let spec = format!("{package}@{version_or_tag}");
    let mut cmd = match manager {
        PackageManager::Npm => npm_install_command(registry, prefix, &spec),
        PackageManager::Pnpm => pnpm_install_command(registry, prefix, &spec)?,
        PackageManager::Bun => bun_install_command(registry, prefix, &spec),
    };
    let out = run(&mut cmd, COMMAND_TIMEOUT)?;
    finish(manager, prefix, package, out.duration)
}

/// `npm i -g --prefix <prefix> <package>@<version>`.
fn npm_install_command(registry: &Registry, prefix: &Path, spec: &str) -> Command {
    let mut cmd = npm(registry);
    cmd.args(["install", "--global", "--no-audit", "--no-fund", "--prefix"])
        .arg(prefix)
        .arg(spec);
    cmd
}

/// `pnpm add -g <package>@<version>` with `PNPM_HOME=<prefix>`, global dir
/// `<prefix>/global`, bin dir `<prefix>`, store `<prefix>/store` (all
/// pnpm's defaults for that `PNPM_HOME`, given explicitly so no developer
/// config moves them). pnpm requires the bin dir on `PATH`.
fn pnpm_install_command(registry: &Registry, prefix: &Path, spec: &str) -> Result<Command> {
    let tools = registry.tools();
    let mut path = vec![prefix.to_path_buf()];
    if let Some(node_dir) = tools.node24.parent() {
        path.push(node_dir.to_path_buf()); // `node` for anything pnpm spawns
    }
    if let Some(old) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&old));
    }
    let mut cmd = tools.pnpm_command();
    cmd.envs(registry.client_env())
        .env("PNPM_HOME", prefix)
        .env("PATH", std::env::join_paths(path)?)
        .current_dir(registry.dir())
        .args(["add", "--global", "--reporter=append-only"])
        .arg("--registry")
        .arg(registry.url())
        .arg("--global-dir")
        .arg(prefix.join("global"))
        .arg("--global-bin-dir")
        .arg(prefix)
        .arg("--store-dir")
        .arg(prefix.join("store"))
        .arg(config_flag("cache-dir", &registry.pnpm_cache()))
        .arg(config_flag("state-dir", &registry.pnpm_state()))
        .arg(spec);
    Ok(cmd)
}

/// `bun add -g <package>@<version>` with `BUN_INSTALL=<prefix>` (global dir
/// `<prefix>/install/global`, bin dir `<prefix>/bin`, cache
/// `<prefix>/install/cache`: bun's defaults for that `BUN_INSTALL`).
fn bun_install_command(registry: &Registry, prefix: &Path, spec: &str) -> Command {
    let mut cmd = Command::new(&registry.tools().bun);
    cmd.envs(registry.client_env())
        .env("BUN_INSTALL", prefix)
        // Overrides that would move the layout away from BUN_INSTALL.
        .env_remove("BUN_INSTALL_GLOBAL_DIR")
        .env_remove("BUN_INSTALL_BIN")
        .env_remove("BUN_INSTALL_CACHE_DIR")
        .env_remove("BUN_CONFIG_REGISTRY")
        .env("DO_NOT_TRACK", "1")
        .current_dir(registry.dir())
        .args(["add", "--global", "--no-progress"])
        .arg("--registry")
        .arg(registry.url())
        .arg(spec);
    cmd
}

fn config_flag(key: &str, value: &Path) -> OsString {
    let mut s = OsString::from(format!("--config.{key}="));
    s.push(value);
    s
}

/// `<prefix>/global/<layout version>`: the single directory pnpm created
/// under its global dir.
fn pnpm_global_project(prefix: &Path) -> Result<PathBuf> {
    let global = prefix.join("global");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&global)
        .with_context(|| format!("read {}", global.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one pnpm global project under {}, found {dirs:?}",
            global.display()
        ),
    }
}

fn finish(
    manager: PackageManager,
    prefix: &Path,
    package: &str,
    duration: Duration,
) -> Result<GlobalInstall> {
    let bin = manager.bin_path(prefix);
    let package_dir = manager.global_modules_dir(prefix)?.join(package);
    for (what, p) in [("bin entrypoint", &bin), ("package root", &package_dir)] {
        if !p.exists() {
            bail!(
                "{manager} install: {what} {} missing; files under {}:\n{}",
                p.display(),
                prefix.display(),
                list_tree(prefix)
            );
        }
    }
    Ok(GlobalInstall {
        manager,
        prefix: prefix.to_path_buf(),
        bin,
        package_dir,
        duration,
    })
}

/// A listing of `dir` (a few levels, skipping caches), for error messages.
fn list_tree(dir: &Path) -> String {
    fn walk(dir: &Path, depth: usize, out: &mut String) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            out.push_str(&format!("{}{}\n", "  ".repeat(depth), p.display()));
            let name = e.file_name();
            let skip = name == "store" || name == "cache";
            if depth < 5 && !skip && e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, depth + 1, out);
            }
        }
    }
    let mut out = String::new();
    walk(dir, 0, &mut out);
    out
}
