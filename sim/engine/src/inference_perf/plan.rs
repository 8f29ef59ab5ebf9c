//! A checked inference-perf config as stages of arrivals: what each stage sends, when, and with
//! which prompt and answer lengths.
//!
//! Data types (inference-perf 0.7.0, `inference_perf/datagen/synthetic/`):
//! - `shared_prefix` (`shared_prefix_datagen.py`): `num_unique_system_prompts` groups, each a
//!   system prompt of `system_prompt_len` tokens shared by `num_users_per_system_prompt` prompts
//!   that append a question of `question_len` tokens; every prompt has its own `output_len`. The
//!   prompts are shuffled once; request `i` of a stage sends prompt `i mod N`. Prompts are token
//!   ids, so the engine's prefix cache sees the shared system prompt's blocks.
//! - multi-turn (`enable_multi_turn_chat`, `apis/user_session.py`): prompt `u` is user `u`'s
//!   question, asked again every round; request `i` is user `i mod N`'s round `i div N`, and a
//!   round's prompt is the previous round's prompt, its answer, and the question again
//!   (`LocalUserSession.update_context` keeps `prompt + " " + response`). A round is not sent
//!   before the previous one's answer has come back. Sessions start afresh each stage
//!   (`LocalUserSession.clear_instances()` at the stage's end in `loadgen/load_generator.py`).
//! - `random` and `synthetic` (`random_datagen.py`, `synthetic_datagen.py`): `total_count` input
//!   and output lengths drawn up front; request `i` of a stage uses length `i` (each stage starts
//!   its data over, `get_data()` being called per stage), and neither shares a prefix with another.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::IpError;
use super::config::{
    ApiType, Config, DataConfig, DataType, Distribution, Length, LoadType, SharedPrefix,
    StageGenType, SweepConfig,
};
use super::lengths::{generate_distribution, sample_from_distribution};
use super::report::Slo;
use super::timer;
use crate::fleet::Gates;
use crate::frontend::{Prompt, RequestSpec};
use crate::workload::{Arrival, LevelPlan};

/// One load stage as it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageSpec {
    /// The rate inference-perf reports as `requested_rate` (a concurrent stage's is its
    /// `num_requests`, as `main.py` sets it).
    pub rate: f64,
    pub duration: f64,
    /// `int(rate × duration)`.
    pub requests: usize,
    /// A concurrent stage's `concurrency_level`.
    pub concurrency: Option<usize>,
}

/// The prompts a stage's requests carry.
#[derive(Debug, Clone)]
enum Data {
    SharedPrefix {
        /// Shuffled prompts: system prompt ids then question ids.
        prompts: Vec<Arc<[u32]>>,
        /// Each prompt's `max_tokens`.
        outputs: Vec<u32>,
        multi_turn: bool,
    },
    /// `random` / `synthetic`: lengths only.
    Lengths { input: Vec<u32>, output: Vec<u32> },
}

/// A config checked and drawn: stages, data, and what the reports contain.
#[derive(Debug, Clone)]
pub struct Benchmark {
    pub load: LoadType,
    pub stages: Vec<StageSpec>,
    /// Seconds between one stage's end and the next one's start (`load.interval`).
    pub interval: f64,
    /// `server.ignore_eos` (inference-perf's default: true).
    pub ignore_eos: bool,
    /// `api.streaming`: without it inference-perf records no token times, so no TTFT/TPOT/ITL.
    pub streaming: bool,
    pub percentiles: Vec<f64>,
    /// Write `summary_lifecycle_metrics` / `stage_N_lifecycle_metrics`.
    pub summary: bool,
    pub per_stage: bool,
    /// Standard stages' limit on requests in flight: `num_workers × worker_max_concurrency`, when
    /// the file gives `num_workers` (inference-perf's default is the client's CPU count).
    pub max_in_flight: Option<usize>,
    /// `report.goodput.constraints`: the SLOs of `successes.goodput_metrics`.
    pub goodput: Option<Slo>,
    /// `trace_replay`: send times from `load.trace`, seconds after its first line.
    trace_times: Vec<f64>,
    /// `load.sweep`: the stages come from a saturation probe ([`crate::inference_perf::run::sweep`]).
    pub sweep: Option<SweepConfig>,
    /// With `data.trace`, every stage (the probe too) sends the trace's request count.
    data_trace_count: Option<usize>,
    data: Data,
    seed: u64,
}

