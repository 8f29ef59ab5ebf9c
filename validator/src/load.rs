//! Shaping a level's load for any target: the open-loop adapter that turns any drill into Poisson
//! or gamma arrivals at a given rate, the [`CappedTarget`] that runs them with requests in flight
//! capped, and the [`StopHandle`] that stops a run midway. Sending them to a server in real time is
//! [`crate::http`]'s.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Gamma};
use servesim_sim::{Arrival, LevelPlan, LevelRun, Origin};
use tokio::sync::watch;

use crate::drills::DrillKind;
use crate::suite::{Target, TargetError};

/// Open-loop load at `rate` requests per second: gaps drawn from a gamma distribution of shape
/// `burstiness` (1 = Poisson; below 1 burstier, above 1 more regular), mean `1 / rate`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpenLoop {
    /// Requests per second; infinite sends everything at once.
    pub rate: f64,
    pub burstiness: f64,
    /// Cap requests in flight at the level's concurrency (its closed-loop worker count).
    pub cap_at_concurrency: bool,
    pub seed: u64,
}

/// Arrival times (seconds from 0, the first at 0) of `n` requests.
pub fn arrival_times(
    n: usize,
    rate: f64,
    burstiness: f64,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<f64> {
    let mut t = 0.0;
    let gamma = (rate.is_finite() && rate > 0.0)
        .then(|| Gamma::new(burstiness, 1.0 / (rate * burstiness)).ok())
        .flatten();
    (0..n)
        .map(|i| {
            if i > 0
                && let Some(g) = &gamma
            {
                t += g.sample(rng);
            }
            t
        })
        .collect()
}

/// Stops a running bench: requests in flight are abandoned (not recorded), no new ones are sent,
/// the level under way returns what finished, and later levels are refused with [`INTERRUPTED`](crate::http::INTERRUPTED).
#[derive(Debug, Clone)]
pub struct StopHandle(pub(crate) Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Stop the run.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether the run has been stopped.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// A target that can run open-loop arrivals with at most `max_in_flight` of them in flight.
pub trait CappedTarget: Target {
    /// [`Target::run_level`], arrivals capped (closed-loop groups are unaffected).
    fn run_level_capped(
        &mut self,
        plan: &LevelPlan,
        max_in_flight: Option<usize>,
    ) -> Result<LevelRun, TargetError>;

    /// The handle that stops this target's run, for targets that can be stopped midway.
    fn stop_handle(&self) -> Option<StopHandle> {
        None
    }
}

/// A target whose levels are run open-loop: every closed-loop group's requests become arrivals at
/// the configured rate (from the group's start), and their records are mapped back to the group,
/// so rows are computed exactly as for the closed-loop drill.
pub struct OpenLoopTarget<'a> {
    inner: &'a mut dyn CappedTarget,
    load: OpenLoop,
    rng: Xoshiro256PlusPlus,
}

impl std::fmt::Debug for OpenLoopTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenLoopTarget")
            .field("load", &self.load)
            .finish_non_exhaustive()
    }
}

