//! Install trees compared byte for byte: what an update must leave whole.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

/// `molt_daemon::update::lease::LEASE_SUFFIX`.
const LEASE_SUFFIX: &str = ".molt-update.lease";

/// Every file (content hash and mode), symlink (target) and directory
/// under `prefix`, except the managers' caches and stores.
pub fn snapshot(prefix: &Path) -> Result<BTreeMap<String, String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("read {}", dir.display()))?
                .path();
            let rel = path.strip_prefix(base)?.to_string_lossy().into_owned();
            // The managers' caches, and molt's update lease: an empty lock
            // file beside the package root that stays once created (flock
            // users must never see it unlinked).
            if rel == "store" || rel == "install/cache" || rel.ends_with(LEASE_SUFFIX) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("stat {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path)?.display())
            } else if meta.is_dir() {
                walk(base, &path, out)?;
                format!("dir {mode:o}")
            } else {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                let hash = hex::encode(Sha256::digest(bytes));
                format!("file {mode:o} {hash}")
            };
            out.insert(rel, what);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(prefix, prefix, &mut out)?;
    Ok(out)
}

/// No live file names a stage (pnpm writes absolute paths into wrappers).
pub fn no_stage_paths(prefix: &Path) -> Result<()> {
    for (path, what) in snapshot(prefix)? {
        ensure!(!path.contains(".molt-stage-"), "stage left behind: {path}");
        let full = prefix.join(&path);
        if what.starts_with("file")
            && let Ok(text) = std::fs::read_to_string(&full)
        {
            ensure!(
                !text.contains(".molt-stage-"),
                "{path} names the stage:\n{text}"
            );
        }
    }
    Ok(())
}

pub fn same_tree(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<()> {
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("- {k}: {v}")),
            Some(w) if w != v => diff.push(format!("~ {k}: {v} => {w}")),
            _ => {}
        }
    }
    for (k, w) in after {
        if !before.contains_key(k) {
            diff.push(format!("+ {k}: {w}"));
        }
    }
    ensure!(diff.is_empty(), "tree changed:\n{}", diff.join("\n"));
    Ok(())
}
