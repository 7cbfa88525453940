//! `gateway.lock`: one daemon per state dir, held with `flock` for the
//! daemon's lifetime (and across a respawn handoff), naming its holder.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::fsutil::path_error;

/// The lock file's content: who holds it. The format is molt-protocol's,
/// which `molt` reads to find a daemon started with `--port 0`; the port
/// is 0 until the listener is bound (see [`GatewayLock::set_port`]).
pub use molt_protocol::lock::LockRecord as LockInfo;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock. `pid`/`port` come from the file and
    /// are `None` if it is unreadable or the holder has not written them yet.
    #[error("another moltd{} holds {}", holder(*pid, *port), path.display())]
    Held {
        pid: Option<u32>,
        port: Option<u16>,
        path: PathBuf,
    },
    #[error("lock {}: holder info unknown; call update_info first", path.display())]
    NoInfo { path: PathBuf },
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn holder(pid: Option<u32>, port: Option<u16>) -> String {
    let parts: Vec<String> = [
        pid.map(|p| format!("pid {p}")),
        port.map(|p| format!("port {p}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The held lock. Dropping it closes the fd, which releases the flock once
/// no other fd shares the open file description (a successor may).
///
/// The file is never removed: unlinking it would let a new daemon lock a
/// fresh inode while another still holds the old one, i.e. two holders.
#[derive(Debug)]
pub struct GatewayLock {
    file: File,
    path: PathBuf,
    info: Option<LockInfo>,
}

impl GatewayLock {
    /// Takes the lock without blocking and writes `info` into it. std opens
    /// files `O_CLOEXEC`, so children do not inherit the lock unless the
    /// restart code hands the fd over on purpose.
    pub fn acquire(path: &Path, info: LockInfo) -> Result<GatewayLock, LockError> {
        // Not truncated: the holder's content is what we report if held.
        let file = crate::fsutil::open_private(path, "open lock file")?;
        let mut lock = Self::locked(file, path)?;
        lock.update_info(info)?;
        Ok(lock)
    }

    /// Adopts the lock fd a predecessor handed over. It already holds the
    /// flock, since both fds share one open file description; `try_lock`
    /// confirms that (and fails with `Held` if the fd is not the holder's).
    /// The predecessor's info is kept until [`Self::update_info`]: the
    /// successor should claim the file only once it serves.
    pub fn from_inherited(file: File, path: &Path) -> Result<GatewayLock, LockError> {
        let mut lock = Self::locked(file, path)?;
        lock.info = serde_json::from_slice(&read_content(&lock.file, path)?).ok();
        Ok(lock)
    }

    fn locked(file: File, path: &Path) -> Result<GatewayLock, LockError> {
        match file.try_lock() {
            Ok(()) => Ok(GatewayLock {
                file,
                path: path.to_path_buf(),
                info: None,
            }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let (pid, port) = holder_info(&read_content(&file, path)?);
                Err(LockError::Held {
                    pid,
                    port,
                    path: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(path_error(e, "lock", path).into()),
        }
    }

    /// Replaces the file's content with `info`.
    ///
    /// Written in place (truncate, write, fsync), not by atomic rename: the
    /// flock belongs to this inode, and a renamed-in file would be a new,
    /// unlocked one. A reader may briefly see partial content; `Held`
    /// tolerates that.
    pub fn update_info(&mut self, info: LockInfo) -> Result<(), LockError> {
        let mut bytes = info.to_json().into_bytes();
        bytes.push(b'\n');
        let write = || -> io::Result<()> {
            self.file.set_len(0)?;
            self.file.write_all_at(&bytes, 0)?;
            self.file.sync_data()
        };
        write().map_err(|e| path_error(e, "write lock file", &self.path))?;
        self.info = Some(info);
        Ok(())
    }

    /// Records the real port once bound (`--port 0`).
    pub fn set_port(&mut self, port: u16) -> Result<(), LockError> {
        let Some(info) = self.info.clone() else {
            return Err(LockError::NoInfo {
                path: self.path.clone(),
            });
        };
        self.update_info(LockInfo { port, ..info })
    }

    /// What the file says, as last written or adopted.
    pub fn info(&self) -> Option<&LockInfo> {
        self.info.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file, e.g. to hand to a successor process.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl AsFd for GatewayLock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The lock file's content (a line moltd wrote; anything huge is refused).
fn read_content(file: &File, path: &Path) -> io::Result<Vec<u8>> {
    crate::fsutil::read_all_bounded(file, path, crate::fsutil::MAX_STATE_FILE_BYTES)
}

/// Best effort: pid and port from whatever JSON the holder wrote. Port 0
/// means "not bound yet" and is reported as unknown.
fn holder_info(content: &[u8]) -> (Option<u32>, Option<u16>) {
    LockInfo::holder(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, port: u16, version: &str) -> LockInfo {
        LockInfo {
            pid,
            started_at: 1_700_000_000_000,
            port,
            version: version.to_owned(),
        }
    }

    fn content(path: &Path) -> LockInfo {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn acquire_writes_camel_case_json_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let lock = GatewayLock::acquire(&path, info(4242, 18789, "1.2.3")).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            raw,
            serde_json::json!({
                "pid": 4242, "startedAt": 1_700_000_000_000u64, "port": 18789, "version": "1.2.3"
            })
        );
        let mode = crate::fsutil::testing::mode(&path);
        assert_eq!(mode, 0o600);
        assert_eq!(lock.info(), Some(&info(4242, 18789, "1.2.3")));
    }

    #[test]
    fn second_acquire_is_held_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let first = GatewayLock::acquire(&path, info(4242, 18789, "1.0.0")).unwrap();

        // flock is per open file description, so a second open in this
        // process contends like another process would.
        let err = GatewayLock::acquire(&path, info(1, 1, "2.0.0")).unwrap_err();
        assert!(
            matches!(&err, LockError::Held { pid: Some(4242), port: Some(18789), path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "another moltd (pid 4242, port 18789) holds {}",
                path.display()
            )
        );
        assert_eq!(
            content(&path),
            info(4242, 18789, "1.0.0"),
            "loser wrote nothing"
        );

        drop(first);
        let second = GatewayLock::acquire(&path, info(7, 80, "2")).unwrap();
        assert_eq!(
            content(&path),
            info(7, 80, "2"),
            "no stale tail from the longer content"
        );
        drop(second);
        assert!(path.exists(), "the file is kept");
    }

    #[test]
    fn held_with_unreadable_or_unbound_content_still_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let mut first = GatewayLock::acquire(&path, info(9, 0, "1")).unwrap();
        let err = GatewayLock::acquire(&path, info(1, 1, "1")).unwrap_err();
        assert!(matches!(
            err,
            LockError::Held {
                pid: Some(9),
                port: None,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            format!("another moltd (pid 9) holds {}", path.display())
        );

        first.file().set_len(0).unwrap();
        let err = GatewayLock::acquire(&path, info(1, 1, "1")).unwrap_err();
        assert!(matches!(
            err,
            LockError::Held {
                pid: None,
                port: None,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            format!("another moltd holds {}", path.display())
        );
        first.set_port(1).unwrap();
    }

    #[test]
    fn held_with_content_over_the_limit_names_the_file_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let first = GatewayLock::acquire(&path, info(9, 0, "1")).unwrap();
        let limit = crate::fsutil::MAX_STATE_FILE_BYTES;
        first.file().set_len(limit + 1).unwrap();
        let err = GatewayLock::acquire(&path, info(1, 1, "1")).unwrap_err();
        crate::fsutil::testing::assert_refused_over(&err, &path, limit);
    }

    #[test]
    fn set_port_rewrites_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let mut lock = GatewayLock::acquire(&path, info(5, 0, "1.0.0")).unwrap();
        lock.set_port(43210).unwrap();
        assert_eq!(content(&path), info(5, 43210, "1.0.0"));
        assert_eq!(lock.info().unwrap().port, 43210);
    }

    #[test]
    fn inherited_fd_keeps_the_lock_until_every_holder_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let old = GatewayLock::acquire(&path, info(100, 18789, "1.0.0")).unwrap();

        // A dup shares the open file description, as an fd passed to a
        // successor does.
        let handed = old.file().try_clone().unwrap();
        let mut new = GatewayLock::from_inherited(handed, &path).unwrap();
        assert_eq!(
            new.info(),
            Some(&info(100, 18789, "1.0.0")),
            "predecessor's until claimed"
        );

        drop(old);
        assert!(matches!(
            GatewayLock::acquire(&path, info(1, 1, "x")),
            Err(LockError::Held { pid: Some(100), .. })
        ));
        new.update_info(info(200, 18789, "2.0.0")).unwrap();
        assert_eq!(content(&path), info(200, 18789, "2.0.0"));
        assert!(matches!(
            GatewayLock::acquire(&path, info(1, 1, "x")),
            Err(LockError::Held { pid: Some(200), .. })
        ));

        drop(new);
        GatewayLock::acquire(&path, info(1, 1, "x")).unwrap();
    }

    #[test]
    fn from_inherited_with_a_foreign_fd_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        let _holder = GatewayLock::acquire(&path, info(100, 18789, "1")).unwrap();
        let unrelated = File::open(&path).unwrap();
        let err = GatewayLock::from_inherited(unrelated, &path).unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(100), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn set_port_without_info_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.lock");
        std::fs::write(&path, "garbage").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut lock = GatewayLock::from_inherited(file, &path).unwrap();
        assert!(lock.info().is_none());
        assert!(matches!(lock.set_port(1), Err(LockError::NoInfo { .. })));
    }

    #[test]
    fn open_failure_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("gateway.lock");
        let err = GatewayLock::acquire(&path, info(1, 1, "1")).unwrap_err();
        assert!(matches!(err, LockError::Io(_)));
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
}
