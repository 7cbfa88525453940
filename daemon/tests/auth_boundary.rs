//! The boundary around admin, tried on the real moltd binary as an
//! attacker would: a web page, a read-only credential, `config.get` from
//! every kind of session, weakening patches, a hundred guesses, every
//! file moltd wrote searched for its secrets, and who may read the metrics.

mod common;

use std::path::Path;
use std::time::Duration;

use common::moltd::{self, MOLTD, Moltd};
use common::{Client, TOKEN};
use molt_protocol::error::ErrorCode;
use molt_protocol::method::ConfigGetResult;
use molt_protocol::secret::REDACTED;
use molt_protocol::status::StatusResult;
use molt_protocol::{Method, Scope};
use serde_json::{Value, json};

/// A read-only credential long enough not to be flagged.
const READ_TOKEN: &str = "read-only-token-0123456789abcdef";

fn start(state: &Path, extra: Value) -> Moltd {
    moltd::write_config(state, extra);
    moltd::start(state, &["--port", "0"])
}

fn url(moltd: &Moltd) -> String {
    moltd.first.url()
}

/// A session with `token`, asking for both scopes.
async fn session(moltd: &Moltd, token: &str) -> (Client, Vec<Scope>) {
    let mut client = Client::open(&url(moltd)).await;
    let hello = client
        .connect(token, &["operator.read", "operator.admin"])
        .await;
    (client, hello.auth.scopes)
}

/// What a `connect` with `token` is refused with: `details.code` and
/// `retryAfterMs`.
async fn refused_connect(url: &str, token: &str) -> (String, Option<u64>) {
    let mut client = Client::open(url).await;
    let res = client
        .request(
            "connect",
            Client::connect_params(token, &["operator.read", "operator.admin"]),
        )
        .await;
    let error = res
        .error
        .unwrap_or_else(|| panic!("{token:?} was accepted"));
    assert_eq!(error.code, ErrorCode::InvalidRequest, "{error:?}");
    assert_eq!(client.close_code().await, Some(1008));
    let code = error.details.unwrap()["code"].as_str().unwrap().to_owned();
    (code, error.retry_after_ms)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_origin_is_refused_before_any_frame_and_an_allowed_one_connects() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"controlUi": {"allowedOrigins": ["https://control.example.com"]}}}),
    );
    let url = url(&moltd);
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        assert_eq!(
            Client::open_from_origin(&url, origin).await.err(),
            Some(403),
            "{origin}"
        );
    }
    let own = format!(
        "http://127.0.0.1:{}",
        moltd.first.socket_addr().unwrap().port()
    );
    for origin in ["https://control.example.com", own.as_str()] {
        let mut client = Client::open_from_origin(&url, origin)
            .await
            .unwrap_or_else(|status| panic!("{origin} refused with {status}"));
        client.connect(TOKEN, &["operator.read"]).await;
    }
    // A client without an Origin is no browser and is not affected.
    session(&moltd, TOKEN).await;

    let log = log_text(dir.path());
    assert_eq!(
        log.matches("browser origin not allowed: https://evil.example")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_auth_a_web_page_gets_nothing_and_anyone_else_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(dir.path(), json!({"gateway": {"auth": {"mode": "none"}}}));
    assert_eq!(
        Client::open_from_origin(&url(&moltd), "https://evil.example")
            .await
            .err(),
        Some(403)
    );
    let (mut client, scopes) = session(&moltd, "").await;
    assert_eq!(scopes, vec![Scope::Read]);
    let error = client
        .request("update.noAutoUpdate.set", json!({"enabled": true}))
        .await
        .error
        .unwrap();
    assert_eq!(error.code, ErrorCode::Forbidden);
}

