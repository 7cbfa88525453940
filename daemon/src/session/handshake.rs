//! The handshake: the first frame must be a valid `connect` whose
//! protocol range, role and credentials are acceptable.

use futures_util::StreamExt;
use molt_protocol::Scope;
use molt_protocol::close;
use molt_protocol::error::ErrorShape;
use molt_protocol::frame::{ClientFrame, FrameError, ResponseFrame, decode};
use molt_protocol::handshake::{ConnectParams, PRE_AUTH_MAX_PAYLOAD, negotiate_protocol};
use molt_protocol::ids::RequestId;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;

use super::Source;
use crate::gateway::Gateway;

/// Why the handshake ended the connection.
pub(super) struct Rejected {
    pub code: u16,
    pub reason: &'static str,
    pub response: Option<ResponseFrame>,
}

impl Rejected {
    fn close(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            response: None,
        }
    }

    fn answer(code: u16, reason: &'static str, id: RequestId, error: ErrorShape) -> Self {
        Self {
            code,
            reason,
            response: Some(ResponseFrame::failure(id, error)),
        }
    }
}

pub(super) struct Granted {
    pub protocol: u32,
    /// `client.id`, which names the client in the audit trail.
    pub client_id: String,
    pub scopes: Vec<Scope>,
    pub request_id: RequestId,
}

/// Reads the first request, which must be a valid `connect`.
pub(super) async fn handshake(source: &mut Source, gw: &Gateway) -> Result<Granted, Rejected> {
    let text = loop {
        match source.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err(Rejected::close(
                    close::UNSUPPORTED_DATA,
                    "binary frames are not supported",
                ));
            }
            Some(Err(WsError::Capacity(_))) => {
                return Err(Rejected::close(close::TOO_BIG, "frame too large"));
            }
            // The read budget ran out: more than one pre-auth frame's worth.
            Some(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Rejected::close(
                    close::TOO_BIG,
                    "frame too large before connect",
                ));
            }
            _ => return Err(Rejected::close(close::NORMAL, "closed before connect")),
        }
    };
    if text.len() > PRE_AUTH_MAX_PAYLOAD {
        return Err(Rejected::close(
            close::TOO_BIG,
            "frame too large before connect",
        ));
    }
    let frame = ClientFrame::parse(&text).map_err(|e| {
        Rejected::answer(
            close::POLICY,
            "invalid handshake",
            RequestId::from(""),
            frame_error(&e),
        )
    })?;
    let id = frame.id.clone();
    let reject = |code, reason, error| Rejected::answer(code, reason, id.clone(), error);
    if frame.method != "connect" {
        return Err(reject(
            close::POLICY,
            "invalid handshake",
            ErrorShape::invalid_request(format!(
                "the first request must be connect, got {}",
                frame.method
            )),
        ));
    }
    let params: ConnectParams = decode(frame.params.clone().unwrap_or_default()).map_err(|e| {
        reject(
            close::POLICY,
            "invalid handshake",
            ErrorShape::invalid_request(format!("invalid connect params: {e}")),
        )
    })?;
    let protocol = negotiate_protocol(params.min_protocol, params.max_protocol).map_err(|e| {
        reject(
            close::PROTOCOL_ERROR,
            "protocol mismatch",
            ErrorShape::invalid_request(e.to_string())
                .with_details(json!({ "expectedProtocol": e.expected_protocol() })),
        )
    })?;
    if params.role != "operator" {
        return Err(reject(
            close::POLICY,
            "unsupported role",
            ErrorShape::invalid_request(format!(
                "role {} is not supported: molt serves operators",
                params.role
            )),
        ));
    }
    if !gw.auth().accepts(params.auth.token.as_deref()) {
        return Err(reject(
            close::POLICY,
            "unauthorized",
            ErrorShape::invalid_request("unauthorized: gateway token missing or wrong")
                .with_details(json!({ "code": "AUTH_FAILED" })),
        ));
    }
    let mut scopes: Vec<Scope> = params
        .scopes
        .iter()
        .filter_map(|s| Scope::from_wire(s))
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(Scope::Read);
    }
    Ok(Granted {
        protocol,
        client_id: params.client.id,
        scopes,
        request_id: id,
    })
}

pub(super) fn frame_error(e: &FrameError) -> ErrorShape {
    ErrorShape::invalid_request(e.to_string())
}
