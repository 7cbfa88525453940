//! `molt audit [--json]`: the gateway's audit trail, newest first.

use std::io::Write;

use molt_protocol::Method;
use molt_protocol::audit::{AuditEntry, AuditListParams, AuditListResult};

use super::{CliError, pretty, request_once, target};
use crate::format;
use crate::target::Overrides;

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditArgs {
    pub limit: Option<u32>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub before: Option<String>,
    pub json: bool,
}

pub async fn audit(
    overrides: &Overrides,
    args: &AuditArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let target = target(overrides)?;
    let params = AuditListParams {
        limit: args.limit,
        before: args.before.clone(),
        action: args.action.clone(),
        actor: args.actor.clone(),
        since: None,
    };
    let value = serde_json::to_value(&params).map_err(|e| CliError::Other(e.to_string()))?;
    let answer = request_once(&target, Method::AuditList, Some(value)).await?;
    let listed: AuditListResult = serde_json::from_value(answer)
        .map_err(|e| CliError::Other(format!("unexpected audit.list answer: {e}")))?;
    let text = if args.json {
        pretty(&listed)?
    } else {
        render(&listed)
    };
    writeln!(out, "{text}").map_err(CliError::Output)
}

/// One line per entry: when, what, who, how it ended; then where the next
/// page starts.
pub fn render(listed: &AuditListResult) -> String {
    if listed.entries.is_empty() {
        return "no changes recorded".to_owned();
    }
    let mut lines: Vec<String> = listed.entries.iter().map(line).collect();
    if let Some(before) = &listed.next_before {
        lines.push(format!("older entries: molt audit --before {before}"));
    }
    lines.join("\n")
}

fn line(entry: &AuditEntry) -> String {
    let outcome = if entry.outcome.ok {
        "ok".to_owned()
    } else {
        let code = entry.outcome.code.as_deref().unwrap_or("failed");
        match entry.outcome.message.as_deref() {
            Some(message) if !message.is_empty() => format!("{code}: {message}"),
            _ => code.to_owned(),
        }
    };
    let params = match &entry.params {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        params => format!(" {params}"),
    };
    format!(
        "{}  {}{params}  by {}  {outcome}",
        format::timestamp(entry.at),
        entry.action.as_str(),
        entry.actor,
    )
}

#[cfg(test)]
mod tests {
    use molt_protocol::actor::Actor;
    use molt_protocol::audit::{AuditAction, AuditOutcome};
    use molt_protocol::ids::ConnId;
    use serde_json::json;

    use super::*;

    #[test]
    fn each_entry_says_when_what_who_and_how_it_ended() {
        let listed = AuditListResult {
            entries: vec![
                AuditEntry {
                    id: "audit-2".to_owned(),
                    at: 1_795_545_710_506,
                    action: AuditAction::UpdateRun,
                    actor: Actor::AutoUpdater,
                    params: json!({"tag": "2.0.0"}),
                    outcome: AuditOutcome::failed("error", "restart-unhealthy: it exited"),
                    run_id: None,
                    pid: 1,
                },
                AuditEntry {
                    id: "audit-1".to_owned(),
                    at: 1_795_545_700_000,
                    action: AuditAction::KillSwitch,
                    actor: Actor::client("ops", "127.0.0.1:5000", ConnId("9-1".to_owned())),
                    params: json!({"enabled": true}),
                    outcome: AuditOutcome::ok(),
                    run_id: None,
                    pid: 1,
                },
            ],
            next_before: Some("audit-1".to_owned()),
        };
        let text = render(&listed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].ends_with(
                "update.run {\"tag\":\"2.0.0\"}  by auto-updater  error: restart-unhealthy: it exited"
            ),
            "{text}"
        );
        assert!(
            lines[1].ends_with(
                "update.noAutoUpdate.set {\"enabled\":true}  by client ops at 127.0.0.1:5000 (9-1)  ok"
            ),
            "{text}"
        );
        assert_eq!(lines[2], "older entries: molt audit --before audit-1");
    }
}