/// A field servesim cannot simulate.
fn unsupported(field: &str, why: impl Into<String>) -> IpError {
    IpError::Unsupported {
        field: field.to_string(),
        why: why.into(),
    }
}

/// A field whose value inference-perf refuses.
fn invalid(field: &str, why: impl Into<String>) -> IpError {
    IpError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

/// Deterministic stand-in token ids for a text identified by `tag`: the same tag gives the same
/// ids, different tags differ from the first id on. Values avoid the low ids that chat templates
/// and special tokens use.
fn token_ids(tag: u64, n: usize) -> impl Iterator<Item = u32> {
    let mut x = tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    (0..n).map(move |_| {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        1000 + (z % 120_000) as u32
    })
}

/// A multi-turn prompt: its ids, or only its length once it is too long for the server.
#[derive(Debug, Clone)]
enum Turn {
    Ids(Arc<[u32]>),
    Len(usize),
}

impl Turn {
    fn len(&self) -> usize {
        match self {
            Turn::Ids(ids) => ids.len(),
            Turn::Len(n) => *n,
        }
    }
}

/// Tags of the texts a run makes up, kept apart by their top bits.
const TAG_SYSTEM: u64 = 1 << 60;
/// Tag of a question's ids.
const TAG_QUESTION: u64 = 2 << 60;
/// Tag of a stand-in answer's ids.
const TAG_ANSWER: u64 = 3 << 60;

/// A drawn length as a token count (negative draws are 0).
fn to_len(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

impl Benchmark {
    /// Check `config` and draw its data with `seed` (a `shared_prefix.seed` in the file wins for
    /// the shared-prefix data, as it seeds inference-perf's generator; send times always follow
    /// `seed`, inference-perf's timers being unseeded).
    pub fn from_config(config: &Config, seed: u64) -> Result<Benchmark, IpError> {
        refuse_unsupported(config)?;
        let load = config.load.kind;
        let data_trace = match &config.data.trace {
            Some(t) => Some(read_trace(&t.file, "data.trace.file")?),
            None => None,
        };
        let trace_times: Vec<f64> = match (&config.load.trace, load) {
            (Some(t), LoadType::TraceReplay) => read_trace(&t.file, "load.trace.file")?
                .iter()
                .map(|e| e.at)
                .collect(),
            _ => Vec::new(),
        };
        let mut stages = stages(config)?;
        if let Some(entries) = &data_trace {
            // run_stage: with a data trace, a stage sends the trace's request count.
            for s in &mut stages {
                s.requests = entries.len();
            }
        }
        for (i, st) in stages.iter().enumerate() {
            // More requests than the timer yields: next(time_generator) raises in inference-perf.
            let times = match load {
                LoadType::TraceReplay => Some(trace_times.len()),
                LoadType::Constant => Some(timer::request_count(st.rate, st.duration)),
                _ => None,
            };
            if let Some(times) = times.filter(|&t| st.requests > t) {
                return Err(invalid(
                    &format!("load.stages[{i}]"),
                    format!(
                        "the stage sends {} requests (the data trace's count) but its timer yields \
                         only {times} send times",
                        st.requests
                    ),
                ));
            }
        }
        let data_trace_count = data_trace.as_ref().map(Vec::len);
        let data = match data_trace {
            Some(entries) => Data::Lengths {
                input: entries.iter().map(|e| e.input).collect(),
                output: entries.iter().map(|e| e.output).collect(),
            },
            None => data(&config.data, &stages, seed)?,
        };
        let lifecycle = &config.report.request_lifecycle;
        if let Some(p) = lifecycle
            .percentiles
            .iter()
            .find(|p| !(0.0..=100.0).contains(*p))
        {
            return Err(invalid(
                "report.request_lifecycle.percentiles",
                format!("{p} is not within 0..100"),
            ));
        }
        if !config.load.interval.is_finite() || config.load.interval < 0.0 {
            return Err(invalid("load.interval", "must be a number of seconds >= 0"));
        }
        let max_in_flight = match load {
            LoadType::Concurrent => None,
            _ => config
                .load
                .num_workers
                .map(|w| w.max(1) * config.load.worker_max_concurrency.max(1)),
        };
        Ok(Benchmark {
            load,
            stages,
            interval: config.load.interval,
            ignore_eos: config.server.as_ref().is_none_or(|s| s.ignore_eos),
            streaming: config.api.streaming,
            percentiles: lifecycle.percentiles.clone(),
            summary: lifecycle.summary.unwrap_or(false),
            per_stage: lifecycle.per_stage.unwrap_or(false),
            max_in_flight,
            trace_times,
            sweep: config.load.sweep,
            data_trace_count,
            goodput: config.report.goodput.as_ref().and_then(|g| {
                let c = &g.constraints;
                let slo = Slo {
                    ttft: c.get("ttft").copied(),
                    tpot: c.get("tpot").copied(),
                    itl: c.get("itl").copied(),
                    ntpot: c.get("ntpot").copied(),
                    request_latency: c.get("request_latency").copied(),
                };
                // calculate_goodput_metrics: no constraints, no goodput section.
                (!c.is_empty()).then_some(slo)
            }),
            data,
            seed,
        })
    }

    /// Stage `s`'s arrivals (times from the stage's first possible send) and what holds them back.
    /// `rng` draws the send times.
    pub fn stage_plan(&self, s: usize, rng: &mut Xoshiro256PlusPlus) -> (LevelPlan, Gates) {
        self.stage_plan_within(s, rng, None)
    }

    /// [`Benchmark::stage_plan`] for servers whose context holds `context_limit` tokens: a
    /// multi-turn prompt that with its `max_tokens` no longer fits is refused whatever its tokens,
    /// so from there on it is carried by its length alone (a conversation only grows), which keeps
    /// long multi-turn runs from holding every round's ids.
    pub fn stage_plan_within(
        &self,
        s: usize,
        rng: &mut Xoshiro256PlusPlus,
        context_limit: Option<u32>,
    ) -> (LevelPlan, Gates) {
        match self.stages.get(s) {
            Some(stage) => self.plan_for(s, stage, rng, context_limit),
            None => (LevelPlan::default(), Gates::default()),
        }
    }

    /// The arrivals of `stage`, numbered `s` (which keeps its made-up answers apart from other
    /// stages').
    fn plan_for(
        &self,
        s: usize,
        stage: &StageSpec,
        rng: &mut Xoshiro256PlusPlus,
        context_limit: Option<u32>,
    ) -> (LevelPlan, Gates) {
        let mut times = match self.load {
            LoadType::Poisson => timer::poisson(stage.rate, stage.requests, rng),
            LoadType::TraceReplay => self.trace_times.clone(),
            _ => timer::constant(stage.rate, stage.duration, 0.0, rng),
        };
        times.truncate(stage.requests);
        let mut gates = Gates {
            after: Vec::new(),
            max_in_flight: stage.concurrency.or(self.max_in_flight),
        };
        let spec = |prompt: Prompt, max_tokens: u32| RequestSpec {
            prompt,
            max_tokens: max_tokens.max(1),
            ignore_eos: self.ignore_eos,
            min_tokens: 0,
        };
        let arrivals: Vec<Arrival> = match &self.data {
            Data::Lengths { input, output } => times
                .iter()
                .enumerate()
                .map(|(i, &at)| Arrival {
                    at,
                    request: spec(Prompt::Tokens(input[i].max(1)), output[i]),
                })
                .collect(),
            Data::SharedPrefix {
                prompts,
                outputs,
                multi_turn: false,
            } => times
                .iter()
                .enumerate()
                .map(|(i, &at)| {
                    let k = i % prompts.len();
                    Arrival {
                        at,
                        request: spec(Prompt::Ids(Arc::clone(&prompts[k])), outputs[k]),
                    }
                })
                .collect(),
            Data::SharedPrefix {
                prompts,
                outputs,
                multi_turn: true,
            } => {
                let n = prompts.len();
                let limit = context_limit.map_or(usize::MAX, |l| l as usize);
                let mut history: Vec<Option<Turn>> = vec![None; n];
                gates.after = vec![None; times.len()];
                times
                    .iter()
                    .enumerate()
                    .map(|(i, &at)| {
                        let (u, round) = (i % n, i / n);
                        let answer = outputs[u] as usize;
                        let turn = match &history[u] {
                            None => Turn::Ids(Arc::clone(&prompts[u])),
                            Some(prev) => {
                                let len = prev.len() + answer + prompts[u].len();
                                match prev {
                                    Turn::Ids(prev) if len + answer <= limit => {
                                        // The previous prompt, its answer (stand-in ids of the
                                        // length asked for: exact with ignore_eos), then the
                                        // question again.
                                        let tag = TAG_ANSWER
                                            ^ ((s as u64) << 44)
                                            ^ ((u as u64) << 20)
                                            ^ round as u64;
                                        let mut v = Vec::with_capacity(len);
                                        v.extend_from_slice(prev);
                                        v.extend(token_ids(tag, answer));
                                        v.extend_from_slice(&prompts[u]);
                                        Turn::Ids(v.into())
                                    }
                                    _ => Turn::Len(len),
                                }
                            }
                        };
                        if round > 0 {
                            gates.after[i] = Some(i - n);
                        }
                        let prompt = match &turn {
                            Turn::Ids(ids) => Prompt::Ids(Arc::clone(ids)),
                            Turn::Len(len) => Prompt::Tokens(to_len(*len as i64)),
                        };
                        history[u] = Some(turn);
                        Arrival {
                            at,
                            request: spec(prompt, outputs[u]),
                        }
                    })
                    .collect()
            }
        };
        let plan = LevelPlan {
            arrivals,
            record_event_times: self.streaming,
            ..LevelPlan::default()
        };
        (plan, gates)
    }

    /// A sweep's probe (`preprocess`: stage −1, `num_requests` over 5 s) and its plan.
    pub fn probe_plan(
        &self,
        rng: &mut Xoshiro256PlusPlus,
        context_limit: Option<u32>,
    ) -> Result<(StageSpec, LevelPlan, Gates), IpError> {
        let Some(sweep) = &self.sweep else {
            return Err(invalid("load.sweep", "no sweep configured"));
        };
        let rate = sweep.num_requests as f64 / 5.0;
        let spec = StageSpec {
            rate,
            duration: 5.0,
            requests: self
                .data_trace_count
                .unwrap_or_else(|| timer::request_count(rate, 5.0)),
            concurrency: None,
        };
        self.check_lengths(&spec, "load.sweep.num_requests")?;
        let (plan, gates) = self.plan_for(usize::from(u16::MAX), &spec, rng, context_limit);
        Ok((spec, plan, gates))
    }

    /// The stages a sweep makes from the probe's saturation point (`generateRates`): `linear`,
    /// `num_stages` rates evenly from 1 to it; `geometric`, `1 + S − g` for `g` geometrically
    /// from S down to 1, so the stages crowd near the saturation. Rates rounded to 2 decimals.
    pub fn swept(&self, saturation: f64) -> Result<Benchmark, IpError> {
        let Some(sweep) = &self.sweep else {
            return Err(invalid("load.sweep", "no sweep configured"));
        };
        let n = sweep.num_stages;
        let at = |i: usize| {
            if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            }
        };
        let rates: Vec<f64> = (0..n)
            .map(|i| {
                let r = match sweep.kind {
                    StageGenType::Linear => 1.0 + (saturation - 1.0) * at(i),
                    // np.geomspace(S, 1, num=n)[i] = S · (1/S)^(i/(n−1)).
                    StageGenType::Geometric => {
                        1.0 + saturation - saturation * (1.0 / saturation).powf(at(i))
                    }
                };
                (r * 100.0).round() / 100.0
            })
            .collect();
        if let Some(r) = rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            return Err(invalid(
                "load.sweep",
                format!(
                    "the saturation point {saturation:.2} gives a stage rate of {r} (rates must be > 0)"
                ),
            ));
        }
        let duration = sweep.stage_duration as f64;
        let mut out = self.clone();
        out.stages = rates
            .iter()
            .map(|&rate| StageSpec {
                rate,
                duration,
                requests: self
                    .data_trace_count
                    .unwrap_or_else(|| timer::request_count(rate, duration)),
                concurrency: None,
            })
            .collect();
        for st in &out.stages {
            out.check_lengths(st, "load.sweep")?;
        }
        out.sweep = None;
        Ok(out)
    }

    /// Random/synthetic lengths run out past `total_count` (inference-perf fails those requests).
    fn check_lengths(&self, st: &StageSpec, field: &str) -> Result<(), IpError> {
        if let Data::Lengths { input, output } = &self.data
            && st.requests > input.len().min(output.len())
        {
            return Err(invalid(
                field,
                format!(
                    "a stage of {} requests needs more lengths than the {} drawn; inference-perf \
                     would fail the requests past them",
                    st.requests,
                    input.len().min(output.len())
                ),
            ));
        }
        Ok(())
    }

    /// The seed the send times are drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// A trace file, read relative to the working folder as inference-perf opens it.
fn read_trace(path: &str, field: &str) -> Result<Vec<super::trace::TraceEntry>, IpError> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(field, format!("{path}: {e}")))?;
    let entries = super::trace::parse(&text);
    if entries.is_empty() {
        return Err(invalid(field, format!("{path}: no trace lines")));
    }
    Ok(entries)
}

