//! The virtual-time driver: a discrete-event loop that runs clients, a router, network latencies and
//! any number of replicas (each a frontend and an engine, as one vLLM server) on one simulated
//! clock, so a drill or a fleet's day finishes as fast as the CPU can compute it and its results do
//! not depend on the machine. Events at the same instant run in the order they were scheduled. A
//! single server is a fleet of one ([`crate::runner::VirtualServer`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use servesim_models::{Profile, ProfileError};

use crate::engine_core::{Engine, StepOutcome};
use crate::frontend::{Frontend, Prompt, RequestSpec};
use crate::kv_cache::BlockHash;
use crate::request::RequestId;
use crate::router::{Router, RouterConfig, Scraped};
use crate::workload::{ErrorKind, LevelPlan, LevelRun, Origin, RequestError, RequestRecord};

#[derive(Debug, Clone, Copy)]
enum Event {
    GroupStart(usize),
    Send(usize),
    OpenSend(usize),
    /// A gated arrival whose predecessor has ended: it still needs a concurrency slot.
    OpenReady(usize),
    /// A gated arrival that holds a concurrency slot: it is sent now.
    OpenGo(usize),
    Arrive(usize),
    Wake(u32),
    StepEnd(u32),
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

/// The event queue and its tie-breaking sequence.
struct Agenda {
    queue: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Agenda {
    fn push(&mut self, at: f64, event: Event) {
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }
}

/// One simulated vLLM server in a fleet: its API server (frontend) and its engine.
#[derive(Debug)]
pub struct Replica {
    profile: String,
    engine: Engine,
    frontend: Frontend,
    input_latency: f64,
    output_latency: f64,
    step: StepOutcome,
    stepping: bool,
    wake_pending: bool,
}

impl Replica {
    fn new(profile: &Profile, seed: u64) -> Result<Replica, ProfileError> {
        Ok(Replica {
            profile: profile.name.clone(),
            engine: Engine::new(profile)?,
            frontend: Frontend::new(profile, seed),
            input_latency: profile.engine.input_latency_s,
            output_latency: profile.engine.output_latency_s,
            step: StepOutcome::default(),
            stepping: false,
            wake_pending: false,
        })
    }

