//! The gateway to talk to, found the way `moltd` finds its files: the
//! rules (state dir, config path, file names, the config's port, the lock
//! record) are molt-protocol's; this module only reads the files they name.
//!
//! Resolution is re-run on every reconnect attempt: a daemon restarted with
//! `--port 0` comes back on a new port, and only its lock file knows which.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use molt_protocol::lock::{LockContent, LockRecord};
use molt_protocol::state::{self, DEFAULT_PORT};
use serde_json::Value;

/// What the operator passed on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--url`: skips host/port discovery.
    pub url: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// The environment discovery reads, passed in so tests need not mutate the
/// process environment. Empty values count as unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// `$OPENCLAW_STATE_DIR`.
    pub state_dir: Option<OsString>,
    /// `$OPENCLAW_CONFIG_PATH`.
    pub config_path: Option<OsString>,
    /// `$OPENCLAW_GATEWAY_TOKEN`.
    pub gateway_token: Option<String>,
    /// The home directory (`~/.openclaw` is the default state dir).
    pub home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        fn var_os(name: &str) -> Option<OsString> {
            std::env::var_os(name).filter(|v| !v.is_empty())
        }
        Self {
            state_dir: var_os(state::STATE_DIR_ENV),
            config_path: var_os(state::CONFIG_PATH_ENV),
            gateway_token: var_os(state::GATEWAY_TOKEN_ENV).and_then(|v| v.into_string().ok()),
            home: directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()),
        }
    }
}

/// Where the URL came from; shown in the console so an operator knows
/// which daemon they are looking at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlSource {
    /// `--url`.
    Flag,
    /// The running daemon's `gateway.lock`.
    LockFile { pid: u32 },
    /// `gateway.port` in the config.
    Config,
    /// Nothing configured: the default port.
    Default,
}

/// Where the token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    Env,
    Config,
    None,
}

/// The gateway to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub url_source: UrlSource,
    pub token: Option<String>,
    pub token_source: TokenSource,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    /// Problems that did not stop discovery (a stale or unreadable lock file).
    pub warnings: Vec<String>,
}