/// Fields inference-perf accepts that would change the run in ways servesim does not simulate.
fn refuse_unsupported(config: &Config) -> Result<(), IpError> {
    let data = &config.data;
    match data.kind {
        DataType::SharedPrefix | DataType::Random | DataType::Synthetic => {}
        DataType::Mock => {
            return Err(unsupported(
                "data.type",
                "'mock' (inference-perf's default when data is absent) sends placeholder prompts; \
                 set data.type to shared_prefix, random or synthetic",
            ));
        }
        DataType::ShareGpt
        | DataType::CnnDailyMail
        | DataType::InfinityInstruct
        | DataType::BillsumConversations
        | DataType::VisionArena => {
            let path = data
                .path
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            return Err(unsupported(
                "data.type",
                format!(
                    "'{}' reads a real dataset{path} whose prompts servesim cannot simulate; use \
                     shared_prefix, random or synthetic with lengths like the dataset's",
                    data.kind.name()
                ),
            ));
        }
        DataType::OtelTraceReplay
        | DataType::WekaTraceReplay
        | DataType::ConversationReplay
        | DataType::SyntheticAgentic => {
            return Err(unsupported(
                "data.type",
                format!(
                    "'{}' replays sessions from trace files; servesim simulates shared_prefix, \
                     random and synthetic (for a request trace see `simulate --trace`)",
                    data.kind.name()
                ),
            ));
        }
    }
    let present = [
        ("data.multimodal", data.multimodal.is_some()),
        (
            "data.shared_prefix.multimodal",
            data.shared_prefix
                .as_ref()
                .is_some_and(|s| s.multimodal.is_some()),
        ),
        (
            "load.lora_traffic_split",
            config.load.lora_traffic_split.is_some(),
        ),
        (
            "load.request_timeout",
            config.load.request_timeout.is_some(),
        ),
    ];
    if let Some((field, _)) = present.iter().find(|(_, on)| *on) {
        let why = match *field {
            "data.multimodal" | "data.shared_prefix.multimodal" => {
                "images, video and audio are not simulated"
            }
            "load.lora_traffic_split" => "LoRA adapters are not simulated",
            _ => "client-side timeouts are not simulated",
        };
        return Err(unsupported(field, why));
    }
    match config.load.kind {
        LoadType::Constant | LoadType::Poisson | LoadType::Concurrent | LoadType::TraceReplay => {}
        LoadType::TraceSessionReplay => {
            return Err(unsupported(
                "load.type",
                "'trace_session_replay' is not simulated (constant, poisson, concurrent and \
                 trace_replay are)",
            ));
        }
    }
    if config.load.sweep.is_some()
        && matches!(
            config.load.kind,
            LoadType::Concurrent | LoadType::TraceSessionReplay
        )
    {
        // LoadConfig.validate_load_config.
        return Err(invalid(
            "load.sweep",
            format!(
                "cannot have sweep config with {} load type",
                config.load.kind.name().to_uppercase()
            ),
        ));
    }
    if config.load.kind == LoadType::TraceReplay && config.load.trace.is_none() {
        // LoadGenerator.__init__: "Trace file is required for trace replay load generator".
        return Err(invalid(
            "load.trace",
            "the trace_replay load type needs a trace file",
        ));
    }
    if data.trace.is_some() && data.kind != DataType::Random {
        return Err(unsupported(
            "data.trace",
            "only the random data type reads lengths from a trace",
        ));
    }
    if config.api.kind == ApiType::AnthropicMessages {
        return Err(unsupported(
            "api.type",
            "anthropic_messages is not simulated (completion and chat are)",
        ));
    }
    if matches!(data.kind, DataType::Random | DataType::Synthetic)
        && config.api.kind != ApiType::Completion
    {
        // RandomDataGenerator / SyntheticDataGenerator.get_supported_apis: [Completion].
        return Err(invalid(
            "api.type",
            format!(
                "the {} data type supports only the completion API",
                data.kind.name()
            ),
        ));
    }
    if data.use_chat_template && data.kind != DataType::Random {
        // DataConfig.validate_use_chat_template_scope.
        return Err(invalid(
            "data.use_chat_template",
            "only supported by the 'random' data generator",
        ));
    }
    Ok(())
}

