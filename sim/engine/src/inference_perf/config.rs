//! inference-perf's YAML config, as far as a simulation needs it.
//!
//! Mirrors the pydantic schema of inference-perf 0.7.0 (the PyPI wheel; `inference_perf/config/`):
//! `Config` in `config/config.py`, `DataConfig`/`SharedPrefix` in `config/datagen/config.py`,
//! `Distribution` in `config/common.py`, `LoadConfig`/`StandardLoadStage`/`ConcurrentLoadStage` in
//! `config/loadgen/config.py`, `ModelServerClientConfig` in `config/client/modelserver/config.py`
//! and `ReportConfig` in `config/reportgen/config.py`. inference-perf's models forbid unknown keys
//! (`StrictBaseModel`, `extra="forbid"`), and so do the sections here that change a result (data,
//! load, stages, distributions); sections that only say where to connect or what to store (api
//! options, server address, storage, metrics, tokenizer) are read for the few fields that matter
//! and otherwise accepted as they are.

use serde::Deserialize;

use super::IpError;

/// The whole file (inference-perf's `Config`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub load: LoadConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// Server-side metrics (Prometheus): nothing to simulate on the client side.
    #[serde(default)]
    pub metrics: Option<serde_norway::Value>,
    /// Where reports are stored: `--report-dir` says that here.
    #[serde(default)]
    pub storage: Option<serde_norway::Value>,
    /// The tokenizer that counts tokens: servesim's lengths are token counts already.
    #[serde(default)]
    pub tokenizer: Option<serde_norway::Value>,
    /// Circuit-breaker definitions; they trip on failures, which a simulation rarely has.
    #[serde(default)]
    pub circuit_breakers: Option<serde_norway::Value>,
}

/// `api`: the endpoint type and whether responses stream (without streaming inference-perf
/// reports no TTFT, TPOT or ITL). Other request options are accepted and change nothing here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiConfig {
    #[serde(rename = "type", default)]
    pub kind: ApiType,
    #[serde(default)]
    pub streaming: bool,
}

/// inference-perf's `APIType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiType {
    #[default]
    Completion,
    Chat,
    AnthropicMessages,
}

/// `server`: only `ignore_eos` changes what is simulated (inference-perf's default is true).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    #[serde(default = "yes")]
    pub ignore_eos: bool,
}

/// `ignore_eos`'s default.
fn yes() -> bool {
    true
}

/// `data` (inference-perf's `DataConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(rename = "type", default)]
    pub kind: DataType,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub corpus_file_path: Option<String>,
    #[serde(default)]
    pub input_distribution: Option<Distribution>,
    #[serde(default)]
    pub output_distribution: Option<Distribution>,
    #[serde(default)]
    pub shared_prefix: Option<SharedPrefix>,
    #[serde(default)]
    pub multimodal: Option<serde_norway::Value>,
    /// `random` only: prompt and answer lengths from a trace file.
    #[serde(default)]
    pub trace: Option<TraceConfig>,
    #[serde(default)]
    pub otel_trace_replay: Option<serde_norway::Value>,
    #[serde(default)]
    pub weka_trace_replay: Option<serde_norway::Value>,
    #[serde(default)]
    pub conversation_replay: Option<serde_norway::Value>,
    #[serde(default)]
    pub visionarena: Option<serde_norway::Value>,
    #[serde(default)]
    pub synthetic_agentic: Option<serde_norway::Value>,
    #[serde(default)]
    pub use_chat_template: bool,
}

/// inference-perf's `DataGenType`: every spelling it accepts, so that a type servesim cannot
/// simulate is refused by name rather than as a typo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum DataType {
    #[default]
    #[serde(rename = "mock")]
    Mock,
    #[serde(rename = "shareGPT")]
    ShareGpt,
    #[serde(rename = "synthetic")]
    Synthetic,
    #[serde(rename = "random")]
    Random,
    #[serde(rename = "shared_prefix")]
    SharedPrefix,
    #[serde(rename = "cnn_dailymail")]
    CnnDailyMail,
    #[serde(rename = "infinity_instruct")]
    InfinityInstruct,
    #[serde(rename = "billsum_conversations")]
    BillsumConversations,
    #[serde(rename = "otel_trace_replay")]
    OtelTraceReplay,
    #[serde(rename = "weka_trace_replay")]
    WekaTraceReplay,
    #[serde(rename = "conversation_replay")]
    ConversationReplay,
    #[serde(rename = "visionarena")]
    VisionArena,
    #[serde(rename = "synthetic_agentic")]
    SyntheticAgentic,
}

