//! The line `moltd` prints on stdout once it serves:
//! `READY <addr> <version> <pid>`. Supervisors, scripts and the end-to-end
//! fixtures read it to learn the address a `--port 0` daemon took.

use std::fmt;

/// One `READY <addr> <version> <pid>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    /// `host:port` as bound, e.g. `127.0.0.1:41234`.
    pub addr: String,
    pub version: String,
    pub pid: u32,
}

impl ReadyLine {
    pub const PREFIX: &'static str = "READY";

    /// Parses one line; anything else (a log line) is `None`.
    pub fn parse(line: &str) -> Option<ReadyLine> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [Self::PREFIX, addr, version, pid] => Some(ReadyLine {
                addr: (*addr).to_owned(),
                version: (*version).to_owned(),
                pid: pid.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// `ws://<addr>`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The bound address; `None` if the line named something else.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        self.addr.parse().ok()
    }
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            Self::PREFIX,
            self.addr,
            self.version,
            self.pid
        )
    }
}
