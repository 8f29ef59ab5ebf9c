//! Per-replica capacity: the highest arrival rate one replica serves within the SLOs, found by
//! bisection on simulated runs (not read off a sweep), and the measurement it bisects over.

use serde::{Deserialize, Serialize};
use servesim_models::Profile;
use servesim_sim::workload_file::SloTerm;
use servesim_sim::{Fleet, LevelRun, Policy, RouterConfig};

use crate::PlanError;
use crate::latency::{ClassLatencies, Latencies};
use crate::search::Candidate;
use crate::traffic::{Shape, Traffic, scaled};

/// Runs a candidate at a rate: the simulator in real use, a formula in the tests that check the
/// search against a hand-computed optimum.
pub trait Measure: Sync {
    /// What clients see when `replicas` replicas of `candidate` (built as `profile`) share
    /// `rate` requests per second.
    fn measure(
        &self,
        candidate: &Candidate,
        profile: &Profile,
        rate: f64,
        replicas: u32,
    ) -> Result<Latencies, PlanError>;
}

/// The virtual-time simulator as a [`Measure`]: at least `requests` requests per replica of
/// `traffic` and at least `probe_seconds` of arrivals (at most `max_requests` in all), on a fleet
/// behind `router`, started warm. The duration matters: a short run at any rate is one burst that
/// a big batch absorbs, while an overloaded server's queue grows with time until the SLO breaks.
#[derive(Debug, Clone)]
pub struct SimMeasure {
    pub traffic: Traffic,
    pub requests: usize,
    pub probe_seconds: f64,
    pub max_requests: usize,
    pub seed: u64,
    pub router: Policy,
}

impl Measure for SimMeasure {
    fn measure(
        &self,
        _candidate: &Candidate,
        profile: &Profile,
        rate: f64,
        replicas: u32,
    ) -> Result<Latencies, PlanError> {
        let by_time = (rate * self.probe_seconds).ceil();
        let by_time = if by_time.is_finite() {
            by_time as usize
        } else {
            usize::MAX
        };
        let n = (self.requests * replicas as usize)
            .max(by_time)
            .min(self.max_requests.max(self.requests));
        // A workload file's classes with SLOs of their own are measured apart.
        let (plan, classes) = match &self.traffic.shape {
            Shape::File(w) => {
                let w = scaled(w, rate, n);
                let wp = w.plan(self.seed);
                (wp.plan.clone(), Some((w, wp)))
            }
            _ => (self.traffic.plan_at(rate, n, self.seed)?, None),
        };
        let profiles = vec![profile.clone(); replicas.max(1) as usize];
        let config = RouterConfig {
            policy: self.router,
            ..RouterConfig::default()
        };
        let mut fleet = Fleet::new(&profiles, config, self.seed)?;
        // A fleet in service is warm: the one-off start-up cost is not the steady state planned for.
        fleet.skip_warmup();
        let run = fleet.run_level(&plan).level;
        let mut latencies = Latencies::of(&run);
        if let Some((w, wp)) = classes {
            for (k, class) in w.classes.iter().enumerate() {
                if class.slo.is_empty() {
                    continue;
                }
                let records = run
                    .records
                    .iter()
                    .filter(|r| wp.class_of(r) == k)
                    .cloned()
                    .collect();
                latencies.classes.push(ClassLatencies {
                    class: class.name.clone(),
                    slo: class.slo.iter().map(|t| (t.key(), t.target)).collect(),
                    latencies: Latencies::of(&LevelRun {
                        records,
                        wall: run.wall,
                    }),
                });
            }
        }
        Ok(latencies)
    }
}

/// How the bisection runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bisection {
    /// The first rate tried, requests per second.
    pub start_rate: f64,
    /// Stop when the failing rate is within this factor of the passing one (1.02: 2 %).
    pub precision: f64,
    /// Runs at most, doubling and halving included.
    pub max_runs: u32,
    /// Rates below this count as "the SLO cannot be met at any rate".
    pub min_rate: f64,
    /// Rates above this are not tried (a capacity found there is a lower bound).
    pub max_rate: f64,
}

impl Default for Bisection {
    fn default() -> Self {
        Bisection {
            start_rate: 1.0,
            precision: 1.02,
            max_runs: 24,
            min_rate: 1e-3,
            max_rate: 1e4,
        }
    }
}

/// What the bisection found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The highest rate seen to meet the SLOs on one replica, requests per second (0: none did).
    pub rate: f64,
    /// The lowest rate seen to break them (infinite when none did within the run budget).
    pub broken_at: Option<f64>,
    /// Simulated runs spent.
    pub runs: u32,
    /// The latencies at `rate`.
    pub at_capacity: Option<Latencies>,
}

/// Bisect the rate one replica of `candidate` sustains within `slo`: double from the start rate
/// until a run breaks the SLO (or halve until one meets it), then bisect geometrically between the
/// last passing and the first failing rate until they are within `precision` of each other.
pub fn bisect(
    measure: &dyn Measure,
    candidate: &Candidate,
    profile: &Profile,
    slo: &[SloTerm],
    how: Bisection,
) -> Result<Capacity, PlanError> {
    let mut runs = 0;
    let run = |rate: f64, runs: &mut u32| -> Result<Latencies, PlanError> {
        *runs += 1;
        measure.measure(candidate, profile, rate, 1)
    };
    let mut lo: Option<(f64, Latencies)> = None;
    let mut hi: Option<f64> = None;
    let mut rate = how.start_rate;
    // Bracket.
    while lo.is_none() || hi.is_none() {
        if runs >= how.max_runs {
            break;
        }
        let l = run(rate, &mut runs)?;
        if l.meets(slo) {
            lo = Some((rate, l));
            if hi.is_none() {
                rate *= 2.0;
                if rate > how.max_rate {
                    break;
                }
            }
        } else {
            hi = Some(rate);
            if lo.is_none() {
                rate /= 2.0;
                if rate < how.min_rate {
                    break;
                }
            }
        }
    }
    // Bisect (geometric midpoint: capacities span orders of magnitude across GPUs).
    while let (Some((good, _)), Some(bad)) = (&lo, hi) {
        if bad / *good <= how.precision || runs >= how.max_runs {
            break;
        }
        let mid = (*good * bad).sqrt();
        let l = run(mid, &mut runs)?;
        if l.meets(slo) {
            lo = Some((mid, l));
        } else {
            hi = Some(mid);
        }
    }
    Ok(match lo {
        Some((rate, l)) => Capacity {
            rate,
            broken_at: hi,
            runs,
            at_capacity: Some(l),
        },
        None => Capacity {
            rate: 0.0,
            broken_at: hi,
            runs,
            at_capacity: None,
        },
    })
}

/// Replicas needed: ⌈headroom × peak rate ÷ capacity⌉ (at least one); `None` when a replica has
/// no capacity within the SLOs.
pub fn replicas_for(peak_rate: f64, headroom: f64, capacity: f64) -> Option<u32> {
    if capacity <= 0.0 {
        return None;
    }
    let need = (headroom * peak_rate / capacity).ceil();
    (need.is_finite() && need <= f64::from(u32::MAX)).then(|| (need as u32).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_round_up_the_headroom_share() {
        assert_eq!(replicas_for(10.0, 1.2, 2.2), Some(6)); // 12 / 2.2 = 5.45
        assert_eq!(replicas_for(10.0, 1.2, 4.0), Some(3));
        assert_eq!(replicas_for(0.1, 1.2, 100.0), Some(1));
        assert_eq!(replicas_for(10.0, 1.2, 0.0), None);
    }
}