// The token must never end up in a log line by accident.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("url_source", &self.url_source)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_source", &self.token_source)
            .field("state_dir", &self.state_dir)
            .field("config_path", &self.config_path)
            .field("warnings", &self.warnings)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(transparent)]
    NoStateDir(#[from] state::NoHome),
    #[error("cannot read config {path}: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("config {path} is not valid JSON5: {problem}")]
    ParseConfig { path: PathBuf, problem: String },
    #[error("config {path}: {key} {problem}")]
    BadConfigValue {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    #[error("invalid --url {url:?}: {problem}")]
    BadUrl { url: String, problem: String },
}

/// The state dir by moltd's rule ([`state::state_dir`]): `--state-dir`,
/// else `$OPENCLAW_STATE_DIR`, else `~/.openclaw`, `~` expanded.
pub fn state_dir(overrides: &Overrides, env: &Env) -> Result<PathBuf, DiscoverError> {
    Ok(state::state_dir(
        overrides.state_dir.as_deref(),
        env.state_dir.as_deref(),
        env.home.as_deref(),
    )?)
}

/// The config path by moltd's rule ([`state::config_path`]).
pub fn config_path(state_dir: &Path, env: &Env) -> Result<PathBuf, DiscoverError> {
    Ok(state::config_path(
        state_dir,
        env.config_path.as_deref(),
        env.home.as_deref(),
    )?)
}

/// Resolves URL and token from flags, env, the lock file and the config.
pub fn discover(overrides: &Overrides, env: &Env) -> Result<Target, DiscoverError> {
    let state_dir = state_dir(overrides, env)?;
    let config_path = config_path(&state_dir, env)?;
    let config = GatewayConfig::load(&config_path)?;
    let mut warnings = Vec::new();

    let (url, url_source) = match &overrides.url {
        Some(url) => (normalize_url(url)?, UrlSource::Flag),
        None => {
            let host = config.connect_host();
            let lock_path = state_dir.join(state::LOCK_FILE);
            match read_lock(&lock_path) {
                Ok(Some((lock, port))) if process_alive(lock.pid) => {
                    (ws_url(&host, port), UrlSource::LockFile { pid: lock.pid })
                }
                Ok(found) => {
                    if let Some((lock, _)) = found {
                        warnings.push(format!(
                            "{}: stale (pid {} is not running)",
                            lock_path.display(),
                            lock.pid
                        ));
                    }
                    match config.port {
                        Some(port) => (ws_url(&host, port), UrlSource::Config),
                        None => (ws_url(&host, DEFAULT_PORT), UrlSource::Default),
                    }
                }
                Err(problem) => {
                    warnings.push(format!("{}: {problem}", lock_path.display()));
                    let port = config.port.unwrap_or(DEFAULT_PORT);
                    let source = match config.port {
                        Some(_) => UrlSource::Config,
                        None => UrlSource::Default,
                    };
                    (ws_url(&host, port), source)
                }
            }
        }
    };

    let (token, token_source) = if let Some(token) = non_empty(overrides.token.as_deref()) {
        (Some(token), TokenSource::Flag)
    } else if let Some(token) = non_empty(env.gateway_token.as_deref()) {
        (Some(token), TokenSource::Env)
    } else if let Some(token) = non_empty(config.token.as_deref()) {
        (Some(token), TokenSource::Config)
    } else {
        (None, TokenSource::None)
    };

    Ok(Target {
        url,
        url_source,
        token,
        token_source,
        state_dir,
        config_path,
        warnings,
    })
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

/// The `gateway.*` keys the console needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct GatewayConfig {
    port: Option<u16>,
    bind: Option<String>,
    custom_bind_host: Option<String>,
    token: Option<String>,
}

impl GatewayConfig {
    /// A missing config file is not an error: the daemon runs on defaults.
    fn load(path: &Path) -> Result<Self, DiscoverError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(DiscoverError::ReadConfig {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let root: Value = json5::from_str(&text).map_err(|e| DiscoverError::ParseConfig {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        Self::from_value(&root).map_err(|(key, problem)| DiscoverError::BadConfigValue {
            path: path.to_owned(),
            key,
            problem,
        })
    }

    fn from_value(root: &Value) -> Result<Self, (&'static str, String)> {
        let gateway = root.get("gateway");
        let get = |key: &str| gateway.and_then(|g| g.get(key)).filter(|v| !v.is_null());
        // moltd's own rule; 0 ("any free port") names no port to dial.
        let port = match get("port") {
            None => None,
            Some(v) => Some(state::parse_port(v).map_err(|e| ("gateway.port", e.to_string()))?)
                .filter(|p| *p != 0),
        };
        let string = |key: &'static str, v: Option<&Value>| match v {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err((key, format!("must be a string, got {other}"))),
        };
        let auth_token = gateway
            .and_then(|g| g.get("auth"))
            .and_then(|a| a.get("token"))
            .filter(|v| !v.is_null());
        Ok(Self {
            port,
            bind: string("gateway.bind", get("bind"))?,
            custom_bind_host: string("gateway.customBindHost", get("customBindHost"))?,
            token: string("gateway.auth.token", auth_token)?,
        })
    }

    /// The host to dial. The daemon binds loopback or all interfaces except
    /// with `bind: custom`; a wildcard address is dialed on loopback.
    fn connect_host(&self) -> String {
        match (self.bind.as_deref(), self.custom_bind_host.as_deref()) {
            (Some("custom"), Some(host)) if !host.is_empty() => match host {
                "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
                host => host.to_owned(),
            },
            _ => "127.0.0.1".to_owned(),
        }
    }
}

/// The lock record and its bound port; `Ok(None)` when there is no lock
/// file (no daemon ran here yet), it is still empty, or the daemon holds
/// it but has not bound yet.
fn read_lock(path: &Path) -> Result<Option<(LockRecord, u16)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    match LockRecord::parse(&bytes)? {
        LockContent::Empty => Ok(None),
        LockContent::Record(lock) => Ok(lock.bound_port().map(|port| (lock, port))),
    }
}

/// Whether `pid` names a live process. Probing the flock instead would race
/// a starting daemon's own try-lock, so this looks at `/proc`; without a
/// procfs the lock is trusted.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

fn ws_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("ws://[{host}]:{port}")
    } else {
        format!("ws://{host}:{port}")
    }
}