impl DataType {
    /// The spelling in the file.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Mock => "mock",
            DataType::ShareGpt => "shareGPT",
            DataType::Synthetic => "synthetic",
            DataType::Random => "random",
            DataType::SharedPrefix => "shared_prefix",
            DataType::CnnDailyMail => "cnn_dailymail",
            DataType::InfinityInstruct => "infinity_instruct",
            DataType::BillsumConversations => "billsum_conversations",
            DataType::OtelTraceReplay => "otel_trace_replay",
            DataType::WekaTraceReplay => "weka_trace_replay",
            DataType::ConversationReplay => "conversation_replay",
            DataType::VisionArena => "visionarena",
            DataType::SyntheticAgentic => "synthetic_agentic",
        }
    }
}

/// A length: a fixed number of tokens or a [`Distribution`] (`Union[int, Distribution]`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Length {
    Fixed(i64),
    Dist(Distribution),
}

/// `data.shared_prefix` (inference-perf's `SharedPrefix`; the aliases are pydantic's
/// `AliasChoices`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefix {
    #[serde(default = "ten", alias = "num_groups")]
    pub num_unique_system_prompts: usize,
    #[serde(default = "ten", alias = "num_prompts_per_group")]
    pub num_users_per_system_prompt: usize,
    #[serde(default = "hundred")]
    pub system_prompt_len: Length,
    #[serde(default = "fifty")]
    pub question_len: Length,
    #[serde(default = "fifty")]
    pub output_len: Length,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub question_distribution: Option<Distribution>,
    #[serde(default)]
    pub output_distribution: Option<Distribution>,
    #[serde(default)]
    pub enable_multi_turn_chat: bool,
    #[serde(default)]
    pub multimodal: Option<serde_norway::Value>,
}

// Defaults of `SharedPrefix` (config/datagen/config.py): 10 groups, 10 prompts per group, system
// prompt 100 tokens, question and output 50.
/// The group count's and group size's default.
fn ten() -> usize {
    10
}
/// `system_prompt_len`'s default.
fn hundred() -> Length {
    Length::Fixed(100)
}
/// `question_len`'s and `output_len`'s default.
fn fifty() -> Length {
    Length::Fixed(50)
}

/// inference-perf's `DistributionType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistributionType {
    #[default]
    Normal,
    SkewNormal,
    Lognormal,
    Uniform,
    Poisson,
    Fixed,
}

impl DistributionType {
    /// The spelling in the file.
    pub fn name(self) -> &'static str {
        match self {
            DistributionType::Normal => "normal",
            DistributionType::SkewNormal => "skew_normal",
            DistributionType::Lognormal => "lognormal",
            DistributionType::Uniform => "uniform",
            DistributionType::Poisson => "poisson",
            DistributionType::Fixed => "fixed",
        }
    }
}

/// inference-perf's `Distribution` (config/common.py), defaults included: min 10, max 1024,
/// mean 512, std_dev 200, type normal.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    #[serde(default = "dist_min")]
    pub min: i64,
    #[serde(default = "dist_max")]
    pub max: i64,
    #[serde(default = "dist_mean")]
    pub mean: f64,
    #[serde(default = "dist_sd")]
    pub std_dev: f64,
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(rename = "type", default)]
    pub kind: DistributionType,
    #[serde(default)]
    pub variance: Option<f64>,
    #[serde(default)]
    pub skew: f64,
}

/// `Distribution.min`'s default.
fn dist_min() -> i64 {
    10
}
/// `Distribution.max`'s default.
fn dist_max() -> i64 {
    1024
}
/// `Distribution.mean`'s default.
fn dist_mean() -> f64 {
    512.0
}
/// `Distribution.std_dev`'s default.
fn dist_sd() -> f64 {
    200.0
}

impl Distribution {
    /// A fixed value as inference-perf resolves a plain integer length
    /// (`SharedPrefixDataGenerator._resolve_distribution`: min = max = mean, std_dev 0).
    pub fn fixed(n: i64) -> Distribution {
        Distribution {
            min: n,
            max: n,
            mean: n as f64,
            std_dev: 0.0,
            total_count: None,
            kind: DistributionType::Normal,
            variance: None,
            skew: 0.0,
        }
    }

