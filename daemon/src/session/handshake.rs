//! The handshake: the first frame must be a valid `connect` whose
//! protocol range, role and credentials are acceptable.

use futures_util::StreamExt;
use molt_protocol::Scope;
use molt_protocol::close::ServerClose;
use molt_protocol::error::ErrorShape;
use molt_protocol::frame::{ClientFrame, FrameError, ResponseFrame, decode};
use molt_protocol::handshake::{ConnectParams, PRE_AUTH_MAX_PAYLOAD, negotiate_protocol};
use molt_protocol::ids::RequestId;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;

use super::Source;
use crate::auth::guesses::Lockout;
use crate::auth::{self, Credential, Denied, Peer};
use crate::gateway::Gateway;
use crate::logging::Throttled;

static GUESSES: Throttled = Throttled::new("authentication failed");

/// Logs what the throttled lines of this module held back.
pub(super) fn flush_throttled_logs() {
    GUESSES.flush();
}

/// Why the handshake ended the connection.
pub(super) struct Rejected {
    pub close: ServerClose,
    pub response: Option<ResponseFrame>,
}

impl Rejected {
    fn close(close: ServerClose) -> Self {
        Self {
            close,
            response: None,
        }
    }

    fn answer(close: ServerClose, id: RequestId, error: ErrorShape) -> Self {
        Self {
            close,
            response: Some(ResponseFrame::failure(id, error)),
        }
    }
}

pub(super) struct Granted {
    pub protocol: u32,
    pub credential: Credential,
    /// `client.id`, which names the client in the audit trail.
    pub client_id: String,
    pub scopes: Vec<Scope>,
    pub request_id: RequestId,
}

/// Reads the first request, which must be a valid `connect`, and grants
/// the scopes of the credential it presents.
pub(super) async fn handshake(
    source: &mut Source,
    gw: &Gateway,
    peer: &Peer,
) -> Result<Granted, Rejected> {
    let text = loop {
        match source.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err(Rejected::close(ServerClose::BinaryFrame));
            }
            Some(Err(WsError::Capacity(_))) => {
                return Err(Rejected::close(ServerClose::TooLarge));
            }
            // The read budget ran out: more than one pre-auth frame's worth.
            Some(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Rejected::close(ServerClose::TooLargeBeforeConnect));
            }
            _ => return Err(Rejected::close(ServerClose::ClosedBeforeConnect)),
        }
    };
    if text.len() > PRE_AUTH_MAX_PAYLOAD {
        return Err(Rejected::close(ServerClose::TooLargeBeforeConnect));
    }
    let frame = ClientFrame::parse(&text).map_err(|e| {
        Rejected::answer(
            ServerClose::InvalidHandshake,
            RequestId::from(""),
            frame_error(&e),
        )
    })?;
    let id = frame.id.clone();
    let reject = |close, error| Rejected::answer(close, id.clone(), error);
    if frame.method != "connect" {
        return Err(reject(
            ServerClose::InvalidHandshake,
            ErrorShape::invalid_request(format!(
                "the first request must be connect, got {}",
                frame.method
            )),
        ));
    }
    let params: ConnectParams = decode(frame.params.clone().unwrap_or_default()).map_err(|e| {
        reject(
            ServerClose::InvalidHandshake,
            ErrorShape::invalid_request(format!("invalid connect params: {e}")),
        )
    })?;
    let protocol = negotiate_protocol(params.min_protocol, params.max_protocol).map_err(|e| {
        reject(
            ServerClose::ProtocolMismatch,
            ErrorShape::invalid_request(e.to_string())
                .with_details(json!({ "expectedProtocol": e.expected_protocol() })),
        )
    })?;
    if params.role != "operator" {
        return Err(reject(
            ServerClose::UnsupportedRole,
            ErrorShape::invalid_request(format!(
                "role {} is not supported: molt serves operators",
                params.role
            )),
        ));
    }
    let credential = authenticate(gw, peer, params.auth.token.as_deref())
        .map_err(|error| reject(ServerClose::Unauthorized, error))?;
    let scopes = auth::grant(credential, &params.scopes);
    Ok(Granted {
        protocol,
        credential,
        client_id: params.client.id,
        scopes,
        request_id: id,
    })
}

/// The credential `token` proves, under the peer's guessing limit: a
/// peer locked out is refused without its token being looked at.
pub(super) fn authenticate(
    gw: &Gateway,
    peer: &Peer,
    token: Option<&str>,
) -> Result<Credential, ErrorShape> {
    let now = std::time::Instant::now();
    let addr = peer.address();
    if let Some(addr) = addr
        && let Err(lockout) = gw.guesses().check(addr, now)
    {
        GUESSES.note(format_args!(
            "{peer}: locked out ({} failures)",
            lockout.failures
        ));
        return Err(rate_limited(lockout));
    }
    match gw.auth().authenticate(peer, token) {
        Ok(credential) => {
            // Only the strongest credential forgives: a read-token holder
            // must not reset its own count between admin guesses.
            if credential == Credential::GatewayToken
                && let Some(addr) = addr
            {
                gw.guesses().succeeded(addr);
            }
            Ok(credential)
        }
        Err(denied) => {
            let lockout = match (denied, addr) {
                (Denied::Wrong, Some(addr)) => Some(gw.guesses().failed(addr, now)),
                _ => None,
            };
            GUESSES.note(format_args!(
                "{peer}: {}",
                match (denied, lockout) {
                    (Denied::Missing, _) => "no token".to_owned(),
                    (Denied::Wrong, Some(l)) => format!(
                        "wrong token ({} failures, next check in {} ms)",
                        l.failures,
                        millis(l)
                    ),
                    (Denied::Wrong, None) => "wrong token".to_owned(),
                }
            ));
            let error = ErrorShape::invalid_request("unauthorized: gateway token missing or wrong")
                .with_details(json!({ "code": "AUTH_FAILED" }));
            Err(match lockout.filter(|l| !l.retry_after.is_zero()) {
                Some(lockout) => error.retry_after(millis(lockout)),
                None => error,
            })
        }
    }
}

/// OpenClaw's answer to a locked-out peer.
fn rate_limited(lockout: Lockout) -> ErrorShape {
    ErrorShape::invalid_request(
        "unauthorized: too many failed authentication attempts (retry later)",
    )
    .with_details(json!({
        "code": "AUTH_RATE_LIMITED",
        "authReason": "rate_limited",
        "recommendedNextStep": "wait_then_retry",
    }))
    .retry_after(millis(lockout))
}

/// Rounded up: a client that waits this long is past the lockout.
fn millis(lockout: Lockout) -> u64 {
    lockout.retry_after.as_micros().div_ceil(1000) as u64
}

pub(super) fn frame_error(e: &FrameError) -> ErrorShape {
    ErrorShape::invalid_request(e.to_string())
}
