//! inference-perf's lifecycle report: `summarize_requests` in `inference_perf/reportgen/base.py`
//! (0.7.0), field for field and in its key order, so a simulated `stage_N_lifecycle_metrics.json`
//! diffs against a real one.
//!
//! Per request (`compute_request_latency_metrics`):
//! - `request_latency` = end − start (start: when the request was sent, after any wait for a
//!   concurrency slot or a previous turn; `schedule_delay` = start − scheduled time);
//! - `normalized_time_per_output_token` = request_latency / output tokens (0 with none);
//! - streamed responses with more than one token time only: `time_to_first_token` = first token
//!   time − start; `time_per_output_token` = (last token time − first) / (output tokens − 1);
//!   `inter_token_latency` = every gap between consecutive token times, all requests' gaps pooled
//!   into one distribution. Each token of a chunk carries the chunk's arrival time.
//!
//! Distributions (`summarize`): mean, min, max, then each configured percentile keyed `median`
//! for 50 and `p{p:g}` otherwise, by numpy's default (linear) interpolation; `null` when empty.
//! Throughput divides by the window from the first start to the last end over all requests.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// One request as inference-perf's `RequestLifecycleMetric` records it. Times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLifecycle {
    /// When the load generator meant to send it.
    pub scheduled: f64,
    /// When it was sent.
    pub start: f64,
    pub end: f64,
    /// Arrival time of each output token (streaming only; empty otherwise).
    pub token_times: Vec<f64>,
    /// Prompt tokens (the server's `usage.prompt_tokens`).
    pub input_tokens: u32,
    /// Output tokens (the response's token count).
    pub output_tokens: u32,
    /// Request body size in bytes.
    pub request_bytes: f64,
    /// `Some((error_type, message))` for a failed request, e.g. `("HTTP Error 429", "...")`.
    pub error: Option<(String, String)>,
}

/// A distribution as `summarize` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// `(key, value)` per configured percentile, in the configured order.
    pub percentiles: Vec<(String, f64)>,
}

impl Stats {
    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("mean", &self.mean)?;
        map.serialize_entry("min", &self.min)?;
        map.serialize_entry("max", &self.max)?;
        for (k, v) in &self.percentiles {
            map.serialize_entry(k, v)?;
        }
        Ok(())
    }

    /// The value at percentile key `key` (`median`, `p99`, ...).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }
}

impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3 + self.percentiles.len()))?;
        self.write(&mut map)?;
        map.end()
    }
}

/// The key of percentile `p`: Python's `"median" if p == 50 else f"p{p:g}"`.
pub fn percentile_key(p: f64) -> String {
    if p == 50.0 {
        "median".into()
    } else {
        // Rust's shortest round-trip form matches `:g` for the percentiles configs use (0.1, 1,
        // 99.9: no exponent, no trailing zeros).
        format!("p{p}")
    }
}

/// `np.percentile(items, p)` with its default linear method, numpy's `_lerp` included.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = p / 100.0 * (n - 1) as f64;
    let lo = rank.floor().clamp(0.0, (n - 1) as f64) as usize;
    let hi = (lo + 1).min(n - 1);
    let t = rank - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Python's `sum`: 0.0 for nothing (Rust's float `Sum` starts at −0.0, which would print as
/// `-0.0`).
fn total(items: impl Iterator<Item = f64>) -> f64 {
    items.fold(0.0, |a, b| a + b)
}

/// `summarize(items, percentiles)`: `None` for no items.
pub fn summarize(items: &[f64], percentiles: &[f64]) -> Option<Stats> {
    if items.is_empty() {
        return None;
    }
    let mut sorted = items.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = total(items.iter().copied()) / items.len() as f64;
    Some(Stats {
        mean,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        percentiles: percentiles
            .iter()
            .map(|&p| (percentile_key(p), percentile(&sorted, p)))
            .collect(),
    })
}

