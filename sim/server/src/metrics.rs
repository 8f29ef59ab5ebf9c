//! `/metrics`: vLLM's metric families (names, types and labels as vLLM 0.32 exposes them) kept with
//! the `prometheus-client` crate, plus servesim's own emission-lag histogram. The engine driver
//! updates them as iterations end; engine-side durations are in simulated seconds, so they read the
//! same whatever `--time-scale` is.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use servesim_models::{Derived, IterationCost, Profile};

use servesim_sim::engine_core::{EngineStats, Finished};
use servesim_sim::request::FinishReason;

/// vLLM's request-latency buckets (e2e, queue, prefill, decode, inference time), seconds.
const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// vLLM's TTFT buckets, seconds.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's inter-token-latency buckets, seconds.
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's buckets for the `n` sampling parameter.
const REQUEST_PARAMS_N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// vLLM's `vllm:num_requests_waiting_by_reason` reasons.
const WAITING_CAPACITY: &str = "capacity";
const WAITING_DEFERRED: &str = "deferred";
/// vLLM's `vllm:engine_sleep_state` states (servesim's engine is always awake).
const SLEEP_STATES: [(&str, i64); 3] = [("awake", 1), ("weights_offloaded", 0), ("discard_all", 0)];
/// vLLM's prompt-token sources (`PromptTokenStats.ALL_SOURCES`).
const PROMPT_SOURCES: [&str; 3] = ["local_compute", "local_cache_hit", "external_kv_transfer"];
/// vLLM's cache-hit tiers (`CacheHitSource`).
const CACHE_HIT_SOURCES: [&str; 5] = ["device", "host", "p2p", "disk", "external_unspecified"];
/// vLLM's admission-rejection reasons (`ADMISSION_REASONS`); servesim's `--max-waiting` is
/// vLLM's `--max-num-queued-reqs`.
const ADMISSION_QUEUED_REQS: &str = "max_num_queued_reqs";
const ADMISSION_REASONS: [&str; 2] = [ADMISSION_QUEUED_REQS, "max_num_queued_tokens"];

/// Emission-lag buckets, seconds (servesim's own metric: how late tokens leave the server).
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// vLLM's 1-2-5 token-count buckets up to `max`.
fn one_two_five(max: u32) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1u64;
    'outer: loop {
        for m in [1, 2, 5] {
            let v = m * scale;
            if v > u64::from(max) {
                break 'outer;
            }
            out.push(v as f64);
        }
        scale *= 10;
    }
    out
}

type Labels = Vec<(&'static str, &'static str)>;
/// Labels with owned values (the model name, the cache configuration).
type OwnedLabels = Vec<(&'static str, String)>;
type FloatCounter = Counter<f64, AtomicU64>;

/// A float as Python's `str()` writes it (`0.9`, `1.0`), for info labels.
fn py_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Python's `str()` of a bool.
fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// Every metric the server exposes, grouped by concern; the groups register their families in
/// this order, which is the order `/metrics` lists them in.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    model_name: String,
    /// Labelled `model_name` or `engine` only, as in vLLM (registered at the root).
    server: ServerFamilies,
    engine: EngineFamilies,
    requests: RequestHistograms,
    breakdowns: Breakdowns,
    cost: CostEstimates,
    params: RequestParams,
    /// servesim's own: how late tokens leave the server.
    emission_lag: Histogram,
}

/// The families vLLM registers without the usual `engine` + `model_name` pair.
#[derive(Debug)]
struct ServerFamilies {
    cache_config_info: Family<OwnedLabels, Gauge>,
    admission_rejections: Family<OwnedLabels, Counter>,
}

impl ServerFamilies {
    /// Every admission-rejection reason exposed from the start, at zero, as vLLM does.
    fn new(model_name: &str) -> ServerFamilies {
        let f = ServerFamilies {
            cache_config_info: Family::default(),
            admission_rejections: Family::default(),
        };
        for reason in ADMISSION_REASONS {
            let _ = f.admission_rejections.get_or_create(&vec![
                ("model_name", model_name.to_string()),
                ("reason", reason.to_string()),
            ]);
        }
        f
    }

    fn register(&self, root: &mut Registry) {
        root.register(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            self.cache_config_info.clone(),
        );
        root.register(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason",
            self.admission_rejections.clone(),
        );
    }
}

