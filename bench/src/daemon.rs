//! Suite `daemon`: start-to-READY, idle memory, and `health` latency under
//! concurrent clients. Every measurement gets its own moltd in a fresh temp
//! state dir.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::moltd::{Memory, Running, Sched, TOKEN};
use crate::report::{Figure, Section, Unit};
use crate::stats::{Summary, ms, us};

/// OpenClaw's gateway on this machine (reference figures, not measured here).
const OPENCLAW_READY_MS: f64 = 3800.0;
const OPENCLAW_RSS_MIB: f64 = 523e6 / (1024.0 * 1024.0);

const TARGET_READY_MS: f64 = 20.0;
const TARGET_RSS_MIB: f64 = 10.0;
const TARGET_P99_US: f64 = 1000.0;
/// The p99 target applies at this many clients.
const TARGET_P99_CLIENTS: usize = 100;

/// Unmeasured requests per client before the clock starts.
const WARMUP: usize = 20;

#[derive(clap::Parser, Debug, Clone)]
pub struct Args {
    /// Start-to-READY runs.
    #[arg(long, default_value_t = 20)]
    pub starts: usize,
    /// Measured `health` requests per client with one client. With more
    /// clients each sends requests × min(clients, 10) / clients, so a level
    /// never sends more than 10 × requests in all.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent client counts, one latency run each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub clients: Vec<usize>,
    /// How long the connected client idles before memory is read (ms).
    #[arg(long, default_value_t = 1000)]
    pub idle_ms: u64,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["daemon"])
    }

    fn per_client(&self, clients: usize) -> usize {
        (self.requests * clients.min(10)).div_ceil(clients.max(1))
    }
}

pub fn run(moltd: &Path, args: &Args) -> Result<Section> {
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    eprintln!("daemon: {} starts", args.starts);
    let ready = start_to_ready(moltd, args.starts)?;
    let spawn = spawn_floor(args.starts)?;
    figures.extend(start_figures(&ready, &spawn, args.starts));

    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;

    eprintln!("daemon: idle memory ({} ms idle)", args.idle_ms);
    let idle = rt.block_on(idle_memory(moltd, Duration::from_millis(args.idle_ms)))?;
    figures.push(
        Figure::new(
            "rss.idle",
            "idle VmRSS (1 client)",
            idle.rss_mib(),
            Unit::MiB,
        )
        .target(TARGET_RSS_MIB)
        .reference("OpenClaw 523 MB =", OPENCLAW_RSS_MIB),
    );
    figures.push(Figure::new(
        "rss.idle_hwm",
        "idle VmHWM (1 client)",
        idle.hwm_mib(),
        Unit::MiB,
    ));

    let mut first: Option<Level> = None;
    for &clients in &args.clients {
        let per_client = args.per_client(clients);
        eprintln!("daemon: health × {per_client} from {clients} client(s)");
        let level = rt.block_on(latency(moltd, clients, per_client))?;
        figures.extend(level.figures(first.as_ref(), &idle));
        first.get_or_insert(level);
    }
    notes.push(format!(
        "latency = client send → matching response, per request, after {WARMUP} warm-up \
         requests per client; closed loop (each client waits for its answer), so \
         p50 ≈ clients / throughput; moltd CPU, run-queue wait (runnable, no CPU free) and \
         wakeups (times a thread was scheduled in) are moltd's own, from its threads' \
         schedstat over the measured window"
    ));
    notes.push("p99 of the start runs is their slowest run when runs < 100".into());
    Ok(Section {
        suite: "daemon",
        figures,
        notes,
    })
}

fn start_to_ready(moltd: &Path, runs: usize) -> Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(Running::start(moltd)?.ready_after);
    }
    Summary::of(samples).context("--starts must be at least 1")
}

/// Spawn to exit of `true`: what any process start costs on this machine.
fn spawn_floor(runs: usize) -> Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        Command::new("true")
            .stdout(Stdio::null())
            .status()
            .context("running `true`")?;
        samples.push(started.elapsed());
    }
    Summary::of(samples).context("--starts must be at least 1")
}

fn start_figures(ready: &Summary, spawn: &Summary, runs: usize) -> Vec<Figure> {
    let fig = |id: &str, label: &str, d| {
        Figure::new(
            format!("start_to_ready.{id}"),
            format!("start→READY {label} ({runs} runs)"),
            ms(d),
            Unit::Ms,
        )
    };
    vec![
        fig("min", "min", ready.min),
        fig("p50", "p50", ready.p50)
            .target(TARGET_READY_MS)
            .reference("OpenClaw", OPENCLAW_READY_MS)
            .measured("`true` spawn→exit p50", ms(spawn.p50)),
        fig("p99", "p99", ready.p99).target(TARGET_READY_MS),
        fig("max", "max", ready.max),
    ]
}

