//! Who may do what. A session's scopes come from the credential it
//! presented (or from the peer its transport vouches for), intersected
//! with what it asked for: asking is never enough.
//!
//! | credential | grants |
//! | --- | --- |
//! | the gateway token | `operator.read` + `operator.admin` |
//! | the read token (`gateway.auth.readToken`) | `operator.read` |
//! | none, with `gateway.auth.mode: "none"` | `operator.read` |
//! | a local owner (a transport that proved the peer is this host's owner) | `operator.read` + `operator.admin` |
//!
//! Browsers are held off before any of this by their `Origin`
//! ([`origin`]); guessing is slowed per peer ([`guesses`]).

pub mod guesses;
pub mod origin;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use molt_protocol::Scope;
use molt_protocol::secret::MIN_TOKEN_CHARS;
use molt_protocol::status::AuthStatus;

/// The env variable that overrides `gateway.auth.readToken`.
pub const READ_TOKEN_ENV: &str = "OPENCLAW_GATEWAY_READ_TOKEN";
/// The env variable that overrides `gateway.auth.token`.
pub const TOKEN_ENV: &str = "OPENCLAW_GATEWAY_TOKEN";

/// A credential's value. Its `Debug` never shows it, so no log line or
/// error built from a struct holding one can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    /// Where it was read from (a config key or an env variable).
    pub source: &'static str,
}

impl Secret {
    pub fn new(value: impl Into<String>, source: &'static str) -> Self {
        Self {
            value: value.into(),
            source,
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn is_short(&self) -> bool {
        self.value.chars().count() < MIN_TOKEN_CHARS
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.value.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, <redacted>)", self.source)
    }
}

/// Where a connection comes from, as its listener vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer; `origin` is a browser's `Origin` header (already found
    /// allowed), `None` for every other client.
    Tcp {
        addr: SocketAddr,
        origin: Option<String>,
    },
    /// A peer the transport proved to be this host's owner: moltd's own
    /// uid or root (a Unix socket checked with `SO_PEERCRED`).
    LocalOwner { uid: u32 },
}

impl Peer {
    pub fn tcp(addr: SocketAddr) -> Self {
        Peer::Tcp { addr, origin: None }
    }

    /// The address failed guesses are counted under; `None` for a peer
    /// that cannot be guessing (a local owner needs no credential).
    pub fn address(&self) -> Option<IpAddr> {
        match self {
            Peer::Tcp { addr, .. } => Some(addr.ip()),
            Peer::LocalOwner { .. } => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp { addr, .. } => write!(f, "{addr}"),
            Peer::LocalOwner { uid } => write!(f, "the local socket, uid {uid}"),
        }
    }
}

/// What a session authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    GatewayToken,
    ReadToken,
    /// `gateway.auth.mode: "none"`: anyone who can connect.
    Unauthenticated,
    LocalOwner,
}

impl Credential {
    /// The most this credential may be granted.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Credential::GatewayToken | Credential::LocalOwner => &[Scope::Read, Scope::Admin],
            Credential::ReadToken | Credential::Unauthenticated => &[Scope::Read],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Credential::GatewayToken => "gateway-token",
            Credential::ReadToken => "read-token",
            Credential::Unauthenticated => "none",
            Credential::LocalOwner => "local-owner",
        }
    }
}

/// Why a presented credential was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token was sent: not a guess, so not counted.
    Missing,
    /// A token that matches nothing: counted as a guess.
    Wrong,
}

/// The credentials this gateway accepts, fixed at start.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `None` with `gateway.auth.mode: "none"`.
    pub gateway_token: Option<Secret>,
    pub read_token: Option<Secret>,
}

impl Credentials {
    pub fn none() -> Self {
        Self {
            gateway_token: None,
            read_token: None,
        }
    }

    pub fn token(token: Secret) -> Self {
        Self {
            gateway_token: Some(token),
            read_token: None,
        }
    }

    /// What the peer authenticates as with `token`. Both tokens are
    /// compared, each in constant time, whichever matches.
    pub fn authenticate(&self, peer: &Peer, token: Option<&str>) -> Result<Credential, Denied> {
        if matches!(peer, Peer::LocalOwner { .. }) {
            return Ok(Credential::LocalOwner);
        }
        let Some(gateway_token) = &self.gateway_token else {
            return Ok(Credential::Unauthenticated);
        };
        let token = token.filter(|t| !t.is_empty()).ok_or(Denied::Missing)?;
        let admin = gateway_token.matches(token);
        let read = self.read_token.as_ref().is_some_and(|r| r.matches(token));
        match (admin, read) {
            (true, _) => Ok(Credential::GatewayToken),
            (false, true) => Ok(Credential::ReadToken),
            (false, false) => Err(Denied::Wrong),
        }
    }

