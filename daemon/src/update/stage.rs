//! Staging: a private directory beside the live install, the manager's own
//! global install into it, and proof that what landed there is the target
//! version before anything live is touched.

use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use molt_protocol::update::InstallMode;

use crate::fsutil::path_error;
use crate::install::layout::{
    Install, LayoutError, bin_path, nth_parent, pnpm_store_dir, pnpm_wrapper_target, read_manifest,
};

/// Prefix of every stage directory's name.
pub const STAGE_PREFIX: &str = ".molt-stage-";

/// How long the staged binary may take to answer `--version`.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory stages are created in: on the live tree's filesystem (so
/// the swap is a rename), outside any directory the manager reads:
/// npm `P/lib`, bun `P/install`, pnpm `P/global`.
pub fn stage_parent(install: &Install) -> PathBuf {
    match install.mode {
        InstallMode::Npm => install.project_dir(),
        _ => nth_parent(&install.project_dir(), 1),
    }
}

/// Creates a fresh stage `.molt-stage-<random>` (mode 0700) beside the
/// live install, on the same filesystem as the package root.
pub fn stage_dir(install: &Install) -> io::Result<PathBuf> {
    let parent = stage_parent(install);
    let mut last = None;
    for _ in 0..8 {
        let dir = parent.join(format!("{STAGE_PREFIX}{}", crate::fsutil::random_suffix()));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, Permissions::from_mode(0o700))
                    .map_err(|e| path_error(e, "chmod", &dir))?;
                let live = install.modules_dir();
                let same_fs = fs::metadata(&dir)?.dev() == fs::metadata(&live)?.dev();
                if !same_fs {
                    let _ = fs::remove_dir(&dir);
                    let err = io::Error::other(format!(
                        "{} is not on the filesystem of {}: the swap could not be atomic",
                        dir.display(),
                        live.display()
                    ));
                    return Err(err);
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(path_error(e, "create stage", &dir)),
        }
    }
    Err(path_error(
        last.unwrap_or_else(|| io::Error::other("no free name")),
        "create stage in",
        &parent,
    ))
}

/// Stages left by a process that died mid-update (the swap never leaves
/// live files in one: these are only the manager's staged copies). For the
/// holder of the install's update lease to remove with [`cleanup_stage`].
pub fn leftover_stages(install: &Install) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(stage_parent(install)) else {
        return Vec::new();
    };
    let mut stages: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(STAGE_PREFIX))
        .map(|e| e.path())
        .collect();
    stages.sort();
    stages
}

/// Removes a stage (only a directory named `.molt-stage-*`). Best effort:
/// a leftover is logged, never fatal.
pub fn cleanup_stage(stage: &Path) {
    let ours = stage
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(STAGE_PREFIX));
    if !ours {
        tracing::error!(stage = %stage.display(), "refusing to remove: not a stage directory");
        return;
    }
    match fs::remove_dir_all(stage) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(stage = %stage.display(), "cannot remove the stage: {e}"),
    }
}

/// The command (argv, extra environment) that installs `spec`
/// (`name@exact`) globally into `stage` with the real manager at `tool`.
/// Run it with the process environment (which says which registry to use:
/// npmrc, `NPM_CONFIG_REGISTRY`, …) plus the returned variables, in the
/// stage as working directory.
///
/// * npm: `npm install --global --prefix <stage> …`.
/// * pnpm: global dir `<stage>/global`, bin dir `<stage>/bin` (also
///   `PNPM_HOME`, and first on `PATH`, or pnpm refuses), store = the live
///   store (read from `.modules.yaml`) so nothing is downloaded twice.
///   `PATH` is the stage bin dir, the tool's own directory (the `node` it
///   came with), then this process's `PATH`.
/// * bun: `BUN_INSTALL=<stage>`, global and bin dirs pinned inside the
///   stage (a `BUN_INSTALL_GLOBAL_DIR` in the environment would otherwise
///   install into the live tree), cache = the live cache.
pub fn install_argv(
    install: &Install,
    tool: &Path,
    stage: &Path,
    spec: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut argv = vec![s(tool)];
    let mut env = Vec::new();
    match install.mode {
        InstallMode::Pnpm => {
            let bin = stage.join("bin");
            argv.extend(["add", "--global", "--reporter=append-only"].map(String::from));
            argv.extend(["--global-dir".into(), s(&stage.join("global"))]);
            argv.extend(["--global-bin-dir".into(), s(&bin)]);
            if let Some(store) = pnpm_store(install) {
                argv.extend(["--store-dir".into(), s(&store)]);
            }
            let mut path = vec![bin.clone()];
            if let Some(dir) = tool.parent().filter(|d| !d.as_os_str().is_empty()) {
                path.push(dir.to_path_buf());
            }
            if let Some(old) = std::env::var_os("PATH") {
                path.extend(std::env::split_paths(&old));
            }
            let path = std::env::join_paths(path)
                .map_or_else(|_| s(&bin), |p| p.to_string_lossy().into_owned());
            env.push(("PNPM_HOME".into(), s(&bin)));
            env.push(("PATH".into(), path));
        }
        InstallMode::Bun => {
            argv.extend(["add", "--global", "--no-progress"].map(String::from));
            let cache = std::env::var("BUN_INSTALL_CACHE_DIR")
                .unwrap_or_else(|_| s(&install.prefix.join("install/cache")));
            env.push(("BUN_INSTALL".into(), s(stage)));
            env.push((
                "BUN_INSTALL_GLOBAL_DIR".into(),
                s(&stage.join("install/global")),
            ));
            env.push(("BUN_INSTALL_BIN".into(), s(&stage.join("bin"))));
            env.push(("BUN_INSTALL_CACHE_DIR".into(), cache));
            env.push(("DO_NOT_TRACK".into(), "1".into()));
        }
        _ => {
            argv.extend(["install", "--global", "--prefix"].map(String::from));
            argv.push(s(stage));
            argv.extend(["--no-audit", "--no-fund", "--no-update-notifier"].map(String::from));
        }
    }
    argv.push(spec.to_owned());
    (argv, env)
}

