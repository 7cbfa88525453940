//! Where a gateway keeps its files and how its config names its port: the
//! rules `moltd` starts by and `molt` finds it by. Both follow OpenClaw, so
//! `molt` also finds an OpenClaw gateway's state dir and config.
//!
//! Pure path arithmetic: nothing here reads the environment or the disk;
//! callers pass the values in.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Env var naming the state dir.
pub const STATE_DIR_ENV: &str = "OPENCLAW_STATE_DIR";
/// Env var naming the config file.
pub const CONFIG_PATH_ENV: &str = "OPENCLAW_CONFIG_PATH";
/// Env var holding the gateway token.
pub const GATEWAY_TOKEN_ENV: &str = "OPENCLAW_GATEWAY_TOKEN";
/// Env var that, truthy, blocks automatic updates.
pub const NO_AUTO_UPDATE_ENV: &str = "OPENCLAW_NO_AUTO_UPDATE";

/// The state dir under the home directory when nothing names one.
pub const DEFAULT_STATE_DIR: &str = ".openclaw";
/// The config file in the state dir.
pub const CONFIG_FILE: &str = "openclaw.json";
/// `KEY=VALUE` lines loaded at start.
pub const ENV_FILE: &str = ".env";
pub const SENTINEL_FILE: &str = "restart-sentinel.json";
pub const RUNS_FILE: &str = "update-runs.jsonl";
/// The audit trail of every change (`audit.list`).
pub const AUDIT_FILE: &str = "audit.jsonl";
/// The metrics a predecessor hands its successor.
pub const METRICS_HANDOFF_FILE: &str = "metrics-handoff.json";
pub const UPDATE_CHECK_FILE: &str = "update-check.json";
/// Held with flock by the running daemon; see [`crate::lock`].
pub const LOCK_FILE: &str = "gateway.lock";
pub const LOGS_DIR: &str = "logs";
/// The daemon's local socket (a Unix socket speaking the same protocol):
/// the host's operator connects without a token.
pub const LOCAL_SOCKET_FILE: &str = "gateway.sock";
/// Where `gateway.tls.autoGenerate` puts the certificate and key when the
/// config names no paths (OpenClaw's places).
pub const TLS_CERT_FILE: &str = "gateway/tls/gateway-cert.pem";
pub const TLS_KEY_FILE: &str = "gateway/tls/gateway-key.pem";

/// The port a gateway listens on when its config names none.
pub const DEFAULT_PORT: u16 = 18789;

/// A SHA-256 certificate fingerprint as OpenClaw accepts it: 64 hex digits,
/// or 32 colon-separated pairs, optionally after `sha256:`; `None` for
/// anything else. The result is 64 lowercase hex digits.
pub fn normalize_tls_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let text = match text.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &text[7..],
        _ => text,
    };
    let hex: String = if text.len() == 95 {
        let pairs: Vec<&str> = text.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat()
    } else {
        text.to_owned()
    };
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A path rule needed the home directory and there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot find the home directory for the default state dir ~/.openclaw; \
     set {STATE_DIR_ENV} or pass --state-dir"
)]
pub struct NoHome;

/// The state dir: `flag` (`--state-dir`), else the value of
/// `$OPENCLAW_STATE_DIR`, else `~/.openclaw`. A leading `~` is expanded in
/// both (unit files, `.env` values and quoted flags are not shell-expanded).
/// An empty variable counts as unset.
pub fn state_dir(
    flag: Option<&Path>,
    env_value: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<PathBuf, NoHome> {
    match (flag, non_empty(env_value)) {
        (Some(flag), _) => expand_home(flag, home),
        (None, Some(value)) => expand_home(Path::new(value), home),
        (None, None) => Ok(home.ok_or(NoHome)?.join(DEFAULT_STATE_DIR)),
    }
}

/// The config file: the value of `$OPENCLAW_CONFIG_PATH` (`~` expanded; it
/// wins even over `--state-dir`, as in OpenClaw), else
/// `<state_dir>/openclaw.json`.
pub fn config_path(
    state_dir: &Path,
    env_value: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<PathBuf, NoHome> {
    match non_empty(env_value) {
        Some(value) => expand_home(Path::new(value), home),
        None => Ok(state_dir.join(CONFIG_FILE)),
    }
}

/// Expands a leading `~` component to `home`.
pub fn expand_home(path: &Path, home: Option<&Path>) -> Result<PathBuf, NoHome> {
    match path.strip_prefix("~") {
        Ok(rest) => Ok(home.ok_or(NoHome)?.join(rest)),
        Err(_) => Ok(path.to_path_buf()),
    }
}

fn non_empty(value: Option<&OsStr>) -> Option<&OsStr> {
    value.filter(|v| !v.is_empty())
}

/// A config value that is not a port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected an integer 0..=65535, got {got}")]
pub struct BadPort {
    /// The value as JSON, shortened.
    pub got: String,
}

/// Reads `gateway.port`: an integer 0..=65535, also when written as a
/// whole float (`18790.0`, as JSON5 editors and some tools write numbers).
/// 0 means "any free port": only the running daemon's lock file then knows
/// which one it took.
pub fn parse_port(value: &Value) -> Result<u16, BadPort> {
    let n = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(f))
            .map(|f| f as u64)
    });
    n.and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| BadPort {
            got: shorten(&value.to_string()),
        })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_fingerprints_are_read_in_every_form_openclaw_accepts() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for form in [
            hex.clone(),
            colons.clone(),
            format!("sha256:{colons}"),
            format!(" SHA256:{hex} "),
        ] {
            assert_eq!(
                normalize_tls_fingerprint(&form).as_deref(),
                Some(hex.as_str()),
                "{form}"
            );
        }
        let wrong_separator = colons.replace(':', "-");
        for bad in [
            "",
            "ab",
            &"zz".repeat(32),
            &"ab".repeat(33),
            &wrong_separator,
            "sha256:",
        ] {
            assert_eq!(normalize_tls_fingerprint(bad), None, "{bad}");
        }
    }
}
