//! The fleet file: named gateways, how to reach and authenticate each, and
//! the groups a rollout picks from.
//!
//! An entry with a problem is reported with the line of its `[[gateway]]`
//! header and left out; the other entries still load, so one typo does not
//! blind the operator to the rest of the fleet. Only a file that is not
//! TOML at all (or too big) fails as a whole, with the parser's line.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::target::normalize_url;

/// The file name under the user's config dir (`$XDG_CONFIG_HOME/molt/`).
pub const FLEET_FILE: &str = "fleet.toml";
/// More than this is not a fleet file.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
pub const MAX_GATEWAYS: usize = 1000;
pub const MAX_GROUPS: usize = 32;
const MAX_NAME: usize = 64;
const MAX_FINGERPRINT: usize = 200;
/// The group a rollout updates first, unless the file says otherwise.
pub const DEFAULT_CANARY: &str = "canary";

/// Where the secret comes from. The token itself is read at each connect
/// attempt, so a rotated file or variable is picked up.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(PathBuf),
    /// Written in the fleet file (warned about when others can read it).
    Inline(String),
    None,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "Env({name})"),
            Self::File(path) => write!(f, "File({})", path.display()),
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::None => f.write_str("None"),
        }
    }
}

/// How to reach a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Url {
        url: String,
        /// The pinned certificate of a `wss://` gateway.
        tls_fingerprint: Option<String>,
    },
    /// A gateway on this machine, found the way `molt --state-dir` finds
    /// it (its lock file names the port, its config the token).
    StateDir(PathBuf),
}

/// One gateway of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub name: String,
    pub endpoint: Endpoint,
    pub token: TokenSource,
    pub groups: Vec<String>,
    /// The line of its `[[gateway]]` header.
    pub line: usize,
}

impl Gateway {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The URL, or where it is found.
    pub fn address(&self) -> String {
        match &self.endpoint {
            Endpoint::Url { url, .. } => url.clone(),
            Endpoint::StateDir(dir) => format!("local {}", dir.display()),
        }
    }
}

/// How a rollout proceeds when the command line does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutDefaults {
    pub canary: String,
    pub wave: WaveSize,
    pub pause: Duration,
    /// Gateways of one wave updating at the same time, at most.
    pub max_unavailable: usize,
    /// One gateway's whole update (install, restart, verification).
    pub host_timeout: Duration,
}

impl Default for RolloutDefaults {
    fn default() -> Self {
        Self {
            canary: DEFAULT_CANARY.to_owned(),
            wave: WaveSize::Count(5),
            pause: Duration::ZERO,
            max_unavailable: 1,
            host_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Gateways per wave after the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaveSize {
    Count(usize),
    Percent(u8),
}

impl WaveSize {
    /// `5` or `20%`.
    pub fn parse(text: &str) -> Result<WaveSize, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not a wave size: use a count (5) or a percentage (20%)");
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(WaveSize::Percent(p)),
                _ => Err(bad()),
            };
        }
        match text.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(WaveSize::Count(n)),
            _ => Err(bad()),
        }
    }

    /// Gateways per wave out of `total` (at least one).
    pub fn of(self, total: usize) -> usize {
        match self {
            WaveSize::Count(n) => n,
            WaveSize::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

/// `30s`, `5m`, `1h`, `250ms` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration: use 30s, 5m, 1h or 250ms");
    let (digits, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// A loaded fleet file: the gateways that are fine, and what was wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    pub path: PathBuf,
    pub gateways: Vec<Gateway>,
    pub rollout: RolloutDefaults,
    /// Entries left out, each naming its line.
    pub errors: Vec<String>,
    /// Loaded, but worth knowing (a readable inline token).
    pub warnings: Vec<String>,
}

impl Fleet {
    pub fn gateway(&self, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.name == name)
    }

    pub fn groups(&self) -> BTreeSet<&str> {
        self.gateways
            .iter()
            .flat_map(|g| g.groups.iter().map(String::as_str))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no fleet file at {}: create it (see `molt fleet --help`) or pass --fleet FILE", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_FILE_BYTES} bytes; not a fleet file", path.display())]
    TooBig { path: PathBuf },
    #[error("{}: {problem}", path.display())]
    Parse { path: PathBuf, problem: String },
    #[error("no config dir for this user: pass --fleet FILE")]
    NoConfigDir,
}

