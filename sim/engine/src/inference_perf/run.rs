//! Running a [`Benchmark`]'s stages on a fleet, one after another on its clock, as
//! inference-perf's `LoadGenerator.mp_run` does (`inference_perf/loadgen/load_generator.py`,
//! 0.7.0):
//! - `run_stage` schedules the first send one second after the stage starts ("allow generation a
//!   second to begin populating the queue");
//! - it then waits for every request of the stage to finish, checking once a second from the
//!   stage's start (`await sleep(1)` in its loop), so the stage ends on the first whole second
//!   after its last answer;
//! - `mp_run` sleeps `load.interval` seconds before the next stage. The teardown between them
//!   (worker rendezvous) takes no simulated time.
//!
//! The prefix cache and the engines carry over from one stage to the next, as on a real server.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::plan::{Benchmark, StageSpec};
use super::report::{
    LifecycleReport, RequestLifecycle, StageRate, summarize_requests_with_goodput,
};
use crate::fleet::{Fleet, FleetRun};
use crate::workload::{ErrorKind, RequestRecord};

/// Seconds from a stage's start to its first scheduled send (`run_stage`: `perf_counter() + 1`).
pub const STAGE_LEAD_S: f64 = 1.0;

/// One stage's run: its requests as inference-perf records them, its report, and the fleet's own
/// view (which replica served what).
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub stage: usize,
    pub spec: StageSpec,
    pub requests: Vec<RequestLifecycle>,
    /// `stage_N_lifecycle_metrics` (`None` when the stage sent nothing).
    pub report: Option<LifecycleReport>,
    pub fleet_run: FleetRun,
    /// The fleet's clock when the stage's level began: `fleet_run`'s times are from here.
    pub t0: f64,
    /// When the stage started and when inference-perf saw it end (fleet clock, seconds).
    pub started: f64,
    pub ended: f64,
}

/// Size of a completions request body as inference-perf sends it (`CompletionAPIData.
/// to_request_body`, serialised by aiohttp's `json.dumps`), with the prompt's text estimated at
/// four bytes per token (OpenAI's rule of thumb for English, help.openai.com/en/articles/4936856).
fn request_bytes(model: &str, prompt_tokens: u32, max_tokens: u32, b: &Benchmark) -> f64 {
    let stream = if b.streaming {
        ", \"stream_options\": {\"include_usage\": true}"
    } else {
        ""
    };
    let skeleton = format!(
        "{{\"model\": \"{model}\", \"prompt\": \"\", \"max_tokens\": {max_tokens}, \"ignore_eos\": \
         {}, \"stream\": {}{stream}}}",
        if b.ignore_eos { "true" } else { "false" },
        if b.streaming { "true" } else { "false" },
    );
    (skeleton.len() as f64) + 4.0 * f64::from(prompt_tokens)
}

/// A fleet record as inference-perf's lifecycle metric, moved to the fleet's clock by `t0`.
fn lifecycle(
    rec: &RequestRecord,
    t0: f64,
    max_tokens: u32,
    model: &str,
    b: &Benchmark,
) -> RequestLifecycle {
    let input = rec.prompt_tokens.unwrap_or(0);
    RequestLifecycle {
        scheduled: t0 + rec.scheduled,
        start: t0 + rec.sent,
        end: t0 + rec.end,
        token_times: rec.event_times.iter().map(|t| t0 + t).collect(),
        input_tokens: input,
        output_tokens: rec.completion_tokens.unwrap_or(0),
        request_bytes: request_bytes(model, input, max_tokens, b),
        error: rec.error.as_ref().map(|e| {
            let kind = match e.kind {
                ErrorKind::Status { status } => format!("HTTP Error {status}"),
                ErrorKind::Timeout => "TimeoutError".into(),
                ErrorKind::Connect => "ClientConnectorError".into(),
                ErrorKind::BrokenStream => "ClientPayloadError".into(),
            };
            (kind, e.message.clone())
        }),
    }
}