/// Valid params for each method, so only the scope can refuse it. A new
/// method fails to compile here until it has a row.
fn params_for(method: Method, hash: &str) -> Value {
    match method {
        Method::Connect => Client::connect_params(TOKEN, &["operator.read"]),
        Method::Health | Method::Status | Method::ConfigGet | Method::UpdateCheck => json!({}),
        Method::ConfigPatch => json!({"raw": r#"{"update":{"channel":"beta"}}"#, "baseHash": hash}),
        Method::RestartRequest => json!({"reason": "read session", "delayMs": 60000}),
        Method::UpdateRun => json!({"note": "read session"}),
        Method::UpdateStatus => json!({}),
        Method::UpdateHistory => json!({"limit": 1}),
        Method::NoAutoUpdateSet => json!({"enabled": true}),
        Method::HoldAcquire => json!({"reason": "read session", "ttlMs": 60000}),
        Method::HoldRelease => json!({"holdId": "hold-1"}),
        Method::LogsTail => json!({"lines": 1}),
        Method::AuditList => json!({"limit": 1}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_credential_is_forbidden_every_admin_method_naming_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"readToken": READ_TOKEN}}}),
    );
    let config_before = std::fs::read(dir.path().join("openclaw.json")).unwrap();
    let (mut reader, scopes) = session(&moltd, READ_TOKEN).await;
    assert_eq!(scopes, vec![Scope::Read], "asking for admin is not enough");
    let hash = reader
        .request("config.get", json!({}))
        .await
        .into_result::<ConfigGetResult>()
        .unwrap()
        .hash;
    let admin_methods: Vec<Method> = Method::ALL
        .iter()
        .copied()
        .filter(|m| m.required_scope() == Scope::Admin)
        .collect();
    assert!(admin_methods.len() >= 7, "{admin_methods:?}");
    for method in &admin_methods {
        let error = reader
            .request(method.as_str(), params_for(*method, &hash))
            .await
            .error
            .unwrap_or_else(|| panic!("{} ran for a read session", method.as_str()));
        assert_eq!(error.code, ErrorCode::Forbidden, "{}", method.as_str());
        assert_eq!(error.message, "missing scope operator.admin");
        let details = error.details.unwrap();
        assert_eq!(details["code"], "MISSING_SCOPE");
        assert_eq!(details["missingScope"], "operator.admin");
    }
    for method in Method::ALL
        .iter()
        .filter(|m| m.required_scope() == Scope::Read && **m != Method::Connect)
    {
        let res = reader
            .request(method.as_str(), params_for(*method, &hash))
            .await;
        assert!(res.ok, "{}: {:?}", method.as_str(), res.error);
    }
    // Nothing an admin method would have changed has changed.
    assert_eq!(
        std::fs::read(dir.path().join("openclaw.json")).unwrap(),
        config_before
    );
    assert!(
        !dir.path().join(".env").exists(),
        "the kill switch stayed off"
    );
    let status: StatusResult = reader
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(status.pending_work.holds, 0);
    assert_eq!(status.auth.unwrap().mode, "token");

    // The gateway token asking for read only gets read only.
    let mut client = Client::open(&url(&moltd)).await;
    let hello = client.connect(TOKEN, &["operator.read"]).await;
    assert_eq!(hello.auth.scopes, vec![Scope::Read]);
    let (_, scopes) = session(&moltd, TOKEN).await;
    assert_eq!(scopes, vec![Scope::Read, Scope::Admin]);
}

/// Every string in `value`, with its dotted path.
fn strings(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((path.to_owned(), s.clone())),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| strings(v, &format!("{path}.{k}"), out)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, path, out)),
        _ => {}
    }
}

const API_KEY: &str = "sk-provider-key-that-must-not-leave";

