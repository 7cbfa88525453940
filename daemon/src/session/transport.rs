//! What a listener hands a session: the accepted connection, who is on the
//! other end, and the TLS it must speak before the WebSocket.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::admission::PeerKey;
use crate::auth::Peer;
use crate::budget::{Budgeted, ReadBudget};
use crate::tls::TlsAcceptor;

/// The key a peer's unauthenticated connections are counted under.
pub fn admission_key(peer: &Peer) -> PeerKey {
    match *peer {
        Peer::Tcp { addr, .. } => PeerKey::Ip(addr.ip()),
        Peer::LocalOwner { uid } => PeerKey::Uid(uid),
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
