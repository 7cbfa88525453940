//! `update.run` on a git checkout: a local bare upstream gets a new tagged
//! commit; moltd running from the checkout fetches it, checks it out,
//! builds it with the configured build command, waits for the deferral
//! rules (an operator hold), restarts and proves the new version.
//!
//! The checkout is a small repository shaped like molt's (Cargo.toml with
//! the workspace version, daemon/ and shared/ manifests). Its build script
//! stands in for `cargo build --release` by copying the real moltd built
//! at the version its Cargo.toml names, so the test does not compile the
//! workspace a second time.

use std::path::{Path, PathBuf};
use std::process::Command;

use molt_e2e::moltd::{Moltd, command, serving, write_config};
use molt_e2e::process::{COMMAND_TIMEOUT, run};
use molt_e2e::restarts::{READY_WAIT, client};
use molt_e2e::updates::{NEW, OLD, step_names, update_history, update_run, update_status};
use molt_e2e::versions::moltd_binary;
use molt_protocol::method::{HealthResult, HoldAcquireResult};
use molt_protocol::status::StatusResult;
use molt_protocol::update::{InstallMode, RunPhase, UpdateStatus};
use serde_json::json;

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

fn set_version(dir: &Path, version: &str) {
    write(
        &dir.join("Cargo.toml"),
        &format!(
            "[workspace]\nmembers = [\"daemon\", \"shared\"]\n\n[workspace.package]\nversion = \"{version}\"\n"
        ),
    );
}

/// Upstream with `v1.0.0`, a built checkout of it, then `v2.0.0` pushed.
struct Repos {
    checkout: PathBuf,
    bins: PathBuf,
}

fn repos(tmp: &Path) -> Repos {
    repos_with(tmp, BUILD_SH)
}

/// [`repos`] with `v2_build` as the build script of `v2.0.0`.
fn repos_with(tmp: &Path, v2_build: &str) -> Repos {
    let old = moltd_binary(OLD).unwrap();
    moltd_binary(NEW).unwrap();
    let bins = old.parent().unwrap().parent().unwrap().to_path_buf();
    let upstream = tmp.join("upstream.git");
    let dev = tmp.join("dev");
    let checkout = tmp.join("checkout");
    std::fs::create_dir_all(&upstream).unwrap();
    git(&upstream, &["init", "--quiet", "--bare", "-b", "main"]);
    std::fs::create_dir_all(&dev).unwrap();
    git(&dev, &["init", "--quiet", "-b", "main"]);
    set_version(&dev, OLD);
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

    set_version(&dev, NEW);
    write(&dev.join("build.sh"), v2_build);
    git(&dev, &["commit", "--quiet", "-am", "molt 2.0.0"]);
    git(&dev, &["tag", &format!("v{NEW}")]);
    git(&dev, &["push", "--quiet", "origin", "main", "--tags"]);
    Repos {
        checkout: std::fs::canonicalize(checkout).unwrap(),
        bins,
    }
}

/// moltd started from the checkout's build, on a state dir under `tmp`
/// whose build command is the checkout's `build.sh`.
fn start_from_checkout(tmp: &Path, repos: &Repos) -> (PathBuf, Moltd) {
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    write_config(
        &state,
        json!({"update": {"git": {"buildCommand": ["sh", "build.sh"]}}}),
    );
    let mut cmd = command(&entrypoint(repos), &state, &["--port", "0"]);
    cmd.env("MOLT_TEST_BINS", &repos.bins);
    let moltd = Moltd::spawn(cmd);
    assert_eq!(moltd.first.version, OLD);
    (state, moltd)
}

fn entrypoint(repos: &Repos) -> PathBuf {
    repos.checkout.join("target/release/moltd")
}

