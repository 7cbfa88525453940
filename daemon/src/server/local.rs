//! The local socket: a Unix socket in the state dir speaking the same
//! protocol, for the operator on this host. It is 0600 in the state dir
//! (0700 when moltd created it), and the kernel's word on each peer's uid
//! (`SO_PEERCRED`) decides: moltd's own user or root gets in without a
//! token, anyone else is refused before the WebSocket upgrade.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::logging::Throttled;

static REFUSED: Throttled = Throttled::new("local socket: refused a peer of another user");

/// Logs what the throttled lines of this module held back.
pub fn flush_throttled_logs() {
    REFUSED.flush();
}

/// The socket's mode: owner only.
pub const SOCKET_MODE: u32 = 0o600;

/// Binds the local socket at `path`. A socket left there by an earlier
/// process is removed first (the caller holds `gateway.lock`, so no live
/// moltd serves it); anything else at the path is left alone and refused.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something other than a socket is in the way",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    // The peer check holds even in the moment before this narrows it.
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// The uid a local peer connected as, when it may use the gateway:
/// moltd's own or root's. `Err` names the uid refused.
pub fn owner(stream: &UnixStream) -> Result<u32, Option<u32>> {
    let uid = stream.peer_cred().map_err(|_| None)?.uid();
    let own = rustix::process::geteuid().as_raw();
    if uid == own || uid == 0 {
        Ok(uid)
    } else {
        Err(Some(uid))
    }
}

/// Answers a refused peer with `403` and closes, within a second.
pub async fn refuse(mut stream: UnixStream, uid: Option<u32>) {
    let who = uid.map_or_else(|| "unknown".to_owned(), |uid| uid.to_string());
    REFUSED.note(format_args!("uid {who}"));
    let body = format!(
        "uid {who} may not use this socket: only moltd's own user (uid {}) and root may\r\n",
        rustix::process::geteuid().as_raw()
    );
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        // Read the request first: a client still writing it into a closed
        // socket gets EPIPE and never sees the 403.
        let mut head = [0u8; 8 * 1024];
        let mut read = 0;
        while read < head.len() {
            match stream.read(&mut head[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Accepts from `listener`, or waits forever without one.
pub async fn accept(listener: Option<&UnixListener>) -> io::Result<UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_replaces_a_stale_socket_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.sock");
        let first = bind(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(first);
        // Left behind by a process that is gone: bound anew.
        let _second = bind(&path).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());

        let other = dir.path().join("notes");
        std::fs::write(&other, "keep me").unwrap();
        let err = bind(&other).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn this_processs_own_user_is_the_owner() {
        let (a, _b) = UnixStream::pair().unwrap();
        let own = rustix::process::geteuid().as_raw();
        assert_eq!(owner(&a), Ok(own));
    }
}