/// `load_summary`: a stage's report has the send window and rates; the run's summary has only
/// the count and schedule delay.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub count: usize,
    pub schedule_delay: Option<Stats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    /// A concurrent stage's concurrency level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// `successes.latency`.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub request_latency: Option<Stats>,
    pub normalized_time_per_output_token: Option<Stats>,
    pub time_per_output_token: Option<Stats>,
    pub time_to_first_token: Option<Stats>,
    pub inter_token_latency: Option<Stats>,
}

/// `successes.throughput`.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub input_tokens_per_sec: f64,
    pub output_tokens_per_sec: f64,
    pub total_tokens_per_sec: f64,
    pub requests_per_sec: f64,
    pub images_per_sec: f64,
    pub videos_per_sec: f64,
    pub audios_per_sec: f64,
}

/// `successes.image`: text-only runs have a count of 0 per request and nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct Images {
    pub count: Option<Stats>,
    pub pixels: Option<Stats>,
    pub bytes: Option<Stats>,
    pub aspect_ratio: Option<Stats>,
}

/// `successes.video`.
#[derive(Debug, Clone, Serialize)]
pub struct Videos {
    pub count: Option<Stats>,
    pub frames: Option<Stats>,
    pub pixels: Option<Stats>,
    pub bytes: Option<Stats>,
    pub aspect_ratio: Option<Stats>,
}

/// `successes.audio`.
#[derive(Debug, Clone, Serialize)]
pub struct Audios {
    pub count: Option<Stats>,
    pub seconds: Option<Stats>,
    pub bytes: Option<Stats>,
}

/// `prompt_tokens` (total, cached, uncached, then the distribution) or `output_tokens` (total,
/// then the distribution): `summarize_prompt_token_usage` / `summarize_output_token_usage`.
#[derive(Debug, Clone)]
pub struct TokenUsage {
    pub total: f64,
    /// `(cached, uncached)`; prompt side only.
    pub cached: Option<(f64, f64)>,
    pub distribution: Option<Stats>,
}

impl Serialize for TokenUsage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("total", &self.total)?;
        if let Some((cached, uncached)) = self.cached {
            map.serialize_entry("cached", &cached)?;
            map.serialize_entry("uncached", &uncached)?;
        }
        if let Some(d) = &self.distribution {
            d.write(&mut map)?;
        }
        map.end()
    }
}

/// `successes.client_fallback_requests`: requests whose token counts are the client's own because
/// the server reported none (servesim always reports usage).
#[derive(Debug, Clone, Serialize)]
pub struct Fallbacks {
    pub prompt: usize,
    pub output: usize,
}

/// `successes`.
#[derive(Debug, Clone, Serialize)]
pub struct Successes {
    pub count: usize,
    pub latency: Latency,
    pub throughput: Throughput,
    pub request_size_bytes: Option<Stats>,
    pub image: Images,
    pub video: Videos,
    pub audio: Audios,
    pub prompt_tokens: TokenUsage,
    pub output_len: Option<Stats>,
    pub output_tokens: TokenUsage,
    pub token_count_mismatches: usize,
    pub client_fallback_requests: Fallbacks,
    /// Only with `report.goodput` constraints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput_metrics: Option<Goodput>,
}

/// `report.goodput.constraints` in seconds: a success is good when it meets every one set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Slo {
    pub ttft: Option<f64>,
    pub tpot: Option<f64>,
    /// Against the request's mean inter-token gap.
    pub itl: Option<f64>,
    pub ntpot: Option<f64>,
    pub request_latency: Option<f64>,
}

/// `successes.goodput_metrics` (`calculate_goodput_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Goodput {
    pub goodput_percentage: f64,
    pub request_goodput: f64,
    pub token_goodput: f64,
    pub good_requests: usize,
    pub total_requests: usize,
    /// `(metric, percentage of successes meeting its SLO)` for each SLO set, in inference-perf's
    /// order (ttft, tpot, itl, ntpot, request_latency).
    pub attainment: Vec<(&'static str, f64)>,
}

