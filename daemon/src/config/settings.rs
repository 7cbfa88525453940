//! The typed, validated view of the config keys the daemon uses (the table
//! in docs/operations.md).

pub use molt_protocol::update::Channel;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::Value;

use super::{ConfigError, InvalidValue};
use crate::logging::{LogFormat, LogOptions};

pub const DEFAULT_PORT: u16 = 18789;
pub const DEFAULT_DEFERRAL_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_COOLDOWN_MS: u64 = 30_000;
pub const DEFAULT_SUCCESSOR_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub gateway: GatewaySettings,
    /// `commands.restart`: whether the daemon may restart itself.
    pub restart_enabled: bool,
    pub update: UpdateSettings,
    /// `logging.format` and `logging.maxFileBytes`, applied at start.
    pub logging: LogOptions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    pub port: u16,
    pub bind: Bind,
    pub auth_mode: AuthMode,
    /// `gateway.auth.token`; never empty.
    pub auth_token: Option<String>,
    /// `gateway.auth.readToken`: a credential that grants `operator.read`
    /// only; never empty.
    pub read_token: Option<String>,
    /// `gateway.auth.rateLimit`: how failed authentications slow a peer.
    pub rate_limit: RateLimit,
    /// `gateway.controlUi.allowedOrigins`, normalized
    /// (`scheme://host[:port]`, lowercase).
    pub allowed_origins: Vec<String>,
    /// `gateway.reload.deferralTimeoutMs`; 0 = wait forever.
    pub deferral_timeout_ms: u64,
    /// `gateway.reload.cooldownMs`: quiet time after a restart (30 s).
    pub cooldown_ms: u64,
    /// `gateway.reload.successorTimeoutMs`: how long a successor may go
    /// without reporting start-up progress before it is given up (30 s).
    pub successor_timeout_ms: u64,
    pub tls: TlsSettings,
}

/// `gateway.tls`: TLS on the TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub enabled: bool,
    /// Generate a self-signed pair when neither file exists (default on).
    pub auto_generate: bool,
    /// `certPath`, `keyPath` as written (`~` not yet expanded); `None`:
    /// the state dir's `gateway/tls/` files.
    pub cert_path: Option<String>,
    pub key_path: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            auto_generate: true,
            cert_path: None,
            key_path: None,
        }
    }
}

/// `gateway.auth.rateLimit` (OpenClaw's keys): `maxAttempts` failures
/// are free; each one after that locks the peer out for a delay that
/// doubles up to `lockoutMs`. A peer without a failure for `windowMs`
/// after its lockout is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_attempts: u32,
    pub window: Duration,
    pub lockout: Duration,
    /// Whether loopback peers are left alone.
    pub exempt_loopback: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            exempt_loopback: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    Loopback,
    Lan,
    /// `custom` with `gateway.customBindHost`.
    Custom(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Token,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpdateSettings {
    pub channel: Channel,
    pub check_on_start: bool,
    pub auto: AutoUpdateSettings,
    /// `update.package`, a validated npm package name.
    pub package: Option<String>,
    /// `update.git.buildCommand`, an argv vector (never a shell string).
    pub git_build_command: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoUpdateSettings {
    pub enabled: bool,
    pub stable_delay: Duration,
    pub stable_jitter: Duration,
    pub beta_check_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            gateway: GatewaySettings {
                port: DEFAULT_PORT,
                bind: Bind::Loopback,
                auth_mode: AuthMode::Token,
                auth_token: None,
                read_token: None,
                rate_limit: RateLimit::default(),
                allowed_origins: Vec::new(),
                deferral_timeout_ms: DEFAULT_DEFERRAL_TIMEOUT_MS,
                cooldown_ms: DEFAULT_COOLDOWN_MS,
                successor_timeout_ms: DEFAULT_SUCCESSOR_TIMEOUT_MS,
                tls: TlsSettings::default(),
            },
            restart_enabled: true,
            update: UpdateSettings {
                channel: Channel::Stable,
                check_on_start: true,
                auto: AutoUpdateSettings {
                    enabled: false,
                    stable_delay: hours(6.0),
                    stable_jitter: hours(12.0),
                    beta_check_interval: hours(1.0),
                },
                package: None,
                git_build_command: None,
            },
            logging: LogOptions::default(),
        }
    }
}