/// The engine's state (running, waiting, KV usage) and running totals (tokens, preemptions,
/// prefix-cache queries and hits, finished requests).
#[derive(Debug)]
struct EngineFamilies {
    running: Gauge,
    waiting: Gauge,
    kv_usage: Gauge<f64, AtomicU64>,
    prefix_cache_queries: Counter,
    prefix_cache_hits: Counter,
    preemptions: Counter,
    prompt_tokens: Counter,
    generation_tokens: Counter,
    success: Family<Labels, Counter>,
}

impl EngineFamilies {
    /// Like vLLM, every finished reason is exposed from the start, at zero.
    fn new() -> EngineFamilies {
        let f = EngineFamilies {
            running: Gauge::default(),
            waiting: Gauge::default(),
            kv_usage: Gauge::default(),
            prefix_cache_queries: Counter::default(),
            prefix_cache_hits: Counter::default(),
            preemptions: Counter::default(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            success: Family::default(),
        };
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::Abort,
        ] {
            let _ = f
                .success
                .get_or_create(&vec![("finished_reason", reason.as_str())]);
        }
        f
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "vllm:num_requests_running",
            "Number of requests in model execution batches",
            self.running.clone(),
        );
        r.register(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed",
            self.waiting.clone(),
        );
        r.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage",
            self.kv_usage.clone(),
        );
        r.register(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens",
            self.prefix_cache_queries.clone(),
        );
        r.register(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens",
            self.prefix_cache_hits.clone(),
        );
        r.register(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine",
            self.preemptions.clone(),
        );
        r.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            self.prompt_tokens.clone(),
        );
        r.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            self.generation_tokens.clone(),
        );
        r.register(
            "vllm:request_success",
            "Count of successfully processed requests",
            self.success.clone(),
        );
    }
}

/// Per-request latencies (engine seconds) and lengths, and tokens per iteration.
#[derive(Debug)]
struct RequestHistograms {
    ttft: Histogram,
    itl: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    queue: Histogram,
    inference: Histogram,
    prefill: Histogram,
    decode: Histogram,
    prompt_len: Histogram,
    generation_len: Histogram,
    max_tokens: Histogram,
    iteration_tokens: Histogram,
    preemptions_per_request: Histogram,
}

impl RequestHistograms {
    /// vLLM's buckets; token counts in 1-2-5 steps up to `max_model_len`.
    fn new(max_model_len: u32) -> RequestHistograms {
        let tokens = one_two_five(max_model_len);
        RequestHistograms {
            ttft: histogram(TTFT_BUCKETS),
            itl: histogram(ITL_BUCKETS),
            tpot: histogram(ITL_BUCKETS),
            e2e: histogram(REQUEST_LATENCY_BUCKETS),
            queue: histogram(REQUEST_LATENCY_BUCKETS),
            inference: histogram(REQUEST_LATENCY_BUCKETS),
            prefill: histogram(REQUEST_LATENCY_BUCKETS),
            decode: histogram(REQUEST_LATENCY_BUCKETS),
            prompt_len: histogram(&tokens),
            generation_len: histogram(&tokens),
            max_tokens: histogram(&tokens),
            iteration_tokens: histogram(&[
                1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
                16384.0,
            ]),
            preemptions_per_request: histogram(&[0.0, 1.0, 2.0, 5.0, 10.0, 20.0]),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds",
            self.ttft.clone(),
        );
        r.register(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds",
            self.itl.clone(),
        );
        r.register(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request",
            self.tpot.clone(),
        );
        r.register(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds",
            self.e2e.clone(),
        );
        r.register(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request",
            self.queue.clone(),
        );
        r.register(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request",
            self.inference.clone(),
        );
        r.register(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request",
            self.prefill.clone(),
        );
        r.register(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request",
            self.decode.clone(),
        );
        r.register(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed",
            self.prompt_len.clone(),
        );
        r.register(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed",
            self.generation_len.clone(),
        );
        r.register(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter",
            self.max_tokens.clone(),
        );
        r.register(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step",
            self.iteration_tokens.clone(),
        );
        r.register(
            "vllm:request_num_preemptions",
            "Number of preemptions per request",
            self.preemptions_per_request.clone(),
        );
    }
}

