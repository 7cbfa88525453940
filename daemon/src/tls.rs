//! TLS on the TCP listener (`gateway.tls`): the certificate and key named
//! by the config or kept in the state dir, a self-signed pair generated
//! once when both are missing, and the acceptor sessions use. Clients pin
//! the certificate by its SHA-256 fingerprint, so a self-signed one is as
//! good as any.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use molt_protocol::state;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::TlsSettings;
use crate::fsutil;

pub use tokio_rustls::TlsAcceptor;

/// The most a certificate or key file may hold (OpenClaw's bound too).
pub const MAX_PEM_BYTES: u64 = 64 * 1024;

/// TLS as the listener serves it.
#[derive(Clone)]
pub struct GatewayTls {
    pub acceptor: TlsAcceptor,
    pub cert_path: PathBuf,
    /// SHA-256 of the certificate, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Whether this start generated the pair.
    pub generated: bool,
}

impl std::fmt::Debug for GatewayTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTls")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("gateway.tls: {0}")]
    Io(io::Error),
    #[error(
        "gateway.tls: {present} exists but {missing} does not; a pair is generated only when both \
         are missing: restore {missing} or remove {present}"
    )]
    PartialPair { present: PathBuf, missing: PathBuf },
    #[error("gateway.tls: neither {cert} nor {key} exists, and gateway.tls.autoGenerate is false")]
    Missing { cert: PathBuf, key: PathBuf },
    #[error("gateway.tls: {path}: {problem}")]
    Bad { path: PathBuf, problem: String },
    #[error("gateway.tls: cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Where the certificate and key are: the config's paths (`~` expanded,
/// relative ones against the current directory) or the state dir's.
pub fn pair_paths(
    settings: &TlsSettings,
    state_dir: &Path,
    home: Option<&Path>,
) -> (PathBuf, PathBuf) {
    let resolve = |configured: Option<&String>, default: &str| match configured {
        Some(text) => {
            let path =
                state::expand_home(Path::new(text), home).unwrap_or_else(|_| PathBuf::from(text));
            std::path::absolute(&path).unwrap_or(path)
        }
        None => state_dir.join(default),
    };
    (
        resolve(settings.cert_path.as_ref(), state::TLS_CERT_FILE),
        resolve(settings.key_path.as_ref(), state::TLS_KEY_FILE),
    )
}

/// Loads (or first generates) the pair and builds the acceptor. Runs at
/// start, under the gateway lock, so two processes never generate at once.
pub fn load(cert: &Path, key: &Path, auto_generate: bool) -> Result<GatewayTls, TlsError> {
    let generated = match (cert.exists(), key.exists()) {
        (true, true) => false,
        (false, false) if auto_generate => {
            generate(cert, key)?;
            true
        }
        (false, false) => {
            return Err(TlsError::Missing {
                cert: cert.to_owned(),
                key: key.to_owned(),
            });
        }
        (present, _) => {
            let (present, missing) = if present { (cert, key) } else { (key, cert) };
            return Err(TlsError::PartialPair {
                present: present.to_owned(),
                missing: missing.to_owned(),
            });
        }
    };
    let bad = |path: &Path, problem: String| TlsError::Bad {
        path: path.to_owned(),
        problem,
    };
    let cert_pem = fsutil::read_bounded(cert, MAX_PEM_BYTES).map_err(TlsError::Io)?;
    let key_pem = fsutil::read_bounded(key, MAX_PEM_BYTES).map_err(TlsError::Io)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad(cert, "holds no certificate".to_owned()))?;
    let fingerprint = fingerprint(leaf);
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad(key, format!("does not fit {}: {e}", cert.display())))?;
    Ok(GatewayTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        cert_path: cert.to_owned(),
        fingerprint,
        generated,
    })
}

/// SHA-256 of a DER certificate, 64 lowercase hex digits: what clients pin.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A self-signed pair for this host's names, each file written atomically
/// with mode 0600 (the key first: a cert without its key is refused at the
/// next start rather than silently replaced).
fn generate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "moltd");
    let pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let issued = params
        .self_signed(&pair)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    for (path, pem) in [(key, pair.serialize_pem()), (cert, issued.pem())] {
        if let Some(dir) = path.parent() {
            fsutil::ensure_private_dir(dir).map_err(TlsError::Io)?;
        }
        fsutil::write_atomic(path, pem.as_bytes()).map_err(TlsError::Io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        pair_paths(&TlsSettings::default(), dir, None)
    }

    #[test]
    fn a_pair_is_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(dir.path());
        assert_eq!(cert, dir.path().join("gateway/tls/gateway-cert.pem"));
        let first = load(&cert, &key, true).unwrap();
        assert!(first.generated);
        assert_eq!(fsutil::testing::mode(&key), 0o600);
        assert_eq!(fsutil::testing::mode(&cert), 0o600);
        assert_eq!(fsutil::testing::mode(cert.parent().unwrap()), 0o700);
        let again = load(&cert, &key, true).unwrap();
        assert!(!again.generated, "the next start reuses the pair");
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(first.fingerprint.len(), 64);
    }

    #[test]
    fn a_missing_partial_or_broken_pair_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(dir.path());
        let err = load(&cert, &key, false).unwrap_err().to_string();
        assert!(err.contains("autoGenerate is false"), "{err}");

        load(&cert, &key, true).unwrap();
        std::fs::remove_file(&key).unwrap();
        let err = load(&cert, &key, true).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{} exists but {} does not",
                cert.display(),
                key.display()
            )),
            "{err}"
        );
        assert!(cert.exists(), "nothing is replaced");

        std::fs::write(&key, "not a key").unwrap();
        let err = load(&cert, &key, true).unwrap_err().to_string();
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains("not a PEM private key"), "{err}");

        fsutil::testing::oversize(&cert);
        let err = load(&cert, &key, true).unwrap_err().to_string();
        fsutil::testing::assert_refused_over(&err, &cert, MAX_PEM_BYTES);
    }

    #[test]
    fn configured_paths_expand_the_home_directory() {
        let settings = TlsSettings {
            cert_path: Some("~/tls/c.pem".into()),
            key_path: Some("/etc/k.pem".into()),
            ..TlsSettings::default()
        };
        let (cert, key) = pair_paths(&settings, Path::new("/state"), Some(Path::new("/home/op")));
        assert_eq!(cert, Path::new("/home/op/tls/c.pem"));
        assert_eq!(key, Path::new("/etc/k.pem"));
    }
}
