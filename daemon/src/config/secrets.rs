//! Secrets leave the gateway only as OpenClaw's sentinel: `config.get`
//! and `config.patch` answer with [`REDACTED`] in place of every value a
//! secret key holds, and a patch that sends the sentinel back keeps the
//! stored value. The sentinel as new data is refused.

use molt_protocol::secret::{REDACTED, contains_sentinel, is_secret_key};
use serde_json::{Map, Value};

/// `config` with every secret value replaced by the sentinel. Objects
/// under a secret key (a reference to a secret store) are walked, not
/// hidden: their own keys say what they hold.
pub fn redact(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let shown = match value {
                        Value::Null | Value::Object(_) => redact(value),
                        _ if is_secret_key(key) => Value::String(REDACTED.to_owned()),
                        _ => redact(value),
                    };
                    (key.clone(), shown)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Every string a secret key holds in `config`, to keep out of what is
/// written elsewhere (the audit trail) even when a caller copies one under
/// a key that is not secret. Values under 8 characters are left out: too
/// common to scrub text by.
pub fn values(config: &Value) -> Vec<String> {
    fn walk(value: &Value, under_secret: bool, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    walk(value, is_secret_key(key), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, under_secret, out)),
            Value::String(s) if under_secret && s.chars().count() >= 8 && s != REDACTED => {
                out.push(s.clone());
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(config, false, &mut out);
    out
}

/// A patch that carries the sentinel where it cannot stand for a stored
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key}: {REDACTED} stands for a stored secret and is not a value; send the real value, \
     or leave the key out to keep it"
)]
pub struct SentinelAsData {
    pub key: String,
}

/// Puts the stored value back wherever `patch` sends the sentinel for a
/// secret `current` holds; refuses the sentinel anywhere else, whole or
/// within a string.
pub fn restore(
    patch: &mut Value,
    current: Option<&Value>,
    prefix: &str,
) -> Result<(), SentinelAsData> {
    match patch {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let stored = current.and_then(|c| c.get(key));
                if value.as_str() == Some(REDACTED) && is_secret_key(key) {
                    match stored.filter(|s| !s.is_null() && !s.is_object()) {
                        Some(stored) => *value = stored.clone(),
                        None => return Err(SentinelAsData { key: path }),
                    }
                    continue;
                }
                restore(value, stored, &path)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|item| restore(item, None, prefix)),
        Value::String(text) if contains_sentinel(text) => Err(SentinelAsData {
            key: prefix.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_secret_shows_as_the_sentinel_and_the_rest_as_it_is() {
        let config = json!({
            "gateway": {"port": 1, "auth": {"token": "t", "readToken": "r", "mode": "token"},
                        "remote": {"password": "p"}},
            "models": {"providers": {"x": {"apiKey": "k", "maxTokens": 5,
                                            "tokenRef": {"source": "env", "id": "X_TOKEN"}}}},
            "list": [{"secret": "s"}],
            "empty": {"token": null}
        });
        assert_eq!(
            redact(&config),
            json!({
                "gateway": {"port": 1, "auth": {"token": REDACTED, "readToken": REDACTED, "mode": "token"},
                            "remote": {"password": REDACTED}},
                "models": {"providers": {"x": {"apiKey": REDACTED, "maxTokens": 5,
                                                "tokenRef": {"source": "env", "id": "X_TOKEN"}}}},
                "list": [{"secret": REDACTED}],
                "empty": {"token": null}
            })
        );
    }

    #[test]
    fn the_sentinel_sent_back_keeps_the_stored_value_and_is_refused_as_new_data() {
        let current = json!({"gateway": {"auth": {"token": "stored"}}});
        let mut patch = json!({"gateway": {"auth": {"token": REDACTED}, "port": 2}});
        restore(&mut patch, Some(&current), "").unwrap();
        assert_eq!(
            patch,
            json!({"gateway": {"auth": {"token": "stored"}, "port": 2}})
        );

        for (bad, key) in [
            (
                json!({"gateway": {"auth": {"readToken": REDACTED}}}),
                "gateway.auth.readToken",
            ),
            (json!({"update": {"channel": REDACTED}}), "update.channel"),
            (json!({"x": {"note": format!("a{REDACTED}b")}}), "x.note"),
            (json!({"x": [REDACTED]}), "x"),
        ] {
            let mut patch = bad.clone();
            assert_eq!(
                restore(&mut patch, Some(&current), ""),
                Err(SentinelAsData {
                    key: key.to_owned()
                }),
                "{bad}"
            );
        }
    }
}
