//! When inference-perf sends a stage's requests (`inference_perf/loadgen/load_timer.py`, 0.7.0).
//!
//! A stage sends `int(rate × duration)` requests whatever its load type (`run_stage` in
//! `loadgen/load_generator.py`), at times from its timer:
//! - `constant` (`ConstantLoadTimer`): not evenly spaced. It draws that many exponential gaps of
//!   mean 1/rate and scales them to sum to `duration`, so the last request goes exactly at the end.
//! - `poisson` (`PoissonLoadTimer`): second by second, a Poisson(rate) count of requests, spread
//!   over the second by a `ConstantLoadTimer(count, 1.0)`; a second that draws 0 stays empty. The
//!   stage takes the first `int(rate × duration)` of them, so its count is exact and its span
//!   varies.
//! - `concurrent`: `main.py` sets `rate = num_requests` and `duration = 1`, so every request is
//!   due within the first second and the concurrency limit meters them out.
//!
//! Times are seconds after the stage's first possible send.

use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution as _, Exp, Poisson};

/// `int(rate * duration)`, computed in f64 like Python (so 0.29 × 100 gives 28, as there).
pub fn request_count(rate: f64, duration: f64) -> usize {
    let n = rate * duration;
    if n.is_finite() && n > 0.0 {
        n.trunc() as usize
    } else {
        0
    }
}

/// `ConstantLoadTimer(rate, duration)`: `int(rate × duration)` exponential gaps scaled to sum to
/// `duration`; the cumulative times, each after `base`.
pub fn constant(rate: f64, duration: f64, base: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let n = request_count(rate, duration);
    let Ok(exp) = Exp::new(rate) else {
        return Vec::new();
    };
    let gaps: Vec<f64> = (0..n).map(|_| exp.sample(rng)).collect();
    let total: f64 = gaps.iter().sum();
    let scale = if total > 0.0 { duration / total } else { 0.0 };
    let mut t = base;
    gaps.iter()
        .map(|g| {
            t += g * scale;
            t
        })
        .collect()
}

/// `PoissonLoadTimer(rate, duration)`, cut at `n` requests (the stage's `int(rate × duration)`).
pub fn poisson(rate: f64, n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let Ok(per_second) = Poisson::new(rate) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(n);
    let mut next = 0.0;
    while out.len() < n {
        let count = per_second.sample(rng) as usize;
        if count < 1 {
            next += 1.0;
            continue;
        }
        let second = constant(count as f64, 1.0, next, rng);
        for t in second {
            if out.len() == n {
                break;
            }
            next = t;
            out.push(t);
        }
    }
    out
}