/// One connected, handshaken client idles; then VmRSS/VmHWM are read.
async fn idle_memory(moltd: &Path, idle: Duration) -> Result<Memory> {
    let running = Running::start(moltd)?;
    let _client = Client::connect(&running.addr, TOKEN).await?;
    // A measurement window, not synchronisation: READY and hello-ok came first.
    tokio::time::sleep(idle).await;
    running.memory()
}

struct Level {
    clients: usize,
    summary: Summary,
    throughput: f64,
    /// moltd's scheduler totals over the measured window.
    sched: Sched,
    requests: usize,
    after: Memory,
}

/// `clients` handshaken clients each send `per_client` sequential `health`
/// requests, all released at once after warm-up.
async fn latency(moltd: &Path, clients: usize, per_client: usize) -> Result<Level> {
    let running = Running::start(moltd)?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (addr, barrier) = (running.addr.clone(), barrier.clone());
        tasks.spawn(async move {
            let mut client = Client::connect(&addr, TOKEN).await;
            if let Ok(c) = &mut client {
                for _ in 0..WARMUP {
                    if let Err(e) = c.request("health", Value::Null).await {
                        client = Err(e);
                        break;
                    }
                }
            }
            // Everyone reaches the barrier, even on error, so none hangs.
            barrier.wait().await;
            let mut client = client?;
            let mut samples = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let sent = Instant::now();
                client.request("health", Value::Null).await?;
                samples.push(sent.elapsed());
            }
            anyhow::Ok((samples, client))
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let sched_before = running.sched()?;
    let mut samples = Vec::with_capacity(clients * per_client);
    let mut connected = Vec::with_capacity(clients);
    while let Some(joined) = tasks.join_next().await {
        let (s, client) = joined.context("client task panicked")??;
        samples.extend(s);
        connected.push(client);
    }
    let wall = started.elapsed();
    let sched = running.sched()?.since(sched_before);
    // Read while every client is still connected.
    let after = running.memory()?;
    drop(connected);
    let requests = samples.len();
    Ok(Level {
        clients,
        summary: Summary::of(samples).context("no requests were measured")?,
        throughput: requests as f64 / wall.as_secs_f64(),
        sched,
        requests,
        after,
    })
}

impl Level {
    /// Figures for this level; ratios against the first level (usually
    /// one client) and the idle memory, all measured in this run.
    fn figures(&self, first: Option<&Level>, idle: &Memory) -> Vec<Figure> {
        let c = self.clients;
        let id = |name: &str| format!("health.c{c}.{name}");
        let label =
            |name: &str| format!("health {name} @{c} client{}", if c == 1 { "" } else { "s" });
        let base = first.map(|f| (format!("@{}", f.clients), f));

        let mut p50 = Figure::new(id("p50"), label("p50"), us(self.summary.p50), Unit::Us);
        let mut p99 = Figure::new(id("p99"), label("p99"), us(self.summary.p99), Unit::Us);
        let max = Figure::new(id("max"), label("max"), us(self.summary.max), Unit::Us);
        let mut rate = Figure::new(
            id("throughput"),
            label("throughput"),
            self.throughput,
            Unit::PerSec,
        );
        if c == TARGET_P99_CLIENTS {
            p99 = p99.target(TARGET_P99_US);
        }
        if let Some((at, f)) = &base {
            p50 = p50.measured(format!("p50 {at}"), us(f.summary.p50));
            p99 = p99.measured(format!("p99 {at}"), us(f.summary.p99));
            rate = rate.measured(format!("throughput {at}"), f.throughput);
        }
        let per_request = |d: Duration| us(d) / self.requests as f64;
        let cpu = Figure::new(
            id("cpu_per_request"),
            label("moltd CPU per request"),
            per_request(self.sched.run),
            Unit::Us,
        );
        let wait = Figure::new(
            id("runqueue_wait_per_request"),
            label("moltd run-queue wait per request"),
            per_request(self.sched.wait),
            Unit::Us,
        );
        let slices = Figure::new(
            id("wakeups_per_request"),
            label("moltd thread wakeups per request"),
            self.sched.slices as f64 / self.requests as f64,
            Unit::Count,
        );
        let rss = Figure::new(
            id("rss"),
            format!("VmRSS after the @{c} run, clients connected"),
            self.after.rss_mib(),
            Unit::MiB,
        )
        .measured("idle VmRSS", idle.rss_mib());
        vec![p50, p99, max, rate, cpu, wait, slices, rss]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_scale_down_with_clients() {
        let args = Args::defaults();
        assert_eq!(args.clients, vec![1, 10, 100]);
        assert_eq!(args.per_client(1), 2000);
        assert_eq!(args.per_client(10), 2000);
        assert_eq!(args.per_client(100), 200);
    }
}
