//! The status facts the Overview, `molt status` and the update screens
//! show, from the `hello-ok` snapshot and the `status` answer of either
//! product, each field on its own.

use molt_protocol::status::{EnvSource, PendingWork, RestartInfo, SupervisorInfo};
use serde_json::Value;

use super::hello::Hello;
use super::json::{self, at};
use super::update::Claim;

/// What the gateway said about itself. `None`: it did not say (or not in a
/// shape this console reads); shown as unknown.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The version of the process that answers (moltd `version`, OpenClaw
    /// `runtimeVersion`, else `hello-ok.server.version`).
    pub version: Option<String>,
    /// OpenClaw `status.runtimeVersion`, on its own: the truth panel shows
    /// it beside `hello-ok.server.version`.
    pub runtime_version: Option<String>,
    /// moltd `build.profile` (`debug` / `release`).
    pub profile: Option<String>,
    pub build_protocol: Option<u32>,
    pub build_id: Option<String>,
    pub boot_id: Option<String>,
    pub pid: Option<u32>,
    /// Unix ms.
    pub started_at: Option<u64>,
    pub uptime_ms: Option<u64>,
    pub listen: Option<String>,
    pub state_dir: Option<String>,
    pub config_path: Option<String>,
    pub install: Option<Install>,
    pub supervisor: Option<SupervisorInfo>,
    pub restart: Option<RestartInfo>,
    pub pending_work: Option<PendingWork>,
    pub auto: Auto,
    pub update_available: Option<Available>,
    pub latest_run: Option<Claim>,
    pub connections: Option<u32>,
    /// moltd `auth.shortTokens`: where each credential too short to be
    /// safe comes from (never its value).
    pub short_tokens: Vec<String>,
}

/// How the gateway is installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    /// moltd: `npm`, `pnpm`, `bun`, `git`, `unmanaged`, `external`;
    /// OpenClaw: `package`, `git` or `unknown`.
    pub kind: String,
    pub root: Option<String>,
    /// moltd: `detected` or `config`.
    pub source: Option<String>,
}

impl Install {
    /// A package manager's global install: an update swaps the tree the
    /// running process loads code from.
    pub fn is_package(&self) -> bool {
        matches!(self.kind.as_str(), "npm" | "pnpm" | "bun" | "package")
    }
}

/// Automatic updates as the gateway applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auto {
    /// moltd `auto.enabled`; OpenClaw `updateSchedule.autoEnabled`, which
    /// is false while anything blocks automatic applies.
    pub enabled: Option<bool>,
    pub channel: Option<String>,
    pub kill_switch: KillSwitch,
    /// Unix ms.
    pub next_check_at: Option<u64>,
    pub next_apply_at: Option<u64>,
}

/// `OPENCLAW_NO_AUTO_UPDATE` as the gateway reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KillSwitch {
    /// The gateway does not report it (OpenClaw reads it but says nothing).
    #[default]
    NotReported,
    Off,
    On {
        source: Option<EnvSource>,
    },
}

/// A newer version on the gateway's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    pub current: Option<String>,
    pub latest: String,
    /// moltd: `stable`/`beta`/`dev`; OpenClaw: the dist-tag, e.g. `latest`.
    pub channel: Option<String>,
}

impl Facts {
    /// Reads the `hello-ok` and, when there is one, a `status` answer: a
    /// field `status` has wins over the snapshot's.
    pub fn read(hello: &Hello, status: Option<&Value>) -> Facts {
        let snapshot = &hello.snapshot;
        let pick = |pointer: &str| -> Option<&Value> {
            status
                .and_then(|s| at(s, pointer))
                .or_else(|| at(snapshot, pointer))
        };
        let string = |pointer: &str| {
            pick(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let number = |pointer: &str| pick(pointer).and_then(|v| json::u64_at(v, ""));
        let runtime_version = string("/runtimeVersion");
        Facts {
            version: string("/version")
                .or_else(|| runtime_version.clone())
                .or_else(|| hello.server.version.clone()),
            runtime_version,
            profile: string("/build/profile"),
            build_protocol: number("/build/protocol").and_then(|n| u32::try_from(n).ok()),
            build_id: hello.server.build_id.clone().or_else(|| string("/buildId")),
            boot_id: hello.server.boot_id.clone().or_else(|| string("/bootId")),
            pid: number("/pid").and_then(|n| u32::try_from(n).ok()),
            started_at: number("/startedAt"),
            uptime_ms: number("/uptimeMs"),
            listen: string("/listen"),
            state_dir: string("/stateDir"),
            config_path: string("/configPath"),
            install: install(&pick),
            supervisor: pick("/supervisor").and_then(|v| json::typed(v, "")),
            restart: pick("/restart").and_then(|v| json::typed(v, "")),
            pending_work: pick("/pendingWork").and_then(|v| json::typed(v, "")),
            auto: auto(&pick),
            update_available: pick("/updateAvailable").and_then(available),
            latest_run: pick("/latestRun").and_then(Claim::from_record),
            connections: number("/connections").and_then(|n| u32::try_from(n).ok()),
            short_tokens: pick("/auth/shortTokens")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn install<'a>(pick: &impl Fn(&str) -> Option<&'a Value>) -> Option<Install> {
    if let Some(kind) = pick("/install/surface").and_then(Value::as_str) {
        let text = |p: &str| pick(p).and_then(Value::as_str).map(str::to_owned);
        return Some(Install {
            kind: kind.to_owned(),
            root: text("/install/root"),
            source: text("/install/source"),
        });
    }
    let kind = pick("/updateSchedule/install/kind").and_then(Value::as_str)?;
    Some(Install {
        kind: kind.to_owned(),
        root: None,
        source: None,
    })
}

fn auto<'a>(pick: &impl Fn(&str) -> Option<&'a Value>) -> Auto {
    if let Some(auto) = pick("/auto").filter(|v| v.is_object()) {
        let kill_switch = match json::string(auto, "/blockedBy") {
            Some(_) => KillSwitch::On {
                source: json::typed(auto, "/source"),
            },
            None => KillSwitch::Off,
        };
        return Auto {
            enabled: json::bool_at(auto, "/enabled"),
            channel: json::string(auto, "/channel"),
            kill_switch,
            next_check_at: json::u64_at(auto, "/nextCheckAt"),
            next_apply_at: json::u64_at(auto, "/nextApplyAt"),
        };
    }
    match pick("/updateSchedule").filter(|v| v.is_object()) {
        Some(schedule) => Auto {
            enabled: json::bool_at(schedule, "/autoEnabled"),
            channel: json::string(schedule, "/channel"),
            kill_switch: KillSwitch::NotReported,
            next_check_at: None,
            next_apply_at: json::u64_at(schedule, "/campaign/applyAtMs"),
        },
        None => Auto::default(),
    }
}

pub(super) fn available(value: &Value) -> Option<Available> {
    Some(Available {
        current: json::string(value, "/currentVersion"),
        latest: json::string(value, "/latestVersion")?,
        channel: json::string(value, "/channel"),
    })
}
