//! Restarts with the real binary: a handoff never refuses a connection,
//! a failing successor leaves the old process serving, restarts leak
//! nothing, and a supervisor never loops on a lock or port conflict.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::moltd::{self, Moltd, Ready};
use common::restarts::{Probe, READY_WAIT, client, force_restart, status, wait_for_failure};
use molt_e2e::supervisor;
use serde_json::{Value, json};

const RESPAWN: &[&str] = &["--port", "0", "--restart-mode", "respawn"];

#[tokio::test(flavor = "multi_thread")]
async fn a_forced_restart_hands_off_without_refusing_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut moltd = moltd::start(dir.path(), RESPAWN);
    let first = moltd.first.clone();
    let probe = Probe::start(first.addr.parse().unwrap());

    let mut old = client(&first).await;
    let scheduled = force_restart(&mut old).await;
    assert_eq!(scheduled["mode"], "respawn");
    assert_eq!(scheduled["coalesced"], false);

    let shutdown = old.event("shutdown").await;
    assert_eq!(shutdown["reason"], "restart: test");
    assert_eq!(old.close_code().await, Some(1012));

    let next = moltd.next_ready(READY_WAIT).expect("successor READY");
    assert_ne!(next.pid, first.pid);
    assert_eq!(next.addr, first.addr, "same socket");
    let exit = moltd.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the old process exits cleanly");

    let health: Value = client(&next)
        .await
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], next.pid);
    let (ok, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "connections refused during the handoff");
    assert!(ok > 0);

    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("gateway.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["pid"], next.pid, "the successor claims the lock file");
    assert_eq!(moltd::serving(dir.path()), vec![next.pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_that_exits_leaves_the_old_process_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(&state, json!({"gateway": {"reload": {"cooldownMs": 0}}}));
    let entrypoint = moltd::private_entrypoint(dir.path());
    let mut moltd = Moltd::start_from(&entrypoint, &state, RESPAWN);
    let first = moltd.first.clone();

    moltd::replace_with_script(&entrypoint, "echo broken >&2\nexit 1");
    force_restart(&mut client(&first).await).await;
    let reason = wait_for_failure(&first).await;
    assert!(reason.contains("exited"), "{reason}");
    assert!(reason.contains("exit status: 1"), "{reason}");

    let now = status(&first).await;
    assert_eq!(now.pid, first.pid, "the old process still serves");
    assert_eq!(now.restart.phase, molt_protocol::status::RestartPhase::Idle);
    assert_eq!(moltd::serving(&state), vec![first.pid]);
    let log = std::fs::read_dir(state.join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("restart failed"), "the log says why");

    // Nothing stays in flight: with the entrypoint fixed, the next one works.
    std::fs::copy(moltd::MOLTD, &entrypoint).unwrap();
    force_restart(&mut client(&first).await).await;
    let next = moltd.next_ready(READY_WAIT).expect("successor READY");
    assert_ne!(next.pid, first.pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_that_never_gets_ready_is_stopped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(
        &state,
        json!({"gateway": {"reload": {"successorTimeoutMs": 300}}}),
    );
    let entrypoint = moltd::private_entrypoint(dir.path());
    let moltd = Moltd::start_from(&entrypoint, &state, RESPAWN);
    let first = moltd.first.clone();

    moltd::replace_with_script(&entrypoint, "exec sleep 600 # moltd stand-in");
    force_restart(&mut client(&first).await).await;
    let reason = wait_for_failure(&first).await;
    assert!(reason.contains("not ready"), "{reason}");
    assert_eq!(status(&first).await.pid, first.pid);
    assert_eq!(
        moltd::serving(&state),
        vec![first.pid],
        "the stand-in was stopped"
    );
}

struct OpenFds {
    /// Targets of every non-socket fd, sorted (pipes and anon inodes by kind).
    files: Vec<String>,
    sockets: usize,
}

fn open_fds(pid: u32) -> OpenFds {
    let mut files = Vec::new();
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("socket:") {
            sockets += 1;
        } else {
            files.push(target.split(':').next().unwrap_or_default().to_owned());
        }
    }
    files.sort();
    OpenFds { files, sockets }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_restarts_leave_no_extra_processes_fds_or_files() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(
        dir.path(),
        json!({"gateway": {"reload": {"cooldownMs": 0}}}),
    );
    let mut moltd = moltd::start(dir.path(), RESPAWN);
    let mut current = moltd.first.clone();
    let mut fds_after_first = None;
    for round in 0..100 {
        force_restart(&mut client(&current).await).await;
        let next = moltd
            .next_ready(READY_WAIT)
            .unwrap_or_else(|| panic!("no successor in round {round}"));
        assert_ne!(next.pid, current.pid);
        let fds = open_fds(next.pid);
        match &fds_after_first {
            None => fds_after_first = Some(fds),
            Some(first) => {
                assert_eq!(
                    fds.files, first.files,
                    "files and pipes differ by round {round}"
                );
                // One client connection may or may not be open at READY;
                // a leak would grow by a socket every round.
                assert!(
                    fds.sockets <= first.sockets + 1,
                    "sockets grew to {} by round {round}",
                    fds.sockets
                );
            }
        }
        current = next;
    }
    let deadline = Instant::now() + READY_WAIT;
    while moltd::serving(dir.path()).len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(moltd::serving(dir.path()), vec![current.pid]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // update-check.json is made once, at the first start (its install id
    // must outlive restarts), the local socket is handed on, not bound
    // anew; audit.jsonl holds the restart requests; each successor removed
    // the metrics its predecessor handed it; no temp or quarantined files
    // pile up.
    assert_eq!(
        files,
        [
            "audit.jsonl",
            "gateway.lock",
            "gateway.sock",
            "logs",
            "openclaw.json",
            "update-check.json"
        ]
    );
    assert_eq!(status(&current).await.pid, current.pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferrable_restart_waits_for_an_operator_hold() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut moltd = moltd::start(dir.path(), RESPAWN);
    let first = moltd.first.clone();
    let mut admin = client(&first).await;
    let hold: Value = admin
        .request(
            "gateway.hold.acquire",
            json!({"reason": "migration", "ttlMs": 60000}),
        )
        .await
        .into_result()
        .unwrap();
    let scheduled: Value = admin
        .request(
            "gateway.restart.request",
            json!({"reason": "operator", "delayMs": 0}),
        )
        .await
        .into_result()
        .unwrap();
    assert_eq!(scheduled["delayMs"], 0);
    let deferred = admin.event("restart.deferred").await;
    assert_eq!(deferred["pendingWork"]["holds"], 1);
    assert_eq!(
        status(&first).await.restart.phase,
        molt_protocol::status::RestartPhase::Deferring
    );

    let _: Value = admin
        .request("gateway.hold.release", json!({"holdId": hold["holdId"]}))
        .await
        .into_result()
        .unwrap();
    let next = moltd
        .next_ready(READY_WAIT)
        .expect("restart after the hold");
    assert_ne!(next.pid, first.pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_listen_address_restarts_onto_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    // The address comes from config, not --port/--bind: a flag would
    // override the change under test (the successor gets the same flags).
    // Port 0 throughout, so no test ever guesses a free port: the move to
    // another loopback address is what makes the successor bind anew.
    moltd::write_config(dir.path(), json!({"gateway": {"port": 0}}));
    let mut moltd = moltd::start(dir.path(), &["--restart-mode", "respawn"]);
    let first = moltd.first.clone();
    assert!(first.addr.starts_with("127.0.0.1:"), "{}", first.addr);

    let mut admin = client(&first).await;
    let config: Value = admin
        .request("config.get", json!({}))
        .await
        .into_result()
        .unwrap();
    let moved = json!({"gateway": {"bind": "custom", "customBindHost": "127.0.0.2"}});
    let patched: Value = admin
        .request(
            "config.patch",
            json!({"raw": moved.to_string(), "baseHash": config["hash"]}),
        )
        .await
        .into_result()
        .unwrap();
    assert_eq!(patched["restart"]["reason"], "config.patch");
    let next = moltd
        .next_ready(READY_WAIT)
        .expect("restart after the address change");
    assert!(next.addr.starts_with("127.0.0.2:"), "{}", next.addr);
    assert_eq!(status(&next).await.pid, next.pid);
    // The old address is released with the old process.
    let _ = moltd.child.wait();
    assert!(std::net::TcpStream::connect(&first.addr).is_err());
}

/// moltd under a supervisor it cannot hand a process to.
const SUPERVISED: &[&str] = &["--port", "0", "--supervisor", "test-script"];

#[tokio::test(flavor = "multi_thread")]
async fn under_a_supervisor_a_conflict_ends_in_exactly_one_serving_process() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(
        dir.path(),
        json!({"gateway": {"reload": {"cooldownMs": 0}}}),
    );
    let moltd = Path::new(moltd::MOLTD);
    let mut supervised = supervisor::start(
        &dir.path().join("first"),
        moltd,
        dir.path(),
        SUPERVISED,
        vec![],
    )
    .unwrap();
    let first = supervised.moltd.first.clone();
    assert_eq!(
        status(&first).await.restart.strategy,
        molt_protocol::status::RestartStrategy::Supervised
    );

    // A restart exits 0 and the supervisor starts the next one.
    force_restart(&mut client(&first).await).await;
    let next = supervised
        .moltd
        .next_ready(READY_WAIT)
        .expect("restarted by the supervisor");
    assert_ne!(next.pid, first.pid);

    // A second supervisor on the same state dir stops on 78, no loop.
    let rival =
        supervisor::script(&dir.path().join("rival"), moltd, dir.path(), SUPERVISED).unwrap();
    let out = moltd::command(&rival, dir.path(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds"));
    assert_eq!(moltd::serving(dir.path()), vec![next.pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_does_not_break_the_handoff() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut child = moltd::command(Path::new(moltd::MOLTD), dir.path(), RESPAWN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The reader is gone: the successor inherits a stdout nobody reads.
    let parts: Vec<&str> = line.split_whitespace().collect();
    let first = Ready {
        addr: parts[1].to_owned(),
        version: parts[2].to_owned(),
        pid: parts[3].parse().unwrap(),
    };
    force_restart(&mut client(&first).await).await;
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "the old process handed off"
    );
    let now = status(&Ready {
        pid: 0,
        ..first.clone()
    })
    .await;
    assert_ne!(now.pid, first.pid, "a successor serves");
    Moltd::signal(now.pid, "KILL");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_schedules_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut moltd = moltd::start(dir.path(), RESPAWN);
    let first = moltd.first.clone();
    let mut watcher = client(&first).await;
    Moltd::signal(first.pid, "USR1");
    let scheduled = watcher.event("restart.scheduled").await;
    assert_eq!(scheduled["reason"], "SIGUSR1");
    assert_eq!(watcher.close_code().await, Some(1012));
    let next = moltd.next_ready(READY_WAIT).expect("successor READY");
    assert_ne!(next.pid, first.pid);
    assert_eq!(status(&next).await.pid, next.pid);

    // The signal is in the audit trail, written by the process it asked.
    assert!(moltd.child.wait().unwrap().success());
    let listed: Value = client(&next)
        .await
        .request("audit.list", json!({}))
        .await
        .into_result()
        .unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed:#}");
    assert_eq!(entries[0]["action"], "signal.restart");
    assert_eq!(
        entries[0]["actor"],
        json!({"kind": "signal", "signal": "SIGUSR1"})
    );
    assert_eq!(entries[0]["outcome"], json!({"ok": true}));
    assert_eq!(entries[0]["pid"], first.pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_is_lost_across_fifty_handoffs_for_a_client_that_follows_the_protocol() {
    use common::restarts::{Callers, IGNORING_WINDOW, Manners};
    const HANDOFFS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(
        dir.path(),
        json!({"gateway": {"reload": {"cooldownMs": 0}}}),
    );
    let mut moltd = moltd::start(dir.path(), RESPAWN);
    let callers = Callers::spawn(&moltd.first.addr, 8, 2);

    let mut current = moltd.first.clone();
    for _ in 0..HANDOFFS {
        force_restart(&mut client(&current).await).await;
        current = moltd.next_ready(READY_WAIT).expect("successor READY");
    }
    for (manners, calls) in callers.stop_once_all_moved().await {
        println!("{manners:?}: {calls:?}");
        match manners {
            Manners::Cooperating => assert_eq!(calls.lost(), 0, "{calls:?}"),
            Manners::Ignoring => {
                // Only what it sent after the close frame: the tail of a
                // connection, never a request before an answered one.
                assert_eq!(calls.holes, 0, "{calls:?}");
                assert!(
                    calls.lost() <= calls.connections * IGNORING_WINDOW as u64,
                    "{calls:?}"
                );
            }
        }
    }
}
