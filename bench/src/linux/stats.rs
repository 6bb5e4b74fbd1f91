//! Order statistics of timing samples: median, p10 and p90 by nearest rank.

use std::time::Duration;

/// Summary of one benchmark's samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// 50th percentile.
    pub(crate) median: f64,
    /// 10th percentile.
    pub(crate) p10: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// Number of samples.
    pub(crate) n: usize,
}

/// Summarises samples; `None` when there are none.
pub(crate) fn summarize(samples: &[Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    Some(Summary {
        median: percentile(&ms, 50),
        p10: percentile(&ms, 10),
        p90: percentile(&ms, 90),
        n: ms.len(),
    })
}

/// Nearest-rank percentile of sorted, non-empty data (the median of an even
/// count is the mean of the two middle values).
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let n = sorted.len();
    if p == 50 && n % 2 == 0 {
        return (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
    }
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles() {
        let s = summarize(&ms(&[5, 1, 4, 2, 3])).expect("non-empty");
        assert!((s.median - 3.0).abs() < 1e-9);
        assert!((s.p10 - 1.0).abs() < 1e-9);
        assert!((s.p90 - 5.0).abs() < 1e-9);
        let s = summarize(&ms(&[4, 1, 3, 2])).expect("non-empty");
        assert!((s.median - 2.5).abs() < 1e-9);
        assert!(summarize(&[]).is_none());
    }
}