impl<'a> OpenLoopTarget<'a> {
    /// Wrap `inner`.
    pub fn new(inner: &'a mut dyn CappedTarget, load: OpenLoop) -> OpenLoopTarget<'a> {
        let rng = Xoshiro256PlusPlus::seed_from_u64(load.seed);
        OpenLoopTarget { inner, load, rng }
    }

    /// `plan` as open-loop arrivals, for each arrival the group and index it came from, and the
    /// cap on requests in flight.
    pub fn convert(
        &mut self,
        plan: &LevelPlan,
    ) -> (LevelPlan, Vec<(Origin, usize)>, Option<usize>) {
        let mut arrivals: Vec<(Arrival, (Origin, usize))> = Vec::new();
        for (g, group) in plan.groups.iter().enumerate() {
            let times = arrival_times(
                group.requests.len(),
                self.load.rate,
                self.load.burstiness,
                &mut self.rng,
            );
            for (i, (t, spec)) in times.into_iter().zip(&group.requests).enumerate() {
                arrivals.push((
                    Arrival {
                        at: group.start + t,
                        request: spec.clone(),
                    },
                    (Origin::Group(g), i),
                ));
            }
        }
        for (i, a) in plan.arrivals.iter().enumerate() {
            arrivals.push((a.clone(), (Origin::Arrival, i)));
        }
        arrivals.sort_by(|a, b| a.0.at.total_cmp(&b.0.at));
        let (arrivals, origins): (Vec<Arrival>, Vec<(Origin, usize)>) =
            arrivals.into_iter().unzip();
        let cap = self
            .load
            .cap_at_concurrency
            .then(|| plan.groups.iter().map(|g| g.workers.max(1)).sum::<usize>())
            .filter(|&c| c > 0);
        (
            LevelPlan {
                groups: Vec::new(),
                arrivals,
                record_event_times: plan.record_event_times,
            },
            origins,
            cap,
        )
    }
}

impl Target for OpenLoopTarget<'_> {
    /// Arrival times restart from the seed at each drill, as the simulator's answer lengths do, so
    /// a drill's arrivals are the same alone or in a suite.
    fn begin_drill(&mut self, drill: DrillKind) -> Result<(), TargetError> {
        self.rng = Xoshiro256PlusPlus::seed_from_u64(self.load.seed);
        self.inner.begin_drill(drill)
    }

    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        let (open, origins, cap) = self.convert(plan);
        let mut run = self.inner.run_level_capped(&open, cap)?;
        for r in &mut run.records {
            if r.origin == Origin::Arrival
                && let Some(&(origin, index)) = origins.get(r.index)
            {
                r.origin = origin;
                r.index = index;
            }
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::{DrillKind, DrillParams};
    use servesim_sim::RequestRecord;

    #[test]
    fn poisson_arrivals_have_the_asked_rate_and_are_reproducible() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let t = arrival_times(20_000, 50.0, 1.0, &mut rng);
        assert_eq!(t[0], 0.0);
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
        let rate = (t.len() - 1) as f64 / t[t.len() - 1];
        assert!((rate - 50.0).abs() < 2.0, "rate {rate}");
        let mut again = Xoshiro256PlusPlus::seed_from_u64(7);
        assert_eq!(arrival_times(20_000, 50.0, 1.0, &mut again), t);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        assert!(
            arrival_times(5, f64::INFINITY, 1.0, &mut rng)
                .iter()
                .all(|&x| x == 0.0)
        );
    }

    struct Echo;
    impl Target for Echo {
        fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
            self.run_level_capped(plan, None)
        }
    }
    impl CappedTarget for Echo {
        fn run_level_capped(
            &mut self,
            plan: &LevelPlan,
            _: Option<usize>,
        ) -> Result<LevelRun, TargetError> {
            assert!(plan.groups.is_empty());
            let records = plan
                .arrivals
                .iter()
                .enumerate()
                .map(|(i, a)| RequestRecord::new(Origin::Arrival, i, a.at, a.at))
                .collect();
            Ok(LevelRun { records, wall: 0.0 })
        }
    }

    #[test]
    fn each_drill_draws_its_arrivals_afresh_from_the_seed() {
        let plan = &DrillKind::Baseline.levels(&DrillParams::default())[0].plan;
        let mut echo = Echo;
        let load = OpenLoop {
            rate: 4.0,
            burstiness: 1.0,
            cap_at_concurrency: false,
            seed: 1,
        };
        let mut t = OpenLoopTarget::new(&mut echo, load);
        let times = |t: &mut OpenLoopTarget| -> Vec<f64> {
            t.convert(plan).0.arrivals.iter().map(|a| a.at).collect()
        };
        let first = times(&mut t);
        assert_ne!(
            times(&mut t),
            first,
            "levels of one drill go on down the stream"
        );
        t.begin_drill(DrillKind::Saturation)
            .expect("echo starts drills");
        assert_eq!(
            times(&mut t),
            first,
            "a new drill starts from the seed again"
        );
    }

    #[test]
    fn open_loop_maps_records_back_to_their_groups() {
        let levels = DrillKind::Batching.levels(&DrillParams::default());
        let mut echo = Echo;
        let mut t = OpenLoopTarget::new(
            &mut echo,
            OpenLoop {
                rate: 4.0,
                burstiness: 1.0,
                cap_at_concurrency: true,
                seed: 1,
            },
        );
        let (open, _, cap) = t.convert(&levels[1].plan);
        assert_eq!(open.arrivals.len(), 8 + 12);
        assert_eq!(cap, Some(9));
        let run = t.run_level(&levels[1].plan).expect("echo runs");
        let measured = run
            .records
            .iter()
            .filter(|r| r.origin == Origin::Group(1))
            .count();
        assert_eq!(measured, 12);
        assert!(
            run.records
                .iter()
                .filter(|r| r.origin == Origin::Group(1))
                .all(|r| r.scheduled >= 0.5)
        );
    }
}
