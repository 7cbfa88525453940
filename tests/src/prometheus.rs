//! A real Prometheus server (Debian's `prometheus`, installed by
//! scripts/install-test-tools.sh) on loopback, scraping one moltd with the
//! gateway token from a file, queried through its HTTP API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::http;

/// How long a sample may take to show up: a few scrape intervals, plus
/// Prometheus's own start.
pub const SAMPLE_WAIT: Duration = Duration::from_secs(60);

enum Started {
    Ready(Prometheus),
    /// Another process took the port first; its log.
    PortTaken(String),
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

/// Where the `prometheus` binary is, or why there is none.
pub fn binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "prometheus is not installed (scripts/install-test-tools.sh installs it as root)"
                .to_owned()
        })
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `target` every second with the
    /// bearer token in `token_file`, and waits until it is ready.
    pub fn start(binary: &Path, dir: &Path, target: SocketAddr, token_file: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: moltd\n    metrics_path: /metrics\n\
                 \x20   authorization:\n      type: Bearer\n      credentials_file: {token}\n\
                 \x20   static_configs:\n      - targets: ['{target}']\n",
                token = token_file.display(),
            ),
        )?;
        // Prometheus takes its port by number: a number free a moment ago
        // may be taken by a parallel test before it binds, so a start that
        // finds it taken tries another.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(binary, dir, &config)? {
                Started::Ready(prometheus) => return Ok(prometheus),
                Started::PortTaken(log) if attempts < 5 => {
                    eprintln!("prometheus: port taken, trying another: {log}");
                }
                Started::PortTaken(log) => bail!("prometheus found every port taken: {log}"),
            }
        }
    }

    fn try_start(binary: &Path, dir: &Path, config: &Path) -> Result<Started> {
        let port = {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            l.local_addr()?.port()
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let mut prometheus = Prometheus { child, addr, log };
        let deadline = Instant::now() + SAMPLE_WAIT;
        loop {
            if let Some(status) = prometheus.child.try_wait()? {
                let log = prometheus.log_text();
                if log.contains("address already in use") {
                    return Ok(Started::PortTaken(log));
                }
                bail!("prometheus exited ({status}): {log}");
            }
            let ready = http::request(addr, "GET", "/-/ready", &[], None, Duration::from_secs(2));
            if ready.is_ok_and(|r| r.status == 200) {
                return Ok(Started::Ready(prometheus));
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus not ready in {SAMPLE_WAIT:?}: {}",
                    prometheus.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, expr: &str) -> Result<Vec<(Value, f64)>> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let response = http::request(self.addr, "GET", &path, &[], None, Duration::from_secs(5))?;
        let body = response.json()?;
        if body["status"] != "success" {
            bail!("query {expr}: {body}");
        }
        let series = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(series
            .into_iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), value)
            })
            .collect())
    }

    /// Polls `expr` until one of its values satisfies `ok`, and returns
    /// it; fails after [`SAMPLE_WAIT`] naming what it saw last.
    pub fn wait_for(&self, expr: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + SAMPLE_WAIT;
        loop {
            let seen = self.query(expr);
            if let Ok(series) = &seen
                && let Some((_, v)) = series.iter().find(|(_, v)| ok(*v))
            {
                return *v;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never had {expr} as wanted; last: {seen:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One scrape of moltd's `GET /metrics` with the test token: the samples,
/// one per line, comments left out.
pub fn scrape(target: SocketAddr) -> Vec<String> {
    let bearer = format!("Bearer {}", crate::client::TOKEN);
    let response = crate::http::request(
        target,
        "GET",
        "/metrics",
        &[("Authorization", bearer.as_str())],
        None,
        std::time::Duration::from_secs(10),
    )
    .expect("GET /metrics");
    assert_eq!(response.status, 200, "{}", response.text());
    response
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
