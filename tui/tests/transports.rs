//! The gateway's local socket and TLS against the real `moltd` and `molt`:
//! the host's operator gets in without a token and another user does not;
//! `wss://` works pinned to the generated certificate and not to another;
//! a handoff refuses no connection on either.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use molt_console::client::{Client, ClientMode, ConnectError, ConnectOptions};
use molt_e2e::moltd::{self, Moltd};
use molt_e2e::restarts::{Probe, READY_WAIT};
use molt_protocol::Method;
use serde_json::json;
use support::{molt, moltd_path};

/// The token, kept only in moltd's environment as a service would.
const SERVICE_TOKEN: &str = "service-env-token-0123456789abcdef";
/// A user that is neither moltd's (root here) nor root.
const NOBODY: &str = "65534";

/// A 0700 state dir whose config holds no token: moltd gets it from its
/// environment, so only the local socket lets a tokenless `molt` in.
fn state_without_token(root: &Path, extra: serde_json::Value) -> PathBuf {
    let state = root.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = json!({ "update": { "checkOnStart": false } });
    moltd::merge(&mut config, extra);
    std::fs::write(state.join("openclaw.json"), config.to_string()).unwrap();
    state
}

fn start(state: &Path, args: &[&str]) -> Moltd {
    let mut command = moltd::command(moltd_path(), state, args);
    command.env("OPENCLAW_GATEWAY_TOKEN", SERVICE_TOKEN);
    Moltd::spawn(command)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Waits for moltd's log line with every one of `needles`, read through
/// `logs.tail` and its follow (a file read races the log writer).
fn logged(daemon: &Moltd, needles: &[&str]) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = molt_e2e::client::Client::open(&daemon.first.url()).await;
        client
            .connect(SERVICE_TOKEN, &["operator.read", "operator.admin"])
            .await;
        molt_e2e::updates::log_line(&mut client, needles).await
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| text(&out.stdout).trim() == "0")
}

