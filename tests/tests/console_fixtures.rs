//! The console's fixtures of moltd (`tui/tests/fixtures/moltd/`) still have
//! the shape a real moltd sends: recorded afresh and compared with the
//! committed files (see `molt_e2e::console_fixtures::shape`).

use molt_e2e::console_fixtures::{dir, read, record, shape};

const REGENERATE: &str = "cargo run -p molt-e2e --bin record-console-fixtures";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_fixtures_have_the_shape_moltd_sends_now() {
    let fresh = record().await.unwrap();
    let committed = dir();
    let mut stale = Vec::new();
    for (name, value) in &fresh {
        match read(&committed, name) {
            Ok(kept) if shape(&kept) == shape(value) => {}
            Ok(kept) => stale.push(format!(
                "{name}: committed shape\n{}\nmoltd now sends\n{}",
                serde_json::to_string_pretty(&shape(&kept)).unwrap(),
                serde_json::to_string_pretty(&shape(value)).unwrap()
            )),
            Err(e) => stale.push(format!("{name}: {e:#}")),
        }
    }
    let mut files: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = fresh.keys().map(|n| format!("{n}.json")).collect();
    expected.sort();
    assert_eq!(
        files, expected,
        "fixtures no recording makes: run `{REGENERATE}`"
    );
    assert!(
        stale.is_empty(),
        "the console's fixtures are stale, run `{REGENERATE}`:\n{}",
        stale.join("\n\n")
    );
}

#[test]
fn a_change_of_branch_or_field_changes_the_shape() {
    use serde_json::json;
    let dry_run = json!({"result": {"status": "skipped", "reason": "dry-run: would install x", "steps": [{"exitCode": 0}]}});
    let more_steps = json!({"result": {"status": "skipped", "reason": "dry-run: would install y", "steps": [{"exitCode": 0}, {"exitCode": 1}]}});
    assert_eq!(shape(&dry_run), shape(&more_steps));
    for other in [
        json!({"result": {"status": "ok", "reason": "dry-run: would install x", "steps": [{"exitCode": 0}]}}),
        json!({"result": {"status": "skipped", "reason": "up-to-date", "steps": [{"exitCode": 0}]}}),
        json!({"result": {"status": "skipped", "reason": "dry-run: would install x", "steps": [{"code": 0}]}}),
        json!({"result": {"status": "skipped", "reason": "dry-run: x", "steps": [{"exitCode": "0"}]}}),
    ] {
        assert_ne!(shape(&dry_run), shape(&other), "{other}");
    }
}
