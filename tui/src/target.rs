//! The gateway to talk to, found the way `moltd` finds its files: the
//! rules (state dir, config path, file names, the config's port, the lock
//! record) are molt-protocol's; this module only reads the files they name.
//!
//! Without `--url` the daemon's local socket (`<state>/gateway.sock`) comes
//! first: on the daemon's host, as its user or root, it needs no token.
//! The TCP URL is the fallback, `wss://` when the config turns TLS on,
//! pinned to the certificate in the state dir unless `--tls-fingerprint`
//! names one.
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
    /// `--tls-fingerprint`: the SHA-256 a `wss://` gateway's certificate
    /// must have.
    pub tls_fingerprint: Option<String>,
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

/// Where the TLS pin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// `--tls-fingerprint`.
    Flag,
    /// The certificate `gateway.tls` names, read from this host.
    Certificate(PathBuf),
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
    /// The daemon's local socket, when it exists and no `--url` was given:
    /// tried before `url`.
    pub local_socket: Option<PathBuf>,
    /// The fingerprint (64 lowercase hex digits) a `wss://` gateway must
    /// present, and where it came from.
    pub tls_pin: Option<(String, PinSource)>,
    pub token: Option<String>,
    pub token_source: TokenSource,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    /// Problems that did not stop discovery (a stale or unreadable lock file).
    pub warnings: Vec<String>,
}

impl Target {
    /// How to connect to it.
    pub fn connect_options(
        &self,
        mode: crate::client::ClientMode,
    ) -> crate::client::ConnectOptions {
        let mut options =
            crate::client::ConnectOptions::new(self.url.clone(), self.token.clone(), mode);
        options.local_socket = self.local_socket.clone();
        options.tls_pin = self.tls_pin.as_ref().map(|(pin, _)| pin.clone());
        options
    }
}