/// Accepts `ws://host:port[/path]` or a bare `host:port`.
pub fn normalize_url(url: &str) -> Result<String, DiscoverError> {
    let bad = |problem: &str| DiscoverError::BadUrl {
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let url = url.trim();
    let rest = if let Some(rest) = url.strip_prefix("ws://") {
        rest
    } else if url.starts_with("wss://") {
        return Err(bad(
            "wss:// is not supported; reach a remote gateway through an SSH tunnel",
        ));
    } else if url.contains("://") {
        return Err(bad("the scheme must be ws://"));
    } else {
        url
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("missing host"));
    }
    Ok(format!("ws://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env_with_state(dir: &Path) -> Env {
        Env {
            state_dir: Some(dir.as_os_str().to_owned()),
            ..Env::default()
        }
    }

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    fn lock_json(pid: u32, port: u16) -> String {
        format!(r#"{{"pid":{pid},"startedAt":1700000000000,"port":{port},"version":"1.2.0"}}"#)
    }

    #[test]
    fn defaults_without_any_files() {
        let tmp = tempfile::tempdir().unwrap();
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:18789");
        assert_eq!(target.url_source, UrlSource::Default);
        assert_eq!(target.token, None);
        assert_eq!(target.token_source, TokenSource::None);
        assert_eq!(target.config_path, tmp.path().join("openclaw.json"));
        assert!(target.warnings.is_empty());
    }

    #[test]
    fn state_dir_precedence_flag_env_home() {
        let home = PathBuf::from("/home/op");
        let env = Env {
            home: Some(home.clone()),
            ..Env::default()
        };
        assert_eq!(
            state_dir(&Overrides::default(), &env).unwrap(),
            home.join(".openclaw")
        );
        let env = Env {
            state_dir: Some("/var/lib/molt".into()),
            ..env
        };
        assert_eq!(
            state_dir(&Overrides::default(), &env).unwrap(),
            PathBuf::from("/var/lib/molt")
        );
        let flags = Overrides {
            state_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        };
        assert_eq!(state_dir(&flags, &env).unwrap(), PathBuf::from("/tmp/x"));
        assert!(matches!(
            state_dir(&Overrides::default(), &Env::default()),
            Err(DiscoverError::NoStateDir(_))
        ));
    }

    #[test]
    fn json5_config_gives_port_host_and_token() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("openclaw.json"),
            "// operator edited\n{ gateway: { port: 19000, bind: 'custom', customBindHost: '10.0.0.5',\n auth: { mode: 'token', token: 'from-config' }, }, }",
        );
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://10.0.0.5:19000");
        assert_eq!(target.url_source, UrlSource::Config);
        assert_eq!(target.token.as_deref(), Some("from-config"));
        assert_eq!(target.token_source, TokenSource::Config);
    }

    #[test]
    fn wildcard_and_ipv6_custom_hosts() {
        let cfg = |host: &str| GatewayConfig {
            bind: Some("custom".into()),
            custom_bind_host: Some(host.into()),
            ..GatewayConfig::default()
        };
        assert_eq!(cfg("0.0.0.0").connect_host(), "127.0.0.1");
        assert_eq!(ws_url(&cfg("::1").connect_host(), 1), "ws://[::1]:1");
        let lan = GatewayConfig {
            bind: Some("lan".into()),
            ..GatewayConfig::default()
        };
        assert_eq!(lan.connect_host(), "127.0.0.1");
    }

    #[test]
    fn config_path_env_overrides_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("elsewhere.json");
        write(&other, r#"{"gateway":{"port":20000}}"#);
        let env = Env {
            config_path: Some(other.as_os_str().to_owned()),
            ..env_with_state(tmp.path())
        };
        let target = discover(&Overrides::default(), &env).unwrap();
        assert_eq!(target.config_path, other);
        assert_eq!(target.url, "ws://127.0.0.1:20000");
    }

    #[test]
    fn live_lock_file_wins_over_config() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("openclaw.json"),
            r#"{"gateway":{"port":20000}}"#,
        );
        let me = std::process::id();
        write(&tmp.path().join("gateway.lock"), &lock_json(me, 41234));
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:41234");
        assert_eq!(target.url_source, UrlSource::LockFile { pid: me });
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn stale_lock_file_falls_back_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        // Above the kernel's pid_max limit (2^22), so never a live pid.
        let dead = 4_194_305;
        write(&tmp.path().join("gateway.lock"), &lock_json(dead, 41234));
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:18789");
        assert_eq!(target.url_source, UrlSource::Default);
        assert!(
            target.warnings[0].contains("stale"),
            "{:?}",
            target.warnings
        );
    }

    #[test]
    fn malformed_lock_file_is_a_warning_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("gateway.lock"), "{pid: oops");
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url_source, UrlSource::Default);
        assert!(target.warnings[0].contains("gateway.lock"));
        assert!(target.warnings[0].contains("not a valid lock record"));
    }

    #[test]
    fn empty_lock_file_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("gateway.lock"), "");
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert!(target.warnings.is_empty());
    }

    #[test]
    fn token_precedence_flag_env_config() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("openclaw.json"),
            r#"{"gateway":{"auth":{"token":"cfg"}}}"#,
        );
        let mut env = env_with_state(tmp.path());
        env.gateway_token = Some("env".into());
        let mut flags = Overrides {
            token: Some("flag".into()),
            ..Overrides::default()
        };
        assert_eq!(
            discover(&flags, &env).unwrap().token.as_deref(),
            Some("flag")
        );
        flags.token = None;
        let target = discover(&flags, &env).unwrap();
        assert_eq!(
            (target.token.as_deref(), target.token_source),
            (Some("env"), TokenSource::Env)
        );
        env.gateway_token = Some(String::new());
        assert_eq!(
            discover(&flags, &env).unwrap().token.as_deref(),
            Some("cfg")
        );
    }

    #[test]
    fn url_flag_skips_discovery_but_keeps_the_token_chain() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("openclaw.json"),
            r#"{"gateway":{"port":20000,"auth":{"token":"cfg"}}}"#,
        );
        let flags = Overrides {
            url: Some("ws://10.1.2.3:9999".into()),
            ..Overrides::default()
        };
        let target = discover(&flags, &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://10.1.2.3:9999");
        assert_eq!(target.url_source, UrlSource::Flag);
        assert_eq!(target.token.as_deref(), Some("cfg"));
    }

    #[test]
    fn urls_are_normalized_or_rejected() {
        assert_eq!(
            normalize_url("127.0.0.1:1234").unwrap(),
            "ws://127.0.0.1:1234"
        );
        assert_eq!(normalize_url("ws://h:1/x").unwrap(), "ws://h:1/x");
        for bad in ["wss://h:1", "http://h:1", "ws://", ""] {
            let err = normalize_url(bad).unwrap_err().to_string();
            assert!(err.contains("invalid --url"), "{bad}: {err}");
        }
    }

    #[test]
    fn broken_config_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("openclaw.json");
        write(&path, "{ gateway: { port: 18789, ");
        let err = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap_err();
        assert!(matches!(err, DiscoverError::ParseConfig { .. }));
        assert!(err.to_string().contains(&path.display().to_string()));

        write(&path, r#"{"gateway":{"port":"eighty"}}"#);
        let err = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("gateway.port"), "{err}");

        write(&path, r#"{"gateway":{"auth":{"token":42}}}"#);
        let err = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("gateway.auth.token"), "{err}");
    }

    #[test]
    fn a_port_moltd_accepts_is_a_port_molt_dials() {
        let tmp = tempfile::tempdir().unwrap();
        // JSON5 written by JavaScript tools: moltd reads 18790.0 as 18790.
        write(
            &tmp.path().join("openclaw.json"),
            "{ gateway: { port: 18790.0 } }",
        );
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:18790");
        assert_eq!(target.url_source, UrlSource::Config);
        // 0 ("any free port") names no port to dial: the default, as moltd's
        // lock file is the only one who knows.
        write(
            &tmp.path().join("openclaw.json"),
            r#"{"gateway":{"port":0}}"#,
        );
        let target = discover(&Overrides::default(), &env_with_state(tmp.path())).unwrap();
        assert_eq!(target.url_source, UrlSource::Default);
    }

    #[test]
    fn a_tilde_in_the_state_dir_is_the_home_directory() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("gw")).unwrap();
        write(
            &home.path().join("gw/openclaw.json"),
            r#"{"gateway":{"port":20001,"auth":{"token":"t"}}}"#,
        );
        let env = Env {
            home: Some(home.path().to_path_buf()),
            ..Env::default()
        };
        let flags = Overrides {
            state_dir: Some("~/gw".into()),
            ..Overrides::default()
        };
        let target = discover(&flags, &env).unwrap();
        assert_eq!(target.state_dir, home.path().join("gw"));
        assert_eq!(target.url, "ws://127.0.0.1:20001");
        assert_eq!(target.token.as_deref(), Some("t"));
        let from_env = Env {
            state_dir: Some("~/gw".into()),
            ..env
        };
        assert_eq!(
            discover(&Overrides::default(), &from_env)
                .unwrap()
                .state_dir,
            home.path().join("gw")
        );
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let tmp = tempfile::tempdir().unwrap();
        let flags = Overrides {
            token: Some("s3cret".into()),
            ..Overrides::default()
        };
        let target = discover(&flags, &env_with_state(tmp.path())).unwrap();
        assert!(!format!("{target:?}").contains("s3cret"));
    }
}