impl Serialize for Goodput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("goodput_percentage", &self.goodput_percentage)?;
        map.serialize_entry("request_goodput", &self.request_goodput)?;
        map.serialize_entry("token_goodput", &self.token_goodput)?;
        map.serialize_entry("good_requests", &self.good_requests)?;
        map.serialize_entry("total_requests", &self.total_requests)?;
        for (k, v) in &self.attainment {
            map.serialize_entry(&format!("{k}_attainment_percentage"), v)?;
        }
        map.end()
    }
}

/// Per-request values the goodput judges: TTFT, TPOT and mean ITL where streamed, NTPOT, latency.
struct Judged {
    ttft: Option<f64>,
    tpot: Option<f64>,
    itl: Option<f64>,
    ntpot: f64,
    latency: f64,
}

/// `calculate_goodput_metrics` over the successes.
fn goodput(ok: &[&RequestLifecycle], judged: &[Judged], slo: &Slo) -> Option<Goodput> {
    let first = ok.iter().map(|m| m.start).min_by(f64::total_cmp)?;
    let last = ok.iter().map(|m| m.end).max_by(f64::total_cmp)?;
    let window = last - first;
    let limits: [(&'static str, Option<f64>); 5] = [
        ("ttft", slo.ttft),
        ("tpot", slo.tpot),
        ("itl", slo.itl),
        ("ntpot", slo.ntpot),
        ("request_latency", slo.request_latency),
    ];
    let mut met = [0usize; 5];
    let (mut good, mut good_tokens) = (0usize, 0.0);
    for (m, j) in ok.iter().zip(judged) {
        let values = [j.ttft, j.tpot, j.itl, Some(j.ntpot), Some(j.latency)];
        let mut all = true;
        for (k, (_, limit)) in limits.iter().enumerate() {
            let Some(limit) = limit else { continue };
            if values[k].is_some_and(|v| v <= *limit) {
                met[k] += 1;
            } else {
                all = false;
            }
        }
        if all {
            good += 1;
            good_tokens += f64::from(m.input_tokens) + f64::from(m.output_tokens);
        }
    }
    let total = ok.len();
    let rate = |x: f64| if window > 0.0 { x / window } else { 0.0 };
    Some(Goodput {
        goodput_percentage: good as f64 / total as f64 * 100.0,
        request_goodput: rate(good as f64),
        token_goodput: rate(good_tokens),
        good_requests: good,
        total_requests: total,
        attainment: limits
            .iter()
            .zip(met)
            .filter(|((_, limit), _)| limit.is_some())
            .map(|((name, _), n)| (*name, n as f64 / total as f64 * 100.0))
            .collect(),
    })
}

/// One failure message and how often it came (`build_error_counts`).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorMessage {
    pub message: String,
}

/// One failure label.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorLabel {
    pub count: usize,
    pub messages: Vec<ErrorMessage>,
}

/// `failures.by_label`: labels in descending count.
#[derive(Debug, Clone, Default)]
pub struct ByLabel(pub Vec<(String, ErrorLabel)>);

impl Serialize for ByLabel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `failures`.
#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    pub count: usize,
    pub request_latency: Option<Stats>,
    pub prompt_tokens: TokenUsage,
    pub by_label: ByLabel,
}

/// One `*_lifecycle_metrics.json` (`ResponsesSummary.model_dump()`, `retries` omitted as it is
/// when nothing retried).
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleReport {
    pub benchmark_time_seconds: f64,
    pub load_summary: LoadSummary,
    pub successes: Successes,
    pub failures: Failures,
}

