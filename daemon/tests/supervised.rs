//! moltd under a service manager, with the real binary. The test plays
//! systemd: it owns the listening socket and hands it to each moltd as
//! fd 3 with `LISTEN_FDS=1` (socket activation), listens on a
//! `NOTIFY_SOCKET`, and starts moltd again after it exits 0. Also the exec
//! strategy (same pid) and a config that stops parsing between restarts.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use common::moltd::{self, MOLTD, Moltd, Ready};
use common::restarts::{Probe, READY_WAIT, client, force_restart, status, wait_for_failure};
use common::{Client, TOKEN};
use molt_protocol::status::{RestartPhase, RestartStrategy, SupervisorKind};
use serde_json::{Value, json};

/// moltd as systemd starts it from `moltd.service` with `Sockets=`: the
/// socket on fd 3, `LISTEN_FDS=1`, no `LISTEN_PID` (systemd sets it after
/// fork, to the child's own pid; absent is accepted too).
fn activated(state: &Path, socket: &TcpListener) -> Command {
    let mut cmd = moltd::command(Path::new(MOLTD), state, &["--supervisor", "systemd"]);
    cmd.env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("MOLT_HANDOFF");
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: OwnedFd::from(socket.try_clone().unwrap()),
        child_fd: 3,
    }])
    .unwrap();
    cmd
}

/// A loopback socket the test holds for the whole test, as systemd holds
/// the one of `moltd.socket`.
fn socket_unit() -> (TcpListener, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    // As the shipped unit's Backlog=: connections queue while moltd
    // restarts and nobody accepts.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    socket.listen(molt_daemon::start::LISTEN_BACKLOG).unwrap();
    let socket = TcpListener::from(socket);
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Runs `cmd` to completion, bounded; kills it if it outlives `timeout`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(cmd);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            Moltd::signal(pid, "KILL");
            panic!("moltd (pid {pid}) still running after {timeout:?}");
        }
    }
}

