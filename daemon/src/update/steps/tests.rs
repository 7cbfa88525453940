//! Real processes (`sh -c` scripts are the programs under test here).

use std::path::Path;
use std::time::{Duration, Instant};

use molt_protocol::update::Termination;
use tokio_util::sync::CancellationToken;

use super::*;

const LONG: Duration = Duration::from_secs(60);

fn sh(name: &str, script: &str, timeout: Duration) -> StepSpec {
    StepSpec {
        name: name.to_owned(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: None,
        env: Vec::new(),
        timeout,
    }
}

async fn step(spec: &StepSpec) -> StepRecord {
    run_step(spec, &CancellationToken::new()).await
}

/// Members of process group `pgid` that still run (zombies have run their
/// last instruction and only wait to be reaped by whoever inherited them).
fn live_members(pgid: i32) -> Vec<String> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (state, pgrp) = (fields[0], fields[2].parse::<i32>().unwrap_or(0));
        if pgrp == pgid && state != "Z" && state != "X" {
            live.push(format!("{head}) {state}"));
        }
    }
    live
}

/// Every process of the group is dead. Polls briefly: SIGKILL is delivered
/// asynchronously, though the runner already saw the pipes close.
fn assert_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = live_members(pgid);
        if live.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process group {pgid} survived the step: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids printed one per line at the start of stdout.
fn pids(record: &StepRecord) -> Vec<i32> {
    record
        .stdout_head
        .lines()
        .map_while(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn exit_codes_are_recorded() {
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)] {
        let r = step(&sh("exit", script, LONG)).await;
        assert_eq!(r.termination, Termination::Exited, "{script}: {r:?}");
        assert_eq!(r.exit_code, Some(code), "{script}");
    }
}

