//! A fleet of gateways: the fleet file, their status side by side, and
//! rolling updates that stop at the first gateway that does not verify.
//!
//! There is no coordinator: each gateway updates itself with its own
//! `update.run`, handoff and rollback, exactly as `molt update` drives
//! one; the console only picks the order, waits for evidence (the target
//! version verified by the gateway's own new process) and stops.

pub mod file;
pub mod panel;
pub mod record;
pub mod rollout;
pub mod screen;
pub mod settings;
pub mod start;
pub mod status;

pub use file::{Endpoint, Fleet, FleetError, Gateway, RolloutDefaults, TokenSource, WaveSize};

use std::path::Path;

use crate::client::{ClientMode, ConnectOptions};
use crate::target::{self, Env, Overrides, PinSource, Target, TokenSource as Origin, UrlSource};

/// Token files are a line; anything bigger is not one.
const MAX_TOKEN_FILE: u64 = 16 * 1024;

impl Gateway {
    /// Where and how to connect now: the token is read at each call, and a
    /// local gateway is looked up again (its port may have changed).
    pub fn target(&self) -> Result<Target, String> {
        let token = self.token()?;
        match &self.endpoint {
            Endpoint::Url {
                url,
                tls_fingerprint,
            } => {
                // Normalised when the file was read.
                let tls_pin = tls_fingerprint
                    .as_ref()
                    .map(|pin| (pin.clone(), PinSource::Flag));
                Ok(Target {
                    url: url.clone(),
                    url_source: UrlSource::Flag,
                    local_socket: None,
                    tls_pin,
                    token_source: if token.is_some() {
                        Origin::Flag
                    } else {
                        Origin::None
                    },
                    token,
                    state_dir: Default::default(),
                    config_path: Default::default(),
                    warnings: Vec::new(),
                })
            }
            Endpoint::StateDir(dir) => {
                // Only the home dir from this shell: its OPENCLAW_* belong
                // to one gateway, not to every local one.
                let env = Env {
                    home: Env::from_process().home,
                    ..Env::default()
                };
                let overrides = Overrides {
                    url: None,
                    token,
                    state_dir: Some(dir.clone()),
                    tls_fingerprint: None,
                };
                target::discover(&overrides, &env).map_err(|e| format!("{}: {e}", self.name))
            }
        }
    }

    /// The console's connect options for this gateway.
    pub fn connect_options(&self, mode: ClientMode) -> Result<ConnectOptions, String> {
        Ok(self.target()?.connect_options(mode))
    }

    fn token(&self) -> Result<Option<String>, String> {
        match &self.token {
            TokenSource::None => Ok(None),
            TokenSource::Inline(token) => Ok(Some(token.clone())),
            TokenSource::Env(var) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Ok(Some(token)),
                _ => Err(format!("{}: token_env {var} is not set", self.name)),
            },
            TokenSource::File(path) => read_token(path).map(Some).map_err(|problem| {
                format!("{}: token_file {}: {problem}", self.name, path.display())
            }),
        }
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_TOKEN_FILE {
        return Err(format!("larger than {MAX_TOKEN_FILE} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("empty".to_owned());
    }
    Ok(token.to_owned())
}

/// The gateways of `group` (all without one), in file order.
pub fn select<'a>(fleet: &'a Fleet, group: Option<&str>) -> Vec<&'a Gateway> {
    fleet
        .gateways
        .iter()
        .filter(|g| group.is_none_or(|group| g.in_group(group)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(endpoint: Endpoint, token: TokenSource) -> Gateway {
        Gateway {
            name: "g".into(),
            endpoint,
            token,
            groups: vec![],
            line: 1,
        }
    }

    #[test]
    fn tokens_come_from_their_source_at_connect_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let url = Endpoint::Url {
            url: "ws://127.0.0.1:1".into(),
            tls_fingerprint: None,
        };
        let options = gateway(url.clone(), TokenSource::File(file.clone()))
            .connect_options(ClientMode::Cli)
            .unwrap();
        assert_eq!(options.token.as_deref(), Some("s3cret"));
        assert_eq!(options.url, "ws://127.0.0.1:1");
        std::fs::write(&file, "rotated").unwrap();
        let target = gateway(url.clone(), TokenSource::File(file.clone()))
            .target()
            .unwrap();
        assert_eq!(target.token.as_deref(), Some("rotated"));
        let missing = gateway(url.clone(), TokenSource::File(dir.path().join("none")));
        assert!(missing.target().unwrap_err().contains("token_file"));
        let unset = gateway(
            url.clone(),
            TokenSource::Env("MOLT_FLEET_TEST_UNSET".into()),
        );
        assert!(
            unset
                .target()
                .unwrap_err()
                .contains("MOLT_FLEET_TEST_UNSET is not set")
        );
        let none = gateway(url, TokenSource::None).target().unwrap();
        assert_eq!(none.token, None);
        // The pin (normalised by the file reader) goes with the target.
        let pin = "ab".repeat(32);
        let pinned = gateway(
            Endpoint::Url {
                url: "wss://h:1".into(),
                tls_fingerprint: Some(pin.clone()),
            },
            TokenSource::None,
        );
        assert_eq!(
            pinned.target().unwrap().tls_pin,
            Some((pin, crate::target::PinSource::Flag))
        );
    }

    #[test]
    fn a_local_gateway_is_found_through_its_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("openclaw.json"),
            r#"{ gateway: { port: 18999, auth: { token: "from-config" } } }"#,
        )
        .unwrap();
        let target = gateway(Endpoint::StateDir(dir.path().into()), TokenSource::None)
            .target()
            .unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:18999");
        assert_eq!(target.token.as_deref(), Some("from-config"));
    }
}
