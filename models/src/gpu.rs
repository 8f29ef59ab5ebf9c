//! The hardware half of a profile: what one GPU can move and compute, and what real kernels reach.

use serde::{Deserialize, Serialize};

/// One GPU as the cost model sees it: memory size, peak rates, and the fractions of them that
/// serving kernels sustain, each a term of the cost model (see [`crate::cost`]).
///
/// Peak figures come from vendor data sheets. The achieved fractions and fixed times are measured
/// on silicon (`servesim calibrate` fits them to a probe's table) or carried over from a measured
/// card of the same architecture; each catalogue file says which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Catalogue key, e.g. `rtx-a6000`.
    pub name: String,
    /// Human-readable name as NVML reports it.
    pub display_name: String,
    /// Device memory in bytes, as the driver reports the total (what vLLM's utilisation applies to).
    pub memory_bytes: u64,
    /// Peak DRAM bandwidth in bytes per second.
    pub memory_bandwidth_bps: f64,
    /// Peak dense bf16/fp16 tensor-core FLOP/s with fp32 accumulation (no sparsity).
    pub tensor_flops: f64,
    /// Streaming multiprocessors (informational; NVML reports it for comparisons).
    pub sm_count: u32,
    /// Fraction of peak bandwidth that weight-streaming GEMV/GEMM kernels sustain.
    pub bandwidth_efficiency: f64,
    /// Fraction of peak tensor FLOP/s that large serving GEMMs sustain at the card's power limit.
    pub flops_efficiency: f64,
    /// Extra token rows every GEMM pays for (tile and wave quantisation over the SMs): a GEMM of M
    /// rows costs as many FLOPs as one of `M + gemm_tile_tokens` at the large-GEMM rate.
    #[serde(default = "default_tile_tokens")]
    pub gemm_tile_tokens: f64,
    /// How the weight floor and GEMM compute combine: `(wᵏ + cᵏ)^(1/k)`; infinity is the ideal
    /// roofline max.
    #[serde(default = "default_overlap")]
    pub overlap_exponent: f64,
    /// Fraction of peak bandwidth the attention kernel reaches reading the KV cache in decode.
    #[serde(default = "default_attention_bandwidth")]
    pub attention_bandwidth_efficiency: f64,
    /// Fraction of peak tensor FLOP/s the attention kernel reaches in prefill.
    #[serde(default = "default_attention_flops")]
    pub attention_flops_efficiency: f64,
    /// Fixed kernel time per transformer layer per step, seconds (launch tails, norms, residual
    /// adds, rotary, KV writes: the small kernels of a CUDA-graph replay).
    #[serde(default = "default_layer_overhead")]
    pub layer_overhead_s: f64,
    /// Fixed GPU time per step outside the layers (embedding, final norm), seconds.
    #[serde(default)]
    pub step_overhead_s: f64,
    /// Peak dense FP8 tensor-core FLOP/s (no sparsity) on cards with FP8 tensor cores (Ada,
    /// Hopper); absent on cards without them, where vLLM runs FP8 checkpoints weight-only.
    #[serde(default)]
    pub fp8_tensor_flops: Option<f64>,
    /// The link tensor-parallel all-reduces cross between GPUs of this kind.
    #[serde(default)]
    pub interconnect: Interconnect,
    /// The real measurement this card's achieved fractions were fitted to (a silicon table or a
    /// recorded serving run), when there is one; absent, every term is a data-sheet peak times
    /// fractions carried over from another card, and predictions are less sure (the planner labels
    /// its rows with this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_from: Option<String>,
}

/// The GPU-to-GPU link as the all-reduce of tensor parallelism sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interconnect {
    /// What the link is, for reports (`NVLink 4`, `PCIe Gen4 x16`).
    pub kind: String,
    /// Peak bandwidth per GPU per direction, bytes per second (half the data sheet's bidirectional
    /// figure).
    pub bandwidth_bps: f64,
    /// Fraction of that bandwidth a large all-reduce sustains (NCCL's "bus bandwidth").
    pub efficiency: f64,
    /// Fixed time of one small all-reduce (launch, synchronisation, a hop), seconds.
    pub latency_s: f64,
}

impl GpuSpec {
    /// Whether the card's terms were fitted to a measurement on the card itself.
    pub fn is_silicon_calibrated(&self) -> bool {
        self.calibrated_from.is_some()
    }
}

/// Built-in GPU prices: dollars per GPU-hour with a dated public source for each
/// (`catalogue/prices.toml`); users replace the file with their own (`servesim plan --prices`).
pub const PRICES_TOML: &str = include_str!("../catalogue/prices.toml");

impl Default for Interconnect {
    /// PCIe Gen4 x16 (32 GB/s per direction), the link of a GPU file that names none; the
    /// fractions are those of the catalogue's PCIe cards (see `l40s.toml`).
    fn default() -> Self {
        Interconnect {
            kind: "PCIe Gen4 x16".into(),
            bandwidth_bps: 32e9,
            efficiency: 0.7,
            latency_s: 25e-6,
        }
    }
}

impl Interconnect {
    /// Seconds of one all-reduce of `bytes` across `gpus` GPUs: the ring's 2(n−1)/n of the message
    /// through each GPU's link at its achievable bandwidth, plus the fixed latency; zero on one GPU.
    pub fn all_reduce_s(&self, bytes: f64, gpus: u32) -> f64 {
        if gpus <= 1 {
            return 0.0;
        }
        let n = f64::from(gpus);
        self.latency_s + 2.0 * (n - 1.0) / n * bytes / (self.bandwidth_bps * self.efficiency)
    }

    /// Seconds of one all-gather that leaves `bytes` (the whole result) on every GPU.
    pub fn all_gather_s(&self, bytes: f64, gpus: u32) -> f64 {
        if gpus <= 1 {
            return 0.0;
        }
        let n = f64::from(gpus);
        self.latency_s + (n - 1.0) / n * bytes / (self.bandwidth_bps * self.efficiency)
    }
}

// Defaults for GPU tables written before these terms existed: the H200 fit of
// fixtures/silicon/h200-qwen2.5-7b-forward.json (see models/catalogue/gpus/h200.toml).
fn default_tile_tokens() -> f64 {
    31.67
}

fn default_overlap() -> f64 {
    5.29
}

fn default_attention_bandwidth() -> f64 {
    0.5234
}

fn default_attention_flops() -> f64 {
    0.3561
}

fn default_layer_overhead() -> f64 {
    42.4e-6
}
