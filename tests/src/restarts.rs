//! Helpers for restart tests against the real binary: a client that finds
//! the process that printed a READY line, a forced restart, and a prober
//! that counts refused connections.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use molt_protocol::status::StatusResult;
use serde_json::{Value, json};

use crate::client::{Client, TOKEN};
use crate::moltd::Ready;

pub const READY_WAIT: Duration = Duration::from_secs(20);

/// A client of the process that printed `ready`. Right after a handoff a
/// connection can still land on the draining predecessor (both accept on
/// the shared socket until it stops), so reconnect like a real client.
pub async fn client(ready: &Ready) -> Client {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        assert!(Instant::now() < deadline, "never reached pid {}", ready.pid);
        // A stopping predecessor may drop or close the connection at any
        // point of the handshake: try again.
        let Some(mut client) = Client::try_open(&ready.url()).await else {
            continue;
        };
        let Some(hello) = client
            .try_connect(TOKEN, &["operator.read", "operator.admin"])
            .await
        else {
            continue;
        };
        // pid 0: whichever process serves now.
        let draining =
            hello.snapshot.restart.phase == molt_protocol::status::RestartPhase::InFlight;
        if hello.snapshot.pid == ready.pid || (ready.pid == 0 && !draining) {
            return client;
        }
        // The predecessor closes it with 1012 once drained.
        let _ = client.close_code().await;
    }
}

pub async fn status(ready: &Ready) -> StatusResult {
    client(ready)
        .await
        .request("status", json!({}))
        .await
        .into_result()
        .unwrap()
}

/// `gateway.restart.request` now, bypassing deferral.
pub async fn force_restart(client: &mut Client) -> Value {
    client
        .request(
            "gateway.restart.request",
            json!({"reason": "test", "delayMs": 0, "skipDeferral": true}),
        )
        .await
        .into_result()
        .unwrap()
}

/// Polls `status` until the last restart failure is reported.
pub async fn wait_for_failure(ready: &Ready) -> String {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if let Some(failure) = status(ready).await.restart.last_failure {
            return failure.reason;
        }
        assert!(Instant::now() < deadline, "no restart failure reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to `addr` every ~2 ms until stopped; counts refusals.
pub struct Probe {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    pub fn start(addr: SocketAddr) -> Probe {
        let (stop, ok, refused) = Default::default();
        let (s, o, r): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
            (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&refused));
        let thread = std::thread::spawn(move || {
            // Bounded: at most ~2 minutes of probing.
            for _ in 0..60_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(_) => r.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Probe {
            stop,
            ok,
            refused,
            thread: Some(thread),
        }
    }

    /// Stops probing; `(connected, refused)`.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}
