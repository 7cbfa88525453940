//! molt-bench: runs the real release `moltd` and reports figures with their
//! targets and comparisons. It measures; it never asserts timings.
//!
//! One module per suite (`daemon`, `restart`, `update`, `console`,
//! `hostile`, `metrics`, `fleet`),
//! each a subcommand returning a `report::Section`.

mod client;
mod console;
mod daemon;
mod fleet;
mod hostile;
mod metrics;
mod moltd;
mod report;
mod restart;
mod restart_systemd;
mod stats;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "molt-bench",
    about = "Benchmarks the real release moltd and prints figures with targets and ratios.",
    after_help = "Run everything: cargo run --release -p molt-bench -- all"
)]
struct Cli {
    /// The moltd binary to measure (default: <workspace>/target/release/moltd,
    /// rebuilt first).
    #[arg(long, global = true)]
    moltd: Option<PathBuf>,
    /// Do not run `cargo build --release -p molt-daemon` first.
    #[arg(long, global = true)]
    no_build: bool,
    /// Print the figures as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand, Debug)]
enum Suite {
    /// Start-to-READY, idle memory, and `health` latency under 1/10/100 clients.
    Daemon(daemon::Args),
    /// Forced handoffs in a row: refused connections, handoff gap,
    /// request→READY, leaked processes/fds/memory.
    Restart(restart::Args),
    /// `update.run` with npm, pnpm and bun: package manager time vs molt's
    /// overhead (needs `scripts/install-test-tools.sh`).
    Update(update::Args),
    /// The console in a pty: start → first frame, and successor READY →
    /// its pid on screen after a forced restart.
    Console(console::Args),
    /// Hostile clients: a client that pipelines without reading, a
    /// pre-auth flood, a handoff with many clients, requests across
    /// handoffs by clients that follow the protocol and ones that do not.
    Hostile(hostile::Args),
    /// A Prometheus scrape of `GET /metrics` with 500 clients connected:
    /// moltd's CPU per scrape (utime+stime) and the bytes it answers.
    Metrics(metrics::Args),
    /// The fleet console: 50 gateways on the Fleet screen after start, and
    /// a rolling update's cost per wave beyond the gateways' own updates.
    Fleet(fleet::Args),
    /// Every suite with its defaults.
    All,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("molt-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("molt-bench: debug build; client overhead inflates latencies (use --release)");
    }
    let moltd = moltd::locate(cli.moltd, !cli.no_build)?;
    let header = report::Header {
        version: moltd::version(&moltd)?,
        moltd: moltd.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into()),
    };
    let sections = match cli.suite {
        Suite::Daemon(args) => vec![daemon::run(&moltd, &args)?],
        Suite::Restart(args) => restart_suites(&moltd, &header.version, &args)?,
        Suite::Update(args) => vec![update::run(&args)?],
        Suite::Console(args) => vec![console::run(&moltd, !cli.no_build, &args)?],
        Suite::Hostile(args) => vec![hostile::run(&moltd, &args)?],
        Suite::Metrics(args) => vec![metrics::run(&moltd, &args)?],
        Suite::Fleet(args) => vec![fleet::run(&moltd, !cli.no_build, &args)?],
        Suite::All => {
            let mut all = vec![daemon::run(&moltd, &daemon::Args::defaults())?];
            all.extend(restart_suites(
                &moltd,
                &header.version,
                &restart::Args::defaults(),
            )?);
            all.push(hostile::run(&moltd, &hostile::Args::defaults())?);
            all.push(metrics::run(&moltd, &metrics::Args::defaults())?);
            all.push(update::run(&update::Args::defaults())?);
            all.push(console::run(
                &moltd,
                !cli.no_build,
                &console::Args::defaults(),
            )?);
            all.push(fleet::run(&moltd, !cli.no_build, &fleet::Args::defaults())?);
            all
        }
    };
    if cli.json {
        println!("{:#}", report::json(&header, &sections));
    } else {
        print!("{}", report::table(&header, &sections));
    }
    Ok(())
}

/// The restart suite without a supervisor, then the same under systemd
/// where this machine can run it, with the respawn gap beside systemd's.
fn restart_suites(
    moltd: &std::path::Path,
    version: &str,
    args: &restart::Args,
) -> Result<Vec<report::Section>> {
    let respawn = restart::run(moltd, args)?;
    let gap = respawn
        .figures
        .iter()
        .find(|f| f.id == "handoff.gap.p50")
        .map(|f| f.value);
    let mut sections = vec![respawn];
    sections.extend(restart_systemd::run(moltd, version, args, gap)?);
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed_and_flags_are_global() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["molt-bench", "all", "--json", "--no-build"]).unwrap();
        assert!(cli.json && cli.no_build);
        let cli = Cli::try_parse_from(["molt-bench", "daemon", "--clients", "1,5"]).unwrap();
        let Suite::Daemon(args) = cli.suite else {
            panic!("daemon suite");
        };
        assert_eq!(args.clients, vec![1, 5]);
        let cli = Cli::try_parse_from(["molt-bench", "restart", "--restarts", "3"]).unwrap();
        let Suite::Restart(args) = cli.suite else {
            panic!("restart suite");
        };
        assert_eq!(args.restarts, 3);
        let cli = Cli::try_parse_from(["molt-bench", "metrics", "--connections", "50"]).unwrap();
        let Suite::Metrics(args) = cli.suite else {
            panic!("metrics suite");
        };
        assert_eq!((args.connections, args.scrapes), (50, 2000));
    }
}
