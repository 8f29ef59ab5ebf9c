//! Fault injection for testing clients: errors by kind, streams cut midway and latency spikes, each
//! at a seeded rate (all off by default) or forced per request with the `X-Servesim-Fault` header.

use std::sync::Mutex;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The header that forces a fault on one request: `500`, `503`, `429`, `400` (context length),
/// `cut` or `spike`.
pub const FAULT_HEADER: &str = "x-servesim-fault";

/// The spike a forced `spike` adds when no `--fault-spike-ms` is configured.
pub const DEFAULT_SPIKE_S: f64 = 1.0;

/// Rates (0..1, per request) of each fault.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    pub error_500: f64,
    pub error_503: f64,
    pub error_429: f64,
    /// A context-length 400, as if the prompt were too long.
    pub error_context: f64,
    /// A stream (or a non-streaming answer) whose connection is dropped halfway through.
    pub cut: f64,
    /// A request that reaches the engine `spike_s` seconds late.
    pub spike: f64,
    pub spike_s: f64,
}

impl FaultConfig {
    /// Whether every rate is a probability.
    pub fn check(&self) -> Result<(), String> {
        let rates = [
            self.error_500,
            self.error_503,
            self.error_429,
            self.error_context,
            self.cut,
            self.spike,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
            return Err("fault rates must be in [0, 1]".into());
        }
        if !(self.spike_s >= 0.0 && self.spike_s.is_finite()) {
            return Err("the latency spike must be a finite number of seconds >= 0".into());
        }
        Ok(())
    }
}

/// An error the request is answered with instead of being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    Status(u16),
    ContextLength,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultPlan {
    pub error: Option<InjectedError>,
    pub cut: bool,
    /// Extra seconds (engine clock) before the request reaches the engine.
    pub spike_s: f64,
}

/// The seeded fault dice.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: Mutex<Xoshiro256PlusPlus>,
}

impl Faults {
    pub fn new(config: FaultConfig, seed: u64) -> Faults {
        Faults {
            config,
            // A stream apart from the answer lengths', so turning faults on does not change them.
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xfa17_fa17)),
        }
    }

    /// Decide one request's fate. `forced` is the `X-Servesim-Fault` header, if any; unknown values
    /// are an error so that a typo does not silently test nothing.
    pub fn plan(&self, forced: Option<&str>) -> Result<FaultPlan, String> {
        let c = &self.config;
        let mut plan = FaultPlan::default();
        if let Some(f) = forced {
            match f.trim() {
                "500" => plan.error = Some(InjectedError::Status(500)),
                "503" => plan.error = Some(InjectedError::Status(503)),
                "429" => plan.error = Some(InjectedError::Status(429)),
                "400" | "context" => plan.error = Some(InjectedError::ContextLength),
                "cut" => plan.cut = true,
                "spike" => {
                    plan.spike_s = if c.spike_s > 0.0 {
                        c.spike_s
                    } else {
                        DEFAULT_SPIKE_S
                    };
                }
                other => {
                    return Err(format!(
                        "unknown {FAULT_HEADER} value '{other}' (500, 503, 429, 400, cut, spike)"
                    ));
                }
            }
            return Ok(plan);
        }
        let all_off = [
            c.error_500,
            c.error_503,
            c.error_429,
            c.error_context,
            c.cut,
            c.spike,
        ]
        .iter()
        .all(|&r| r == 0.0);
        if all_off {
            return Ok(plan);
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // Always draw all dice, so the fate of request k depends only on k.
        let draws: [f64; 6] = std::array::from_fn(|_| rng.random::<f64>());
        let errors = [
            (c.error_500, InjectedError::Status(500)),
            (c.error_503, InjectedError::Status(503)),
            (c.error_429, InjectedError::Status(429)),
            (c.error_context, InjectedError::ContextLength),
        ];
        plan.error = errors
            .iter()
            .zip(draws)
            .find(|((rate, _), d)| *d < *rate)
            .map(|((_, e), _)| *e);
        plan.cut = draws[4] < c.cut;
        if draws[5] < c.spike {
            plan.spike_s = c.spike_s;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_forced_by_header() {
        let f = Faults::new(FaultConfig::default(), 1);
        assert_eq!(f.plan(None), Ok(FaultPlan::default()));
        let p = f.plan(Some("503")).expect("known");
        assert_eq!(p.error, Some(InjectedError::Status(503)));
        assert!(f.plan(Some("cut")).expect("known").cut);
        assert!(f.plan(Some("bogus")).is_err());
    }

    #[test]
    fn rates_are_seeded_and_roughly_right() {
        let config = FaultConfig {
            error_500: 0.25,
            cut: 0.5,
            ..FaultConfig::default()
        };
        let run = |seed| {
            let f = Faults::new(config, seed);
            (0..400)
                .map(|_| f.plan(None).expect("no header"))
                .collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        let errors = a.iter().filter(|p| p.error.is_some()).count();
        let cuts = a.iter().filter(|p| p.cut).count();
        assert!(
            (60..140).contains(&errors),
            "{errors} errors of 400 at 25 %"
        );
        assert!((150..250).contains(&cuts), "{cuts} cuts of 400 at 50 %");
    }
}
