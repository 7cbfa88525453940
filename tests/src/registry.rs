//! A real npm registry for tests: verdaccio on node 24, bound to 127.0.0.1 on
//! a free port, storage in a temp dir, no uplinks (fully offline), a
//! pre-created publishing user. [`Registry::start_with_options`] can add an
//! uplink to a public registry (for what the tests do not publish) and seed
//! the storage with packages published once before.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http;
use crate::process::{Captured, drain};
use crate::tools::Tools;

/// How long verdaccio may take to answer its first ping (it takes ~0.5 s on
/// an idle 2-core machine; generous for a loaded CI box).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts when the chosen free port was taken before verdaccio bound it.
const PORT_ATTEMPTS: usize = 3;

pub const USER: &str = "molt-e2e";
const PASSWORD: &str = "molt-e2e-password";

/// Preloaded into verdaccio's node: exit when stdin reaches EOF, i.e. when
/// the test process that holds the other end dies without running `Drop`
/// (panic=abort, SIGKILL, a killed `cargo test`). No registry lingers.
const WATCHDOG_JS: &str = "\
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
";

/// What a registry serves beyond what the test publishes.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// A registry to proxy every package from that is not in `local_only`
    /// (verdaccio fetches from it itself).
    pub uplink: Option<String>,
    /// Packages served only from this registry's storage, never proxied:
    /// their versions and dist-tags are the test's.
    pub local_only: Vec<String>,
    /// A storage directory to start from, hard-linked in (instant, and the
    /// seed is never written to).
    pub seed: Option<PathBuf>,
}

/// A running verdaccio. Killed (and reaped) on drop.
pub struct Registry {
    tools: Tools,
    dir: PathBuf,
    port: u16,
    token: String,
    child: Child,
    // Held so that the watchdog sees EOF only when we go away.
    _stdin: ChildStdin,
    stdout: Captured,
    stderr: Captured,
    /// How long start-up took until the first successful ping.
    pub startup: Duration,
}

impl Registry {
    /// Starts a registry whose files live under `<tmp_dir>/registry`, with
    /// tools from [`Tools::locate`].
    pub fn start(tmp_dir: &Path) -> Result<Registry> {
        Self::start_with(Tools::locate()?, tmp_dir)
    }

    pub fn start_with(tools: Tools, tmp_dir: &Path) -> Result<Registry> {
        Self::start_configured(tools, tmp_dir, &RegistryOptions::default())
    }

    /// A registry under `<tmp_dir>/registry` with `options`.
    pub fn start_with_options(tmp_dir: &Path, options: &RegistryOptions) -> Result<Registry> {
        Self::start_configured(Tools::locate()?, tmp_dir, options)
    }

    fn start_configured(
        tools: Tools,
        tmp_dir: &Path,
        options: &RegistryOptions,
    ) -> Result<Registry> {
        let dir = tmp_dir.join("registry");
        std::fs::create_dir_all(dir.join("storage"))?;
        if let Some(seed) = &options.seed {
            link_tree(seed, &dir.join("storage"))
                .with_context(|| format!("seed the registry from {}", seed.display()))?;
        }
        for cache in ["npm", "pnpm", "pnpm-state"] {
            std::fs::create_dir_all(dir.join("cache").join(cache))?;
        }
        let watchdog = dir.join("watchdog.cjs");
        std::fs::write(&watchdog, WATCHDOG_JS)?;

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            match Self::try_start(&tools, &dir, &watchdog, options) {
                Ok(registry) => return registry.with_user(),
                Err(StartError::PortTaken(e)) => last_err = Some(e),
                Err(StartError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("verdaccio did not start")))
    }