/// `load.stages`, checked against `load.type` as `LoadConfig.validate_load_config` and the stage
/// models do.
fn stages(config: &Config) -> Result<Vec<StageSpec>, IpError> {
    let load = &config.load;
    if load.stages.is_empty() && load.sweep.is_none() {
        return Err(invalid("load.stages", "no stages to run"));
    }
    load.stages
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let field = format!("load.stages[{i}]");
            if load.kind == LoadType::Concurrent {
                let (Some(n), Some(c)) = (st.num_requests, st.concurrency_level) else {
                    return Err(invalid(
                        &field,
                        "a concurrent stage needs num_requests and concurrency_level",
                    ));
                };
                if n == 0 || c == 0 {
                    return Err(invalid(
                        &field,
                        "num_requests and concurrency_level must be > 0",
                    ));
                }
                // main.py: stage.duration = 1; stage.rate = stage.num_requests.
                Ok(StageSpec {
                    rate: n as f64,
                    duration: 1.0,
                    requests: n as usize,
                    concurrency: Some(c as usize),
                })
            } else {
                if st.num_requests.is_some() || st.concurrency_level.is_some() {
                    return Err(invalid(
                        &field,
                        "num_requests and concurrency_level should not be set for CONSTANT/POISSON \
                         load types",
                    ));
                }
                let (Some(rate), Some(duration)) = (st.rate, st.duration) else {
                    return Err(invalid(&field, "a stage needs rate and duration"));
                };
                if !(rate.is_finite() && rate > 0.0 && duration.is_finite() && duration > 0.0) {
                    return Err(invalid(&field, "rate and duration must be > 0"));
                }
                if duration.fract() != 0.0 {
                    return Err(invalid(&field, "duration is a whole number of seconds"));
                }
                Ok(StageSpec {
                    rate,
                    duration,
                    requests: timer::request_count(rate, duration),
                    concurrency: None,
                })
            }
        })
        .collect()
}

