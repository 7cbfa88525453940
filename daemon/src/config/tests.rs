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

#[test]
fn a_file_nested_too_deep_or_too_large_is_refused_naming_the_limit() {
    let deep = format!("{{a:{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let (_dir, path) = temp_config(Some(&deep));
    let err = ConfigFile::load(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "config {} does not parse: it nests deeper than 64 levels at line 1 column 67",
            path.display()
        )
    );
    let big = format!("{{a: \"{}\"}}", "x".repeat(limits::MAX_CONFIG_BYTES));
    fs::write(&path, &big).unwrap();
    let err = ConfigFile::load(&path).unwrap_err().to_string();
    assert!(err.contains(&*path.to_string_lossy()), "{err}");
    assert!(err.contains("1048576-byte limit"), "{err}");
}

#[test]
fn a_patch_nested_too_deep_is_refused_and_changes_nothing() {
    let (_dir, path) = temp_config(Some("{gateway: {port: 1}}\n"));
    let mut store = ConfigStore::open(&path).unwrap();
    let (_, hash) = store.get();
    let bomb = format!("{{a:{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
    let err = store.patch(&bomb, &hash).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid patch: it does not parse: it nests deeper than 64 levels at line 1 column 67"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "{gateway: {port: 1}}\n");
    assert_eq!(store.get().1, hash);
}
