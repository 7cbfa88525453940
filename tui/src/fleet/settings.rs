//! One setting across the gateways of a fleet, each applied with the
//! gateway's own method (`update.noAutoUpdate.set`, `config.patch`), all at
//! once: from `molt fleet kill-switch|auto-update` and the Fleet screen.

use futures_util::future::join_all;
use molt_protocol::Method;
use serde_json::json;

use super::Gateway;
use crate::cli::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    KillSwitch(bool),
    AutoUpdate(bool),
}

impl Setting {
    /// `kill switch on`, `auto-update off`.
    pub fn describe(self) -> String {
        let (what, on) = match self {
            Setting::KillSwitch(on) => ("kill switch", on),
            Setting::AutoUpdate(on) => ("auto-update", on),
        };
        format!("{what} {}", if on { "on" } else { "off" })
    }
}

/// Applies `setting` on one gateway.
pub async fn apply(gateway: &Gateway, setting: Setting) -> Result<(), CliError> {
    let target = gateway.target().map_err(CliError::Unreachable)?;
    match setting {
        Setting::KillSwitch(on) => {
            crate::cli::request_once(
                &target,
                Method::NoAutoUpdateSet,
                Some(json!({ "enabled": on })),
            )
            .await?;
        }
        Setting::AutoUpdate(on) => {
            crate::cli::config::patch_key(&target, &["update", "auto", "enabled"], json!(on))
                .await?;
        }
    }
    Ok(())
}

/// Applies `setting` on every gateway at once; each one's outcome.
pub async fn apply_all(gateways: &[&Gateway], setting: Setting) -> Vec<Result<(), CliError>> {
    join_all(gateways.iter().map(|g| apply(g, setting))).await
}
