//! `update.run` through the real package managers against the local test
//! registry: the whole update split into the package manager's own time
//! (metadata query + install) and molt's overhead (stage, verify, swap,
//! sentinel, handoff to the verified successor).
//!
//! Needs the pinned test tools (`scripts/install-test-tools.sh`, which
//! `scripts/test` runs) for the registry, pnpm and bun.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use molt_e2e::moltd::{Moltd, command};
use molt_e2e::restarts::Probe;
use molt_e2e::updates::{NEW, OLD, UpdateFixture};
use molt_e2e::{PackageManager, versions};
use molt_protocol::method::UpdateRunResult;
use molt_protocol::update::StepRecord;
use serde_json::json;

use crate::client::Client;
use crate::report::{Figure, Section, Unit};
use crate::stats::Summary;

/// OpenClaw's swap alone, measured on this kind of machine (its restart
/// then left the old version running).
const OPENCLAW_SWAP_MS: f64 = 2200.0;

#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Updates per package manager.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Package managers to measure.
    #[arg(long, value_delimiter = ',', default_value = "npm,pnpm,bun")]
    pub managers: Vec<String>,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["update"])
    }
}

/// One update, timed from the client.
struct Sample {
    total: Duration,
    manager: Duration,
    verify: Duration,
    swap: Duration,
    refused: u64,
}

pub fn run(args: &Args) -> Result<Section> {
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let managers = args
        .managers
        .iter()
        .map(|m| parse_manager(m))
        .collect::<Result<Vec<_>>>()?;
    eprintln!("update: building release moltd {OLD} and {NEW} (cached)");
    let binaries = [
        (OLD, versions::moltd_release_binary(OLD)?),
        (NEW, versions::moltd_release_binary(NEW)?),
    ];
    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;
    let mut figures = Vec::new();
    for manager in managers {
        let mut samples = Vec::with_capacity(args.rounds);
        for round in 1..=args.rounds {
            eprintln!("update: {manager} round {round}/{}", args.rounds);
            // A fresh registry and prefix per round: every update installs
            // OLD → NEW from the same starting point.
            let fixture = UpdateFixture::start_with(&binaries)?;
            samples.push(
                one_update(&rt, &fixture, manager)
                    .with_context(|| format!("{manager} round {round}"))?,
            );
        }
        figures.extend(figures_for(manager, &samples)?);
    }
    Ok(Section {
        suite: "update",
        figures,
        notes: vec![format!(
            "{} update(s) per manager, {OLD} → {NEW}, release builds, local registry; \
             overhead = request → verified successor minus the manager's metadata and install steps",
            args.rounds
        )],
    })
}

fn parse_manager(name: &str) -> Result<PackageManager> {
    PackageManager::ALL
        .into_iter()
        .find(|m| m.name() == name)
        .with_context(|| format!("unknown package manager {name:?} (npm, pnpm, bun)"))
}

fn one_update(
    rt: &tokio::runtime::Runtime,
    fx: &UpdateFixture,
    manager: PackageManager,
) -> Result<Sample> {
    let global = fx.install(manager, OLD)?;
    let state = fx.tmp.path().join("state");
    std::fs::create_dir_all(&state)?;
    molt_e2e::moltd::write_config(&state, json!({}));
    let mut cmd = command(&global.bin, &state, &["--port", "0"]);
    cmd.envs(fx.moltd_env(manager)?);
    let mut moltd = Moltd::spawn(cmd);
    let addr: SocketAddr = moltd.first.addr.parse()?;
    let probe = Probe::start(addr);
    let (total, result) = rt.block_on(async {
        let mut client = Client::connect(&moltd.first.addr, molt_e2e::client::TOKEN).await?;
        let started = Instant::now();
        let value = client.request("update.run", json!({})).await?;
        anyhow::Ok((
            started.elapsed(),
            serde_json::from_value::<UpdateRunResult>(value)?,
        ))
    })?;
    let successor = moltd
        .next_ready(Duration::from_secs(30))
        .context("the new version never printed READY")?;
    let probed = probe.finish();
    if !result.ok || successor.version != NEW {
        bail!(
            "the update did not hand off to {NEW}: {:?}",
            result.result.reason
        );
    }
    let step = |name: &str| step_time(&result.result.steps, name);
    Ok(Sample {
        total,
        manager: step("resolve") + step("install"),
        verify: step("verify"),
        swap: step("swap"),
        refused: probed.refused,
    })
}

fn step_time(steps: &[StepRecord], name: &str) -> Duration {
    steps
        .iter()
        .filter(|s| s.name == name)
        .map(|s| Duration::from_millis(s.duration_ms))
        .sum()
}

fn figures_for(manager: PackageManager, samples: &[Sample]) -> Result<Vec<Figure>> {
    let summary = |f: &dyn Fn(&Sample) -> Duration| {
        Summary::of(samples.iter().map(f).collect()).context("no samples")
    };
    let total = summary(&|s| s.total)?;
    let pm = summary(&|s| s.manager)?;
    let overhead = summary(&|s| s.total.saturating_sub(s.manager))?;
    let verify = summary(&|s| s.verify)?;
    let swap = summary(&|s| s.swap)?;
    let refused: u64 = samples.iter().map(|s| s.refused).sum();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let id = |what: &str| format!("update.{manager}.{what}");
    Ok(vec![
        Figure::new(
            id("total.p50"),
            format!("{manager}: update.run, request → verified successor, p50"),
            ms(total.p50),
            Unit::Ms,
        ),
        Figure::new(
            id("package_manager.p50"),
            format!("{manager}: package manager (metadata + install), p50"),
            ms(pm.p50),
            Unit::Ms,
        ),
        Figure::new(
            id("overhead.p50"),
            format!("{manager}: molt's own overhead (stage, verify, swap, handoff), p50"),
            ms(overhead.p50),
            Unit::Ms,
        )
        .target(200.0),
        Figure::new(
            id("overhead.max"),
            format!("{manager}: molt's own overhead, max of {}", samples.len()),
            ms(overhead.max),
            Unit::Ms,
        )
        .target(200.0),
        Figure::new(
            id("verify.p50"),
            format!("{manager}: verify step, p50"),
            ms(verify.p50),
            Unit::Ms,
        ),
        Figure::new(
            id("swap.p50"),
            format!("{manager}: swap step, p50"),
            ms(swap.p50),
            Unit::Ms,
        )
        .reference("OpenClaw swap alone", OPENCLAW_SWAP_MS),
        Figure::new(
            id("refused"),
            format!("{manager}: refused connects during all updates"),
            refused as f64,
            Unit::Int,
        )
        .target(0.0),
    ])
}
