//! What goes into the audit trail for a request: which methods change
//! something, what was asked (without secrets), and how it ended.

use molt_protocol::Request;
use molt_protocol::audit::{AuditAction, AuditOutcome};
use molt_protocol::error::ErrorShape;
use molt_protocol::ids::RunId;
use serde_json::{Map, Value, json};

/// Leaves of a config patch kept per entry.
const MAX_PATCH_LEAVES: usize = 64;
/// Characters kept of a string value in a patch.
const MAX_PATCH_VALUE: usize = 200;
const REDACTED: &str = "[redacted]";

/// The action and its params, for a request that changes something; `None`
/// for reads and dry runs. A patch's values that hold one of `secrets`
/// (the stored ones) are redacted wherever they are sent.
pub fn described(request: &Request, secrets: &[String]) -> Option<(AuditAction, Value)> {
    Some(match request {
        Request::UpdateRun(p) if p.dry_run == Some(true) => return None,
        Request::UpdateRun(p) => (
            AuditAction::UpdateRun,
            serde_json::to_value(p).unwrap_or_default(),
        ),
        Request::ConfigPatch(p) => (AuditAction::ConfigPatch, patch_summary(&p.raw, secrets)),
        Request::RestartRequest(p) => (
            AuditAction::RestartRequest,
            serde_json::to_value(p).unwrap_or_default(),
        ),
        Request::NoAutoUpdateSet(p) => (AuditAction::KillSwitch, json!({ "enabled": p.enabled })),
        Request::HoldAcquire(p) => (
            AuditAction::HoldAcquire,
            serde_json::to_value(p).unwrap_or_default(),
        ),
        Request::HoldRelease(p) => (
            AuditAction::HoldRelease,
            serde_json::to_value(p).unwrap_or_default(),
        ),
        _ => return None,
    })
}

/// How an answered request ended, and the run it started.
pub fn outcome(result: &Result<Value, ErrorShape>) -> (AuditOutcome, Option<RunId>) {
    match result {
        Err(error) => (
            AuditOutcome::failed(error.code.as_str(), &error.message),
            None,
        ),
        Ok(payload) => {
            let run_id = payload
                .get("runId")
                .and_then(Value::as_str)
                .map(RunId::from);
            let ok = payload.get("ok").and_then(Value::as_bool).unwrap_or(true);
            if ok {
                return (AuditOutcome::ok(), run_id);
            }
            let result = payload.get("result");
            let field = |name| result.and_then(|r| r.get(name)).and_then(Value::as_str);
            let outcome = AuditOutcome::failed(
                field("status").unwrap_or("error"),
                field("reason").unwrap_or_default(),
            );
            (outcome, run_id)
        }
    }
}

/// `{"changes": {"update.channel": "beta", "gateway.auth.token":
/// "[redacted]"}}`: the patch's leaves by dotted path, secrets redacted,
/// bounded in count and length.
fn patch_summary(raw: &str, secrets: &[String]) -> Value {
    // Bounded before the recursive parser sees it, as config.patch does.
    let parsed = crate::config::limits::check(raw)
        .ok()
        .and_then(|()| json5::from_str::<Value>(raw).ok());
    let Some(Value::Object(patch)) = parsed else {
        return json!({ "unparsable": format!("{} characters", raw.chars().count()) });
    };
    let mut changes = Map::new();
    let mut more = 0usize;
    leaves(&patch, "", &mut |path, value| {
        let value = match value.as_str() {
            Some(text) if secrets.iter().any(|s| text.contains(s.as_str())) => json!(REDACTED),
            _ => value,
        };
        if changes.len() < MAX_PATCH_LEAVES {
            changes.insert(path, value);
        } else {
            more += 1;
        }
    });
    let mut summary = json!({ "changes": changes });
    if more > 0 {
        summary["moreChanges"] = json!(more);
    }
    summary
}

fn leaves(object: &Map<String, Value>, prefix: &str, out: &mut dyn FnMut(String, Value)) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        // One rule for what a secret key is, the one config.get redacts by.
        if molt_protocol::secret::is_secret_key(key) {
            out(path, json!(REDACTED));
            continue;
        }
        match value {
            Value::Object(inner) if !inner.is_empty() => leaves(inner, &path, out),
            Value::String(s) => out(
                path,
                json!(s.chars().take(MAX_PATCH_VALUE).collect::<String>()),
            ),
            Value::Array(_) | Value::Object(_) => {
                let text = value.to_string();
                out(
                    path,
                    json!(text.chars().take(MAX_PATCH_VALUE).collect::<String>()),
                );
            }
            other => out(path, other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use molt_protocol::method::ConfigPatchParams;

    use super::*;

    fn described_plain(request: &Request) -> Option<(AuditAction, Value)> {
        described(request, &[])
    }

    #[test]
    fn a_stored_secret_copied_under_any_key_is_redacted() {
        let secret = "sk-live-0123456789abcdef".to_owned();
        let raw = format!(
            r#"{{update: {{git: {{buildCommand: ["echo", "{secret}"]}}}}, x: "a {secret}"}}"#
        );
        let (_, params) = described(
            &Request::ConfigPatch(ConfigPatchParams {
                raw,
                base_hash: "h".to_owned(),
            }),
            std::slice::from_ref(&secret),
        )
        .unwrap();
        assert_eq!(
            params,
            json!({"changes": {"update.git.buildCommand": "[redacted]", "x": "[redacted]"}})
        );
    }

    #[test]
    fn a_patch_is_written_down_by_path_with_its_secrets_redacted() {
        let raw = r#"{gateway: {auth: {token: "s3cret"}, port: 18790}, update: {channel: "beta"}, models: {providers: {x: {apiKey: "k"}}}}"#;
        let (action, params) = described_plain(&Request::ConfigPatch(ConfigPatchParams {
            raw: raw.to_owned(),
            base_hash: "h".to_owned(),
        }))
        .unwrap();
        assert_eq!(action, AuditAction::ConfigPatch);
        assert_eq!(
            params,
            json!({"changes": {
                "gateway.auth.token": "[redacted]",
                "gateway.port": 18790,
                "update.channel": "beta",
                "models.providers.x.apiKey": "[redacted]",
            }})
        );
        assert!(!params.to_string().contains("s3cret"));
    }

    #[test]
    fn a_patch_nested_past_the_config_limit_is_not_parsed() {
        let raw = format!("{}{}", "{\"a\":".repeat(200_000), "}".repeat(200_000));
        let (_, params) = described_plain(&Request::ConfigPatch(ConfigPatchParams {
            raw,
            base_hash: "h".to_owned(),
        }))
        .unwrap();
        assert_eq!(params, json!({"unparsable": "1200000 characters"}));
    }

    #[test]
    fn reads_and_dry_runs_are_not_changes() {
        assert!(described_plain(&Request::Status).is_none());
        let dry = molt_protocol::method::UpdateRunParams {
            dry_run: Some(true),
            ..Default::default()
        };
        assert!(described_plain(&Request::UpdateRun(dry)).is_none());
    }

    #[test]
    fn a_failed_run_names_its_status_and_reason() {
        let payload = json!({"ok": false, "runId": "run-1", "result": {"status": "error", "reason": "install-failed: npm exit 1"}});
        let (outcome, run) = outcome(&Ok(payload));
        assert_eq!(run, Some(RunId::from("run-1")));
        assert_eq!(
            outcome,
            AuditOutcome::failed("error", "install-failed: npm exit 1")
        );
    }
}
