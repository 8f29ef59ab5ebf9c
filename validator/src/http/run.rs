//! Putting a level's load on a server in real time: closed-loop workers and open-loop arrivals, both
//! sending through the one measured [`exchange`](super::ChatClient::exchange).
//!
//! Closed loop (drills.md): each of a group's `workers` takes the group's next request as soon as
//! its previous one ends (or, with the group's `think_s`, that many seconds later, as the
//! virtual-time runner does). Open loop: a dispatcher sends each arrival at its time, whatever is in
//! flight, unless requests in flight are capped, in which case an arrival waits for a slot (as
//! vLLM's `--max-concurrency`). Every record keeps the intended send time (`scheduled`), when the
//! client was free to send (`ready`) and when it did (`sent`), so client-side queueing is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use servesim_sim::{LevelPlan, LevelRun, Origin, RequestRecord, RequestSpec};
use tokio::sync::{Semaphore, mpsc, watch};

use super::client::{ChatClient, LevelClock, Prepared};

/// What every request task of a level shares to send its request and report its record: the
/// client, the level's clock, the stop signal and the channel of finished records.
#[derive(Clone)]
pub(crate) struct LevelSender {
    pub client: Arc<ChatClient>,
    pub clock: LevelClock,
    pub keep_times: bool,
    pub stop: watch::Receiver<bool>,
    pub done: mpsc::UnboundedSender<RequestRecord>,
}

/// A level's requests, serialized once before the level starts.
pub(crate) struct PreparedPlan {
    pub groups: Vec<Vec<Prepared>>,
    pub arrivals: Vec<Prepared>,
}

impl LevelSender {
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
    shared: LevelSender,
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
        // As in the virtual-time runner: a worker waits this long after each answer (or error)
        // before it takes the group's next request.
        let think = if group.think_s.is_finite() {
            group.think_s.max(0.0)
        } else {
            0.0
        };
        for _ in 0..group.workers.max(1) {
            let (shared, reqs, next) = (shared.clone(), Arc::clone(&reqs), Arc::clone(&next));
            let foreground = foreground.clone();
            tasks.spawn(async move {
                if start > std::time::Instant::now() {
                    tokio::time::sleep_until(start.into()).await;
                }
                // The first request is due at the group's start, each next one when the
                // previous one ended (plus the think time): any delay after that is the client's
                // own.
                let mut due = group_start;
                let mut stop = shared.stop.clone();
                let mut first = true;
                loop {
                    if think > 0.0 && !std::mem::take(&mut first) {
                        // Nothing left to send: no point thinking about it.
                        if !cycles && next.load(Ordering::Relaxed) >= reqs.len() {
                            break;
                        }
                        due += think;
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|s| *s) => break,
                            () = tokio::time::sleep_until(shared.clock.at(due).into()) => {}
                        }
                    }
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
    shared: LevelSender,
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

/// Requests of a plan in order: each group's, then the arrivals.
pub(crate) fn specs(plan: &LevelPlan) -> impl Iterator<Item = &RequestSpec> {
    plan.groups
        .iter()
        .flat_map(|g| g.requests.iter())
        .chain(plan.arrivals.iter().map(|a| &a.request))
}
