//! `molt config get [KEY]` and `molt config set KEY VALUE`.

use std::io::Write;
use std::time::Duration;

use molt_protocol::Method;
use molt_protocol::error::ErrorCode;
use molt_protocol::method::{ConfigGetResult, ConfigPatchParams};
use molt_protocol::secret::{REDACTED as SENTINEL, is_secret_key};
use serde_json::{Map, Value, json};

use super::session::{Retry, connect_retrying};
use super::{CliError, decode, pretty, target, write_out};
use crate::client::RequestError;
use crate::peer::RestartPlan;
use crate::target::{Overrides, Target};

/// Tries of get-then-patch when another writer wins the race.
const CONFLICT_TRIES: usize = 3;
const PATIENCE: Duration = Duration::from_secs(10);
/// Shown instead of the token in whole-config output.
const REDACTED: &str = "<redacted>";

/// `update.auto.enabled` → its segments; refuses anything else.
pub fn parse_key(key: &str) -> Result<Vec<&str>, CliError> {
    let segments: Vec<&str> = key.split('.').collect();
    let ok = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if key.is_empty() || !segments.iter().all(ok) {
        return Err(CliError::Usage(format!(
            "bad config key {key:?}: use dotted names like update.channel"
        )));
    }
    Ok(segments)
}

/// JSON when it parses, else the text as a string.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// The JSON merge patch that sets `segments` to `value`.
pub fn merge_patch(segments: &[&str], value: Value) -> Value {
    segments.iter().rev().fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert((*key).to_owned(), inner);
        Value::Object(map)
    })
}

/// Every secret as `<redacted>`: what a gateway already hid (its
/// sentinel, `__OPENCLAW_REDACTED__`) and what an older one did not.
fn redact(config: Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let shown = match value {
                        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Array(_)
                            if is_secret_key(&key) =>
                        {
                            Value::String(REDACTED.to_owned())
                        }
                        other => redact(other),
                    };
                    (key, shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) if s == SENTINEL => Value::String(REDACTED.to_owned()),
        other => other,
    }
}

fn pointer(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

/// `molt config get [KEY] [--json]`.
pub async fn config_get(
    overrides: &Overrides,
    key: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let segments = key.map(parse_key).transpose()?;
    let target = target(overrides)?;
    let value = super::request_once(&target, Method::ConfigGet, None).await?;
    let got: ConfigGetResult = decode(Method::ConfigGet, value)?;
    let text = match segments {
        None if json => pretty(&json!({
            "path": got.path,
            "hash": got.hash,
            "config": redact(got.config),
        }))?,
        None => pretty(&redact(got.config))?,
        Some(segments) => {
            let value = got.config.pointer(&pointer(&segments)).ok_or_else(|| {
                CliError::Other(format!(
                    "{} is not set in {} (the gateway uses its default)",
                    segments.join("."),
                    got.path
                ))
            })?;
            let last = segments.last().copied().unwrap_or_default();
            match redact(json!({ last: value }))[last].clone() {
                Value::String(s) if !json => s,
                other => pretty(&other)?,
            }
        }
    };
    write_out(out, &text)
}

/// `molt config set KEY VALUE [--json]`.
pub async fn config_set(
    overrides: &Overrides,
    key: &str,
    value: &str,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let segments = parse_key(key)?;
    let value = parse_value(value);
    let target = target(overrides)?;
    let patched = patch_key(&target, &segments, value.clone()).await?;
    let changed: Option<Vec<String>> =
        patched
            .get("changedPaths")
            .and_then(Value::as_array)
            .map(|paths| {
                paths
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
    let text = if json {
        pretty(&json!({
            "key": key,
            "value": value,
            "changedPaths": changed,
            "hash": patched.get("hash"),
            "restart": patched.get("restart"),
        }))?
    } else {
        let mut text = match &changed {
            Some(paths) if paths.is_empty() => format!("{key} unchanged (already {value})"),
            Some(paths) => format!("{key} = {value} (changed: {})", paths.join(", ")),
            None => format!("{key} = {value} (saved)"),
        };
        if let Some(restart) = patched.get("restart").and_then(RestartPlan::from_value) {
            text.push_str(&format!(
                "\nrestart scheduled to apply it: {}",
                restart.describe()
            ));
        }
        text
    };
    write_out(out, &text)
}

/// `config.patch` of one key with a fresh hash, read again and retried
/// when another writer wins the race; the gateway's answer.
pub(crate) async fn patch_key(
    target: &Target,
    segments: &[&str],
    value: Value,
) -> Result<Value, CliError> {
    let patch = merge_patch(segments, value);
    let (client, _events) = connect_retrying(target, Retry::HandoffOnly, PATIENCE).await?;
    let mut tries = 0;
    let patched = loop {
        tries += 1;
        let got: ConfigGetResult = client.call(Method::ConfigGet, &()).await?;
        let params = ConfigPatchParams {
            raw: patch.to_string(),
            base_hash: got.hash,
        };
        // Read leniently: OpenClaw answers in its own shape (its restart
        // mode is not one of moltd's strategies).
        match client.call::<_, Value>(Method::ConfigPatch, &params).await {
            Ok(patched) => break patched,
            // Someone wrote between our read and our patch: read again.
            Err(RequestError::Gateway(e))
                if e.code == ErrorCode::Conflict && tries < CONFLICT_TRIES =>
            {
                tracing::info!(error = %e, "config changed meanwhile; retrying");
            }
            Err(e) => {
                client.close().await;
                return Err(e.into());
            }
        }
    };
    client.close().await;
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_patches() {
        assert_eq!(
            parse_key("update.auto.enabled").unwrap(),
            ["update", "auto", "enabled"]
        );
        for bad in ["", ".", "update.", "a..b", "a b", "a/b"] {
            assert!(matches!(parse_key(bad), Err(CliError::Usage(_))), "{bad}");
        }
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("300000"), json!(300000));
        assert_eq!(parse_value("beta"), json!("beta"));
        assert_eq!(parse_value("\"true\""), json!("true"));
        assert_eq!(
            merge_patch(&["update", "auto", "enabled"], json!(true)),
            json!({"update": {"auto": {"enabled": true}}})
        );
        let redacted = redact(json!({"gateway": {"auth": {"token": "s3cret"}}}));
        assert_eq!(redacted["gateway"]["auth"]["token"], REDACTED);
    }

    #[test]
    fn the_gateways_sentinel_and_every_secret_show_as_redacted() {
        let shown = redact(json!({
            "gateway": {"auth": {"token": SENTINEL, "readToken": "r", "mode": "token"}},
            "models": {"x": {"apiKey": SENTINEL, "maxTokens": 5, "note": "plain"}}
        }));
        assert_eq!(
            shown,
            json!({
                "gateway": {"auth": {"token": REDACTED, "readToken": REDACTED, "mode": "token"}},
                "models": {"x": {"apiKey": REDACTED, "maxTokens": 5, "note": "plain"}}
            })
        );
    }
}
