//! The byte stream under the WebSocket: the gateway's local socket when
//! this host has one, else TCP, with TLS for `wss://` URLs. A TLS
//! gateway's certificate is trusted by its pinned SHA-256 fingerprint
//! alone: moltd's certificates are self-signed, and a pin is stronger than
//! any CA for a gateway one operator runs.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::ConnectError;

/// What a WebSocket runs on, whatever the transport.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// The URL the upgrade request names on the local socket (the socket, not
/// the host, says where it goes).
pub const LOCAL_URL: &str = "ws://localhost/";

/// An open stream and the URL to upgrade it with.
pub struct Opened {
    pub stream: Box<dyn Conn>,
    pub url: String,
}

/// Connects to the local socket at `path`; `None` when nobody can be
/// reached there (no socket, not ours to use, or a stale one): the caller
/// falls back to TCP.
pub async fn open_local(path: &Path) -> Result<Option<Opened>, ConnectError> {
    match UnixStream::connect(path).await {
        Ok(stream) => Ok(Some(Opened {
            stream: Box::new(stream),
            url: LOCAL_URL.to_owned(),
        })),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::ConnectionRefused
            ) =>
        {
            tracing::debug!(path = %path.display(), error = %e, "local socket not usable; using TCP");
            Ok(None)
        }
        Err(e) => Err(ConnectError::Unreachable {
            url: format!("unix:{}", path.display()),
            reason: e.to_string(),
        }),
    }
}

/// Connects to `url` (`ws://` or `wss://`) over TCP; `wss://` needs `pin`.
pub async fn open_tcp(url: &str, pin: Option<&str>) -> Result<Opened, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let (tls, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(unreachable("the scheme must be ws:// or wss://".to_owned())),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = host_of(authority);
    let pin = match (tls, pin) {
        (true, None) => {
            return Err(ConnectError::Tls {
                url: url.to_owned(),
                reason: "no certificate fingerprint to pin: pass --tls-fingerprint, or run molt \
                         on the gateway's host, where it reads the certificate from the state dir"
                    .to_owned(),
            });
        }
        (true, Some(pin)) => Some(pin),
        (false, _) => None,
    };
    let tcp = TcpStream::connect(authority).await.map_err(|e| {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            ConnectError::Refused {
                url: url.to_owned(),
            }
        } else {
            unreachable(e.to_string())
        }
    })?;
    let _ = tcp.set_nodelay(true);
    let Some(pin) = pin else {
        return Ok(Opened {
            stream: Box::new(tcp),
            url: url.to_owned(),
        });
    };
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| unreachable(format!("host {host}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pinned_config(pin)));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectError::Tls {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Opened {
        stream: Box::new(stream),
        url: url.to_owned(),
    })
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// SHA-256 of a DER certificate, 64 lowercase hex digits.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 with the certificate checked against `pin` (a normalized
/// fingerprint) and nothing else.
fn pinned_config(pin: &str) -> rustls::ClientConfig {
    let provider = provider();
    let verifier = PinnedCert {
        pin: pin.to_owned(),
        algorithms: provider.signature_verification_algorithms,
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

/// Accepts exactly the certificate whose SHA-256 is `pin`; the handshake
/// signatures are still checked, so the server proves it holds the key.
#[derive(Debug)]
struct PinnedCert {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        if seen == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the gateway's certificate (sha256 {seen}) is not the pinned one ({})",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_authorities() {
        assert_eq!(host_of("127.0.0.1:18789"), "127.0.0.1");
        assert_eq!(host_of("[::1]:18789"), "::1");
        assert_eq!(host_of("gw.example:1"), "gw.example");
    }
}