/// The labelled breakdowns: waiting requests by reason, the sleep state, prompt tokens by source
/// and cached prompt tokens by cache tier.
#[derive(Debug)]
struct Breakdowns {
    waiting_by_reason: Family<Labels, Gauge>,
    sleep_state: Family<Labels, Gauge>,
    prompt_tokens_by_source: Family<Labels, Counter>,
    prompt_tokens_cached: Counter,
    prompt_tokens_cached_by_source: Family<Labels, Counter>,
}

impl Breakdowns {
    /// The labelled families vLLM creates at start-up, at their initial values. servesim's
    /// waiting requests all wait for capacity (nothing defers them: no LoRA, no KV transfer);
    /// with no prefix cache every prompt token is computed locally and none is cached.
    fn new() -> Breakdowns {
        let f = Breakdowns {
            waiting_by_reason: Family::default(),
            sleep_state: Family::default(),
            prompt_tokens_by_source: Family::default(),
            prompt_tokens_cached: Counter::default(),
            prompt_tokens_cached_by_source: Family::default(),
        };
        for reason in [WAITING_CAPACITY, WAITING_DEFERRED] {
            let _ = f.waiting_by_reason.get_or_create(&vec![("reason", reason)]);
        }
        for (state, value) in SLEEP_STATES {
            f.sleep_state
                .get_or_create(&vec![("sleep_state", state)])
                .set(value);
        }
        for source in PROMPT_SOURCES {
            let _ = f
                .prompt_tokens_by_source
                .get_or_create(&vec![("source", source)]);
        }
        for source in CACHE_HIT_SOURCES {
            let _ = f
                .prompt_tokens_cached_by_source
                .get_or_create(&vec![("source", source)]);
        }
        f
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting",
            self.waiting_by_reason.clone(),
        );
        r.register(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2",
            self.sleep_state.clone(),
        );
        r.register(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source",
            self.prompt_tokens_by_source.clone(),
        );
        r.register(
            "vllm:prompt_tokens_cached",
            "Number of cached prompt tokens (local + external)",
            self.prompt_tokens_cached.clone(),
        );
        r.register(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them",
            self.prompt_tokens_cached_by_source.clone(),
        );
    }
}

/// The cost model's running estimates of FLOPs and bytes moved (vLLM's MFU/MBU counters).
#[derive(Debug, Default)]
struct CostEstimates {
    flops: FloatCounter,
    read_bytes: FloatCounter,
    write_bytes: FloatCounter,
}

impl CostEstimates {
    fn register(&self, r: &mut Registry) {
        r.register(
            "vllm:estimated_flops_per_gpu",
            "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations)",
            self.flops.clone(),
        );
        r.register(
            "vllm:estimated_read_bytes_per_gpu",
            "Estimated number of bytes read from memory per GPU (for Model Bandwidth Utilization calculations)",
            self.read_bytes.clone(),
        );
        r.register(
            "vllm:estimated_write_bytes_per_gpu",
            "Estimated number of bytes written to memory per GPU (for Model Bandwidth Utilization calculations)",
            self.write_bytes.clone(),
        );
    }
}

/// Histograms of what requests asked for: generation limits, `n`, and the KV computed in prefill.
#[derive(Debug)]
struct RequestParams {
    max_generation_tokens: Histogram,
    n: Histogram,
    prefill_kv_computed: Histogram,
}

impl RequestParams {
    fn new(max_model_len: u32) -> RequestParams {
        let tokens = one_two_five(max_model_len);
        RequestParams {
            max_generation_tokens: histogram(&tokens),
            n: histogram(REQUEST_PARAMS_N_BUCKETS),
            prefill_kv_computed: histogram(&tokens),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens",
            self.max_generation_tokens.clone(),
        );
        r.register(
            "vllm:request_params_n",
            "Histogram of the n request parameter",
            self.n.clone(),
        );
        r.register(
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens)",
            self.prefill_kv_computed.clone(),
        );
    }
}

fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