    /// `Distribution.validate_distribution`: variance excludes a positive std_dev (whose default
    /// is 200, so a variance needs `std_dev: 0`), min <= max, no negative spread.
    pub fn checked(mut self, field: &str) -> Result<Distribution, IpError> {
        let bad = |why: String| IpError::Invalid {
            field: field.to_string(),
            why,
        };
        if let Some(v) = self.variance {
            if self.std_dev > 0.0 {
                return Err(bad(
                    "specify either 'std_dev' or 'variance', not both".into()
                ));
            }
            if v < 0.0 {
                return Err(bad("variance cannot be negative".into()));
            }
            self.std_dev = v.sqrt();
        }
        if self.min > self.max {
            return Err(bad(format!(
                "min ({}) cannot be greater than max ({})",
                self.min, self.max
            )));
        }
        if self.std_dev < 0.0 || !self.std_dev.is_finite() || !self.mean.is_finite() {
            return Err(bad(
                "std_dev cannot be negative; mean and std_dev must be finite".into(),
            ));
        }
        Ok(self)
    }
}

/// `load` (inference-perf's `LoadConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    #[serde(rename = "type", default)]
    pub kind: LoadType,
    /// Seconds between stages (default 1.0).
    #[serde(default = "one")]
    pub interval: f64,
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Stages made from a saturation probe instead of `stages`.
    #[serde(default)]
    pub sweep: Option<SweepConfig>,
    /// Worker processes; inference-perf's default is the client machine's CPU count.
    #[serde(default)]
    pub num_workers: Option<usize>,
    /// In-flight requests per worker (default 100).
    #[serde(default = "hundred_usize")]
    pub worker_max_concurrency: usize,
    #[serde(default)]
    pub worker_max_tcp_connections: Option<usize>,
    /// `trace_replay` only: send times from a trace file.
    #[serde(default)]
    pub trace: Option<TraceConfig>,
    #[serde(default)]
    pub circuit_breakers: Vec<String>,
    #[serde(default)]
    pub request_timeout: Option<f64>,
    #[serde(default)]
    pub request_retries: u32,
    #[serde(default)]
    pub request_retry_backoff_sec: Option<f64>,
    #[serde(default)]
    pub stage_teardown_grace_seconds: Option<f64>,
    #[serde(default)]
    pub lora_traffic_split: Option<serde_norway::Value>,
    #[serde(default)]
    pub base_seed: Option<u64>,
}

impl Default for LoadConfig {
    fn default() -> LoadConfig {
        LoadConfig {
            kind: LoadType::Constant,
            interval: 1.0,
            stages: Vec::new(),
            sweep: None,
            num_workers: None,
            worker_max_concurrency: 100,
            worker_max_tcp_connections: None,
            trace: None,
            circuit_breakers: Vec::new(),
            request_timeout: None,
            request_retries: 0,
            request_retry_backoff_sec: None,
            stage_teardown_grace_seconds: None,
            lora_traffic_split: None,
            base_seed: None,
        }
    }
}

/// `load.interval`'s default (seconds).
fn one() -> f64 {
    1.0
}
/// `load.worker_max_concurrency`'s default.
fn hundred_usize() -> usize {
    100
}

/// `load.sweep` (`SweepConfig`): a probe of `num_requests` sent over 5 s finds the saturation,
/// then `num_stages` stages of `stage_duration` seconds are spaced up to it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    #[serde(rename = "type")]
    pub kind: StageGenType,
    #[serde(default = "sweep_requests")]
    pub num_requests: u64,
    #[serde(default = "sweep_timeout")]
    pub timeout: f64,
    #[serde(default = "sweep_stages")]
    pub num_stages: usize,
    #[serde(default = "sweep_duration")]
    pub stage_duration: u64,
    #[serde(default = "sweep_percentile")]
    pub saturation_percentile: f64,
}

// SweepConfig's defaults (config/loadgen/config.py): 2000 requests, 60 s, 5 stages of 180 s, p95.
/// `sweep.num_requests`'s default.
fn sweep_requests() -> u64 {
    2000
}
/// `sweep.timeout`'s default (seconds).
fn sweep_timeout() -> f64 {
    60.0
}
/// `sweep.num_stages`'s default.
fn sweep_stages() -> usize {
    5
}
/// `sweep.stage_duration`'s default (seconds).
fn sweep_duration() -> u64 {
    180
}
/// `sweep.saturation_percentile`'s default.
fn sweep_percentile() -> f64 {
    95.0
}