#[tokio::test]
async fn a_checkout_fetches_builds_waits_for_holds_and_restarts_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = repos(tmp.path());
    let (_state, mut moltd) = start_from_checkout(tmp.path(), &repos);
    let entrypoint = entrypoint(&repos);
    let mut c = client(&moltd.first).await;
    let status: StatusResult = c.request("status", json!({})).await.into_result().unwrap();
    assert_eq!(status.install.surface, InstallMode::Git);

    // A dirty tree is refused and left alone.
    let head = git(&repos.checkout, &["rev-parse", "HEAD"]);
    std::fs::write(
        repos.checkout.join("build.sh"),
        format!("{BUILD_SH}# local edit\n"),
    )
    .unwrap();
    let refused = update_run(&mut c, json!({})).await.unwrap();
    assert_eq!(refused.result.status, UpdateStatus::Error);
    let reason = refused.result.reason.unwrap();
    assert!(reason.starts_with("dirty-tree"), "{reason}");
    assert_eq!(git(&repos.checkout, &["rev-parse", "HEAD"]), head);
    git(&repos.checkout, &["checkout", "--", "build.sh"]);

    // An operator hold defers the restart; the update itself goes ahead.
    let hold: HoldAcquireResult = c
        .request(
            "gateway.hold.acquire",
            json!({"reason": "backup", "ttlMs": 120_000}),
        )
        .await
        .into_result()
        .unwrap();
    let result = update_run(&mut c, json!({"note": "from git"}))
        .await
        .unwrap();
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.result.after.version.as_deref(), Some(NEW));
    let names = step_names(&result);
    for step in ["clean", "fetch", "checkout", "build", "verify"] {
        assert!(names.contains(&step), "{step} missing from {names:?}");
    }
    c.event("restart.deferred").await;
    let health: molt_protocol::method::HealthResult =
        c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        health.pid, moltd.first.pid,
        "the hold keeps the old process"
    );

    c.request("gateway.hold.release", json!({"holdId": hold.hold_id}))
        .await
        .into_result::<serde_json::Value>()
        .unwrap();
    let successor = moltd.next_ready(READY_WAIT).expect("the build starts");
    assert_eq!(successor.version, NEW);
    let status = update_status(&mut client(&successor).await).await;
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.verified.unwrap().running_version, NEW);
    assert_eq!(sentinel.message.as_deref(), Some("from git"));
    assert_eq!(status.last_run.unwrap().phase, RunPhase::Verified);
    let tagged = git(
        &repos.checkout,
        &["rev-parse", &format!("v{NEW}^{{commit}}")],
    );
    assert_eq!(git(&repos.checkout, &["rev-parse", "HEAD"]), tagged);
    assert!(
        !entrypoint.with_file_name("moltd.molt-previous").exists(),
        "the previous binary is retired once the new one is verified"
    );
}

/// What a rollback must restore: HEAD, the branch checked out, and the
/// entrypoint's bytes and mode.
#[derive(Debug, PartialEq, Eq)]
struct Checkout {
    head: String,
    branch: String,
    binary: (String, u32),
    changes: String,
}

impl Checkout {
    fn of(repos: &Repos) -> Checkout {
        use sha2::Digest;
        use std::os::unix::fs::PermissionsExt;
        let path = entrypoint(repos);
        let bytes = std::fs::read(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        Checkout {
            head: git(&repos.checkout, &["rev-parse", "HEAD"]),
            branch: git(&repos.checkout, &["branch", "--show-current"]),
            binary: (hex::encode(sha2::Sha256::digest(&bytes)), mode),
            changes: git(&repos.checkout, &["status", "--porcelain"]),
        }
    }
}

/// v2.0.0's build writes over the binary, then fails.
const FAILING_BUILD_SH: &str = r#"#!/bin/sh
# A build that fails half way, after it has replaced the binary.
mkdir -p target/release
rm -f target/release/moltd
echo 'half-written' > target/release/moltd
echo 'error[E0308]: mismatched types' >&2
exit 101
"#;

#[tokio::test]
async fn a_build_that_fails_restores_head_branch_and_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = repos_with(tmp.path(), FAILING_BUILD_SH);
    let (state, moltd) = start_from_checkout(tmp.path(), &repos);
    let before = Checkout::of(&repos);
    assert_eq!(before.branch, "main");

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(!result.ok, "{result:#?}");
    assert_eq!(result.result.status, UpdateStatus::Error);
    let reason = result.result.reason.clone().unwrap();
    assert!(reason.starts_with("build-failed"), "{reason}");
    assert_eq!(result.restart, None, "no restart");
    let names = step_names(&result);
    assert_eq!(names.last(), Some(&"build"), "{names:?}");

    assert_eq!(Checkout::of(&repos), before, "restored byte for byte");
    let history = update_history(&mut c).await;
    assert_eq!(history[0].phase, RunPhase::RolledBack, "{:#?}", history[0]);
    assert!(!state.join("restart-sentinel.json").exists());
    assert!(!state.join("update-backup.json").exists());
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        (health.version.as_str(), health.pid),
        (OLD, moltd.first.pid)
    );
}

/// v2.0.0's build produces a binary that says 2.0.0 when asked and
/// cannot start.
fn dying_build_sh() -> String {
    format!(
        r#"#!/bin/sh
# Builds a moltd that passes verification and dies at start.
mkdir -p target/release
cat > target/release/moltd.tmp <<'SH'
#!/bin/sh
case "$1" in
  --version) echo 'moltd {NEW}' ;;
  *) echo 'moltd {NEW}: cannot start' >&2; exit 1 ;;
