//! Suite `metrics`: what a Prometheus scrape of `GET /metrics` costs the
//! release moltd with `--connections` handshaken clients open (500), next
//! to the same scrapes with none.
//!
//! CPU per scrape is moltd's `utime + stime` (`/proc/<pid>/stat`, in clock
//! ticks) over `--scrapes` sequential scrapes, divided by their number; the
//! same from `/proc/<pid>/task/*/schedstat` (nanoseconds) is shown beside
//! it, since a tick is 10 ms and one scrape far less. Each scrape is what
//! Prometheus does: a fresh TCP connection, the request with the bearer
//! token, the whole answer read, the connection closed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::client::Client;
use crate::moltd::{Running, TOKEN};
use crate::report::{Figure, Section, Unit};
use crate::stats::{ms, us};

/// CPU a scrape may cost moltd.
const TARGET_CPU_US: f64 = 1000.0;
/// What one scrape may carry.
const TARGET_BYTES: f64 = 16.0 * 1024.0;

#[derive(clap::Parser, Debug, Clone)]
pub struct Args {
    /// Handshaken WebSocket clients held open while scraping.
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// Sequential scrapes measured, with and without the clients.
    #[arg(long, default_value_t = 2000)]
    pub scrapes: usize,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["metrics"])
    }
}

/// What `scrapes` scrapes cost moltd.
struct Cost {
    /// utime + stime, per scrape.
    cpu: Duration,
    /// Time on a CPU from schedstat, per scrape.
    sched: Duration,
    /// Wall time per scrape, as the scraper saw it.
    wall: Duration,
    /// The last answer: body and whole response (head included).
    body_bytes: usize,
    response_bytes: usize,
    /// Samples in the last answer (lines that are not comments).
    samples: usize,
    /// `moltd_connections` in the last answer.
    connections: f64,
}

pub fn run(moltd: &Path, args: &Args) -> Result<Section> {
    ensure!(args.scrapes > 0, "--scrapes must be at least 1");
    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;
    let running = Running::start(moltd)?;
    let addr: SocketAddr = running.addr.parse().context("moltd's READY address")?;
    let hz = molt_daemon::clock::ticks_per_sec();

    eprintln!("metrics: {} scrapes, no clients", args.scrapes);
    // Warm up: the first scrapes page in code and grow buffers.
    measure(&running, addr, 50, hz)?;
    let quiet = measure(&running, addr, args.scrapes, hz)?;

    eprintln!(
        "metrics: {} clients connecting, then {} scrapes",
        args.connections, args.scrapes
    );
    let clients = rt.block_on(async {
        let mut clients = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            clients.push(Client::connect(&running.addr, TOKEN).await?);
        }
        anyhow::Ok(clients)
    })?;
    let loaded = measure(&running, addr, args.scrapes, hz)?;
    // Idle with the clients open, for as long as the scrapes took: what
    // moltd spends anyway (ticks to 500 clients), not on scraping.
    let idle_for = loaded.wall * u32::try_from(args.scrapes).unwrap_or(u32::MAX);
    let before = (cpu_ticks(running.pid)?, running.sched()?);
    std::thread::sleep(idle_for);
    let idle_cpu = ticks(cpu_ticks(running.pid)? - before.0, hz);
    let idle_sched = running.sched()?.since(before.1).run;
    drop(clients);
    drop(rt);

    let per = |d: Duration| us(d);
    let n = args.connections;
    let figures = vec![
        Figure::new(
            "scrape.cpu",
            format!("moltd CPU per scrape, {n} clients (utime+stime)"),
            per(loaded.cpu),
            Unit::Us,
        )
        .target(TARGET_CPU_US)
        .measured("no clients, same run", per(quiet.cpu)),
        Figure::new(
            "scrape.cpu_sched",
            format!("moltd CPU per scrape, {n} clients (schedstat)"),
            per(loaded.sched),
            Unit::Us,
        )
        .measured("no clients, same run", per(quiet.sched)),
        Figure::new(
            "scrape.wall",
            format!("scrape wall time, {n} clients (connect → last byte)"),
            per(loaded.wall),
            Unit::Us,
        )
        .measured("no clients, same run", per(quiet.wall)),
        Figure::new(
            "scrape.bytes",
            format!("response bytes per scrape, {n} clients"),
            loaded.response_bytes as f64,
            Unit::Bytes,
        )
        .target(TARGET_BYTES)
        .measured("no clients, same run", quiet.response_bytes as f64),
        Figure::new(
            "scrape.body_bytes",
            "of which the OpenMetrics body",
            loaded.body_bytes as f64,
            Unit::Bytes,
        ),
        Figure::new(
            "scrape.samples",
            "samples per scrape",
            loaded.samples as f64,
            Unit::Int,
        ),
        Figure::new(
            "idle.cpu",
            format!(
                "moltd CPU idle with {n} clients over the same {} ms (utime+stime)",
                ms(idle_for).round()
            ),
            us(idle_cpu),
            Unit::Us,
        )
        .measured("schedstat", us(idle_sched)),
    ];
    let notes = vec![format!(
        "{} sequential scrapes per figure, each a fresh connection with the bearer token \
         (as Prometheus scrapes); moltd_connections read {} with the clients open and {} \
         without (the scrape's own connection counts); a clock tick is {} ms, so \
         utime+stime is exact to {:.1} µs per scrape; the sample count grows with the \
         methods and outcomes a gateway has answered, a bounded set",
        args.scrapes,
        loaded.connections,
        quiet.connections,
        1000 / hz,
        1_000_000.0 / hz as f64 / args.scrapes as f64
    )];
    Ok(Section {
        suite: "metrics",
        figures,
        notes,
    })
}

/// `scrapes` sequential scrapes, and what they cost moltd.
fn measure(running: &Running, addr: SocketAddr, scrapes: usize, hz: u64) -> Result<Cost> {
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("Authorization", bearer.as_str())];
    let (ticks_before, sched_before) = (cpu_ticks(running.pid)?, running.sched()?);
    let started = Instant::now();
    let mut last = None;
    for _ in 0..scrapes {
        let response = molt_e2e::http::request(
            addr,
            "GET",
            "/metrics",
            &headers,
            None,
            Duration::from_secs(10),
        )?;
        if response.status != 200 {
            bail!("GET /metrics: {} {}", response.status, response.text());
        }
        last = Some(response);
    }
    let wall = started.elapsed();
    let cpu = ticks(cpu_ticks(running.pid)? - ticks_before, hz);
    let sched = running.sched()?.since(sched_before).run;
    let last = last.context("no scrape")?;
    let body = last.text();
    let head: usize = last
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
        + "HTTP/1.1 200 OK\r\n\r\n".len();
    let connections = body
        .lines()
        .find_map(|l| l.strip_prefix("moltd_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let n = u32::try_from(scrapes).unwrap_or(u32::MAX);
    Ok(Cost {
        cpu: cpu / n,
        sched: sched / n,
        wall: wall / n,
        body_bytes: last.body.len(),
        response_bytes: head + last.body.len(),
        samples: body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
        connections,
    })
}

fn ticks(n: u64, hz: u64) -> Duration {
    Duration::from_nanos(n * 1_000_000_000 / hz)
}

/// `utime + stime` of `pid`, in clock ticks: fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the command's closing parenthesis
/// (a command may hold spaces).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("unexpected {path}: {text:?}"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the command: state (field 3) ... utime (14), stime (15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_a_command_with_spaces() {
        let stat = "4242 (mol t) d) S 1 4242 4242 0 -1 4194304 500 0 0 0 \
                    37 5 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }
}
