//! The config file `openclaw.json`: loading (JSON5 accepted), the typed
//! settings view, and the store behind `config.get` / `config.patch`.
//!
//! The file is kept as a `serde_json::Value`, so keys this daemon does not
//! know survive every write. Writes are pretty JSON: JSON5 comments in a
//! hand-edited file are lost on the first write (a no-op patch writes nothing).

/// Size and depth bounds checked before parsing.
pub mod limits;
mod merge;
/// The sentinel in place of secrets, and secrets restored from it.
pub mod secrets;
mod settings;
/// What only an edit of the file may change.
pub mod wire;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::fsutil::{ensure_private_dir, write_atomic};

pub use merge::{changed_paths, merge_patch};
pub use settings::{
    AuthMode, AutoUpdateSettings, Bind, Channel, DEFAULT_DEFERRAL_TIMEOUT_MS, DEFAULT_PORT,
    GatewaySettings, MAX_ALLOWED_ORIGINS, RateLimit, Settings, TlsSettings, UpdateSettings,
    is_valid_npm_package_name, normalize_origin,
};

/// A config key with a value of the wrong type or range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: expected {expected}, got {got}")]
pub struct InvalidValue {
    /// Dotted key path, e.g. `gateway.port`.
    pub key: String,
    pub expected: String,
    /// The offending value as JSON (shortened), or `nothing`.
    pub got: String,
}

impl InvalidValue {
    pub fn new(key: &str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {} cannot be read: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// `message` is json5's, ending in "at line L column C" (1-based).
    #[error("config {} does not parse: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config {} must hold a JSON object, found {found}", path.display())]
    NotObject { path: PathBuf, found: &'static str },
    /// From [`Settings::from_value`], which knows no file.
    #[error(transparent)]
    Invalid(InvalidValue),
    #[error("config {} is invalid: {error}", path.display())]
    InvalidFile { path: PathBuf, error: InvalidValue },
}

/// The config file as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Always an object.
    pub value: Value,
    /// sha256 (hex) of the raw file bytes. A missing file hashes as the empty
    /// string, so a client that saw "no file yet" can still patch, and
    /// creating the file behind its back is a conflict.
    pub hash: String,
}

impl ConfigFile {
    /// Reads and parses `path`; a missing file is `{}`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = read_raw(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            value: parse_file(path, bytes.as_deref())?,
            hash: hash_bytes(bytes.as_deref().unwrap_or_default()),
        })
    }

    /// The typed view; errors name the file.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        settings_of_file(&self.path, &self.value)
    }
}

fn settings_of_file(path: &Path, value: &Value) -> Result<Settings, ConfigError> {
    Settings::from_value(value).map_err(|e| match e {
        ConfigError::Invalid(error) => ConfigError::InvalidFile {
            path: path.to_path_buf(),
            error,
        },
        other => other,
    })
}

/// sha256 of `bytes`, lowercase hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// 32 random bytes from the OS, hex encoded: a gateway auth token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    // getrandom(2) does not fail on a supported kernel once booted; a token
    // must never be weak, so failing loudly is the only safe fallback.
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

/// The file's bytes, `None` if it does not exist. A file over
/// [`limits::MAX_CONFIG_BYTES`] is refused unread.
fn read_raw(path: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
    match crate::fsutil::read_bounded(path, limits::MAX_CONFIG_BYTES as u64) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Parses raw file bytes; a missing file (`None`) is `{}`.
fn parse_file(path: &Path, bytes: Option<&[u8]>) -> Result<Value, ConfigError> {
    let Some(bytes) = bytes else {
        return Ok(Value::Object(Map::new()));
    };
    let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("not valid UTF-8 ({e})"),
    })?;
    parse_object(text).map_err(|e| match e {
        ObjectError::Syntax(message) => ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
        ObjectError::NotObject(found) => ConfigError::NotObject {
            path: path.to_path_buf(),
            found,
        },
    })
}

