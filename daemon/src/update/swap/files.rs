//! File helpers of the swap: atomic replaces that keep the manager's
//! modes, renames that never overwrite, and reads of what is there.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use super::{Shim, SwapError};
use crate::install::layout::read_manifest;

/// Reads the bin entrypoint's state.
pub(super) fn read_shim(path: &Path) -> io::Result<Shim> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Shim::Missing),
        Err(e) => return Err(at(e)),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(at)?;
        return Ok(Shim::Symlink { target });
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is neither a file nor a symlink", path.display()),
        ));
    }
    let content = fs::read_to_string(path).map_err(at)?;
    Ok(Shim::Script {
        content,
        mode: meta.permissions().mode() & 0o7777,
    })
}

pub(super) fn write_shim(path: &Path, shim: &Shim) -> io::Result<()> {
    match shim {
        Shim::Missing => remove_if_exists(path),
        Shim::Symlink { target } => replace_symlink(path, target),
        Shim::Script { content, mode } => replace_file(path, content.as_bytes(), *mode),
    }
}

/// Atomically makes `path` a symlink to `target`: a temp link beside it,
/// renamed over it.
pub(super) fn replace_symlink(path: &Path, target: &Path) -> io::Result<()> {
    let tmp = temp_beside(path);
    symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Atomically replaces `path` with `bytes` at `mode`: temp file beside it,
/// fsync, rename. (Not [`crate::fsutil::write_atomic`]: the manager's files
/// keep the manager's modes, not moltd's 0600.)
pub(super) fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_beside(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.set_permissions(Permissions::from_mode(mode))?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

pub(super) fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    sibling(
        path,
        &format!(".{name}.molt-tmp-{}", crate::fsutil::random_suffix()),
    )
}

#[cfg(test)]
thread_local! {
    /// Tests take the two-rename path of filesystems without RENAME_EXCHANGE.
    pub(super) static NO_EXCHANGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Exchanges two paths atomically. `Ok(false)` when the filesystem cannot.
pub(super) fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(test)]
    if NO_EXCHANGE.get() {
        return Ok(false);
    }
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(e) if unsupported(e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Renames, failing if `to` exists (checked by the kernel where it can).
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if unsupported(e) => {
            if exists(to) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                ));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::INVAL
        || e == rustix::io::Errno::NOSYS
        || e == rustix::io::Errno::OPNOTSUPP
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(super) fn remove_tree_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(super) fn require_dir(path: &Path, what: &str) -> Result<(), SwapError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SwapError::Preflight(format!(
            "{what} {} is not a directory",
            path.display()
        ))),
        Err(e) => Err(SwapError::Preflight(format!(
            "{what} {}: {e}",
            path.display()
        ))),
    }
}

pub(super) fn canonical(path: &Path) -> Result<PathBuf, SwapError> {
    fs::canonicalize(path).map_err(|e| SwapError::Preflight(format!("{}: {e}", path.display())))
}

pub(super) fn version_of(root: &Path) -> Option<String> {
    read_manifest(&root.join("package.json"))
        .ok()
        .and_then(|m| m["version"].as_str().map(str::to_owned))
}

pub(super) fn file_mode(path: &Path) -> u32 {
    fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

pub(super) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

pub(super) fn sibling(path: &Path, name: &str) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).join(name)
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Entries of a directory, sorted; empty when it cannot be read.
pub(super) fn list(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// `path` with `.` and `..` resolved without touching the filesystem
/// (for relative symlink targets).
pub(crate) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