fn hours(h: f64) -> Duration {
    Duration::from_secs_f64(h * 3600.0)
}

impl Bind {
    /// The address to listen on: loopback → 127.0.0.1, lan → 0.0.0.0.
    pub fn addr(self) -> IpAddr {
        match self {
            Bind::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Bind::Lan => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Bind::Custom(ip) => ip,
        }
    }

    pub fn is_loopback(self) -> bool {
        self.addr().is_loopback()
    }
}

impl Settings {
    /// Reads and validates the known keys of a config value; unknown keys
    /// are ignored, `null` counts as absent.
    pub fn from_value(root: &Value) -> Result<Settings, ConfigError> {
        Self::read(&Reader::new(root))
            .and_then(|s| s.check_exposure().map(|()| s))
            .map_err(ConfigError::Invalid)
    }

    /// Every key moltd reads (the config table in docs/operations.md is
    /// checked against it): the keys a read of the config asks for.
    pub fn keys() -> std::collections::BTreeSet<String> {
        let custom = serde_json::json!({"gateway": {"bind": "custom", "customBindHost": "::1"}});
        [Value::Object(Default::default()), custom]
            .iter()
            .flat_map(|root| {
                let reader = Reader::new(root);
                let _ = Self::read(&reader);
                reader.asked.into_inner()
            })
            .collect()
    }

    /// The daemon's bind address.
    pub fn bind_addr(&self) -> IpAddr {
        self.gateway.bind.addr()
    }

    /// Refuses a non-loopback bind without auth. `from_value` checks this;
    /// call it again after command-line flags change the bind or auth.
    pub fn check_exposure(&self) -> Result<(), InvalidValue> {
        let g = &self.gateway;
        if g.auth_mode == AuthMode::None && !g.bind.is_loopback() {
            return Err(InvalidValue::new(
                "gateway.auth.mode",
                format!(
                    "\"token\" when binding {} (a non-loopback bind without auth is refused)",
                    g.bind.addr()
                ),
                "\"none\"",
            ));
        }
        Ok(())
    }

