//! Durable, private file writes: atomic replace with fsync, 0600 files, 0700 dirs.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub mod append_log;

/// Mode of every file the daemon writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the daemon creates.
pub const DIR_MODE: u32 = 0o700;

/// The payload of an `io::Error` returned from this module: what was being
/// done to which path. The original message is part of `Display`, so a
/// single `{}` tells the operator everything.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {error}", path.display())]
pub struct PathError {
    pub action: &'static str,
    pub path: PathBuf,
    pub error: io::Error,
}

/// Wraps `err` so its message names `path`, keeping its `ErrorKind`.
pub fn path_error(err: io::Error, action: &'static str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        PathError {
            action,
            path: path.to_path_buf(),
            error: err,
        },
    )
}

/// Upper bound for a state file moltd reads back (records, sentinel,
/// lock, check state): far above any it writes, far below a memory risk.
pub const MAX_STATE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads `path` whole, refusing a file over `max` bytes (the error names
/// the file and the limit).
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| path_error(e, "read", path))?;
    read_all_bounded(&file, path, max)
}

/// Reads an open `file` (named `path`) whole from its start, with
/// positional reads that leave its offset alone, refusing more than `max`
/// bytes.
pub fn read_all_bounded(file: &File, path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // One byte past the limit tells "too big" from "exactly the limit".
    while bytes.len() as u64 <= max {
        match file.read_at(&mut chunk, bytes.len() as u64) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(path_error(e, "read", path)),
        }
    }
    let err = io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than the {max}-byte limit"),
    );
    Err(path_error(err, "read", path))
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees either the
/// old content or the new, never a mix: temp file in the same directory,
/// fsync, rename, fsync the directory. The result has mode 0600.
///
/// A symlink at `path` is followed, so an operator's symlinked config stays a
/// symlink. On failure before the rename the temp file is removed and the
/// target is untouched. If only the final directory fsync fails, the new
/// content is already in place but may not survive a power loss; that is
/// reported as an error too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = resolve_symlink(path);
    let dir = parent_dir(&target);
    let Some(name) = target.file_name() else {
        let err = io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
        return Err(path_error(err, "write", path));
    };
    let (tmp_path, file) = create_temp(dir, name)?;
    if let Err(err) = fill_and_rename(file, bytes, &tmp_path, &target) {
        let _ = fs::remove_file(&tmp_path);
        return Err(err);
    }
    sync_dir(dir)
}

fn fill_and_rename(mut file: File, bytes: &[u8], tmp: &Path, target: &Path) -> io::Result<()> {
    file.write_all(bytes)
        .map_err(|e| path_error(e, "write", tmp))?;
    file.sync_all().map_err(|e| path_error(e, "fsync", tmp))?;
    drop(file);
    fs::rename(tmp, target).map_err(|e| path_error(e, "replace", target))
}

/// Creates a fresh temp file beside the target. `create_new` makes the name
/// ours alone even if another writer picks the same one.
fn create_temp(dir: &Path, name: &OsStr) -> io::Result<(PathBuf, File)> {
    let mut last_err = None;
    for _ in 0..8 {
        let mut tmp_name = Vec::from(b"." as &[u8]);
        tmp_name.extend_from_slice(name.as_bytes());
        tmp_name.extend_from_slice(
            format!(".{}.{}.tmp", std::process::id(), random_suffix()).as_bytes(),
        );
        let tmp_path = dir.join(OsStr::from_bytes(&tmp_name));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp_path)
        {
            Ok(file) => {
                // The umask may have narrowed the mode; set it exactly.
                if let Err(e) = file.set_permissions(Permissions::from_mode(FILE_MODE)) {
                    let _ = fs::remove_file(&tmp_path);
                    return Err(path_error(e, "chmod", &tmp_path));
                }
                return Ok((tmp_path, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(path_error(e, "create", &tmp_path)),
        }
    }
    let err = last_err.unwrap_or_else(|| io::Error::other("no free temp name"));
    Err(path_error(err, "create temp file in", dir))
}

/// 12 hex digits for a temp or stage name. Uniqueness is enforced by
/// exclusive creation; randomness only avoids retries, so a failing random
/// source degrades to a fixed value, not an error.
pub fn random_suffix() -> String {
    let mut buf = [0u8; 6];
    let _ = getrandom::fill(&mut buf);
    hex::encode(buf)
}

/// fsyncs the directory holding `path`, so a new name in it is durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent_dir(path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| path_error(e, "fsync directory", dir))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn resolve_symlink(path: &Path) -> PathBuf {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        // A dangling link cannot be canonicalized; replacing the link itself
        // is then the only sensible write.
        if let Ok(real) = fs::canonicalize(path) {
            return real;
        }
    }
    path.to_path_buf()
}