/// Run every stage of `bench` on `fleet`, calling `done` with each stage as it completes (so its
/// report can be written before the next one runs). `model` names the model in the request bodies
/// whose size the report estimates.
pub fn run_stages(
    fleet: &mut Fleet,
    bench: &Benchmark,
    model: &str,
    mut done: impl FnMut(&StageOutcome),
) -> Vec<StageOutcome> {
    // Send times get their own stream, apart from the data's draws.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(bench.seed() ^ 0x5eed_71be_5e0d_0001);
    let mut wall = fleet.now();
    // The longest context any replica takes: longer prompts are refused on every one.
    let context_limit = fleet
        .replicas()
        .iter()
        .map(|r| r.engine().max_model_len())
        .max();
    let mut out = Vec::with_capacity(bench.stages.len());
    for (s, spec) in bench.stages.iter().enumerate() {
        let (mut plan, gates) = bench.stage_plan_within(s, &mut rng, context_limit);
        let t0 = fleet.now();
        // The stage starts at `wall` (never before the fleet's clock); its sends a second later.
        let lead = (wall - t0).max(0.0) + STAGE_LEAD_S;
        for a in &mut plan.arrivals {
            a.at += lead;
        }
        let run = fleet.run_level_gated(&plan, &gates);
        let started = t0 + lead - STAGE_LEAD_S;
        let last = t0 + run.level.wall;
        // Polled once a second from the stage's start; at least one poll.
        let ended = started + ((last - started).max(0.0).ceil()).max(1.0);
        let requests: Vec<RequestLifecycle> = run
            .level
            .records
            .iter()
            .map(|rec| {
                let max_tokens = plan
                    .arrivals
                    .get(rec.index)
                    .map_or(0, |a| a.request.max_tokens);
                lifecycle(rec, t0, max_tokens, model, bench)
            })
            .collect();
        let report = summarize_requests_with_goodput(
            &requests,
            &bench.percentiles,
            Some(StageRate {
                rate: spec.rate,
                concurrency: spec.concurrency,
            }),
            bench.goodput.as_ref(),
        );
        let outcome = StageOutcome {
            stage: s,
            spec: *spec,
            requests,
            report,
            fleet_run: run,
            t0,
            started,
            ended,
        };
        done(&outcome);
        out.push(outcome);
        wall = ended + bench.interval;
    }
    out
}

/// What a sweep's probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    /// The `saturation_percentile` of the burn-down rates (requests finishing per second).
    pub saturation: f64,
    /// Burn-down rates sampled.
    pub samples: usize,
    /// The probe's requests (stage −1, not reported).
    pub probe_requests: usize,
}

/// A sweep's probe (`LoadGenerator.preprocess`, `loadgen/load_generator.py`): `num_requests` sent
/// over 5 s (one second after the probe starts, as any stage), the number of requests in flight
/// sampled every 0.5 s from the start until `timeout`, and from each fall between two samples a
/// burn-down rate |Δ in flight| / Δt; the saturation point is their `saturation_percentile`
/// (numpy's linear percentile). Fewer than two rates is inference-perf's own error. The probe's
/// requests load the server (and its prefix cache) but are not reported.
pub fn sweep(fleet: &mut Fleet, bench: &Benchmark) -> Result<SweepResult, super::IpError> {
    let Some(cfg) = bench.sweep else {
        return Err(super::IpError::Invalid {
            field: "load.sweep".into(),
            why: "no sweep configured".into(),
        });
    };
    let context_limit = fleet
        .replicas()
        .iter()
        .map(|r| r.engine().max_model_len())
        .max();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(bench.seed() ^ 0x5ee9_0000_0000_0001);
    let (_, mut plan, gates) = bench.probe_plan(&mut rng, context_limit)?;
    for a in &mut plan.arrivals {
        a.at += STAGE_LEAD_S;
    }
    let run = fleet.run_level_gated(&plan, &gates);
    let records = &run.level.records;
    let last = run.level.wall;
    let in_flight = |t: f64| records.iter().filter(|r| r.sent <= t && r.end > t).count();
    // The aggregator samples until the probe returns; samples past the timeout are dropped.
    let until = last.min(cfg.timeout);
    let mut samples = Vec::new();
    let mut t = 0.0;
    while t < until || samples.is_empty() {
        samples.push((t, in_flight(t) as f64));
        t += 0.5;
    }
    let mut rates: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[1].1 - w[0].1 < 0.0)
        .map(|w| ((w[1].1 - w[0].1) / (w[1].0 - w[0].0)).abs())
        .collect();
    if rates.len() <= 1 {
        return Err(super::IpError::Invalid {
            field: "load.sweep".into(),
            why: "Loadgen preprocessing failed to gather enough samples to determine \
                  saturation, try increasing the num_requests or timeout"
                .into(),
        });
    }
    rates.sort_by(f64::total_cmp);
    Ok(SweepResult {
        saturation: super::report::percentile(&rates, cfg.saturation_percentile),
        samples: rates.len(),
        probe_requests: records.len(),
    })
}

/// `summary_lifecycle_metrics`: every stage's requests together, without stage rates.
pub fn summary(stages: &[StageOutcome], bench: &Benchmark) -> Option<LifecycleReport> {
    let all: Vec<RequestLifecycle> = stages
        .iter()
        .flat_map(|s| s.requests.iter().cloned())
        .collect();
    summarize_requests_with_goodput(&all, &bench.percentiles, None, bench.goodput.as_ref())
}