/// A length field as a distribution: an inline distribution, else the legacy one, else the fixed
/// number (`SharedPrefixDataGenerator._resolve_distribution`).
fn resolve(
    len: Length,
    legacy: Option<Distribution>,
    field: &str,
) -> Result<Distribution, IpError> {
    match (len, legacy) {
        (Length::Dist(_), Some(_)) => Err(invalid(
            field,
            "cannot specify both an inline distribution and the legacy *_distribution field",
        )),
        (Length::Dist(d), None) => d.checked(field),
        (Length::Fixed(_), Some(d)) => d.checked(field),
        (Length::Fixed(n), None) => Ok(Distribution::fixed(n)),
    }
}

/// The `random`/`synthetic` lengths or the `shared_prefix` prompts, drawn with `seed`.
fn data(data: &DataConfig, stages: &[StageSpec], seed: u64) -> Result<Data, IpError> {
    match data.kind {
        DataType::SharedPrefix => {
            let Some(sp) = &data.shared_prefix else {
                return Err(invalid(
                    "data.shared_prefix",
                    "the shared_prefix data type needs this section",
                ));
            };
            shared_prefix(sp, seed)
        }
        _ => {
            let field_in = "data.input_distribution";
            let field_out = "data.output_distribution";
            let (Some(input), Some(output)) = (data.input_distribution, data.output_distribution)
            else {
                return Err(invalid(
                    field_in,
                    format!(
                        "the {} data type needs input_distribution and output_distribution",
                        data.kind.name()
                    ),
                ));
            };
            let input = input.checked(field_in)?;
            let output = output.checked(field_out)?;
            let (Some(n_in), Some(n_out)) = (input.total_count, output.total_count) else {
                return Err(invalid(
                    field_in,
                    "IODistribution requires total_count to be set (in both distributions)",
                ));
            };
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let input = generate_distribution(&input, n_in as usize, &mut rng, field_in)?;
            let output = generate_distribution(&output, n_out as usize, &mut rng, field_out)?;
            let have = input.len().min(output.len());
            if let Some((i, st)) = stages.iter().enumerate().find(|(_, s)| s.requests > have) {
                // load_lazy_data indexes input_lengths[n] with n counting from 0 each stage: past
                // total_count inference-perf fails the request.
                return Err(invalid(
                    "data.input_distribution.total_count",
                    format!(
                        "stage {i} sends {} requests but only {have} lengths are drawn; \
                         inference-perf would fail the requests past them",
                        st.requests
                    ),
                ));
            }
            Ok(Data::Lengths {
                input: input.into_iter().map(to_len).collect(),
                output: output.into_iter().map(to_len).collect(),
            })
        }
    }
}

