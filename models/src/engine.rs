//! The serving-engine half of a profile: vLLM's engine arguments and the host-side costs around the GPU.

use serde::{Deserialize, Serialize};

/// How the scheduler forms batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulingPolicy {
    /// vLLM V1: requests join and leave the running batch at every iteration, served FCFS.
    Continuous,
    /// A batch is formed from the waiting queue and runs until every member finishes.
    Static,
    /// One request at a time, like a CPU-tier server that does not batch.
    Serial,
}

/// What happens to a running request when the KV cache has no free block for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreemptionMode {
    /// vLLM V1's only mode: free the request's blocks and recompute its tokens when it is resumed.
    Recompute,
}

/// How the linear layers' weights are stored (`--quantization`); absent: the checkpoint's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantization {
    /// FP8 W8A8: one byte per weight, activations quantised per token, GEMMs on FP8 tensor cores
    /// (weight-only through the Marlin kernel on cards without them, as vLLM does on Ampere).
    Fp8,
    /// AWQ INT4 weight-only: half a byte per weight plus a scale and zero per group of 128.
    Awq,
    /// GPTQ INT4 weight-only: as AWQ for the cost model.
    Gptq,
}

/// Bytes per INT4 weight: half a byte, plus an fp16 scale and a packed 4-bit zero point per group
/// of 128 weights (AWQ's and GPTQ's default `group_size`).
pub const INT4_BYTES_PER_WEIGHT: f64 = 0.5 + 2.5 / 128.0;

impl Quantization {
    /// Bytes per weight of the quantised linear layers.
    pub fn bytes_per_weight(self) -> f64 {
        match self {
            Quantization::Fp8 => 1.0,
            Quantization::Awq | Quantization::Gptq => INT4_BYTES_PER_WEIGHT,
        }
    }

    /// The name vLLM's `--quantization` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::Fp8 => "fp8",
            Quantization::Awq => "awq",
            Quantization::Gptq => "gptq",
        }
    }
}

/// The KV cache's element type (`--kv-cache-dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheDtype {
    /// The model's dtype (bf16/fp16: two bytes).
    #[default]
    Auto,
    /// FP8 (e4m3): one byte per element, half the bf16 cache.
    Fp8,
}

/// vLLM engine arguments plus the host-side latencies that a serving run adds to the GPU's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most sequences in the running batch (`--max-num-seqs`).
    pub max_num_seqs: u32,
    /// Token budget of one iteration (`--max-num-batched-tokens`).
    pub max_num_batched_tokens: u32,
    /// Tokens per KV block (`--block-size`).
    pub block_size: u32,
    /// Fraction of device memory vLLM may use (`--gpu-memory-utilization`).
    pub gpu_memory_utilization: f64,
    /// Whether prompts may be split across iterations (`--enable-chunked-prefill`).
    pub chunked_prefill: bool,
    /// Whether full KV blocks are kept by content hash and reused by later prompts that start with
    /// the same tokens (`--enable-prefix-caching`; on by default in V1).
    #[serde(default = "on")]
    pub enable_prefix_caching: bool,
    /// KV blocks to have whatever the memory figures say (`--num-gpu-blocks-override`), the null
    /// block included.
    #[serde(default)]
    pub num_gpu_blocks_override: Option<u64>,
    /// Whether the next iteration is scheduled while the current one runs (`--async-scheduling`):
    /// then the host-side per-step CPU time is hidden behind the GPU.
    pub async_scheduling: bool,
    pub policy: SchedulingPolicy,
    pub preemption: PreemptionMode,
    /// `--max-model-len`; absent means the model's maximum context.
    #[serde(default)]
    pub max_model_len: Option<u32>,
    /// Memory held outside weights and KV cache: CUDA context, CUDA graphs, allocator slack (bytes).
    pub runtime_reserve_bytes: u64,
    /// Host CPU time of one iteration (schedule, prepare inputs, process outputs), seconds. With
    /// async scheduling it overlaps the GPU's previous step and shows only where it is longer.
    pub cpu_step_overhead_s: f64,
    /// Host CPU time per scheduled sequence per iteration (its scheduler entry, input rows, output
    /// processing), seconds; overlapped like `cpu_step_overhead_s`.
    #[serde(alias = "per_seq_overhead_s")]
    pub host_per_seq_s: f64,
    /// Time from the client sending a request to the engine seeing it (HTTP, chat template,
    /// tokenisation, IPC), seconds.
    pub input_latency_s: f64,
    /// Serial time the API server spends on each request (HTTP parse, chat template, tokenisation on
    /// its one Python thread): requests reach the engine at least this far apart, so a burst of
    /// simultaneous requests trickles in instead of landing in one iteration. Seconds.
    #[serde(default)]
    pub frontend_service_s: f64,
    /// Time from the engine producing a token to the client receiving its SSE event, seconds.
    pub output_latency_s: f64,
    /// GPUs one model is sharded over (`--tensor-parallel-size`): each holds 1/TP of the heads, the
    /// MLP and the vocabulary, and every layer all-reduces its activations twice.
    #[serde(default = "one")]
    pub tensor_parallel_size: u32,
    /// Weight quantisation (`--quantization`); absent: the checkpoint's dtype.
    #[serde(default)]
    pub quantization: Option<Quantization>,
    /// KV-cache element type (`--kv-cache-dtype`).
    #[serde(default)]
    pub kv_cache_dtype: KvCacheDtype,
    /// One-off extra duration of the very first iteration after start-up (lazy initialisation), seconds.
    #[serde(default)]
    pub warmup_s: f64,
}

fn on() -> bool {
    true
}

fn one() -> u32 {
    1
}

impl KvCacheDtype {
    /// Bytes per KV element for a model whose dtype has `model_bytes`.
    pub fn bytes(self, model_bytes: u32) -> u32 {
        match self {
            KvCacheDtype::Auto => model_bytes,
            KvCacheDtype::Fp8 => 1,
        }
    }

    /// The name vLLM's `--kv-cache-dtype` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheDtype::Auto => "auto",
            KvCacheDtype::Fp8 => "fp8",
        }
    }
}

impl EngineConfig {
    /// Bytes per weight of the transformer layers' linear layers (the embedding and LM head stay
    /// in the model's dtype: vLLM quantises neither).
    pub fn layer_bytes_per_weight(&self, model_bytes: u32) -> f64 {
        self.quantization
            .map_or(f64::from(model_bytes), Quantization::bytes_per_weight)
    }

    /// The effective maximum model length given the model's own context.
    pub fn max_model_len(&self, model_max_context: u32) -> u32 {
        self.max_model_len.unwrap_or(model_max_context)
    }
}
