//! What a listener hands a session: the accepted connection, who is on the
//! other end, and the TLS it must speak before the WebSocket.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::admission::PeerKey;
use crate::budget::{Budgeted, ReadBudget};
use crate::tls::TlsAcceptor;

/// Who connected, as the listener knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client (plain or TLS): it authenticates with a credential.
    Tcp(SocketAddr),
    /// A process of moltd's own user, or root, on the local socket: the
    /// kernel vouches for its uid (`SO_PEERCRED`), so it needs no token.
    LocalOwner { uid: u32 },
}

impl Peer {
    /// The key its unauthenticated connections are counted under.
    pub fn admission_key(&self) -> PeerKey {
        match *self {
            Peer::Tcp(addr) => PeerKey::Ip(addr.ip()),
            Peer::LocalOwner { uid } => PeerKey::Uid(uid),
        }
    }

    /// The peer's IP address, for a TCP peer.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::LocalOwner { .. } => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::LocalOwner { uid } => write!(f, "the local socket, uid {uid}"),
        }
    }
}

/// An accepted connection, before the WebSocket upgrade.
pub enum Accepted {
    Tcp(TcpStream),
    /// A TCP connection on a TLS listener: the TLS handshake comes first.
    Tls(TcpStream, TlsAcceptor),
    Local(UnixStream),
}

/// The byte stream a WebSocket runs on, whatever the transport.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

impl Accepted {
    /// The stream to upgrade. Every byte read from the socket, the TLS
    /// handshake's included, counts against `budget`.
    pub async fn open(self, budget: &ReadBudget) -> io::Result<Box<dyn Conn>> {
        Ok(match self {
            Accepted::Tcp(stream) => Box::new(Budgeted::new(stream, budget.clone())),
            Accepted::Tls(stream, acceptor) => {
                let raw = Budgeted::new(stream, budget.clone());
                Box::new(acceptor.accept(raw).await?)
            }
            Accepted::Local(stream) => Box::new(Budgeted::new(stream, budget.clone())),
        })
    }
}