#[tokio::test(flavor = "multi_thread")]
async fn config_get_shows_no_secret_to_any_session_and_the_sentinel_keeps_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"readToken": READ_TOKEN}, "remote": {"password": "hunter2-remote"}},
               "models": {"providers": {"x": {"apiKey": API_KEY, "maxTokens": 10}}}}),
    );
    let secrets = [TOKEN, READ_TOKEN, API_KEY, "hunter2-remote"];
    let mut seen = None;
    for token in [TOKEN, READ_TOKEN] {
        let (mut client, _) = session(&moltd, token).await;
        let got: ConfigGetResult = client
            .request("config.get", json!({}))
            .await
            .into_result()
            .unwrap();
        let mut found = Vec::new();
        strings(&got.config, "", &mut found);
        for (path, value) in &found {
            assert!(
                !secrets.iter().any(|s| value.contains(s)),
                "{path} shows a secret"
            );
        }
        assert_eq!(got.config["gateway"]["auth"]["token"], REDACTED);
        assert_eq!(got.config["gateway"]["auth"]["readToken"], REDACTED);
        assert_eq!(got.config["models"]["providers"]["x"]["apiKey"], REDACTED);
        assert_eq!(got.config["models"]["providers"]["x"]["maxTokens"], 10);
        seen = Some(got);
    }
    let got = seen.unwrap();

    // The whole config sent back as it was shown, with one real change.
    let (mut admin, _) = session(&moltd, TOKEN).await;
    let mut edited = got.config.clone();
    edited["update"]["channel"] = json!("beta");
    let patched = admin
        .request(
            "config.patch",
            json!({"raw": edited.to_string(), "baseHash": got.hash}),
        )
        .await;
    let patched: Value = patched.into_result().unwrap();
    assert_eq!(patched["changedPaths"], json!(["update.channel"]));
    assert_eq!(patched["config"]["gateway"]["auth"]["token"], REDACTED);
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("openclaw.json")).unwrap()).unwrap();
    assert_eq!(on_disk["gateway"]["auth"]["token"], TOKEN);
    assert_eq!(on_disk["models"]["providers"]["x"]["apiKey"], API_KEY);

    // The sentinel as new data is refused, and nothing is written.
    let before = std::fs::read(dir.path().join("openclaw.json")).unwrap();
    for raw in [
        json!({"models": {"providers": {"y": {"apiKey": REDACTED}}}}),
        json!({"update": {"channel": REDACTED}}),
    ] {
        let error = admin
            .request(
                "config.patch",
                json!({"raw": raw.to_string(), "baseHash": patched["hash"]}),
            )
            .await
            .error
            .unwrap();
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{raw}");
        assert!(error.message.contains(REDACTED), "{}", error.message);
    }
    assert_eq!(
        std::fs::read(dir.path().join("openclaw.json")).unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_weakening_patch_is_refused_with_the_file_untouched() {
    const LONG: &str = "a-gateway-token-of-32-characters";
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"token": LONG},
                           "controlUi": {"allowedOrigins": ["https://control.example.com"]}}}),
    );
    let path = dir.path().join("openclaw.json");
    let before = std::fs::read(&path).unwrap();
    let (mut admin, scopes) = session(&moltd, LONG).await;
    assert_eq!(scopes, vec![Scope::Read, Scope::Admin]);
    let hash = admin
        .request("config.get", json!({}))
        .await
        .into_result::<ConfigGetResult>()
        .unwrap()
        .hash;
    let weakening = [
        (
            json!({"gateway": {"auth": {"mode": "none"}}}),
            "gateway.auth.mode",
        ),
        (
            json!({"gateway": {"auth": {"token": null}}}),
            "gateway.auth.token",
        ),
        (
            json!({"gateway": {"auth": {"token": "shorter-token"}}}),
            "gateway.auth.token",
        ),
        (
            json!({"gateway": {"auth": {"readToken": "short"}}}),
            "gateway.auth.readToken",
        ),
        (
            json!({"gateway": {"auth": {"rateLimit": {"exemptLoopback": true}}}}),
            "gateway.auth.rateLimit",
        ),
        (
            json!({"gateway": {"controlUi": {"allowedOrigins": ["https://evil.example"]}}}),
            "gateway.controlUi.allowedOrigins",
        ),
        (
            json!({"update": {"git": {"buildCommand": ["sh", "-c", "id > /tmp/owned"]}}}),
            "update.git.buildCommand",
        ),
    ];
    for (patch, key) in weakening {
        let error = admin
            .request(
                "config.patch",
                json!({"raw": patch.to_string(), "baseHash": hash}),
            )
            .await
            .error
            .unwrap_or_else(|| panic!("{patch} was applied"));
        assert_eq!(error.code, ErrorCode::Forbidden, "{patch}");
        let details = error.details.unwrap();
        assert_eq!(details["code"], "FILE_EDIT_REQUIRED");
        assert_eq!(details["key"], key);
        assert!(
            error.message.contains("edit the config file"),
            "{}",
            error.message
        );
        assert!(!error.message.contains(LONG));
        assert_eq!(std::fs::read(&path).unwrap(), before, "{patch}");
    }
    // A lan bind without auth is refused as an invalid config.
    let error = admin
        .request(
            "config.patch",
            json!({"raw": r#"{"gateway":{"bind":"lan","auth":{"mode":"none"}}}"#, "baseHash": hash}),
        )
        .await
        .error
        .unwrap();
    assert_ne!(error.code, ErrorCode::Unknown);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A stronger token is fine.
    let rotated = format!("{LONG}-rotated");
    let res = admin
        .request(
            "config.patch",
            json!({"raw": json!({"gateway": {"auth": {"token": rotated}}}).to_string(), "baseHash": hash}),
        )
        .await;
    assert!(res.ok, "{:?}", res.error);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_wrong_tokens_lock_the_peer_out_for_growing_delays_and_the_right_token_works_after()
 {
    const CAP_MS: u64 = 2560;
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"rateLimit": {"maxAttempts": 3, "lockoutMs": CAP_MS}}}}),
    );
    let url = url(&moltd);
    let mut answers = Vec::new();
    for n in 0..100 {
        answers.push(refused_connect(&url, &format!("guess-{n}")).await);
    }
    // The free attempts are checked and cost nothing.
    assert!(
        answers[..3]
            .iter()
            .all(|a| *a == ("AUTH_FAILED".to_owned(), None)),
        "{answers:?}"
    );
    // Each checked failure after them locks out for longer, up to the cap.
    let lockouts: Vec<u64> = answers
        .iter()
        .filter(|(code, _)| code == "AUTH_FAILED")
        .filter_map(|(_, retry)| *retry)
        .collect();
    assert!(lockouts.len() >= 2, "{answers:?}");
    for pair in lockouts.windows(2) {
        assert!(
            pair[1] > pair[0] || pair[1] == CAP_MS,
            "lockouts grow: {lockouts:?}"
        );
    }
    assert!(lockouts.iter().all(|ms| *ms <= CAP_MS), "{lockouts:?}");
    // Attempts during a lockout are refused without being checked.
    let limited: Vec<u64> = answers
        .iter()
        .filter(|(code, _)| code == "AUTH_RATE_LIMITED")
        .map(|(_, retry)| retry.expect("a lockout says how long"))
        .collect();
    assert!(!limited.is_empty(), "{answers:?}");
    assert!(limited.iter().all(|ms| *ms <= CAP_MS));

    // Locked out, the right token is refused unchecked too...
    let lockout = loop {
        match refused_connect(&url, "one-more-guess").await {
            (code, Some(ms)) if code == "AUTH_FAILED" => break ms,
            (_, Some(ms)) => tokio::time::sleep(Duration::from_millis(ms)).await,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        lockout, CAP_MS,
        "after 100 failures the lockout is at its cap"
    );
    let (code, mut retry) = refused_connect(&url, TOKEN).await;
    assert_eq!(code, "AUTH_RATE_LIMITED");
    // ...while another address is not held up.
    let other = another_loopback_client(&moltd).await;
    assert!(other.is_some(), "127.0.0.2 connects during the lockout");

    // Waiting what the server said lets the right token in.
    let scopes = loop {
        tokio::time::sleep(Duration::from_millis(retry.unwrap())).await;
        let mut client = Client::open(&url).await;
        let res = client
            .request(
                "connect",
                Client::connect_params(TOKEN, &["operator.read", "operator.admin"]),
            )
            .await;
        match res.error {
            None => {
                break res
                    .into_result::<molt_protocol::handshake::HelloOk>()
                    .unwrap()
                    .auth
                    .scopes;
            }
            Some(error) => {
                assert_eq!(error.details.unwrap()["code"], "AUTH_RATE_LIMITED");
                retry = error.retry_after_ms;
            }
        }
    };
    assert_eq!(scopes, vec![Scope::Read, Scope::Admin]);
    // The success forgave the address: a typo now costs nothing.
    assert_eq!(
        refused_connect(&url, "typo").await,
        ("AUTH_FAILED".to_owned(), None)
    );
    // A hundred refusals, a few log lines.
    let log = log_text(dir.path());
    let lines = log.matches("authentication failed").count();
    assert!((1..=3).contains(&lines), "{lines} lines:\n{log}");
}