/// The next datagram on the notify socket, as text.
fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let len = socket
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn has_state(datagram: &str, state: &str) -> bool {
    datagram.lines().any(|line| line == state)
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_activation_keeps_the_port_open_across_a_supervised_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (socket, addr) = socket_unit();
    // As in a real install: the config names the socket unit's port.
    moltd::write_config(state, json!({"gateway": {"port": addr.port()}}));

    let mut first = Moltd::spawn(activated(state, &socket));
    assert_eq!(
        first.first.addr,
        addr.to_string(),
        "serves on the inherited socket"
    );
    let before = status(&first.first).await;
    assert_eq!(before.supervisor.kind, SupervisorKind::Systemd);
    assert_eq!(before.restart.strategy, RestartStrategy::Supervised);

    let probe = Probe::start(addr);
    let mut old = client(&first.first).await;
    let scheduled = force_restart(&mut old).await;
    assert_eq!(scheduled["mode"], "supervised");
    let shutdown = old.event("shutdown").await;
    assert_eq!(shutdown["reason"], "restart: test");
    assert_eq!(
        old.close_code().await,
        Some(1012),
        "clients are told to reconnect"
    );
    let exit = first
        .wait_exit(READY_WAIT)
        .expect("moltd exits after draining");
    assert_eq!(exit.code(), Some(0), "a supervised restart is a clean exit");

    // Restart=always: start the binary again with the same socket. Until
    // it serves, connections wait in the socket's accept queue.
    let second = Moltd::spawn(activated(state, &socket));
    assert_ne!(second.first.pid, first.first.pid);
    assert_eq!(second.first.addr, addr.to_string());
    let health: Value = client(&second.first)
        .await
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], second.first.pid);

    let (ok, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "connections refused across the restart");
    assert!(ok > 0);
    assert_eq!(moltd::serving(state), vec![second.first.pid]);

    // The counters went on in the process the supervisor started: the
    // restart is counted, and the requests before it.
    let bearer = format!("Bearer {TOKEN}");
    let metrics = molt_e2e::http::request(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", bearer.as_str())],
        None,
        READY_WAIT,
    )
    .unwrap()
    .text();
    for sample in [
        "moltd_generation 2.0",
        "moltd_handoffs_total{outcome=\"handed-off\"} 1",
        "moltd_requests_total{method=\"gateway.restart.request\",outcome=\"ok\"} 1",
        "moltd_requests_total{method=\"status\",outcome=\"ok\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == sample),
            "{sample} in\n{metrics}"
        );
    }
    assert!(!state.join("metrics-handoff.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_activated_socket_wins_over_the_configured_port() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (socket, addr) = socket_unit();
    // The config names another port, held by someone else: binding it
    // would fail, and serving there would leave the activated socket
    // queueing connections nobody accepts.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = elsewhere.local_addr().unwrap().port();
    moltd::write_config(state, json!({"gateway": {"port": other_port}}));

    let moltd = Moltd::spawn(activated(state, &socket));
    assert_eq!(moltd.first.addr, addr.to_string());
    assert_eq!(status(&moltd.first).await.listen, addr.to_string());
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("gateway.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["port"], addr.port(), "the lock names the real port");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_activated_socket_on_all_interfaces_needs_auth() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let socket = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    moltd::write_config(
        state,
        json!({"gateway": {"port": port, "auth": {"mode": "none"}}}),
    );
    let out = run_bounded(activated(state, &socket), READY_WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("without authentication"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_says_ready_once_serving_and_stopping_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(&state, json!({}));
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(READY_WAIT)).unwrap();

    // The service manager's side: on READY=1, a client that trusts it
    // connects at once (moltd has not printed READY on stdout yet).
    let manager = std::thread::spawn(move || {
        let datagram = notification(&notify);
        let status = datagram
            .lines()
            .find_map(|line| line.strip_prefix("STATUS="))
            .and_then(Ready::parse)
            .unwrap_or_else(|| panic!("STATUS names the READY line: {datagram:?}"));
        let early = TcpStream::connect(&status.addr);
        (notify, datagram, status, early)
    });
    // The explicit supervised mode: exit and let systemd start the new
    // binary (without it, moltd hands off itself, tested below).
    let mut cmd = moltd::command(
        Path::new(MOLTD),
        &state,
        &[
            "--port",
            "0",
            "--supervisor",
            "systemd",
            "--restart-mode",
            "supervised",
        ],
    );
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let mut moltd = Moltd::spawn(cmd);
    let (notify, ready, announced, early) = manager.join().unwrap();
    assert!(has_state(&ready, "READY=1"), "{ready:?}");
    assert_eq!(announced, moltd.first, "STATUS carries the READY line");
    let early = early.expect("moltd accepts connections when it reports READY=1");

    // That early connection is served.
    let mut early = Client::open_stream(&moltd.first.url(), early).await;
    let hello = early
        .connect(TOKEN, &["operator.read", "operator.admin"])
        .await;
    assert_eq!(hello.snapshot.pid, moltd.first.pid);
    assert_eq!(hello.snapshot.restart.strategy, RestartStrategy::Supervised);

    force_restart(&mut early).await;
    let stopping = notification(&notify);
    assert!(has_state(&stopping, "STOPPING=1"), "{stopping:?}");
    assert_eq!(early.close_code().await, Some(1012));
    let exit = moltd.wait_exit(READY_WAIT).expect("moltd exits");
    assert_eq!(exit.code(), Some(0));
}

/// systemd's side of `NOTIFY_SOCKET`: datagrams in order, with the fds
/// they carry (`BARRIER=1` sends one, which systemd closes once it has
/// processed everything before it).
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(READY_WAIT)).unwrap();
        Self(socket)
    }

    /// Skips datagrams until one has a line starting with `key`.
    fn until(&self, key: &str) -> (String, Vec<OwnedFd>) {
        use sendfd::RecvWithFd;
        use std::os::fd::FromRawFd;
        loop {
            let mut buf = [0u8; 4096];
            let mut raw = [0; 4];
            let (len, count) = self
                .0
                .recv_with_fd(&mut buf, &mut raw)
                .unwrap_or_else(|e| panic!("no {key} within {READY_WAIT:?}: {e}"));
            // SAFETY: recvmsg just installed these fds in this process;
            // nothing else owns them.
            #[allow(unsafe_code)]
            let fds = raw[..count]
                .iter()
                .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            let datagram = String::from_utf8_lossy(&buf[..len]).into_owned();
            if datagram.lines().any(|line| line.starts_with(key)) {
                return (datagram, fds);
            }
        }
    }
}

