//! Suite `restart`: forced handoffs in a row of one real release moltd
//! (`--restart-mode respawn`) while a prober connects every ~1 ms. Reports
//! refused connections, the handoff gap (the old process's 1012 at a
//! client → the new pid's first `health` answer on a fresh connection),
//! request→READY, and what the run leaves behind (processes, fds, memory).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use molt_e2e::restarts::Probe;

use crate::client::{Client, Closed};
use crate::moltd::{self, Running, TOKEN};
use crate::report::{Figure, Section, Unit};
use crate::stats::{Summary, ms};

/// OpenClaw refused connections for this long across one update restart
/// on this machine (reference, not measured here).
const OPENCLAW_REFUSING_MS: f64 = 70_000.0;

const TARGET_GAP_P50_MS: f64 = 50.0;

/// The prober's pause between connects.
/// Bounds each wait of a handoff so a stuck one fails the run.
const STEP_WAIT: Duration = Duration::from_secs(20);

#[derive(clap::Parser, Debug, Clone)]
pub struct Args {
    /// Restarts in a row, each handing off to a new process.
    #[arg(long, default_value_t = 50)]
    pub restarts: usize,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["restart"])
    }
}

/// One handoff, timed at the client.
struct Handoff {
    new_pid: u32,
    /// Fresh connection → `health` answered, by the serving process
    /// before the restart (what any reconnect costs).
    connect_health: Duration,
    /// Request sent → the successor's READY line.
    request_to_ready: Duration,
    /// The 1012 → the new pid's first `health` answer on a fresh connection.
    gap: Duration,
    /// The 1012 → the old process gone.
    close_to_exit: Duration,
    /// Fresh connections after the 1012 that the old pid answered, and
    /// that failed, before the new pid answered.
    on_old: usize,
    failed: usize,
    shutdown_event: bool,
}