esac
SH
chmod 755 target/release/moltd.tmp
mv target/release/moltd.tmp target/release/moltd
"#
    )
}

#[tokio::test]
async fn a_successor_that_dies_at_start_restores_head_branch_and_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = repos_with(tmp.path(), &dying_build_sh());
    let (state, moltd) = start_from_checkout(tmp.path(), &repos);
    let before = Checkout::of(&repos);

    let mut c = client(&moltd.first).await;
    let result = update_run(&mut c, json!({"restartDelayMs": 0}))
        .await
        .unwrap();
    // A git update answers once its restart is scheduled.
    assert!(result.ok, "{result:#?}");
    assert_eq!(result.result.after.version.as_deref(), Some(NEW));
    loop {
        let progress = c.event("update.progress").await;
        if progress["runId"] == json!(result.run_id) && progress["phase"] == "rolled-back" {
            break;
        }
    }

    assert_eq!(Checkout::of(&repos), before, "restored byte for byte");
    let health: HealthResult = c.request("health", json!({})).await.into_result().unwrap();
    assert_eq!(
        (health.version.as_str(), health.pid),
        (OLD, moltd.first.pid)
    );
    let status = update_status(&mut c).await;
    let run = status.last_run.unwrap();
    assert_eq!(run.phase, RunPhase::RolledBack);
    let reason = run.reason.unwrap();
    assert!(
        reason.starts_with("restart-unhealthy: successor exited"),
        "{reason}"
    );
    let sentinel = status.sentinel.unwrap();
    assert_eq!(sentinel.status, UpdateStatus::Error);
    assert_eq!(sentinel.stats.reason.as_deref(), Some("restart-unhealthy"));
    assert!(sentinel.rolled_back);
    assert!(!state.join("update-backup.json").exists());
    assert_eq!(serving(&state), [moltd.first.pid]);
}

#[tokio::test]
async fn a_stop_before_the_restart_fires_leaves_the_update_for_the_next_start_to_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = repos(tmp.path());
    let (state, mut moltd) = start_from_checkout(tmp.path(), &repos);
    let addr = moltd
        .first
        .socket_addr()
        .expect("READY names a socket address");

    // An operator hold defers the update's restart; then the gateway is
    // stopped.
    let mut c = client(&moltd.first).await;
    c.request(
        "gateway.hold.acquire",
        json!({"reason": "backup", "ttlMs": 120_000}),
    )
    .await
    .into_result::<HoldAcquireResult>()
    .unwrap();
    let result = update_run(&mut c, json!({})).await.unwrap();
    assert!(result.ok, "{result:#?}");
    c.event("restart.deferred").await;
    Moltd::signal(moltd.first.pid, "TERM");
    let exit = moltd.wait_exit(READY_WAIT).expect("moltd stops");
    assert_eq!(exit.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing serves"
    );

    // The build stands, and what the update left tells the next start
    // what to verify.
    let tagged = git(
        &repos.checkout,
        &["rev-parse", &format!("v{NEW}^{{commit}}")],
    );
    assert_eq!(git(&repos.checkout, &["rev-parse", "HEAD"]), tagged);
    assert_eq!(version_of(&entrypoint(&repos)), format!("moltd {NEW}"));
    let sentinel: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("restart-sentinel.json")).unwrap())
            .unwrap();
    assert_eq!(sentinel["payload"]["status"], "ok");
    assert_eq!(sentinel["payload"]["runId"], json!(result.run_id));
    assert_eq!(sentinel["payload"]["verified"], serde_json::Value::Null);
    assert!(
        state.join("update-backup.json").is_file(),
        "the undo record stays"
    );
    let previous = entrypoint(&repos).with_file_name("moltd.molt-previous");
    assert_eq!(version_of(&previous), format!("moltd {OLD}"));

    // The next start runs the new build and verifies it.
    let mut cmd = command(&entrypoint(&repos), &state, &["--port", "0"]);
    cmd.env("MOLT_TEST_BINS", &repos.bins);
    let next = Moltd::spawn(cmd);
    assert_eq!(next.first.version, NEW);
    let status = update_status(&mut client(&next.first).await).await;
    let run = status.last_run.unwrap();
    assert_eq!((run.run_id, run.phase), (result.run_id, RunPhase::Verified));
    let verified = status.sentinel.unwrap().verified.unwrap();
    assert_eq!(
        (verified.running_version.as_str(), verified.pid),
        (NEW, next.first.pid)
    );
    assert!(
        !state.join("update-backup.json").exists(),
        "retired once verified"
    );
    assert!(!previous.exists(), "the previous binary is retired");
}

fn version_of(binary: &Path) -> String {
    let out = Command::new(binary).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
