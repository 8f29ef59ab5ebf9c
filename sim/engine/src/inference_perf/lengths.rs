//! Token lengths drawn as inference-perf draws them.
//!
//! inference-perf 0.7.0 has two samplers (`inference_perf/utils/numeric/distribution/utils.py`):
//! `generate_distribution`, used by the `random` and `synthetic` data types, and
//! `sample_from_distribution`, used by `shared_prefix`. They differ: the first knows normal,
//! lognormal (shifted so that `min` maps to 0), uniform on `[min, max)` and fixed; the second adds
//! skew_normal and poisson, its lognormal is unshifted and its uniform is on `[min, max + 1)`. Both
//! clip to `[min, max]`, round half to even (numpy's `np.round`) and clip again; `fixed` is
//! `int(mean)`, unclipped. The draws come from a seeded xoshiro256++, not numpy's PCG64, so the
//! lengths follow the same distributions without being the same numbers.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution as _, LogNormal, Normal, Poisson, StandardNormal};

use super::IpError;
use super::config::{Distribution, DistributionType};

/// `np.clip(x, min, max)`, `np.round` (half to even), `np.clip` again.
fn clip_round(x: f64, d: &Distribution) -> i64 {
    let (lo, hi) = (d.min as f64, d.max as f64);
    let r = x.clamp(lo, hi).round_ties_even();
    r.clamp(lo, hi) as i64
}

/// `int(mean)`: Python truncates toward zero.
fn int_mean(d: &Distribution) -> i64 {
    d.mean.trunc() as i64
}

/// `generate_distribution(min, max, mean, std_dev, total_count, dist_type, rng)`: the `random` and
/// `synthetic` data types' lengths. `field` names the config field in errors.
pub fn generate_distribution(
    d: &Distribution,
    count: usize,
    rng: &mut Xoshiro256PlusPlus,
    field: &str,
) -> Result<Vec<i64>, IpError> {
    let bad = |why: String| IpError::Invalid {
        field: field.to_string(),
        why,
    };
    if d.min > d.max {
        return Err(bad(
            "minimum value cannot be greater than maximum value".into()
        ));
    }
    if count == 0 {
        return Err(bad("total_count must be a positive integer".into()));
    }
    let draw: Box<dyn FnMut(&mut Xoshiro256PlusPlus) -> f64> = match d.kind {
        DistributionType::Fixed => return Ok(vec![int_mean(d); count]),
        DistributionType::Uniform => {
            let (lo, hi) = (d.min as f64, d.max as f64);
            // numpy's uniform(low, high) is low + (high - low) * U[0, 1).
            Box::new(move |r| lo + (hi - lo) * r.random::<f64>())
        }
        DistributionType::Lognormal => {
            let shifted = if d.mean - (d.min as f64) <= 0.0 {
                1.0
            } else {
                d.mean - d.min as f64
            };
            let sigma2 = (1.0 + (d.std_dev / shifted).powi(2)).ln();
            let mu = shifted.ln() - sigma2 / 2.0;
            let ln = LogNormal::new(mu, sigma2.sqrt()).map_err(|e| bad(e.to_string()))?;
            let min = d.min as f64;
            Box::new(move |r| ln.sample(r) + min)
        }
        DistributionType::Normal => {
            if d.mean < d.min as f64 || d.mean > d.max as f64 {
                return Err(bad("mean cannot be outside min and max range".into()));
            }
            let n = Normal::new(d.mean, d.std_dev).map_err(|e| bad(e.to_string()))?;
            Box::new(move |r| n.sample(r))
        }
        DistributionType::SkewNormal | DistributionType::Poisson => {
            return Err(bad(format!(
                "type '{}' is not one the random and synthetic data types accept (inference-perf's \
                 generate_distribution knows normal, lognormal, uniform and fixed)",
                d.kind.name()
            )));
        }
    };
    let mut draw = draw;
    Ok((0..count).map(|_| clip_round(draw(rng), d)).collect())
}

/// `sample_from_distribution(config, count, rng)`: the `shared_prefix` data type's lengths.
pub fn sample_from_distribution(
    d: &Distribution,
    count: usize,
    rng: &mut Xoshiro256PlusPlus,
    field: &str,
) -> Result<Vec<i64>, IpError> {
    let bad = |why: String| IpError::Invalid {
        field: field.to_string(),
        why,
    };
    if d.min > d.max {
        return Err(bad(format!(
            "min ({}) cannot be greater than max ({})",
            d.min, d.max
        )));
    }
    if count == 0 {
        return Err(bad("count must be a positive integer".into()));
    }
    // A plain integer length resolves to normal with std_dev 0: always the mean.
    if d.kind == DistributionType::Fixed || (d.std_dev == 0.0 && d.kind == DistributionType::Normal)
    {
        let v = if d.kind == DistributionType::Fixed {
            int_mean(d)
        } else {
            clip_round(d.mean, d)
        };
        return Ok(vec![v; count]);
    }
    let mut out = Vec::with_capacity(count);
    match d.kind {
        DistributionType::Normal => {
            let n = Normal::new(d.mean, d.std_dev).map_err(|e| bad(e.to_string()))?;
            out.extend((0..count).map(|_| n.sample(rng)));
        }
        DistributionType::SkewNormal => {
            // Azzalini's two-normal method, as `_sample_skew_normal` does.
            let delta = d.skew / (1.0 + d.skew * d.skew).sqrt();
            for _ in 0..count {
                let u0: f64 = StandardNormal.sample(rng);
                let v: f64 = StandardNormal.sample(rng);
                let u1 = delta * u0 + (1.0 - delta * delta).sqrt() * v;
                let z = if u0 >= 0.0 { u1 } else { -u1 };
                out.push(d.mean + d.std_dev * z);
            }
        }
        DistributionType::Lognormal => {
            if d.mean <= 0.0 {
                return Err(bad("lognormal distribution requires mean > 0".into()));
            }
            if d.std_dev <= 0.0 {
                out.extend(std::iter::repeat_n(d.mean, count));
            } else {
                let s2 = (1.0 + (d.std_dev / d.mean).powi(2)).ln();
                let mu = d.mean.ln() - s2 / 2.0;
                let ln = LogNormal::new(mu, s2.sqrt()).map_err(|e| bad(e.to_string()))?;
                out.extend((0..count).map(|_| ln.sample(rng)));
            }
        }
        DistributionType::Uniform => {
            let (lo, hi) = (d.min as f64, d.max as f64 + 1.0);
            out.extend((0..count).map(|_| lo + (hi - lo) * rng.random::<f64>()));
        }
        DistributionType::Poisson => {
            let lam = if d.mean > 0.0 { d.mean } else { 1.0 };
            let p = Poisson::new(lam).map_err(|e| bad(e.to_string()))?;
            out.extend((0..count).map(|_| p.sample(rng)));
        }
        DistributionType::Fixed => {}
    }
    Ok(out.into_iter().map(|x| clip_round(x, d)).collect())
}