/// `StageGenType`: how sweep stages are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum StageGenType {
    #[serde(rename = "geometric")]
    Geometric,
    #[serde(rename = "linear")]
    Linear,
}

/// inference-perf's `LoadType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadType {
    #[default]
    Constant,
    Poisson,
    TraceReplay,
    Concurrent,
    TraceSessionReplay,
}

impl LoadType {
    /// The spelling in the file.
    pub fn name(self) -> &'static str {
        match self {
            LoadType::Constant => "constant",
            LoadType::Poisson => "poisson",
            LoadType::TraceReplay => "trace_replay",
            LoadType::Concurrent => "concurrent",
            LoadType::TraceSessionReplay => "trace_session_replay",
        }
    }
}

/// One entry of `load.stages`: `StandardLoadStage` (rate, duration) or `ConcurrentLoadStage`
/// (num_requests, concurrency_level); which fields must be set depends on `load.type`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default)]
    pub rate: Option<f64>,
    /// Whole seconds (pydantic's `int` takes `10` and `10.0`, not `10.5`).
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub num_requests: Option<u64>,
    #[serde(default)]
    pub concurrency_level: Option<u64>,
}

/// `data.trace` / `load.trace` (`TraceConfig`, config/datagen/replay.py).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    pub file: String,
    #[serde(default)]
    pub format: TraceFormat,
}

/// `TraceFormat`: the Azure public dataset's CSV is the one format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TraceFormat {
    #[default]
    AzurePublicDataset,
}

/// `report` (inference-perf's `ReportConfig`): what the lifecycle reports contain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    #[serde(default)]
    pub request_lifecycle: RequestLifecycle,
    #[serde(default)]
    pub prometheus: Option<serde_norway::Value>,
    #[serde(default)]
    pub session_lifecycle: Option<serde_norway::Value>,
    #[serde(default)]
    pub goodput: Option<GoodputConfig>,
}

/// `report.goodput` (`GoodputConfig`): SLO thresholds in seconds, keyed `ttft`, `tpot`, `itl`,
/// `ntpot`, `request_latency` (other keys are ignored, as inference-perf ignores them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputConfig {
    #[serde(default)]
    pub constraints: std::collections::BTreeMap<String, f64>,
}

/// `report.request_lifecycle` (`RequestLifecycleMetricsReportConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLifecycle {
    #[serde(default = "some_yes")]
    pub summary: Option<bool>,
    #[serde(default = "some_yes")]
    pub per_stage: Option<bool>,
    #[serde(default)]
    pub per_request: Option<bool>,
    #[serde(default)]
    pub per_request_fields: Option<serde_norway::Value>,
    #[serde(default)]
    pub per_adapter: Option<bool>,
    #[serde(default)]
    pub per_adapter_stage: Option<bool>,
    /// Default [0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9] (config/reportgen/config.py).
    #[serde(default = "default_percentiles")]
    pub percentiles: Vec<f64>,
    #[serde(default)]
    pub use_server_output_tokens: bool,
    #[serde(default)]
    pub max_error_messages: Option<usize>,
}

impl Default for RequestLifecycle {
    fn default() -> RequestLifecycle {
        RequestLifecycle {
            summary: Some(true),
            per_stage: Some(true),
            per_request: None,
            per_request_fields: None,
            per_adapter: None,
            per_adapter_stage: None,
            percentiles: default_percentiles(),
            use_server_output_tokens: false,
            max_error_messages: None,
        }
    }
}

/// `summary`'s and `per_stage`'s default.
fn some_yes() -> Option<bool> {
    Some(true)
}

/// inference-perf's default percentile set (config/reportgen/config.py).
pub fn default_percentiles() -> Vec<f64> {
    vec![
        0.1, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9,
    ]
}

/// Parse a config file's text; errors name the field (`data.shared_prefix: unknown field ...`).
pub fn parse(text: &str) -> Result<Config, IpError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_norway names the path itself where it knows it; name it once.
        let named = path == "." || message.starts_with(&path);
        IpError::Parse {
            path: if named { String::new() } else { path },
            message,
        }
    })
}
