//! The gateway's Prometheus metrics (docs/operations.md, "Metrics").
//!
//! Counters and histograms live in one [`Counted`] value behind a mutex,
//! not in the metric crate's own types, because they must survive a
//! handoff: the predecessor writes them to `metrics-handoff.json` for its
//! successor's pid just before it accepts it ([`handoff`]) and the
//! successor adds them to its own, so a dashboard's rates do not reset on
//! every update. From that moment the predecessor's metrics are frozen:
//! whatever it still counts while it drains is dropped, so no scrape can
//! see a value the successor's later one is below (a counter reset).
//!
//! Gauges that describe the process as it is (connections, the kill
//! switch, what update is available) are read at each scrape ([`Live`]).
//! Encoding goes through `prometheus-client`'s OpenMetrics text encoder.
//!
//! Every label value comes from a fixed set (method names, reason codes,
//! step names), so the number of series is bounded.

pub mod handoff;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of `moltd_handoff_gap_seconds`: a handoff takes from
/// tens of milliseconds (respawn) up to the successor timeout.
const GAP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Upper bounds of `moltd_update_step_seconds`: a version check is
/// milliseconds, an install or a build minutes.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0,
];
/// Series restored from a handoff file at most, per family: the file is
/// ours, but a damaged one must not grow the registry without bound.
const MAX_RESTORED_SERIES: usize = 256;

/// One counter family: label values (in the family's label order) → count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<(Vec<String>, u64)>", into = "Vec<(Vec<String>, u64)>")]
pub struct Series(BTreeMap<Vec<String>, u64>);

impl From<Vec<(Vec<String>, u64)>> for Series {
    fn from(pairs: Vec<(Vec<String>, u64)>) -> Self {
        Series(pairs.into_iter().collect())
    }
}

impl From<Series> for Vec<(Vec<String>, u64)> {
    fn from(series: Series) -> Self {
        series.0.into_iter().collect()
    }
}

impl Series {
    fn inc(&mut self, labels: &[&str]) {
        let key = labels.iter().map(|s| (*s).to_owned()).collect();
        *self.0.entry(key).or_default() += 1;
    }

    pub fn get(&self, labels: &[&str]) -> u64 {
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        self.0.get(&key).copied().unwrap_or(0)
    }

    fn add(&mut self, other: &Series) {
        for (labels, n) in other.0.iter().take(MAX_RESTORED_SERIES) {
            let entry = self.0.entry(labels.clone()).or_default();
            *entry = entry.saturating_add(*n);
        }
    }
}

/// A histogram with fixed bounds: per-bucket (not cumulative) counts, the
/// last one for `+Inf`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histo {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histo {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.len() != bounds.len() + 1 {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Adds `other` if it has the same bounds (a handoff file from a
    /// version with other buckets is not mixed in).
    fn add(&mut self, bounds: &[f64], other: &Histo) -> bool {
        if other.buckets.len() != bounds.len() + 1
            || other.buckets.iter().sum::<u64>() != other.count
        {
            return false;
        }
        if self.buckets.len() != bounds.len() + 1 {
            self.buckets = vec![0; bounds.len() + 1];
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum += other.sum;
        self.count = self.count.saturating_add(other.count);
        true
    }
}

/// Everything counted, as it is handed to a successor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counted {
    /// How many processes came before this one in the chain of handoffs.
    pub predecessors: u64,
    pub requests: Series,
    pub handoffs: Series,
    pub restart_failures: Series,
    pub update_runs: Series,
    pub autoupdate_checks: Series,
    pub handoff_gap: Histo,
    pub update_steps: BTreeMap<String, Histo>,
}

impl Counted {
    /// Adds a predecessor's counts to these; this process is one further
    /// down the chain.
    fn take_over(&mut self, from: &Counted) {
        self.predecessors = from.predecessors.saturating_add(1);
        self.requests.add(&from.requests);
        self.handoffs.add(&from.handoffs);
        self.restart_failures.add(&from.restart_failures);
        self.update_runs.add(&from.update_runs);
        self.autoupdate_checks.add(&from.autoupdate_checks);
        if !self.handoff_gap.add(GAP_BUCKETS, &from.handoff_gap) {
            tracing::warn!("the predecessor's handoff gap histogram has other buckets; not taken");
        }
        for (step, histo) in from.update_steps.iter().take(MAX_RESTORED_SERIES) {
            self.update_steps
                .entry(step.clone())
                .or_default()
                .add(STEP_BUCKETS, histo);
        }
    }
}

/// What a scrape reads from the gateway as it stands.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub version: String,
    pub started_at_ms: u64,
    pub connections: u32,
    pub kill_switch: bool,
    /// The newer version a check found, and its channel.
    pub update_available: Option<(String, String)>,
}

/// This process's metrics. One per process ([`metrics`]): the engines
/// that count are many and deep, and the counts belong to the process.
#[derive(Debug, Default)]
pub struct Metrics {
    counted: Mutex<Counted>,
    /// Set once the counts were handed to a successor.
    frozen: Mutex<bool>,
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);
    &METRICS
}

impl Metrics {
    fn count(&self, f: impl FnOnce(&mut Counted)) {
        let frozen = self.frozen.lock();
        if !*frozen {
            f(&mut self.counted.lock());
        }
    }

    /// A request answered: `outcome` is `ok` or the error code.
    pub fn request(&self, method: &str, outcome: &str) {
        self.count(|c| c.requests.inc(&[method, outcome]));
    }

    /// A handoff to a successor that was accepted, and how long the
    /// restart took from firing to the verdict.
    pub fn handed_off(&self, gap_seconds: f64) {
        self.count(|c| {
            c.handoffs.inc(&["handed-off"]);
            c.handoff_gap.observe(GAP_BUCKETS, gap_seconds);
        });
    }

