//! The virtual-time driver: a discrete-event loop that runs clients, network latencies and the engine
//! on a simulated clock, so a drill finishes as fast as the CPU can compute it and its results do not
//! depend on the machine. Events at the same instant run in the order they were scheduled.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use servesim_models::{Profile, ProfileError};

use crate::engine::{Engine, StepOutcome};
use crate::frontend::{Frontend, Prompt};
use crate::request::RequestId;
use crate::workload::{ErrorKind, LevelPlan, LevelRun, Origin, RequestError, RequestRecord};

#[derive(Debug, Clone, Copy)]
enum Event {
    GroupStart(usize),
    Send(usize),
    OpenSend(usize),
    Arrive(usize),
    Wake,
    StepEnd,
    Done(usize),
}

struct Scheduled {
    at: f64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest (then first-scheduled) event must pop first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.total_cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

/// A simulated server (frontend + engine) and its clock, kept across levels like a real server.
#[derive(Debug)]
pub struct VirtualServer {
    engine: Engine,
    frontend: Frontend,
    input_latency: f64,
    output_latency: f64,
    now: f64,
    step: StepOutcome,
}

/// Per-request bookkeeping while a level runs.
struct InFlight {
    record: usize,
    chat: bool,
}

impl VirtualServer {
    /// A freshly started server for `profile`; `seed` drives answer lengths.
    pub fn new(profile: &Profile, seed: u64) -> Result<VirtualServer, ProfileError> {
        Ok(VirtualServer {
            engine: Engine::new(profile)?,
            frontend: Frontend::new(profile, seed),
            input_latency: profile.engine.input_latency_s,
            output_latency: profile.engine.output_latency_s,
            now: 0.0,
            step: StepOutcome::default(),
        })
    }

    /// The simulated clock (seconds since start-up).
    pub fn now(&self) -> f64 {
        self.now
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Treat the server as already warm: the profile's one-off warm-up is not paid.
    pub fn skip_warmup(&mut self) {
        self.engine.set_cold(false);
    }

    /// Run one level to completion, starting now; returns every request's record.
    pub fn run_level(&mut self, plan: &LevelPlan) -> LevelRun {
        let t0 = self.now;
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |queue: &mut BinaryHeap<Scheduled>, at: f64, event: Event| {
            queue.push(Scheduled { at, seq, event });
            seq += 1;
        };
        for (g, group) in plan.groups.iter().enumerate() {
            push(&mut queue, t0 + group.start.max(0.0), Event::GroupStart(g));
        }
        for (a, arrival) in plan.arrivals.iter().enumerate() {
            push(&mut queue, t0 + arrival.at.max(0.0), Event::OpenSend(a));
        }

        let mut records: Vec<RequestRecord> = Vec::new();
        let mut record_group: Vec<Option<usize>> = Vec::new();
        let mut next_in_group = vec![0usize; plan.groups.len()];
        let mut in_flight: HashMap<RequestId, InFlight> = HashMap::new();
        let mut stepping = false;
        let mut wake_pending = false;
        let mut last_end = t0;

        while let Some(Scheduled { at: now, event, .. }) = queue.pop() {
            self.now = now;
            match event {
                Event::GroupStart(g) => {
                    for _ in 0..plan.groups[g].workers.max(1) {
                        push(&mut queue, now, Event::Send(g));
                    }
                }
                Event::Send(g) => {
                    let i = next_in_group[g];
                    if i >= plan.groups[g].requests.len() {
                        continue;
                    }
                    next_in_group[g] += 1;
                    records.push(RequestRecord::new(Origin::Group(g), i, now - t0, now - t0));
                    record_group.push(Some(g));
                    let at = self.frontend.pace(now + self.input_latency);
                    push(&mut queue, at, Event::Arrive(records.len() - 1));
                }
                Event::OpenSend(a) => {
                    let at = plan.arrivals[a].at.max(0.0);
                    records.push(RequestRecord::new(Origin::Arrival, a, at, now - t0));
                    record_group.push(None);
                    let at = self.frontend.pace(now + self.input_latency);
                    push(&mut queue, at, Event::Arrive(records.len() - 1));
                }
                Event::Arrive(r) => {
                    let rec = &mut records[r];
                    let spec = match rec.origin {
                        Origin::Group(g) => &plan.groups[g].requests[rec.index],
                        Origin::Arrival => &plan.arrivals[rec.index].request,
                    };
                    let req = self.frontend.prepare(spec);
                    match self.engine.add_request(req, now) {
                        Ok(id) => {
                            rec.prompt_tokens = Some(req.prompt_tokens);
                            in_flight.insert(
                                id,
                                InFlight {
                                    record: r,
                                    chat: matches!(spec.prompt, Prompt::Chat(_)),
                                },
                            );
                            if !stepping && !wake_pending {
                                wake_pending = true;
                                push(&mut queue, now, Event::Wake);
                            }
                        }
                        Err(e) => {
                            rec.error = Some(RequestError {
                                kind: ErrorKind::Status { status: 400 },
                                message: e.to_string(),
                            });
                            push(&mut queue, now + self.output_latency, Event::Done(r));
                        }
                    }
                }
                Event::Wake => {
                    wake_pending = false;
                    if !stepping && self.engine.step_into(now, &mut self.step) {
                        stepping = true;
                        push(&mut queue, self.step.end(), Event::StepEnd);
                    }
                }
                Event::StepEnd => {
                    stepping = false;
                    let seen = now + self.output_latency;
                    for em in &self.step.emissions {
                        let Some(f) = in_flight.get(&em.id) else {
                            continue;
                        };
                        let rec = &mut records[f.record];
                        rec.first_event.get_or_insert(seen - t0);
                        rec.events += 1;
                        if plan.record_event_times {
                            rec.event_times.push(seen - t0);
                        }
                        if let Some(fin) = em.finished {
                            // vLLM's chat stream ends with a separate finish event at the same moment.
                            if f.chat {
                                rec.events += 1;
                                if plan.record_event_times {
                                    rec.event_times.push(seen - t0);
                                }
                            }
                            rec.completion_tokens = Some(fin.generated);
                            rec.end = seen - t0;
                            let r = f.record;
                            in_flight.remove(&em.id);
                            push(&mut queue, seen, Event::Done(r));
                        }
                    }
                    if self.engine.step_into(now, &mut self.step) {
                        stepping = true;
                        push(&mut queue, self.step.end(), Event::StepEnd);
                    }
                }
                Event::Done(r) => {
                    if records[r].error.is_some() {
                        records[r].end = now - t0;
                    }
                    last_end = last_end.max(now);
                    if let Some(g) = record_group[r] {
                        push(&mut queue, now, Event::Send(g));
                    }
                }
            }
        }
        LevelRun {
            records,
            wall: last_end - t0,
        }
    }
}
