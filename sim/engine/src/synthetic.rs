//! Synthetic open-loop load: requests arrive by a Poisson, gamma or constant process at a set rate,
//! with input and output lengths drawn from distributions, whatever the server does (as
//! inference-perf, vLLM's `benchmark_serving` and GuideLLM generate it). Prompts are known only by
//! their length, so they share no KV block; answers run to their drawn length (`ignore_eos`).

use std::fmt;
use std::str::FromStr;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Gamma, LogNormal, Normal};

use crate::frontend::{Prompt, RequestSpec};
use crate::router::ParseError;
use crate::workload::{Arrival, LevelPlan};

/// When requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalProcess {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma-distributed gaps with this coefficient of variation (1 = Poisson; > 1 burstier).
    Gamma { cv: f64 },
    /// Evenly spaced.
    Constant,
}

impl FromStr for ArrivalProcess {
    type Err = ParseError;

    /// `poisson`, `constant`, or `gamma:cv=X`.
    fn from_str(s: &str) -> Result<ArrivalProcess, ParseError> {
        match s {
            "poisson" => return Ok(ArrivalProcess::Poisson),
            "constant" => return Ok(ArrivalProcess::Constant),
            _ => {}
        }
        if let Some(cv) = s.strip_prefix("gamma:cv=")
            && let Ok(cv) = cv.parse::<f64>()
            && cv.is_finite()
            && cv > 0.0
        {
            return Ok(ArrivalProcess::Gamma { cv });
        }
        Err(ParseError::new(format!(
            "unknown arrival process '{s}' (poisson, constant, gamma:cv=X with X > 0)"
        )))
    }
}

impl fmt::Display for ArrivalProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrivalProcess::Poisson => f.write_str("poisson"),
            ArrivalProcess::Constant => f.write_str("constant"),
            ArrivalProcess::Gamma { cv } => write!(f, "gamma:cv={cv}"),
        }
    }
}

/// A token-length distribution: a fixed number or a named distribution; draws are rounded and
/// kept within `[1, max]` when a `max` is given (≥ 1 always).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenDist {
    Fixed(u32),
    Normal {
        mean: f64,
        sd: f64,
    },
    /// Parameterised by its own mean and standard deviation (not those of the log).
    LogNormal {
        mean: f64,
        sd: f64,
    },
    Uniform {
        min: u32,
        max: u32,
    },
}

impl FromStr for TokenDist {
    type Err = ParseError;

    /// `512`, `normal:mean=512,sd=64`, `lognormal:mean=512,sd=256`, `uniform:min=128,max=1024`.
    fn from_str(s: &str) -> Result<TokenDist, ParseError> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u32>() {
            return if n > 0 {
                Ok(TokenDist::Fixed(n))
            } else {
                Err(ParseError::new("a token count must be >= 1".into()))
            };
        }
        let bad = || {
            ParseError::new(format!(
                "bad token distribution '{s}' (N, normal:mean=M,sd=S, lognormal:mean=M,sd=S, \
                 uniform:min=A,max=B; means >= 1, sd >= 0, 1 <= A <= B)"
            ))
        };
        let (name, params) = s.split_once(':').ok_or_else(bad)?;
        let get = |key: &str| -> Result<f64, ParseError> {
            params
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(bad)
        };
        let dist = match name {
            "normal" | "lognormal" => {
                let (mean, sd) = (get("mean")?, get("sd")?);
                if mean < 1.0 || sd < 0.0 {
                    return Err(bad());
                }
                if name == "normal" {
                    TokenDist::Normal { mean, sd }
                } else {
                    TokenDist::LogNormal { mean, sd }
                }
            }
            "uniform" => {
                let (min, max) = (get("min")?, get("max")?);
                if min < 1.0 || max < min || max > f64::from(u32::MAX) {
                    return Err(bad());
                }
                TokenDist::Uniform {
                    min: min as u32,
                    max: max as u32,
                }
            }
            _ => return Err(bad()),
        };
        Ok(dist)
    }
}

impl fmt::Display for TokenDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenDist::Fixed(n) => write!(f, "{n}"),
            TokenDist::Normal { mean, sd } => write!(f, "normal:mean={mean},sd={sd}"),
            TokenDist::LogNormal { mean, sd } => write!(f, "lognormal:mean={mean},sd={sd}"),
            TokenDist::Uniform { min, max } => write!(f, "uniform:min={min},max={max}"),
        }
    }
}

