use std::fmt;
use std::time::Duration;

use molt_protocol::ErrorShape;
use molt_protocol::error::{ErrorCode, UnavailableReason};

/// Close codes with a meaning in the gateway protocol (molt-protocol's).
pub use molt_protocol::close as code;
pub use molt_protocol::close::CloseKind;

/// Who ended the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    Server,
    /// This client, or the network (no close frame).
    Client,
}

/// How and why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    pub code: u16,
    pub reason: String,
    pub by: ClosedBy,
}

impl CloseInfo {
    pub fn new(code: u16, reason: impl Into<String>, by: ClosedBy) -> Self {
        Self {
            code,
            reason: reason.into(),
            by,
        }
    }

    /// A connection lost without a close handshake.
    pub fn dropped(reason: impl Into<String>) -> Self {
        Self::new(code::ABNORMAL, reason, ClosedBy::Client)
    }

    pub fn kind(&self) -> CloseKind {
        CloseKind::of(self.code)
    }
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.kind().describe())?;
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// Why [`super::Client::connect`] failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// Nothing answered, or not as a WebSocket: the daemon is down, starting,
    /// or the URL is wrong.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Nothing listens on the port: the connection was refused. While a
    /// gateway restarts, these attempts measure how long its port is dark.
    #[error("cannot reach {url}: connection refused")]
    Refused { url: String },
    /// The TLS handshake failed: above all, a certificate that is not the
    /// pinned one.
    #[error("TLS with {url} failed: {reason}")]
    Tls { url: String, reason: String },
    /// The token was refused. Retrying with the same token cannot help.
    #[error("authentication failed: {message}")]
    AuthFailed { message: String },
    /// No protocol version both sides speak.
    #[error("protocol mismatch: {message}")]
    ProtocolMismatch {
        /// `details.expectedProtocol` from the gateway.
        server_expects: Option<u32>,
        message: String,
    },
    /// The gateway answered `connect` with another error.
    #[error("gateway refused the connection: {0}")]
    Rejected(ErrorShape),
    /// The gateway closed the socket during the handshake.
    #[error("connection closed during the handshake ({0})")]
    Closed(CloseInfo),
    /// The gateway did not follow the protocol, or took too long.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

impl ConnectError {
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Self::AuthFailed { .. })
    }

    /// The gateway is between processes; a quick retry will likely succeed.
    pub fn is_handoff(&self) -> bool {
        match self {
            Self::Closed(close) => close.kind() == CloseKind::HandOff,
            Self::Rejected(error) => matches!(
                error.unavailable_reason(),
                Some(UnavailableReason::GatewayRestarting | UnavailableReason::GatewayStarting)
            ),
            _ => false,
        }
    }

    /// Worth another attempt soon: a handoff, or a refusal the gateway
    /// marks retryable (OpenClaw answers `UNAVAILABLE` `startup-sidecars`,
    /// `retryable: true`, while it finishes starting).
    pub fn is_transient(&self) -> bool {
        self.is_handoff()
            || matches!(self, Self::Rejected(error)
                if error.retryable == Some(true) || error.code == ErrorCode::Unavailable)
    }

    /// Classifies an error answer to `connect`. moltd closes with 1008 for a
    /// malformed handshake too, so the close code alone proves nothing.
    pub(crate) fn from_rejection(error: ErrorShape) -> Self {
        let expected = error
            .details
            .as_ref()
            .and_then(|d| d.get("expectedProtocol"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        let message = error.message.to_lowercase();
        let detail_code = error
            .details
            .as_ref()
            .and_then(|d| d.get("code"))
            .and_then(serde_json::Value::as_str);
        if expected.is_some() || message.contains("protocol mismatch") {
            return Self::ProtocolMismatch {
                server_expects: expected,
                message: error.message,
            };
        }
        if detail_code == Some("AUTH_FAILED")
            || error.code == ErrorCode::Forbidden
            || message.contains("unauthorized")
        {
            return Self::AuthFailed {
                message: error.message,
            };
        }
        Self::Rejected(error)
    }
}

/// Why a request got no result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The gateway answered with an error.
    #[error("{0}")]
    Gateway(ErrorShape),
    /// No answer in time. The gateway may still act on the request.
    #[error("no answer to {method} within {}s", timeout.as_secs_f32())]
    Timeout { method: String, timeout: Duration },
    /// The connection ended (or was never up) before an answer came.
    #[error("not connected{}", close.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Disconnected { close: Option<CloseInfo> },
    /// The answer did not have the expected shape.
    #[error("unexpected {method} result: {problem}")]
    Decode { method: String, problem: String },
}

impl RequestError {
    /// The gateway's error, when it sent one.
    pub fn gateway_error(&self) -> Option<&ErrorShape> {
        match self {
            Self::Gateway(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn close_kinds() {
        let kinds = [
            (1000, CloseKind::Normal),
            (1001, CloseKind::Stopping),
            (1006, CloseKind::Dropped),
            (1008, CloseKind::Refused),
            (1009, CloseKind::TooBig),
            (1012, CloseKind::HandOff),
            (4000, CloseKind::Silent),
            (1011, CloseKind::Other),
        ];
        for (code, kind) in kinds {
            assert_eq!(CloseInfo::new(code, "", ClosedBy::Server).kind(), kind);
        }
        assert_eq!(
            CloseInfo::new(1012, "update.run", ClosedBy::Server).to_string(),
            "1012 handing off to a new process: update.run"
        );
    }

    #[test]
    fn connect_rejections_are_classified() {
        let mismatch = ErrorShape::invalid_request("protocol mismatch")
            .with_details(json!({"expectedProtocol": 5}));
        assert_eq!(
            ConnectError::from_rejection(mismatch),
            ConnectError::ProtocolMismatch {
                server_expects: Some(5),
                message: "protocol mismatch".into()
            }
        );
        // What moltd sends for a wrong token.
        let bad_token = ErrorShape::invalid_request("unauthorized: gateway token missing or wrong")
            .with_details(json!({"code": "AUTH_FAILED"}));
        assert!(ConnectError::from_rejection(bad_token).is_auth_failure());
        let by_code = ErrorShape::invalid_request("bad credentials")
            .with_details(json!({"code": "AUTH_FAILED"}));
        assert!(ConnectError::from_rejection(by_code).is_auth_failure());
        let bad_role = ErrorShape::invalid_request("role x is not supported");
        assert!(!ConnectError::from_rejection(bad_role).is_auth_failure());
        let forbidden = ErrorShape::new(ErrorCode::Forbidden, "role not allowed");
        assert!(ConnectError::from_rejection(forbidden).is_auth_failure());
        let starting = ErrorShape::unavailable(UnavailableReason::GatewayStarting, "starting");
        let err = ConnectError::from_rejection(starting);
        assert!(err.is_handoff() && !err.is_auth_failure());
    }
}
