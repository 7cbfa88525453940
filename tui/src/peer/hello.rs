//! `hello-ok`, read leniently, and what it tells about the gateway: who it
//! is, which methods it serves, which update protocol it speaks.

use std::collections::BTreeSet;

use molt_protocol::handshake::HelloOk;
use serde_json::Value;

use super::json::{self, short};

/// `hello-ok`. Only an object whose `type` (when present) is `hello-ok` is
/// required; every field is read on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Hello {
    pub protocol: Option<u32>,
    pub server: ServerFacts,
    pub features: Capabilities,
    pub role: Option<String>,
    /// Scopes granted to this connection.
    pub scopes: Vec<String>,
    pub tick_interval_ms: Option<u64>,
    /// The status snapshot, as sent (moltd: its `status`; OpenClaw: presence,
    /// health, `uptimeMs`, `updateSchedule`, `updateAvailable`, …).
    pub snapshot: Value,
}

/// `hello-ok.server`: the process that answered the handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: Option<String>,
    /// OpenClaw 2026.9.x: the exact build, e.g.
    /// `2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z`.
    pub build_id: Option<String>,
    /// OpenClaw 2026.9.x: new for every start of the process.
    pub boot_id: Option<String>,
    pub conn_id: Option<String>,
}

/// `features.methods` and `features.events`. `None` when the gateway did
/// not advertise them: then nothing is hidden for lack of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub methods: Option<BTreeSet<String>>,
    pub events: Option<BTreeSet<String>>,
}

/// Which gateway software answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Moltd,
    OpenClaw,
    Unknown,
}

/// How the gateway updates itself, as far as a client can see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateApi {
    /// moltd: `update.run` answers after its steps (`update.progress`
    /// events meanwhile), takes `dryRun` and `tag`; the successor verifies
    /// the new version in the sentinel `update.status` returns.
    Molt,
    /// OpenClaw 2026.4.x: `update.run` (params `note`, `timeoutMs` only)
    /// installs inside the gateway, answers, then the gateway restarts; the
    /// restart sentinel says what the install claims, not what runs.
    Sentinel,
    /// OpenClaw 2026.9.x: `update.run` admits a durable run and hands it to
    /// a detached updater; `update.run.changed` events and
    /// `update.runs.get` follow it through the restart.
    Runs,
    /// The gateway does not serve `update.run`.
    None,
}

impl Hello {
    pub fn from_payload(payload: Value) -> Result<Hello, String> {
        if !payload.is_object() {
            return Err(format!("hello-ok is not an object: {}", short(&payload)));
        }
        if let Some(kind) = payload.get("type").and_then(Value::as_str)
            && kind != "hello-ok"
        {
            return Err(format!("expected a hello-ok, got type {kind:?}"));
        }
        let names = |pointer: &str| {
            json::at(&payload, pointer)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect::<BTreeSet<_>>()
                })
        };
        let features = Capabilities {
            methods: names("/features/methods"),
            events: names("/features/events"),
        };
        let scopes = json::at(&payload, "/auth/scopes")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Hello {
            protocol: json::u32_at(&payload, "/protocol"),
            server: ServerFacts {
                version: json::string(&payload, "/server/version"),
                build_id: json::string(&payload, "/server/buildId"),
                boot_id: json::string(&payload, "/server/bootId"),
                conn_id: json::string(&payload, "/server/connId"),
            },
            features,
            role: json::string(&payload, "/auth/role"),
            scopes,
            tick_interval_ms: json::u64_at(&payload, "/policy/tickIntervalMs"),
            snapshot: payload.get("snapshot").cloned().unwrap_or(Value::Null),
        })
    }

    pub fn product(&self) -> Product {
        Product::detect(&self.features, &self.snapshot)
    }

    pub fn update_api(&self) -> UpdateApi {
        self.features.update_api()
    }
}

impl From<HelloOk> for Hello {
    /// moltd's typed `hello-ok`, as a client reads it off the wire.
    fn from(hello: HelloOk) -> Hello {
        let value = serde_json::to_value(hello).expect("hello-ok serializes");
        Hello::from_payload(value).expect("moltd's hello-ok reads")
    }
}

impl Capabilities {
    /// Whether the gateway serves `method` (yes when it did not say).
    pub fn serves(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// Whether the gateway sends `event` (yes when it did not say).
    pub fn sends(&self, event: &str) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(event))
    }

    pub fn update_api(&self) -> UpdateApi {
        let Some(methods) = &self.methods else {
            return UpdateApi::Molt;
        };
        if !methods.contains("update.run") {
            UpdateApi::None
        } else if methods.contains("update.runs.get") {
            UpdateApi::Runs
        } else if methods.contains("update.history") || methods.contains("update.check") {
            UpdateApi::Molt
        } else {
            UpdateApi::Sentinel
        }
    }
}

impl Product {
    fn detect(features: &Capabilities, snapshot: &Value) -> Product {
        let serves = |m: &str| features.methods.as_ref().is_some_and(|s| s.contains(m));
        if features.methods.is_none() || serves("update.noAutoUpdate.set") {
            Product::Moltd
        } else if serves("channels.status")
            || serves("update.runs.get")
            || snapshot.get("sessionDefaults").is_some()
        {
            Product::OpenClaw
        } else {
            Product::Unknown
        }
    }

    /// How the header names it.
    pub fn name(self) -> &'static str {
        match self {
            Product::Moltd => "moltd",
            Product::OpenClaw => "openclaw",
            Product::Unknown => "gateway",
        }
    }
}
