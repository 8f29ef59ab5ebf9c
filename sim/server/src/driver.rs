//! The real-time driver: the same engine core as the virtual-time runner, on the wall clock.
//!
//! The engine runs on its own OS thread. The thread reads the clock; the core is only told the time.
//! Handlers submit requests over a channel; a request reaches the engine `input_latency_s` after the
//! server received it, iterations run back to back while there is work (a request that arrives while
//! one runs joins the next), and each iteration's tokens are handed to their streams
//! `output_latency_s` after the iteration ends, exactly as [`servesim_sim::runner::VirtualServer`] does.
//! Event times follow the simulated timeline, not the moment the thread happened to wake up, so a late
//! wake-up delays delivery (and shows as emission lag) but never changes what the engine computes.
//!
//! Why a thread and not a tokio task: tokio's timer wheel has 1 ms granularity, while a blocking
//! `recv_timeout` wakes within tens of microseconds of its deadline without spinning.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

pub use super::event::TokenEvent;
use super::lag_probe::LagProbe;
use super::metrics::Metrics;
use super::sse::SseSender;
use servesim_sim::engine_core::{Emission, Engine, StepOutcome};
use servesim_sim::request::{EngineRequest, FinishReason, RequestId};

/// Maps engine seconds to the wall clock: `wall = start + t × time_scale`.
#[derive(Debug, Clone, Copy)]
pub struct EngineClock {
    start: Instant,
    scale: f64,
}

impl EngineClock {
    /// A clock whose engine time 0 is now; `scale` < 1 runs the simulated GPU faster than real.
    pub fn new(scale: f64) -> EngineClock {
        EngineClock {
            start: Instant::now(),
            scale,
        }
    }

    /// Engine time now.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64() / self.scale
    }

    /// The wall-clock instant of engine time `t`.
    pub fn wall(&self, t: f64) -> Instant {
        self.start + Duration::from_secs_f64((t * self.scale).max(0.0))
    }

    /// Engine seconds as wall-clock time.
    pub fn to_wall(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.scale).max(0.0))
    }
}

/// A request handed to the driver.
#[derive(Debug)]
pub struct Submission {
    /// The server's id of the request (aborts name it).
    pub key: u64,
    pub request: EngineRequest,
    /// Engine time at which it reaches the engine.
    pub arrival: f64,
    pub events: Sink,
    /// The lane (runtime) whose dispatcher hands this request's tokens over: the one its stream
    /// is polled on, so that the wake-ups are local to that runtime.
    pub lane: usize,
}

/// Where a request's tokens go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// To a task that waits for them (a non-streaming answer).
    Channel(UnboundedSender<TokenEvent>),
    /// To a streaming answer, whose event the lane's dispatcher formats (see [`super::sse`]).
    Stream(SseSender),
}

impl Sink {
    /// Hand over one event; `scratch` is the dispatcher's buffer for a stream's event text.
    fn send(&self, event: TokenEvent, scratch: &mut String) {
        match self {
            // A stream that went away meanwhile has nothing to receive.
            Sink::Channel(tx) => {
                let _ = tx.send(event);
            }
            Sink::Stream(s) => s.stream().deliver(event, scratch),
        }
    }
}

enum Command {
    Submit(Submission),
    Abort { key: u64, reason: FinishReason },
    Stop,
}

/// Latencies around the engine, engine seconds.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    pub time_scale: f64,
    pub input_latency_s: f64,
    pub output_latency_s: f64,
}

/// The handlers' side of the driver: cheap to clone.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
    clock: EngineClock,
    config: DriverConfig,
    queued: Arc<AtomicUsize>,
    /// Requests admitted by a handler whose submission the engine thread has not taken in yet.
    in_transit: Arc<AtomicUsize>,
    /// Serializes admissions, so that a flood of handlers cannot all pass the bound at once.
    admission: Arc<Mutex<()>>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// A place in the waiting queue, held between the admission check and the submission: dropped
/// unsubmitted, it is given back.
#[derive(Debug)]
pub struct Admission<'a> {
    handle: &'a DriverHandle,
    sent: bool,
}