impl TokenDist {
    /// One draw, at least 1.
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u32 {
        let x = match *self {
            TokenDist::Fixed(n) => return n.max(1),
            TokenDist::Uniform { min, max } => return rng.random_range(min..=max).max(1),
            TokenDist::Normal { mean, sd } => Normal::new(mean, sd).map_or(mean, |d| d.sample(rng)),
            TokenDist::LogNormal { mean, sd } => {
                // The log's parameters from the distribution's own mean and sd.
                let s2 = (1.0 + (sd / mean).powi(2)).ln();
                let mu = mean.ln() - s2 / 2.0;
                LogNormal::new(mu, s2.sqrt()).map_or(mean, |d| d.sample(rng))
            }
        };
        x.round().clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// The distribution's mean.
    pub fn mean(&self) -> f64 {
        match *self {
            TokenDist::Fixed(n) => f64::from(n),
            TokenDist::Normal { mean, .. } | TokenDist::LogNormal { mean, .. } => mean,
            TokenDist::Uniform { min, max } => (f64::from(min) + f64::from(max)) / 2.0,
        }
    }
}

/// The gaps between arrivals of a process at a rate (shared by [`OpenLoop`] and workload files).
#[derive(Debug, Clone)]
pub struct Gaps {
    arrival: ArrivalProcess,
    mean_gap: f64,
    gamma: Option<Gamma<f64>>,
}

impl Gaps {
    /// Gaps of `arrival` at `rate` requests per second (`rate` > 0, checked by the caller).
    pub fn new(arrival: ArrivalProcess, rate: f64) -> Gaps {
        let mean_gap = 1.0 / rate;
        let gamma = match arrival {
            ArrivalProcess::Gamma { cv } => {
                // Shape 1/cv², scale mean·cv² keeps the mean gap at 1/rate.
                let shape = 1.0 / (cv * cv);
                Gamma::new(shape, mean_gap / shape).ok()
            }
            _ => None,
        };
        Gaps {
            arrival,
            mean_gap,
            gamma,
        }
    }

    /// The next gap, in seconds.
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> f64 {
        match (self.arrival, &self.gamma) {
            (ArrivalProcess::Constant, _) => self.mean_gap,
            (ArrivalProcess::Gamma { .. }, Some(g)) => g.sample(rng),
            // Exponential by inversion; 1 − u is in (0, 1], so the log is finite.
            _ => -(1.0 - rng.random::<f64>()).ln() * self.mean_gap,
        }
    }
}

/// An open-loop synthetic load.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLoop {
    pub arrival: ArrivalProcess,
    /// Requests per second, on average.
    pub rate: f64,
    pub requests: usize,
    pub input_tokens: TokenDist,
    pub output_tokens: TokenDist,
    pub seed: u64,
}

impl OpenLoop {
    /// The load as a level of open-loop arrivals, the first at time 0.
    pub fn plan(&self) -> Result<LevelPlan, ParseError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(ParseError::new(format!("rate {} must be > 0", self.rate)));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed ^ 0x0be1_1007_0000_0002);
        let gaps = Gaps::new(self.arrival, self.rate);
        let mut at = 0.0;
        let mut arrivals = Vec::with_capacity(self.requests);
        for i in 0..self.requests {
            if i > 0 {
                at += gaps.sample(&mut rng);
            }
            let input = self.input_tokens.sample(&mut rng);
            let output = self.output_tokens.sample(&mut rng);
            arrivals.push(Arrival {
                at,
                request: RequestSpec {
                    prompt: Prompt::Tokens(input),
                    max_tokens: output,
                    ignore_eos: true,
                    min_tokens: 0,
                },
            });
        }
        Ok(LevelPlan {
            arrivals,
            ..LevelPlan::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(arrival: &str, n: usize) -> Vec<f64> {
        let plan = OpenLoop {
            arrival: arrival.parse().expect("arrival"),
            rate: 10.0,
            requests: n,
            input_tokens: "lognormal:mean=512,sd=256".parse().expect("dist"),
            output_tokens: TokenDist::Fixed(64),
            seed: 3,
        }
        .plan()
        .expect("plan");
        plan.arrivals.iter().map(|a| a.at).collect()
    }

    fn gaps_cv(times: &[f64]) -> (f64, f64) {
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn arrival_processes_keep_the_rate_and_their_burstiness() {
        for (arrival, cv) in [("constant", 0.0), ("poisson", 1.0), ("gamma:cv=2", 2.0)] {
            let (mean, got_cv) = gaps_cv(&load(arrival, 20_000));
            assert!((mean - 0.1).abs() < 0.004, "{arrival}: mean gap {mean}");
            assert!((got_cv - cv).abs() < 0.1, "{arrival}: cv {got_cv}");
        }
    }

    #[test]
    fn token_distributions_parse_and_draw_their_moments() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for (spec, mean, sd) in [
            ("lognormal:mean=512,sd=256", 512.0, 256.0),
            ("normal:mean=300,sd=20", 300.0, 20.0),
            ("uniform:min=100,max=200", 150.0, 100.0 / 12f64.sqrt()),
            ("77", 77.0, 0.0),
        ] {
            let d: TokenDist = spec.parse().expect(spec);
            assert_eq!(d.to_string(), spec);
            let xs: Vec<f64> = (0..40_000).map(|_| f64::from(d.sample(&mut rng))).collect();
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            let s = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
            assert!((m - mean).abs() < mean * 0.02, "{spec}: mean {m}");
            assert!((s - sd).abs() < sd * 0.05 + 0.6, "{spec}: sd {s}");
            assert!(xs.iter().all(|&x| x >= 1.0));
        }
        for bad in [
            "0",
            "lognormal:mean=512",
            "uniform:min=5,max=2",
            "pareto:a=1",
            "x",
        ] {
            assert!(bad.parse::<TokenDist>().is_err(), "{bad}");
        }
        for bad in ["gamma:cv=0", "gamma", "bursty"] {
            assert!(bad.parse::<ArrivalProcess>().is_err(), "{bad}");
        }
    }
}
