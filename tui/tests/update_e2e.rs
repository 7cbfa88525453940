//! The console against a moltd that really updates: installed with npm
//! from the test registry (the update engine's fixtures), the operator
//! presses keys in a real terminal, or scripts `molt update`, and sees the
//! verified new version and the new pid.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use molt_e2e::PackageManager;
use molt_e2e::changelogs::entry_line;
use molt_e2e::moltd::{Moltd, command, write_config};
use molt_e2e::process::{COMMAND_TIMEOUT, run};
use molt_e2e::updates::{NEW, OLD, UpdateFixture};
use molt_e2e::versions::moltd_binary;
use serde_json::{Value, json};
use support::pty::Console;

/// The screen's lines that contain `needle`.
fn count(screen: &str, needle: &str) -> usize {
    screen.lines().filter(|l| l.contains(needle)).count()
}

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
    let new_pid = successor.pid;
    let verified = format!("verified: v{NEW} runs as pid {new_pid}");
    // Drawn to the last row: the changes and the steps below them.
    console.wait_for("the verified result, the truth and the changes", |s| {
        s.contains(&verified) && s.contains("more lines;") && s.contains("✓ swap")
    });
    // The whole screen, not one word: each fact once, each step once
    // although the steps arrived as events, in the run's answer and in
    // every update.status after the reconnect.
    let screen = console.text();
    for (line, times) in [
        ("run-".to_owned(), 1),
        (format!("state       ✓ {verified}"), 1),
        (
            format!("restart     handed off: pid {old_pid} v{OLD} → pid {new_pid} v{NEW}, gap"),
            1,
        ),
        (
            format!("claims      sentinel ok: {OLD} → {NEW}; saw {NEW} running as pid {new_pid}"),
            1,
        ),
        (
            format!("live        {NEW} (hello-ok), {NEW} (status), pid {new_pid}"),
            1,
        ),
        (
            format!("verdict     the process runs {NEW}, as the install says"),
            1,
        ),
        (format!("process     new pid {new_pid} (was {old_pid})"), 1),
        // The new tree's changelog, newest first, in the rows the steps
        // leave at 80x24, saying what it had to leave out.
        (
            format!("Changes     {OLD} → {NEW}, 3 releases, newest first"),
            1,
        ),
        (
            "2.0.0       • protocol: A field a client sees.".to_owned(),
            1,
        ),
        ("more lines; a taller terminal shows them".to_owned(), 1),
    ] {
        assert_eq!(count(&screen, &line), times, "{line:?} in\n{screen}");
    }
    let steps: Vec<&str> = screen
        .lines()
        .filter_map(|l| l.trim_start_matches('│').trim().strip_prefix("✓ "))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut unique = steps.clone();
    unique.sort_unstable();
    unique.dedup();
    assert!(steps.len() >= 4, "the run's steps: {steps:?}\n{screen}");
    assert_eq!(
        steps.len(),
        unique.len(),
        "a step listed twice: {steps:?}\n{screen}"
    );
    // The restart is over: neither the shutdown's notice nor the
    // scheduled restart is left.
    assert_eq!(count(&screen, "back in ~"), 0, "{screen}");
    assert_eq!(count(&screen, "respawn in"), 0, "{screen}");

    // A taller terminal shows every entry after OLD up to and including
    // NEW, and nothing before or after them.
    console.resize(40, 120);
    console.wait_for("every change", |s| {
        s.contains("1.1.0       • Entry of 1.1.0.")
    });
    let screen = console.text();
    for (line, times) in [
        ("2.0.0       • protocol: A field a client sees.", 1),
        ("            • Entry of 2.0.0.", 1),
        ("2.0.0-rc.1  • Entry of 2.0.0-rc.1.", 1),
        ("1.1.0       • Entry of 1.1.0.", 1),
        ("Entry of", 3),
        ("more line", 0),
    ] {
        assert_eq!(count(&screen, line), times, "{line:?} in\n{screen}");
    }
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}

