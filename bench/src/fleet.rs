//! The fleet console: how soon the Fleet screen shows 50 real gateways
//! after `molt --fleet` starts, and what a rolling update costs beyond the
//! gateways' own updates (each wave's time minus the update time its
//! gateway's run record states).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use molt_e2e::moltd::{Moltd, command, write_config};
use molt_e2e::updates::{NEW, OLD, UpdateFixture};
use molt_e2e::{PackageManager, versions};
use serde_json::{Value, json};

use crate::client::Client;
use crate::console::{Console, locate_molt};
use crate::report::{Figure, Section, Unit};
use crate::stats::{Summary, ms};

#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Gateways on the Fleet screen.
    #[arg(long, default_value_t = 50)]
    pub gateways: usize,
    /// Console starts measured.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Gateways of the rolling update: a canary, then one per wave.
    #[arg(long, default_value_t = 6)]
    pub rollout: usize,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["fleet"])
    }
}

pub fn run(moltd: &Path, build: bool, args: &Args) -> Result<Section> {
    ensure!(
        args.gateways >= 1 && args.rounds >= 1,
        "--gateways and --rounds must be at least 1"
    );
    ensure!(args.rollout >= 2, "--rollout needs a canary and a wave");
    let molt = locate_molt(moltd, build)?;
    let on_screen = screen(moltd, &molt, args)?;
    let waves = rollout(&molt, args.rollout)?;
    let on_screen = Summary::of(on_screen).context("no samples")?;
    let waves = Summary::of(waves).context("no waves")?;
    Ok(Section {
        suite: "fleet",
        figures: vec![
            Figure::new(
                "screen.p50",
                format!(
                    "start → all {} gateways on the Fleet screen, p50",
                    args.gateways
                ),
                ms(on_screen.p50),
                Unit::Ms,
            )
            .target(1000.0),
            Figure::new(
                "screen.max",
                format!(
                    "start → all {} gateways on the Fleet screen, max",
                    args.gateways
                ),
                ms(on_screen.max),
                Unit::Ms,
            )
            .target(1000.0),
            Figure::new(
                "wave_overhead.p50",
                "console overhead per wave beyond the gateway's update, p50",
                ms(waves.p50),
                Unit::Ms,
            )
            .target(100.0),
            Figure::new(
                "wave_overhead.max",
                "console overhead per wave beyond the gateway's update, max",
                ms(waves.max),
                Unit::Ms,
            )
            .target(100.0),
        ],
        notes: vec![format!(
            "{} release moltd on their own state dirs, 80×24 pty, {} console starts; \
             rollout of {} npm-installed gateways {OLD} → {NEW} in waves of 1 from the \
             local registry, overhead = wave start → verified minus the run record's \
             requestedAt → finishedAt",
            args.gateways, args.rounds, args.rollout
        )],
    })
}

/// Start → the header counts every gateway connected, per round.
fn screen(moltd: &Path, molt: &Path, args: &Args) -> Result<Vec<Duration>> {
    let tmp = tempfile::tempdir()?;
    eprintln!("fleet: starting {} gateways", args.gateways);
    let mut gateways = Vec::new();
    let mut file = String::new();
    for i in 0..args.gateways {
        let state = tmp.path().join(format!("state-{i:02}"));
        std::fs::create_dir_all(&state)?;
        write_config(&state, json!({}));
        gateways.push(Moltd::spawn(command(moltd, &state, &["--port", "0"])));
        file.push_str(&format!(
            "[[gateway]]\nname = \"gw-{i:02}\"\nstate_dir = \"{}\"\n\n",
            state.display()
        ));
    }
    let fleet = write_fleet(tmp.path(), &file)?;
    let all = format!("{0}/{0} connected", args.gateways);
    let mut samples = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("fleet: console start {round}/{}", args.rounds);
        let started = Instant::now();
        let env = xdg(tmp.path());
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let mut console =
            Console::start_with(molt, &["--fleet", &fleet.display().to_string()], &env)?;
        samples.push(console.wait_for(|s| s.contains(&all))? - started);
        console.quit()?;
    }
    Ok(samples)
}