    /// `status.auth`: the mode, whether a read token exists, and which
    /// credentials are too short (never a value).
    pub fn status(&self) -> AuthStatus {
        AuthStatus {
            mode: if self.gateway_token.is_some() {
                "token"
            } else {
                "none"
            }
            .to_owned(),
            read_token: self.read_token.is_some(),
            short_tokens: self.short_tokens(),
        }
    }

    /// Where each credential shorter than [`MIN_TOKEN_CHARS`] comes from.
    pub fn short_tokens(&self) -> Vec<String> {
        [&self.gateway_token, &self.read_token]
            .into_iter()
            .flatten()
            .filter(|s| s.is_short())
            .map(|s| s.source.to_owned())
            .collect()
    }
}

/// The scopes a session gets: what its credential allows of what it
/// asked for (admin implies read). Asking for nothing known, or only for
/// more than the credential allows, still leaves read.
pub fn grant(credential: Credential, requested: &[String]) -> Vec<Scope> {
    let allowed = credential.scopes();
    let mut scopes: Vec<Scope> = requested
        .iter()
        .filter_map(|s| Scope::from_wire(s))
        .flat_map(|s| match s {
            Scope::Admin => vec![Scope::Read, Scope::Admin],
            Scope::Read => vec![Scope::Read],
        })
        .filter(|s| allowed.contains(s))
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(Scope::Read);
    }
    scopes
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    fn tcp() -> Peer {
        Peer::tcp("127.0.0.1:5000".parse().unwrap())
    }

    #[test]
    fn each_credential_grants_its_scopes_and_no_more() {
        use Scope::{Admin, Read};
        let both = asked(&["operator.read", "operator.admin"]);
        let cases: &[(Credential, &[&str], &[Scope])] = &[
            (
                Credential::GatewayToken,
                &["operator.read", "operator.admin"],
                &[Read, Admin],
            ),
            (
                Credential::GatewayToken,
                &["operator.admin"],
                &[Read, Admin],
            ),
            (Credential::GatewayToken, &["operator.read"], &[Read]),
            (Credential::GatewayToken, &[], &[Read]),
            (
                Credential::ReadToken,
                &["operator.read", "operator.admin"],
                &[Read],
            ),
            (Credential::ReadToken, &["operator.admin"], &[Read]),
            (Credential::Unauthenticated, &["operator.admin"], &[Read]),
            (
                Credential::LocalOwner,
                &["operator.admin", "operator.write"],
                &[Read, Admin],
            ),
        ];
        for (credential, requested, granted) in cases {
            assert_eq!(
                grant(*credential, &asked(requested)),
                granted.to_vec(),
                "{credential:?} asking {requested:?}"
            );
        }
        assert_eq!(grant(Credential::ReadToken, &both), vec![Read]);
    }

    #[test]
    fn tokens_decide_the_credential_and_mode_none_is_read_only() {
        let creds = Credentials {
            gateway_token: Some(Secret::new(
                "admin-token-0123456789abcdef",
                "gateway.auth.token",
            )),
            read_token: Some(Secret::new(
                "read-token-0123456789abcdefg",
                "gateway.auth.readToken",
            )),
        };
        let peer = tcp();
        assert_eq!(
            creds.authenticate(&peer, Some("admin-token-0123456789abcdef")),
            Ok(Credential::GatewayToken)
        );
        assert_eq!(
            creds.authenticate(&peer, Some("read-token-0123456789abcdefg")),
            Ok(Credential::ReadToken)
        );
        assert_eq!(creds.authenticate(&peer, Some("guess")), Err(Denied::Wrong));
        assert_eq!(creds.authenticate(&peer, Some("")), Err(Denied::Missing));
        assert_eq!(creds.authenticate(&peer, None), Err(Denied::Missing));
        assert_eq!(
            creds.authenticate(&Peer::LocalOwner { uid: 0 }, None),
            Ok(Credential::LocalOwner)
        );
        let open = Credentials::none();
        assert_eq!(
            open.authenticate(&peer, Some("admin-token-0123456789abcdef")),
            Ok(Credential::Unauthenticated)
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug_and_short_ones_are_named_by_source() {
        let creds = Credentials {
            gateway_token: Some(Secret::new("shorty", TOKEN_ENV)),
            read_token: Some(Secret::new(
                "r".repeat(MIN_TOKEN_CHARS),
                "gateway.auth.readToken",
            )),
        };
        assert!(!format!("{creds:?}").contains("shorty"));
        assert_eq!(creds.short_tokens(), vec![TOKEN_ENV.to_owned()]);
        let status = creds.status();
        assert_eq!(status.mode, "token");
        assert!(status.read_token);
    }
}
