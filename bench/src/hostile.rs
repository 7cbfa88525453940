//! Suite `hostile`: the release moltd under hostile clients, and what a
//! handoff costs the clients that stay connected.
//!
//! * a client that pipelines `logs.tail` without reading, for
//!   `--pipeline-secs`: moltd's peak RSS and whether (and when) the client
//!   was dropped;
//! * an honest client's `health` latency while `--flood` connections sit
//!   in the handshake;
//! * a forced handoff with `--clients` handshaken clients: how long until
//!   every one is served by the successor, and connects that failed;
//! * requests across `--handoffs` handoffs, by clients that follow the
//!   protocol (move at `shutdown`) and clients that ignore it: sent and
//!   lost.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures_util::SinkExt;
use molt_e2e::client::{Client, TOKEN};
use molt_e2e::memory::memory;
use molt_e2e::moltd::{Moltd, Ready, write_config};
use molt_e2e::restarts::{Calls, Manners, call_in_a_loop, client, force_restart};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Figure, Section, Unit};
use crate::stats::{Summary, ms, us};

const TARGET_RSS_MIB: f64 = 64.0;
/// Measured here before the connection bounds (reference).
const REFERENCE_HANDOFF_500_MS: f64 = 520.0;

#[derive(clap::Parser, Debug, Clone)]
pub struct Args {
    /// How long the non-reading client pipelines requests (seconds).
    #[arg(long, default_value_t = 30)]
    pub pipeline_secs: u64,
    /// Connections that never finish the handshake.
    #[arg(long, default_value_t = 500)]
    pub flood: usize,
    /// Handshaken clients connected through one forced handoff.
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// Handoffs the calling clients go through.
    #[arg(long, default_value_t = 50)]
    pub handoffs: usize,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["hostile"])
    }
}

/// A release moltd with the e2e fixtures' config (their token), in a
/// fresh state dir, handing off by respawn without a cooldown.
fn start(moltd: &Path) -> Result<(tempfile::TempDir, Moltd)> {
    let dir = tempfile::tempdir()?;
    write_config(
        dir.path(),
        json!({"gateway": {"reload": {"cooldownMs": 0}}}),
    );
    let running = Moltd::start_from(
        moltd,
        dir.path(),
        &["--port", "0", "--restart-mode", "respawn"],
    );
    Ok((dir, running))
}

pub fn run(moltd: &Path, args: &Args) -> Result<Section> {
    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    eprintln!(
        "hostile: a client pipelining without reading, {} s",
        args.pipeline_secs
    );
    let (peak, dropped_after) = rt.block_on(pipelining(moltd, args.pipeline_secs))?;
    figures.push(
        Figure::new(
            "pipeline.rss_peak",
            "peak VmHWM, one client pipelining without reading",
            peak,
            Unit::MiB,
        )
        .target(TARGET_RSS_MIB),
    );
    match dropped_after {
        Some(after) => figures.push(Figure::new(
            "pipeline.dropped_after",
            "that client dropped after",
            ms(after),
            Unit::Ms,
        )),
        None => notes.push("the pipelining client was not dropped within the run".into()),
    }

    eprintln!(
        "hostile: health under a {}-connection pre-auth flood",
        args.flood
    );
    let (flooded, quiet) = rt.block_on(flooded_health(moltd, args.flood))?;
    figures.push(
        Figure::new(
            "flood.health.p99",
            format!(
                "health p99 during a {}-connection pre-auth flood",
                args.flood
            ),
            us(flooded.p99),
            Unit::Us,
        )
        .measured("without the flood, same run", us(quiet.p99)),
    );

    eprintln!(
        "hostile: one handoff with {} clients connected",
        args.clients
    );
    let (all_back, failed) = rt.block_on(handoff_with_clients(moltd, args.clients))?;
    figures.push(
        Figure::new(
            "handoff.clients.all_back",
            format!(
                "forced handoff → all {} clients served by the successor",
                args.clients
            ),
            ms(all_back),
            Unit::Ms,
        )
        .reference(
            "before the connection bounds, this machine",
            REFERENCE_HANDOFF_500_MS,
        ),
    );
    figures.push(
        Figure::new(
            "handoff.clients.failed",
            "connects that failed on the way",
            failed as f64,
            Unit::Int,
        )
        .target(0.0),
    );

    eprintln!("hostile: requests across {} handoffs", args.handoffs);
    let (cooperating, ignoring) = rt.block_on(calls_across_handoffs(moltd, args.handoffs))?;
    for (id, label, calls) in [
        (
            "calls.cooperating",
            "clients that move at shutdown",
            cooperating,
        ),
        ("calls.ignoring", "clients that ignore shutdown", ignoring),
    ] {
        figures.push(Figure::new(
            format!("{id}.sent"),
            format!("requests sent, {label}"),
            calls.sent as f64,
            Unit::Int,
        ));
        let lost = Figure::new(
            format!("{id}.lost"),
            format!("requests lost, {label}"),
            calls.lost() as f64,
            Unit::Int,
        );
        figures.push(if id == "calls.cooperating" {
            lost.target(0.0)
        } else {
            lost
        });
    }
    notes.push(format!(
        "calls: 8 clients that follow the protocol (one request at a time; at `shutdown` \
         they stop sending, wait for their answers and reconnect) and 2 that ignore it (4 \
         requests in flight until the connection closes), through {} forced handoffs; an \
         ignoring client loses only what it sent after the close frame",
        args.handoffs
    ));
    Ok(Section {
        suite: "hostile",
        figures,
        notes,
    })
}

