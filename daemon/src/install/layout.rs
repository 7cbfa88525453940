//! Where a package manager put moltd: the live package root, the stable
//! entrypoint and the prefix, found from either the bin entrypoint or the
//! real binary and verified on disk. Nothing is guessed: a layout that does
//! not match what npm, pnpm or bun make (docs/install-layouts.md) is an
//! error, never a second install root.
//!
//! The update engine starts from [`locate`]: it stages, swaps and rolls
//! back the install found here (`update::stage`, `update::swap`).

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use molt_protocol::update::InstallMode;

/// A global package install of moltd, as its manager laid it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub mode: InstallMode,
    /// The npm package name, from the root's `package.json`.
    pub package: String,
    /// npm's `--prefix`, pnpm's `PNPM_HOME` (its bin dir), `BUN_INSTALL`.
    pub prefix: PathBuf,
    /// The live package root as the manager exposes it: a real directory
    /// for npm and bun, pnpm's symlink `<global>/<v>/node_modules/<name>`.
    pub root: PathBuf,
    /// The stable bin entrypoint: npm `P/bin/moltd` and bun `P/bin/moltd`
    /// (relative symlinks), pnpm's wrapper script `P/moltd`.
    pub entrypoint: PathBuf,
}

impl Install {
    /// The bin name (`moltd`): the entrypoint's file name.
    pub fn bin_name(&self) -> &str {
        self.entrypoint
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("moltd")
    }

    /// The `node_modules` directory that holds the root (for a scoped
    /// package, the parent of `@scope`).
    pub fn modules_dir(&self) -> PathBuf {
        let up = if self.package.contains('/') { 2 } else { 1 };
        nth_parent(&self.root, up)
    }

    /// The directory that holds `node_modules`: npm `P/lib`, bun's global
    /// project `P/install/global`, pnpm's global project `P/global/5`.
    pub fn project_dir(&self) -> PathBuf {
        nth_parent(&self.modules_dir(), 1)
    }

