//! Binding at start: the TCP listener (adopted or fresh), its TLS, the
//! local Unix socket, and the credentials a bind requires.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use tokio::net::TcpListener;

use super::StartError;
use crate::auth::{Credentials, READ_TOKEN_ENV, Secret, TOKEN_ENV};
use crate::config::{AuthMode, Bind, ConfigStore, Settings};
use crate::env_file::Env;
use crate::paths::StatePaths;
use crate::server;

/// The most queued connections a refused start answers.
const MAX_REFUSED_QUEUED: usize = 1024;

/// Answers every connection already queued on an activated `listener`
/// with `503` and closes it, without reading a byte: moltd refused to
/// start, and the reason (which can name files and values) is in its log,
/// not for whoever connected. Best effort, bounded.
pub fn refuse_queued(listener: &std::net::TcpListener) {
    use std::io::Write;
    const RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Content-Type: text/plain\r\nConnection: close\r\nContent-Length: 58\r\n\r\n\
        moltd refused to start (exit 78); see the service's log.\r\n";
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    for _ in 0..MAX_REFUSED_QUEUED {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_nonblocking(true);
        let _ = stream.write_all(RESPONSE);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The TLS the TCP listener speaks, when `gateway.tls.enabled`.
pub(super) fn gateway_tls(
    settings: &Settings,
    paths: &StatePaths,
) -> Result<Option<crate::tls::GatewayTls>, StartError> {
    let tls = &settings.gateway.tls;
    if !tls.enabled {
        return Ok(None);
    }
    let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
    let (cert, key) = crate::tls::pair_paths(tls, &paths.state_dir, home.as_deref());
    let loaded = crate::tls::load(&cert, &key, tls.auto_generate)?;
    if loaded.generated {
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    }
    tracing::info!(
        cert = %cert.display(), fingerprint = %loaded.fingerprint,
        "TLS on; clients pin this sha256 fingerprint"
    );
    Ok(Some(loaded))
}

/// The local socket at `path`: the predecessor's when it handed one over
/// for the same path, else bound anew. Without it the gateway still
/// serves on TCP, so a failure is a warning, not a refusal.
pub(super) fn local_socket(
    inherited: Option<std::os::unix::net::UnixListener>,
    path: &std::path::Path,
) -> Option<tokio::net::UnixListener> {
    let same_path = |listener: &std::os::unix::net::UnixListener| {
        listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p == path))
            .unwrap_or(false)
    };
    let listener = match inherited.filter(same_path) {
        Some(listener) => listener,
        None => match server::local::bind(path) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "no local socket: the console on this host needs the token"
                );
                return None;
            }
        },
    };
    let adopted = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener));
    match adopted {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no local socket");
            None
        }
    }
}

/// The inherited listener, unless the config now asks for another port
/// (a `gateway.port` change is why this process was started).
pub(super) fn adoptable(
    inherited: Option<std::net::TcpListener>,
    wanted: SocketAddr,
) -> Option<std::net::TcpListener> {
    let listener = inherited?;
    let have = listener.local_addr().ok()?;
    if same_address(have, wanted) {
        Some(listener)
    } else {
        tracing::info!(%have, %wanted, "config names another address; binding it anew");
        None
    }
}

/// Whether a socket bound to `have` is what `wanted` asks for (port 0:
/// any port).
pub(super) fn same_address(have: SocketAddr, wanted: SocketAddr) -> bool {
    (wanted.port() == 0 || wanted.port() == have.port()) && wanted.ip() == have.ip()
}

/// Connections the kernel queues for us (clamped to `net.core.somaxconn`):
/// while a stop drains, or an exec replaces the image, nobody accepts, and
/// an overflowing queue silently drops connection attempts.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds and listens on `addr` with [`LISTEN_BACKLOG`], as the shipped
/// socket unit does (`Backlog=4096`).
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

pub(super) fn adopt_listener(
    listener: std::net::TcpListener,
    addr: SocketAddr,
) -> Result<TcpListener, StartError> {
    listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
        .map_err(|source| StartError::Bind { addr, source })
}

pub(super) fn dup_listener(
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<OwnedFd, StartError> {
    listener
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| StartError::Bind { addr, source })
}

pub(super) fn bind_host(flag: Option<&str>, settings: &Settings) -> Result<IpAddr, StartError> {
    match flag {
        None => Ok(settings.bind_addr()),
        Some("loopback") => Ok(Bind::Loopback.addr()),
        Some("lan") => Ok(Bind::Lan.addr()),
        Some(other) => other
            .parse()
            .map_err(|_| StartError::BadBind(other.to_owned())),
    }
}

/// The gateway token from `OPENCLAW_GATEWAY_TOKEN`, else config, else
/// generated once and stored (0600) so the console on this host finds
/// it; the read token from `OPENCLAW_GATEWAY_READ_TOKEN`, else config.
pub(super) fn credentials(
    settings: &Settings,
    env: &Env,
    config: &mut ConfigStore,
    paths: &StatePaths,
) -> Result<Credentials, StartError> {
    if settings.gateway.auth_mode == AuthMode::None {
        return Ok(Credentials::none());
    }
    let from_env = |name: &'static str| {
        env.get(name)
            .filter(|t| !t.is_empty())
            .map(|t| Secret::new(t, name))
    };
    let read_token = from_env(READ_TOKEN_ENV).or_else(|| {
        settings
            .gateway
            .read_token
            .clone()
            .map(|t| Secret::new(t, "gateway.auth.readToken"))
    });
    let configured = settings
        .gateway
        .auth_token
        .clone()
        .filter(|t| !t.is_empty())
        .map(|t| Secret::new(t, "gateway.auth.token"));
    let gateway_token = match from_env(TOKEN_ENV).or(configured) {
        Some(token) => token,
        None => {
            let token = crate::config::generate_token();
            config
                .set_path(
                    "gateway.auth.token",
                    serde_json::Value::String(token.clone()),
                )
                .map_err(|source| StartError::StoreToken {
                    path: paths.config_path.clone(),
                    source: Box::new(source),
                })?;
            tracing::info!(path = %paths.config_path.display(), "generated a gateway token and stored it");
            Secret::new(token, "gateway.auth.token")
        }
    };
    Ok(Credentials {
        gateway_token: Some(gateway_token),
        read_token,
    })
}
