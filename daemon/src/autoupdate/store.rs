//! `update-check.json` on disk. Saved atomically (0600); a file that does
//! not parse is moved aside with a warning and the auto-updater starts
//! over with a fresh state (and a new install id) — it never stops moltd.

use std::io;
use std::path::{Path, PathBuf};

use super::state::{CheckState, FORMAT_VERSION};
use crate::fsutil::{MAX_STATE_FILE_BYTES, quarantine, read_bounded, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("auto-update state {} is unusable: {reason}", path.display())]
    BadContent { path: PathBuf, reason: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads the state at `path`; missing → `Ok(None)`.
pub fn read(path: &Path) -> Result<Option<CheckState>, LoadError> {
    let bad = |reason: String| LoadError::BadContent {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match read_bounded(path, MAX_STATE_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Too large: bad content, moved aside like any other.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(bad(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let state: CheckState = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if state.version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {}, this moltd reads {FORMAT_VERSION}",
            state.version
        )));
    }
    if state.install_id.trim().is_empty() {
        return Err(bad("empty installId".to_owned()));
    }
    Ok(Some(state))
}

pub fn write(path: &Path, state: &CheckState) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The state moltd starts with: the file's, or a fresh one (written at
/// once so the install id is durable). Never fails: bad content is moved
/// aside, and an unreadable file is left alone and logged.
pub fn load_or_init(path: &Path) -> CheckState {
    match read(path) {
        Ok(Some(state)) => return state,
        Ok(None) => {}
        Err(err @ LoadError::BadContent { .. }) => match quarantine(path) {
            Ok(to) => tracing::warn!(
                "{err}; moved it aside to {} and starting with a fresh state",
                to.display()
            ),
            Err(q) => {
                // Writing now would destroy the only copy.
                tracing::warn!(
                    "{err}; could not move it aside ({q}); keeping a fresh state in memory"
                );
                return CheckState::new(new_install_id());
            }
        },
        Err(LoadError::Io(e)) => {
            tracing::warn!("{e}; the auto-updater starts with a fresh state in memory");
            return CheckState::new(new_install_id());
        }
    }
    let state = CheckState::new(new_install_id());
    if let Err(e) = write(path, &state) {
        tracing::warn!("cannot store the auto-update state: {e}");
    }
    state
}

/// 128 random bits, hex. A failing random source falls back to the time
/// and pid: the id only spreads installs, it guards nothing.
pub fn new_install_id() -> String {
    let mut buf = [0u8; 16];
    if getrandom::fill(&mut buf).is_err() {
        let seed = format!("{}-{}", crate::clock::unix_ms(), std::process::id());
        let digest = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes());
        buf.copy_from_slice(&digest[..16]);
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::{mode, names};

    #[test]
    fn a_missing_file_is_created_with_a_durable_install_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-check.json");
        let first = load_or_init(&path);
        assert_eq!(first.install_id.len(), 32);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(load_or_init(&path), first, "the same id after a restart");
        assert_ne!(new_install_id(), first.install_id);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_replaced() {
        for bad in [
            &b"{not json"[..],
            br#"{"version": 9, "installId": "x"}"#,
            br#"{"version": 1, "installId": ""}"#,
            br#"{"version": 1, "installId": "x", "firstSeen": {"not-semver": 1}}"#,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("update-check.json");
            std::fs::write(&path, bad).unwrap();
            assert!(matches!(read(&path), Err(LoadError::BadContent { .. })));
            let state = load_or_init(&path);
            assert_eq!(state.version, FORMAT_VERSION);
            let names = names(dir.path());
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(names[1].starts_with("update-check.json.bad-"), "{names:?}");
            assert_eq!(
                std::fs::read(dir.path().join(&names[1])).unwrap(),
                bad,
                "the bad content is kept for the operator"
            );
            assert_eq!(read(&path).unwrap(), Some(state));
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_it_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-check.json");
        crate::fsutil::testing::oversize(&path);
        let err = read(&path).unwrap_err();
        assert!(matches!(err, LoadError::BadContent { .. }), "{err:?}");
        crate::fsutil::testing::assert_refused_over(&err, &path, MAX_STATE_FILE_BYTES);
    }

    #[test]
    fn an_unreadable_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file: an I/O error, not content.
        let path = dir.path().join("update-check.json");
        std::fs::create_dir(&path).unwrap();
        let state = load_or_init(&path);
        assert_eq!(state.version, FORMAT_VERSION);
        assert!(path.is_dir());
        assert_eq!(names(dir.path()), ["update-check.json"]);
    }
}
