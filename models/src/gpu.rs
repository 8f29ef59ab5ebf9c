//! The hardware half of a profile: what one GPU can move and compute.

use serde::{Deserialize, Serialize};

/// One GPU as the cost model sees it: memory size, peak rates, and how much of them real kernels reach.
///
/// Peak figures come from vendor data sheets; the achievable fractions are what serving kernels sustain
/// (streaming GEMV for bandwidth, mid-sized GEMMs for tensor FLOP/s) and are the calibration knobs.
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
    /// Fraction of peak bandwidth that weight-streaming kernels sustain.
    pub bandwidth_efficiency: f64,
    /// Fraction of peak tensor FLOP/s that serving-sized GEMMs sustain at the card's power limit.
    pub flops_efficiency: f64,
    /// Fixed GPU-side cost of one engine iteration in seconds (graph launch, sampler, sync gaps).
    pub step_overhead_s: f64,
    /// How memory and compute time combine: `(mᵏ + cᵏ)^(1/k)`; infinity is the ideal roofline max.
    #[serde(default = "default_overlap")]
    pub overlap_exponent: f64,
}

fn default_overlap() -> f64 {
    3.0
}