    fn read(r: &Reader) -> Result<Settings, InvalidValue> {
        let d = Settings::default();
        if !r.root.is_object() {
            return Err(InvalidValue::new("config", "an object", describe(r.root)));
        }
        let bind = match r.choice("gateway.bind", &["loopback", "lan", "custom"])? {
            None | Some("loopback") => Bind::Loopback,
            Some("lan") => Bind::Lan,
            _ => Bind::Custom(r.custom_bind_host()?),
        };
        let channel = match r.choice("update.channel", &["stable", "beta", "dev"])? {
            None | Some("stable") => Channel::Stable,
            Some("beta") => Channel::Beta,
            _ => Channel::Dev,
        };
        let auth_mode = match r.choice("gateway.auth.mode", &["token", "none"])? {
            None | Some("token") => AuthMode::Token,
            _ => AuthMode::None,
        };
        let port = r.port("gateway.port")?;
        let log_format = match r.choice("logging.format", &["text", "json"])? {
            Some(name) => LogFormat::parse(name).unwrap_or_default(),
            None => d.logging.format,
        };
        let max_file_bytes = match r.uint(
            "logging.maxFileBytes",
            1 << 40,
            "an integer 1048576..=1099511627776 (bytes)",
        )? {
            Some(n) if n < 1 << 20 => {
                return Err(InvalidValue::new(
                    "logging.maxFileBytes",
                    "an integer 1048576..=1099511627776 (bytes)",
                    n.to_string(),
                ));
            }
            Some(n) => n,
            None => d.logging.max_file_bytes,
        };
        let auto = &d.update.auto;
        Ok(Settings {
            gateway: GatewaySettings {
                port: port.unwrap_or(d.gateway.port),
                bind,
                auth_mode,
                auth_token: r.token("gateway.auth.token")?,
                read_token: r.token("gateway.auth.readToken")?,
                rate_limit: r.rate_limit()?,
                allowed_origins: r.origins("gateway.controlUi.allowedOrigins")?,
                deferral_timeout_ms: r
                    .uint(
                        "gateway.reload.deferralTimeoutMs",
                        u64::MAX,
                        "a non-negative integer (milliseconds; 0 = wait forever)",
                    )?
                    .unwrap_or(d.gateway.deferral_timeout_ms),
                cooldown_ms: r
                    .uint(
                        "gateway.reload.cooldownMs",
                        3_600_000,
                        "an integer 0..=3600000 (milliseconds)",
                    )?
                    .unwrap_or(d.gateway.cooldown_ms),
                successor_timeout_ms: match r.uint(
                    "gateway.reload.successorTimeoutMs",
                    3_600_000,
                    "an integer 1..=3600000 (milliseconds)",
                )? {
                    Some(0) => {
                        return Err(InvalidValue::new(
                            "gateway.reload.successorTimeoutMs",
                            "an integer 1..=3600000 (milliseconds)",
                            "0",
                        ));
                    }
                    Some(ms) => ms,
                    None => d.gateway.successor_timeout_ms,
                },
                tls: r.tls()?,
            },
            restart_enabled: r.bool("commands.restart")?.unwrap_or(d.restart_enabled),
            update: UpdateSettings {
                channel,
                check_on_start: r
                    .bool("update.checkOnStart")?
                    .unwrap_or(d.update.check_on_start),
                auto: AutoUpdateSettings {
                    enabled: r.bool("update.auto.enabled")?.unwrap_or(auto.enabled),
                    stable_delay: r
                        .hours("update.auto.stableDelayHours", false)?
                        .unwrap_or(auto.stable_delay),
                    stable_jitter: r
                        .hours("update.auto.stableJitterHours", false)?
                        .unwrap_or(auto.stable_jitter),
                    // 0 would poll the registry in a tight loop.
                    beta_check_interval: r
                        .hours("update.auto.betaCheckIntervalHours", true)?
                        .unwrap_or(auto.beta_check_interval),
                },
                package: r.package()?,
                git_build_command: r.build_command()?,
            },
            logging: LogOptions {
                format: log_format,
                max_file_bytes,
            },
        })
    }
}

/// Whether `name` is a valid name for a new npm package (lowercase,
/// URL-safe, optionally `@scope/`), and cannot be mistaken for a flag.
pub fn is_valid_npm_package_name(name: &str) -> bool {
    let part_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['.', '_', '-'])
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, pkg)| part_ok(scope) && part_ok(pkg)),
        None => part_ok(name),
    }
}

/// The value as JSON, shortened for an error message.
pub(super) fn describe(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The most browser origins `gateway.controlUi.allowedOrigins` may list.
pub const MAX_ALLOWED_ORIGINS: usize = 64;

/// An origin as browsers send it, lowercased: `http(s)://host[:port]`,
/// nothing after it. `None` for anything else (`*`, `null`, a path).
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let (scheme, rest) = text.split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let host_ok = !rest.is_empty()
        && rest.len() <= 255
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    (matches!(scheme, "http" | "https") && host_ok).then(|| format!("{scheme}://{rest}"))
}

struct Reader<'a> {
    root: &'a Value,
    /// The keys asked for, for [`Settings::keys`].
    asked: std::cell::RefCell<Vec<String>>,
}

impl<'a> Reader<'a> {
    fn new(root: &'a Value) -> Self {
        Self {
            root,
            asked: Default::default(),
        }
    }