enum ObjectError {
    Syntax(String),
    NotObject(&'static str),
}

/// JSON5 text that must be an object. A leading BOM (Windows editors) is
/// skipped. Size and depth are checked first (see [`limits`]).
fn parse_object(text: &str) -> Result<Value, ObjectError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    limits::check(text).map_err(|e| ObjectError::Syntax(e.to_string()))?;
    let value: Value = json5::from_str(text).map_err(|e| ObjectError::Syntax(e.to_string()))?;
    match value {
        Value::Object(_) => Ok(value),
        other => Err(ObjectError::NotObject(kind(&other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a successful patch produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutcome {
    pub config: Value,
    pub hash: String,
    /// Sorted dotted leaf paths; empty if nothing changed (then nothing was
    /// written).
    pub changed_paths: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("config changed since it was read (current hash {current_hash}); re-read it and retry")]
    Conflict { current_hash: String },
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    #[error("the patched config would be invalid: {0}")]
    Invalid(ConfigError),
    #[error("invalid patch: {0}")]
    Sentinel(secrets::SentinelAsData),
    #[error(
        "{0}; this cannot be changed over the wire: edit the config file, and moltd applies it \
         at its next start"
    )]
    FileOnly(wire::FileOnly),
    /// The file on disk changed and cannot be read or parsed; nothing written.
    #[error(transparent)]
    Disk(ConfigError),
    #[error("cannot save the config: {0}")]
    Write(io::Error),
}

/// The config file and its current content. Not synchronized: the server
/// wraps it in a `Mutex`.
#[derive(Debug)]
pub struct ConfigStore {
    path: PathBuf,
    value: Value,
    hash: String,
}

impl ConfigStore {
    pub fn open(path: &Path) -> Result<Self, ConfigError> {
        Ok(Self::from_file(ConfigFile::load(path)?))
    }

    pub fn from_file(file: ConfigFile) -> Self {
        Self {
            path: file.path,
            value: file.value,
            hash: file.hash,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The content as last loaded or written, and its hash. See [`Self::reload`].
    pub fn get(&self) -> (Value, String) {
        (self.value.clone(), self.hash.clone())
    }

    /// The typed view of the current content; errors name the file.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        settings_of_file(&self.path, &self.value)
    }

    /// Picks up an edit made to the file by someone else. Returns whether
    /// the content changed. On error the store keeps its old content.
    pub fn reload(&mut self) -> Result<bool, ConfigError> {
        let bytes = read_raw(&self.path)?;
        let hash = hash_bytes(bytes.as_deref().unwrap_or_default());
        if hash == self.hash {
            return Ok(false);
        }
        self.value = parse_file(&self.path, bytes.as_deref())?;
        self.hash = hash;
        Ok(true)
    }

    /// Applies the JSON merge patch `raw` (JSON5 accepted) if `base_hash` is
    /// the current hash. Checked in this order, each failure changing
    /// nothing: the file is re-read (an external edit changes the current
    /// hash), `base_hash` must match, `raw` must be an object, the result
    /// must carry the secret sentinel only where it keeps a stored secret,
    /// the result must be valid [`Settings`], and it must change nothing
    /// only the file may change ([`wire`]). Then it is written atomically.
    pub fn patch(&mut self, raw: &str, base_hash: &str) -> Result<PatchOutcome, PatchError> {
        self.reload().map_err(PatchError::Disk)?;
        if base_hash != self.hash {
            return Err(PatchError::Conflict {
                current_hash: self.hash.clone(),
            });
        }
        let mut patch = parse_object(raw).map_err(|e| {
            PatchError::InvalidPatch(match e {
                ObjectError::Syntax(m) => format!("it does not parse: {m}"),
                ObjectError::NotObject(found) => format!("expected an object, found {found}"),
            })
        })?;
        secrets::restore(&mut patch, Some(&self.value), "").map_err(PatchError::Sentinel)?;
        let mut next = self.value.clone();
        merge_patch(&mut next, &patch);
        Settings::from_value(&next).map_err(PatchError::Invalid)?;
        wire::check(&self.value, &next).map_err(PatchError::FileOnly)?;
        self.commit(next)
    }

    /// Sets one dotted key (`null` removes it) for the daemon's own writes,
    /// e.g. a generated `gateway.auth.token`. Picks up external edits first;
    /// the result must still be valid.
    pub fn set_path(&mut self, dotted_key: &str, value: Value) -> Result<PatchOutcome, PatchError> {
        let segments: Vec<&str> = dotted_key.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(PatchError::InvalidPatch(format!(
                "invalid key path {dotted_key:?}"
            )));
        }
        self.reload().map_err(PatchError::Disk)?;
        // Build the equivalent merge patch so both paths share one rule set.
        let patch = segments.iter().rev().fold(value, |inner, seg| {
            Value::Object(Map::from_iter([(seg.to_string(), inner)]))
        });
        let mut next = self.value.clone();
        merge_patch(&mut next, &patch);
        self.commit(next)
    }

    fn commit(&mut self, next: Value) -> Result<PatchOutcome, PatchError> {
        Settings::from_value(&next).map_err(PatchError::Invalid)?;
        let changed_paths = changed_paths(&self.value, &next);
        if next != self.value {
            let mut bytes = serde_json::to_vec_pretty(&next)
                .map_err(|e| PatchError::Write(io::Error::other(e)))?;
            bytes.push(b'\n');
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                ensure_private_dir(dir).map_err(PatchError::Write)?;
            }
            write_atomic(&self.path, &bytes).map_err(PatchError::Write)?;
            self.hash = hash_bytes(&bytes);
            self.value = next;
        }
        Ok(PatchOutcome {
            config: self.value.clone(),
            hash: self.hash.clone(),
            changed_paths,
        })
    }
}

#[cfg(test)]
mod tests;