    fn try_start(
        tools: &Tools,
        dir: &Path,
        watchdog: &Path,
        options: &RegistryOptions,
    ) -> std::result::Result<Registry, StartError> {
        let port = free_port().map_err(StartError::Other)?;
        let config = dir.join("config.yaml");
        std::fs::write(&config, config_yaml(dir, port, options))
            .map_err(|e| StartError::Other(e.into()))?;

        let started = Instant::now();
        let mut cmd = Command::new(&tools.node24);
        cmd.arg("--require")
            .arg(watchdog)
            .arg(&tools.verdaccio)
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            // Verdaccio never needs a proxy here, and must not be told one.
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("VERDACCIO_PUBLIC_URL")
            .env("NODE_ENV", "production")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start verdaccio with {}", tools.node24.display()))
            .map_err(StartError::Other)?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());

        let mut registry = Registry {
            tools: tools.clone(),
            dir: dir.to_path_buf(),
            port,
            token: String::new(),
            child,
            _stdin: stdin,
            stdout,
            stderr,
            startup: Duration::ZERO,
        };
        registry.wait_ready(started)?;
        registry.startup = started.elapsed();
        Ok(registry)
    }

    /// Ready = verdaccio logged that it listens on our address and `/-/ping`
    /// answers 200. Fails fast if the process exits.
    fn wait_ready(&mut self, started: Instant) -> std::result::Result<(), StartError> {
        let listening = format!("http://127.0.0.1:{}/", self.port);
        let deadline = started + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| StartError::Other(e.into()))?
            {
                // Its last words are still in the pipes.
                self.stdout.wait_for_eof(Duration::from_secs(2));
                self.stderr.wait_for_eof(Duration::from_secs(2));
                let log = self.output();
                let err = anyhow::anyhow!(
                    "verdaccio exited during start-up ({status}) on port {}:\n{log}",
                    self.port
                );
                return Err(if log.contains("EADDRINUSE") {
                    StartError::PortTaken(err)
                } else {
                    StartError::Other(err)
                });
            }
            if self.stdout.snapshot().contains(&listening)
                && let Ok(resp) = self.get("/-/ping")
                && resp.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Other(anyhow::anyhow!(
                    "verdaccio not ready after {READY_TIMEOUT:?} on port {}:\n{}",
                    self.port,
                    self.output()
                )));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Creates the publishing user through the CouchDB user endpoint and
    /// keeps its token; writes the registry's own npmrc.
    fn with_user(mut self) -> Result<Registry> {
        let body = serde_json::json!({
            "_id": format!("org.couchdb.user:{USER}"),
            "name": USER,
            "password": PASSWORD,
            "type": "user",
            "roles": [],
        })
        .to_string();
        let resp = http::request(
            self.addr(),
            "PUT",
            &format!("/-/user/org.couchdb.user:{USER}"),
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
            HTTP_TIMEOUT,
        )?;
        if resp.status != 201 {
            bail!(
                "creating user {USER} failed: HTTP {} {}\n{}",
                resp.status,
                resp.text(),
                self.output()
            );
        }
        self.token = resp.json()?["token"]
            .as_str()
            .context("user creation returned no token")?
            .to_owned();
        let rc = self.userconfig();
        std::fs::write(&rc, self.npmrc_contents())?;
        Ok(self)
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The directory holding config, storage, caches and npmrc.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry's own npmrc (registry + token), used as npm's
    /// `userconfig` by the fixtures so that no developer config applies.
    pub fn userconfig(&self) -> PathBuf {
        self.dir.join("npmrc")
    }

    /// npm's cache for this registry (fresh per registry: a cache shared
    /// across runs could serve stale metadata for a reused port).
    pub fn npm_cache(&self) -> PathBuf {
        self.dir.join("cache/npm")
    }

    /// pnpm's metadata cache and state dirs for this registry.
    pub fn pnpm_cache(&self) -> PathBuf {
        self.dir.join("cache/pnpm")
    }

    pub fn pnpm_state(&self) -> PathBuf {
        self.dir.join("cache/pnpm-state")
    }

    fn npmrc_contents(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "registry={}", self.url());
        let _ = writeln!(s, "//127.0.0.1:{}/:_authToken={}", self.port, self.token);
        // No calls to the public registry (update check, audit, funding).
        s.push_str("update-notifier=false\naudit=false\nfund=false\n");
        s
    }

    /// Environment for any npm/pnpm/bun process that should use this
    /// registry (and nothing from the developer's npm config): npm's user
    /// config, registry and cache; bun reads `NPM_CONFIG_REGISTRY` too.
    /// Verified by hand to be enough on its own for `npm i -g`, `pnpm add -g`
    /// and `bun add -g`; the install helpers pass flags as well.
    pub fn client_env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("NPM_CONFIG_USERCONFIG", self.userconfig().into()),
            ("NPM_CONFIG_REGISTRY", self.url().into()),
            ("NPM_CONFIG_CACHE", self.npm_cache().into()),
            ("NPM_CONFIG_UPDATE_NOTIFIER", "false".into()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
            ("no_proxy", "127.0.0.1,localhost".into()),
        ]
    }

    /// GET a registry path.
    pub fn get(&self, path: &str) -> Result<http::Response> {
        http::request(self.addr(), "GET", path, &[], None, HTTP_TIMEOUT)
    }

    /// The package document (`GET /<name>`), as JSON.
    pub fn packument(&self, package: &str) -> Result<serde_json::Value> {
        let resp = self.get(&format!("/{}", http::encode_package_name(package)))?;
        if resp.status != 200 {
            bail!(
                "GET packument {package}: HTTP {} {}",
                resp.status,
                resp.text()
            );
        }
        resp.json()
    }

    /// `dist-tags` of a package: tag → version.
    pub fn dist_tags(&self, package: &str) -> Result<BTreeMap<String, String>> {
        let doc = self.packument(package)?;
        Ok(serde_json::from_value(doc["dist-tags"].clone())?)
    }

    /// Published versions of a package (in packument order).
    pub fn versions(&self, package: &str) -> Result<Vec<String>> {
        let doc = self.packument(package)?;
        Ok(doc["versions"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// verdaccio's output so far (stdout then stderr).
    pub fn output(&self) -> String {
        format!(
            "--- verdaccio stdout ---\n{}--- verdaccio stderr ---\n{}",
            self.stdout.snapshot(),
            self.stderr.snapshot()
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // verdaccio is a single node process (no workers), so killing it is
        // enough; the stdin watchdog covers the case where Drop never runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url())
            .field("dir", &self.dir)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

enum StartError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Hard-links every file under `from` into `to`, creating directories.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn config_yaml(dir: &Path, port: u16, options: &RegistryOptions) -> String {
    let (uplinks, proxy) = match &options.uplink {
        Some(url) => (
            format!("uplinks:\n  upstream:\n    url: {url}\n    timeout: 60s\n    maxage: 30m\n"),
            "    proxy: upstream\n",
        ),
        None => ("uplinks: {}\n".to_owned(), ""),
    };
    let mut packages = String::new();
    for name in &options.local_only {
        packages.push_str(&format!(
            "  '{name}':\n    access: $all\n    publish: $authenticated\n    unpublish: $authenticated\n"
        ));
    }
    // Paths are quoted for YAML; temp dirs have no quotes or backslashes.
    format!(
        r#"# Generated by molt-e2e (tests/src/registry.rs).
storage: "{storage}"
auth:
  htpasswd:
    file: "{htpasswd}"
    # sha1 keeps user creation instant (bcrypt would cost ~100 ms per login).
    algorithm: sha1
{uplinks}packages:
{packages}  '@*/*':
    access: $all
    publish: $authenticated
    unpublish: $authenticated
{proxy}  '**':
    access: $all
    publish: $authenticated
    unpublish: $authenticated
{proxy}
web:
  enabled: false
middlewares:
  audit:
    enabled: false
server:
  keepAliveTimeout: 5
max_body_size: 200mb
log:
  type: stdout
  format: pretty
  level: http
listen:
  - 127.0.0.1:{port}
"#,
        storage = dir.join("storage").display(),
        htpasswd = dir.join("htpasswd").display(),
    )
}
