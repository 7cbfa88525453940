//! Order statistics over timing samples: nearest-rank percentiles, no
//! interpolation, so every figure reported is a sample that was observed.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Self {
            count: samples.len(),
            min: samples[0],
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// Nearest rank: the smallest sample with at least `p` percent of the
/// samples at or below it. `sorted` must be sorted and non-empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = millis(1..=100);
        let at = |p| percentile(&sorted, p).as_millis();
        assert_eq!(at(0.0), 1);
        assert_eq!(at(50.0), 50);
        assert_eq!(at(99.0), 99);
        assert_eq!(at(99.5), 100);
        assert_eq!(at(100.0), 100);
    }

    #[test]
    fn small_sets_report_observed_samples() {
        // 20 runs: p99 is the slowest run, p50 the 10th.
        let s = Summary::of(millis((1..=20).rev())).unwrap();
        assert_eq!(s.count, 20);
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.p50, Duration::from_millis(10));
        assert_eq!(s.p99, Duration::from_millis(20));
        assert_eq!(s.max, Duration::from_millis(20));

        let one = Summary::of(millis([7])).unwrap();
        assert_eq!((one.min, one.p50, one.p99), (one.max, one.max, one.max));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(Vec::new()), None);
    }
}