impl Metrics {
    /// Metrics labelled `engine="0"`, `model_name=MODEL`; token buckets go up to `max_model_len`.
    /// (`vllm:admission_rejections` carries only `model_name` and `vllm:cache_config_info` only
    /// `engine`, as in vLLM; the latter gets its series from [`Metrics::cache_config`].)
    pub fn new(model_name: &str, max_model_len: u32) -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            model_name: model_name.to_string(),
            server: ServerFamilies::new(model_name),
            engine: EngineFamilies::new(),
            requests: RequestHistograms::new(max_model_len),
            breakdowns: Breakdowns::new(),
            cost: CostEstimates::default(),
            params: RequestParams::new(max_model_len),
            emission_lag: histogram(LAG_BUCKETS),
        };
        m.registry = m.registry();
        m
    }

    /// The registry of every family: the server's at the root, the rest labelled `engine` and
    /// `model_name`.
    fn registry(&self) -> Registry {
        let mut root = Registry::default();
        self.server.register(&mut root);
        let labels = [
            (Cow::Borrowed("engine"), Cow::Borrowed("0")),
            (
                Cow::Borrowed("model_name"),
                Cow::Owned(self.model_name.clone()),
            ),
        ];
        let r = root.sub_registry_with_labels(labels.into_iter());
        self.engine.register(r);
        self.requests.register(r);
        self.breakdowns.register(r);
        self.cost.register(r);
        self.params.register(r);
        r.register(
            "servesim:emission_lag_seconds",
            "Actual minus scheduled send time of streamed tokens (servesim)",
            self.emission_lag.clone(),
        );
        root
    }

    /// Expose `vllm:cache_config_info` (a gauge at 1 whose labels are vLLM's `CacheConfig` fields)
    /// for `profile`. Fields servesim models come from the profile and its derived figures; the
    /// others carry what vLLM 0.32 prints for its default (`None`, `False`, `auto`, ...).
    pub fn cache_config(&self, profile: &Profile, derived: &Derived) {
        let e = &profile.engine;
        let none = || "None".to_string();
        let block = e.block_size.to_string();
        let concurrency = derived.kv_tokens as f64 / f64::from(derived.max_model_len.max(1));
        let labels: OwnedLabels = vec![
            ("block_size", block.clone()),
            // vLLM's default block size is 16; another one must have been asked for.
            ("user_specified_block_size", py_bool(e.block_size != 16)),
            ("kv_cache_layout", none()),
            ("prefix_match_unit", none()),
            ("gpu_memory_utilization", py_float(e.gpu_memory_utilization)),
            ("cache_dtype", e.kv_cache_dtype.as_str().into()),
            ("is_attention_free", py_bool(false)),
            (
                "num_gpu_blocks_override",
                e.num_gpu_blocks_override
                    .map_or_else(none, |n| n.to_string()),
            ),
            ("sliding_window", none()),
            ("enable_prefix_caching", py_bool(e.enable_prefix_caching)),
            ("prefix_caching_hash_algo", "sha256".into()),
            ("prefix_cache_retention_interval", "0".into()),
            ("kv_cache_dtype_skip_layers", "[]".into()),
            ("mamba_page_size_padded", none()),
            ("skip_page_size_padded", none()),
            ("mamba_block_size", none()),
            ("mamba_cache_dtype", "auto".into()),
            ("mamba_ssm_cache_dtype", "auto".into()),
            ("mamba_cache_mode", "none".into()),
            ("enable_mamba_shared_prefix_checkpoint", py_bool(false)),
            ("replayssm_buffer_len", "16".into()),
            ("use_replayssm", py_bool(false)),
            ("use_kda_recoverssm", py_bool(false)),
            ("num_gpu_blocks", derived.kv_blocks.to_string()),
            // No CPU swap space is modelled.
            ("num_cpu_blocks", none()),
            ("effective_attention_block_size", block),
            ("kv_cache_size_tokens", derived.kv_tokens.to_string()),
            ("kv_cache_max_concurrency", py_float(concurrency)),
            ("hash_block_size", none()),
            ("cache_hit_alignment_tokens", none()),
            ("kv_sharing_fast_prefill", py_bool(false)),
            ("swa_bounded_replay", py_bool(true)),
            // `--kv-cache-memory` (bytes given instead of a utilisation): not used.
            ("kv_cache_memory_bytes", none()),
            ("kv_offloading_size", none()),
            ("kv_offloading_backend", "native".into()),
            ("_block_size_resolved", py_bool(true)),
            ("engine", "0".into()),
        ];
        self.server.cache_config_info.clear();
        self.server.cache_config_info.get_or_create(&labels).set(1);
    }

    /// A request refused because the waiting queue is at its bound (`--max-waiting`, vLLM's
    /// `--max-num-queued-reqs`).
    pub fn admission_rejected(&self) {
        self.server
            .admission_rejections
            .get_or_create(&vec![
                ("model_name", self.model_name.clone()),
                ("reason", ADMISSION_QUEUED_REQS.to_string()),
            ])
            .inc();
    }

    /// Set the gauges and advance the counters to the engine's current figures.
    pub fn engine_stats(&self, s: &EngineStats) {
        self.engine.running.set(s.running as i64);
        self.engine.waiting.set(s.waiting as i64);
        self.engine.kv_usage.set(s.kv_usage);
        self.breakdowns
            .waiting_by_reason
            .get_or_create(&vec![("reason", WAITING_CAPACITY)])
            .set(s.waiting as i64);
        // Counters only move forward; the engine's totals are monotone, so add the difference.
        let bump = |c: &Counter, total: u64| {
            let now = c.get();
            if total > now {
                c.inc_by(total - now);
            }
        };
        bump(&self.engine.preemptions, s.preemptions_total);
        bump(&self.engine.prompt_tokens, s.prompt_tokens_total);
        let source = |name| {
            self.breakdowns
                .prompt_tokens_by_source
                .get_or_create(&vec![("source", name)])
        };
        bump(
            &source("local_compute"),
            s.prompt_tokens_total - s.prompt_tokens_cached_total,
        );
        bump(&source("local_cache_hit"), s.prompt_tokens_cached_total);
        bump(
            &self.breakdowns.prompt_tokens_cached,
            s.prompt_tokens_cached_total,
        );
        bump(&self.engine.prefix_cache_queries, s.prefix_cache_queries);
        bump(&self.engine.prefix_cache_hits, s.prefix_cache_hits);
        bump(
            &self
                .breakdowns
                .prompt_tokens_cached_by_source
                .get_or_create(&vec![("source", "device")]),
            s.prefix_cache_hits,
        );
        bump(&self.engine.generation_tokens, s.generation_tokens_total);
    }

    /// One iteration's computed tokens and its cost-model estimate of FLOPs, bytes read (weights
    /// and KV cache) and bytes written (the new tokens' K and V), all on servesim's single GPU.
    pub fn iteration(&self, tokens: u32, cost: &IterationCost) {
        self.requests.iteration_tokens.observe(f64::from(tokens));
        self.cost.flops.inc_by(cost.flops);
        self.cost.read_bytes.inc_by(cost.bytes);
        self.cost.write_bytes.inc_by(cost.written_bytes);
    }

    /// The gap between two tokens of one request (engine seconds).
    pub fn inter_token(&self, gap: f64) {
        self.requests.itl.observe(gap);
    }

    /// A request's `max_tokens` as the engine got it.
    pub fn request_params(&self, max_tokens: u32) {
        self.requests.max_tokens.observe(f64::from(max_tokens));
    }

    /// A request that ended in the engine with its timings.
    pub fn finished(&self, f: &Finished) {
        self.count_finish(f.reason);
        self.requests.ttft.observe(f.first_token - f.arrival);
        self.requests.e2e.observe(f.end - f.arrival);
        self.requests.queue.observe(f.first_scheduled - f.arrival);
        self.requests.inference.observe(f.end - f.first_scheduled);
        self.requests
            .prefill
            .observe(f.first_token - f.first_scheduled);
        self.requests.decode.observe(f.end - f.first_token);
        if f.generated > 1 {
            self.requests
                .tpot
                .observe((f.end - f.first_token) / f64::from(f.generated - 1));
        }
        self.requests.prompt_len.observe(f64::from(f.prompt_tokens));
        self.params
            .max_generation_tokens
            .observe(f64::from(f.max_tokens));
        // n > 1 is refused, so every request asked for one choice.
        self.params.n.observe(1.0);
        // Prefill computes the KV of the prompt tokens the prefix cache did not hold.
        self.params
            .prefill_kv_computed
            .observe(f64::from(f.prompt_tokens - f.cached_tokens));
        self.requests.generation_len.observe(f64::from(f.generated));
        self.requests
            .preemptions_per_request
            .observe(f64::from(f.preemptions));
    }

    /// A request that left the engine for `reason` (aborts and server-side stops included).
    pub fn count_finish(&self, reason: FinishReason) {
        self.engine
            .success
            .get_or_create(&vec![("finished_reason", reason.as_str())])
            .inc();
    }

    /// How late one token left the server, seconds.
    pub fn emission_lag(&self, lag: f64) {
        self.emission_lag.observe(lag);
    }

    /// The Prometheus/OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        openmetrics_to_prometheus(&out)
    }
}