    /// The package's file name without its scope (`moltd` for `@molt/moltd`).
    pub fn unscoped_name(&self) -> &str {
        unscoped(&self.package)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} is not inside a package manager's global node_modules \
         (not an npm, pnpm or bun global install)",
        .0.display()
    )]
    NotAPackage(PathBuf),
    #[error("{}: {reason}", path.display())]
    Unexpected { path: PathBuf, reason: String },
    #[error("path is not valid UTF-8: {}", .0.display())]
    NonUtf8(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unexpected(path: &Path, reason: impl Into<String>) -> LayoutError {
    LayoutError::Unexpected {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Which manager's layout a *canonical* binary path sits in, and its
/// package root (`…/node_modules/<name>` or `…/node_modules/@scope/<name>`).
/// Pure path logic: pnpm roots sit in the virtual store
/// (`…/.pnpm/<dir>/node_modules/<name>`), bun's in
/// `…/install/global/node_modules`, anything else is npm's.
pub fn detect_mode(real: &Path) -> Option<(InstallMode, PathBuf)> {
    let parts: Vec<Component> = real.components().collect();
    // The innermost `node_modules/<name>` where <name> is a package, not
    // a dot entry such as `.bin` (pnpm links `<root>/node_modules/.bin`).
    let idx = (0..parts.len()).rev().find(|&i| {
        parts[i].as_os_str() == "node_modules"
            && parts
                .get(i + 1)
                .is_some_and(|c| !c.as_os_str().to_string_lossy().starts_with('.'))
    })?;
    let name = parts[idx + 1].as_os_str().to_string_lossy();
    let len = if name.starts_with('@') {
        idx + 3
    } else {
        idx + 2
    };
    if len > parts.len() {
        return None;
    }
    let root: PathBuf = parts[..len].iter().collect();
    let at = |back: usize| {
        idx.checked_sub(back)
            .and_then(|i| parts.get(i))
            .map(|c| c.as_os_str())
    };
    let text = real.to_string_lossy();
    let mode = if at(2) == Some(".pnpm".as_ref()) || text.contains("/pnpm/global/") {
        InstallMode::Pnpm
    } else if (at(1) == Some("global".as_ref()) && at(2) == Some("install".as_ref()))
        || text.contains("/.bun/install/global/")
    {
        InstallMode::Bun
    } else {
        InstallMode::Npm
    };
    Some((mode, root))
}

/// Finds the install that `entrypoint_or_exe` belongs to: the bin shim
/// (npm/bun symlink, pnpm wrapper), any symlink chain to it, or the real
/// binary inside the package (moltd's own executable; under pnpm that is
/// the versioned `.pnpm/<name>@<v>/…` path, since pnpm's wrapper does not
/// `exec`). The stable entrypoint is derived from the layout and verified
/// to exist and to lead to this package.
pub fn locate(entrypoint_or_exe: &Path) -> Result<Install, LayoutError> {
    let given = std::path::absolute(entrypoint_or_exe).map_err(io_err(entrypoint_or_exe))?;
    let meta = fs::symlink_metadata(&given).map_err(io_err(&given))?;
    let wrapper_target = if meta.is_file() {
        pnpm_wrapper_target(&given)?
    } else {
        None
    };
    let binary = wrapper_target.clone().unwrap_or_else(|| given.clone());
    let real = fs::canonicalize(&binary).map_err(io_err(&binary))?;
    let (mode, real_root) =
        detect_mode(&real).ok_or_else(|| LayoutError::NotAPackage(given.clone()))?;
    let manifest = read_manifest(&real_root.join("package.json"))?;
    let package = manifest_name(&manifest, &real_root)?;
    let path_name = name_from_root(&real_root);
    if path_name != package {
        return Err(unexpected(
            &real_root,
            format!("package.json names {package:?}, the directory is {path_name:?}"),
        ));
    }
    let bin_name = bin_name_for(&manifest, &package, &real_root, &real)?;
    let install = match mode {
        InstallMode::Npm => locate_npm(&real_root, &package, &bin_name, &real)?,
        InstallMode::Bun => locate_bun(&real_root, &package, &bin_name, &real)?,
        InstallMode::Pnpm => locate_pnpm(
            &real_root,
            &package,
            &bin_name,
            wrapper_target.is_some().then_some(given.as_path()),
        )?,
        other => {
            return Err(unexpected(
                &real,
                format!("{other:?} is not a package mode"),
            ));
        }
    };
    for path in [&install.prefix, &install.root, &install.entrypoint] {
        if path.to_str().is_none() {
            return Err(LayoutError::NonUtf8(path.clone()));
        }
    }
    Ok(install)
}

/// npm: root `P/lib/node_modules/<name>`, bin `P/bin/<bin>` a symlink that
/// leads to the binary.
fn locate_npm(
    root: &Path,
    package: &str,
    bin_name: &str,
    real: &Path,
) -> Result<Install, LayoutError> {
    let lib = nth_parent(root, depth(package) + 1);
    if lib.file_name() != Some("lib".as_ref()) {
        return Err(unexpected(
            root,
            "npm's global packages live in <prefix>/lib/node_modules; this one does not",
        ));
    }
    let prefix = nth_parent(&lib, 1);
    let entrypoint = prefix.join("bin").join(bin_name);
    check_symlink_shim(&entrypoint, real)?;
    Ok(Install {
        mode: InstallMode::Npm,
        package: package.to_owned(),
        prefix,
        root: root.to_path_buf(),
        entrypoint,
    })
}

/// bun: root `P/install/global/node_modules/<name>`, the global project's
/// `package.json` depends on it, bin `P/bin/<bin>` a symlink to the binary.
fn locate_bun(
    root: &Path,
    package: &str,
    bin_name: &str,
    real: &Path,
) -> Result<Install, LayoutError> {
    let global = nth_parent(root, depth(package) + 1);
    check_global_manifest(&global, package)?;
    let install_dir = nth_parent(&global, 1);
    if global.file_name() != Some("global".as_ref())
        || install_dir.file_name() != Some("install".as_ref())
    {
        return Err(unexpected(
            root,
            "bun's global packages live in $BUN_INSTALL/install/global/node_modules; this one does not",
        ));
    }
    let prefix = nth_parent(&install_dir, 1);
    let entrypoint = prefix.join("bin").join(bin_name);
    check_symlink_shim(&entrypoint, real)?;
    Ok(Install {
        mode: InstallMode::Bun,
        package: package.to_owned(),
        prefix,
        root: root.to_path_buf(),
        entrypoint,
    })
}

/// pnpm: `real_root` is `G/.pnpm/<dir>/node_modules/<name>`; the live
/// root is the symlink `G/node_modules/<name>` into `G/.pnpm`, and the
/// wrapper is `given_wrapper` or, by pnpm's default layout (`PNPM_HOME=P`,
/// global dir `P/global`, bin dir `P`), `P/<bin>`.
fn locate_pnpm(
    real_root: &Path,
    package: &str,
    bin_name: &str,
    given_wrapper: Option<&Path>,
) -> Result<Install, LayoutError> {
    // root → [@scope →] node_modules → <dir> → .pnpm → G
    let project = nth_parent(real_root, depth(package) + 3);
    check_global_manifest(&project, package)?;
    let root = project.join("node_modules").join(package);
    let link = fs::symlink_metadata(&root).map_err(io_err(&root))?;
    if !link.file_type().is_symlink() {
        return Err(unexpected(
            &root,
            "pnpm's global package root should be a symlink into .pnpm",
        ));
    }
    let live = fs::canonicalize(&root).map_err(io_err(&root))?;
    if pnpm_store_dir(&project, package, &live).is_none() {
        return Err(unexpected(
            &root,
            format!(
                "points at {}, not into {}/.pnpm",
                live.display(),
                project.display()
            ),
        ));
    }
    let entrypoint = match given_wrapper {
        Some(wrapper) => wrapper.to_path_buf(),
        None => nth_parent(&project, 2).join(bin_name),
    };
    let target = pnpm_wrapper_target(&entrypoint)?.ok_or_else(|| {
        unexpected(
            &entrypoint,
            "not pnpm's bin wrapper (pnpm's global bin dir is not the default \
             $PNPM_HOME; set the entrypoint explicitly)",
        )
    })?;
    let target = fs::canonicalize(&target).map_err(io_err(&target))?;
    if pnpm_store_dir(&project, package, &target).is_none() {
        return Err(unexpected(
            &entrypoint,
            format!(
                "the wrapper runs {}, which is not {package} in {}/.pnpm",
                target.display(),
                project.display()
            ),
        ));
    }
    let prefix = nth_parent(&entrypoint, 1);
    Ok(Install {
        mode: InstallMode::Pnpm,
        package: package.to_owned(),
        prefix,
        root,
        entrypoint,
    })
}

/// `<dir>` when `path` is inside `project/.pnpm/<dir>/node_modules/<package>`.
pub(crate) fn pnpm_store_dir(project: &Path, package: &str, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(project.join(".pnpm")).ok()?;
    let mut parts = rest.components();
    let dir = parts.next()?.as_os_str().to_str()?.to_owned();
    let tail = parts.as_path();
    tail.starts_with(Path::new("node_modules").join(package))
        .then_some(dir)
}

/// The npm/bun bin shim must be a symlink that resolves to the binary.
fn check_symlink_shim(shim: &Path, real: &Path) -> Result<(), LayoutError> {
    let meta = fs::symlink_metadata(shim).map_err(io_err(shim))?;
    if !meta.file_type().is_symlink() {
        return Err(unexpected(shim, "the bin entrypoint should be a symlink"));
    }
    let target = fs::canonicalize(shim).map_err(io_err(shim))?;
    if target != real {
        return Err(unexpected(
            shim,
            format!("leads to {}, not to {}", target.display(), real.display()),
        ));
    }
    Ok(())
}

/// The global project's `package.json` must depend on `package`.
fn check_global_manifest(project: &Path, package: &str) -> Result<(), LayoutError> {
    let path = project.join("package.json");
    let manifest = read_manifest(&path)?;
    if manifest["dependencies"].get(package).is_none() {
        return Err(unexpected(
            &path,
            format!("does not list {package} in its dependencies"),
        ));
    }
    Ok(())
}

/// Reads and parses a `package.json`.
pub(crate) fn read_manifest(path: &Path) -> Result<serde_json::Value, LayoutError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| unexpected(path, format!("not JSON: {e}")))
}

fn manifest_name(manifest: &serde_json::Value, root: &Path) -> Result<String, LayoutError> {
    let name = manifest["name"]
        .as_str()
        .ok_or_else(|| unexpected(&root.join("package.json"), "has no \"name\""))?;
    if !valid_package_name(name) {
        return Err(unexpected(
            &root.join("package.json"),
            format!("{name:?} is not a valid npm package name"),
        ));
    }
    Ok(name.to_owned())
}

/// `@scope/name` or `name`, lowercase url-safe characters (what
/// `scripts/pack-moltd.sh` accepts); no path tricks.
pub fn valid_package_name(name: &str) -> bool {
    let ok_part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'.' | b'_' | b'~')
            })
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, base)) => ok_part(scope) && ok_part(base),
            None => false,
        },
        None => ok_part(name),
    }
}

