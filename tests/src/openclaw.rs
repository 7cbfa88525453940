//! A real OpenClaw gateway for the console's end-to-end tests.
//!
//! * [`Install`]: a pinned `openclaw` npm package, installed by
//!   `scripts/install-test-tools.sh` under `tests/tools/openclaw/<version>`
//!   with its own lock file, and its packed tarball.
//! * [`Gateway`]: `openclaw gateway run --allow-unconfigured --auth token
//!   --token … --port P --bind loopback` under node 24 with `HOME` a scratch
//!   dir, ready once it logs `gateway ready` and its port accepts connections; every process it starts
//!   (its spawn broker, a detached updater) is killed on drop.
//! * [`PortSlot`]: OpenClaw refuses `--port 0`, and derives more ports from
//!   its own (browser control at +2, CDP up to +110). A slot is a base port
//!   from 20000 upward in steps of 120, all below the kernel's ephemeral
//!   range (where `bind(0)` of other tests lands), held with an exclusive
//!   `flock` on a file named for it in the temp dir for as long as the
//!   gateway runs: two tests, or two test processes, never share a slot,
//!   and nothing is bound and dropped to find one.
//! * [`Registry`] seeded with the pinned `openclaw` tarballs (published once
//!   into a cached storage, hard-linked into each test's registry) and an
//!   uplink to the public npm registry for their dependencies: OpenClaw's
//!   own updater installs from it, and `latest` is what the test pins.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::process::{Captured, drain};
use crate::registry::{Registry, RegistryOptions};
use crate::tools::{Tools, repo_root, tools_package_dir};

/// The versions the test tools pin (keep in sync with
/// `scripts/install-test-tools.sh`).
pub const OPENCLAW_VERSIONS: [&str; 2] = [OLD_OPENCLAW, NEW_OPENCLAW];
/// The generation that updates inside the gateway (restart sentinel).
pub const OLD_OPENCLAW: &str = "2026.4.26";
/// The generation with durable update runs; `latest` in the test registry.
pub const NEW_OPENCLAW: &str = "2026.9.6";
/// The gateway token the tests start OpenClaw with.
pub const TOKEN: &str = "molt-e2e-openclaw-token";
/// The public registry the test registry proxies dependencies from.
pub const PUBLIC_REGISTRY: &str = "https://registry.npmjs.org/";

/// How long a gateway may take to listen: 5–30 s on an idle 2-core box,
/// more while other tests run.
/// What both pinned versions log once they accept handshakes (`gateway
/// ready`, which their logger prints under the subsystem's prefix).
const READY_LINES: [&str; 2] = ["[gateway] ready", "gateway ready"];

pub const LISTEN_PATIENCE: Duration = Duration::from_secs(180);

const INSTALL_HINT: &str = "run `scripts/install-test-tools.sh` from the repository root \
     (it installs the pinned openclaw packages under tests/tools/openclaw)";

/// A pinned `openclaw` package.
#[derive(Clone, Debug)]
pub struct Install {
    pub version: String,
    /// `node_modules/openclaw/openclaw.mjs`, run with node 24.
    pub entry: PathBuf,
    /// The package's tarball, as published.
    pub tarball: PathBuf,
}

impl Install {
    /// The install of `version`, checked against its lock file's stamp.
    pub fn locate(version: &str) -> Result<Install> {
        let dir = tools_package_dir().join("openclaw").join(version);
        let modules = dir.join("node_modules");
        let entry = modules.join("openclaw/openclaw.mjs");
        let tarball = modules
            .join(".molt-pack")
            .join(format!("openclaw-{version}.tgz"));
        if !entry.is_file() || !tarball.is_file() {
            bail!(
                "openclaw {version} is not installed in {} ; {INSTALL_HINT}",
                dir.display()
            );
        }
        let stamp =
            std::fs::read_to_string(modules.join(".molt-openclaw-stamp")).unwrap_or_default();
        if stamp.trim() != install_hash(&dir)? {
            bail!(
                "openclaw {version} in {} was installed from another lock file; {INSTALL_HINT}",
                dir.display()
            );
        }
        Ok(Install {
            version: version.to_owned(),
            entry,
            tarball,
        })
    }
}

