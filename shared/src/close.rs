//! WebSocket close codes with a meaning in the gateway protocol, and what a
//! client should make of each. `moltd` closes with them; `molt` decides
//! from them whether to wait for a successor, back off or stop retrying.
//! OpenClaw uses the same codes (1012 for a restart, 1008 for a refused
//! handshake, 4000 for a client's tick timeout).

/// A normal close (also: the client went away before `connect`).
pub const NORMAL: u16 = 1000;
/// The gateway stops (SIGTERM), or a client stayed silent too long.
pub const GOING_AWAY: u16 = 1001;
/// No protocol version in common.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A binary frame.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// A close frame without a status code (never sent, only received).
pub const NO_STATUS: u16 = 1005;
/// No close frame at all: the TCP connection dropped (never sent).
pub const ABNORMAL: u16 = 1006;
/// Policy: a refused handshake (auth, role, bad params), a handshake
/// timeout, a slow consumer.
pub const POLICY: u16 = 1008;
/// A frame over the limit.
pub const TOO_BIG: u16 = 1009;
/// This process hands off to its successor; reconnect at once.
pub const SERVICE_RESTART: u16 = 1012;
/// Closed by a client that heard nothing for two tick intervals.
pub const TICK_TIMEOUT: u16 = 4000;

/// What a close means for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    Normal,
    /// 1012: the successor process serves next; reconnect at once.
    HandOff,
    /// 1001: the gateway stops.
    Stopping,
    /// 1008: refused by policy (at the handshake: usually auth).
    Refused,
    /// 1009: a frame was over the limit.
    TooBig,
    /// The server went silent (4000, closed by the client).
    Silent,
    /// The connection dropped without a close frame.
    Dropped,
    Other,
}

impl CloseKind {
    pub fn of(code: u16) -> CloseKind {
        match code {
            NORMAL => CloseKind::Normal,
            SERVICE_RESTART => CloseKind::HandOff,
            GOING_AWAY => CloseKind::Stopping,
            POLICY => CloseKind::Refused,
            TOO_BIG => CloseKind::TooBig,
            TICK_TIMEOUT => CloseKind::Silent,
            ABNORMAL => CloseKind::Dropped,
            _ => CloseKind::Other,
        }
    }

    /// In words, for a status line: `1012 handing off to a new process`.
    pub fn describe(self) -> &'static str {
        match self {
            CloseKind::Normal | CloseKind::Other => "closed",
            CloseKind::HandOff => "handing off to a new process",
            CloseKind::Stopping => "gateway stopping",
            CloseKind::Refused => "refused",
            CloseKind::TooBig => "frame too big",
            CloseKind::Silent => "gateway silent",
            CloseKind::Dropped => "connection lost",
        }
    }
}

/// Every close `moltd` sends: one code and one reason text each. The
/// daemon closes only through these, and the close table in
/// docs/protocol.md is checked against [`ServerClose::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerClose {
    /// The client closed, or the stream ended, before `connect`.
    ClosedBeforeConnect,
    /// The gateway stops.
    Stopping,
    /// Nothing heard from the client for three tick intervals.
    ClientSilent,
    /// No protocol version in common.
    ProtocolMismatch,
    /// A binary frame.
    BinaryFrame,
    /// A missing or wrong token, or a locked-out address.
    Unauthorized,
    /// The first frame is not a valid `connect`.
    InvalidHandshake,
    /// A role other than `operator`.
    UnsupportedRole,
    /// No valid `connect` in time.
    HandshakeTimeout,
    /// Evicted by a newer unauthenticated connection.
    TooManyUnauthenticated,
    /// The client does not read fast enough; the reason says what did not
    /// fit (`slow consumer: events did not fit`).
    SlowConsumer,
    /// A frame over the pre-`connect` limit.
    TooLargeBeforeConnect,
    /// A frame over `policy.maxPayload`.
    TooLarge,
    /// This process hands off to its successor.
    HandOff,
}

impl ServerClose {
    pub const ALL: [ServerClose; 14] = [
        ServerClose::ClosedBeforeConnect,
        ServerClose::Stopping,
        ServerClose::ClientSilent,
        ServerClose::ProtocolMismatch,
        ServerClose::BinaryFrame,
        ServerClose::Unauthorized,
        ServerClose::InvalidHandshake,
        ServerClose::UnsupportedRole,
        ServerClose::HandshakeTimeout,
        ServerClose::TooManyUnauthenticated,
        ServerClose::SlowConsumer,
        ServerClose::TooLargeBeforeConnect,
        ServerClose::TooLarge,
        ServerClose::HandOff,
    ];

    pub fn code(self) -> u16 {
        match self {
            ServerClose::ClosedBeforeConnect => NORMAL,
            ServerClose::Stopping | ServerClose::ClientSilent => GOING_AWAY,
            ServerClose::ProtocolMismatch => PROTOCOL_ERROR,
            ServerClose::BinaryFrame => UNSUPPORTED_DATA,
            ServerClose::Unauthorized
            | ServerClose::InvalidHandshake
            | ServerClose::UnsupportedRole
            | ServerClose::HandshakeTimeout
            | ServerClose::TooManyUnauthenticated
            | ServerClose::SlowConsumer => POLICY,
            ServerClose::TooLargeBeforeConnect | ServerClose::TooLarge => TOO_BIG,
            ServerClose::HandOff => SERVICE_RESTART,
        }
    }

    /// The close frame's reason text (for [`ServerClose::SlowConsumer`],
    /// the part before `: <what did not fit>`).
    pub fn reason(self) -> &'static str {
        match self {
            ServerClose::ClosedBeforeConnect => "closed before connect",
            ServerClose::Stopping | ServerClose::HandOff => "gateway stopping",
            ServerClose::ClientSilent => "client silent",
            ServerClose::ProtocolMismatch => "protocol mismatch",
            ServerClose::BinaryFrame => "binary frames are not supported",
            ServerClose::Unauthorized => "unauthorized",
            ServerClose::InvalidHandshake => "invalid handshake",
            ServerClose::UnsupportedRole => "unsupported role",
            ServerClose::HandshakeTimeout => "handshake timeout",
            ServerClose::TooManyUnauthenticated => "too many unauthenticated connections",
            ServerClose::SlowConsumer => "slow consumer",
            ServerClose::TooLargeBeforeConnect => "frame too large before connect",
            ServerClose::TooLarge => "frame too large",
        }
    }

    /// Whether the reason goes on with `: <detail>`.
    pub fn has_detail(self) -> bool {
        self == ServerClose::SlowConsumer
    }
}

#[cfg(test)]
mod tests {
    use super::ServerClose;

    #[test]
    fn all_lists_every_close_once_in_order() {
        // A new variant breaks this match until it has its place in ALL.
        let place = |close: ServerClose| match close {
            ServerClose::ClosedBeforeConnect => 0,
            ServerClose::Stopping => 1,
            ServerClose::ClientSilent => 2,
            ServerClose::ProtocolMismatch => 3,
            ServerClose::BinaryFrame => 4,
            ServerClose::Unauthorized => 5,
            ServerClose::InvalidHandshake => 6,
            ServerClose::UnsupportedRole => 7,
            ServerClose::HandshakeTimeout => 8,
            ServerClose::TooManyUnauthenticated => 9,
            ServerClose::SlowConsumer => 10,
            ServerClose::TooLargeBeforeConnect => 11,
            ServerClose::TooLarge => 12,
            ServerClose::HandOff => 13,
        };
        for (i, close) in ServerClose::ALL.iter().enumerate() {
            assert_eq!(place(*close), i, "{close:?}");
        }
    }
}