#[test]
fn the_local_socket_admits_the_owner_without_a_token_and_refuses_another_user() {
    if !is_root() {
        eprintln!("skipped: running a client as another user needs root (setpriv)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = state_without_token(tmp.path(), json!({}));
    let daemon = start(&state, &["--port", "0"]);
    let socket = state.join("gateway.sock");
    assert_eq!(mode(&socket), 0o600, "the socket is the owner's alone");
    assert_eq!(mode(&state), 0o700);

    // The owner, with no token anywhere it can read.
    let status = molt()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_exit(&status, 0);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["pid"], daemon.first.pid);
    // The same molt over TCP, without the token, is refused.
    let tcp = molt()
        .args(["status", "--url", &daemon.first.url(), "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_exit(&tcp, 4);

    // Another user: the modes keep it out; opened up by hand, the peer
    // check still does.
    for dir in [tmp.path(), state.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stranger = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_molt"))
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert_exit(&stranger, 4);
    assert!(
        text(&stranger.stderr).contains("403"),
        "{}",
        text(&stranger.stderr)
    );
    // The refusal is logged with the uid (waits for the line, fails
    // without it).
    logged(&daemon, &["refused a peer of another user: uid 65534"]);
    drop(daemon);
}

/// The generated certificate's fingerprint, as `openssl x509 -fingerprint
/// -sha256` would print it (colons, upper case): the form an operator
/// copies.
fn certificate_fingerprint(state: &Path) -> String {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(state.join("gateway/tls/gateway-cert.pem")).unwrap();
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    let hex = molt_console::client::transport::fingerprint(&cert).to_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &hex[2 * i..2 * i + 2]).collect();
    pairs.join(":")
}

#[test]
fn wss_with_the_generated_certificate_pinned_works_and_another_pin_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = state_without_token(
        tmp.path(),
        json!({ "gateway": { "tls": { "enabled": true } } }),
    );
    let daemon = start(&state, &["--port", "0"]);
    assert_eq!(mode(&state.join("gateway/tls/gateway-key.pem")), 0o600);
    let url = format!("wss://{}", daemon.first.addr);
    let fingerprint = certificate_fingerprint(&state);

    let pinned = molt()
        .args(["status", "--json", "--url", &url, "--token", SERVICE_TOKEN])
        .args(["--tls-fingerprint", &fingerprint, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_exit(&pinned, 0);

    let wrong = molt()
        .args(["status", "--url", &url, "--token", SERVICE_TOKEN])
        .args(["--tls-fingerprint", &"00".repeat(32), "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_exit(&wrong, 3);
    assert!(
        text(&wrong.stderr).contains("is not the pinned one"),
        "{}",
        text(&wrong.stderr)
    );

    // Plain ws:// to a TLS listener gets no session.
    let plain = molt()
        .args([
            "status",
            "--url",
            &daemon.first.url(),
            "--token",
            SERVICE_TOKEN,
        ])
        .args(["--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_exit(&plain, 3);

    // Discovery on the host: wss:// pinned to the certificate it finds.
    let target = molt_console::target::discover(
        &molt_console::target::Overrides {
            state_dir: Some(state.clone()),
            token: Some(SERVICE_TOKEN.to_owned()),
            ..Default::default()
        },
        &molt_console::target::Env::default(),
    )
    .unwrap();
    assert!(target.url.starts_with("wss://"), "{}", target.url);
    let mut options = target.connect_options(ClientMode::Cli);
    options.local_socket = None;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (client, _events) = Client::connect(&options).await.expect("pinned wss");
        assert_eq!(served_by(&client).await, daemon.first.pid);
        client.close().await;
    });
}

/// The pid of the process that serves `client`.
async fn served_by(client: &Client) -> u32 {
    let health = client.request(Method::Health, None).await.expect("health");
    health["pid"].as_u64().expect("a pid") as u32
}

/// Connects in a loop through `options` until stopped, counting attempts
/// and the refused ones.
fn connect_in_a_loop(
    options: ConnectOptions,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Option<String>)> {
    tokio::spawn(async move {
        let (attempts, refused) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut first_error = None;
        while !stop.load(Ordering::Relaxed) {
            attempts.fetch_add(1, Ordering::Relaxed);
            match Client::connect(&options).await {
                Ok((client, _events)) => {
                    client.close().await;
                }
                Err(ConnectError::Refused { .. }) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        (attempts.into_inner(), refused.into_inner(), first_error)
    })
}

/// Raw connects to the local socket in a loop: `(attempts, refused)`.
fn probe_local(socket: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut attempts, mut refused) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            attempts += 1;
            if std::os::unix::net::UnixStream::connect(&socket).is_err() {
                refused += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (attempts, refused)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handoff_refuses_no_connection_on_the_local_socket_or_the_tls_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let state = state_without_token(
        tmp.path(),
        json!({ "gateway": { "tls": { "enabled": true } } }),
    );
    let mut daemon = start(&state, &["--port", "0", "--restart-mode", "respawn"]);
    let first = daemon.first.clone();
    let socket = state.join("gateway.sock");
    let fingerprint =
        molt_protocol::state::normalize_tls_fingerprint(&certificate_fingerprint(&state)).unwrap();

    let mut local = ConnectOptions::new("ws://127.0.0.1:9", None, ClientMode::Cli);
    local.local_socket = Some(socket.clone());
    let mut tls = ConnectOptions::new(
        format!("wss://{}", first.addr),
        Some(SERVICE_TOKEN.to_owned()),
        ClientMode::Cli,
    );
    tls.tls_pin = Some(fingerprint);

    let stop = Arc::new(AtomicBool::new(false));
    let tcp_probe = Probe::start(first.addr.parse().unwrap());
    let local_probe = probe_local(socket.clone(), Arc::clone(&stop));
    let local_sessions = connect_in_a_loop(local.clone(), Arc::clone(&stop));
    let tls_sessions = connect_in_a_loop(tls.clone(), Arc::clone(&stop));

    // Admin on the local socket without a token: it may restart the gateway.
    let (owner, _events) = Client::connect(&local).await.expect("local session");
    owner
        .request(
            Method::RestartRequest,
            Some(json!({"reason": "test", "delayMs": 0, "skipDeferral": true})),
        )
        .await
        .expect("restart scheduled");
    let next = daemon.next_ready(READY_WAIT).expect("successor READY");
    assert_ne!(next.pid, first.pid);
    let exit = tokio::task::block_in_place(|| daemon.child.wait()).unwrap();
    assert_eq!(exit.code(), Some(0), "the old process exits cleanly");

    // The successor serves both, with the same certificate.
    for options in [&local, &tls] {
        let (client, _events) = Client::connect(options).await.expect("after the handoff");
        assert_eq!(served_by(&client).await, next.pid, "{options:?}");
        client.close().await;
    }
    stop.store(true, Ordering::Relaxed);
    let (tcp_ok, tcp_failed) = tcp_probe.finish().counts();
    let (local_attempts, local_refused) = local_probe.join().unwrap();
    let (local_sessions, local_sessions_refused, local_error) = local_sessions.await.unwrap();
    let (tls_sessions, tls_refused, tls_error) = tls_sessions.await.unwrap();
    assert_eq!(tcp_failed, 0, "TCP connects refused during the handoff");
    assert!(tcp_ok > 0);
    assert_eq!(
        local_refused, 0,
        "local connects refused during the handoff"
    );
    assert!(local_attempts > 0);
    assert_eq!(local_sessions_refused, 0, "{local_error:?}");
    assert_eq!(tls_refused, 0, "{tls_error:?}");
    assert!(local_sessions > 0 && tls_sessions > 0);
    assert_eq!(moltd::serving(&state), vec![next.pid]);
}