/// `$XDG_CONFIG_HOME/molt/fleet.toml` (the platform's config dir).
pub fn default_path() -> Result<PathBuf, FleetError> {
    directories::ProjectDirs::from("", "", "molt")
        .map(|dirs| dirs.config_dir().join(FLEET_FILE))
        .ok_or(FleetError::NoConfigDir)
}

/// Reads and parses the fleet file at `path`.
pub fn load(path: &Path) -> Result<Fleet, FleetError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => FleetError::Missing {
            path: path.to_owned(),
        },
        _ => FleetError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(FleetError::TooBig {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut fleet = parse(&text, path).map_err(|problem| FleetError::Parse {
        path: path.to_owned(),
        problem,
    })?;
    if others_can_read(&meta) {
        for gateway in &fleet.gateways {
            if matches!(gateway.token, TokenSource::Inline(_)) {
                fleet.warnings.push(format!(
                    "{} line {}: gateway {:?} has its token in a file others can read \
                     (chmod 600 it, or use token_env / token_file)",
                    path.display(),
                    gateway.line,
                    gateway.name
                ));
            }
        }
    }
    Ok(fleet)
}

#[cfg(unix)]
fn others_can_read(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o044 != 0
}

#[cfg(not(unix))]
fn others_can_read(_: &std::fs::Metadata) -> bool {
    false
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    gateway: Vec<Spanned<toml::Table>>,
    rollout: Option<Spanned<toml::Table>>,
    #[serde(flatten)]
    unknown: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    name: String,
    url: Option<String>,
    state_dir: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    token: Option<String>,
    tls_fingerprint: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    canary: Option<String>,
    wave: Option<toml::Value>,
    pause: Option<String>,
    max_unavailable: Option<usize>,
    host_timeout: Option<String>,
}

/// Parses fleet file text; `path` names the file in messages. Fails only
/// when the text is not TOML; bad entries land in [`Fleet::errors`].
pub fn parse(text: &str, path: &Path) -> Result<Fleet, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut fleet = Fleet {
        path: path.to_owned(),
        ..Fleet::default()
    };
    for key in raw.unknown.keys() {
        fleet.warnings.push(format!(
            "unknown top-level key {key:?} ignored (expected [[gateway]] or [rollout])"
        ));
    }
    if let Some(rollout) = raw.rollout {
        let line = line_of(rollout.span().start);
        match rollout_defaults(rollout.into_inner()) {
            Ok(defaults) => fleet.rollout = defaults,
            Err(problem) => fleet.errors.push(format!(
                "line {line}: [rollout]: {problem}; using the defaults"
            )),
        }
    }
    let mut names = BTreeSet::new();
    for entry in raw.gateway {
        let line = line_of(entry.span().start);
        if fleet.gateways.len() >= MAX_GATEWAYS {
            fleet.errors.push(format!(
                "line {line}: more than {MAX_GATEWAYS} gateways; the rest are left out"
            ));
            break;
        }
        let table = entry.into_inner();
        let label = table
            .get("name")
            .and_then(toml::Value::as_str)
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        match gateway(table, line) {
            Ok(gateway) if !names.insert(gateway.name.clone()) => fleet.errors.push(format!(
                "line {line}: gateway{label}: the name is used by an earlier entry"
            )),
            Ok(gateway) => fleet.gateways.push(gateway),
            Err(problem) => fleet
                .errors
                .push(format!("line {line}: gateway{label}: {problem}")),
        }
    }
    Ok(fleet)
}

