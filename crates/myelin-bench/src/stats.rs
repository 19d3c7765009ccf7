//! Statistics over latency samples: nearest-rank percentiles, summaries and ratios.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (0 < p <= 100) of `sorted` (ascending) by the nearest-rank method:
/// the smallest sample such that at least p% of the samples are less or equal to it.
/// `None` for no samples or a `p` outside (0, 100].
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// Count, mean, p50, p99 and max of a set of samples (all in the samples' unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (any order; NaNs are dropped). `None` when there is no sample.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let mean = sorted.iter().sum::<f64>() / count as f64;
        Some(Summary {
            count,
            mean,
            p50: percentile(&sorted, 50.0)?,
            p99: percentile(&sorted, 99.0)?,
            max: sorted[count - 1],
        })
    }
}

/// `a / b`, or `None` when either is missing, not finite, or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    if !a.is_finite() || !b.is_finite() || b == 0.0 {
        return None;
    }
    Some(a / b)
}

/// How many times better `a` is than `b`, given whether higher values are better:
/// `a / b` for throughputs, `b / a` for latencies and sizes.
pub fn advantage(a: Option<f64>, b: Option<f64>, higher_is_better: bool) -> Option<f64> {
    if higher_is_better {
        ratio(a, b)
    } else {
        ratio(b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.5), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn percentile_rejects_empty_and_out_of_range() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 0.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
    }

    #[test]
    fn summary_sorts_and_drops_nan() {
        let s = Summary::of(&[5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0]).expect("samples");
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.p99, 5.0);
        assert_eq!(s.max, 5.0);
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
    }

    #[test]
    fn p99_of_a_long_tail() {
        let mut v = vec![1.0; 990];
        v.extend(std::iter::repeat_n(100.0, 10));
        let s = Summary::of(&v).expect("samples");
        assert_eq!(s.p50, 1.0);
        assert_eq!(s.p99, 1.0);
        v.push(100.0);
        assert_eq!(Summary::of(&v).expect("samples").p99, 100.0);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(10.0), Some(4.0)), Some(2.5));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(f64::INFINITY), Some(1.0)), None);
        assert_eq!(advantage(Some(100.0), Some(10.0), true), Some(10.0));
        assert_eq!(advantage(Some(5.0), Some(50.0), false), Some(10.0));
    }
}