/// The live pnpm store (`--store-dir`, without pnpm's `v10` suffix), from
/// the global project's `node_modules/.modules.yaml`.
fn pnpm_store(install: &Install) -> Option<PathBuf> {
    let text = fs::read_to_string(install.modules_dir().join(".modules.yaml")).ok()?;
    let value = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["storeDir"].as_str().map(str::to_owned))
        .or_else(|| {
            // Block-style YAML, should pnpm ever write it that way.
            text.lines()
                .find_map(|l| l.trim().strip_prefix("storeDir:"))
                .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
        })?;
    let store = PathBuf::from(value);
    let versioned = store.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.len() > 1 && n.starts_with('v') && n[1..].bytes().all(|b| b.is_ascii_digit())
    });
    Some(if versioned {
        nth_parent(&store, 1)
    } else {
        store
    })
}

/// The package root inside the stage, where the manager put it (for pnpm
/// the symlink in the staged global project, which must have the live
/// project's layout version, e.g. `global/5`).
pub fn staged_root(install: &Install, stage: &Path) -> PathBuf {
    staged_project(install, stage)
        .join("node_modules")
        .join(&install.package)
}

/// The staged counterpart of [`Install::project_dir`].
pub(crate) fn staged_project(install: &Install, stage: &Path) -> PathBuf {
    match install.mode {
        InstallMode::Pnpm => stage
            .join("global")
            .join(install.project_dir().file_name().unwrap_or_default()),
        InstallMode::Bun => stage.join("install/global"),
        _ => stage.join("lib"),
    }
}

/// The bin shim the manager made in the stage.
pub(crate) fn staged_shim(install: &Install, stage: &Path) -> PathBuf {
    stage.join("bin").join(install.bin_name())
}

/// The staged moltd executable: the staged package's declared bin path.
pub fn staged_binary(install: &Install, stage: &Path) -> PathBuf {
    let root = staged_root(install, stage);
    let rel = read_manifest(&root.join("package.json"))
        .ok()
        .and_then(|m| bin_path(&m, &install.package, install.bin_name()))
        .unwrap_or_else(|| format!("bin/{}", install.bin_name()));
    root.join(rel)
}

