//! Helpers for restart tests against the real binary: a client that finds
//! the process that printed a READY line, a forced restart, and a prober
//! that counts refused connections.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How a calling client treats the `shutdown` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manners {
    /// As the protocol asks: at `shutdown` it sends nothing more, waits
    /// for the answers it is owed, and moves to the successor. One request
    /// at a time.
    Cooperating,
    /// Ignores `shutdown` and keeps [`IGNORING_WINDOW`] requests in
    /// flight until the connection closes under it.
    Ignoring,
}

/// Requests an [`Manners::Ignoring`] client keeps in flight.
pub const IGNORING_WINDOW: usize = 4;

/// What a calling client saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub sent: u64,
    pub answered: u64,
    /// Connections it used (the first one included).
    pub connections: u64,
    /// Unanswered requests sent before an answered one on the same
    /// connection: a hole, which a server that answers everything it read
    /// never leaves.
    pub holes: u64,
}

impl Calls {
    pub fn lost(&self) -> u64 {
        self.sent - self.answered
    }
}

/// Calls `health` on whichever process serves at `addr` until `stop` is
/// set, reconnecting when a connection ends (or, cooperating, at
/// `shutdown`).
pub async fn call_in_a_loop(addr: String, manners: Manners, stop: Arc<AtomicBool>) -> Calls {
    use molt_protocol::frame::ServerFrame;
    let ready = Ready {
        addr,
        version: String::new(),
        pid: 0,
    };
    let window = match manners {
        Manners::Cooperating => 1,
        Manners::Ignoring => IGNORING_WINDOW,
    };
    let mut calls = Calls::default();
    while !stop.load(Ordering::Relaxed) {
        let mut c = client(&ready).await;
        calls.connections += 1;
        // Request id → the order it was sent in on this connection.
        let mut outstanding = std::collections::HashMap::new();
        let (mut order, mut last_answered) = (0u64, 0u64);
        let mut moving = false;
        loop {
            moving |= manners == Manners::Cooperating && c.has_event("shutdown");
            while outstanding.len() < window && !moving && !stop.load(Ordering::Relaxed) {
                let Some(id) = c.try_send_request("health", json!({})).await else {
                    break; // closed under us; what is outstanding says the rest
                };
                order += 1;
                outstanding.insert(id, order);
                calls.sent += 1;
            }
            if outstanding.is_empty() {
                break; // moving on, or stopping
            }
            match c.frame().await {
                Some(ServerFrame::Res(res)) => {
                    let sent_as = outstanding
                        .remove(res.id.as_str())
                        .unwrap_or_else(|| panic!("an answer to no request: {res:?}"));
                    calls.answered += 1;
                    last_answered = last_answered.max(sent_as);
                }
                Some(ServerFrame::Event(e)) => {
                    c.events
                        .push((e.event, e.payload.unwrap_or_default(), e.seq));
                }
                None => {
                    calls.holes += outstanding
                        .values()
                        .filter(|&&sent_as| sent_as < last_answered)
                        .count() as u64;
                    break;
                }
            }
        }
    }
    calls
}

/// How often the prober connects.
pub const PROBE_EVERY: Duration = Duration::from_millis(1);

/// What the prober saw.
#[derive(Debug, Default)]
pub struct Probed {
    pub attempts: u64,
    /// Connects refused (ECONNREFUSED): nobody listened.
    pub refused: u64,
    /// Connects that failed otherwise.
    pub failed: u64,
    /// First failed connect → the next successful one, the longest.
    pub longest_outage: Duration,
    pub first_error: Option<String>,
}

impl Probed {
    /// `(connected, failed for any reason)`.
    pub fn counts(&self) -> (u64, u64) {
        let failed = self.refused + self.failed;
        (self.attempts - failed, failed)
    }
}

/// A thread that connects to `addr` every [`PROBE_EVERY`] (at least once)
/// until finished or dropped.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Probed>>,
}

impl Probe {
    pub fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut probed = Probed::default();
            let mut down_since: Option<Instant> = None;
            loop {
                let at = Instant::now();
                probed.attempts += 1;
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(_) => {
                        if let Some(since) = down_since.take() {
                            probed.longest_outage = probed.longest_outage.max(at - since);
                        }
                    }
                    Err(e) => {
                        if e.kind() == std::io::ErrorKind::ConnectionRefused {
                            probed.refused += 1;
                        } else {
                            probed.failed += 1;
                        }
                        probed.first_error.get_or_insert_with(|| e.to_string());
                        down_since.get_or_insert(at);
                    }
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(PROBE_EVERY);
            }
            if let Some(since) = down_since {
                probed.longest_outage = probed.longest_outage.max(since.elapsed());
            }
            probed
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops probing and says what was seen.
    pub fn finish(mut self) -> Probed {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prober_counts_refusals_and_the_outage() {
        let (_held, addr) = crate::ports::refusing_addr();
        let probed = Probe::start(addr).finish();
        assert!(probed.attempts > 0);
        assert_eq!(probed.refused, probed.attempts, "{probed:?}");
        assert_eq!(probed.counts(), (0, probed.attempts));
        assert!(probed.longest_outage > Duration::ZERO, "{probed:?}");
    }
}