    /// A restart that did not hand off, by reason code; this process
    /// serves on.
    pub fn restart_failed(&self, reason: &str) {
        self.count(|c| {
            c.handoffs.inc(&["failed"]);
            c.restart_failures.inc(&[reason]);
        });
    }

    /// An update run reached its terminal phase.
    pub fn update_run_ended(&self, trigger: &str, outcome: &str) {
        self.count(|c| c.update_runs.inc(&[trigger, outcome]));
    }

    /// An update step finished, after `seconds`.
    pub fn update_step(&self, step: &str, seconds: f64) {
        self.count(|c| {
            c.update_steps
                .entry(step.to_owned())
                .or_default()
                .observe(STEP_BUCKETS, seconds);
        });
    }

    /// An automatic check ended: `update-available`, `up-to-date` or
    /// `failed`.
    pub fn autoupdate_check(&self, outcome: &str) {
        self.count(|c| c.autoupdate_checks.inc(&[outcome]));
    }

    /// A copy of the counts.
    pub fn counted(&self) -> Counted {
        self.counted.lock().clone()
    }

    /// The counts to hand to a successor; nothing is counted after this,
    /// so no later scrape of this process shows more than the successor
    /// starts from.
    pub fn freeze(&self) -> Counted {
        let mut frozen = self.frozen.lock();
        *frozen = true;
        self.counted.lock().clone()
    }

    /// Adds a predecessor's counts (see [`handoff::take_over`]).
    pub fn take_over(&self, from: &Counted) {
        self.counted.lock().take_over(from);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self, live: &Live) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            counted: self.counted(),
            live: live.clone(),
        }));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// One scrape's values, encoded by `prometheus-client`.
#[derive(Debug)]
struct Scrape {
    counted: Counted,
    live: Live,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (c, live) = (&self.counted, &self.live);
        let info = encoder.encode_descriptor(
            "moltd_build",
            "The version this process runs.",
            None,
            MetricType::Info,
        )?;
        encode_info(info, &[("version", live.version.as_str())])?;
        gauge(
            &mut encoder,
            "moltd_start_time_seconds",
            "When this process started, in Unix seconds.",
            live.started_at_ms as f64 / 1000.0,
        )?;
        gauge(
            &mut encoder,
            "moltd_generation",
            "Processes in this gateway's chain of handoffs, this one included.",
            (c.predecessors + 1) as f64,
        )?;
        gauge(
            &mut encoder,
            "moltd_connections",
            "Open connections, those still in the handshake included.",
            f64::from(live.connections),
        )?;
        gauge(
            &mut encoder,
            "moltd_kill_switch",
            "1 while OPENCLAW_NO_AUTO_UPDATE blocks automatic updates.",
            f64::from(u8::from(live.kill_switch)),
        )?;
        gauge(
            &mut encoder,
            "moltd_update_available",
            "1 when the last check found a newer version (see moltd_update_target_info).",
            f64::from(u8::from(live.update_available.is_some())),
        )?;
        let target = encoder.encode_descriptor(
            "moltd_update_target",
            "The newer version the last check found, and its channel.",
            None,
            MetricType::Info,
        )?;
        if let Some((version, channel)) = &live.update_available {
            encode_info(
                target,
                &[("version", version.as_str()), ("channel", channel.as_str())],
            )?;
        }
        counters(
            &mut encoder,
            "moltd_requests",
            "Requests answered, by method and outcome (ok or the error code).",
            &["method", "outcome"],
            &c.requests,
        )?;
        counters(
            &mut encoder,
            "moltd_handoffs",
            "Restarts that handed off to a successor, or failed to.",
            &["outcome"],
            &c.handoffs,
        )?;
        counters(
            &mut encoder,
            "moltd_restart_failures",
            "Restarts that did not hand off, by reason; the process served on.",
            &["reason"],
            &c.restart_failures,
        )?;
        counters(
            &mut encoder,
            "moltd_update_runs",
            "Update runs that ended, by trigger and final phase.",
            &["trigger", "outcome"],
            &c.update_runs,
        )?;
        counters(
            &mut encoder,
            "moltd_autoupdate_checks",
            "The auto-updater's registry checks, by outcome.",
            &["outcome"],
            &c.autoupdate_checks,
        )?;
        let gap = encoder.encode_descriptor(
            "moltd_handoff_gap_seconds",
            "From a restart firing to its successor being accepted.",
            None,
            MetricType::Histogram,
        )?;
        histogram(gap, GAP_BUCKETS, &c.handoff_gap)?;
        let mut steps = encoder.encode_descriptor(
            "moltd_update_step_seconds",
            "How long each update step took.",
            None,
            MetricType::Histogram,
        )?;
        for (step, histo) in &c.update_steps {
            let labels = [("step", step.as_str())];
            histogram(steps.encode_family(&labels)?, STEP_BUCKETS, histo)?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn encode_info(
    mut encoder: prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
) -> Result<(), std::fmt::Error> {
    encoder.encode_info(&labels)
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label_names: &[&str],
    series: &Series,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (values, n) in &series.0 {
        let labels: Vec<(&str, &str)> = label_names
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect();
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

fn histogram(
    mut encoder: prometheus_client::encoding::MetricEncoder,
    bounds: &[f64],
    histo: &Histo,
) -> Result<(), std::fmt::Error> {
    let counts = if histo.buckets.len() == bounds.len() + 1 {
        histo.buckets.clone()
    } else {
        vec![0; bounds.len() + 1]
    };
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(counts)
        .collect();
    encoder.encode_histogram::<NoLabelSet>(histo.sum, histo.count, &buckets, None)
}

#[cfg(test)]
mod tests;
