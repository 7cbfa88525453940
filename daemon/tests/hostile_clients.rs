//! Hostile clients against the real moltd binary: a client that sends
//! without reading, one that pipelines past the in-flight bound, and what
//! becomes of their requests. Each test checks the clear error or the
//! drop, that an honest client is still served by the same process, and
//! moltd's resident memory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::moltd::{self, Moltd};
use common::restarts::client;
use common::{Client, TOKEN};
use futures_util::SinkExt;
use molt_daemon::restart::inherit::HANDOFF_ENV;
use molt_e2e::memory::memory;
use molt_protocol::error::ErrorCode;
use molt_protocol::status::StatusResult;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// What moltd may hold resident while under attack.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

async fn status(c: &mut Client) -> StatusResult {
    c.request("status", json!({})).await.into_result().unwrap()
}

/// Polls an honest client's `status` until `done` holds (bounded).
async fn wait_for_status(c: &mut Client, what: &str, done: impl Fn(&StatusResult) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(c).await;
        if done(&status) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handshaken client over a socket with a small receive buffer, as an
/// attacker that never reads would open it.
async fn attacker(addr: &str) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let to: std::net::SocketAddr = addr.parse().unwrap();
    socket.connect(&to.into()).unwrap();
    let mut c = Client::open_stream(&format!("ws://{addr}"), socket.into()).await;
    c.connect(TOKEN, &["operator.read", "operator.admin"]).await;
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_without_reading_is_dropped_and_moltd_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let pid = moltd.first.pid;
    let mut honest = client(&moltd.first).await;
    let mut attacker = attacker(&moltd.first.addr).await;

    // Pipeline logs.tail and never read. moltd stops reading once the
    // answers fill the client's queue, TCP stops the sends, and past the
    // write deadline moltd drops the client: a send then fails.
    let request = json!({
        "type": "req", "id": "x", "method": "logs.tail", "params": {"lines": 5000}
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped = loop {
        assert!(Instant::now() < deadline, "the attacker was never dropped");
        match tokio::time::timeout(
            Duration::from_secs(30),
            attacker.ws.send(Message::text(request.clone())),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break e,
            Err(_) => panic!("a send blocked for 30 s and the attacker was not dropped"),
        }
    };
    println!("the attacker's send failed: {dropped}");
    // Its requests went with it, and moltd serves the honest client.
    wait_for_status(&mut honest, "idle again", |s| {
        s.pending_work.in_flight_requests == 0 && s.connections == 1
    })
    .await;
    let health: Value = honest
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], pid);
    let peak = memory(pid).unwrap().hwm_kib;
    println!("moltd peaked at {peak} KiB");
    assert!(peak < MEMORY_BOUND_KIB, "moltd peaked at {peak} KiB");
}

