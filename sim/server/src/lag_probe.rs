//! Fine-grained lag records for the `server_lag` benchmark: exact-enough percentiles of how late
//! tokens leave the server and how late the engine thread wakes to hand them over. Not part of
//! `/metrics` (which has the coarse `servesim:emission_lag_seconds` histogram); kept apart from the
//! production [`Metrics`](crate::Metrics) so that they only hold what the server exposes.

use std::sync::atomic::{AtomicU64, Ordering};

/// The benchmark's two lag records, shared by the engine thread and every answer.
#[derive(Debug, Default)]
pub struct LagProbe {
    /// Actual minus scheduled send time of every streamed or collected token.
    pub emission: LagRecorder,
    /// How late the engine thread woke up to hand tokens over (the part of the lag that is the
    /// driver's; the rest is the HTTP side).
    pub wakeup: LagRecorder,
}

/// Emission lags with 10 µs resolution up to 100 ms (beyond: one overflow bucket), lock-free, so the
/// benchmark can read exact-enough percentiles.
#[derive(Debug)]
pub struct LagRecorder {
    buckets: Box<[AtomicU64]>,
}

const LAG_RESOLUTION_S: f64 = 10e-6;
const LAG_BUCKET_COUNT: usize = 10_001;

impl Default for LagRecorder {
    fn default() -> Self {
        LagRecorder {
            buckets: (0..LAG_BUCKET_COUNT).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LagRecorder {
    /// Record one lag (negative lags, tokens sent early, count as zero).
    pub fn record(&self, lag: f64) {
        let i = ((lag.max(0.0) / LAG_RESOLUTION_S) as usize).min(LAG_BUCKET_COUNT - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Number of recorded lags.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0..1) in seconds, the upper edge of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((i + 1) as f64 * LAG_RESOLUTION_S);
            }
        }
        None
    }

    /// Forget everything recorded so far (between benchmark phases).
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles() {
        let r = LagRecorder::default();
        assert_eq!(r.quantile(0.5), None);
        for i in 0..100 {
            r.record(f64::from(i) * 1e-4);
        }
        let p50 = r.quantile(0.5).expect("recorded");
        assert!((p50 - 0.0049).abs() < 2e-5, "{p50}");
        r.record(10.0);
        assert_eq!(r.count(), 101);
    }
}
