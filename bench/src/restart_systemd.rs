//! Suite `restart`, under systemd: the same forced handoffs as the respawn
//! run, by the release moltd installed with npm in a fresh Debian machine
//! and run by a real systemd 252 under the shipped units (the e2e
//! harness, `molt_e2e::systemd`). Reports refused connections, the handoff
//! gap, and what systemd saw: `MainPID` following every handoff and
//! `NRestarts` staying 0.
//!
//! Needs root and the Debian root `scripts/install-test-tools.sh` builds;
//! without them it says why and reports nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use molt_e2e::restarts::Probe;
use molt_e2e::systemd::{MoltdService, Root, SERVICE};
use serde_json::json;

use crate::client::Client;
use crate::moltd::TOKEN;
use crate::report::{Figure, Section, Unit};
use crate::restart::{Args, first_answer, force_restart};
use crate::stats::{Summary, ms};

/// Bounds each wait of a handoff so a stuck one fails the run.
const STEP_WAIT: Duration = Duration::from_secs(20);

/// The systemd run, or `None` (and why) where it cannot run.
/// `respawn_gap_p50_ms`: the respawn run's, to report beside this one.
pub fn run(
    moltd: &Path,
    version: &str,
    args: &Args,
    respawn_gap_p50_ms: Option<f64>,
) -> Result<Option<Section>> {
    let root = match molt_e2e::systemd::root()? {
        Root::Ready(root) => root,
        Root::Skip(reason) => {
            eprintln!("restart: under systemd skipped: {reason}");
            return Ok(None);
        }
    };
    eprintln!(
        "restart: {} handoffs under systemd (booting a machine)",
        args.restarts
    );
    let tarball = || {
        let dir = tempfile::tempdir()?.keep();
        molt_e2e::pack_moltd(moltd, version, &dir, molt_e2e::DEFAULT_PACKAGE)
    };
    let service = MoltdService::start_package(&root, version, &tarball)?;
    service.write_config(json!({
        "gateway": {"auth": {"token": TOKEN}, "reload": {"cooldownMs": 0}},
    }))?;
    service.machine.systemctl(&["start", SERVICE])?;
    let addr = service.addr().to_string();
    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;

    let probe = Probe::start(service.addr());
    let mut pid = service.main_pid()?;
    let (mut gaps, mut unfollowed) = (Vec::with_capacity(args.restarts), 0usize);
    for round in 1..=args.restarts {
        let (gap, new_pid) = rt
            .block_on(handoff(&addr, pid))
            .with_context(|| format!("restart {round} under systemd"))?;
        if service.main_pid()? != new_pid {
            unfollowed += 1;
        }
        let deadline = Instant::now() + STEP_WAIT;
        while service.alive(pid) {
            ensure!(Instant::now() < deadline, "pid {pid} outlived its handoff");
            std::thread::sleep(Duration::from_millis(1));
        }
        gaps.push(gap);
        pid = new_pid;
    }
    let probed = probe.finish();
    let restarts = service.machine.show(SERVICE, "NRestarts")?;
    let gap = Summary::of(gaps).context("no handoffs")?;
    let n = args.restarts;
    let int = |id: &str, label: &str, value: f64| Figure::new(id, label, value, Unit::Int);
    let mut figures = vec![
        int(
            "systemd.probe.refused",
            "refused connects (prober, every ~1 ms)",
            probed.refused as f64,
        )
        .target(0.0),
        int(
            "systemd.probe.failed",
            "other failed connects (prober)",
            probed.failed as f64,
        )
        .target(0.0),
    ];
    for (id, d) in [("p50", gap.p50), ("p99", gap.p99), ("max", gap.max)] {
        let mut figure = Figure::new(
            format!("systemd.handoff.gap.{id}"),
            format!("handoff gap {id} ({n} restarts)"),
            ms(d),
            Unit::Ms,
        );
        if let (Some(respawn), "p50") = (respawn_gap_p50_ms, id) {
            figure = figure.measured("respawn without systemd, same run", respawn);
        }
        figures.push(figure);
    }
    figures.extend([
        int(
            "systemd.main_pid.unfollowed",
            "handoffs after which MainPID was not the new pid",
            unfollowed as f64,
        )
        .target(0.0),
        int(
            "systemd.nrestarts",
            "NRestarts at the end (systemd's own restarts)",
            restarts.parse().unwrap_or(f64::NAN),
        )
        .target(0.0),
    ]);
    Ok(Some(Section {
        suite: "restart (systemd)",
        figures,
        notes: vec![
            "the same handoff as the respawn run (fresh client → gateway.restart.request → \
             1012 → fresh connections until a new pid answers health), by the release moltd \
             installed with npm in a Debian 12 machine under the shipped units; moltd hands \
             off, then names the successor MAINPID="
                .into(),
            format!(
                "the prober connects to the socket systemd holds: {} connects",
                probed.attempts
            ),
        ],
    }))
}

/// One forced restart of `old`: the gap from its 1012 to the new pid's
/// first `health` answer, and that pid.
async fn handoff(addr: &str, old: u32) -> Result<(Duration, u32)> {
    let client = Client::connect(addr, TOKEN).await?;
    ensure!(
        client.pid == u64::from(old),
        "a fresh connection reached pid {}, not the serving {old}",
        client.pid
    );
    let (_, close_at) = force_restart(client).await?;
    let answer = first_answer(addr, old).await?;
    Ok((answer.at - close_at, answer.pid))
}
