//! Figures and how they are shown: a compact table for people, JSON for
//! machines. A figure carries its target and its comparisons; whether a
//! target is met is reported, never asserted.

use std::fmt::Write as _;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Us,
    /// A plain number.
    Count,
    /// A whole number (events counted).
    Int,
    MiB,
    /// Bytes, whole.
    Bytes,
    PerSec,
}

impl Unit {
    fn symbol(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Us => "µs",
            Unit::Count | Unit::Int => "",
            Unit::MiB => "MiB",
            Unit::Bytes => "B",
            Unit::PerSec => "req/s",
        }
    }

    fn show(self, value: f64) -> String {
        let digits = match self {
            Unit::PerSec | Unit::Int | Unit::Bytes => 0,
            Unit::Count => 2,
            _ if value >= 100.0 => 0,
            _ => 1,
        };
        format!("{value:.digits$} {}", self.symbol())
            .trim_end()
            .to_owned()
    }
}

/// Where a comparison figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Measured in this run.
    Measured,
    /// A published/known figure, not measured here.
    Reference,
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub label: String,
    /// In the figure's unit.
    pub value: f64,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable key for `--json`, e.g. `start_to_ready.p50`.
    pub id: String,
    pub label: String,
    pub value: f64,
    pub unit: Unit,
    /// Upper bound, in the figure's unit.
    pub target: Option<f64>,
    pub compare: Vec<Comparison>,
}

impl Figure {
    pub fn new(id: impl Into<String>, label: impl Into<String>, value: f64, unit: Unit) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            value,
            unit,
            target: None,
            compare: Vec::new(),
        }
    }

    pub fn target(mut self, at_most: f64) -> Self {
        self.target = Some(at_most);
        self
    }

    pub fn measured(self, label: impl Into<String>, value: f64) -> Self {
        self.compared(label, value, Source::Measured)
    }

    pub fn reference(self, label: impl Into<String>, value: f64) -> Self {
        self.compared(label, value, Source::Reference)
    }

    fn compared(mut self, label: impl Into<String>, value: f64, source: Source) -> Self {
        self.compare.push(Comparison {
            label: label.into(),
            value,
            source,
        });
        self
    }

    pub fn target_met(&self) -> Option<bool> {
        self.target.map(|t| self.value <= t)
    }
}

/// One suite's figures.
#[derive(Debug, Clone)]
pub struct Section {
    pub suite: &'static str,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// What was benchmarked, shown once above the tables.
#[derive(Debug, Clone)]
pub struct Header {
    pub moltd: String,
    pub version: String,
    pub cpus: usize,
    /// `/proc/loadavg` 1/5/15-minute averages when the run started: other
    /// load on the machine shows up in every figure.
    pub load: String,
}

/// `value / other` in words: "3.2× more" or "480× less".
fn ratio(value: f64, other: f64) -> String {
    if other <= 0.0 || value <= 0.0 {
        return "n/a".into();
    }
    let r = value / other;
    if (0.95..1.05).contains(&r) {
        format!("{r:.2}×")
    } else if r >= 1.0 {
        format!("{} more", times(r))
    } else {
        format!("{} less", times(1.0 / r))
    }
}

fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.1}×")
    }
}

pub fn table(header: &Header, sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "moltd {} ({}) · {} CPUs, shared with the bench clients · load {}",
        header.version, header.moltd, header.cpus, header.load
    );
    for section in sections {
        let rows: Vec<[String; 4]> = section
            .figures
            .iter()
            .map(|f| {
                let target = match (f.target, f.target_met()) {
                    (Some(t), Some(met)) => {
                        format!("≤ {} {}", f.unit.show(t), if met { "ok" } else { "MISSED" })
                    }
                    _ => String::new(),
                };
                let compare = f
                    .compare
                    .iter()
                    .map(|c| {
                        let tag = match c.source {
                            Source::Measured => "",
                            Source::Reference => " (reference, not measured here)",
                        };
                        format!(
                            "vs {} {}{tag}: {}",
                            c.label,
                            f.unit.show(c.value),
                            ratio(f.value, c.value)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                [f.label.clone(), f.unit.show(f.value), target, compare]
            })
            .collect();
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let _ = writeln!(out, "\n[{}]", section.suite);
        for [label, value, target, compare] in &rows {
            let line = format!("  {label:<w0$}  {value:>w1$}  {target:<w2$}  {compare}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for note in &section.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}

pub fn json(header: &Header, sections: &[Section]) -> Value {
    let suites: Vec<Value> = sections
        .iter()
        .map(|s| {
            let figures: Vec<Value> = s
                .figures
                .iter()
                .map(|f| {
                    let compare: Vec<Value> = f
                        .compare
                        .iter()
                        .map(|c| {
                            json!({
                                "label": c.label,
                                "value": c.value,
                                "source": match c.source {
                                    Source::Measured => "measured",
                                    Source::Reference => "reference",
                                },
                                "ratio": if c.value > 0.0 { Some(f.value / c.value) } else { None },
                            })
                        })
                        .collect();
                    json!({
                        "id": f.id,
                        "label": f.label,
                        "value": f.value,
                        "unit": f.unit.symbol(),
                        "targetMax": f.target,
                        "targetMet": f.target_met(),
                        "compare": compare,
                    })
                })
                .collect();
            json!({ "suite": s.suite, "figures": figures, "notes": s.notes })
        })
        .collect();
    json!({
        "moltd": { "path": header.moltd, "version": header.version },
        "cpus": header.cpus,
        "load": header.load,
        "suites": suites,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_as_words() {
        assert_eq!(ratio(5.0, 500.0), "100× less");
        assert_eq!(ratio(3.0, 1.0), "3.0× more");
        assert_eq!(ratio(1.01, 1.0), "1.01×");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }

    #[test]
    fn table_shows_target_and_reference() {
        let header = Header {
            moltd: "moltd".into(),
            version: "0.1.0".into(),
            cpus: 2,
            load: "0.10 0.20 0.30".into(),
        };
        let section = Section {
            suite: "daemon",
            figures: vec![
                Figure::new("rss", "idle RSS", 4.0, Unit::MiB)
                    .target(10.0)
                    .reference("OpenClaw", 400.0),
                Figure::new("p99", "p99", 1500.0, Unit::Us).target(1000.0),
            ],
            notes: vec![],
        };
        let text = table(&header, std::slice::from_ref(&section));
        assert!(text.contains("4.0 MiB"), "{text}");
        assert!(text.contains("≤ 10.0 MiB ok"), "{text}");
        assert!(text.contains("≤ 1000 µs MISSED"), "{text}");
        assert!(
            text.contains("vs OpenClaw 400 MiB (reference, not measured here): 100× less"),
            "{text}"
        );
        let v = json(&header, &[section]);
        assert_eq!(v["suites"][0]["figures"][0]["targetMet"], true);
        assert_eq!(v["suites"][0]["figures"][0]["compare"][0]["ratio"], 0.01);
    }
}
