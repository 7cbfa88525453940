//! How moltd was installed, detected from its stable entrypoint (the
//! layout rules live in [`layout`]).

use std::path::{Path, PathBuf};

use molt_protocol::status::InstallInfo;
use molt_protocol::update::InstallMode;

/// Where a package manager put moltd, verified on disk.
pub mod layout;

/// The path moltd was invoked through (`<prefix>/bin/moltd`, not the
/// target of the shim), made absolute without resolving links: its
/// successor must start through the same path to pick up a new install.
/// When that path is the real binary inside a package (pnpm's wrapper runs
/// moltd by its versioned `.pnpm/<name>@<v>/…` path, which a swap leaves
/// behind), the install's own entrypoint is used instead.
pub fn stable_entrypoint() -> Option<PathBuf> {
    Some(stable_for(&invoked_path()?))
}

fn invoked_path() -> Option<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next()?);
    if argv0.components().count() > 1 {
        return std::path::absolute(&argv0).ok();
    }
    find_on_path(&argv0).or_else(|| std::env::current_exe().ok())
}

/// The first file named `name` in a `PATH` directory, as a shell finds it.
pub fn find_on_path(name: impl AsRef<Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| candidate.is_file())
}

/// `invoked` itself, unless it is a package's real binary (not a symlink
/// to it): then the package install's stable entrypoint.
pub fn stable_for(invoked: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(invoked).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link && let Ok(install) = layout::locate(invoked) {
        return install.entrypoint;
    }
    invoked.to_path_buf()
}

/// Detects the install surface. Kubernetes always owns the binary (pods
/// are replaced, never patched); in other containers a package-manager or
/// git install is still owned by that tool, and only a bare binary counts
/// as part of the image.
pub fn detect(entrypoint: Option<&Path>, container: Option<&str>) -> InstallInfo {
    let info = |surface, root: Option<&Path>, entry: Option<&Path>| InstallInfo {
        surface,
        root: root.map(|r| r.display().to_string()),
        entrypoint: entry.map(|e| e.display().to_string()),
        source: "detected".to_owned(),
    };
    let image = container.map_or(InstallMode::Unmanaged, |_| InstallMode::External);
    if container == Some("kubernetes") {
        return info(InstallMode::External, None, entrypoint);
    }
    let Some(entrypoint) = entrypoint else {
        return info(image, None, None);
    };
    // A package install verified on disk: its live root and stable bin.
    if let Ok(install) = layout::locate(entrypoint) {
        return info(install.mode, Some(&install.root), Some(&install.entrypoint));
    }
    let real = std::fs::canonicalize(entrypoint).unwrap_or_else(|_| entrypoint.to_owned());
    // A package layout that does not verify is still reported as what it
    // looks like; `update.run` then refuses with the layout error.
    if let Some((mode, root)) = layout::detect_mode(&real) {
        return info(mode, Some(&root), Some(entrypoint));
    }
    if let Some(root) = real.ancestors().find(|dir| is_molt_checkout(dir)) {
        return info(InstallMode::Git, Some(root), Some(entrypoint));
    }
    info(image, None, Some(entrypoint))
}

fn is_molt_checkout(dir: &Path) -> bool {
    dir.join(".git").exists()
        && dir.join("daemon").join("Cargo.toml").is_file()
        && dir.join("shared").join("Cargo.toml").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_external_and_plain_binaries_unmanaged() {
        let bin = Path::new("/usr/local/bin/moltd");
        assert_eq!(
            detect(Some(bin), Some("kubernetes")).surface,
            InstallMode::External
        );
        assert_eq!(
            detect(Some(bin), Some("docker")).surface,
            InstallMode::External
        );
        let npm_bin = Path::new("/opt/lib/node_modules/moltd/bin/moltd");
        assert_eq!(
            detect(Some(npm_bin), Some("docker")).surface,
            InstallMode::Npm,
            "npm owns what npm installed, even in a container"
        );
        assert_eq!(
            detect(Some(npm_bin), Some("kubernetes")).surface,
            InstallMode::External
        );
        assert_eq!(detect(Some(bin), None).surface, InstallMode::Unmanaged);
        assert_eq!(detect(None, None).surface, InstallMode::Unmanaged);
    }

    #[test]
    fn a_binary_inside_this_checkout_is_git() {
        let dir = tempfile::tempdir().unwrap();
        for sub in [".git", "daemon", "shared", "target/debug"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("daemon/Cargo.toml"), "").unwrap();
        std::fs::write(dir.path().join("shared/Cargo.toml"), "").unwrap();
        let bin = dir.path().join("target/debug/moltd");
        std::fs::write(&bin, "").unwrap();
        let info = detect(Some(&bin), None);
        assert_eq!(info.surface, InstallMode::Git);
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(info.root.as_deref(), Some(root.to_str().unwrap()));
    }
}