fn molt_update(state: &Path, args: &[&str]) -> (i32, Value, String) {
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
    let old_pid = moltd.first.pid;

    // A version that installs, then dies at start: rolled back. Scripts
    // get the outcome on stdout, not only an exit code.
    let (code, json, stderr) = molt_update(&state, &["--tag", "3.0.0"]);
    assert_eq!(code, 1, "a version that dies at start: {json:#} {stderr}");
    assert_eq!(json["ok"], false, "{json:#}\n{stderr}");
    assert_eq!(json["outcome"], "rolled-back", "{json:#}");
    assert_eq!(json["rolledBack"], true, "{json:#}");
    assert!(
        json["runId"].as_str().is_some_and(|id| !id.is_empty()),
        "{json:#}"
    );
    assert!(
        json["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{json:#}"
    );
    assert_eq!(json["before"]["version"], OLD, "{json:#}");
    assert_eq!(json["before"]["pid"], old_pid, "{json:#}");
    assert_eq!(json["claimed"]["version"], "3.0.0", "{json:#}");
    assert_eq!(json.get("changelog"), None, "rolled back: {json:#}");
    // What the new version printed before it died.
    assert_eq!(json["failedStep"]["name"], "restart", "{json:#}");
    assert!(
        json["failedStep"]["stderrTail"]
            .as_str()
            .is_some_and(|t| t.contains("fake moltd 3.0.0: unknown argument")),
        "{json:#}"
    );

    // Nothing to run: still an answer on stdout.
    let (code, json, stderr) = molt_update(&state, &["--tag", "9.9.9"]);
    assert_eq!(code, 1, "an unpublished version: {json:#} {stderr}");
    assert_eq!(
        (json["ok"].as_bool(), json["outcome"].as_str()),
        (Some(false), Some("not-started")),
        "{json:#}"
    );
    assert!(
        json["reason"].as_str().unwrap().contains("9.9.9"),
        "{json:#}"
    );

    let (code, json, stderr) = molt_update(&state, &["--note", "scripted"]);
    assert_eq!(code, 0, "{json:#}\n{stderr}");
    let successor = moltd
        .next_ready(support::pty::PATIENCE)
        .expect("handed off");
    assert_eq!(successor.version, NEW);
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["outcome"], "verified", "{json:#}");
    assert_eq!(json["verified"]["version"], NEW, "{json:#}");
    assert_eq!(json["verified"]["pid"], successor.pid, "{json:#}");
    assert_eq!(json["after"]["pid"], successor.pid, "{json:#}");
    assert_eq!(json["before"]["version"], OLD, "{json:#}");
    // What changed from OLD to NEW: exactly the releases between them.
    let entries: Vec<(&str, &str)> = json["changelog"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("changelog entries: {json:#}"))
        .iter()
        .map(|e| (e["version"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    let versions: Vec<&str> = entries.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, ["2.0.0", "2.0.0-rc.1", "1.1.0"], "{json:#}");
    for (version, text) in entries {
        assert!(text.contains(&entry_line(version)), "{version}: {text}");
    }
    assert_eq!(
        json["changelog"]["entries"][0]["protocol"], true,
        "{json:#}"
    );
}

const BUILD_SH: &str = r#"#!/bin/sh
# Stands in for `cargo build --release`: the moltd built at this version.
set -e
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
mkdir -p target/release
cp "$MOLT_TEST_BINS/$version/moltd" target/release/moltd.tmp
mv target/release/moltd.tmp target/release/moltd
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "molt test")
        .env("GIT_AUTHOR_EMAIL", "test@molt.invalid")
        .env("GIT_COMMITTER_NAME", "molt test")
        .env("GIT_COMMITTER_EMAIL", "test@molt.invalid");
    run(&mut cmd, COMMAND_TIMEOUT)
        .unwrap()
        .stdout
        .trim()
        .to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A checkout of a small repository shaped like molt's, built at [`OLD`]
/// from a bare upstream; returns the checkout, the upstream and the dir
/// of cached moltd builds.
fn checkout(tmp: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let old = moltd_binary(OLD).unwrap();
    let bins = old.parent().unwrap().parent().unwrap().to_path_buf();
    let upstream = tmp.join("upstream.git");
    let dev = tmp.join("dev");
    let checkout = tmp.join("checkout");
    std::fs::create_dir_all(&upstream).unwrap();
    git(&upstream, &["init", "--quiet", "--bare", "-b", "main"]);
    std::fs::create_dir_all(&dev).unwrap();
    git(&dev, &["init", "--quiet", "-b", "main"]);
    write(
        &dev.join("Cargo.toml"),
        &format!(
            "[workspace]\nmembers = [\"daemon\", \"shared\"]\n\n[workspace.package]\nversion = \"{OLD}\"\n"
        ),
    );
    write(
        &dev.join("daemon/Cargo.toml"),
        "[package]\nname = \"molt-daemon\"\n",
    );
    write(
        &dev.join("shared/Cargo.toml"),
        "[package]\nname = \"molt-protocol\"\n",
    );
    write(&dev.join("build.sh"), BUILD_SH);
    write(&dev.join(".gitignore"), "/target\n");
    git(&dev, &["add", "."]);
    git(&dev, &["commit", "--quiet", "-m", "molt 1.0.0"]);
    git(&dev, &["tag", &format!("v{OLD}")]);
    git(
        &dev,
        &["remote", "add", "origin", upstream.to_str().unwrap()],
    );
    git(&dev, &["push", "--quiet", "origin", "main", "--tags"]);
    git(
        tmp,
        &[
            "clone",
            "--quiet",
            upstream.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    let mut build = Command::new("sh");
    build
        .arg("build.sh")
        .current_dir(&checkout)
        .env("MOLT_TEST_BINS", &bins);
    run(&mut build, COMMAND_TIMEOUT).unwrap();
    (std::fs::canonicalize(checkout).unwrap(), upstream, bins)
}

/// A checkout whose upstream is gone: git's first line names the problem
/// ("does not appear to be a git repository"), its last is advice ("and
/// the repository exists."). The console and `molt update` name the first.
///
/// The checkout already fetched v[`NEW`] (HEAD stays at [`OLD`]), so the
/// dry run, which reads the refs fetched so far and never fetches, plans
/// it; the run's own fetch then fails.
#[test]
fn a_failing_git_fetch_is_named_by_its_first_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (checkout, upstream, bins) = checkout(tmp.path());
    let dev = tmp.path().join("dev");
    write(
        &dev.join("Cargo.toml"),
        &format!(
            "[workspace]\nmembers = [\"daemon\", \"shared\"]\n\n[workspace.package]\nversion = \"{NEW}\"\n"
        ),
    );
    git(&dev, &["commit", "--quiet", "-am", "molt 2.0.0"]);
    git(&dev, &["tag", &format!("v{NEW}")]);
    git(&dev, &["push", "--quiet", "origin", "main", "--tags"]);
    git(&checkout, &["fetch", "--quiet", "--tags", "origin"]);
    std::fs::remove_dir_all(&upstream).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    write_config(
        &state,
        json!({"update": {"git": {"buildCommand": ["sh", "build.sh"]}}}),
    );
    let mut cmd = command(
        &checkout.join("target/release/moltd"),
        &state,
        &["--port", "0"],
    );
    cmd.env("MOLT_TEST_BINS", &bins);
    let _moltd = Moltd::spawn(cmd);
    let problem = format!(
        "fatal: '{}' does not appear to be a git repository",
        upstream.display()
    );

    let (code, json, stderr) = molt_update(&state, &[]);
    assert_eq!(code, 1, "{json:#}\n{stderr}");
    assert_eq!(json["outcome"], "failed", "{json:#}");
    assert_eq!(json["claimed"]["version"], NEW, "{json:#}");
    let reason = json["reason"].as_str().unwrap();
    assert_eq!(reason, format!("fetch-failed: {problem}"), "{json:#}");
    assert!(
        stderr.contains(&format!("molt: update failed: fetch-failed: {problem}")),
        "{stderr}"
    );

    let mut console = Console::start(40, 120, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    console.wait_for("the overview", |s| s.contains("connected"));
    console.press("u");
    console.wait_for("the dialog with the planned build", |s| s.contains(NEW));
    console.press("\t");
    console.press("\r");
    console.wait_for("the failure naming the problem", |s| {
        s.contains("does not appear to be a git repository") && s.contains("fetch-failed")
    });
    // The state names git's first line; the full stderr is below it once.
    let screen = console.text();
    for (line, times) in [
        (format!("state       ✗ failed: fetch-failed: {problem}"), 1),
        ("✗ fetch".to_owned(), 1),
        ("✓ clean".to_owned(), 1),
        (problem.clone(), 2),
        ("and the repository exists.".to_owned(), 1),
    ] {
        assert_eq!(count(&screen, &line), times, "{line:?} in\n{screen}");
    }
    let state_line = screen.lines().find(|l| l.contains("state ")).unwrap();
    assert!(
        !state_line.contains("and the repository exists"),
        "{screen}"
    );
    console.press("\x1b");
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}

/// An operator in an 80×24 terminal updates to a version that installs,
/// then dies at start. moltd rolls back without a handoff; the console
/// shows what the new version printed under its failed step, and the
/// Update screen and the Overview show the gateway as it is now: the old
/// pid and version, idle, nothing pending.
#[test]
fn a_version_that_dies_at_start_is_explained_and_no_screen_is_stale() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, moltd) = fx.start_moltd(&global, json!({})).unwrap();
    let old_pid = moltd.first.pid;

    let mut console = Console::start(24, 80, &[("OPENCLAW_STATE_DIR", state.as_os_str())]);
    console.wait_for("the overview", |s| {
        s.contains("connected") && s.contains(&format!("pid          {old_pid},"))
    });
    console.press("u");
    console.wait_for("the confirm dialog", |s| s.contains(NEW));
    console.press("t");
    console.press("3.0.0\r");
    console.wait_for("the dialog resolved to the broken version", |s| {
        s.contains(&format!("{OLD} → 3.0.0")) || s.contains(&format!("v{OLD} → v3.0.0"))
    });
    console.press("\t");
    console.press("\r");
    let said = "fake moltd 3.0.0: unknown argument";
    console.wait_for("the rollback with what the new version printed", |s| {
        s.contains("rolled back") && s.contains(said) && s.contains("✗ restart")
    });
    let screen = console.text();
    for (line, times) in [
        (format!("rolled back to {OLD}"), 1),
        ("✗ restart".to_owned(), 1),
        ("restart failed: ".to_owned(), 1),
        (said.to_owned(), 1),
        // The scheduled restart is over: no "respawn in 0 ms" left.
        ("respawn in".to_owned(), 0),
        ("back in ~".to_owned(), 0),
    ] {
        assert_eq!(count(&screen, &line), times, "{line:?} in\n{screen}");
    }
    let steps: Vec<&str> = screen
        .lines()
        .map(|l| l.trim_start_matches('│').trim())
        .filter_map(|l| l.strip_prefix("✓ ").or(l.strip_prefix("✗ ")))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut unique = steps.clone();
    unique.sort_unstable();
    unique.dedup();
    assert!(steps.len() >= 4, "the run's steps: {steps:?}\n{screen}");
    assert_eq!(steps.len(), unique.len(), "a step listed twice\n{screen}");

    console.press("o");
    console.wait_for("the overview of the gateway serving on, idle", |s| {
        s.contains("phase        idle") && s.contains("pending      none")
    });
    let screen = console.text();
    for (line, times) in [
        (format!("version      {OLD}"), 1),
        (format!("pid          {old_pid},"), 1),
        ("phase        idle".to_owned(), 1),
        ("pending      none".to_owned(), 1),
        ("in flight".to_owned(), 0),
        (
            "last failure successor exited before it was ready".to_owned(),
            1,
        ),
        (format!("it said    {said}"), 1),
    ] {
        assert_eq!(count(&screen, &line), times, "{line:?} in\n{screen}");
    }
    // Taller than 80x24 with the failure explained: the rest is a scroll
    // away, and the box says so.
    assert_eq!(count(&screen, "↓ more"), 1, "{screen}");
    for _ in 0..10 {
        console.press("j");
    }
    console.wait_for("the end of the overview", |s| s.contains("↑ more"));
    let screen = console.text();
    assert_eq!(count(&screen, "latest run"), 1, "{screen}");
    assert_eq!(count(&screen, "rolled back"), 1, "{screen}");
    console.press("q");
    assert!(console.child.wait().unwrap().success());
}
