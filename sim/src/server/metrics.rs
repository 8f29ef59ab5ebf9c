//! `/metrics`: vLLM's metric families (names, types and labels as vLLM 0.32 exposes them) kept with
//! the `prometheus-client` crate, plus servesim's own emission-lag histogram. The engine driver
//! updates them as iterations end; engine-side durations are in simulated seconds, so they read the
//! same whatever `--time-scale` is.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::{EngineStats, Finished};
use crate::request::FinishReason;

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

/// Every metric the server exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    running: Gauge,
    waiting: Gauge,
    kv_usage: Gauge<f64, AtomicU64>,
    preemptions: Counter,
    prompt_tokens: Counter,
    generation_tokens: Counter,
    success: Family<Labels, Counter>,
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
    emission_lag: Histogram,
    /// Fine-grained lag record for the benchmark's percentiles.
    pub lag: LagRecorder,
    /// How late the engine thread woke up to hand tokens over (the part of the lag that is the
    /// driver's; the rest is the HTTP side).
    pub wakeup_lag: LagRecorder,
}

impl Metrics {
    /// Metrics labelled `engine="0"`, `model_name=MODEL`; token buckets go up to `max_model_len`.
    pub fn new(model_name: &str, max_model_len: u32) -> Metrics {
        let labels = [
            (Cow::Borrowed("engine"), Cow::Borrowed("0")),
            (
                Cow::Borrowed("model_name"),
                Cow::Owned(model_name.to_string()),
            ),
        ];
        let mut registry = Registry::with_labels(labels.into_iter());
        let h = |b: &[f64]| Histogram::new(b.iter().copied());
        let tokens = one_two_five(max_model_len);
        let m = Metrics {
            running: Gauge::default(),
            waiting: Gauge::default(),
            kv_usage: Gauge::default(),
            preemptions: Counter::default(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            success: Family::default(),
            ttft: h(TTFT_BUCKETS),
            itl: h(ITL_BUCKETS),
            tpot: h(ITL_BUCKETS),
            e2e: h(REQUEST_LATENCY_BUCKETS),
            queue: h(REQUEST_LATENCY_BUCKETS),
            inference: h(REQUEST_LATENCY_BUCKETS),
            prefill: h(REQUEST_LATENCY_BUCKETS),
            decode: h(REQUEST_LATENCY_BUCKETS),
            prompt_len: h(&tokens),
            generation_len: h(&tokens),
            max_tokens: h(&tokens),
            iteration_tokens: h(&[
                1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
                16384.0,
            ]),
            preemptions_per_request: h(&[0.0, 1.0, 2.0, 5.0, 10.0, 20.0]),
            emission_lag: h(LAG_BUCKETS),
            lag: LagRecorder::default(),
            wakeup_lag: LagRecorder::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "vllm:num_requests_running",
            "Number of requests in model execution batches",
            m.running.clone(),
        );
        r.register(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed",
            m.waiting.clone(),
        );
        r.register(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage",
            m.kv_usage.clone(),
        );
        r.register(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine",
            m.preemptions.clone(),
        );
        r.register(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed",
            m.prompt_tokens.clone(),
        );
        r.register(
            "vllm:generation_tokens",
            "Number of generation tokens processed",
            m.generation_tokens.clone(),
        );
        r.register(
            "vllm:request_success",
            "Count of successfully processed requests",
            m.success.clone(),
        );
        r.register(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds",
            m.ttft.clone(),
        );
        r.register(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds",
            m.itl.clone(),
        );
        r.register(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request",
            m.tpot.clone(),
        );
        r.register(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds",
            m.e2e.clone(),
        );
        r.register(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request",
            m.queue.clone(),
        );
        r.register(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request",
            m.inference.clone(),
        );
        r.register(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request",
            m.prefill.clone(),
        );
        r.register(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request",
            m.decode.clone(),
        );
        r.register(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed",
            m.prompt_len.clone(),
        );
        r.register(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed",
            m.generation_len.clone(),
        );
        r.register(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter",
            m.max_tokens.clone(),
        );
        r.register(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step",
            m.iteration_tokens.clone(),
        );
        r.register(
            "vllm:request_num_preemptions",
            "Number of preemptions per request",
            m.preemptions_per_request.clone(),
        );
        r.register(
            "servesim:emission_lag_seconds",
            "Actual minus scheduled send time of streamed tokens (servesim)",
            m.emission_lag.clone(),
        );
        // Like vLLM, every finished reason is exposed from the start, at zero.
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::Abort,
        ] {
            let _ = m
                .success
                .get_or_create(&vec![("finished_reason", reason.as_str())]);
        }
        Metrics { registry, ..m }
    }