// The token must never end up in a log line by accident.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("url_source", &self.url_source)
            .field("local_socket", &self.local_socket)
            .field("tls_pin", &self.tls_pin)
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
    #[error(
        "invalid --tls-fingerprint {0:?}: expected a SHA-256 fingerprint (64 hex digits, \
         colons between pairs allowed, sha256: prefix allowed)"
    )]
    BadFingerprint(String),
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

    let scheme = if config.tls_enabled { "wss" } else { "ws" };
    let url_for = |host: &str, port| ws_url(scheme, host, port);
    let (url, url_source) = match &overrides.url {
        Some(url) => (normalize_url(url)?, UrlSource::Flag),
        None => {
            let host = config.connect_host();
            let lock_path = state_dir.join(state::LOCK_FILE);
            match read_lock(&lock_path) {
                Ok(Some((lock, port))) if process_alive(lock.pid) => {
                    (url_for(&host, port), UrlSource::LockFile { pid: lock.pid })
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
                        Some(port) => (url_for(&host, port), UrlSource::Config),
                        None => (url_for(&host, DEFAULT_PORT), UrlSource::Default),
                    }
                }
                Err(problem) => {
                    warnings.push(format!("{}: {problem}", lock_path.display()));
                    let port = config.port.unwrap_or(DEFAULT_PORT);
                    let source = match config.port {
                        Some(_) => UrlSource::Config,
                        None => UrlSource::Default,
                    };
                    (url_for(&host, port), source)
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

    // An explicit --url or --token says which way to go.
    let local_socket = Some(state_dir.join(state::LOCAL_SOCKET_FILE))
        .filter(|path| overrides.url.is_none() && overrides.token.is_none() && path.exists());
    let tls_pin = match overrides.tls_fingerprint.as_deref() {
        Some(text) => Some((
            state::normalize_tls_fingerprint(text)
                .ok_or_else(|| DiscoverError::BadFingerprint(text.to_owned()))?,
            PinSource::Flag,
        )),
        None if overrides.url.is_none() && config.tls_enabled => {
            let cert = config.cert_path(&state_dir, env.home.as_deref());
            match read_fingerprint(&cert) {
                Ok(pin) => Some((pin, PinSource::Certificate(cert))),
                Err(problem) => {
                    warnings.push(format!("{}: {problem}", cert.display()));
                    None
                }
            }
        }
        None if url.starts_with("wss://") && overrides.url.is_some() => {
            return Err(DiscoverError::BadUrl {
                url: url.clone(),
                problem: "wss:// needs the gateway's certificate fingerprint: pass \
                          --tls-fingerprint"
                    .to_owned(),
            });
        }
        None => None,
    };

    Ok(Target {
        url,
        url_source,
        local_socket,
        tls_pin,
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

/// The most a certificate file may hold (moltd's bound).
const MAX_CERT_BYTES: u64 = 64 * 1024;

/// The SHA-256 fingerprint of the first certificate in the PEM file at
/// `path`.
fn read_fingerprint(path: &Path) -> Result<String, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut pem = Vec::new();
    file.take(MAX_CERT_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read: {e}"))?;
    if pem.len() as u64 > MAX_CERT_BYTES {
        return Err(format!("larger than {MAX_CERT_BYTES} bytes"));
    }
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or("holds no certificate")?
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(crate::client::transport::fingerprint(&cert))
}

/// The `gateway.*` keys the console needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct GatewayConfig {
    port: Option<u16>,
    bind: Option<String>,
    custom_bind_host: Option<String>,
    token: Option<String>,
    /// `gateway.tls.enabled`.
    tls_enabled: bool,
    /// `gateway.tls.certPath` as written.
    tls_cert_path: Option<String>,
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
        let tls = |key: &str| {
            gateway
                .and_then(|g| g.get("tls"))
                .and_then(|t| t.get(key))
                .filter(|v| !v.is_null())
        };
        let tls_enabled = match tls("enabled") {
            None => false,
            Some(Value::Bool(on)) => *on,
            Some(other) => {
                return Err((
                    "gateway.tls.enabled",
                    format!("must be true or false, got {other}"),
                ));
            }
        };
        Ok(Self {
            port,
            bind: string("gateway.bind", get("bind"))?,
            custom_bind_host: string("gateway.customBindHost", get("customBindHost"))?,
            token: string("gateway.auth.token", auth_token)?,
            tls_enabled,
            tls_cert_path: string("gateway.tls.certPath", tls("certPath"))?,
        })
    }

    /// Where moltd keeps the certificate: `gateway.tls.certPath` (`~`
    /// expanded, relative to the current directory), else the state dir's.
    fn cert_path(&self, state_dir: &Path, home: Option<&Path>) -> PathBuf {
        match &self.tls_cert_path {
            Some(text) => {
                let path = state::expand_home(Path::new(text), home)
                    .unwrap_or_else(|_| PathBuf::from(text));
                std::path::absolute(&path).unwrap_or(path)
            }
            None => state_dir.join(state::TLS_CERT_FILE),
        }
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

fn ws_url(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Accepts `ws://host:port[/path]`, `wss://…` or a bare `host:port`.
pub fn normalize_url(url: &str) -> Result<String, DiscoverError> {
    let bad = |problem: &str| DiscoverError::BadUrl {
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let url = url.trim();
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("ws://") {
        ("ws", rest)
    } else if let Some(rest) = url.strip_prefix("wss://") {
        ("wss", rest)
    } else if url.contains("://") {
        return Err(bad("the scheme must be ws:// or wss://"));
    } else {
        ("ws", url)
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("missing host"));
    }
    Ok(format!("{scheme}://{rest}"))
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
        assert_eq!(ws_url("ws", &cfg("::1").connect_host(), 1), "ws://[::1]:1");
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
        assert_eq!(normalize_url("wss://h:1").unwrap(), "wss://h:1");
        for bad in ["http://h:1", "ws://", "wss://", ""] {
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
    fn the_local_socket_comes_first_unless_a_url_is_given() {
        let tmp = tempfile::tempdir().unwrap();
        let env = env_with_state(tmp.path());
        let target = discover(&Overrides::default(), &env).unwrap();
        assert_eq!(target.local_socket, None, "no socket, no daemon here");
        let socket = tmp.path().join("gateway.sock");
        let _bound = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let target = discover(&Overrides::default(), &env).unwrap();
        assert_eq!(target.local_socket.as_deref(), Some(socket.as_path()));
        assert_eq!(target.url, "ws://127.0.0.1:18789", "TCP stays the fallback");
        let flags = Overrides {
            url: Some("ws://10.0.0.1:1".into()),
            ..Overrides::default()
        };
        assert_eq!(discover(&flags, &env).unwrap().local_socket, None);
        let flags = Overrides {
            token: Some("t".into()),
            ..Overrides::default()
        };
        assert_eq!(discover(&flags, &env).unwrap().local_socket, None);
    }

    #[test]
    fn a_tls_gateway_is_dialed_with_wss_and_pinned_to_its_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            &tmp.path().join("openclaw.json"),
            r#"{"gateway":{"port":20000,"tls":{"enabled":true}}}"#,
        );
        let env = env_with_state(tmp.path());
        let target = discover(&Overrides::default(), &env).unwrap();
        assert_eq!(target.url, "wss://127.0.0.1:20000");
        assert_eq!(target.tls_pin, None);
        assert!(
            target.warnings[0].contains("gateway-cert.pem"),
            "{:?}",
            target.warnings
        );

        let cert = tmp.path().join("gateway/tls/gateway-cert.pem");
        fs::create_dir_all(cert.parent().unwrap()).unwrap();
        // The fingerprint is over the DER bytes, whatever they hold.
        let der = b"any DER bytes are hashed as they are";
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64(der)
        );
        write(&cert, &pem);
        let target = discover(&Overrides::default(), &env).unwrap();
        let expected = crate::client::transport::fingerprint(der);
        assert_eq!(
            target.tls_pin,
            Some((expected, PinSource::Certificate(cert.clone())))
        );

        let flags = Overrides {
            tls_fingerprint: Some(format!("sha256:{}", "AB".repeat(32))),
            ..Overrides::default()
        };
        let pinned = discover(&flags, &env).unwrap().tls_pin;
        assert_eq!(pinned, Some(("ab".repeat(32), PinSource::Flag)));
        let flags = Overrides {
            tls_fingerprint: Some("abc".into()),
            ..Overrides::default()
        };
        let err = discover(&flags, &env).unwrap_err();
        assert!(matches!(err, DiscoverError::BadFingerprint(_)), "{err}");
        assert!(err.to_string().contains("--tls-fingerprint"), "{err}");
    }

    /// Standard base64 with padding, enough for a PEM body.
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
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