/// A session from 127.0.0.2 with the right token (`None` if refused).
async fn another_loopback_client(moltd: &Moltd) -> Option<Vec<Scope>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket
        .connect(&moltd.first.socket_addr().unwrap().into())
        .unwrap();
    let mut client = Client::open_stream(&url(moltd), socket.into()).await;
    client
        .try_connect(TOKEN, &["operator.read", "operator.admin"])
        .await
        .map(|hello| hello.auth.scopes)
}

#[test]
fn a_short_token_is_flagged_on_loopback_and_refused_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    moltd::write_config(dir.path(), json!({"gateway": {"auth": {"token": "short"}}}));
    let out = moltd::command(
        Path::new(MOLTD),
        dir.path(),
        &["--port", "0", "--bind", "lan"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("short credential (gateway.auth.token)"),
        "{stderr}"
    );
    assert!(!stderr.contains("\"short\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_names_the_short_credentials_never_their_value() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"token": "short-token-0123", "readToken": READ_TOKEN}}}),
    );
    let (mut client, _) = session(&moltd, READ_TOKEN).await;
    let status: Value = client
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        status["auth"],
        json!({"mode": "token", "readToken": true, "shortTokens": ["gateway.auth.token"]})
    );
}

async fn config_hash(client: &mut Client) -> String {
    client
        .request("config.get", json!({}))
        .await
        .into_result::<ConfigGetResult>()
        .unwrap()
        .hash
}

