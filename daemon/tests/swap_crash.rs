//! A real `kill -9` of moltd at each operation of the package swap, for
//! npm, pnpm and bun: moltd built with the `fault-injection` feature
//! SIGKILLs itself right before the swap's N-th operation (N = 1, 2, …
//! until an update gets through). After each crash the entrypoint starts
//! moltd again, which finishes or reverses the swap from its journal:
//! entrypoint, manifest and running version agree, no stage or journal is
//! left, the run is resolved, a previous tree is kept, and the next update
//! works.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use molt_e2e::moltd::{Moltd, command};
use molt_e2e::restarts::{READY_WAIT, client};
use molt_e2e::tree::no_stage_paths;
use molt_e2e::updates::{NEW, OLD, UPDATE_WAIT, UpdateFixture, update_history};
use molt_e2e::versions::{KILL_SWAP_OP, moltd_binary_with_faults};
use molt_e2e::{GlobalInstall, PackageManager};
use molt_protocol::update::RunPhase;
use serde_json::json;

/// Which of the two versions `version` is.
fn which(version: String) -> &'static str {
    if version == OLD { OLD } else { NEW }
}

fn other(version: &str) -> &'static str {
    if version == OLD { NEW } else { OLD }
}

fn start(
    fx: &UpdateFixture,
    global: &GlobalInstall,
    state: &Path,
    kill_at: Option<usize>,
) -> Moltd {
    let mut cmd = command(&global.bin, state, &["--port", "0"]);
    cmd.envs(fx.moltd_env(global.manager).unwrap());
    if let Some(n) = kill_at {
        cmd.env(KILL_SWAP_OP, n.to_string());
    }
    Moltd::spawn(cmd)
}

fn manifest_version(global: &GlobalInstall) -> String {
    let text = std::fs::read(global.package_dir.join("package.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&text).unwrap();
    manifest["version"].as_str().unwrap().to_owned()
}

fn entrypoint_version(global: &GlobalInstall) -> String {
    let out = Command::new(&global.bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The previous version's tree is still on disk for a manual rollback.
fn previous_tree_kept(global: &GlobalInstall, version: &str) -> bool {
    let live = std::fs::canonicalize(&global.package_dir).unwrap();
    let dirs: Vec<_> = match global.manager {
        // `.moltd.molt-backup-<run>` beside the root.
        PackageManager::Npm | PackageManager::Bun => std::fs::read_dir(live.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".moltd.molt-backup-")
            })
            .map(|e| e.path().join("package.json"))
            .collect(),
        // The old `.pnpm/@molt+moltd@<version>` directory.
        PackageManager::Pnpm => {
            let store = live.ancestors().nth(4).unwrap();
            vec![store.join(format!(
                "@molt+moltd@{version}/node_modules/@molt/moltd/package.json"
            ))]
        }
    };
    dirs.iter().any(|manifest| {
        std::fs::read_to_string(manifest).is_ok_and(|t| t.contains(&format!("\"{version}\"")))
    })
}

async fn a_kill_9_at_each_swap_operation_is_recovered(manager: PackageManager) {
    let builds = [OLD, NEW].map(|v| (v, moltd_binary_with_faults(v).unwrap()));
    let fx = UpdateFixture::start_with(&builds).unwrap();
    let global = fx.install(manager, OLD).unwrap();
    let state = fx.state_dir(&global);
    std::fs::create_dir_all(&state).unwrap();
    molt_e2e::moltd::write_config(&state, json!({}));
    let mut running = OLD;
    for kill_at in 1..=12 {
        let target = other(running);
        let mut moltd = start(&fx, &global, &state, Some(kill_at));
        assert_eq!(moltd.first.version, running);
        let mut c = client(&moltd.first).await;
        let id = c
            .try_send_request("update.run", json!({"tag": target}))
            .await
            .expect("the request is sent");
        // Killed mid-swap, the connection closes without an answer.
        // An install says nothing until it ends: wait as long as one may take.
        if let Some(answer) = c.try_response(&id, UPDATE_WAIT).await {
            // Past the last operation: the update went through.
            assert!(kill_at > 2, "{manager}: a swap has operations");
            let result: molt_protocol::method::UpdateRunResult = answer.into_result().unwrap();
            assert!(result.ok, "{manager}: {result:#?}");
            return;
        }
        let exit = moltd.child.wait().unwrap();
        // pnpm's bin is a shell that runs moltd as its child: it reports
        // the kill as 128 + 9.
        let killed = exit.signal() == Some(9) || exit.code() == Some(128 + 9);
        assert!(
            killed,
            "{manager}: killed before operation {kill_at}: {exit:?}"
        );
        drop(moltd);

        let restarted = start(&fx, &global, &state, None);
        let now = restarted.first.version.clone();
        let at = format!("{manager}, killed before operation {kill_at}");
        // The start finishes what the crash left once it serves; the run
        // it resolves last says when.
        let mut c = client(&restarted.first).await;
        let deadline = std::time::Instant::now() + READY_WAIT;
        let runs = loop {
            let runs = update_history(&mut c).await;
            if runs[0].phase.is_terminal() {
                break runs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{at}: run never resolved"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(now == running || now == target, "{at}: runs {now}");
        assert_eq!(manifest_version(&global), now, "{at}: manifest");
        assert_eq!(
            entrypoint_version(&global),
            format!("moltd {now}"),
            "{at}: entrypoint"
        );
        assert!(
            !state.join("update-swap.json").exists(),
            "{at}: journal left"
        );
        // Leftover stages go in the start's clean-up, after the first
        // connection: wait for it.
        let deadline = std::time::Instant::now() + READY_WAIT;
        while let Err(e) = no_stage_paths(&global.prefix) {
            assert!(std::time::Instant::now() < deadline, "{at}: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let expected = if now == target {
            RunPhase::Verified
        } else {
            RunPhase::Failed
        };
        assert_eq!(runs[0].phase, expected, "{at}: {:#?}", runs[0]);
        if now == target {
            assert!(previous_tree_kept(&global, running), "{at}: previous tree");
        }

        // The next round updates from whichever version runs now; the last
        // round, with no kill left, shows an update goes through after
        // all that.
        drop(restarted);
        wait_stopped(&state);
        running = which(now);
    }
    panic!("{manager}: still killed after 12 operations");
}

/// Waits (bounded) until no moltd serves `state`.
fn wait_stopped(state: &Path) {
    let deadline = std::time::Instant::now() + READY_WAIT;
    while !molt_e2e::moltd::serving(state).is_empty() {
        assert!(std::time::Instant::now() < deadline, "moltd still serves");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn npm_a_kill_9_at_each_swap_operation_is_recovered() {
    a_kill_9_at_each_swap_operation_is_recovered(PackageManager::Npm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pnpm_a_kill_9_at_each_swap_operation_is_recovered() {
    a_kill_9_at_each_swap_operation_is_recovered(PackageManager::Pnpm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bun_a_kill_9_at_each_swap_operation_is_recovered() {
    a_kill_9_at_each_swap_operation_is_recovered(PackageManager::Bun).await;
}