/// Peak RSS (MiB) while one client pipelines `logs.tail` without reading
/// for `secs`, and when it was dropped.
async fn pipelining(moltd: &Path, secs: u64) -> Result<(f64, Option<Duration>)> {
    let (_dir, running) = start(moltd)?;
    let pid = running.first.pid;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(4096)?;
    let addr: std::net::SocketAddr = running.first.addr.parse()?;
    socket.connect(&addr.into())?;
    let mut attacker = Client::open_stream(&running.first.url(), socket.into()).await;
    attacker
        .connect(TOKEN, &["operator.read", "operator.admin"])
        .await;
    let request =
        json!({"type": "req", "id": "x", "method": "logs.tail", "params": {"lines": 5000}})
            .to_string();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut dropped = None;
    while Instant::now() < end && dropped.is_none() {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, attacker.ws.send(Message::text(request.clone()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => dropped = Some(started.elapsed()),
            Err(_) => break,
        }
    }
    let peak = memory(pid)?.hwm_mib();
    Ok((peak, dropped))
}

/// `health` latency of one honest client, with `flood` connections held
/// open without a word, and without them.
async fn flooded_health(moltd: &Path, flood: usize) -> Result<(Summary, Summary)> {
    let (_dir, running) = start(moltd)?;
    let mut honest = client(&running.first).await;
    let quiet = health_latency(&mut honest, 2000).await?;
    let mut junk = Vec::with_capacity(flood);
    for _ in 0..flood {
        junk.push(tokio::net::TcpStream::connect(&running.first.addr).await?);
    }
    let flooded = health_latency(&mut honest, 2000).await?;
    drop(junk);
    Ok((flooded, quiet))
}

async fn health_latency(c: &mut Client, requests: usize) -> Result<Summary> {
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let sent = Instant::now();
        c.request("health", json!({}))
            .await
            .into_result::<serde_json::Value>()
            .map_err(|e| anyhow::anyhow!("health: {e}"))?;
        samples.push(sent.elapsed());
    }
    Summary::of(samples).context("no samples")
}

/// A forced handoff with `count` handshaken clients: the time from the
/// request until every client has a connection the successor answers,
/// and the connects that failed on the way.
async fn handoff_with_clients(moltd: &Path, count: usize) -> Result<(Duration, usize)> {
    let (_dir, mut running) = start(moltd)?;
    let first = running.first.clone();
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(client(&first).await);
    }
    let mut admin = client(&first).await;
    let started = Instant::now();
    force_restart(&mut admin).await;
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let moves = clients.into_iter().map(|mut c| {
        let (first, failed) = (first.clone(), Arc::clone(&failed));
        async move {
            // Cooperating: at shutdown, off to whichever process serves.
            let _ = c.event("shutdown").await;
            loop {
                match Client::try_open(&first.url()).await {
                    Some(mut fresh) => match fresh.try_connect(TOKEN, &["operator.read"]).await {
                        Some(hello) if hello.snapshot.pid != first.pid => return,
                        _ => {}
                    },
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    futures_util::future::join_all(moves).await;
    let all_back = started.elapsed();
    let successor = running
        .next_ready(Duration::from_secs(20))
        .context("the successor's READY")?;
    ensure!(successor.pid != first.pid, "no handoff happened");
    Ok((all_back, failed.load(Ordering::Relaxed)))
}

/// Requests sent and lost by 8 cooperating and 2 ignoring clients through
/// `handoffs` forced handoffs, summed per kind.
async fn calls_across_handoffs(moltd: &Path, handoffs: usize) -> Result<(Calls, Calls)> {
    let (_dir, mut running) = start(moltd)?;
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = [Manners::Cooperating; 8]
        .into_iter()
        .chain([Manners::Ignoring; 2])
        .map(|manners| {
            let (addr, stop) = (running.first.addr.clone(), Arc::clone(&stop));
            (manners, tokio::spawn(call_in_a_loop(addr, manners, stop)))
        })
        .collect();
    let mut current: Ready = running.first.clone();
    for _ in 0..handoffs {
        force_restart(&mut client(&current).await).await;
        current = running
            .next_ready(Duration::from_secs(20))
            .context("the successor's READY")?;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut cooperating, mut ignoring) = (Calls::default(), Calls::default());
    for (manners, caller) in callers {
        let calls = caller.await?;
        let sum = match manners {
            Manners::Cooperating => &mut cooperating,
            Manners::Ignoring => &mut ignoring,
        };
        sum.sent += calls.sent;
        sum.answered += calls.answered;
        sum.connections += calls.connections;
        sum.holes += calls.holes;
    }
    Ok((cooperating, ignoring))
}