#[tokio::test]
async fn record_describes_the_command() {
    let mut spec = sh("greet", "echo 'hi there'; echo oops >&2", LONG);
    spec.cwd = Some("/".into());
    let r = step(&spec).await;
    assert_eq!(r.name, "greet");
    assert_eq!(r.argv, spec.argv);
    assert_eq!(r.command, r#"sh -c 'echo '\''hi there'\''; echo oops >&2'"#);
    assert_eq!(r.cwd.as_deref(), Some("/"));
    // Small output: head and tail both hold all of it.
    assert_eq!(r.stdout_head, "hi there\n");
    assert_eq!(r.stdout_tail, "hi there\n");
    assert_eq!(r.stderr_head, "oops\n");
    assert_eq!(r.stderr_tail, "oops\n");
}

#[tokio::test]
async fn large_outputs_keep_head_and_tail_and_are_read_concurrently() {
    // 1 MiB on stdout, then 1 MiB on stderr: a runner that drained one pipe
    // before the other would deadlock on the 64 KiB pipe buffer.
    let script = "printf START; head -c 1048576 /dev/zero | tr '\\0' o; printf END; \
                  printf begin >&2; head -c 1048576 /dev/zero | tr '\\0' e >&2; printf end >&2";
    let r = step(&sh("big", script, LONG)).await;
    assert_eq!(r.termination, Termination::Exited, "{}", r.stderr_tail);
    assert_eq!(r.exit_code, Some(0));

    assert_eq!(r.stdout_head.len(), HEAD_TAIL_BYTES);
    assert!(r.stdout_head.starts_with("STARTooo"));
    assert!(r.stdout_head[5..].bytes().all(|b| b == b'o'));
    assert_eq!(r.stdout_tail.len(), HEAD_TAIL_BYTES);
    assert!(r.stdout_tail.ends_with("oooEND"));
    assert!(
        r.stdout_tail[..HEAD_TAIL_BYTES - 3]
            .bytes()
            .all(|b| b == b'o')
    );

    assert_eq!(r.stderr_head.len(), HEAD_TAIL_BYTES);
    assert!(r.stderr_head.starts_with("begineee"));
    assert_eq!(r.stderr_tail.len(), HEAD_TAIL_BYTES);
    assert!(r.stderr_tail.ends_with("eeeend"));
}

#[tokio::test]
async fn cut_characters_are_dropped_and_invalid_bytes_replaced() {
    // 4095 ASCII bytes, then "é" (2 bytes) straddling the head limit, then
    // filler, then "é" straddling the tail limit's start.
    let script = "head -c 4095 /dev/zero | tr '\\0' a; printf '\\303\\251'; \
                  head -c 10000 /dev/zero | tr '\\0' b; printf '\\303\\251'; \
                  head -c 4095 /dev/zero | tr '\\0' c; \
                  printf 'x\\377y' >&2";
    let r = step(&sh("utf8", script, LONG)).await;
    assert_eq!(r.stdout_head, "a".repeat(4095));
    assert_eq!(r.stdout_tail, "c".repeat(4095));
    assert_eq!(r.stderr_tail, "x\u{FFFD}y");
}

#[tokio::test]
async fn output_between_one_and_two_limits_overlaps() {
    let script = "head -c 3000 /dev/zero | tr '\\0' a; head -c 3000 /dev/zero | tr '\\0' b";
    let r = step(&sh("mid", script, LONG)).await;
    assert_eq!(
        r.stdout_head,
        format!("{}{}", "a".repeat(3000), "b".repeat(1096))
    );
    assert_eq!(
        r.stdout_tail,
        format!("{}{}", "a".repeat(1096), "b".repeat(3000))
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    // The shell, a background grandchild and a foreground one.
    let spec = sh(
        "hang",
        "echo $$; sleep 100 & echo $!; sleep 100",
        Duration::from_millis(300),
    );
    let r = step(&spec).await;
    assert_eq!(r.termination, Termination::TimedOut, "{r:?}");
    assert_eq!(r.exit_code, None, "killed by SIGTERM, no exit code");
    assert!(
        r.stderr_tail
            .contains("molt: timed out after 300ms; stopped the process group with SIGTERM"),
        "{}",
        r.stderr_tail
    );
    let pids = pids(&r);
    assert_eq!(pids.len(), 2, "{:?}", r.stdout_head);
    assert_group_gone(pids[0]);
}

#[tokio::test]
async fn sigkill_follows_when_sigterm_is_ignored() {
    // SIGTERM is ignored by the shell and, inherited, by both sleeps.
    let spec = sh(
        "stubborn",
        "trap '' TERM; echo $$; sleep 100 & sleep 100",
        Duration::from_millis(200),
    );
    let (r, _) = run(
        &spec,
        &CancellationToken::new(),
        Duration::from_millis(200),
        None,
    )
    .await;
    assert_eq!(r.termination, Termination::TimedOut, "{r:?}");
    assert!(
        r.stderr_tail.contains("then SIGKILL after 200ms"),
        "{}",
        r.stderr_tail
    );
    assert_group_gone(pids(&r)[0]);
}

#[tokio::test]
async fn stragglers_do_not_outlive_a_finished_step() {
    // The shell exits 0 at once; its background child holds stdout open.
    let spec = sh("straggler", "echo $$; sleep 100 & echo done", LONG);
    let r = step(&spec).await;
    assert_eq!(r.termination, Termination::Exited, "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    assert!(r.stdout_tail.ends_with("done\n"), "{}", r.stdout_tail);
    assert_group_gone(pids(&r)[0]);
}

#[tokio::test]
async fn cancel_stops_a_running_step() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let spec = sh(
        "cancel-me",
        &format!(
            "echo $$; sleep 100 & touch '{}'; sleep 100",
            started.display()
        ),
        LONG,
    );
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        async move {
            wait_for_file(&started).await;
            cancel.cancel();
        }
    };
    let (r, ()) = tokio::join!(run_step(&spec, &cancel), canceller);
    assert_eq!(r.termination, Termination::Signaled, "{r:?}");
    assert_eq!(r.exit_code, None);
    assert!(
        r.stderr_tail.contains("molt: cancelled;"),
        "{}",
        r.stderr_tail
    );
    assert_group_gone(pids(&r)[0]);
}

#[tokio::test]
async fn cancelled_before_start_still_records_the_step() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = run_step(&sh("late", "sleep 100", LONG), &cancel).await;
    assert_eq!(r.termination, Termination::Signaled);
    assert!(
        r.stderr_tail.contains("molt: cancelled;"),
        "{}",
        r.stderr_tail
    );
}

#[tokio::test]
async fn dropping_the_step_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let spec = sh(
        "dropped",
        &format!(
            "echo $$ > '{0}.tmp' && mv '{0}.tmp' '{0}'; sleep 100 & sleep 100",
            pid_file.display()
        ),
        LONG,
    );
    let cancel = CancellationToken::new();
    tokio::select! {
        r = run_step(&spec, &cancel) => panic!("step ended on its own: {r:?}"),
        () = wait_for_file(&pid_file) => {}
    }
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_group_gone(pgid);
}

#[tokio::test]
async fn a_command_killed_by_a_signal_is_signaled() {
    let r = step(&sh("suicide", "kill -KILL $$", LONG)).await;
    assert_eq!(r.termination, Termination::Signaled, "{r:?}");
    assert_eq!(r.exit_code, None);
    assert!(
        r.stderr_tail.contains("molt: killed by signal 9"),
        "{}",
        r.stderr_tail
    );
}