fn gateway(table: toml::Table, line: usize) -> Result<Gateway, String> {
    let raw: RawGateway = table
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    check_name("name", &raw.name)?;
    let endpoint = match (raw.url, raw.state_dir) {
        (Some(_), Some(_)) => return Err("give url or state_dir, not both".to_owned()),
        (None, None) => {
            return Err("needs url (ws://host:port) or state_dir (a local gateway)".to_owned());
        }
        (Some(url), None) => {
            let url = normalize_url(&url).map_err(|e| e.to_string())?;
            let tls_fingerprint = match raw.tls_fingerprint {
                None => None,
                Some(_) if !url.starts_with("wss://") => {
                    return Err(format!("tls_fingerprint needs a wss:// url, not {url}"));
                }
                Some(pin) => Some(
                    (pin.len() <= MAX_FINGERPRINT)
                        .then(|| molt_protocol::state::normalize_tls_fingerprint(&pin))
                        .flatten()
                        .ok_or_else(|| {
                            "tls_fingerprint is not a SHA-256 fingerprint (64 hex digits, \
                             colon pairs allowed, an optional sha256: prefix)"
                                .to_owned()
                        })?,
                ),
            };
            Endpoint::Url {
                url,
                tls_fingerprint,
            }
        }
        (None, Some(dir)) if raw.tls_fingerprint.is_some() => {
            return Err(format!(
                "tls_fingerprint needs a wss:// url, not state_dir {}",
                dir.display()
            ));
        }
        (None, Some(dir)) => Endpoint::StateDir(dir),
    };
    let token = match (raw.token_env, raw.token_file, raw.token) {
        (None, None, None) => TokenSource::None,
        (Some(var), None, None) if !var.is_empty() && !var.contains('=') => TokenSource::Env(var),
        (Some(var), None, None) => return Err(format!("token_env {var:?} is not a variable name")),
        (None, Some(file), None) => TokenSource::File(file),
        (None, None, Some(token)) if !token.is_empty() => TokenSource::Inline(token),
        (None, None, Some(_)) => return Err("token is empty".to_owned()),
        _ => return Err("give one of token_env, token_file, token".to_owned()),
    };
    if raw.groups.len() > MAX_GROUPS {
        return Err(format!("more than {MAX_GROUPS} groups"));
    }
    for group in &raw.groups {
        check_name("group", group)?;
    }
    Ok(Gateway {
        name: raw.name,
        endpoint,
        token,
        groups: raw.groups,
        line,
    })
}

fn rollout_defaults(table: toml::Table) -> Result<RolloutDefaults, String> {
    let raw: RawRollout = table
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let mut defaults = RolloutDefaults::default();
    if let Some(canary) = raw.canary {
        check_name("canary", &canary)?;
        defaults.canary = canary;
    }
    if let Some(wave) = raw.wave {
        defaults.wave = match wave {
            toml::Value::Integer(n) => WaveSize::parse(&n.to_string()),
            toml::Value::String(s) => WaveSize::parse(&s),
            other => Err(format!(
                "wave {} is not a count or a percentage",
                other.type_str()
            )),
        }?;
    }
    if let Some(pause) = raw.pause {
        defaults.pause = parse_duration(&pause).map_err(|p| format!("pause: {p}"))?;
    }
    if let Some(n) = raw.max_unavailable {
        if n == 0 {
            return Err("max_unavailable must be at least 1".to_owned());
        }
        defaults.max_unavailable = n;
    }
    if let Some(timeout) = raw.host_timeout {
        defaults.host_timeout =
            parse_duration(&timeout).map_err(|p| format!("host_timeout: {p}"))?;
    }
    Ok(defaults)
}