/// Why a staged (or built) binary is not the version it should be.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("staged package.json names {found}, expected {expected}")]
    WrongPackage { found: String, expected: String },
    #[error("staged package.json has version {found:?}, expected {expected}")]
    WrongManifestVersion { found: String, expected: String },
    #[error("the staged package declares no bin {0:?}")]
    NoBin(String),
    #[error("{} is not an executable file", .0.display())]
    NotExecutable(PathBuf),
    #[error("staged {} does not point into the staged .pnpm", .0.display())]
    OutsideStore(PathBuf),
    #[error("{} is not a pnpm bin wrapper", .0.display())]
    NotAWrapper(PathBuf),
    #[error("the staged bin {} leads to {}, not to {}", shim.display(), leads_to.display(), binary.display())]
    ShimElsewhere {
        shim: PathBuf,
        leads_to: PathBuf,
        binary: PathBuf,
    },
    #[error("cannot run {}: {source}", binary.display())]
    CannotRun { binary: PathBuf, source: io::Error },
    #[error("{} --version did not finish in {VERSION_TIMEOUT:?}", .0.display())]
    Hung(PathBuf),
    #[error("waiting for {}: {source}", binary.display())]
    Wait { binary: PathBuf, source: io::Error },
    #[error("{} --version failed ({status})", binary.display())]
    Failed {
        binary: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("{} --version printed {printed:?}, expected {want:?}", binary.display())]
    WrongVersion {
        binary: PathBuf,
        printed: String,
        want: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Proves the stage holds `version` of the package: its `package.json`
/// names the package and the version, the manager made the bin shim, and
/// the binary runs and prints `moltd <version>`.
pub fn verify_staged(
    install: &Install,
    stage: &Path,
    version: &semver::Version,
) -> Result<(), VerifyError> {
    let root = staged_root(install, stage);
    let manifest = read_manifest(&root.join("package.json"))?;
    if manifest["name"].as_str() != Some(install.package.as_str()) {
        return Err(VerifyError::WrongPackage {
            found: manifest["name"].to_string(),
            expected: install.package.clone(),
        });
    }
    let staged_version = manifest["version"].as_str().unwrap_or_default();
    if semver::Version::parse(staged_version).ok().as_ref() != Some(version) {
        return Err(VerifyError::WrongManifestVersion {
            found: staged_version.to_owned(),
            expected: version.to_string(),
        });
    }
    if bin_path(&manifest, &install.package, install.bin_name()).is_none() {
        return Err(VerifyError::NoBin(install.bin_name().to_owned()));
    }
    let binary = staged_binary(install, stage);
    let meta = fs::metadata(&binary).map_err(io_at(&binary))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(VerifyError::NotExecutable(binary));
    }
    let binary = fs::canonicalize(&binary).map_err(io_at(&binary))?;
    check_staged_shim(install, stage, &binary)?;
    check_version(&binary, install.bin_name(), version)
}

/// `<binary> --version` prints `<bin_name> <version>`.
pub fn check_version(
    binary: &Path,
    bin_name: &str,
    version: &semver::Version,
) -> Result<(), VerifyError> {
    let printed = run_version(binary)?;
    let want = format!("{bin_name} {version}");
    if printed != want {
        return Err(VerifyError::WrongVersion {
            binary: binary.to_path_buf(),
            printed,
            want,
        });
    }
    Ok(())
}

/// The manager's own shim in the stage leads to the staged binary.
fn check_staged_shim(install: &Install, stage: &Path, binary: &Path) -> Result<(), VerifyError> {
    let shim = staged_shim(install, stage);
    let target = match install.mode {
        InstallMode::Pnpm => {
            let root = staged_root(install, stage);
            let project = staged_project(install, stage);
            let link = fs::canonicalize(&root).map_err(io_at(&root))?;
            if pnpm_store_dir(
                &fs::canonicalize(&project).unwrap_or(project),
                &install.package,
                &link,
            )
            .is_none()
            {
                return Err(VerifyError::OutsideStore(root));
            }
            pnpm_wrapper_target(&shim)?.ok_or_else(|| VerifyError::NotAWrapper(shim.clone()))?
        }
        _ => shim.clone(),
    };
    let resolved = fs::canonicalize(&target).map_err(io_at(&target))?;
    if resolved != binary {
        return Err(VerifyError::ShimElsewhere {
            shim,
            leads_to: resolved,
            binary: binary.to_path_buf(),
        });
    }
    Ok(())
}

/// `<binary> --version`, first stdout line, with a deadline.
fn run_version(binary: &Path) -> Result<String, VerifyError> {
    let mut cmd = Command::new(binary);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Nothing may make it think it is a successor or supervised.
    for var in super::steps::SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let mut child = spawn_retrying(&mut cmd).map_err(|source| VerifyError::CannotRun {
        binary: binary.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.take(64 * 1024).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VerifyError::Hung(binary.to_path_buf()));
            }
            Err(source) => {
                return Err(VerifyError::Wait {
                    binary: binary.to_path_buf(),
                    source,
                });
            }
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let stdout = rx.recv_timeout(remaining).unwrap_or_default();
    if !status.success() {
        return Err(VerifyError::Failed {
            binary: binary.to_path_buf(),
            status,
        });
    }
    let text = String::from_utf8_lossy(&stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// A binary the manager has just written can still be open for writing in
/// a process that is exiting (ETXTBSY); that clears within moments.
fn spawn_retrying(cmd: &mut Command) -> io::Result<std::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
