//! The Config screen: the update settings, edited through `config.patch`
//! with the hash they were read at, and the kill switch through
//! `update.noAutoUpdate.set`.

use molt_protocol::Method;
use molt_protocol::error::ErrorCode;
use molt_protocol::method::{ConfigPatchParams, NoAutoUpdateSetParams, NoAutoUpdateSetResult};
use molt_protocol::update::Channel;
use serde_json::{Value, json};

use super::keymap::TextKey;
use super::update::{Field, TextInput};
use super::{App, Command, ConnState, Level, request};
use crate::client::RequestError;
use crate::net::Purpose;
use crate::peer::{KillSwitch, RestartPlan};

/// `gateway.reload.deferralTimeoutMs` when unset.
pub const DEFAULT_DEFERRAL_MS: u64 = 300_000;

/// The rows, in screen order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigRow {
    AutoUpdate,
    Channel,
    CheckOnStart,
    KillSwitch,
    DeferralTimeout,
}

impl ConfigRow {
    pub const ALL: &'static [ConfigRow] = &[
        ConfigRow::AutoUpdate,
        ConfigRow::Channel,
        ConfigRow::CheckOnStart,
        ConfigRow::KillSwitch,
        ConfigRow::DeferralTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConfigRow::AutoUpdate => "auto-update",
            ConfigRow::Channel => "channel",
            ConfigRow::CheckOnStart => "check on start",
            ConfigRow::KillSwitch => "kill switch",
            ConfigRow::DeferralTimeout => "deferral timeout",
        }
    }

    /// The config key or env variable the row edits.
    pub fn key(self) -> &'static str {
        match self {
            ConfigRow::AutoUpdate => "update.auto.enabled",
            ConfigRow::Channel => "update.channel",
            ConfigRow::CheckOnStart => "update.checkOnStart",
            ConfigRow::KillSwitch => "OPENCLAW_NO_AUTO_UPDATE",
            ConfigRow::DeferralTimeout => "gateway.reload.deferralTimeoutMs",
        }
    }
}

/// A `config.get` answer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedConfig {
    pub path: String,
    pub config: Value,
    pub hash: String,
}

impl LoadedConfig {
    /// `{path?, config, hash}` (moltd), or OpenClaw's answer, which has
    /// the same three beside many more.
    pub fn read(value: Value) -> Result<LoadedConfig, String> {
        let hash = value
            .get("hash")
            .and_then(Value::as_str)
            .ok_or("unexpected config.get result: no hash to write against")?
            .to_owned();
        Ok(LoadedConfig {
            path: value
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            config: value
                .get("config")
                .filter(|c| c.is_object())
                .cloned()
                .unwrap_or_else(|| json!({})),
            hash,
        })
    }

    fn at(&self, pointer: &str) -> Option<&Value> {
        self.config.pointer(pointer)
    }

