//! Addresses for tests, without the race of binding port 0, dropping the
//! socket and hoping nobody takes the number before it is used.

use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// An address on 127.0.0.1 that refuses every connection for as long as
/// the returned socket lives: the port is bound (so nobody else can take
/// it) but never listens (so a connect gets ECONNREFUSED).
pub fn refusing_addr() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
    socket.bind(&any.into()).expect("bind 127.0.0.1:0");
    let addr = socket
        .local_addr()
        .expect("a bound socket has an address")
        .as_socket()
        .expect("an IP address");
    (socket, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_refuses_and_stays_taken() {
        let (_socket, addr) = refusing_addr();
        let err = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "the port is held"
        );
    }
}
