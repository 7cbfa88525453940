//! The console against a moltd that really updates: installed with npm
//! from the test registry (the update engine's fixtures), the operator
//! presses keys in a real terminal, or scripts `molt update`, and sees the
//! verified new version and the new pid.

mod support;

use molt_e2e::PackageManager;
use molt_e2e::updates::{NEW, OLD, UpdateFixture};
use serde_json::{Value, json};
use support::pty::Console;

#[test]
fn the_console_runs_an_update_and_shows_the_verified_new_version() {
    let fx = UpdateFixture::start().unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let old_pid = moltd.first.pid;

    let mut console = Console::start(24, 80, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    console.wait_for("the overview", |s| {
        s.contains("connected") && s.contains(&format!("pid          {old_pid},"))
    });
    console.press("u");
    console.wait_for("the confirm dialog with the resolved target", |s| {
        s.contains(&format!("{OLD} → {NEW}")) || s.contains(&format!("v{OLD} → v{NEW}"))
    });
    // Cancel is selected: move to Update, then take it.
    console.press("\t");
    console.press("\r");
    let successor = moltd
        .next_ready(support::pty::PATIENCE)
        .expect("the new version starts");
    assert_eq!(successor.version, NEW);
    let verified = format!("verified: v{NEW} runs as pid {}", successor.pid);
    console.wait_for("the verified result", |s| s.contains(&verified));
    assert!(
        console.text().contains(&format!("pid {old_pid}")),
        "{}",
        console.text()
    );
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}

fn molt_update(state: &std::path::Path, args: &[&str]) -> (i32, Value, String) {
    let out = support::molt()
        .env("OPENCLAW_STATE_DIR", state)
        .args(["update", "--yes", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn molt_update_exits_0_only_for_a_verified_new_version() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();

    let (code, json, stderr) = molt_update(&state, &["--tag", "3.0.0"]);
    assert_eq!(code, 1, "a version that dies at start: {json:#} {stderr}");
    let (code, json, stderr) = molt_update(&state, &["--tag", "9.9.9"]);
    assert_eq!(code, 1, "an unpublished version: {json:#} {stderr}");

    let (code, json, stderr) = molt_update(&state, &["--note", "scripted"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let successor = moltd
        .next_ready(support::pty::PATIENCE)
        .expect("handed off");
    assert_eq!(successor.version, NEW);
    assert!(json.to_string().contains(NEW), "{json:#}");
}