/// A `git` that hangs: a registry check through it stays in flight.
fn hanging_git(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    molt_e2e::moltd::replace_with_script(&bin.join("git"), "exec sleep 120");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_the_in_flight_bound_are_refused_and_go_with_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(&state, json!({}));
    // moltd built in this checkout is a git install: its update.check runs
    // git, which hangs here.
    let mut cmd = moltd::command(Path::new(moltd::MOLTD), &state, &["--port", "0"]);
    cmd.env("PATH", hanging_git(dir.path()));
    let moltd = Moltd::spawn(cmd);
    let mut honest = client(&moltd.first).await;
    let mut pipelining = client(&moltd.first).await;

    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.push(pipelining.send_request("update.check", json!({})).await);
    }
    // The first 16 are in flight; the rest are refused at once.
    for id in &sent[16..] {
        let error = pipelining.response(id).await.error.expect("refused");
        assert_eq!(error.code, ErrorCode::RateLimited, "{error:?}");
        assert!(error.message.contains("16 requests"), "{}", error.message);
    }
    wait_for_status(&mut honest, "16 requests in flight", |s| {
        s.pending_work.in_flight_requests == 16
    })
    .await;
    // The hanging git's processes: ours carry our PATH.
    let bin = dir.path().join("bin").display().to_string();
    let checks = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00120\x00")
                    && std::fs::read(e.path().join("environ"))
                        .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&bin))
            })
            .count()
    };
    assert!(checks() > 0, "the checks run");

    // The client goes: its requests are cancelled, their commands stopped,
    // and they no longer hold back a restart.
    drop(pipelining);
    wait_for_status(&mut honest, "idle again", |s| {
        s.pending_work.in_flight_requests == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while checks() > 0 {
        assert!(
            Instant::now() < deadline,
            "the checks' commands outlived their client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_gets_in_while_junk_connections_flood_the_port() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let moltd = moltd::start(dir.path(), &["--port", "0"]);
    let pid = moltd.first.pid;

    // More junk than moltd lets wait for a handshake, none of which ever
    // says a word; each would sit out the 15 s handshake deadline.
    let mut junk = Vec::new();
    for _ in 0..600 {
        junk.push(std::net::TcpStream::connect(&moltd.first.addr).unwrap());
    }
    // The operator, with the token, gets in at the first attempt and is
    // served.
    let mut operator = Client::open(&moltd.first.url()).await;
    operator
        .connect(TOKEN, &["operator.read", "operator.admin"])
        .await;
    let health: Value = operator
        .request("health", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(health["pid"], pid);
    let status = status(&mut operator).await;
    assert!(
        status.connections <= 1 + 512,
        "unauthenticated connections are bounded: {}",
        status.connections
    );
    let peak = memory(pid).unwrap().hwm_kib;
    println!("moltd peaked at {peak} KiB with 600 junk connections");
    assert!(peak < MEMORY_BOUND_KIB, "moltd peaked at {peak} KiB");

    // The evictions are a line, not a line each.
    drop(junk);
    let logs = dir.path().join("logs");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("too many unauthenticated connections"))
        .count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{text}");
}

/// The live processes started as a handoff successor of `from`.
fn successors_of(from: u32) -> Vec<u32> {
    let handoff = format!("{HANDOFF_ENV}=");
    let from = format!(",from={from},");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                String::from_utf8_lossy(&env)
                    .split('\0')
                    .any(|var| var.starts_with(&handoff) && var.contains(&from))
            }) && moltd::alive(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_while_a_successor_starts_takes_the_successor_too() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    moltd::write_config(&state, json!({}));
    let entrypoint = moltd::private_entrypoint(dir.path());
    let mut running = Moltd::start_from(&entrypoint, &state, &["--port", "0"]);
    let old = running.first.pid;
    // The next start says it has begun, then never gets ready.
    moltd::replace_with_script(
        &entrypoint,
        "echo \"PROGRESS started $$\" >&5\nexec sleep 3600",
    );

    let mut c = client(&running.first).await;
    c.request(
        "gateway.restart.request",
        json!({"reason": "test", "delayMs": 0, "skipDeferral": true}),
    )
    .await
    .into_result::<Value>()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let starting = loop {
        if let [pid] = successors_of(old)[..] {
            break pid;
        }
        assert!(Instant::now() < deadline, "no successor started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    Moltd::signal(old, "TERM");
    let exit = running.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the operator's stop drains");
    let deadline = Instant::now() + Duration::from_secs(10);
    while moltd::alive(starting) {
        assert!(
            Instant::now() < deadline,
            "successor {starting} outlived the stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        moltd::serving(&state).is_empty(),
        "nothing serves after a stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_stop_signal_during_the_drain_ends_moltd_at_once() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({}));
    let mut running = moltd::start(dir.path(), &["--port", "0"]);
    let pid = running.first.pid;
    let mut observer = client(&running.first).await;
    // A client that never reads, with answers waiting for room: the drain
    // waits for them (up to the write deadline).
    let mut stuck = attacker(&running.first.addr).await;
    let request = json!({
        "type": "req", "id": "x", "method": "logs.tail", "params": {"lines": 5000}
    })
    .to_string();
    while tokio::time::timeout(
        Duration::from_secs(1),
        stuck.ws.send(Message::text(request.clone())),
    )
    .await
    .is_ok_and(|sent| sent.is_ok())
    {}

    Moltd::signal(pid, "TERM");
    observer.event("shutdown").await;
    Moltd::signal(pid, "TERM");
    let exit = running.child.wait().unwrap();
    assert_eq!(exit.code(), Some(143), "the second SIGTERM ends it at once");
}