/// Names and groups: shown in narrow columns and typed on command lines.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1 to {MAX_NAME} of a-z, A-Z, 0-9, '-', '_', '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Fleet {
        parse(text, Path::new("fleet.toml")).unwrap()
    }

    #[test]
    fn the_documented_shape_loads() {
        let fleet = parse_ok(
            r#"
[[gateway]]
name = "eu-1"
url = "ws://10.0.0.5:18789"
token_env = "EU1_TOKEN"      # or token_file = "/path", or neither
groups = ["canary", "eu"]

[[gateway]]
name = "us-1"
url = "wss://us-1.example:443"
token_file = "/etc/molt/us-1.token"
tls_fingerprint = "sha256:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB"
groups = ["us"]

[[gateway]]
name = "here"
state_dir = "/srv/molt"
"#,
        );
        assert_eq!(fleet.errors, Vec::<String>::new());
        assert_eq!(
            fleet.gateways,
            vec![
                Gateway {
                    name: "eu-1".into(),
                    endpoint: Endpoint::Url {
                        url: "ws://10.0.0.5:18789".into(),
                        tls_fingerprint: None
                    },
                    token: TokenSource::Env("EU1_TOKEN".into()),
                    groups: vec!["canary".into(), "eu".into()],
                    line: 2,
                },
                Gateway {
                    name: "us-1".into(),
                    endpoint: Endpoint::Url {
                        url: "wss://us-1.example:443".into(),
                        tls_fingerprint: Some("ab".repeat(32))
                    },
                    token: TokenSource::File("/etc/molt/us-1.token".into()),
                    groups: vec!["us".into()],
                    line: 8,
                },
                Gateway {
                    name: "here".into(),
                    endpoint: Endpoint::StateDir("/srv/molt".into()),
                    token: TokenSource::None,
                    groups: vec![],
                    line: 15,
                },
            ]
        );
        assert_eq!(fleet.rollout, RolloutDefaults::default());
        assert_eq!(
            fleet.groups().into_iter().collect::<Vec<_>>(),
            ["canary", "eu", "us"]
        );
    }

    #[test]
    fn bad_entries_name_their_line_and_the_rest_load() {
        let fleet = parse_ok(
            r#"[[gateway]]
name = "ok-1"
url = "ws://h:1"

[[gateway]]
name = "typo"
url = "ws://h:2"
tokn_env = "X"

[[gateway]]
name = "both"
url = "ws://h:3"
token_env = "A"
token_file = "/b"

[[gateway]]
name = "nowhere"

[[gateway]]
name = "ok-1"
url = "ws://h:4"

[[gateway]]
name = "bad group"
url = "ws://h:5"

[[gateway]]
name = "bad-url"
url = "http://h:9"

[[gateway]]
url = "ws://h:6"

[[gateway]]
name = "ok-2"
url = "ws://h:7"
groups = ["a", "b"]
"#,
        );
        let names: Vec<&str> = fleet.gateways.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["ok-1", "ok-2"]);
        let lines: Vec<&str> = fleet
            .errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                "line 5", "line 10", "line 16", "line 19", "line 23", "line 27", "line 31"
            ],
            "{:#?}",
            fleet.errors
        );
        assert!(fleet.errors[0].contains("tokn_env"), "{}", fleet.errors[0]);
        assert!(
            fleet.errors[1].contains("one of token_env"),
            "{}",
            fleet.errors[1]
        );
        assert!(fleet.errors[2].contains("needs url"), "{}", fleet.errors[2]);
        assert!(
            fleet.errors[3].contains("earlier entry"),
            "{}",
            fleet.errors[3]
        );
        assert!(
            fleet.errors[4].contains("\"bad group\""),
            "{}",
            fleet.errors[4]
        );
        assert!(
            fleet.errors[5].contains("scheme must be ws://"),
            "{}",
            fleet.errors[5]
        );
        assert!(fleet.errors[6].contains("name"), "{}", fleet.errors[6]);
    }

    #[test]
    fn text_that_is_not_toml_fails_naming_the_line() {
        let err = parse("[[gateway]]\nname = \"a\"\nurl = ws://x\n", Path::new("f")).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn rollout_defaults_are_read_and_checked() {
        let fleet = parse_ok(
            "[rollout]\ncanary = \"first\"\nwave = \"25%\"\npause = \"30s\"\nmax_unavailable = 2\nhost_timeout = \"10m\"\n",
        );
        assert_eq!(
            fleet.rollout,
            RolloutDefaults {
                canary: "first".into(),
                wave: WaveSize::Percent(25),
                pause: Duration::from_secs(30),
                max_unavailable: 2,
                host_timeout: Duration::from_secs(600),
            }
        );
        let fleet = parse_ok("\n[rollout]\nwave = 0\n");
        assert_eq!(fleet.rollout, RolloutDefaults::default());
        assert!(
            fleet.errors[0].starts_with("line 2: [rollout]"),
            "{:?}",
            fleet.errors
        );
        let fleet = parse_ok("gateways = []\n");
        assert!(
            fleet.warnings[0].contains("\"gateways\""),
            "{:?}",
            fleet.warnings
        );
    }

    #[test]
    fn wave_sizes_and_durations() {
        assert_eq!(WaveSize::parse("5"), Ok(WaveSize::Count(5)));
        assert_eq!(WaveSize::parse("20%"), Ok(WaveSize::Percent(20)));
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(WaveSize::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(WaveSize::Percent(20).of(9), 2);
        assert_eq!(WaveSize::Percent(1).of(3), 1);
        assert_eq!(WaveSize::Count(5).of(2), 5);
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 min").is_err());
    }

    #[test]
    fn an_inline_token_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FLEET_FILE);
        std::fs::write(
            &path,
            "[[gateway]]\nname = \"a\"\nurl = \"ws://h:1\"\ntoken = \"s3cret\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fleet = load(&path).unwrap();
        assert_eq!(fleet.gateways.len(), 1);
        assert!(fleet.warnings[0].contains("line 1"), "{:?}", fleet.warnings);
        assert!(!format!("{fleet:?}").contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&path).unwrap().warnings, Vec::<String>::new());
        assert!(matches!(
            load(&dir.path().join("none.toml")),
            Err(FleetError::Missing { .. })
        ));
    }
}
