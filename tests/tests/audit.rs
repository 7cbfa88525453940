//! The audit trail end to end: a scripted incident on a real moltd (the
//! kill switch, config changes from two clients, a failed update, an
//! update that hands off) is listed with the right actor for each change,
//! secrets left out, and holds across the handoff and a `kill -9`.

use std::net::SocketAddr;

use molt_e2e::PackageManager;
use molt_e2e::client::{Client, TOKEN};
use molt_e2e::moltd::{Moltd, Ready};
use molt_e2e::restarts::READY_WAIT;
use molt_e2e::updates::{NEW, OLD, UpdateFixture, update_run};
use molt_protocol::actor::Actor;
use molt_protocol::audit::{AuditAction, AuditEntry, AuditListResult};
use molt_protocol::method::ConfigGetResult;
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;

/// A client that names itself `client_id`, and the address it connects from.
async fn named_client(ready: &Ready, client_id: &str) -> (Client, SocketAddr) {
    let mut c = Client::open(&ready.url()).await;
    let mut params = Client::connect_params(TOKEN, &["operator.read", "operator.admin"]);
    params["client"]["id"] = json!(client_id);
    c.request("connect", params)
        .await
        .into_result::<Value>()
        .unwrap();
    let local = match c.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("plain loopback"),
    };
    (c, local)
}

async fn patch(c: &mut Client, raw: Value) {
    let got: ConfigGetResult = c
        .request("config.get", json!({}))
        .await
        .into_result()
        .unwrap();
    let _: Value = c
        .request(
            "config.patch",
            json!({"raw": raw.to_string(), "baseHash": got.hash}),
        )
        .await
        .into_result()
        .unwrap();
}

async fn audit_list(c: &mut Client, params: Value) -> AuditListResult {
    c.request("audit.list", params).await.into_result().unwrap()
}

/// Who made the change: the client id and address; every client here
/// authenticated with the gateway token, and the entry says so.
fn client_of(entry: &AuditEntry) -> (&str, &str) {
    match &entry.actor {
        Actor::Client {
            client_id,
            addr,
            credential,
            ..
        } => {
            assert_eq!(credential.as_deref(), Some("gateway-token"), "{entry:?}");
            (client_id.as_str(), addr.as_str())
        }
        other => panic!("{:?} by {other}", entry.action),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_is_listed_with_who_did_what_across_a_handoff_and_a_kill_9() {
    let fx = UpdateFixture::start().unwrap();
    fx.publish_broken("3.0.0").unwrap();
    let global = fx.install(PackageManager::Npm, OLD).unwrap();
    let (state, mut moltd) = fx.start_moltd(&global, json!({})).unwrap();

    let (mut alice, alice_addr) = named_client(&moltd.first, "ops-alice").await;
    let (mut bob, bob_addr) = named_client(&moltd.first, "ops-bob").await;
    let _: Value = alice
        .request("update.noAutoUpdate.set", json!({"enabled": true}))
        .await
        .into_result()
        .unwrap();
    patch(&mut alice, json!({"update": {"channel": "beta"}})).await;
    patch(
        &mut bob,
        json!({"models": {"providers": {"acme": {"apiKey": "sk-very-secret"}}}}),
    )
    .await;
    let failed = update_run(&mut alice, json!({"tag": "3.0.0"}))
        .await
        .unwrap();
    assert!(!failed.ok, "{failed:#?}");
    // A read changes nothing and is not listed.
    let _: Value = bob
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap();
    let updated = update_run(&mut bob, json!({"tag": NEW})).await.unwrap();
    assert!(updated.ok, "{updated:#?}");
    let successor = moltd
        .next_ready(READY_WAIT)
        .expect("the new version starts");
    assert_eq!(successor.version, NEW);

    // Listed by the successor: the old process wrote the handoff's entry.
    let (mut reader, _) = named_client(&successor, "auditor").await;
    let listed = audit_list(&mut reader, json!({})).await;
    let actions: Vec<AuditAction> = listed.entries.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::UpdateRun,
            AuditAction::UpdateRun,
            AuditAction::ConfigPatch,
            AuditAction::ConfigPatch,
            AuditAction::KillSwitch,
        ],
        "{listed:#?}"
    );
    let [
        update,
        failed_update,
        secret_patch,
        channel_patch,
        kill_switch,
    ] = <[AuditEntry; 5]>::try_from(listed.entries.clone()).unwrap();
    let (alice_addr, bob_addr) = (alice_addr.to_string(), bob_addr.to_string());
    assert_eq!(client_of(&update), ("ops-bob", bob_addr.as_str()));
    assert!(update.outcome.ok, "{update:#?}");
    assert_eq!(update.run_id.as_ref(), Some(&updated.run_id));
    assert_eq!(update.params["tag"], NEW);

    assert_eq!(
        client_of(&failed_update),
        ("ops-alice", alice_addr.as_str())
    );
    assert!(!failed_update.outcome.ok);
    assert_eq!(failed_update.outcome.code.as_deref(), Some("error"));
    assert_eq!(failed_update.run_id.as_ref(), Some(&failed.run_id));

    assert_eq!(client_of(&secret_patch), ("ops-bob", bob_addr.as_str()));
    assert_eq!(
        secret_patch.params,
        json!({"changes": {"models.providers.acme.apiKey": "[redacted]"}})
    );
    assert_eq!(
        client_of(&channel_patch),
        ("ops-alice", alice_addr.as_str())
    );
    assert_eq!(
        channel_patch.params,
        json!({"changes": {"update.channel": "beta"}})
    );
    assert_eq!(client_of(&kill_switch), ("ops-alice", alice_addr.as_str()));
    assert_eq!(kill_switch.params, json!({"enabled": true}));
    assert!(kill_switch.outcome.ok);
    let trail = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(!trail.contains("sk-very-secret"), "{trail}");

    // Filters and pages.
    let by_alice = audit_list(&mut reader, json!({"actor": "ops-alice"})).await;
    assert_eq!(by_alice.entries.len(), 3);
    let page = audit_list(&mut reader, json!({"limit": 2})).await;
    assert_eq!(page.entries, listed.entries[..2]);
    let rest = audit_list(&mut reader, json!({"before": page.next_before})).await;
    assert_eq!(rest.entries, listed.entries[2..]);
    let refused = reader
        .request("audit.list", json!({"action": "no.such"}))
        .await;
    let error = refused.error.expect("an unknown action is refused");
    assert!(
        error.message.starts_with("action: expected one of"),
        "{error:?}"
    );

    // kill -9, then a new start on the same state dir: nothing is lost.
    drop(reader);
    Moltd::signal(successor.pid, "KILL");
    drop(moltd);
    let restarted = fx.restart_moltd(&global, &state, &[]).unwrap();
    assert_eq!(restarted.first.version, NEW);
    let (mut reader, _) = named_client(&restarted.first, "auditor").await;
    let _: Value = reader
        .request(
            "gateway.hold.acquire",
            json!({"reason": "after the crash", "ttlMs": 60000}),
        )
        .await
        .into_result()
        .unwrap();
    let after = audit_list(&mut reader, json!({})).await;
    assert_eq!(after.entries[1..], listed.entries[..]);
    assert_eq!(after.entries[0].action, AuditAction::HoldAcquire);
    assert_eq!(client_of(&after.entries[0]).0, "auditor");
}