pub fn run(moltd: &Path, args: &Args) -> Result<Section> {
    ensure!(args.restarts >= 1, "--restarts must be at least 1");
    eprintln!("restart: {} handoffs", args.restarts);
    let running = Running::start_with(
        moltd,
        &["--restart-mode", "respawn"],
        json!({ "cooldownMs": 0 }),
    )?;
    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;
    let addr: SocketAddr = running.addr.parse().context("the READY address")?;
    // The first and the last process are read at the same point: after
    // serving a client that has left, 100 ms to settle (a measurement
    // window, not synchronisation), no probe running.
    rt.block_on(async {
        let mut client = Client::connect(&running.addr, TOKEN).await?;
        client.request("health", Value::Null).await
    })?;
    let settled = |pid| {
        std::thread::sleep(Duration::from_millis(100));
        anyhow::Ok((moltd::fds(pid)?, moltd::memory(pid)?))
    };
    let (first_fds, first_mem) = settled(running.pid)?;

    let probe = Probe::start(addr);
    let started = Instant::now();
    let mut pid = running.pid;
    let mut handoffs = Vec::with_capacity(args.restarts);
    for round in 1..=args.restarts {
        let handoff = handoff(&rt, &running, pid).with_context(|| format!("restart {round}"))?;
        pid = handoff.new_pid;
        handoffs.push(handoff);
    }
    let probed = probe.finish();
    let wall = started.elapsed();
    let (last_fds, last_mem) = settled(pid)?;
    let live = running.serving();

    let n = handoffs.len();
    let summary = |f: fn(&Handoff) -> Duration| {
        Summary::of(handoffs.iter().map(f).collect()).context("no handoffs")
    };
    let gap = summary(|h| h.gap)?;
    let reconnect = summary(|h| h.connect_health)?;
    let to_ready = summary(|h| h.request_to_ready)?;
    let to_exit = summary(|h| h.close_to_exit)?;
    let count = |f: fn(&Handoff) -> usize| handoffs.iter().map(f).sum::<usize>() as f64;
    let int = |id: &str, label: &str, value: f64| Figure::new(id, label, value, Unit::Int);
    let time = |id: &str, label: String, d: Duration| Figure::new(id, label, ms(d), Unit::Ms);

    let mut figures = vec![
        int(
            "probe.refused",
            "refused connects (prober, every ~1 ms)",
            probed.refused as f64,
        )
        .target(0.0),
        int(
            "probe.failed",
            "other failed connects (prober)",
            probed.failed as f64,
        )
        .target(0.0),
        int("probe.attempts", "prober connects", probed.attempts as f64),
        time(
            "probe.longest_outage",
            "longest refusing stretch".into(),
            probed.longest_outage,
        )
        .target(0.0)
        .reference("OpenClaw, one update restart", OPENCLAW_REFUSING_MS),
    ];
    for (id, label, d) in [
        ("min", "min", gap.min),
        ("p50", "p50", gap.p50),
        ("p99", "p99", gap.p99),
        ("max", "max", gap.max),
    ] {
        let mut f = time(
            &format!("handoff.gap.{id}"),
            format!("handoff gap {label} ({n} restarts)"),
            d,
        );
        if id == "p50" {
            f = f
                .target(TARGET_GAP_P50_MS)
                .measured("fresh connect→health p50, no restart", ms(reconnect.p50));
        }
        figures.push(f);
    }
    figures.extend([
        int(
            "handoff.reconnects_on_old",
            "fresh connects the old pid answered after its 1012",
            count(|h| h.on_old),
        ),
        int(
            "handoff.reconnects_failed",
            "fresh connects that failed after the 1012",
            count(|h| h.failed),
        )
        .target(0.0),
        int(
            "handoff.shutdown_missing",
            "1012 closes without a shutdown event first",
            count(|h| usize::from(!h.shutdown_event)),
        )
        .target(0.0),
        time(
            "restart.request_to_ready.p50",
            "request→successor READY p50".into(),
            to_ready.p50,
        )
        .measured("the first process's spawn→READY", ms(running.ready_after)),
        time(
            "restart.request_to_ready.p99",
            "request→successor READY p99".into(),
            to_ready.p99,
        ),
        time(
            "restart.close_to_exit.p50",
            "old 1012→old process gone p50".into(),
            to_exit.p50,
        ),
        time(
            "restart.close_to_exit.p99",
            "old 1012→old process gone p99".into(),
            to_exit.p99,
        ),
        int(
            "leak.processes",
            "live moltd processes on the state dir at the end",
            live.len() as f64,
        )
        .target(1.0),
        int("leak.fds", "open fds, last process", last_fds.len() as f64)
            .target(first_fds.len() as f64)
            .measured("first process", first_fds.len() as f64),
        Figure::new(
            "leak.rss",
            "VmRSS, last process",
            last_mem.rss_mib(),
            Unit::MiB,
        )
        .measured("first process", first_mem.rss_mib()),
    ]);

    let mut notes = vec![
        format!(
            "gap = the old process's 1012 close reaching a client → the first `health` answer \
             from the new pid on a fresh connection (connect, handshake, health; a connect \
             the old pid answers is dropped and retried at once); its p50 is compared with \
             the same fresh connect→health to a process not restarting ({n} samples)"
        ),
        "each restart: fresh client → `gateway.restart.request` {delayMs:0, skipDeferral:true} \
         → 1012 → gap → the successor's READY line → the old process gone; the next \
         restart starts after that"
            .into(),
        format!(
            "the prober connects over TCP and closes at once: {} connects in {:.0} ms, {:.1} \
             per restart; a refusal shorter than the ~1 ms between two connects can fall \
             between them (the fresh connects right after each 1012 are counted above); \
             refused = ECONNREFUSED, other = any other connect error{}",
            probed.attempts,
            ms(wall),
            probed.attempts as f64 / n as f64,
            probed
                .first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
        "fds and VmRSS of the first and the last process: after serving a client that has \
         left, 100 ms to settle, no probe running"
            .into(),
    ];
    if first_fds != last_fds {
        notes.push(format!(
            "fds differ: first process {first_fds:?}; last process {last_fds:?}"
        ));
    }
    if live.len() != 1 {
        notes.push(format!("live moltd pids at the end: {live:?}"));
    }
    Ok(Section {
        suite: "restart",
        figures,
        notes,
    })
}

/// One forced restart of `old`, timed from a client's side, through the
/// old process's exit.
fn handoff(rt: &tokio::runtime::Runtime, running: &Running, old: u32) -> Result<Handoff> {
    let (connect_health, sent, closed, close_at, answer) = rt.block_on(async {
        let started = Instant::now();
        let mut client = Client::connect(&running.addr, TOKEN).await?;
        ensure!(
            client.pid == u64::from(old),
            "a fresh connection reached pid {}, not the serving {old}",
            client.pid
        );
        client.request("health", Value::Null).await?;
        let connect_health = started.elapsed();

        let sent = Instant::now();
        let (closed, close_at) = force_restart(client).await?;
        let answer = first_answer(&running.addr, old).await?;
        anyhow::Ok((connect_health, sent, closed, close_at, answer))
    })?;
    let ready = running.next_ready()?;
    ensure!(
        ready.pid == answer.pid,
        "READY names pid {} but pid {} answered",
        ready.pid,
        answer.pid
    );
    let deadline = close_at + STEP_WAIT;
    while moltd::alive(old) {
        ensure!(
            Instant::now() < deadline,
            "pid {old} still alive {STEP_WAIT:?} after its 1012"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Handoff {
        new_pid: answer.pid,
        connect_health,
        request_to_ready: ready.at.saturating_duration_since(sent),
        gap: answer.at - close_at,
        close_to_exit: close_at.elapsed(),
        on_old: answer.on_old,
        failed: answer.failed,
        shutdown_event: closed.events.iter().any(|e| e == "shutdown"),
    })
}

/// Asks `client`'s process to restart now and reads until it closes the
/// connection with 1012; the close and when it came.
pub(crate) async fn force_restart(mut client: Client) -> Result<(Closed, Instant)> {
    client
        .request(
            "gateway.restart.request",
            json!({ "reason": "bench", "delayMs": 0, "skipDeferral": true }),
        )
        .await?;
    let closed = client.closed().await?;
    let close_at = Instant::now();
    ensure!(
        closed.code == Some(1012),
        "the old process closed with {:?}, not 1012",
        closed.code
    );
    Ok((closed, close_at))
}

pub(crate) struct Answer {
    pub pid: u32,
    pub at: Instant,
    on_old: usize,
    failed: usize,
}

/// Fresh connections, one right after the other, until a pid other than
/// `old` answers `health`.
pub(crate) async fn first_answer(addr: &str, old: u32) -> Result<Answer> {
    let deadline = Instant::now() + STEP_WAIT;
    let (mut on_old, mut failed) = (0, 0);
    loop {
        match Client::connect(addr, TOKEN).await {
            Ok(mut client) if client.pid != u64::from(old) => {
                let health = client.request("health", Value::Null).await?;
                let at = Instant::now();
                ensure!(
                    health["pid"].as_u64() == Some(client.pid),
                    "health from pid {} on a connection pid {} answered",
                    health["pid"],
                    client.pid
                );
                let pid = u32::try_from(client.pid)?;
                return Ok(Answer {
                    pid,
                    at,
                    on_old,
                    failed,
                });
            }
            Ok(_) => on_old += 1,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => failed += 1,
        }
        if Instant::now() >= deadline {
            bail!("only pid {old} answered for {STEP_WAIT:?} after its 1012");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_fifty_restarts() {
        assert_eq!(Args::defaults().restarts, 50);
    }
}
