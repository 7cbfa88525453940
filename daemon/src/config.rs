//! The config file `openclaw.json`: loading (JSON5 accepted), the typed
//! settings view, and the store behind `config.get` / `config.patch`.
//!
//! The file is kept as a `serde_json::Value`, so keys this daemon does not
//! know survive every write. Writes are pretty JSON: JSON5 comments in a
//! hand-edited file are lost on the first write (a no-op patch writes nothing).

mod merge;
mod settings;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::fsutil::{ensure_private_dir, write_atomic};

pub use merge::{changed_paths, merge_patch};
pub use settings::{
    AuthMode, AutoUpdateSettings, Bind, Channel, DEFAULT_DEFERRAL_TIMEOUT_MS, DEFAULT_PORT,
    GatewaySettings, Settings, UpdateSettings, is_valid_npm_package_name,
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

/// The file's bytes, `None` if it does not exist.
fn read_raw(path: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
    match std::fs::read(path) {
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
/// skipped.
fn parse_object(text: &str) -> Result<Value, ObjectError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
    /// must be valid [`Settings`]. Then it is written atomically.
    pub fn patch(&mut self, raw: &str, base_hash: &str) -> Result<PatchOutcome, PatchError> {
        self.reload().map_err(PatchError::Disk)?;
        if base_hash != self.hash {
            return Err(PatchError::Conflict {
                current_hash: self.hash.clone(),
            });
        }
        let patch = parse_object(raw).map_err(|e| {
            PatchError::InvalidPatch(match e {
                ObjectError::Syntax(m) => format!("it does not parse: {m}"),
                ObjectError::NotObject(found) => format!("expected an object, found {found}"),
            })
        })?;
        let mut next = self.value.clone();
        merge_patch(&mut next, &patch);
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
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn temp_config(content: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        if let Some(c) = content {
            fs::write(&path, c).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn missing_file_is_an_empty_object_with_the_empty_hash() {
        let (_dir, path) = temp_config(None);
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.value, json!({}));
        assert_eq!(file.hash, EMPTY_SHA256);
        assert_eq!(file.settings().unwrap(), Settings::default());
    }

    #[test]
    fn json5_is_accepted_and_hash_is_of_raw_bytes() {
        let text = "// comment\n{ gateway: { port: 1234, }, 'x': [1,], }\n";
        let (_dir, path) = temp_config(Some(text));
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.value, json!({"gateway": {"port": 1234}, "x": [1]}));
        assert_eq!(file.hash, hash_bytes(text.as_bytes()));
        assert_eq!(file.settings().unwrap().gateway.port, 1234);
    }

    #[test]
    fn parse_error_names_file_line_and_column() {
        let (_dir, path) = temp_config(Some("{\n  a: 1,\n    b c\n}"));
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("config {} does not parse: ", path.display())),
            "{msg}"
        );
        assert!(msg.ends_with("at line 3 column 7"), "{msg}");
    }

    #[test]
    fn empty_file_bom_and_bad_utf8() {
        let (_dir, path) = temp_config(Some(""));
        assert!(matches!(
            ConfigFile::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        fs::write(&path, "\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().value, json!({"a": 1}));
        fs::write(&path, b"{\"a\": \"\xff\"}").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn top_level_must_be_an_object() {
        let (_dir, path) = temp_config(Some("[1, 2]"));
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::NotObject {
                    found: "an array",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unreadable_path_names_the_file() {
        let (dir, _) = temp_config(None);
        let err = ConfigFile::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains(&*dir.path().to_string_lossy()));
    }

    #[test]
    fn invalid_settings_from_a_file_name_the_file_and_key() {
        let (_dir, path) = temp_config(Some("{gateway: {port: 'abc'}}"));
        let err = ConfigFile::load(&path).unwrap().settings().unwrap_err();
        let store_err = ConfigStore::open(&path).unwrap().settings().unwrap_err();
        assert_eq!(store_err.to_string(), err.to_string());
        assert_eq!(
            err.to_string(),
            format!(
                "config {} is invalid: gateway.port: expected an integer 0..=65535, got \"abc\"",
                path.display()
            )
        );
    }

    #[test]
    fn patch_writes_pretty_json_keeps_unknown_keys_and_reports_changes() {
        let (_dir, path) = temp_config(Some("{ custom: {keep: true}, gateway: {port: 1} }"));
        let mut store = ConfigStore::open(&path).unwrap();
        let (_, hash) = store.get();

        let out = store
            .patch(
                "{gateway: {port: 2, bind: 'lan'}, update: {channel: 'beta'}}",
                &hash,
            )
            .unwrap();
        let want = json!({
            "custom": {"keep": true},
            "gateway": {"port": 2, "bind": "lan"},
            "update": {"channel": "beta"},
        });
        assert_eq!(out.config, want);
        assert_eq!(
            out.changed_paths,
            ["gateway.bind", "gateway.port", "update.channel"]
        );

        let written = fs::read(&path).unwrap();
        assert_eq!(out.hash, hash_bytes(&written));
        let text = String::from_utf8(written).unwrap();
        assert!(
            text.starts_with("{\n  \"custom\": {\n    \"keep\": true\n  },"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(store.get(), (want, out.hash));
    }

    #[test]
    fn patch_creates_a_missing_file_from_the_empty_hash() {
        let (dir, _) = temp_config(None);
        let path = dir.path().join("sub").join("openclaw.json");
        let mut store = ConfigStore::open(&path).unwrap();
        let out = store
            .patch(r#"{"commands": {"restart": false}}"#, EMPTY_SHA256)
            .unwrap();
        assert_eq!(out.changed_paths, ["commands.restart"]);
        assert_eq!(ConfigFile::load(&path).unwrap().value, out.config);
    }

    #[test]
    fn stale_hash_is_a_conflict_and_changes_nothing() {
        let (_dir, path) = temp_config(Some("{\"a\": 1}"));
        let mut store = ConfigStore::open(&path).unwrap();
        let (_, hash) = store.get();
        let first = store.patch(r#"{"a": 2}"#, &hash).unwrap();

        // The old hash is now stale, even for a patch that would be invalid.
        let err = store.patch("not json at all", &hash).unwrap_err();
        match err {
            PatchError::Conflict { current_hash } => assert_eq!(current_hash, first.hash),
            other => panic!("expected conflict, got {other}"),
        }
        assert_eq!(fs::read(&path).unwrap(), {
            let mut b = serde_json::to_vec_pretty(&json!({"a": 2})).unwrap();
            b.push(b'\n');
            b
        });
    }

    #[test]
    fn external_edit_is_detected_as_a_conflict_and_picked_up() {
        let (_dir, path) = temp_config(Some("{\"a\": 1}"));
        let mut store = ConfigStore::open(&path).unwrap();
        let (_, hash) = store.get();
        fs::write(&path, "{\"a\": 1, \"b\": 2}").unwrap();

        let err = store.patch(r#"{"a": 3}"#, &hash).unwrap_err();
        let PatchError::Conflict { current_hash } = err else {
            panic!("expected conflict, got {err}");
        };
        assert_eq!(current_hash, hash_bytes(b"{\"a\": 1, \"b\": 2}"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\": 1, \"b\": 2}");
        // After the conflict the store serves the new content, so a retry works.
        let (value, fresh) = store.get();
        assert_eq!(
            (value, fresh.as_str()),
            (json!({"a": 1, "b": 2}), &*current_hash)
        );
        let out = store.patch(r#"{"a": 3}"#, &fresh).unwrap();
        assert_eq!(out.config, json!({"a": 3, "b": 2}));
    }

    #[test]
    fn external_edit_that_does_not_parse_blocks_patches_without_writing() {
        let (_dir, path) = temp_config(Some("{\"a\": 1}"));
        let mut store = ConfigStore::open(&path).unwrap();
        let (_, hash) = store.get();
        fs::write(&path, "{ half an edit").unwrap();
        let err = store.patch(r#"{"a": 2}"#, &hash).unwrap_err();
        assert!(
            matches!(err, PatchError::Disk(ConfigError::Parse { .. })),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "{ half an edit");
        assert_eq!(store.get().1, hash, "store keeps its last good content");
    }

    #[test]
    fn bad_patch_text_is_invalid_patch() {
        let (_dir, path) = temp_config(Some("{}"));
        let mut store = ConfigStore::open(&path).unwrap();
        let hash = store.get().1;
        for (raw, want) in [
            ("{a: ", "does not parse"),
            ("[1]", "found an array"),
            ("null", "found null"),
        ] {
            let err = store.patch(raw, &hash).unwrap_err();
            assert!(matches!(err, PatchError::InvalidPatch(_)), "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}");
    }

    #[test]
    fn patch_producing_invalid_settings_is_rejected_without_writing() {
        let (_dir, path) = temp_config(Some("{\"gateway\": {\"port\": 1}}"));
        let mut store = ConfigStore::open(&path).unwrap();
        let hash = store.get().1;
        let err = store
            .patch(r#"{"gateway": {"port": "abc"}}"#, &hash)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the patched config would be invalid: gateway.port: expected an integer 0..=65535, got \"abc\""
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"gateway\": {\"port\": 1}}"
        );
        assert_eq!(store.get(), (json!({"gateway": {"port": 1}}), hash));
    }

    #[test]
    fn noop_patch_writes_nothing() {
        let text = "// hand-written\n{a: 1}";
        let (_dir, path) = temp_config(Some(text));
        let mut store = ConfigStore::open(&path).unwrap();
        let hash = store.get().1;
        let out = store.patch(r#"{"a": 1, "b": null}"#, &hash).unwrap();
        assert!(out.changed_paths.is_empty());
        assert_eq!(out.hash, hash);
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "comments survive");
    }

    #[test]
    fn null_in_patch_removes_a_key() {
        let (_dir, path) = temp_config(Some(r#"{"update": {"channel": "beta", "x": 1}}"#));
        let mut store = ConfigStore::open(&path).unwrap();
        let hash = store.get().1;
        let out = store
            .patch(r#"{"update": {"channel": null}}"#, &hash)
            .unwrap();
        assert_eq!(out.config, json!({"update": {"x": 1}}));
        assert_eq!(out.changed_paths, ["update.channel"]);
    }

    #[test]
    fn set_path_stores_a_generated_token() {
        let (_dir, path) = temp_config(Some(r#"{"gateway": {"port": 5}}"#));
        let mut store = ConfigStore::open(&path).unwrap();
        let token = generate_token();
        let out = store.set_path("gateway.auth.token", json!(token)).unwrap();
        assert_eq!(out.changed_paths, ["gateway.auth.token"]);
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.hash, out.hash);
        assert_eq!(file.settings().unwrap().gateway.auth_token, Some(token));
        assert_eq!(file.settings().unwrap().gateway.port, 5);

        let err = store.set_path("gateway.port", json!(-1)).unwrap_err();
        assert!(matches!(err, PatchError::Invalid(_)), "{err}");
        assert!(matches!(
            store.set_path("a..b", json!(1)),
            Err(PatchError::InvalidPatch(_))
        ));
        let removed = store.set_path("gateway.auth", Value::Null).unwrap();
        assert_eq!(removed.config, json!({"gateway": {"port": 5}}));
    }

    #[test]
    fn tokens_are_64_hex_chars_and_differ() {
        let a = generate_token();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, generate_token());
    }
}