/// Everything moltd logged to its file.
fn log_text(state: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(state.join("logs")).unwrap() {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.is_file() {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_file_moltd_writes_holds_a_secret() {
    const ENV_TOKEN: &str = "gateway-token-from-the-environment-0001";
    const ENV_READ: &str = "read-token-from-the-environment-000001";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    moltd::write_config(
        state,
        json!({"gateway": {"auth": {"token": null}},
               "models": {"providers": {"x": {"apiKey": API_KEY}}}}),
    );
    let mut cmd = moltd::command(Path::new(MOLTD), state, &["--port", "0"]);
    cmd.env("OPENCLAW_GATEWAY_TOKEN", ENV_TOKEN)
        .env("OPENCLAW_GATEWAY_READ_TOKEN", ENV_READ)
        .env("MOLT_LOG", "debug");
    let mut moltd = Moltd::spawn(cmd);
    let url = url(&moltd);

    // Whatever could carry a secret into a file: wrong tokens (a near
    // miss of each), refused and accepted patches that name secrets,
    // values of the wrong type at secret keys, holds, logs.
    for guess in [&ENV_TOKEN[..ENV_TOKEN.len() - 1], &ENV_READ[1..], API_KEY] {
        refused_connect(&url, guess).await;
    }
    let (mut reader, _) = session(&moltd, ENV_READ).await;
    reader.request("config.get", json!({})).await;
    let (mut admin, scopes) = session(&moltd, ENV_TOKEN).await;
    assert_eq!(scopes, vec![Scope::Read, Scope::Admin]);
    for raw in [
        json!({"gateway": {"auth": {"token": "a-new-token-that-is-long-enough-1"}}}),
        json!({"gateway": {"auth": {"readToken": ["not", "a", "string", API_KEY]}}}),
        json!({"gateway": {"auth": {"token": 12345}}}),
        json!({"models": {"providers": {"x": {"apiKey": REDACTED}}}, "update": {"channel": "beta"}}),
        json!({"update": {"git": {"buildCommand": ["echo", API_KEY]}}}),
    ] {
        let hash = config_hash(&mut admin).await;
        let res = admin
            .request(
                "config.patch",
                json!({"raw": raw.to_string(), "baseHash": hash}),
            )
            .await;
        if let Some(error) = res.error {
            for secret in [ENV_TOKEN, ENV_READ, API_KEY] {
                assert!(!error.message.contains(secret), "{}", error.message);
            }
        }
    }
    admin
        .request(
            "gateway.hold.acquire",
            json!({"reason": "maintenance", "ttlMs": 1000}),
        )
        .await;
    admin.request("logs.tail", json!({"lines": 50})).await;
    drop((reader, admin));
    Moltd::signal(moltd.first.pid, "TERM");
    assert!(moltd.wait_exit(Duration::from_secs(30)).is_some());

    let mut written = Vec::new();
    files(state, &mut written);
    assert!(
        written.len() >= 3,
        "{:?}",
        written.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    let log = log_text(state);
    assert!(
        log.contains("config patched"),
        "the patches were logged:\n{log}"
    );
    for (path, bytes) in &written {
        for secret in [ENV_TOKEN, ENV_READ] {
            assert!(!contains(bytes, secret), "{} holds a token", path.display());
        }
        // The config is where the operator's key lives; nowhere else.
        if path.file_name().unwrap() != "openclaw.json" {
            assert!(
                !contains(bytes, API_KEY),
                "{} holds the API key",
                path.display()
            );
        }
    }
}

/// `GET /metrics` over the local socket, with no token: the whole answer.
fn scrape_local_socket(state: &Path) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(state.join("gateway.sock")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: moltd\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_answer_the_read_token_and_the_local_socket_owner_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let moltd = start(
        dir.path(),
        json!({"gateway": {"auth": {"readToken": READ_TOKEN}}}),
    );
    let addr = moltd.first.addr.parse().unwrap();
    let scrape = |authorization: &str| {
        molt_e2e::http::request(
            addr,
            "GET",
            "/metrics",
            &[("Authorization", authorization)],
            None,
            Duration::from_secs(10),
        )
        .unwrap()
    };
    // The read scope is enough; over TCP a token is needed.
    let read = scrape(&format!("Bearer {READ_TOKEN}"));
    assert_eq!(read.status, 200, "{}", read.text());
    assert!(read.text().contains("moltd_build_info{version="));
    let refused = scrape("Bearer not-the-read-token");
    assert_eq!(refused.status, 401);
    assert!(!refused.text().contains("moltd_"), "{}", refused.text());

    // The local socket's owner needs none, as on the WebSocket.
    let local = scrape_local_socket(dir.path());
    assert!(local.starts_with("HTTP/1.1 200 OK\r\n"), "{local}");
    assert!(local.contains("moltd_build_info{version="), "{local}");
}
