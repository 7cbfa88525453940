//! The release `molt` console in a pseudo-terminal against the release
//! moltd: start to first frame, start to "connected", and after a forced
//! restart, the successor's READY to the new pid on screen.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};
use serde_json::json;

use crate::client::Client;
use crate::moltd::{Running, TOKEN};
use crate::report::{Figure, Section, Unit};
use crate::stats::Summary;

/// How long one screen state may take, so a hung console fails the run.
const SCREEN_WAIT: Duration = Duration::from_secs(20);

#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Console starts, and handoffs followed.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
}

impl Args {
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["console"])
    }
}

pub fn run(moltd: &Path, build: bool, args: &Args) -> Result<Section> {
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let molt = locate_molt(moltd, build)?;
    let running = Running::start_with(
        moltd,
        &["--restart-mode", "respawn"],
        json!({ "cooldownMs": 0 }),
    )?;
    eprintln!("console: {} starts, {} handoffs", args.rounds, args.rounds);

    let mut first_frame = Vec::new();
    let mut connected = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        let mut console = Console::start(&molt, running.state())?;
        first_frame.push(console.wait_for(|s| !s.trim().is_empty())? - started);
        connected.push(console.wait_for(|s| s.contains("connected"))? - started);
        console.quit()?;
    }

    let rt = tokio::runtime::Runtime::new().context("starting the client runtime")?;
    let mut console = Console::start(&molt, running.state())?;
    console.wait_for(|s| s.contains("connected"))?;
    let mut reconnect = Vec::new();
    let mut close_to_screen = Vec::new();
    for round in 1..=args.rounds {
        let closed_at = rt
            .block_on(async {
                let mut client = Client::connect(&running.addr, TOKEN).await?;
                client
                    .request(
                        "gateway.restart.request",
                        json!({ "reason": "bench", "delayMs": 0, "skipDeferral": true }),
                    )
                    .await?;
                client.closed().await?;
                anyhow::Ok(Instant::now())
            })
            .with_context(|| format!("restart {round}"))?;
        let ready = running.next_ready()?;
        let pid_row = format!("pid          {},", ready.pid);
        let shown = console.wait_for(|s| s.contains(&pid_row) && s.contains("connected"))?;
        reconnect.push(shown.saturating_duration_since(ready.at));
        close_to_screen.push(shown.saturating_duration_since(closed_at));
    }
    console.quit()?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let summary = |v: Vec<Duration>| Summary::of(v).context("no samples");
    let first_frame = summary(first_frame)?;
    let connected = summary(connected)?;
    let reconnect = summary(reconnect)?;
    let close_to_screen = summary(close_to_screen)?;
    Ok(Section {
        suite: "console",
        figures: vec![
            Figure::new(
                "first_frame.p50",
                "start → first frame, p50",
                ms(first_frame.p50),
                Unit::Ms,
            )
            .target(50.0),
            Figure::new(
                "first_frame.max",
                "start → first frame, max",
                ms(first_frame.max),
                Unit::Ms,
            )
            .target(50.0),
            Figure::new(
                "connected.p50",
                "start → \"connected\" on screen, p50",
                ms(connected.p50),
                Unit::Ms,
            ),
            Figure::new(
                "reconnect.p50",
                "successor READY → its pid on screen, p50",
                ms(reconnect.p50),
                Unit::Ms,
            )
            .target(100.0),
            Figure::new(
                "reconnect.max",
                "successor READY → its pid on screen, max",
                ms(reconnect.max),
                Unit::Ms,
            )
            .target(100.0),
            Figure::new(
                "handoff_on_screen.p50",
                "1012 close → new pid on screen, p50",
                ms(close_to_screen.p50),
                Unit::Ms,
            ),
        ],
        notes: vec![format!(
            "{} console starts and {} forced handoffs followed; 80×24 pty; screen times are when the console's output arrived",
            args.rounds, args.rounds
        )],
    })
}

/// `molt` beside `moltd` (built first unless `build` is false).
pub fn locate_molt(moltd: &Path, build: bool) -> Result<PathBuf> {
    if build {
        crate::moltd::build_release("molt-console")?;
    }
    let molt = moltd.with_file_name("molt");
    ensure!(
        molt.is_file(),
        "{} not found: build molt-console",
        molt.display()
    );
    Ok(molt)
}

/// A console in an 80×24 pty; output chunks arrive with their time.
pub struct Console {
    child: Box<dyn Child + Send + Sync>,
    keys: Box<dyn Write + Send>,
    parser: vt100::Parser,
    chunks: mpsc::Receiver<(Instant, Vec<u8>)>,
}

impl Console {
    fn start(molt: &Path, state: &Path) -> Result<Console> {
        Console::start_with(molt, &[], &[("OPENCLAW_STATE_DIR", state)])
    }

    /// `molt args…` with `env` set (the gateway variables cleared first).
    pub fn start_with(molt: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<Console> {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| anyhow!("opening a pty: {e}"))?;
        let mut command = CommandBuilder::new(molt);
        command.args(args);
        for var in ["OPENCLAW_CONFIG_PATH", "OPENCLAW_GATEWAY_TOKEN", "NO_COLOR"] {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command.env("TERM", "xterm-256color");
        let child = pty
            .slave
            .spawn_command(command)
            .map_err(|e| anyhow!("starting {}: {e}", molt.display()))?;
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().map_err(|e| anyhow!("{e}"))?;
        let keys = pty.master.take_writer().map_err(|e| anyhow!("{e}"))?;
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        Ok(Console {
            child,
            keys,
            parser: vt100::Parser::new(24, 80, 0),
            chunks,
        })
    }

    /// When the screen first satisfied `want` (the arrival of the chunk
    /// that made it so).
    pub fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> Result<Instant> {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, chunk) = self.chunks.recv_timeout(left).map_err(|_| {
                anyhow!("never drawn; screen:\n{}", self.parser.screen().contents())
            })?;
            self.parser.process(&chunk);
            if want(&self.parser.screen().contents()) {
                return Ok(at);
            }
        }
    }

    pub fn quit(mut self) -> Result<()> {
        self.keys.write_all(b"q")?;
        self.keys.flush()?;
        let status = self.child.wait()?;
        ensure!(status.success(), "molt exited with {status:?}");
        Ok(())
    }
}