/// A rollout of `hosts` gateways in waves of one; each wave's time beyond
/// its gateway's own update.
fn rollout(molt: &Path, hosts: usize) -> Result<Vec<Duration>> {
    eprintln!("fleet: rollout over {hosts} gateways (release {OLD} and {NEW}, cached)");
    let fx = UpdateFixture::start_with(&[
        (OLD, versions::moltd_release_binary(OLD)?),
        (NEW, versions::moltd_release_binary(NEW)?),
    ])?;
    let mut file = String::new();
    let mut gateways = Vec::new();
    for i in 0..hosts {
        let name = format!("gw-{i}");
        let global = fx.install_named(PackageManager::Npm, OLD, &name)?;
        let state = fx.tmp.path().join(format!("state-{name}"));
        std::fs::create_dir_all(&state)?;
        write_config(&state, json!({}));
        let moltd = fx.start_moltd_in(&global, &state)?;
        let groups = if i == 0 { "[\"canary\"]" } else { "[]" };
        file.push_str(&format!(
            "[[gateway]]\nname = \"{name}\"\nstate_dir = \"{}\"\ngroups = {groups}\n\n",
            state.display()
        ));
        gateways.push((name, moltd));
    }
    let fleet = write_fleet(fx.tmp.path(), &file)?;
    let mut cmd = Command::new(molt);
    cmd.args([
        "fleet", "update", "--target", NEW, "--wave", "1", "--yes", "--json",
    ])
    .arg("--fleet")
    .arg(&fleet)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (key, value) in xdg(fx.tmp.path()) {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().context("starting molt fleet update")?;
    // Each progress line with the wall-clock ms it arrived at.
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().context("stderr")?).lines() {
        lines.push((molt_daemon::clock::unix_ms(), line?));
    }
    let output = child.wait_with_output()?;
    if std::env::var_os("MOLT_BENCH_TRACE").is_some() {
        let first = lines.first().map_or(0, |(t, _)| *t);
        for (t, line) in &lines {
            eprintln!("{:>6} {line}", t - first);
        }
    }
    if !output.status.success() {
        let said: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        bail!(
            "the rollout failed ({}):\n{}",
            output.status,
            said.join("\n")
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let mut overheads = Vec::new();
    for (wave, (name, moltd)) in gateways.iter().enumerate() {
        let at = |needle: &str| {
            lines
                .iter()
                .find(|(_, l)| l.starts_with(needle))
                .map(|(t, _)| *t)
                .with_context(|| format!("no line {needle:?}"))
        };
        let start = at(&format!("wave {}/{hosts}:", wave + 1))?;
        let end = at(&format!("wave {}/{hosts} verified", wave + 1))?;
        let run = rt.block_on(async {
            let mut client = Client::connect(&moltd.first.addr, molt_e2e::client::TOKEN).await?;
            let history = client.request("update.history", json!({})).await?;
            anyhow::Ok(history["runs"][0].clone())
        })?;
        let took = |run: &Value| Some(run["finishedAt"].as_u64()? - run["requestedAt"].as_u64()?);
        let own = took(&run).with_context(|| format!("{name}: no finished run: {run}"))?;
        overheads.push(Duration::from_millis((end - start).saturating_sub(own)));
    }
    Ok(overheads)
}

fn write_fleet(dir: &Path, text: &str) -> Result<PathBuf> {
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The console's own config and state dirs, inside `dir`.
fn xdg(dir: &Path) -> [(&'static str, PathBuf); 2] {
    [
        ("XDG_CONFIG_HOME", dir.join("xdg-config")),
        ("XDG_STATE_HOME", dir.join("xdg-state")),
    ]
}