#[tokio::test]
async fn spawn_failures_are_recorded() {
    let mut spec = sh("missing", "", LONG);
    spec.argv = vec!["/nonexistent/molt-no-such-program".into(), "--x".into()];
    let r = step(&spec).await;
    assert_eq!(r.termination, Termination::SpawnFailed);
    assert_eq!(r.exit_code, None);
    assert_eq!(r.command, "/nonexistent/molt-no-such-program --x");
    assert!(
        r.stderr_tail
            .starts_with("molt: cannot start /nonexistent/molt-no-such-program: "),
        "{}",
        r.stderr_tail
    );
    assert!(r.stderr_tail.contains("No such file"), "{}", r.stderr_tail);

    spec.argv.clear();
    let r = step(&spec).await;
    assert_eq!(r.termination, Termination::SpawnFailed);
    assert!(r.stderr_tail.contains("empty argv"), "{}", r.stderr_tail);

    let mut spec = sh("bad-cwd", "true", LONG);
    spec.cwd = Some("/nonexistent/molt-dir".into());
    let r = step(&spec).await;
    assert_eq!(r.termination, Termination::SpawnFailed);
    assert!(
        r.stderr_tail
            .contains("working directory /nonexistent/molt-dir is not a directory"),
        "{}",
        r.stderr_tail
    );
}

#[tokio::test]
async fn handoff_and_systemd_variables_never_reach_the_child() {
    let mut spec = sh(
        "env",
        "for v in MOLT_HANDOFF LISTEN_FDS LISTEN_PID LISTEN_FDNAMES NOTIFY_SOCKET KEEP; do \
           eval \"echo $v=\\${$v-unset}\"; done",
        LONG,
    );
    // Even when a caller passes them explicitly.
    spec.env = SCRUBBED_ENV
        .iter()
        .map(|k| (k.to_string(), "leaked".to_owned()))
        .chain([("KEEP".to_owned(), "yes".to_owned())])
        .collect();
    let r = step(&spec).await;
    assert_eq!(
        r.stdout_head,
        "MOLT_HANDOFF=unset\nLISTEN_FDS=unset\nLISTEN_PID=unset\n\
         LISTEN_FDNAMES=unset\nNOTIFY_SOCKET=unset\nKEEP=yes\n"
    );
}

#[tokio::test]
async fn runs_in_the_given_directory_with_stdin_closed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let mut spec = sh("where", "pwd; cat; echo stdin-eof", LONG);
    spec.cwd = Some(dir.clone());
    let r = step(&spec).await;
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout_head, format!("{}\nstdin-eof\n", dir.display()));
    assert_eq!(r.cwd, Some(dir.display().to_string()));
}

#[tokio::test]
async fn stdout_is_kept_whole_up_to_the_limit() {
    let spec = sh("json", "head -c 10000 /dev/zero | tr '\\0' j", LONG);
    let (r, out) = run_step_with_stdout(&spec, &CancellationToken::new(), 10_000).await;
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(out, Some("j".repeat(10_000)));
    assert_eq!(r.stdout_head.len(), HEAD_TAIL_BYTES);

    let (r, out) = run_step_with_stdout(&spec, &CancellationToken::new(), 9_999).await;
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(out, None, "over the limit");
    assert_eq!(r.stdout_tail.len(), HEAD_TAIL_BYTES);
}

#[test]
fn internal_steps_record_success_and_error() {
    let started = Instant::now();
    let ok = internal_step("stage", started, None);
    assert_eq!(ok.name, "stage");
    assert_eq!(ok.termination, Termination::Internal);
    assert_eq!(ok.exit_code, Some(0));
    assert_eq!(ok.stderr_tail, "");
    assert_eq!(ok.command, "");

    let err = internal_step("swap", started, Some("rename a -> b: EXDEV"));
    assert_eq!(err.termination, Termination::Internal);
    assert_eq!(err.exit_code, Some(1));
    assert_eq!(err.stderr_tail, "rename a -> b: EXDEV");
}

#[test]
fn shell_quote_round_trips_through_sh() {
    let argv: Vec<String> = [
        "npm",
        "i",
        "-g",
        "--prefix",
        "/tmp/stage dir",
        "@molt/moltd@1.2.3",
        "",
        "it's",
        "$HOME;rm -rf /",
        "a=b,c:d%e+f",
        "~user",
        "new\nline",
    ]
    .map(str::to_owned)
    .to_vec();
    let quoted = shell_quote(&argv);
    assert!(
        quoted.starts_with("npm i -g --prefix '/tmp/stage dir' @molt/moltd@1.2.3 '' 'it'\\''s' ")
    );
    // sh splits it back into the same words.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("for a in {quoted}; do printf '%s\\0' \"$a\"; done"))
        .output()
        .unwrap();
    let words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_owned)
        .collect();
    assert_eq!(words, argv);
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
