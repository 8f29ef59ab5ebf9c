//! Putting a level's load on a server in real time: closed-loop workers and open-loop arrivals, both
//! sending through the one measured [`exchange`](crate::http::ChatClient::exchange); and the
//! open-loop adapter that turns any drill into Poisson or gamma arrivals at a given rate.
//!
//! Closed loop (drills.md): each of a group's `workers` takes the group's next request as soon as
//! its previous one ends. Open loop: a dispatcher sends each arrival at its time, whatever is in
//! flight, unless requests in flight are capped, in which case an arrival waits for a slot (as
//! vLLM's `--max-concurrency`). Every record keeps the intended send time (`scheduled`), when the
//! client was free to send (`ready`) and when it did (`sent`), so client-side queueing is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Gamma};
use servesim_sim::{Arrival, LevelPlan, LevelRun, Origin, RequestRecord, RequestSpec};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::drills::DrillKind;
use crate::http::client::{ChatClient, Clock, Prepared};
use crate::suite::{Target, TargetError};

/// What every request task of a level shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub client: Arc<ChatClient>,
    pub clock: Clock,
    pub keep_times: bool,
    pub stop: watch::Receiver<bool>,
    pub done: mpsc::UnboundedSender<RequestRecord>,
}

/// A level's requests, serialized once before the level starts.
pub(crate) struct PreparedPlan {
    pub groups: Vec<Vec<Prepared>>,
    pub arrivals: Vec<Prepared>,
}

impl Shared {
    /// Send one request and report its record; its end time, or `None` when the run was stopped
    /// meanwhile (the unfinished request is dropped, not recorded).
    async fn run_one(
        &self,
        req: &Prepared,
        origin: Origin,
        index: usize,
        scheduled: f64,
        ready: f64,
    ) -> Option<f64> {
        let mut record = RequestRecord::new(origin, index, scheduled, ready);
        record.ready = Some(ready);
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            () = self.client.exchange(req, &self.clock, &mut record, self.keep_times) => {
                let end = record.end;
                let _ = self.done.send(record);
                Some(end)
            }
        }
    }
}

/// Run `plan` to completion (or until stopped); `on_record` sees each record as it finishes.
pub(crate) async fn run_plan(
    shared: Shared,
    plan: &LevelPlan,
    cap: Option<usize>,
    prepared: PreparedPlan,
    rx: &mut mpsc::UnboundedReceiver<RequestRecord>,
    on_record: &mut dyn FnMut(&RequestRecord),
) -> LevelRun {
    let mut tasks = tokio::task::JoinSet::new();
    let foreground = Foreground::new(plan.foreground_requests());
    for (g, (group, reqs)) in plan.groups.iter().zip(prepared.groups).enumerate() {
        let reqs = Arc::new(reqs);
        let next = Arc::new(AtomicUsize::new(0));
        let start = shared.clock.at(group.start);
        let group_start = group.start.max(0.0);
        // Background load cycles through its list until the foreground is done (see ClientGroup).
        let cycles = group.background && !foreground.done();
        for _ in 0..group.workers.max(1) {
            let (shared, reqs, next) = (shared.clone(), Arc::clone(&reqs), Arc::clone(&next));
            let foreground = foreground.clone();
            tasks.spawn(async move {
                if start > std::time::Instant::now() {
                    tokio::time::sleep_until(start.into()).await;
                }
                // The first request is due at the group's start, each next one when the
                // previous one ended: any delay after that is the client's own.
                let mut due = group_start;
                loop {
                    if cycles && foreground.done() {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let i = if cycles { n % reqs.len().max(1) } else { n };
                    let Some(req) = reqs.get(i) else { break };
                    let end = shared.run_one(req, Origin::Group(g), i, due, due).await;
                    if !cycles {
                        foreground.finished_one();
                    }
                    match end {
                        Some(end) => due = end,
                        None => break,
                    }
                }
            });
        }
    }
    if !plan.arrivals.is_empty() {
        let shared = shared.clone();
        let times: Vec<f64> = plan.arrivals.iter().map(|a| a.at.max(0.0)).collect();
        tasks.spawn(dispatch(
            shared,
            times,
            prepared.arrivals,
            cap,
            foreground.clone(),
        ));
    }
    drop(shared);
    let mut records = Vec::new();
    // Every task holds a sender: the channel closes when the last one is done.
    while let Some(record) = rx.recv().await {
        on_record(&record);
        records.push(record);
    }
    while tasks.join_next().await.is_some() {}
    records.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    let wall = records.iter().map(|r| r.end).fold(0.0, f64::max);
    LevelRun { records, wall }
}

/// How many foreground requests have yet to finish; background groups stop sending at zero.
#[derive(Clone)]
struct Foreground(Arc<AtomicUsize>);

impl Foreground {
    fn new(requests: usize) -> Foreground {
        Foreground(Arc::new(AtomicUsize::new(requests)))
    }

    fn done(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn finished_one(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// The open-loop dispatcher: each arrival at its time, in its own task.
async fn dispatch(
    shared: Shared,
    times: Vec<f64>,
    reqs: Vec<Prepared>,
    cap: Option<usize>,
    foreground: Foreground,
) {
    let slots = cap.map(|c| Arc::new(Semaphore::new(c.max(1))));
    let mut stop = shared.stop.clone();
    for (i, (at, req)) in times.into_iter().zip(reqs).enumerate() {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(shared.clock.at(at).into()) => {}
        }
        // The client is free to send at the arrival time itself, or, capped and with every slot
        // taken, once one frees up: any delay after that until sending is the client's own.
        let (permit, ready) = match &slots {
            None => (None, at),
            Some(s) => match Arc::clone(s).try_acquire_owned() {
                Ok(p) => (Some(p), at),
                Err(_) => tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    p = Arc::clone(s).acquire_owned() => (p.ok(), shared.clock.now().max(at)),
                },
            },
        };
        let (shared, foreground) = (shared.clone(), foreground.clone());
        tokio::spawn(async move {
            shared.run_one(&req, Origin::Arrival, i, at, ready).await;
            foreground.finished_one();
            drop(permit);
        });
    }
}

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

/// A target that can run open-loop arrivals with at most `max_in_flight` of them in flight.
pub trait CappedTarget: Target {
    /// [`Target::run_level`], arrivals capped (closed-loop groups are unaffected).
    fn run_level_capped(
        &mut self,
        plan: &LevelPlan,
        max_in_flight: Option<usize>,
    ) -> Result<LevelRun, TargetError>;

    /// The handle that stops this target's run, for targets that can be stopped midway.
    fn stop_handle(&self) -> Option<crate::http::StopHandle> {
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

/// Requests of a plan in order: each group's, then the arrivals.
pub(crate) fn specs(plan: &LevelPlan) -> impl Iterator<Item = &RequestSpec> {
    plan.groups
        .iter()
        .flat_map(|g| g.requests.iter())
        .chain(plan.arrivals.iter().map(|a| &a.request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::{DrillKind, DrillParams};

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