fn field<'a>(datagram: &'a str, key: &str) -> &'a str {
    datagram
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in {datagram:?}"))
}

/// moltd started by systemd on a socket unit with `Type=notify`.
fn notified(state: &Path, socket: &TcpListener, notify: &Path) -> Command {
    let mut cmd = activated(state, socket);
    cmd.env("NOTIFY_SOCKET", notify);
    cmd
}

/// moltd as systemd runs it: socket-activated on a unit whose port the
/// config names, notifying systemd's socket, and READY.
struct UnderSystemd {
    _dir: tempfile::TempDir,
    _socket: TcpListener,
    state: std::path::PathBuf,
    addr: SocketAddr,
    systemd: NotifySocket,
    first: Moltd,
}

impl UnderSystemd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let (socket, addr) = socket_unit();
        moltd::write_config(&state, json!({"gateway": {"port": addr.port()}}));
        let notify_path = dir.path().join("notify.sock");
        let systemd = NotifySocket::bind(&notify_path);
        let first = Moltd::spawn(notified(&state, &socket, &notify_path));
        systemd.until("READY=1");
        Self {
            _dir: dir,
            _socket: socket,
            state,
            addr,
            systemd,
            first,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_a_verified_successor_becomes_the_main_process() {
    let UnderSystemd {
        _dir,
        _socket,
        state,
        addr,
        systemd,
        mut first,
    } = UnderSystemd::start();
    let before = status(&first.first).await;
    assert_eq!(before.supervisor.kind, SupervisorKind::Systemd);
    assert_eq!(before.restart.strategy, RestartStrategy::Respawn);

    let probe = Probe::start(addr);
    let mut old = client(&first.first).await;
    let scheduled = force_restart(&mut old).await;
    assert_eq!(scheduled["mode"], "respawn");
    // The predecessor names the successor it verified, then waits until
    // systemd has taken that in before it lets go.
    let (handover, _) = systemd.until("MAINPID=");
    let main_pid: u32 = field(&handover, "MAINPID=").parse().unwrap();
    let successor = Ready::parse(field(&handover, "STATUS=")).expect("STATUS is a READY line");
    assert_eq!(successor.pid, main_pid);
    assert_ne!(main_pid, first.first.pid);
    // systemd only drains a main process it knows as its own child: the
    // successor was started detached, so the old process is not its parent.
    let parent = std::fs::read_to_string(format!("/proc/{main_pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PPid:")
                .map(|p| p.trim().parse::<u32>().unwrap())
        })
        .unwrap();
    assert_ne!(
        parent, first.first.pid,
        "the successor is not the old process's child"
    );
    let (barrier, fds) = systemd.until("BARRIER=1");
    assert!(!has_state(&barrier, "STOPPING=1"), "{barrier:?}");
    assert_eq!(fds.len(), 1, "the barrier carries one fd");
    drop(fds);

    assert_eq!(old.close_code().await, Some(1012));
    let next = first.next_ready(READY_WAIT).expect("the successor's READY");
    assert_eq!(next.pid, main_pid);
    let exit = first.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the predecessor exits cleanly");
    // Nobody restarted anything: the successor serves, as systemd's
    // main process, under the same supervisor and strategy.
    let after = status(&successor).await;
    assert_eq!(after.pid, main_pid);
    assert_eq!(after.supervisor.kind, SupervisorKind::Systemd);
    assert_eq!(after.restart.strategy, RestartStrategy::Respawn);
    let (ok, refused) = probe.finish().counts();
    assert_eq!(refused, 0, "connections refused across the handoff");
    assert!(ok > 0);
    assert_eq!(moltd::serving(&state), vec![main_pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_systemd_does_not_confirm_is_stopped_and_the_old_process_serves() {
    let UnderSystemd {
        _dir,
        _socket,
        state,
        systemd,
        first,
        ..
    } = UnderSystemd::start();
    let mut old = client(&first.first).await;
    force_restart(&mut old).await;
    let (handover, _) = systemd.until("MAINPID=");
    let successor: u32 = field(&handover, "MAINPID=").parse().unwrap();
    // Held, never closed: systemd never confirms.
    let (_, _held) = systemd.until("BARRIER=1");

    let reason = wait_for_failure(&first.first).await;
    assert!(
        reason.contains(&format!("did not take pid {successor}")),
        "{reason}"
    );
    assert!(
        !moltd::alive(successor),
        "the unconfirmed successor is stopped"
    );
    assert_eq!(moltd::serving(&state), vec![first.first.pid]);
    let health: Value = old
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], first.first.pid);
    assert_failure_counted(first.first.addr.parse().unwrap(), "not-main-pid");
}

/// The failed restart is counted once, under `reason`, and as a failed
/// handoff.
fn assert_failure_counted(addr: SocketAddr, reason: &str) {
    let samples = molt_e2e::prometheus::scrape(addr);
    for sample in [
        format!("moltd_restart_failures_total{{reason=\"{reason}\"}} 1"),
        "moltd_handoffs_total{outcome=\"failed\"} 1".to_owned(),
    ] {
        assert!(samples.contains(&sample), "{sample}: {samples:#?}");
    }
    let failures: Vec<&String> = samples
        .iter()
        .filter(|s| s.starts_with("moltd_restart_failures_total"))
        .collect();
    assert_eq!(failures.len(), 1, "{samples:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_restart_keeps_the_pid_and_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    moltd::write_config(state, json!({}));
    let mut moltd = moltd::start(state, &["--port", "0", "--restart-mode", "exec"]);
    let first = moltd.first.clone();
    assert_eq!(status(&first).await.restart.strategy, RestartStrategy::Exec);

    let probe = Probe::start(first.addr.parse().unwrap());
    let mut old = client(&first).await;
    let scheduled = force_restart(&mut old).await;
    assert_eq!(scheduled["mode"], "exec");
    assert_eq!(old.close_code().await, Some(1012));

    let next = moltd.next_ready(READY_WAIT).expect("READY after the exec");
    assert_eq!(next.pid, first.pid, "exec keeps the pid");
    assert_eq!(next.addr, first.addr, "and the socket");
    let after = status(&next).await;
    assert_eq!(after.pid, first.pid);
    assert_eq!(after.restart.phase, RestartPhase::Idle);
    let lock: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("gateway.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["pid"], first.pid);
    assert_eq!(
        lock["startedAt"], after.started_at,
        "the new image records itself in the lock file"
    );

    let probed = probe.finish();
    let (ok, refused) = probed.counts();
    assert_eq!(
        refused, 0,
        "connections refused across the exec: {probed:?}"
    );
    assert!(ok > 0);
    assert_eq!(moltd::serving(state), vec![first.pid]);
}

#[tokio::test(flavor = "multi_thread")]
async fn openclaw_no_respawn_selects_exec() {
    let strategy = async |env: &[(&str, &str)], dotenv: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        moltd::write_config(dir.path(), json!({}));
        if let Some(text) = dotenv {
            std::fs::write(dir.path().join(".env"), text).unwrap();
        }
        let mut cmd = moltd::command(Path::new(MOLTD), dir.path(), &["--port", "0"]);
        cmd.envs(env.iter().copied());
        let moltd = Moltd::spawn(cmd);
        status(&moltd.first).await.restart.strategy
    };
    assert_eq!(
        strategy(&[], None).await,
        RestartStrategy::Respawn,
        "unsupervised default"
    );
    assert_eq!(
        strategy(&[("OPENCLAW_NO_RESPAWN", "1")], None).await,
        RestartStrategy::Exec
    );
    assert_eq!(
        strategy(&[], Some("OPENCLAW_NO_RESPAWN=1\n")).await,
        RestartStrategy::Exec,
        "from the state dir's .env too"
    );
    assert_eq!(
        strategy(&[("OPENCLAW_NO_RESPAWN", "1")], None).await,
        strategy(&[("OPENCLAW_NO_RESPAWN", "true")], None).await,
    );
}

const BROKEN_CONFIG: &str = "{ gateway: { port: ";

#[tokio::test(flavor = "multi_thread")]
async fn a_config_broken_between_restarts_exits_78_under_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (socket, addr) = socket_unit();
    moltd::write_config(state, json!({"gateway": {"port": addr.port()}}));
    let mut first = Moltd::spawn(activated(state, &socket));

    let config = state.join("openclaw.json");
    std::fs::write(&config, BROKEN_CONFIG).unwrap();
    force_restart(&mut client(&first.first).await).await;
    let exit = first.wait_exit(READY_WAIT).expect("moltd exits");
    assert_eq!(exit.code(), Some(0));

    // Restart=always starts it again; it refuses with 78, which
    // RestartPreventExitStatus=78 turns into a stop, not a loop.
    let out = run_bounded(activated(state, &socket), READY_WAIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&config.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("does not parse"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colour codes for the journal: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("READY"));
    assert!(moltd::serving(state).is_empty());
}

#[test]
fn a_refused_start_answers_the_connections_queued_on_its_socket() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let (socket, addr) = socket_unit();
    std::fs::write(state.join("openclaw.json"), BROKEN_CONFIG).unwrap();
    // A client waiting in the queue when systemd starts moltd for it.
    let mut waiting = TcpStream::connect(addr).unwrap();
    waiting.set_read_timeout(Some(READY_WAIT)).unwrap();

    let out = run_bounded(activated(state, &socket), READY_WAIT);
    assert_eq!(out.status.code(), Some(78));
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with("moltd refused to start (exit 78); see the service's log.\r\n"),
        "{answer:?}"
    );
    assert!(!answer.contains("openclaw.json"), "no detail for strangers");
    // Nothing is left queued to make systemd start it again.
    socket.set_nonblocking(true).unwrap();
    assert_eq!(
        socket.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_broken_between_restarts_leaves_the_old_process_serving_under_respawn() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let relaxed = json!({"gateway": {"reload": {"cooldownMs": 0}}});
    moltd::write_config(state, relaxed.clone());
    let mut moltd = moltd::start(state, &["--port", "0", "--restart-mode", "respawn"]);
    let first = moltd.first.clone();

    let config = state.join("openclaw.json");
    std::fs::write(&config, BROKEN_CONFIG).unwrap();
    force_restart(&mut client(&first).await).await;
    let reason = wait_for_failure(&first).await;
    assert!(
        reason.contains("exit status: 78"),
        "the successor's exit code: {reason}"
    );
    assert!(
        reason.contains(&config.display().to_string()) && reason.contains("does not parse"),
        "the successor's reason: {reason}"
    );

    let now = status(&first).await;
    assert_eq!(now.pid, first.pid, "the old process still serves");
    assert_eq!(now.restart.phase, RestartPhase::Idle);
    assert_eq!(moltd::serving(state), vec![first.pid]);
    assert_failure_counted(first.addr.parse().unwrap(), "successor-refused");

    // Fixed, the next restart goes through.
    moltd::write_config(state, relaxed);
    force_restart(&mut client(&first).await).await;
    let next = moltd.next_ready(READY_WAIT).expect("successor READY");
    assert_ne!(next.pid, first.pid);
}