/// sha256 of `package.json` then `package-lock.json`, hex: the stamp the
/// install script writes.
fn install_hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for f in ["package.json", "package-lock.json"] {
        let p = dir.join(f);
        h.update(std::fs::read(&p).with_context(|| format!("read {}", p.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// A base port held for one gateway (see the module docs).
#[derive(Debug)]
pub struct PortSlot {
    pub port: u16,
    _lock: File,
}

const SLOT_BASE: u16 = 20_000;
const SLOT_STEP: u16 = 120;
const SLOTS: u16 = 100;

impl PortSlot {
    /// The first free slot, skipping `skip` of them (after a failed start).
    pub fn reserve(skip: u16) -> Result<PortSlot> {
        let dir = std::env::temp_dir().join("molt-openclaw-ports");
        std::fs::create_dir_all(&dir)?;
        for i in skip..SLOTS {
            let port = SLOT_BASE + i * SLOT_STEP;
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{port}.lock")))?;
            if lock.try_lock().is_err() {
                continue;
            }
            // A program outside this scheme may listen there: probe with a
            // connect (nothing is bound).
            let taken = [port, port + 2].iter().any(|p| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, *p)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if !taken {
                return Ok(PortSlot { port, _lock: lock });
            }
        }
        bail!(
            "no free OpenClaw port slot in {SLOT_BASE}..{}",
            SLOT_BASE + SLOTS * SLOT_STEP
        )
    }
}

/// A running `openclaw gateway run`.
pub struct Gateway {
    pub port: u16,
    pub home: PathBuf,
    /// From spawn until the port accepted connections.
    pub startup: Duration,
    child: Child,
    stdout: Captured,
    stderr: Captured,
    env: Vec<(String, OsString)>,
    watchdog: Option<Child>,
    _slot: PortSlot,
}

impl Gateway {
    /// Starts the gateway of `entry` (`openclaw.mjs`, or a global install's
    /// `bin/openclaw`) with `HOME` = `home` and `env` on top of a clean
    /// environment, and waits until its port accepts connections.
    pub fn start(
        tools: &Tools,
        entry: &Path,
        home: &Path,
        env: &[(String, OsString)],
    ) -> Result<Gateway> {
        std::fs::create_dir_all(home)?;
        let mut skip = 0;
        loop {
            let slot = PortSlot::reserve(skip)?;
            match Self::start_on(tools, entry, home, env, slot) {
                Ok(gateway) => return Ok(gateway),
                // Someone outside the slot scheme took the port meanwhile.
                Err(e) if e.to_string().contains("EADDRINUSE") && skip < 5 => skip += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn start_on(
        tools: &Tools,
        entry: &Path,
        home: &Path,
        env: &[(String, OsString)],
        slot: PortSlot,
    ) -> Result<Gateway> {
        let started = Instant::now();
        let (child, stdout, stderr) = spawn(tools, entry, home, env, slot.port)?;
        let mut gateway = Gateway {
            port: slot.port,
            home: home.to_path_buf(),
            startup: Duration::ZERO,
            child,
            stdout,
            stderr,
            env: env.to_vec(),
            watchdog: None,
            _slot: slot,
        };
        gateway.watchdog = Some(watchdog(gateway.child.id())?);
        gateway.startup = gateway.wait_ready(LISTEN_PATIENCE, started)?;
        Ok(gateway)
    }

    /// Stops this gateway and starts `entry` in its place: same port, same
    /// `HOME`, same environment (an operator restarting the service).
    pub fn restart(&mut self, tools: &Tools, entry: &Path) -> Result<Duration> {
        self.kill();
        let started = Instant::now();
        let (child, stdout, stderr) = spawn(tools, entry, &self.home, &self.env, self.port)?;
        self.child = child;
        self.stdout = stdout;
        self.stderr = stderr;
        self.watchdog = Some(watchdog(self.child.id())?);
        self.startup = self.wait_ready(LISTEN_PATIENCE, started)?;
        Ok(self.startup)
    }

    /// Waits until the port accepts a connection and the gateway logged
    /// `gateway ready` (before that it answers every handshake "gateway
    /// starting; retry shortly" while its plugins load, which can take
    /// longer than a client's patience on a busy machine); fails (with the
    /// log) if the process exits first or `patience` runs out.
    pub fn wait_ready(&mut self, patience: Duration, since: Instant) -> Result<Duration> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "openclaw exited ({status}) before it was ready on {}:\n{}",
                    self.port,
                    self.output()
                );
            }
            let ready = || {
                let (stdout, stderr) = (self.stdout.snapshot(), self.stderr.snapshot());
                READY_LINES
                    .iter()
                    .any(|line| stdout.contains(line) || stderr.contains(line))
            };
            if ready()
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
            {
                return Ok(since.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "openclaw was not ready on {} within {patience:?}:\n{}",
                    self.port,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// `<home>/.openclaw`.
    pub fn state_dir(&self) -> PathBuf {
        self.home.join(".openclaw")
    }

    /// Its stdout and stderr so far.
    pub fn output(&self) -> String {
        format!(
            "--- openclaw stdout ---\n{}--- openclaw stderr ---\n{}",
            self.stdout.snapshot(),
            self.stderr.snapshot()
        )
    }

    /// The gateway process's pid (the first; an in-process restart keeps it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops every process of this gateway: its group, and any with its
    /// `HOME` (a detached updater leaves the group).
    fn kill(&mut self) {
        let mut pids = with_home(&self.home);
        pids.push(self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
        // Its group is gone: end the watchdog (end of file) and reap it.
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// Kills the process group `pgid` once its stdin reaches end of file: when
/// the test process holding the other end dies without running Drop (a
/// timeout, SIGKILL), the gateway goes with it. A separate process, so the
/// gateway's own node (and the children it respawns) run as in production.
fn watchdog(pgid: u32) -> Result<Child> {
    Command::new("sh")
        .args([
            "-c",
            "cat >/dev/null; kill -KILL -- -\"$0\" 2>/dev/null",
            &pgid.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the gateway's watchdog")
}

/// Spawns `openclaw gateway run` in its own process group.
fn spawn(
    tools: &Tools,
    entry: &Path,
    home: &Path,
    env: &[(String, OsString)],
    port: u16,
) -> Result<(Child, Captured, Captured)> {
    let mut cmd = Command::new(&tools.node24);
    cmd.arg(entry)
        .args(["gateway", "run", "--allow-unconfigured", "--auth", "token"])
        .args(["--token", TOKEN, "--bind", "loopback", "--port"])
        .arg(port.to_string())
        .current_dir(home)
        .env("HOME", home)
        .env("PATH", path_with_node(tools))
        .env("NO_COLOR", "1")
        .env("NPM_CONFIG_UPDATE_NOTIFIER", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("OPENCLAW_") || key.starts_with("NPM_CONFIG_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start openclaw from {}", entry.display()))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    Ok((child, stdout, stderr))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pids of live processes whose environment has `HOME=home`.
pub fn with_home(home: &Path) -> Vec<u32> {
    let mut needle = b"HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_slice()) && crate::moltd::alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// `PATH` with node 24 first (OpenClaw 2026.9.x needs node >= 24.16, and
/// its updater runs `npm` and `node` by name).
pub fn path_with_node(tools: &Tools) -> OsString {
    let mut dirs = vec![
        tools
            .node24
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// A registry whose `openclaw` is exactly the pinned versions (`latest` =
/// [`NEW_OPENCLAW`]) and whose other packages come from the public registry.
pub fn registry(tmp: &Path) -> Result<Registry> {
    let seed = seeded_storage()?;
    Registry::start_with_options(
        tmp,
        &RegistryOptions {
            uplink: Some(PUBLIC_REGISTRY.to_owned()),
            local_only: vec!["openclaw".to_owned()],
            seed: Some(seed),
        },
    )
}

/// `<repo>/.cache/openclaw-registry/storage`: the pinned tarballs published
/// once (a minute of verdaccio's time for 120 MB), then reused.
fn seeded_storage() -> Result<PathBuf> {
    let cache = repo_root().join(".cache/openclaw-registry");
    std::fs::create_dir_all(&cache)?;
    let lock = File::create(cache.join(".lock"))?;
    lock.lock()?;
    let installs: Vec<Install> = OPENCLAW_VERSIONS
        .iter()
        .map(|v| Install::locate(v))
        .collect::<Result<_>>()?;
    let mut want = String::new();
    for install in &installs {
        let size = std::fs::metadata(&install.tarball)?.len();
        want.push_str(&format!("{} {size}\n", install.version));
    }
    let storage = cache.join("storage");
    let stamp = cache.join("stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && storage.join("openclaw/package.json").is_file()
    {
        return Ok(storage);
    }
    let _ = std::fs::remove_dir_all(&storage);
    let work = tempfile::tempdir()?;
    let registry = Registry::start_with_options(
        work.path(),
        &RegistryOptions {
            uplink: None,
            local_only: vec!["openclaw".to_owned()],
            seed: None,
        },
    )?;
    // In order: the last one published is `latest`.
    for install in &installs {
        let tag = (install.version != NEW_OPENCLAW).then_some("previous");
        crate::publish(&registry, &install.tarball, tag)
            .with_context(|| format!("publish openclaw {}", install.version))?;
    }
    let published = registry.dir().join("storage/openclaw");
    drop(registry);
    std::fs::create_dir_all(storage.join("openclaw"))?;
    for entry in std::fs::read_dir(&published)? {
        let entry = entry?;
        std::fs::copy(
            entry.path(),
            storage.join("openclaw").join(entry.file_name()),
        )?;
    }
    std::fs::write(&stamp, want)?;
    Ok(storage)
}

/// The environment for npm (and OpenClaw's updater) to use `registry`: its
/// client config, a global prefix, a cache shared across runs (tarballs
/// are found by integrity; packuments are revalidated), node 24 first.
pub fn npm_env(registry: &Registry, tools: &Tools, prefix: &Path) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = registry
        .client_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.retain(|(k, _)| k != "NPM_CONFIG_CACHE");
    let cache = repo_root().join(".cache/openclaw-npm");
    env.push(("NPM_CONFIG_CACHE".into(), cache.into()));
    env.push(("NPM_CONFIG_PREFER_ONLINE".into(), "true".into()));
    env.push(("NPM_CONFIG_PREFIX".into(), prefix.into()));
    env.push(("NPM_CONFIG_FUND".into(), "false".into()));
    env.push(("NPM_CONFIG_AUDIT".into(), "false".into()));
    let mut dirs = vec![prefix.join("bin")];
    dirs.extend(std::env::split_paths(&path_with_node(tools)));
    env.push((
        "PATH".into(),
        std::env::join_paths(dirs).unwrap_or_default(),
    ));
    env
}

/// `npm i -g openclaw@<version>` into `prefix` from `registry`; returns
/// `<prefix>/bin/openclaw`.
pub fn install_global(
    registry: &Registry,
    tools: &Tools,
    prefix: &Path,
    version: &str,
) -> Result<PathBuf> {
    let mut cmd = Command::new(&tools.npm);
    cmd.args(["i", "-g", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg(format!("openclaw@{version}"))
        .current_dir(registry.dir())
        .envs(npm_env(registry, tools, prefix));
    crate::process::run(&mut cmd, Duration::from_secs(600))
        .with_context(|| format!("npm i -g openclaw@{version}"))?;
    let bin = prefix.join("bin/openclaw");
    if !bin.exists() {
        bail!("{} missing after the install", bin.display());
    }
    Ok(bin)
}
