use std::io::Write;

use molt_protocol::ids::ConnId;
use serde_json::json;

use super::*;

fn client(id: &str) -> Actor {
    Actor::client(id, "127.0.0.1:5000", ConnId("1-1".to_owned()))
}

fn log(dir: &tempfile::TempDir) -> AuditLog {
    AuditLog::new(dir.path().join("audit.jsonl"))
}

fn add(log: &AuditLog, action: AuditAction, actor: Actor) -> AuditEntry {
    let e = entry(action, actor, json!({}), AuditOutcome::ok(), None);
    log.append(&e).unwrap();
    e
}

#[test]
fn entries_come_back_newest_first_filtered_and_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir);
    let a = add(&log, AuditAction::ConfigPatch, client("alice"));
    let b = add(&log, AuditAction::UpdateRun, Actor::AutoUpdater);
    let c = add(&log, AuditAction::ConfigPatch, client("bob"));
    let d = add(
        &log,
        AuditAction::SignalRestart,
        Actor::Signal {
            signal: "SIGUSR1".to_owned(),
        },
    );
    let ids = |r: AuditListResult| r.entries.into_iter().map(|e| e.id).collect::<Vec<_>>();

    let all = log.list(&AuditListParams::default()).unwrap();
    assert_eq!(
        ids(all),
        [d.id.clone(), c.id.clone(), b.id.clone(), a.id.clone()]
    );

    let page = log
        .list(&AuditListParams {
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.next_before.as_deref(), Some(c.id.as_str()));
    let next = log
        .list(&AuditListParams {
            limit: Some(2),
            before: page.next_before,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(next.next_before, None);
    assert_eq!(ids(next), [b.id.clone(), a.id.clone()]);

    let patches = log
        .list(&AuditListParams {
            action: Some("config.patch".to_owned()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(patches), [c.id.clone(), a.id.clone()]);
    let by_bob = log
        .list(&AuditListParams {
            actor: Some("bob".to_owned()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(by_bob), std::slice::from_ref(&c.id));
    let auto = log
        .list(&AuditListParams {
            actor: Some("auto-updater".to_owned()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ids(auto), std::slice::from_ref(&b.id));
}

#[test]
fn a_bad_filter_or_cursor_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir);
    add(&log, AuditAction::HoldAcquire, client("x"));
    let err = log
        .list(&AuditListParams {
            action: Some("nope".to_owned()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("action: expected one of update.run"),
        "{err}"
    );
    let err = log
        .list(&AuditListParams {
            before: Some("audit-0".to_owned()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("no entry audit-0"), "{err}");
}

#[test]
fn a_torn_last_line_is_skipped_and_cut_off_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(&dir);
    let first = add(&log, AuditAction::KillSwitch, client("x"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap()
        .write_all(br#"{"id":"audit-torn","at":1,"act"#)
        .unwrap();
    assert_eq!(log.entries().unwrap(), std::slice::from_ref(&first));
    let second = add(&log, AuditAction::KillSwitch, client("x"));
    assert_eq!(log.entries().unwrap(), [first, second]);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains("audit-torn"), "{text}");
}

#[test]
fn retention_keeps_the_newest_entries_within_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::with_retention(
        dir.path().join("audit.jsonl"),
        Retention {
            max_lines: 10,
            max_bytes: 1024 * 1024,
            keep: 4,
        },
    );
    let added: Vec<AuditEntry> = (0..11)
        .map(|_| add(&log, AuditAction::HoldRelease, client("x")))
        .collect();
    let kept = log.entries().unwrap();
    assert_eq!(kept, added[7..], "the newest 4 of 11");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(log.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