    /// Set the gauges and advance the counters to the engine's current figures.
    pub fn engine_stats(&self, s: &EngineStats) {
        self.running.set(s.running as i64);
        self.waiting.set(s.waiting as i64);
        self.kv_usage.set(s.kv_usage);
        // Counters only move forward; the engine's totals are monotone, so add the difference.
        let bump = |c: &Counter, total: u64| {
            let now = c.get();
            if total > now {
                c.inc_by(total - now);
            }
        };
        bump(&self.preemptions, s.preemptions_total);
        bump(&self.prompt_tokens, s.prompt_tokens_total);
        bump(&self.generation_tokens, s.generation_tokens_total);
    }

    /// One iteration's computed tokens.
    pub fn iteration(&self, tokens: u32) {
        self.iteration_tokens.observe(f64::from(tokens));
    }

    /// The gap between two tokens of one request (engine seconds).
    pub fn inter_token(&self, gap: f64) {
        self.itl.observe(gap);
    }

    /// A request's `max_tokens` as the engine got it.
    pub fn request_params(&self, max_tokens: u32) {
        self.max_tokens.observe(f64::from(max_tokens));
    }

    /// A request that ended in the engine with its timings.
    pub fn finished(&self, f: &Finished) {
        self.count_finish(f.reason);
        self.ttft.observe(f.first_token - f.arrival);
        self.e2e.observe(f.end - f.arrival);
        self.queue.observe(f.first_scheduled - f.arrival);
        self.inference.observe(f.end - f.first_scheduled);
        self.prefill.observe(f.first_token - f.first_scheduled);
        self.decode.observe(f.end - f.first_token);
        if f.generated > 1 {
            self.tpot
                .observe((f.end - f.first_token) / f64::from(f.generated - 1));
        }
        self.prompt_len.observe(f64::from(f.prompt_tokens));
        self.generation_len.observe(f64::from(f.generated));
        self.preemptions_per_request
            .observe(f64::from(f.preemptions));
    }

    /// A request that left the engine for `reason` (aborts and server-side stops included).
    pub fn count_finish(&self, reason: FinishReason) {
        self.success
            .get_or_create(&vec![("finished_reason", reason.as_str())])
            .inc();
    }

    /// How late one token left the server, seconds.
    pub fn emission_lag(&self, lag: f64) {
        self.emission_lag.observe(lag);
        self.lag.record(lag);
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
fn openmetrics_to_prometheus(text: &str) -> String {
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

/// Emission lags with 10 µs resolution up to 100 ms (beyond: one overflow bucket), lock-free, so the
/// benchmark can read exact-enough percentiles.
#[derive(Debug)]
pub struct LagRecorder {
    buckets: Box<[AtomicU64]>,
}

const LAG_RESOLUTION_S: f64 = 10e-6;
const LAG_BUCKET_COUNT: usize = 10_001;

impl Default for LagRecorder {
    fn default() -> Self {
        LagRecorder {
            buckets: (0..LAG_BUCKET_COUNT).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LagRecorder {
    /// Record one lag (negative lags, tokens sent early, count as zero).
    pub fn record(&self, lag: f64) {
        let i = ((lag.max(0.0) / LAG_RESOLUTION_S) as usize).min(LAG_BUCKET_COUNT - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Number of recorded lags.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0..1) in seconds, the upper edge of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((i + 1) as f64 * LAG_RESOLUTION_S);
            }
        }
        None
    }

    /// Forget everything recorded so far (between benchmark phases).
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }
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
    fn lag_quantiles() {
        let r = LagRecorder::default();
        assert_eq!(r.quantile(0.5), None);
        for i in 0..100 {
            r.record(f64::from(i) * 1e-4);
        }
        let p50 = r.quantile(0.5).expect("recorded");
        assert!((p50 - 0.0049).abs() < 2e-5, "{p50}");
        r.record(10.0);
        assert_eq!(r.count(), 101);
    }
}
