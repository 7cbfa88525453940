//! How moltd was installed, detected from its stable entrypoint.

use std::path::{Component, Path, PathBuf};

use molt_protocol::status::InstallInfo;
use molt_protocol::update::InstallMode;

/// The path moltd was invoked through (`<prefix>/bin/moltd`, not the
/// target of the shim), made absolute without resolving links: its
/// successor must start through the same path to pick up a new install.
pub fn stable_entrypoint() -> Option<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next()?);
    if argv0.components().count() > 1 {
        return std::path::absolute(&argv0).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&argv0))
        .find(|candidate| candidate.is_file())
        .or_else(|| std::env::current_exe().ok())
}

/// Detects the install surface. Kubernetes always owns the binary (pods
/// are replaced, never patched); in other containers a package-manager or
/// git install is still owned by that tool, and only a bare binary counts
/// as part of the image.
pub fn detect(entrypoint: Option<&Path>, container: Option<&str>) -> InstallInfo {
    let info = |surface, root: Option<&Path>| InstallInfo {
        surface,
        root: root.map(|r| r.display().to_string()),
        entrypoint: entrypoint.map(|e| e.display().to_string()),
        source: "detected".to_owned(),
    };
    let image = container.map_or(InstallMode::Unmanaged, |_| InstallMode::External);
    if container == Some("kubernetes") {
        return info(InstallMode::External, None);
    }
    let Some(entrypoint) = entrypoint else {
        return info(image, None);
    };
    let real = std::fs::canonicalize(entrypoint).unwrap_or_else(|_| entrypoint.to_owned());
    if let Some((mode, root)) = package_root(&real) {
        return info(mode, Some(&root));
    }
    if let Some(root) = real.ancestors().find(|dir| is_molt_checkout(dir)) {
        return info(InstallMode::Git, Some(root));
    }
    info(image, None)
}

/// `<...>/node_modules/<name>` or `<...>/node_modules/@scope/<name>` that
/// holds the binary, and which manager's layout it sits in.
fn package_root(real: &Path) -> Option<(InstallMode, PathBuf)> {
    let parts: Vec<Component> = real.components().collect();
    let idx = parts
        .iter()
        .rposition(|c| c.as_os_str() == "node_modules")?;
    let name = parts.get(idx + 1)?.as_os_str().to_string_lossy();
    let len = if name.starts_with('@') {
        idx + 3
    } else {
        idx + 2
    };
    if len > parts.len() {
        return None;
    }
    let root: PathBuf = parts[..len].iter().collect();
    let text = real.to_string_lossy();
    let mode = if text.contains("/.pnpm/") || text.contains("/pnpm/global/") {
        InstallMode::Pnpm
    } else if text.contains("/.bun/install/global/")
        || text.contains("/install/global/node_modules/")
    {
        InstallMode::Bun
    } else {
        InstallMode::Npm
    };
    Some((mode, root))
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
    fn package_roots_by_layout() {
        let cases = [
            (
                "/opt/lib/node_modules/@molt/moltd/bin/moltd",
                InstallMode::Npm,
                "/opt/lib/node_modules/@molt/moltd",
            ),
            (
                "/opt/lib/node_modules/moltd/bin/moltd",
                InstallMode::Npm,
                "/opt/lib/node_modules/moltd",
            ),
            (
                "/home/op/.local/share/pnpm/global/5/.pnpm/moltd@1.0.0/node_modules/moltd/bin/moltd",
                InstallMode::Pnpm,
                "/home/op/.local/share/pnpm/global/5/.pnpm/moltd@1.0.0/node_modules/moltd",
            ),
            (
                "/home/op/.bun/install/global/node_modules/moltd/bin/moltd",
                InstallMode::Bun,
                "/home/op/.bun/install/global/node_modules/moltd",
            ),
        ];
        for (path, mode, root) in cases {
            assert_eq!(
                package_root(Path::new(path)),
                Some((mode, PathBuf::from(root))),
                "{path}"
            );
        }
        assert_eq!(package_root(Path::new("/usr/local/bin/moltd")), None);
    }

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