/// Moves the file at `path` aside to `<name>.bad-<unix ms>` in the same
/// directory (never over an existing file) and returns the new path. The
/// content is kept for the operator; the daemon starts without it.
pub fn quarantine(path: &Path) -> io::Result<PathBuf> {
    let Some(name) = path.file_name() else {
        let err = io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
        return Err(path_error(err, "move aside", path));
    };
    let ts = crate::clock::unix_ms();
    let mut n = 0u32;
    let target = loop {
        let mut bad = name.to_os_string();
        bad.push(if n == 0 {
            format!(".bad-{ts}")
        } else {
            format!(".bad-{ts}-{n}")
        });
        let candidate = path.with_file_name(bad);
        match fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => break candidate,
            Err(e) => return Err(path_error(e, "stat", &candidate)),
            Ok(_) => n += 1,
        }
    };
    fs::rename(path, &target).map_err(|e| path_error(e, "move aside", path))?;
    sync_dir(parent_dir(&target))?;
    Ok(target)
}

/// Creates `path` and any missing parents with mode 0700. Existing
/// directories are left as they are: their mode is the operator's choice.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        ensure_private_dir(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        // The umask may have narrowed the mode; set it exactly.
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
            .map_err(|e| path_error(e, "chmod", path)),
        // Lost a race with another creator: fine if it made a directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(path_error(e, "create directory", path)),
    }
}

/// Opens `path` for reading and writing, creating it if missing, without
/// truncating, and leaves it at exactly 0600 (the umask may narrow a new
/// file, and one left by an older install may be wider). For lock-style
/// files whose content the opener reads before it writes.
pub fn open_private(path: &Path, what: &'static str) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| path_error(e, what, path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(|e| path_error(e, "chmod", path))?;
    Ok(file)
}

/// Helpers for tests of modules that write files.
#[cfg(test)]
pub mod testing {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The permission bits of `path`.
    pub fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Makes `path` a file one byte over [`super::MAX_STATE_FILE_BYTES`]
    /// (sparse, so it costs nothing).
    pub fn oversize(path: &Path) {
        std::fs::File::create(path)
            .unwrap()
            .set_len(super::MAX_STATE_FILE_BYTES + 1)
            .unwrap();
    }

    /// `error` is the refusal of a file over `limit`: it names both.
    pub fn assert_refused_over(error: &dyn std::fmt::Display, path: &Path, limit: u64) {
        let text = error.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
        assert!(text.contains(&format!("{limit}-byte limit")), "{text}");
    }

    /// The names in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{mode, names as entries};
    use super::*;

    #[test]
    fn creates_file_with_content_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(dir.path()), ["a.json"]);
    }

    #[test]
    fn replaces_existing_file_and_tightens_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        fs::write(&path, b"old content that is longer").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(dir.path()), ["a.json"], "no temp file left");
    }

    #[test]
    fn failed_rename_removes_temp_and_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // rename(2) cannot replace a non-empty directory.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();

        let err = write_atomic(&target, b"data").unwrap_err();
        assert!(
            err.to_string().contains(&*target.to_string_lossy()),
            "{err}"
        );
        assert_eq!(entries(dir.path()), ["target"], "temp file removed");
        assert_eq!(fs::read(target.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn missing_directory_error_names_the_path_and_keeps_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("a.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn follows_symlink_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn ensure_private_dir_creates_nested_dirs_0700() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        // Idempotent, and an existing dir keeps its mode.
        fs::set_permissions(&nested, Permissions::from_mode(0o750)).unwrap();
        ensure_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o750);
    }

    #[test]
    fn ensure_private_dir_fails_on_a_file_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = ensure_private_dir(&file).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    }

    #[test]
    fn read_bounded_reads_up_to_the_limit_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, vec![b'x'; 100_000]).unwrap();
        assert_eq!(read_bounded(&path, 100_000).unwrap().len(), 100_000);
        let err = read_bounded(&path, 99_999).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        super::testing::assert_refused_over(&err, &path, 99_999);
    }

    #[test]
    fn quarantine_never_overwrites_an_earlier_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"first").unwrap();
        let a = quarantine(&path).unwrap();
        fs::write(&path, b"second").unwrap();
        let b = quarantine(&path).unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read(&a).unwrap(), b"first");
        assert_eq!(fs::read(&b).unwrap(), b"second");
        assert!(!path.exists());
    }
}