impl Admission<'_> {
    /// Queue the request; false when the engine thread has stopped.
    pub fn submit(mut self, s: Submission) -> bool {
        self.sent = self.handle.tx.send(Command::Submit(s)).is_ok();
        self.sent
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.handle.in_transit.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl DriverHandle {
    pub fn clock(&self) -> EngineClock {
        self.clock
    }

    pub fn config(&self) -> DriverConfig {
        self.config
    }

    /// Queue a request; false when the engine thread has stopped.
    pub fn submit(&self, s: Submission) -> bool {
        self.admit(None).is_ok_and(|a| a.submit(s))
    }

    /// Take a place in the waiting queue if fewer than `limit` requests wait (no limit: always);
    /// otherwise the number waiting. Requests admitted but not yet taken in by the engine thread
    /// count as waiting, so the bound holds however many requests arrive at once.
    pub fn admit(&self, limit: Option<usize>) -> Result<Admission<'_>, usize> {
        let _serial = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(limit) = limit {
            // In-transit first: the engine thread publishes the new queue length before it
            // decrements in-transit, so a request moving between the two is counted at least once.
            let waiting =
                self.in_transit.load(Ordering::SeqCst) + self.queued.load(Ordering::SeqCst);
            if waiting >= limit {
                return Err(waiting);
            }
        }
        self.in_transit.fetch_add(1, Ordering::SeqCst);
        Ok(Admission {
            handle: self,
            sent: false,
        })
    }

    /// Take a request out of the engine at once (its KV blocks are freed); `reason` is what the
    /// metrics count it as.
    pub fn abort(&self, key: u64, reason: FinishReason) {
        // If the thread is gone there is nothing left to abort.
        let _ = self.tx.send(Command::Abort { key, reason });
    }

    /// Requests waiting for the engine: in its waiting queue or still on their way to it.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Stop the engine thread and wait for it; streams still open end as broken.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// One iteration's tokens, each with the stream it goes to.
type Batch = Vec<(Sink, TokenEvent)>;

/// The most an iteration's tokens are handed to the lanes ahead of their due time (wall clock).
///
/// Why ahead: a lane asleep in `epoll_wait` took 0.3–0.4 ms to wake on the 2-core VM (the first
/// token of a burst left that late even when the engine thread woke on time). Handed over early,
/// the lane is awake and waits out the rest, so writing starts at the due time. At most half the
/// output latency, so the hand-over never precedes the iteration's end.
const MAX_LEAD: Duration = Duration::from_micros(500);

/// Wait on this thread until `due` (spinning: at most [`MAX_LEAD`], once per iteration; a timer
/// would wake a millisecond late).
fn wait_until(due: Instant) {
    let limit = Instant::now() + MAX_LEAD;
    let until = due.min(limit);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Start the engine thread, and on each of `lanes` (the runtimes the streams are polled on; at
/// least one) the task that hands each iteration's tokens to that lane's streams.
///
/// Why a task between the two: every send from the engine thread to a stream wakes that stream's
/// task from outside the runtime, which unparks a worker that then preempts the engine thread on a
/// small machine; with the cores busy, a burst of 256 tokens became a chain of context switches
/// (engine, worker, client, engine, ...), about 60 µs per token. One wake per lane and iteration: the
/// dispatcher wakes its streams from inside their runtime, onto its own queue.
pub fn spawn(
    engine: Engine,
    config: DriverConfig,
    metrics: Arc<Metrics>,
    lag_probe: Arc<LagProbe>,
    lanes: &[tokio::runtime::Handle],
) -> std::io::Result<DriverHandle> {
    if lanes.is_empty() {
        return Err(std::io::Error::other(
            "the driver needs at least one runtime",
        ));
    }
    let dispatch = lanes
        .iter()
        .map(|runtime| {
            let (dispatch, mut batches) = unbounded_channel::<(Instant, Batch)>();
            runtime.spawn(async move {
                let mut scratch = String::with_capacity(1024);
                while let Some((due, batch)) = batches.recv().await {
                    wait_until(due);
                    for (sink, event) in batch {
                        sink.send(event, &mut scratch);
                    }
                }
            });
            dispatch
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let clock = EngineClock::new(config.time_scale);
    let lead = MAX_LEAD
        .min(clock.to_wall(config.output_latency_s) / 2)
        .as_secs_f64()
        / config.time_scale;
    let queued = Arc::new(AtomicUsize::new(0));
    let in_transit = Arc::new(AtomicUsize::new(0));
    let mut driver = Driver {
        engine,
        clock,
        output_latency: config.output_latency_s,
        lead,
        metrics,
        lag_probe,
        queued: Arc::clone(&queued),
        in_transit: Arc::clone(&in_transit),
        step: StepOutcome::default(),
        stepping: false,
        wake: None,
        last: 0.0,
        arrivals: VecDeque::new(),
        deliveries: VecDeque::new(),
        spare: Vec::new(),
        slots: HashMap::new(),
        keys: HashMap::new(),
        dispatch,
    };
    let thread = std::thread::Builder::new()
        .name("servesim-engine".into())
        .spawn(move || driver.run(&rx))?;
    Ok(DriverHandle {
        tx,
        clock,
        config,
        queued,
        in_transit,
        admission: Arc::new(Mutex::new(())),
        thread: Arc::new(Mutex::new(Some(thread))),
    })
}

/// A request the engine holds, and where its tokens go.
struct Slot {
    key: u64,
    events: Sink,
    lane: usize,
    last_token: f64,
}

/// Tokens due at the clients at `at`.
struct Delivery {
    at: f64,
    emissions: Vec<Emission>,
}

/// The next thing that happens on the simulated timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    Deliver,
    Arrive,
    Wake,
    StepEnd,
}

struct Driver {
    engine: Engine,
    clock: EngineClock,
    output_latency: f64,
    /// How much earlier than their due time (engine seconds) tokens are handed to the lanes.
    lead: f64,
    metrics: Arc<Metrics>,
    lag_probe: Arc<LagProbe>,
    queued: Arc<AtomicUsize>,
    in_transit: Arc<AtomicUsize>,
    step: StepOutcome,
    /// Whether `step` is an iteration in flight (it ends at `step.end()`).
    stepping: bool,
    /// An idle engine starts an iteration at this time (after same-instant arrivals joined).
    wake: Option<f64>,
    /// Engine time of the last event handled; the timeline never goes back.
    last: f64,
    /// Submissions in order of arrival time.
    arrivals: VecDeque<Submission>,
    deliveries: VecDeque<Delivery>,
    spare: Vec<Vec<Emission>>,
    slots: HashMap<RequestId, Slot>,
    keys: HashMap<u64, RequestId>,
    /// To each lane's task that hands tokens to their streams.
    dispatch: Vec<UnboundedSender<(Instant, Batch)>>,
}

impl Driver {
    fn run(&mut self, rx: &mpsc::Receiver<Command>) {
        loop {
            let command = match self.next_due() {
                None => match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                },
                Some((t, _)) => {
                    let wait = self.clock.wall(t).saturating_duration_since(Instant::now());
                    let got = if wait.is_zero() {
                        rx.try_recv().map_err(|e| match e {
                            TryRecvError::Empty => RecvTimeoutError::Timeout,
                            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                        })
                    } else {
                        rx.recv_timeout(wait)
                    };
                    match got {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            if let Some(c) = command
                && !self.command(c)
            {
                return;
            }
            // Take in every command already sent before moving the timeline to now: when this
            // thread wakes late (a loaded machine), a submission queued behind the first one must
            // not find the engine already past its arrival time (it would be moved later, and the
            // engine would step differently from the virtual-time runner).
            // (A disconnected channel ends this loop; the next wait sees it and stops the thread.)
            while let Ok(c) = rx.try_recv() {
                if !self.command(c) {
                    return;
                }
            }
            self.advance(self.clock.now());
        }
    }

    /// Handle one command; false to stop.
    fn command(&mut self, c: Command) -> bool {
        match c {
            Command::Submit(s) => {
                // Arrivals are nearly always in order; insert after every earlier-or-equal one.
                let pos = self.arrivals.partition_point(|a| a.arrival <= s.arrival);
                self.arrivals.insert(pos, s);
                // Counted in the queue before it stops counting as in transit.
                self.publish();
                self.in_transit.fetch_sub(1, Ordering::SeqCst);
            }
            Command::Abort { key, reason } => {
                if let Some(pos) = self.arrivals.iter().position(|a| a.key == key) {
                    self.arrivals.remove(pos);
                } else if let Some(id) = self.keys.remove(&key) {
                    self.slots.remove(&id);
                    if self.engine.abort(id) {
                        self.metrics.count_finish(reason);
                    }
                    self.metrics.engine_stats(&self.engine.stats());
                }
            }
            Command::Stop => return false,
        }
        self.publish();
        true
    }

    /// The earliest pending event; ties go deliveries, arrivals, wake, then iteration end, so that
    /// a request arriving exactly when an iteration ends joins the next one.
    fn next_due(&self) -> Option<(f64, Due)> {
        let candidates = [
            (
                self.deliveries.front().map(|d| d.at - self.lead),
                Due::Deliver,
            ),
            (self.arrivals.front().map(|a| a.arrival), Due::Arrive),
            (self.wake, Due::Wake),
            (self.stepping.then(|| self.step.end()), Due::StepEnd),
        ];
        let mut best: Option<(f64, Due)> = None;
        for (t, due) in candidates {
            if let Some(t) = t
                && best.is_none_or(|(b, _)| t < b)
            {
                best = Some((t, due));
            }
        }
        best
    }

    /// Handle every event due by engine time `now`, in timeline order.
    fn advance(&mut self, now: f64) {
        while let Some((t, due)) = self.next_due() {
            if t > now {
                break;
            }
            let t = t.max(self.last);
            self.last = t;
            match due {
                Due::Deliver => self.deliver(),
                Due::Arrive => self.arrive(t),
                Due::Wake => {
                    self.wake = None;
                    self.start_step(t);
                }
                Due::StepEnd => self.step_end(t),
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let waiting = self.engine.stats().waiting + self.arrivals.len();
        self.queued.store(waiting, Ordering::SeqCst);
    }

    fn arrive(&mut self, t: f64) {
        let Some(s) = self.arrivals.pop_front() else {
            return;
        };
        let max_tokens = s.request.max_tokens;
        match self.engine.add_request(s.request, t) {
            Ok(id) => {
                self.metrics.request_params(max_tokens);
                self.keys.insert(s.key, id);
                self.slots.insert(
                    id,
                    Slot {
                        key: s.key,
                        events: s.events,
                        lane: s.lane.min(self.dispatch.len() - 1),
                        last_token: t,
                    },
                );
                if !self.stepping && self.wake.is_none() {
                    self.wake = Some(t);
                }
                self.metrics.engine_stats(&self.engine.stats());
            }
            Err(e) => {
                // Rare (the handler checked the same rules), so no scratch buffer is kept for it.
                s.events.send(TokenEvent::Rejected(e), &mut String::new());
            }
        }
    }

    fn start_step(&mut self, t: f64) {
        self.stepping = self.engine.step_into(t, &mut self.step);
        if self.stepping {
            self.metrics.iteration(self.step.tokens, &self.step.cost);
        }
    }

    fn step_end(&mut self, t: f64) {
        self.stepping = false;
        let mut emissions = self.spare.pop().unwrap_or_default();
        emissions.clear();
        for em in &self.step.emissions {
            let Some(slot) = self.slots.get_mut(&em.id) else {
                continue;
            };
            if em.index > 1 {
                self.metrics.inter_token(t - slot.last_token);
            }
            slot.last_token = t;
            if let Some(f) = &em.finished {
                self.metrics.finished(f);
                // The request has left the engine; its stream still gets the last token below.
                self.keys.remove(&slot.key);
            }
            emissions.push(*em);
        }
        self.metrics.engine_stats(&self.engine.stats());
        self.deliveries.push_back(Delivery {
            at: t + self.output_latency,
            emissions,
        });
        // Back to back: the next iteration starts when this one ends.
        self.start_step(t);
    }

    fn deliver(&mut self) {
        let Some(d) = self.deliveries.pop_front() else {
            return;
        };
        let due = self.clock.wall(d.at);
        let wake = self.clock.wall(d.at - self.lead);
        self.lag_probe
            .wakeup
            .record(Instant::now().saturating_duration_since(wake).as_secs_f64());
        let mut batches: Vec<Batch> = vec![Vec::new(); self.dispatch.len()];
        for em in &d.emissions {
            let slot = if em.finished.is_some() {
                self.slots
                    .remove(&em.id)
                    .map(|slot| (slot.lane, slot.events))
            } else {
                self.slots
                    .get(&em.id)
                    .map(|slot| (slot.lane, slot.events.clone()))
            };
            let Some((lane, events)) = slot else {
                continue;
            };
            let event = TokenEvent::Token {
                index: em.index,
                finished: em.finished,
                due,
            };
            batches[lane].push((events, event));
        }
        for (dispatch, batch) in self.dispatch.iter().zip(batches) {
            if !batch.is_empty() {
                // The runtime is gone only when the server is shutting down.
                let _ = dispatch.send((due, batch));
            }
        }
        self.spare.push(d.emissions);
    }
}

/// A driver for unit tests of the client side: the built-in profile, real time, no latencies,
/// its dispatcher on the returned runtime (keep it alive while the driver is used).
#[cfg(test)]
pub(crate) fn test_driver() -> (tokio::runtime::Runtime, DriverHandle) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let profile = servesim_models::Profile::load("a6000-qwen2.5-7b").expect("profile");
    let driver = spawn(
        Engine::new(&profile).expect("engine"),
        DriverConfig {
            time_scale: 1.0,
            input_latency_s: 0.0,
            output_latency_s: 0.0,
        },
        Arc::new(Metrics::new("local", 100)),
        Arc::default(),
        std::slice::from_ref(rt.handle()),
    )
    .expect("driver");
    (rt, driver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use servesim_models::Profile;
    use servesim_sim::engine_core::Finished;
    use servesim_sim::frontend::{Frontend, RequestSpec};
    use servesim_sim::runner::VirtualServer;
    use servesim_sim::workload::{ClientGroup, LevelPlan};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    /// A runtime for the driver's dispatcher task; the tests read their streams from plain threads.
    fn dispatch_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime")
    }

    /// Block until the stream's last token arrives and return its engine-side timings.
    fn wait_finished(rx: &mut UnboundedReceiver<TokenEvent>, what: &str) -> Finished {
        loop {
            match rx.blocking_recv() {
                Some(TokenEvent::Token {
                    finished: Some(f), ..
                }) => return f,
                Some(TokenEvent::Token { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    /// At a 1/20 time scale, one request's tokens arrive at the engine-time moments the virtual-time
    /// runner computes for the same request (checked on the engine timeline, not on wall-clock lag).
    #[test]
    fn tokens_follow_the_virtual_timeline() {
        let profile = Profile::load("a6000-qwen2.5-7b").expect("built-in profile");
        let spec = RequestSpec::chat("Explain what a GPU scheduler does, in two sentences.", 16);

        let mut virt = VirtualServer::new(&profile, 1).expect("servable");
        let run = virt.run_level(&LevelPlan {
            groups: vec![ClientGroup::new(0.0, 1, vec![spec.clone()])],
            arrivals: vec![],
            record_event_times: false,
        });
        let virt_first = run.records[0].first_event.expect("a token");
        let virt_end = run.records[0].end;

        let metrics = Arc::new(Metrics::new("local", 32768));
        let engine = Engine::new(&profile).expect("servable");
        let config = DriverConfig {
            time_scale: 0.05,
            input_latency_s: profile.engine.input_latency_s,
            output_latency_s: profile.engine.output_latency_s,
        };
        let rt = dispatch_runtime();
        let driver = spawn(
            engine,
            config,
            metrics,
            Arc::default(),
            std::slice::from_ref(rt.handle()),
        )
        .expect("thread starts");
        let mut frontend = Frontend::new(&profile, 1);
        let (tx, mut rx) = unbounded_channel();
        let t0 = driver.clock().now();
        assert!(driver.submit(Submission {
            key: 1,
            request: frontend.prepare(&spec),
            arrival: t0 + config.input_latency_s,
            events: Sink::Channel(tx),
            lane: 0,
        }));
        let finished = wait_finished(&mut rx, "request");
        let first = finished.first_token + config.output_latency_s - t0;
        let end = finished.end + config.output_latency_s - t0;
        assert!((first - virt_first).abs() < 1e-9, "{first} vs {virt_first}");
        assert!((end - virt_end).abs() < 1e-9, "{end} vs {virt_end}");
        driver.stop();
    }

    /// Forty requests arriving while others run, batched, finishing naturally or at max_tokens:
    /// every request's first and last token land at exactly the engine times the virtual-time runner
    /// computes for the same arrivals. (Submitted up front, so wall-clock jitter cannot move an
    /// arrival; what is checked is that the two drivers step the core identically.)
    #[test]
    fn many_requests_follow_the_virtual_timeline() {
        use servesim_sim::workload::Arrival;
        let profile = Profile::load("a6000-qwen2.5-7b").expect("built-in profile");
        let specs: Vec<(f64, RequestSpec)> = (0..40)
            .map(|i| {
                let prompt = if i % 3 == 0 {
                    "Count upward from 1, writing one number per line."
                } else {
                    "Explain what a GPU scheduler does, in two sentences."
                };
                (f64::from(i) * 0.013, RequestSpec::chat(prompt, 24 + i % 50))
            })
            .collect();

        let mut virt = VirtualServer::new(&profile, 5).expect("servable");
        let run = virt.run_level(&LevelPlan {
            groups: vec![],
            arrivals: specs
                .iter()
                .map(|(at, spec)| Arrival {
                    at: *at,
                    request: spec.clone(),
                })
                .collect(),
            record_event_times: false,
        });

        let metrics = Arc::new(Metrics::new("local", 32768));
        let config = DriverConfig {
            time_scale: 0.02,
            input_latency_s: profile.engine.input_latency_s,
            output_latency_s: profile.engine.output_latency_s,
        };
        let rt = dispatch_runtime();
        let engine = Engine::new(&profile).expect("servable");
        let driver = spawn(
            engine,
            config,
            metrics,
            Arc::default(),
            std::slice::from_ref(rt.handle()),
        )
        .expect("thread");
        let mut frontend = Frontend::new(&profile, 5);
        // Everything is prepared before the clock is read, so that only the channel sends stand
        // between choosing t0 and the last submission; and t0 is a whole wall-clock second ahead,
        // so that every submission is in before the first arrival even on a loaded machine that
        // deschedules this thread for a while. (It was 0.5 engine seconds, 10 ms of wall time,
        // with each request tokenized in between: under a CPU hog a late submission found the
        // engine past its arrival time and the engine stepped differently.)
        let prepared: Vec<_> = specs
            .iter()
            .map(|(at, spec)| (*at, frontend.prepare(spec), unbounded_channel()))
            .collect();
        let t0 = driver.clock().now() + 1.0 / config.time_scale;
        let mut streams = Vec::new();
        for (key, (at, request, (tx, rx))) in prepared.into_iter().enumerate() {
            assert!(driver.submit(Submission {
                key: key as u64,
                request,
                arrival: t0 + at + config.input_latency_s,
                events: Sink::Channel(tx),
                lane: 0,
            }));
            streams.push(rx);
        }
        // The premise of the comparison: every submission was sent before the first arrival.
        assert!(
            driver.clock().now() < t0,
            "the submissions took more than a second"
        );
        for (i, mut rx) in streams.into_iter().enumerate() {
            let finished = wait_finished(&mut rx, &format!("request {i}"));
            let rec = &run.records[i];
            let first = finished.first_token + config.output_latency_s - t0;
            let end = finished.end + config.output_latency_s - t0;
            let virt_first = rec.first_event.expect("virtual first token");
            assert!(
                (first - virt_first).abs() < 1e-9,
                "request {i}: first token {first} vs {virt_first}"
            );
            assert!(
                (end - rec.end).abs() < 1e-9,
                "request {i}: end {end} vs {}",
                rec.end
            );
            assert_eq!(Some(finished.generated), rec.completion_tokens);
        }
        driver.stop();
    }

    /// With two lanes, a request on either lane, and one naming a lane beyond the last (it falls
    /// back to the last), gets every token through to its finish, each exactly once.
    #[test]
    fn every_lane_delivers_its_requests_tokens() {
        use crate::lanes::Lanes;
        let profile = Profile::load("a6000-qwen2.5-7b").expect("built-in profile");
        let lanes = Lanes::start(2, "driver-test").expect("lanes");
        let config = DriverConfig {
            time_scale: 0.02,
            input_latency_s: 0.0,
            output_latency_s: 0.0,
        };
        let engine = Engine::new(&profile).expect("servable");
        let metrics = Arc::new(Metrics::new("local", 32768));
        let driver =
            spawn(engine, config, metrics, Arc::default(), lanes.handles()).expect("thread starts");
        let mut frontend = Frontend::new(&profile, 3);
        let (seen_tx, seen_rx) = mpsc::channel();
        for (key, lane) in [(1u64, 0usize), (2, 1), (3, 7)] {
            let (tx, mut rx) = unbounded_channel();
            let seen = seen_tx.clone();
            lanes.handles()[lane.min(1)].spawn(async move {
                let mut indices = Vec::new();
                while let Some(TokenEvent::Token {
                    index, finished, ..
                }) = rx.recv().await
                {
                    indices.push(index);
                    if let Some(f) = finished {
                        let _ = seen.send((key, indices, f.generated));
                        return;
                    }
                }
                let _ = seen.send((key, indices, 0));
            });
            assert!(driver.submit(Submission {
                key,
                request: frontend.prepare(&RequestSpec::chat("Say hello.", 8)),
                arrival: driver.clock().now(),
                events: Sink::Channel(tx),
                lane,
            }));
        }
        for _ in 0..3 {
            let (key, indices, generated) = seen_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a stream finished");
            assert!(generated > 0, "request {key} did not finish");
            let want: Vec<u32> = (1..=generated).collect();
            assert_eq!(indices, want, "request {key}");
        }
        driver.stop();
    }

    #[test]
    fn abort_frees_the_kv_blocks_at_once() {
        let profile = Profile::load("a6000-qwen2.5-7b").expect("built-in profile");
        let metrics = Arc::new(Metrics::new("local", 32768));
        let engine = Engine::new(&profile).expect("servable");
        let config = DriverConfig {
            time_scale: 1.0,
            input_latency_s: 0.0,
            output_latency_s: 0.0,
        };
        let rt = dispatch_runtime();
        let driver = spawn(
            engine,
            config,
            Arc::clone(&metrics),
            Arc::default(),
            std::slice::from_ref(rt.handle()),
        )
        .expect("thread starts");
        let (tx, mut rx) = unbounded_channel();
        assert!(driver.submit(Submission {
            key: 7,
            request: EngineRequest {
                prompt_tokens: 1000,
                max_tokens: 10_000,
                natural_tokens: u32::MAX,
                ..EngineRequest::default()
            },
            arrival: driver.clock().now(),
            events: Sink::Channel(tx),
            lane: 0,
        }));
        // Wait for the first token: the request is running and holds blocks.
        assert!(matches!(rx.blocking_recv(), Some(TokenEvent::Token { .. })));
        assert!(
            metrics
                .render()
                .contains("vllm:num_requests_running{engine=\"0\",model_name=\"local\"} 1")
        );
        driver.abort(7, FinishReason::Abort);
        // A bound on a hang, not on speed: the abort is taken in at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = metrics.render();
            if text.contains("vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"local\"} 0.0")
                && text.contains("finished_reason=\"abort\"} 1")
            {
                break;
            }
            assert!(Instant::now() < deadline, "KV not freed: {text}");
            std::thread::sleep(Duration::from_millis(5));
        }
        driver.stop();
        // The stream's sender is gone with the request.
        while rx.blocking_recv().is_some() {}
    }
}