    pub fn auto_enabled(&self) -> bool {
        self.at("/update/auto/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `update.channel` as written (OpenClaw also knows
    /// `extended-stable`); `stable` when unset.
    pub fn channel(&self) -> String {
        self.at("/update/channel")
            .and_then(Value::as_str)
            .unwrap_or(Channel::Stable.as_str())
            .to_owned()
    }

    pub fn check_on_start(&self) -> bool {
        self.at("/update/checkOnStart")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    pub fn deferral_ms(&self) -> u64 {
        self.at("/gateway/reload/deferralTimeoutMs")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_DEFERRAL_MS)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigView {
    pub loaded: Option<LoadedConfig>,
    pub selected: usize,
    pub editing: Option<TextInput>,
    pub error: Option<String>,
    /// What is being saved, while a change is in flight.
    pub saving: Option<String>,
    pub(super) in_flight: bool,
    /// The kill switch state asked for, until the answer comes.
    kill_switch_wanted: Option<bool>,
    loading: bool,
}

impl ConfigView {
    pub fn row(&self) -> ConfigRow {
        ConfigRow::ALL[self.selected.min(ConfigRow::ALL.len() - 1)]
    }

    pub fn move_selection(&mut self, by: isize) {
        self.selected = super::moved(self.selected, by, ConfigRow::ALL.len() - 1);
    }

    /// A `config.changed` with another hash makes what is shown stale.
    pub fn is_stale(&self, hash: &str) -> bool {
        self.loaded.as_ref().is_some_and(|l| l.hash != hash)
    }
}

/// stable → beta → dev → stable; anything else back to stable.
fn next_channel(channel: &str) -> Channel {
    match channel {
        "stable" => Channel::Beta,
        "beta" => Channel::Dev,
        _ => Channel::Stable,
    }
}

/// `300000`, `300s`, `5m`, `1h` or `0` (wait forever) to milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: use ms, or a number with s, m or h"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl App {
    pub(super) fn request_config(&mut self) -> Vec<Command> {
        if self.config.loading || self.conn != ConnState::Connected {
            return Vec::new();
        }
        self.config.loading = true;
        vec![request(Purpose::ConfigGet, Method::ConfigGet, None)]
    }

    /// The kill switch as the gateway reports it.
    pub fn kill_switch(&self) -> Option<KillSwitch> {
        Some(self.facts()?.auto.kill_switch)
    }

    /// Where and how `OPENCLAW_NO_AUTO_UPDATE` is set for a gateway that
    /// reads it only from its own environment: the console cannot set
    /// another program's environment, so it says what to do.
    pub fn kill_switch_advice(&self) -> String {
        let env_file = self.facts().and_then(|f| f.state_dir.clone()).map_or_else(
            || "the gateway's state dir .env (~/.openclaw/.env)".to_owned(),
            |dir| format!("{dir}/.env"),
        );
        format!(
            "set OPENCLAW_NO_AUTO_UPDATE=1 in the gateway's environment (its service unit's \
             Environment=, or {env_file}) and restart the gateway; molt cannot set another \
             program's environment"
        )
    }

    pub(super) fn config_activate(&mut self) -> Vec<Command> {
        if self.conn != ConnState::Connected {
            self.set_notice(Level::Warn, "not connected: changes need the gateway");
            return Vec::new();
        }
        if let Some(saving) = &self.config.saving {
            let text = format!("still saving {saving}");
            self.set_notice(Level::Warn, text);
            return Vec::new();
        }
        let row = self.config.row();
        if row == ConfigRow::KillSwitch {
            if !self.serves(Method::NoAutoUpdateSet.as_str()) {
                let advice = self.kill_switch_advice();
                self.set_notice(Level::Warn, advice);
                return Vec::new();
            }
            let Some(switch) = self.kill_switch() else {
                return Vec::new();
            };
            return self.set_kill_switch(!matches!(switch, KillSwitch::On { .. }));
        }
        let Some(loaded) = &self.config.loaded else {
            self.set_notice(Level::Warn, "the config is not loaded yet");
            return Vec::new();
        };
        let patch = match row {
            ConfigRow::AutoUpdate => {
                json!({"update": {"auto": {"enabled": !loaded.auto_enabled()}}})
            }
            ConfigRow::Channel => json!({"update": {"channel": next_channel(&loaded.channel())}}),
            ConfigRow::CheckOnStart => {
                json!({"update": {"checkOnStart": !loaded.check_on_start()}})
            }
            ConfigRow::DeferralTimeout => {
                let text = loaded.deferral_ms().to_string();
                self.config.editing = Some(TextInput::new(Field::DeferralTimeout, text));
                return Vec::new();
            }
            ConfigRow::KillSwitch => return Vec::new(),
        };
        self.patch_config(row, patch)
    }

    fn patch_config(&mut self, row: ConfigRow, patch: Value) -> Vec<Command> {
        let Some(loaded) = &self.config.loaded else {
            return Vec::new();
        };
        let params = ConfigPatchParams {
            raw: patch.to_string(),
            base_hash: loaded.hash.clone(),
        };
        self.config.saving = Some(row.key().to_owned());
        self.config.in_flight = true;
        vec![request(
            Purpose::ConfigPatch,
            Method::ConfigPatch,
            serde_json::to_value(params).ok(),
        )]
    }

    fn set_kill_switch(&mut self, enabled: bool) -> Vec<Command> {
        self.config.saving = Some(ConfigRow::KillSwitch.key().to_owned());
        self.config.in_flight = true;
        self.config.kill_switch_wanted = Some(enabled);
        vec![request(
            Purpose::KillSwitch,
            Method::NoAutoUpdateSet,
            serde_json::to_value(NoAutoUpdateSetParams { enabled }).ok(),
        )]
    }

    pub(super) fn config_text_key(&mut self, key: TextKey) -> Vec<Command> {
        let Some(input) = &mut self.config.editing else {
            return Vec::new();
        };
        if key == TextKey::Discard {
            self.config.editing = None;
            return Vec::new();
        }
        if !input.edit(&key, 20) {
            return Vec::new();
        }
        match parse_duration_ms(&input.text) {
            Err(problem) => {
                input.error = Some(problem);
                Vec::new()
            }
            Ok(ms) => {
                self.config.editing = None;
                let patch = json!({"gateway": {"reload": {"deferralTimeoutMs": ms}}});
                self.patch_config(ConfigRow::DeferralTimeout, patch)
            }
        }
    }

    pub(super) fn on_config_get(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.config.loading = false;
        match result
            .map_err(|e| e.to_string())
            .and_then(LoadedConfig::read)
        {
            Ok(loaded) => {
                self.config.loaded = Some(loaded);
                self.config.error = None;
            }
            Err(problem) => self.config.error = Some(problem),
        }
        Vec::new()
    }

    pub(super) fn on_config_patch(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.config.in_flight = false;
        let what = self.config.saving.take().unwrap_or_default();
        match result {
            // Read leniently: OpenClaw answers with its own shape; whatever
            // is missing is read again with config.get.
            Ok(value) => {
                let config = value.get("config").filter(|c| c.is_object()).cloned();
                let hash = value.get("hash").and_then(Value::as_str).map(str::to_owned);
                let changed: Option<Vec<String>> = value
                    .get("changedPaths")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    });
                let mut text = match &changed {
                    Some(paths) if paths.is_empty() => format!("{what}: unchanged"),
                    Some(paths) => format!("saved {}", paths.join(", ")),
                    None => format!("saved {what}"),
                };
                if let Some(restart) = value.get("restart").and_then(RestartPlan::from_value) {
                    text.push_str(&format!("; restart scheduled: {}", restart.describe()));
                }
                self.set_notice(Level::Info, text);
                self.config.error = None;
                let mut commands = self.request_status(true);
                match (config, hash) {
                    (Some(config), Some(hash)) => {
                        let path = self
                            .config
                            .loaded
                            .as_ref()
                            .map(|l| l.path.clone())
                            .unwrap_or_default();
                        self.config.loaded = Some(LoadedConfig { path, config, hash });
                    }
                    _ => commands.extend(self.request_config()),
                }
                commands
            }
            Err(RequestError::Gateway(shape)) if shape.code == ErrorCode::Conflict => {
                self.set_notice(
                    Level::Warn,
                    format!(
                        "{what} not saved: the config changed elsewhere since it was read; \
                         reloaded, check and try again"
                    ),
                );
                self.request_config()
            }
            Err(error) => {
                self.config.error = Some(format!("{what} not saved: {error}"));
                Vec::new()
            }
        }
    }

    pub(super) fn on_kill_switch(&mut self, result: Result<Value, RequestError>) -> Vec<Command> {
        self.config.in_flight = false;
        self.config.saving = None;
        let wanted = self.config.kill_switch_wanted.take();
        match super::answer::<NoAutoUpdateSetResult>(Method::NoAutoUpdateSet, result) {
            // The answer is the state now: asked off but still on means
            // it is set where the gateway cannot remove it.
            Ok(set) if wanted == Some(false) && set.enabled => {
                self.set_notice(
                    Level::Warn,
                    format!(
                        "kill switch still ON{}: remove OPENCLAW_NO_AUTO_UPDATE there",
                        crate::format::env_source(set.source)
                    ),
                );
            }
            Ok(set) => {
                let text = if set.enabled {
                    format!(
                        "kill switch ON{}: automatic updates blocked",
                        crate::format::env_source(set.source)
                    )
                } else {
                    "kill switch off: automatic updates allowed".to_owned()
                };
                self.set_notice(Level::Info, text);
                self.config.error = None;
            }
            Err(problem) => self.config.error = Some(format!("kill switch not changed: {problem}")),
        }
        self.request_status(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        let cases = [
            ("0", 0),
            ("300000", 300_000),
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            (" 1h ", 3_600_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
        for bad in ["", "-1", "5 m", "5d", "abc", "99999999999999999999"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
