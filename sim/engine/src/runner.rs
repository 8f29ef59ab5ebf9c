//! The virtual-time driver: a discrete-event loop that runs clients, network latencies and the engine
//! on a simulated clock, so a drill finishes as fast as the CPU can compute it and its results do not
//! depend on the machine. Events at the same instant run in the order they were scheduled.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use servesim_models::{Profile, ProfileError};

use crate::engine_core::{Engine, StepOutcome};
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
        let foreground_total = plan.foreground_requests();
        let mut foreground_left = foreground_total;

        while let Some(Scheduled { at: now, event, .. }) = queue.pop() {
            self.now = now;
            match event {
                Event::GroupStart(g) => {
                    for _ in 0..plan.groups[g].workers.max(1) {
                        push(&mut queue, now, Event::Send(g));
                    }
                }
                Event::Send(g) => {
                    let group = &plan.groups[g];
                    let n = next_in_group[g];
                    let i = if group.background && foreground_total > 0 {
                        // Background load cycles until the foreground is done.
                        if foreground_left == 0 || group.requests.is_empty() {
                            continue;
                        }
                        n % group.requests.len()
                    } else if n < group.requests.len() {
                        n
                    } else {
                        continue;
                    };
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
                    let prompt_tokens = req.prompt_tokens;
                    match self.engine.add_request(req, now) {
                        Ok(id) => {
                            rec.prompt_tokens = Some(prompt_tokens);
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
                    let background = record_group[r].is_some_and(|g| plan.groups[g].background);
                    if !background {
                        foreground_left = foreground_left.saturating_sub(1);
                    }
                    if let Some(g) = record_group[r] {
                        push(&mut queue, now + plan.groups[g].think_s, Event::Send(g));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::RequestSpec;
    use crate::workload::ClientGroup;

    /// Two background workers of long answers under six short requests sent one at a time.
    fn loaded_plan() -> LevelPlan {
        let mut long = RequestSpec::chat("Tell me a long story.", 64);
        long.ignore_eos = true;
        LevelPlan {
            groups: vec![
                ClientGroup::background(0.0, 2, vec![long; 2]),
                ClientGroup::new(0.5, 1, vec![RequestSpec::chat("Hi.", 16); 6]),
            ],
            ..LevelPlan::default()
        }
    }

    fn run(profile: &Profile, plan: &LevelPlan) -> LevelRun {
        let mut server = VirtualServer::new(profile, 7).expect("server");
        server.skip_warmup();
        server.run_level(plan)
    }

    #[test]
    fn background_load_lasts_exactly_as_long_as_the_foreground() {
        let mut profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
        for serial in [false, true] {
            if serial {
                profile.engine.max_num_seqs = 1;
            }
            let run = run(&profile, &loaded_plan());
            let (bg, fg): (Vec<_>, Vec<_>) = run
                .records
                .iter()
                .partition(|r| r.origin == Origin::Group(0));
            assert_eq!(fg.len(), 6, "serial {serial}");
            assert!(run.records.iter().all(RequestRecord::ok));
            // It cycled past its list: six short requests outlast two long ones.
            assert!(
                bg.len() > 2,
                "serial {serial}: {} background requests",
                bg.len()
            );
            // Every short request met a long one in flight.
            for f in &fg {
                assert!(
                    bg.iter().any(|b| b.sent <= f.sent && b.end > f.sent),
                    "serial {serial}: short request sent at {} ran alone",
                    f.sent
                );
            }
            // None was sent once the foreground had ended.
            let fg_end = fg.iter().map(|r| r.end).fold(0.0, f64::max);
            assert!(bg.iter().all(|b| b.sent <= fg_end), "serial {serial}");
            if serial {
                // One sequence at a time: a short request's first token comes after every long one
                // sent before it has ended.
                for f in &fg {
                    let first = f.first_event.expect("first event");
                    for b in bg.iter().filter(|b| b.sent < f.sent) {
                        assert!(
                            first >= b.end,
                            "short {} first {first} < long end {}",
                            f.sent,
                            b.end
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn background_alone_runs_its_list_once() {
        let profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
        let plan = LevelPlan {
            groups: vec![ClientGroup::background(
                0.0,
                2,
                vec![RequestSpec::chat("Hi.", 16); 3],
            )],
            ..LevelPlan::default()
        };
        assert_eq!(run(&profile, &plan).records.len(), 3);
    }
}