    /// The name of the profile this replica runs.
    pub fn profile(&self) -> &str {
        &self.profile
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn scraped(&self) -> Scraped {
        let s = self.engine.stats();
        Scraped {
            running: s.running,
            waiting: s.waiting,
            kv_usage: s.kv_usage,
        }
    }
}

/// Hashes request ids (small consecutive integers) by one multiplication: the map is consulted
/// once per generated token, where SipHash showed in profiles.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing spreads consecutive ids over the high bits hashbrown's tags use.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<RequestId, V, BuildHasherDefault<IdHasher>>;

/// Per-request bookkeeping while a level runs.
struct InFlight {
    record: usize,
    chat: bool,
}

/// What holds an open-loop arrival back past its send time, as a real client does (inference-perf's
/// workers): a chat user's next turn is not sent before the answer to the previous one arrives,
/// and a client has a limit on requests in flight. The default holds nothing back.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// `after[a] = Some(b)`: arrival `a` waits until arrival `b` has ended (well or not). Arrivals
    /// past the end of the list wait for none.
    pub after: Vec<Option<usize>>,
    /// At most this many arrivals in flight at once; one more waits for a slot, first come first
    /// served. `None`: no limit.
    pub max_in_flight: Option<usize>,
}

impl Gates {
    fn holds_anything(&self) -> bool {
        self.max_in_flight.is_some() || self.after.iter().any(Option::is_some)
    }
}

/// The gates' state while a level runs.
#[derive(Default)]
struct GateState {
    on: bool,
    done: Vec<bool>,
    /// Arrivals waiting for each arrival to end.
    parked: HashMap<usize, Vec<usize>>,
    /// Arrivals waiting for a slot, in the order they became ready.
    queue: std::collections::VecDeque<usize>,
    flying: usize,
}

/// A level's records, and which replica served each.
#[derive(Debug, Clone)]
pub struct FleetRun {
    pub level: LevelRun,
    /// The replica of each record (same index), `None` where the router refused it.
    pub replica: Vec<Option<u32>>,
}

impl FleetRun {
    /// The records served by replica `k`, as a level of their own.
    pub fn of_replica(&self, k: usize) -> LevelRun {
        let records = self
            .level
            .records
            .iter()
            .zip(&self.replica)
            .filter(|(_, r)| **r == Some(k as u32))
            .map(|(rec, _)| rec.clone())
            .collect();
        LevelRun {
            records,
            wall: self.level.wall,
        }
    }
}

/// Replicas behind a router on one clock, kept across levels like a real fleet.
#[derive(Debug)]
pub struct Fleet {
    replicas: Vec<Replica>,
    router: Router,
    /// Tokenises prompts for the router's prefix index (only for policies that read prompts).
    router_frontend: Option<Frontend>,
    block_size: u32,
    now: f64,
    hashes: Vec<BlockHash>,
    scratch: Vec<u32>,
}

impl Fleet {
    /// A freshly started fleet: one replica per profile (they may differ), behind a router with
    /// `config`. Replica 0's answer lengths are drawn from `seed`, so a fleet of one draws what a
    /// single server seeded alike draws; the others get seeds of their own.
    pub fn new(
        profiles: &[Profile],
        config: RouterConfig,
        seed: u64,
    ) -> Result<Fleet, ProfileError> {
        let Some(first) = profiles.first() else {
            return Err(ProfileError::Invalid {
                origin: "fleet".into(),
                message: "a fleet needs at least one replica".into(),
            });
        };
        let replicas = profiles
            .iter()
            .enumerate()
            .map(|(k, p)| Replica::new(p, replica_seed(seed, k)))
            .collect::<Result<Vec<_>, _>>()?;
        let router = Router::new(config, replicas.len(), seed);
        let router_frontend = router.reads_prompts().then(|| Frontend::new(first, seed));
        Ok(Fleet {
            replicas,
            router,
            router_frontend,
            block_size: first.engine.block_size.max(1),
            now: 0.0,
            hashes: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The simulated clock (seconds since start-up).
    pub fn now(&self) -> f64 {
        self.now
    }

    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Treat every replica as already warm: the profile's one-off warm-up is not paid.
    pub fn skip_warmup(&mut self) {
        for r in &mut self.replicas {
            r.engine.set_cold(false);
        }
    }

    /// The full-block hashes of a prompt as the router sees it (its own tokenisation).
    fn prompt_blocks(&mut self, prompt: &Prompt) {
        match &mut self.router_frontend {
            Some(frontend) => frontend.prompt_block_hashes(
                prompt,
                self.block_size,
                &mut self.hashes,
                &mut self.scratch,
            ),
            None => self.hashes.clear(),
        }
    }

    /// Route a request sent at `now`; `None` when admission refuses it.
    fn route(&mut self, spec: &RequestSpec, now: f64) -> Option<usize> {
        if !self.router.admit(now) {
            return None;
        }
        if self.router.reads_prompts() {
            self.prompt_blocks(&spec.prompt);
        }
        Some(self.router.route(&self.hashes))
    }

    /// Run one level to completion, starting now; returns every request's record and replica.
    pub fn run_level(&mut self, plan: &LevelPlan) -> FleetRun {
        self.run_level_gated(plan, &Gates::default())
    }

    /// [`Fleet::run_level`] with open-loop arrivals held back by `gates`; a held arrival's record
    /// keeps its planned time as `scheduled` and the moment it went as `sent`.
    pub fn run_level_gated(&mut self, plan: &LevelPlan, gates: &Gates) -> FleetRun {
        let t0 = self.now;
        let mut gate = GateState {
            on: gates.holds_anything(),
            done: vec![false; plan.arrivals.len()],
            ..GateState::default()
        };
        let mut agenda = Agenda {
            queue: BinaryHeap::new(),
            seq: 0,
        };
        for (g, group) in plan.groups.iter().enumerate() {
            agenda.push(t0 + group.start.max(0.0), Event::GroupStart(g));
        }
        for (a, arrival) in plan.arrivals.iter().enumerate() {
            agenda.push(t0 + arrival.at.max(0.0), Event::OpenSend(a));
        }

        let mut records: Vec<RequestRecord> = Vec::new();
        let mut replica_of: Vec<Option<u32>> = Vec::new();
        let mut record_group: Vec<Option<usize>> = Vec::new();
        let mut next_in_group = vec![0usize; plan.groups.len()];
        let mut in_flight: Vec<IdMap<InFlight>> =
            self.replicas.iter().map(|_| IdMap::default()).collect();
        let mut last_end = t0;
        let foreground_total = plan.foreground_requests();
        let mut foreground_left = foreground_total;

        while let Some(Scheduled { at: now, event, .. }) = agenda.queue.pop() {
            self.now = now;
            if self.router.scrape_due(now) {
                for k in 0..self.replicas.len() {
                    let m = self.replicas[k].scraped();
                    self.router.record(k, m);
                }
            }
            // Sends (closed-loop or open) create a record and hand it to the router.
            let sent = match event {
                Event::GroupStart(g) => {
                    for _ in 0..plan.groups[g].workers.max(1) {
                        agenda.push(now, Event::Send(g));
                    }
                    None
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
                    Some(&group.requests[i])
                }
                Event::OpenSend(a) | Event::OpenReady(a) | Event::OpenGo(a) => {
                    if gate.on && !matches!(event, Event::OpenGo(_)) {
                        if matches!(event, Event::OpenSend(_))
                            && let Some(b) = gates.after.get(a).copied().flatten()
                            && b < gate.done.len()
                            && !gate.done[b]
                        {
                            gate.parked.entry(b).or_default().push(a);
                            continue;
                        }
                        if gates.max_in_flight.is_some_and(|cap| gate.flying >= cap) {
                            gate.queue.push_back(a);
                            continue;
                        }
                        gate.flying += 1;
                    }
                    let at = plan.arrivals[a].at.max(0.0);
                    records.push(RequestRecord::new(Origin::Arrival, a, at, now - t0));
                    record_group.push(None);
                    Some(&plan.arrivals[a].request)
                }
                _ => None,
            };
            if let Some(spec) = sent {
                let r = records.len() - 1;
                match self.route(spec, now) {
                    Some(k) => {
                        replica_of.push(Some(k as u32));
                        let rep = &mut self.replicas[k];
                        let at = rep.frontend.pace(now + rep.input_latency);
                        agenda.push(at, Event::Arrive(r));
                    }
                    None => {
                        replica_of.push(None);
                        records[r].error = Some(RequestError {
                            kind: ErrorKind::Status { status: 429 },
                            message: "the router's admission refused the request".into(),
                        });
                        agenda.push(now, Event::Done(r));
                    }
                }
                continue;
            }
            match event {
                Event::GroupStart(_)
                | Event::Send(_)
                | Event::OpenSend(_)
                | Event::OpenReady(_)
                | Event::OpenGo(_) => {}
                Event::Arrive(r) => {
                    let k = replica_of[r].map_or(0, |k| k as usize);
                    let rep = &mut self.replicas[k];
                    let rec = &mut records[r];
                    let spec = match rec.origin {
                        Origin::Group(g) => &plan.groups[g].requests[rec.index],
                        Origin::Arrival => &plan.arrivals[rec.index].request,
                    };
                    let req = rep.frontend.prepare(spec);
                    let prompt_tokens = req.prompt_tokens;
                    match rep.engine.add_request(req, now) {
                        Ok(id) => {
                            rec.prompt_tokens = Some(prompt_tokens);
                            in_flight[k].insert(
                                id,
                                InFlight {
                                    record: r,
                                    chat: matches!(spec.prompt, Prompt::Chat(_)),
                                },
                            );
                            if !rep.stepping && !rep.wake_pending {
                                rep.wake_pending = true;
                                agenda.push(now, Event::Wake(k as u32));
                            }
                        }
                        Err(e) => {
                            rec.error = Some(RequestError {
                                kind: ErrorKind::Status { status: 400 },
                                message: e.to_string(),
                            });
                            agenda.push(now + rep.output_latency, Event::Done(r));
                        }
                    }
                }
                Event::Wake(k) => {
                    let rep = &mut self.replicas[k as usize];
                    rep.wake_pending = false;
                    if !rep.stepping && rep.engine.step_into(now, &mut rep.step) {
                        rep.stepping = true;
                        agenda.push(rep.step.end(), Event::StepEnd(k));
                    }
                }
                Event::StepEnd(k) => {
                    let rep = &mut self.replicas[k as usize];
                    let flying = &mut in_flight[k as usize];
                    rep.stepping = false;
                    let seen = now + rep.output_latency;
                    for em in &rep.step.emissions {
                        let Some(f) = flying.get(&em.id) else {
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
                            flying.remove(&em.id);
                            agenda.push(seen, Event::Done(r));
                        }
                    }
                    if rep.engine.step_into(now, &mut rep.step) {
                        rep.stepping = true;
                        agenda.push(rep.step.end(), Event::StepEnd(k));
                    }
                }
                Event::Done(r) => {
                    if records[r].error.is_some() {
                        records[r].end = now - t0;
                    }
                    if let Some(k) = replica_of[r] {
                        self.router.done(k as usize);
                    }
                    last_end = last_end.max(now);
                    let background = record_group[r].is_some_and(|g| plan.groups[g].background);
                    if !background {
                        foreground_left = foreground_left.saturating_sub(1);
                    }
                    if let Some(g) = record_group[r] {
                        agenda.push(now + plan.groups[g].think_s, Event::Send(g));
                    } else if gate.on {
                        let a = records[r].index;
                        gate.done[a] = true;
                        gate.flying = gate.flying.saturating_sub(1);
                        while let Some(&next) = gate.queue.front()
                            && gates.max_in_flight.is_none_or(|cap| gate.flying < cap)
                        {
                            gate.queue.pop_front();
                            gate.flying += 1;
                            agenda.push(now, Event::OpenGo(next));
                        }
                        for next in gate.parked.remove(&a).unwrap_or_default() {
                            agenda.push(now, Event::OpenReady(next));
                        }
                    }
                }
            }
        }
        FleetRun {
            level: LevelRun {
                records,
                wall: last_end - t0,
            },
            replica: replica_of,
        }
    }
}

/// Replica `k`'s answer-length seed: replica 0 keeps the fleet's, so a fleet of one is a server
/// (also the seed of `serve --replicas`' k-th server, so both fleets draw alike).
pub fn replica_seed(seed: u64, k: usize) -> u64 {
    if k == 0 {
        seed
    } else {
        seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}