/// The content type of [`Metrics::render`]'s text, as vLLM 0.32's Python client sends it.
pub const CONTENT_TYPE: &str = "text/plain; version=1.0.0; charset=utf-8";

/// The Prometheus text format from the encoder's OpenMetrics text: the samples are the same; a
/// counter's `# HELP` and `# TYPE` lines name it with its `_total` suffix (as the Python client
/// writes them), and OpenMetrics' `# UNIT` and `# EOF` lines go.
pub(crate) fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len() + 16 * counters.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vllm_names_and_labels() {
        let m = Metrics::new("local", 2048);
        m.engine_stats(&EngineStats {
            running: 3,
            prompt_tokens_total: 10,
            ..EngineStats::default()
        });
        m.count_finish(FinishReason::Length);
        let text = m.render();
        assert!(
            text.contains("vllm:num_requests_running{engine=\"0\",model_name=\"local\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("vllm:prompt_tokens_total{engine=\"0\",model_name=\"local\"} 10"),
            "{text}"
        );
        assert!(text.contains("vllm:request_success_total{engine=\"0\",model_name=\"local\",finished_reason=\"length\"} 1"), "{text}");
        assert!(
            text.contains("# TYPE vllm:time_to_first_token_seconds histogram"),
            "{text}"
        );
        // Prometheus text, as vLLM's Python client writes it: counters typed under `_total`.
        assert!(
            text.contains("# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\n"),
            "{text}"
        );
        assert!(
            !text.contains("# TYPE vllm:request_success counter"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn vllm_0_32_families_with_their_types_labels_and_values() {
        let profile = Profile::load(servesim_models::DEFAULT_PROFILE).expect("default profile");
        let derived = profile.derive().expect("derived figures");
        let m = Metrics::new("local", 2048);
        m.cache_config(&profile, &derived);
        let text = m.render();
        for (family, typ) in [
            ("vllm:estimated_flops_per_gpu_total", "counter"),
            ("vllm:estimated_read_bytes_per_gpu_total", "counter"),
            ("vllm:estimated_write_bytes_per_gpu_total", "counter"),
            ("vllm:cache_config_info", "gauge"),
            ("vllm:engine_sleep_state", "gauge"),
            ("vllm:num_requests_waiting_by_reason", "gauge"),
            ("vllm:prompt_tokens_by_source_total", "counter"),
            ("vllm:prompt_tokens_cached_total", "counter"),
            ("vllm:prompt_tokens_cached_by_source_total", "counter"),
            ("vllm:prefix_cache_queries_total", "counter"),
            ("vllm:prefix_cache_hits_total", "counter"),
            ("vllm:admission_rejections_total", "counter"),
            ("vllm:request_max_num_generation_tokens", "histogram"),
            ("vllm:request_params_n", "histogram"),
            ("vllm:request_prefill_kv_computed_tokens", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {typ}\n")),
                "{family} {typ}: {text}"
            );
        }
        // Label sets as vLLM's: admission rejections have no engine, cache_config_info no model.
        assert!(text.contains("vllm:admission_rejections_total{model_name=\"local\",reason=\"max_num_queued_tokens\"} 0\n"), "{text}");
        assert!(text.contains("vllm:engine_sleep_state{engine=\"0\",model_name=\"local\",sleep_state=\"awake\"} 1\n"), "{text}");
        assert!(text.contains("vllm:engine_sleep_state{engine=\"0\",model_name=\"local\",sleep_state=\"discard_all\"} 0\n"), "{text}");
        assert!(text.contains("vllm:prompt_tokens_cached_by_source_total{engine=\"0\",model_name=\"local\",source=\"external_unspecified\"} 0\n"), "{text}");
        assert!(text.contains("vllm:num_requests_waiting_by_reason{engine=\"0\",model_name=\"local\",reason=\"deferred\"} 0\n"), "{text}");
        let info = text
            .lines()
            .find(|l| l.starts_with("vllm:cache_config_info{"))
            .expect("info series");
        assert!(info.ends_with("} 1"), "{info}");
        assert!(!info.contains("model_name"), "{info}");
        for label in [
            format!("num_gpu_blocks=\"{}\"", derived.kv_blocks),
            format!("kv_cache_size_tokens=\"{}\"", derived.kv_tokens),
            format!("block_size=\"{}\"", profile.engine.block_size),
            "num_cpu_blocks=\"None\"".to_string(),
            "engine=\"0\"".to_string(),
        ] {
            assert!(info.contains(&label), "{label}: {info}");
        }
        assert_eq!(py_float(0.9), "0.9");
        assert_eq!(py_float(1.0), "1.0");

        // They move.
        m.engine_stats(&EngineStats {
            waiting: 4,
            prompt_tokens_total: 30,
            ..EngineStats::default()
        });
        let text = m.render();
        assert!(
            text.contains("vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"local\"} 0\n"),
            "{text}"
        );
        // Cached prompt tokens: by source, cached, and the prefix-cache counters.
        let c = Metrics::new("local", 2048);
        c.engine_stats(&EngineStats {
            waiting: 4,
            prompt_tokens_total: 30,
            prompt_tokens_cached_total: 16,
            prefix_cache_queries: 30,
            prefix_cache_hits: 16,
            ..EngineStats::default()
        });
        let cached = c.render();
        for needle in [
            "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"local\"} 30\n",
            "vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"local\"} 16\n",
            "vllm:prompt_tokens_cached_total{engine=\"0\",model_name=\"local\"} 16\n",
            "vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"local\",source=\"local_compute\"} 14\n",
            "vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"local\",source=\"local_cache_hit\"} 16\n",
            "vllm:prompt_tokens_cached_by_source_total{engine=\"0\",model_name=\"local\",source=\"device\"} 16\n",
        ] {
            assert!(cached.contains(needle), "{needle}: {cached}");
        }
        m.iteration(
            3,
            &IterationCost {
                bytes: 100.0,
                written_bytes: 6.0,
                flops: 50.0,
                ..IterationCost::default()
            },
        );
        m.admission_rejected();
        m.finished(&Finished {
            reason: FinishReason::Length,
            prompt_tokens: 30,
            max_tokens: 7,
            generated: 7,
            cached_tokens: 0,
            arrival: 0.0,
            first_scheduled: 0.1,
            first_token: 0.2,
            end: 0.5,
            preemptions: 0,
        });
        let text = m.render();
        for needle in [
            "vllm:num_requests_waiting_by_reason{engine=\"0\",model_name=\"local\",reason=\"capacity\"} 4\n",
            "vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"local\",source=\"local_compute\"} 30\n",
            "vllm:prompt_tokens_by_source_total{engine=\"0\",model_name=\"local\",source=\"local_cache_hit\"} 0\n",
            "vllm:prompt_tokens_cached_total{engine=\"0\",model_name=\"local\"} 0\n",
            "vllm:estimated_flops_per_gpu_total{engine=\"0\",model_name=\"local\"} 50",
            "vllm:estimated_read_bytes_per_gpu_total{engine=\"0\",model_name=\"local\"} 100",
            "vllm:estimated_write_bytes_per_gpu_total{engine=\"0\",model_name=\"local\"} 6",
            "vllm:admission_rejections_total{model_name=\"local\",reason=\"max_num_queued_reqs\"} 1\n",
            "vllm:request_max_num_generation_tokens_sum{engine=\"0\",model_name=\"local\"} 7",
            "vllm:request_params_n_bucket{engine=\"0\",model_name=\"local\",le=\"1.0\"} 1\n",
            "vllm:request_prefill_kv_computed_tokens_sum{engine=\"0\",model_name=\"local\"} 30",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
