use super::*;

#[test]
fn ready_lines_parse_strictly() {
    assert_eq!(
        parse_ready("READY 127.0.0.1:1 1.2.3 42"),
        Some(("127.0.0.1:1".into(), "1.2.3".into(), 42))
    );
    for bad in [
        "READY",
        "READY a b",
        "READY a b c d",
        "READY a b notapid",
        "NOPE a b 1",
    ] {
        assert_eq!(parse_ready(bad), None, "{bad}");
    }
}

fn fds() -> HeldFds {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lock = std::fs::File::create(dir.path().join("gateway.lock")).unwrap();
    HeldFds {
        listener: OwnedFd::from(listener),
        local: None,
        lock: OwnedFd::from(lock),
    }
}

fn script(body: &str) -> (tempfile::TempDir, SuccessorSpec) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moltd");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = SuccessorSpec {
        entrypoint: path,
        args: vec![],
        capture_output: false,
    };
    (dir, spec)
}

/// Starts `spec` as the successor of pid 1 with a fresh listener and lock.
async fn start(
    spec: &SuccessorSpec,
    parentage: Parentage,
    timeouts: ReadyTimeouts,
) -> Result<Successor, SuccessorFailure> {
    let supervisor = match parentage {
        Parentage::Ours => SupervisorKind::None,
        Parentage::Detached => SupervisorKind::Systemd,
    };
    start_successor(spec, fds(), 1, supervisor, parentage, timeouts)
        .await
        .map_err(|start| start.failure)
}

/// [`start`] without a supervisor, quick, keeping the whole failure.
async fn start_plain(spec: &SuccessorSpec) -> Result<Successor, StartFailure> {
    start_successor(
        spec,
        fds(),
        1,
        SupervisorKind::None,
        Parentage::Ours,
        quick(),
    )
    .await
}