/// `make_concise_label` for the failures a simulation has (HTTP statuses).
fn concise_label(error_type: &str, message: &str) -> String {
    let Some(code) = error_type.strip_prefix("HTTP Error ") else {
        return error_type.to_lowercase().trim().to_string();
    };
    let known = match code {
        "429" => Some("Rate Limit"),
        "500" => Some("Internal Server Error"),
        "502" => Some("Bad Gateway"),
        "503" => Some("Service Unavailable"),
        "504" => Some("Gateway Timeout"),
        _ => None,
    };
    if let Some(label) = known {
        return format!("{code} - {label}");
    }
    let m = message.to_lowercase();
    if [
        "context window",
        "context length",
        "maximum context",
        "max_tokens",
        "max tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
    {
        return format!("{code} - Context Window");
    }
    format!("{code} - other")
}

/// `build_error_counts` with `make_concise_label`.
fn by_label(failed: &[&RequestLifecycle]) -> ByLabel {
    let mut labels: Vec<(String, ErrorLabel)> = Vec::new();
    for r in failed {
        let Some((kind, message)) = &r.error else {
            continue;
        };
        let label = concise_label(kind, message);
        let entry = match labels.iter().position(|(l, _)| *l == label) {
            Some(i) => &mut labels[i].1,
            None => {
                labels.push((
                    label,
                    ErrorLabel {
                        count: 0,
                        messages: Vec::new(),
                    },
                ));
                let last = labels.len() - 1;
                &mut labels[last].1
            }
        };
        entry.count += 1;
        // Identical messages merge; at most 100 distinct ones (max_error_messages' default).
        if entry.messages.len() < 100 && !entry.messages.iter().any(|m| m.message == *message) {
            entry.messages.push(ErrorMessage {
                message: message.clone(),
            });
        }
    }
    // Python's sort is stable: equal counts keep their first-seen order.
    labels.sort_by_key(|l| std::cmp::Reverse(l.1.count));
    ByLabel(labels)
}

/// The stage a report covers: its requested rate and a concurrent stage's concurrency (`None`
/// for the run's summary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageRate {
    pub rate: f64,
    pub concurrency: Option<usize>,
}

/// `summarize_prompt_token_usage`.
fn prompt_usage(requests: &[&RequestLifecycle], percentiles: &[f64]) -> TokenUsage {
    let per: Vec<f64> = requests.iter().map(|r| f64::from(r.input_tokens)).collect();
    let sum = total(per.iter().copied());
    // Cached tokens come from usage.prompt_tokens_details, which vLLM reports only with
    // --enable-prompt-tokens-details (off by default): 0, as against a default server.
    TokenUsage {
        total: sum,
        cached: Some((0.0, sum.max(0.0))),
        distribution: summarize(&per, percentiles),
    }
}

/// `summarize_requests(metrics, percentiles, stage_rate, stage_concurrency)`; `None` for no
/// requests (inference-perf writes no file then).
pub fn summarize_requests(
    metrics: &[RequestLifecycle],
    percentiles: &[f64],
    stage: Option<StageRate>,
) -> Option<LifecycleReport> {
    summarize_requests_with_goodput(metrics, percentiles, stage, None)
}