    /// The value at a dotted key; `None` if it or a parent is absent or null.
    fn get(&self, key: &str) -> Result<Option<&'a Value>, InvalidValue> {
        self.asked.borrow_mut().push(key.to_owned());
        let mut cur = self.root;
        let mut seen = 0;
        for segment in key.split('.') {
            let Value::Object(map) = cur else {
                let parent = &key[..seen.max(1) - 1];
                return Err(InvalidValue::new(parent, "an object", describe(cur)));
            };
            match map.get(segment) {
                None | Some(Value::Null) => return Ok(None),
                Some(v) => cur = v,
            }
            seen += segment.len() + 1;
        }
        Ok(Some(cur))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, InvalidValue> {
        self.get(key)?
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| InvalidValue::new(key, "true or false", describe(v)))
            })
            .transpose()
    }

    /// A port by the rule `molt` reads the config with
    /// ([`molt_protocol::state::parse_port`]).
    fn port(&self, key: &str) -> Result<Option<u16>, InvalidValue> {
        self.get(key)?
            .map(|v| {
                molt_protocol::state::parse_port(v)
                    .map_err(|_| InvalidValue::new(key, "an integer 0..=65535", describe(v)))
            })
            .transpose()
    }

    /// An integer up to `max`. Integral floats (`18789.0`) are accepted:
    /// JSON5 written by JavaScript tools makes no distinction.
    fn uint(&self, key: &str, max: u64, expected: &str) -> Result<Option<u64>, InvalidValue> {
        let Some(v) = self.get(key)? else {
            return Ok(None);
        };
        let n = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
                .map(|f| f as u64)
        });
        match n {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(InvalidValue::new(key, expected, describe(v))),
        }
    }

    /// Fractional hours allowed; `positive` also rejects 0.
    fn hours(&self, key: &str, positive: bool) -> Result<Option<Duration>, InvalidValue> {
        let Some(v) = self.get(key)? else {
            return Ok(None);
        };
        let expected = if positive {
            "a positive number of hours"
        } else {
            "a non-negative number of hours"
        };
        v.as_f64()
            .filter(|h| *h > 0.0 || (*h == 0.0 && !positive))
            .and_then(|h| Duration::try_from_secs_f64(h * 3600.0).ok())
            .map(Some)
            .ok_or_else(|| InvalidValue::new(key, expected, describe(v)))
    }

    fn string(&self, key: &str, expected: &str) -> Result<Option<&'a str>, InvalidValue> {
        self.get(key)?
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| InvalidValue::new(key, expected, describe(v)))
            })
            .transpose()
    }

    fn choice(&self, key: &str, options: &[&str]) -> Result<Option<&'a str>, InvalidValue> {
        let expected = || {
            let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
            format!("one of {}", quoted.join(", "))
        };
        let Some(s) = self.string(key, &expected())? else {
            return Ok(None);
        };
        if options.contains(&s) {
            Ok(Some(s))
        } else {
            Err(InvalidValue::new(key, expected(), describe(&s.into())))
        }
    }

    fn custom_bind_host(&self) -> Result<IpAddr, InvalidValue> {
        const KEY: &str = "gateway.customBindHost";
        const EXPECTED: &str = "an IP address (required when gateway.bind is \"custom\")";
        let host = self.string(KEY, EXPECTED)?;
        let host = host.ok_or_else(|| InvalidValue::new(KEY, EXPECTED, "nothing"))?;
        host.trim()
            .parse()
            .map_err(|_| InvalidValue::new(KEY, EXPECTED, describe(&host.into())))
    }

    /// A credential: a non-empty string, never echoed in an error.
    fn token(&self, key: &str) -> Result<Option<String>, InvalidValue> {
        const EXPECTED: &str = "a non-empty string";
        let Some(v) = self.get(key)? else {
            return Ok(None);
        };
        match v.as_str() {
            Some(t) if !t.trim().is_empty() => Ok(Some(t.to_owned())),
            Some(_) => Err(InvalidValue::new(
                key,
                "a non-empty string (remove the key to have one generated)",
                "a blank string",
            )),
            None => Err(InvalidValue::new(key, EXPECTED, super::kind(v))),
        }
    }

    fn tls(&self) -> Result<TlsSettings, InvalidValue> {
        let d = TlsSettings::default();
        let path = |key: &str| -> Result<Option<String>, InvalidValue> {
            const EXPECTED: &str = "a file path";
            match self.string(key, EXPECTED)? {
                Some(p) if p.trim().is_empty() || p.contains('\0') => {
                    Err(InvalidValue::new(key, EXPECTED, describe(&p.into())))
                }
                p => Ok(p.map(str::to_owned)),
            }
        };
        Ok(TlsSettings {
            enabled: self.bool("gateway.tls.enabled")?.unwrap_or(d.enabled),
            auto_generate: self
                .bool("gateway.tls.autoGenerate")?
                .unwrap_or(d.auto_generate),
            cert_path: path("gateway.tls.certPath")?,
            key_path: path("gateway.tls.keyPath")?,
        })
    }

    fn rate_limit(&self) -> Result<RateLimit, InvalidValue> {
        const DAY_MS: u64 = 86_400_000;
        let d = RateLimit::default();
        let ms = |key: &str, min: u64, default: Duration| -> Result<Duration, InvalidValue> {
            let expected = format!("an integer {min}..={DAY_MS} (milliseconds)");
            match self.uint(key, DAY_MS, &expected)? {
                Some(n) if n < min => Err(InvalidValue::new(key, expected, n.to_string())),
                Some(n) => Ok(Duration::from_millis(n)),
                None => Ok(default),
            }
        };
        let max_attempts = self
            .uint(
                "gateway.auth.rateLimit.maxAttempts",
                1000,
                "an integer 0..=1000",
            )?
            .map_or(d.max_attempts, |n| n as u32);
        Ok(RateLimit {
            max_attempts,
            window: ms("gateway.auth.rateLimit.windowMs", 1000, d.window)?,
            lockout: ms("gateway.auth.rateLimit.lockoutMs", 1, d.lockout)?,
            exempt_loopback: self
                .bool("gateway.auth.rateLimit.exemptLoopback")?
                .unwrap_or(d.exempt_loopback),
        })
    }

    /// Browser origins, each `scheme://host[:port]` (http or https, no
    /// path); `*` is refused: every origin must be named.
    fn origins(&self, key: &str) -> Result<Vec<String>, InvalidValue> {
        const EXPECTED: &str = "an array of origins like \"https://control.example.com\" \
             (scheme, host and port only; \"*\" is not accepted, name each origin)";
        let Some(v) = self.get(key)? else {
            return Ok(Vec::new());
        };
        let list = v
            .as_array()
            .ok_or_else(|| InvalidValue::new(key, EXPECTED, describe(v)))?;
        if list.len() > MAX_ALLOWED_ORIGINS {
            return Err(InvalidValue::new(
                key,
                format!("at most {MAX_ALLOWED_ORIGINS} origins"),
                format!("{} origins", list.len()),
            ));
        }
        list.iter()
            .map(|o| {
                o.as_str()
                    .and_then(normalize_origin)
                    .ok_or_else(|| InvalidValue::new(key, EXPECTED, describe(o)))
            })
            .collect()
    }

    fn package(&self) -> Result<Option<String>, InvalidValue> {
        const KEY: &str = "update.package";
        const EXPECTED: &str = "an npm package name like \"moltd\" or \"@scope/moltd\"";
        match self.string(KEY, EXPECTED)? {
            Some(p) if !is_valid_npm_package_name(p) => {
                Err(InvalidValue::new(KEY, EXPECTED, describe(&p.into())))
            }
            p => Ok(p.map(str::to_owned)),
        }
    }

    fn build_command(&self) -> Result<Option<Vec<String>>, InvalidValue> {
        const KEY: &str = "update.git.buildCommand";
        const EXPECTED: &str = "an argv array of strings like [\"cargo\", \"build\", \"--release\"] \
             (it is run without a shell, so a plain command string is not accepted)";
        let Some(v) = self.get(KEY)? else {
            return Ok(None);
        };
        let bad = || InvalidValue::new(KEY, EXPECTED, describe(v));
        let argv = v.as_array().ok_or_else(bad)?;
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.as_str().filter(|s| !s.contains('\0')).map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        match argv.first() {
            Some(program) if !program.trim().is_empty() => Ok(Some(argv)),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests;