/// `SharedPrefixDataGenerator`: groups, prompts and output lengths, shuffled once.
fn shared_prefix(sp: &SharedPrefix, seed: u64) -> Result<Data, IpError> {
    let groups = sp.num_unique_system_prompts;
    let per_group = sp.num_users_per_system_prompt;
    if groups == 0 || per_group == 0 {
        return Err(invalid(
            "data.shared_prefix",
            "num_unique_system_prompts and num_users_per_system_prompt must be >= 1",
        ));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(sp.seed.unwrap_or(seed));
    let sys = resolve(
        sp.system_prompt_len,
        None,
        "data.shared_prefix.system_prompt_len",
    )?;
    let question = resolve(
        sp.question_len,
        sp.question_distribution,
        "data.shared_prefix.question_len",
    )?;
    let output = resolve(
        sp.output_len,
        sp.output_distribution,
        "data.shared_prefix.output_len",
    )?;
    let sys_lens = sample_from_distribution(
        &sys,
        groups,
        &mut rng,
        "data.shared_prefix.system_prompt_len",
    )?;
    let mut prompts: Vec<Arc<[u32]>> = Vec::with_capacity(groups * per_group);
    let mut outputs = Vec::with_capacity(groups * per_group);
    for (g, &sys_len) in sys_lens.iter().enumerate() {
        let q_lens = sample_from_distribution(
            &question,
            per_group,
            &mut rng,
            "data.shared_prefix.question_len",
        )?;
        let o_lens = sample_from_distribution(
            &output,
            per_group,
            &mut rng,
            "data.shared_prefix.output_len",
        )?;
        let system: Vec<u32> = token_ids(TAG_SYSTEM ^ g as u64, to_len(sys_len) as usize).collect();
        for (p, (&q, &o)) in q_lens.iter().zip(&o_lens).enumerate() {
            let mut ids = system.clone();
            ids.extend(token_ids(
                TAG_QUESTION ^ ((g as u64) << 24) ^ p as u64,
                to_len(q) as usize,
            ));
            prompts.push(ids.into());
            outputs.push(to_len(o));
        }
    }
    // `rng.permutation(len(prompts))`: one shuffle, prompts and outputs alike.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let prompts = order.iter().map(|&i| Arc::clone(&prompts[i])).collect();
    let outputs = order.iter().map(|&i| outputs[i]).collect();
    Ok(Data::SharedPrefix {
        prompts,
        outputs,
        multi_turn: sp.enable_multi_turn_chat,
    })
}