/// [`summarize_requests`] with `goodput_config`'s constraints, which add
/// `successes.goodput_metrics`.
pub fn summarize_requests_with_goodput(
    metrics: &[RequestLifecycle],
    percentiles: &[f64],
    stage: Option<StageRate>,
    slo: Option<&Slo>,
) -> Option<LifecycleReport> {
    let first_start = metrics.iter().map(|m| m.start).min_by(f64::total_cmp)?;
    let last_start = metrics.iter().map(|m| m.start).max_by(f64::total_cmp)?;
    let last_end = metrics.iter().map(|m| m.end).max_by(f64::total_cmp)?;
    let total_time = last_end - first_start;
    let ok: Vec<&RequestLifecycle> = metrics.iter().filter(|m| m.error.is_none()).collect();
    let failed: Vec<&RequestLifecycle> = metrics.iter().filter(|m| m.error.is_some()).collect();

    let schedule: Vec<f64> = metrics.iter().map(|m| m.start - m.scheduled).collect();
    let send_duration = last_start - first_start;
    let load_summary = LoadSummary {
        count: metrics.len(),
        schedule_delay: summarize(&schedule, percentiles),
        send_duration: stage.map(|_| send_duration),
        requested_rate: stage.map(|s| s.rate),
        achieved_rate: stage.map(|_| {
            if send_duration > 0.0 {
                metrics.len() as f64 / send_duration
            } else {
                0.0
            }
        }),
        concurrency: stage.and_then(|s| s.concurrency),
    };

    let mut latency = Vec::with_capacity(ok.len());
    let mut ntpot = Vec::with_capacity(ok.len());
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut itl = Vec::new();
    let mut judged = Vec::with_capacity(ok.len());
    for m in &ok {
        let l = m.end - m.start;
        latency.push(l);
        let n = if m.output_tokens > 0 {
            l / f64::from(m.output_tokens)
        } else {
            0.0
        };
        ntpot.push(n);
        let mut j = Judged {
            ttft: None,
            tpot: None,
            itl: None,
            ntpot: n,
            latency: l,
        };
        if m.token_times.len() > 1 {
            let (first, last) = (m.token_times[0], m.token_times[m.token_times.len() - 1]);
            j.ttft = Some(first - m.start);
            ttft.push(first - m.start);
            if m.output_tokens > 1 {
                let t = (last - first) / f64::from(m.output_tokens - 1);
                j.tpot = Some(t);
                tpot.push(t);
            }
            let gaps = m.token_times.windows(2).map(|w| w[1] - w[0]);
            j.itl = Some(total(gaps.clone()) / (m.token_times.len() - 1) as f64);
            itl.extend(gaps);
        }
        judged.push(j);
    }
    let per_sec = |x: f64| {
        if total_time > 0.0 {
            x / total_time
        } else {
            0.0
        }
    };
    let input = total(ok.iter().map(|m| f64::from(m.input_tokens)));
    let output = total(ok.iter().map(|m| f64::from(m.output_tokens)));
    let zeros = vec![0.0; ok.len()];
    let outputs: Vec<f64> = ok.iter().map(|m| f64::from(m.output_tokens)).collect();
    let sizes: Vec<f64> = ok.iter().map(|m| m.request_bytes).collect();
    let successes = Successes {
        count: ok.len(),
        latency: Latency {
            request_latency: summarize(&latency, percentiles),
            normalized_time_per_output_token: summarize(&ntpot, percentiles),
            time_per_output_token: summarize(&tpot, percentiles),
            time_to_first_token: summarize(&ttft, percentiles),
            inter_token_latency: summarize(&itl, percentiles),
        },
        throughput: Throughput {
            input_tokens_per_sec: per_sec(input),
            output_tokens_per_sec: per_sec(output),
            total_tokens_per_sec: per_sec(input + output),
            requests_per_sec: per_sec(ok.len() as f64),
            images_per_sec: 0.0,
            videos_per_sec: 0.0,
            audios_per_sec: 0.0,
        },
        request_size_bytes: summarize(&sizes, percentiles),
        image: Images {
            count: summarize(&zeros, percentiles),
            pixels: None,
            bytes: None,
            aspect_ratio: None,
        },
        video: Videos {
            count: summarize(&zeros, percentiles),
            frames: None,
            pixels: None,
            bytes: None,
            aspect_ratio: None,
        },
        audio: Audios {
            count: summarize(&zeros, percentiles),
            seconds: None,
            bytes: None,
        },
        prompt_tokens: prompt_usage(&ok, percentiles),
        output_len: summarize(&outputs, percentiles),
        output_tokens: TokenUsage {
            total: output,
            cached: None,
            distribution: summarize(&outputs, percentiles),
        },
        token_count_mismatches: 0,
        client_fallback_requests: Fallbacks {
            prompt: 0,
            output: 0,
        },
        goodput_metrics: slo.and_then(|slo| goodput(&ok, &judged, slo)),
    };
    let failed_latency: Vec<f64> = failed.iter().map(|m| m.end - m.start).collect();
    let failures = Failures {
        count: failed.len(),
        request_latency: summarize(&failed_latency, percentiles),
        prompt_tokens: prompt_usage(&failed, percentiles),
        by_label: by_label(&failed),
    };
    Some(LifecycleReport {
        benchmark_time_seconds: total_time,
        load_summary,
        successes,
        failures,
    })
}
