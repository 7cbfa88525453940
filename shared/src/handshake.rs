use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::ConnId;
use crate::status::StatusResult;

/// The protocol this build speaks natively.
pub const PROTOCOL_VERSION: u32 = 4;
/// The oldest protocol still accepted (the N-1 window).
pub const MIN_PROTOCOL_VERSION: u32 = 3;
/// Frame limit before the handshake completes.
pub const PRE_AUTH_MAX_PAYLOAD: usize = 64 * 1024;
/// Frame limit after the handshake (`policy.maxPayload`).
pub const MAX_PAYLOAD: usize = 25 * 1024 * 1024;
/// Bytes a connection may have queued for sending before it is dropped
/// (OpenClaw advertises 50 MiB; moltd keeps a slow client's cost small).
pub const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;
/// Interval of `tick` events.
pub const TICK_INTERVAL_MS: u64 = 15_000;
/// Time a client has to complete the handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;

/// Event `connect.challenge`, sent by the server on open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectChallenge {
    pub nonce: String,
    pub ts: u64,
}

/// Client identity in `connect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub mode: String,
}

/// Credentials in `connect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Params of the `connect` request, the client's first frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    pub min_protocol: u32,
    pub max_protocol: u32,
    pub client: ClientInfo,
    #[serde(default = "default_role")]
    pub role: String,
    /// Wire scope names; names molt does not know are ignored.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub auth: ConnectAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Value>,
}

fn default_role() -> String {
    "operator".to_owned()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub version: String,
    pub conn_id: ConnId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub methods: Vec<String>,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrantedAuth {
    pub role: String,
    pub scopes: Vec<crate::Scope>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub max_payload: usize,
    pub max_buffered_bytes: usize,
    pub tick_interval_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_payload: MAX_PAYLOAD,
            max_buffered_bytes: MAX_BUFFERED_BYTES,
            tick_interval_ms: TICK_INTERVAL_MS,
        }
    }
}

/// The payload of the successful `connect` response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloOk {
    /// Always `"hello-ok"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub protocol: u32,
    pub server: ServerInfo,
    pub features: Features,
    pub snapshot: StatusResult,
    pub auth: GrantedAuth,
    pub policy: Policy,
}

/// No protocol version is acceptable to both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "protocol mismatch: client speaks {client_min}..={client_max}, server speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
)]
pub struct ProtocolMismatch {
    pub client_min: u32,
    pub client_max: u32,
}

impl ProtocolMismatch {
    /// The value of `details.expectedProtocol`.
    pub fn expected_protocol(&self) -> u32 {
        PROTOCOL_VERSION
    }
}

/// The highest protocol in both the client's range and ours.
pub fn negotiate_protocol(client_min: u32, client_max: u32) -> Result<u32, ProtocolMismatch> {
    let high = client_max.min(PROTOCOL_VERSION);
    let low = client_min.max(MIN_PROTOCOL_VERSION);
    if client_min <= client_max && low <= high {
        Ok(high)
    } else {
        Err(ProtocolMismatch {
            client_min,
            client_max,
        })
    }
}