fn quick() -> ReadyTimeouts {
    ReadyTimeouts {
        idle: Duration::from_millis(300),
        total: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_successor_that_exits_is_reported_with_its_status() {
    let (_dir, spec) = script("echo PROGRESS config >&5; exit 3");
    let err = start(&spec, Parentage::Ours, quick()).await.unwrap_err();
    assert!(
        matches!(&err, SuccessorFailure::Exited { status: Some(status), progress }
            if status.code() == Some(3) && progress == "config"),
        "{err}"
    );
}

/// What a successor that dies at start printed is kept, head and tail
/// per stream, as the failure's step; the handoff names its fds for the
/// successor to take back.
#[tokio::test]
async fn a_successor_that_dies_at_start_leaves_its_words() {
    let (_dir, mut spec) = script(
        "echo \"$MOLT_HANDOFF\"; echo 'dies at start' >&2; \
         echo PROGRESS config >&5; exit 2",
    );
    spec.capture_output = true;
    let start = start_plain(&spec).await.unwrap_err();
    let step = start.output.expect("the output was relayed");
    assert_eq!(
        (step.name.as_str(), step.exit_code, step.termination),
        ("restart", Some(2), Termination::Exited)
    );
    assert_eq!(step.stderr_head, "dies at start\n");
    assert_eq!(step.stderr_tail, "dies at start\n");
    assert!(
        step.stdout_tail
            .starts_with("lock=4,ready=5,verdict=6,stdout=8,stderr=9,from=1"),
        "{step:?}"
    );
    assert_eq!(step.command, spec.entrypoint.display().to_string());

    // Without relaying, the output is not kept (it goes to ours).
    spec.capture_output = false;
    let start = start_plain(&spec).await.unwrap_err();
    assert_eq!(start.output, None);
}

#[tokio::test]
async fn a_silent_successor_is_stopped_after_the_idle_timeout() {
    let (_dir, spec) = script("exec sleep 30");
    let err = start(&spec, Parentage::Ours, quick()).await.unwrap_err();
    assert!(matches!(err, SuccessorFailure::NotReady { .. }), "{err}");
}

#[tokio::test]
async fn progress_extends_the_wait_and_ready_names_the_successor() {
    let (_dir, spec) = script(
        "for s in a b c d; do echo PROGRESS $s >&5; sleep 0.7; done\n\
         echo \"READY 127.0.0.1:9 9.9.9 $$\" >&5\nexec sleep 5",
    );
    // 2.8 s of start-up against a 2 s idle bound: only progress can
    // carry it, with over a second of margin per line on a busy runner.
    let timeouts = ReadyTimeouts {
        idle: Duration::from_secs(2),
        total: Duration::from_secs(10),
    };
    let mut ok = start(&spec, Parentage::Ours, timeouts).await.unwrap();
    assert_eq!(ok.version, "9.9.9");
    let child = ok.child.as_mut().unwrap();
    assert_eq!(Some(ok.pid), child.id());
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_successor_behind_a_wrapper_is_stopped_too() {
    // Like pnpm's bin: a shell that runs the real program without exec.
    let (dir, spec) = script("\"$0.real\"; exit $?");
    let real = dir.path().join("moltd.real");
    std::fs::write(
        &real,
        "#!/bin/sh\necho \"PROGRESS started $$\" >&5\nexec sleep 600\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = start(&spec, Parentage::Ours, quick()).await.unwrap_err();
    let SuccessorFailure::NotReady { progress, .. } = err else {
        panic!("{err}");
    };
    let pid: u32 = progress.strip_prefix("started ").unwrap().parse().unwrap();
    // Reaped by its shell parent once killed; either way not running.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "grandchild {pid} survived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

#[tokio::test]
async fn a_detached_successor_is_not_our_child_and_is_stopped_by_pid() {
    let (_dir, spec) = script("echo \"READY 127.0.0.1:9 9.9.9 $$\" >&5\nexec sleep 30");
    let ok = start(&spec, Parentage::Detached, quick()).await.unwrap();
    assert!(ok.child.is_none());
    let parent = parent_of(ok.pid).expect("the successor runs");
    assert_ne!(parent, std::process::id(), "adopted by a reaper, not ours");
    let pid = ok.pid;
    ok.stop().await;
    // Gone, or a zombie its reaper has not collected yet.
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z")),
        "pid {pid} survived stop"
    );
}

#[tokio::test]
async fn a_detached_successor_that_dies_silently_is_reported_without_a_status() {
    let (_dir, spec) = script("exit 4");
    let err = start(&spec, Parentage::Detached, quick())
        .await
        .unwrap_err();
    // The intermediate named it before it ran.
    assert!(
        matches!(&err, SuccessorFailure::Exited { status: None, progress }
            if progress.starts_with("started ")),
        "{err}"
    );
    assert!(err.to_string().contains("exit status unknown"), "{err}");
}

#[test]
fn pids_format_without_allocating() {
    let mut line = *b"PROGRESS started                      ";
    let len = format_pid(4_294_967_295, &mut line);
    assert_eq!(&line[..len], b"PROGRESS started 4294967295\n");
    let mut line = *b"PROGRESS started                      ";
    let len = format_pid(7, &mut line);
    assert_eq!(&line[..len], b"PROGRESS started 7\n");
}

#[tokio::test]
async fn a_missing_entrypoint_is_a_spawn_failure() {
    let spec = SuccessorSpec {
        entrypoint: PathBuf::from("/nonexistent/moltd"),
        args: vec![],
        capture_output: false,
    };
    let err = start(&spec, Parentage::Ours, quick()).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/moltd"), "{err}");
}

#[tokio::test]
async fn a_busy_entrypoint_is_spawned_once_it_is_free_and_not_retried_forever() {
    let (_dir, spec) = script("exit 0");
    let open_for_writing = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&spec.entrypoint)
            .unwrap()
    };
    // Still open for writing, as right after an update wrote it: ETXTBSY.
    let mut writer = Some(open_for_writing());
    let run = || std::process::Command::new(&spec.entrypoint).status();
    let status = spawn_when_not_busy(run, |attempt| {
        if attempt == 2 {
            writer.take();
        }
    })
    .await
    .unwrap();
    assert!(status.success());
    assert!(writer.is_none(), "the first attempts found it busy");

    let _held = open_for_writing();
    let mut busy = 0;
    let err = spawn_when_not_busy(run, |_| busy += 1).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ExecutableFileBusy);
    assert_eq!(busy, BUSY_ATTEMPTS - 1, "bounded");
}