fn name_from_root(root: &Path) -> String {
    let base = root.file_name().unwrap_or_default().to_string_lossy();
    match root.parent().and_then(|p| p.file_name()) {
        Some(scope) if scope.to_string_lossy().starts_with('@') => {
            format!("{}/{base}", scope.to_string_lossy())
        }
        _ => base.into_owned(),
    }
}

/// The bin name whose declared path is `real`.
fn bin_name_for(
    manifest: &serde_json::Value,
    package: &str,
    root: &Path,
    real: &Path,
) -> Result<String, LayoutError> {
    let leads_here = |rel: &str| fs::canonicalize(root.join(rel)).is_ok_and(|p| p == real);
    match &manifest["bin"] {
        serde_json::Value::String(rel) if leads_here(rel) => Ok(unscoped(package).to_owned()),
        serde_json::Value::Object(bins) => bins
            .iter()
            .find(|(_, rel)| rel.as_str().is_some_and(leads_here))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| unexpected(real, format!("is not a bin that {package} declares"))),
        _ => Err(unexpected(
            real,
            format!("is not a bin that {package} declares"),
        )),
    }
}

/// The package-relative path of bin `bin_name` in a `package.json`.
pub(crate) fn bin_path(
    manifest: &serde_json::Value,
    package: &str,
    bin_name: &str,
) -> Option<String> {
    match &manifest["bin"] {
        serde_json::Value::String(rel) if unscoped(package) == bin_name => Some(rel.clone()),
        serde_json::Value::Object(bins) => bins.get(bin_name)?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// If `path` is a pnpm bin wrapper (a `/bin/sh` script that runs
/// `"$basedir/…/.pnpm/…"`), the path it runs, resolved against the
/// wrapper's directory. `None` for any other file (a native binary, the
/// package's own script).
pub(crate) fn pnpm_wrapper_target(path: &Path) -> Result<Option<PathBuf>, LayoutError> {
    let mut head = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(io_err(path))?;
    let Ok(text) = std::str::from_utf8(&head) else {
        return Ok(None);
    };
    if !text.starts_with("#!/bin/sh") {
        return Ok(None);
    }
    let Some(rel) = wrapper_target_text(text) else {
        return Ok(None);
    };
    Ok(Some(nth_parent(path, 1).join(rel)))
}

/// The first `"$basedir/<rel>"` in a wrapper that names the virtual store.
pub(crate) fn wrapper_target_text(text: &str) -> Option<&str> {
    text.split("\"$basedir/")
        .skip(1)
        .filter_map(|s| s.split_once('"').map(|(rel, _)| rel))
        .find(|rel| rel.contains("/.pnpm/"))
}

/// `moltd` for `@molt/moltd`.
pub(crate) fn unscoped(package: &str) -> &str {
    package.rsplit('/').next().unwrap_or(package)
}

/// Directory levels a package name adds under `node_modules`.
fn depth(package: &str) -> usize {
    if package.contains('/') { 2 } else { 1 }
}

pub(crate) fn nth_parent(path: &Path, n: usize) -> PathBuf {
    let mut p = path;
    for _ in 0..n {
        p = p.parent().unwrap_or(p);
    }
    p.to_path_buf()
}

#[cfg(test)]
mod tests;
