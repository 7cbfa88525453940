//! Who made a change: the one name an audit entry and an update run give
//! the person or process that asked.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::ConnId;

/// The longest client id kept for an actor (the handshake bounds it only
/// by the frame size).
pub const MAX_CLIENT_ID: usize = 128;

/// Who asked for a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Actor {
    /// A client on a connection: its `client.id` from `connect`, its
    /// address (or the local socket and its uid), the connection, and
    /// the credential it authenticated with.
    #[serde(rename_all = "camelCase")]
    Client {
        client_id: String,
        addr: String,
        conn_id: ConnId,
        /// `gateway-token`, `read-token`, `local-owner` (the local socket's
        /// owner, no token) or `none` (`gateway.auth.mode: "none"`);
        /// absent in entries written before moltd recorded it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    /// moltd's own auto-updater.
    AutoUpdater,
    /// The supervisor's rescue step (`moltd rescue`), rolling back a
    /// version that crash-loops.
    Rescue,
    /// A signal sent to the process (`SIGUSR1`).
    Signal { signal: String },
    /// Written by a newer moltd; shown as it is named.
    #[serde(other)]
    Unknown,
}

impl Actor {
    /// A client actor, with `client_id` cut to [`MAX_CLIENT_ID`].
    pub fn client(client_id: &str, addr: impl fmt::Display, conn_id: ConnId) -> Self {
        Actor::Client {
            client_id: client_id.chars().take(MAX_CLIENT_ID).collect(),
            addr: addr.to_string(),
            conn_id,
            credential: None,
        }
    }

    /// This actor with the credential it authenticated with (a client's;
    /// other actors have none).
    pub fn with_credential(mut self, name: &str) -> Self {
        if let Actor::Client { credential, .. } = &mut self {
            *credential = Some(name.to_owned());
        }
        self
    }

    /// The kind's wire name (`client`, `auto-updater`, `rescue`, `signal`).
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Client { .. } => "client",
            Actor::AutoUpdater => "auto-updater",
            Actor::Rescue => "rescue",
            Actor::Signal { .. } => "signal",
            Actor::Unknown => "unknown",
        }
    }
}

/// `client molt-console at 127.0.0.1:51234 (14788-3) with gateway-token`,
/// `auto-updater`, `rescue`, `SIGUSR1`.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Client {
                client_id,
                addr,
                conn_id,
                credential,
            } => {
                write!(f, "client {client_id} at {addr} ({conn_id})")?;
                match credential {
                    Some(credential) => write!(f, " with {credential}"),
                    None => Ok(()),
                }
            }
            Actor::AutoUpdater => f.write_str("auto-updater"),
            Actor::Rescue => f.write_str("rescue"),
            Actor::Signal { signal } => f.write_str(signal),
            Actor::Unknown => f.write_str("unknown"),
        }
    }
}
