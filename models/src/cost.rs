//! The cost model: how long one engine iteration takes, as a sum of terms each measurable on its own.
//!
//! GPU time is what one forward pass costs on the device, split the way a profiler would see it:
//! - **weights**: the transformer layers' weights streamed once at the bandwidth GEMV/GEMM kernels
//!   reach (the floor every iteration pays, however few tokens it has);
//! - **gemm**: what the dense GEMMs cost above that floor once the batch's tokens make them compute
//!   bound. A GEMM of M token rows costs `2·params·(M + m₀)/F` on the tensor cores, where `m₀`
//!   (`gemm_tile_tokens`) is the tile and wave quantisation that makes small GEMMs dearer per row
//!   than big ones, and `F` the FLOP/s big serving GEMMs sustain; it combines with the weight floor as
//!   the smooth maximum `(wᵏ + cᵏ)^(1/k)`, so GEMMs stay near the floor up to the ridge point and ride
//!   the compute line beyond it;
//! - **attention**: decode attention reads every sequence's KV cache at the attention kernel's
//!   bandwidth; prefill attention does the causal pairs' FLOPs (plus any cached context) at the
//!   attention kernel's FLOP/s; each part costs the larger of its bytes and its FLOPs;
//! - **activations**: every token's activations through the GEMMs' inputs and outputs and the
//!   elementwise kernels (norms, rotary, SiLU·up, residual adds), read and written once at the
//!   streaming bandwidth: a per-token term from the model's shape, ~10 MB per token for a 7B model;
//! - **layer overhead**: a fixed time per layer (kernel launch tails and small kernels: norms,
//!   residual adds, rotary, KV writes) and per step (embedding, final norm), the gap between a B=1
//!   step and pure weight streaming;
//! - **logits**: the LM head, a GEMM over every sampled sequence, as above;
//! - **sampler**: vLLM's sampler kernels, a few passes over each sampled sequence's fp32 logits.
//!
//! - **all-reduce**: with tensor parallelism over TP GPUs every term above is one GPU's share (1/TP
//!   of the heads, MLP and vocabulary), and each layer all-reduces its activations twice (after the
//!   attention output and the MLP down projections) over the GPU's interconnect, plus one all-gather
//!   of the sampled logits; vLLM does not overlap these with compute.
//!
//! A mixture-of-experts layer streams only the experts the step's tokens touch (the expected
//! number of distinct experts for B tokens under top-k routing) and computes top-k experts per
//! token. Quantised weights shrink the streamed bytes (FP8 one byte, INT4 about half a byte) and
//! change the GEMM rate: FP8 tensor cores where the card has them, the bf16 rate with a
//! dequantisation surcharge for weight-only kernels (AWQ/GPTQ, FP8 on Ampere through Marlin).
//!
//! Host time is the engine's CPU work per step (schedule, prepare inputs, process outputs) plus a
//! share per scheduled sequence. With async scheduling the host prepares step n+1 while the GPU runs
//! step n, so the step lasts `max(gpu, host)`; without it, `gpu + host`.

use serde::Serialize;

use crate::engine::{EngineConfig, Quantization};
use crate::gpu::{GpuSpec, Interconnect};
use crate::llm::{LlmSpec, expected_experts};

/// Passes over the fp32 logits that vLLM V1's sampler makes for a request with a temperature and
/// no top-p/top-k (vllm/v1/sample/sampler.py): the fp32 cast, the temperature divide, softmax's
/// read and write, the exponential draw, and the divide-and-argmax.
const SAMPLER_PASSES: f64 = 8.0;

/// Passes of the silicon probe's greedy argmax over the same logits.
const ARGMAX_PASSES: f64 = 1.0;

/// How much dearer a weight-only quantised GEMM (INT4 AWQ/GPTQ, FP8 through Marlin on Ampere) is
/// than a bf16 one once compute bound: the kernel dequantises every weight tile it loads before the
/// bf16 MMA. Marlin (Frantar et al., 2024, arXiv:2408.11743) keeps near-ideal speed-ups to batch
/// 16-32 and falls to around bf16 speed at large batches; 1.2 is an engineering estimate of the
/// remaining surcharge, not fitted to silicon.
pub const WEIGHT_ONLY_COMPUTE_FACTOR: f64 = 1.2;

/// Part of one prompt processed in an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillChunk {
    /// Prompt tokens computed in this iteration.
    pub tokens: u32,
    /// Tokens of the same sequence already in the KV cache (earlier chunks or a prefix-cache hit).
    pub cached: u32,
    /// Whether this chunk finishes the prompt, so the iteration samples a token for it.
    pub samples: bool,
}

/// The composition of one iteration: prefill chunks and decoding sequences.
#[derive(Debug, Clone, Copy)]
pub struct Iteration<'a> {
    pub prefills: &'a [PrefillChunk],
    /// For each decoding sequence, the tokens its new query attends to (its length including the new one).
    pub decode_contexts: &'a [u32],
}

/// The named terms of an iteration's duration, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CostParts {
    /// The layers' weights streamed at GEMV/GEMM bandwidth.
    pub weights_s: f64,
    /// Dense GEMM time above the weight-streaming floor (zero while memory bound).
    pub gemm_s: f64,
    /// Decode and prefill attention.
    pub attention_s: f64,
    /// Activation traffic of the computed tokens outside attention.
    pub activations_s: f64,
    /// Fixed per-layer and per-step kernel time.
    pub layer_overhead_s: f64,
    /// The LM head over every sampled sequence.
    pub logits_s: f64,
    /// Sampler kernels over the sampled sequences' logits.
    pub sampler_s: f64,
    /// Tensor parallelism's collectives: two all-reduces of the activations per layer and the
    /// all-gather of the sampled logits (zero on one GPU).
    pub allreduce_s: f64,
    /// Host time the GPU waits for (all of it without async scheduling; the excess over the GPU
    /// time with it).
    pub host_exposed_s: f64,
}

/// What an iteration costs, with the parts that make it up.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct IterationCost {
    /// Bytes the iteration moves through one GPU's memory: every streamed weight plus the KV cache
    /// it touches (attended context and the new tokens' own K and V). With tensor parallelism each
    /// GPU moves this much.
    pub bytes: f64,
    /// Weight bytes one GPU streams: its share of the layers (for a MoE, of the experts touched)
    /// and of the LM head when the step samples.
    pub weight_bytes: f64,
    /// KV-cache bytes written on one GPU: the K and V of every token computed (prefill chunk and
    /// decode).
    pub written_bytes: f64,
    /// FLOPs on one GPU.
    pub flops: f64,
    /// Device time of the forward pass, logits and sampler.
    pub gpu_s: f64,
    /// Host CPU time of the step, hidden or not.
    pub host_s: f64,
    pub parts: CostParts,
    /// The iteration's duration.
    pub total_s: f64,
}

impl IterationCost {
    /// The GPU time a silicon probe measures for this iteration: the same forward pass with a greedy
    /// argmax in place of vLLM's sampler.
    pub fn silicon_s(&self) -> f64 {
        self.gpu_s - self.parts.sampler_s * (1.0 - ARGMAX_PASSES / SAMPLER_PASSES)
    }
}

/// One GEMM family's constants: its weights and the FLOPs each token row costs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gemm {
    weight_bytes: f64,
    flops_per_row: f64,
}

/// The cost model's constants, precomputed from a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// The layers' weights outside the experts (all of a dense model's), one GPU's share.
    layers: Gemm,
    /// One expert over all layers, one GPU's share (zero for a dense model).
    expert: Gemm,
    num_experts: u32,
    experts_per_token: u32,
    lm_head: Gemm,
    /// FLOP/s of the layers' GEMMs (the quantised kernels' rate).
    layer_flops: f64,
    tensor_parallel: u32,
    interconnect: Interconnect,
    /// Bytes of one token's activations that each all-reduce carries (hidden × dtype).
    allreduce_bytes_per_token: f64,
    /// Bytes of one sampled sequence's logits that the all-gather carries (vocab × dtype).
    gather_bytes_per_sample: f64,
    layer_count: f64,
    kv_bytes_per_token: f64,
    activation_bytes_per_token: f64,
    attention_flops_per_pair: f64,
    logit_bytes_per_sample: f64,
    bandwidth: f64,
    flops: f64,
    tile_tokens: f64,
    exponent: f64,
    attention_bandwidth: f64,
    attention_flops: f64,
    layer_overhead_s: f64,
    step_overhead_s: f64,
    async_host: bool,
    host_step_s: f64,
    host_per_seq_s: f64,
}

impl CostModel {
    /// Precompute the constants of a GPU, model and engine (a profile's parts; see
    /// [`Profile::cost_model`](crate::Profile::cost_model)).
    pub fn new(g: &GpuSpec, m: &LlmSpec, e: &EngineConfig) -> CostModel {
        let dtype = f64::from(m.dtype_bytes);
        let tp = e.tensor_parallel_size.max(1);
        let shard = m.shard(tp);
        let layer_bytes = e.layer_bytes_per_weight(m.dtype_bytes);
        let flops = g.tensor_flops * g.flops_efficiency;
        let layer_flops = match (e.quantization, g.fp8_tensor_flops) {
            (None, _) => flops,
            // W8A8 on FP8 tensor cores; the same achieved fraction as bf16 (the H200's 8192³ GEMM
            // reached 1,342 TFLOP/s in FP8 and 666 in bf16: 2.0×).
            (Some(Quantization::Fp8), Some(fp8)) => fp8 * g.flops_efficiency,
            // Weight-only kernels: bf16 MMAs after dequantising each tile.
            (Some(_), _) => flops / WEIGHT_ONLY_COMPUTE_FACTOR,
        };
        CostModel {
            layers: Gemm {
                weight_bytes: shard.dense_params * layer_bytes,
                flops_per_row: 2.0 * shard.dense_params,
            },
            expert: Gemm {
                weight_bytes: shard.expert_params * layer_bytes,
                flops_per_row: 2.0 * shard.expert_params,
            },
            num_experts: m.num_experts,
            experts_per_token: m.num_experts_per_tok,
            lm_head: Gemm {
                weight_bytes: shard.lm_head_params * dtype,
                flops_per_row: 2.0 * shard.lm_head_params,
            },
            layer_flops,
            tensor_parallel: tp,
            interconnect: g.interconnect.clone(),
            allreduce_bytes_per_token: f64::from(m.hidden_size) * dtype,
            gather_bytes_per_sample: f64::from(m.vocab_size) * dtype,
            layer_count: f64::from(m.num_layers),
            kv_bytes_per_token: shard.kv_elements_per_token
                * f64::from(e.kv_cache_dtype.bytes(m.dtype_bytes)),
            activation_bytes_per_token: shard.activation_bytes_per_token,
            attention_flops_per_pair: shard.attention_flops_per_pair,
            logit_bytes_per_sample: 4.0 * f64::from(m.vocab_size),
            bandwidth: g.memory_bandwidth_bps * g.bandwidth_efficiency,
            flops,
            tile_tokens: g.gemm_tile_tokens,
            exponent: g.overlap_exponent,
            attention_bandwidth: g.memory_bandwidth_bps * g.attention_bandwidth_efficiency,
            attention_flops: g.tensor_flops * g.attention_flops_efficiency,
            layer_overhead_s: g.layer_overhead_s,
            step_overhead_s: g.step_overhead_s,
            async_host: e.async_scheduling,
            host_step_s: e.cpu_step_overhead_s,
            host_per_seq_s: e.host_per_seq_s,
        }
    }

    /// Seconds of one layer's two all-reduces for `tokens` tokens (zero on one GPU).
    pub fn allreduce_per_layer_s(&self, tokens: f64) -> f64 {
        2.0 * self.interconnect.all_reduce_s(
            tokens * self.allreduce_bytes_per_token,
            self.tensor_parallel,
        )
    }

    /// The layers' GEMMs over `rows` token rows: (weight bytes streamed, weight floor, total).
    /// A MoE streams the experts the rows touch and computes top-k experts per row; each expert's
    /// GEMM pays its own tile quantisation.
    fn layer_gemms(&self, rows: f64) -> (f64, f64, f64) {
        if rows <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        let touched = expected_experts(self.num_experts, self.experts_per_token, rows);
        let bytes = self.layers.weight_bytes + touched * self.expert.weight_bytes;
        let floor = bytes / self.bandwidth;
        let routed = f64::from(self.experts_per_token) * rows;
        let compute = (self.layers.flops_per_row * (rows + self.tile_tokens)
            + self.expert.flops_per_row * (routed + touched * self.tile_tokens))
            / self.layer_flops;
        (bytes, floor, smooth_max(floor, compute, self.exponent))
    }

    /// Seconds of a GEMM family over `rows` token rows: (weight floor, total).
    fn gemm(&self, g: Gemm, rows: f64) -> (f64, f64) {
        if rows <= 0.0 {
            return (0.0, 0.0);
        }
        let floor = g.weight_bytes / self.bandwidth;
        let compute = g.flops_per_row * (rows + self.tile_tokens) / self.flops;
        (floor, smooth_max(floor, compute, self.exponent))
    }

    /// Seconds of an attention part that reads `bytes` and does `flops`.
    fn attention(&self, bytes: f64, flops: f64) -> f64 {
        (bytes / self.attention_bandwidth).max(flops / self.attention_flops)
    }

    /// Duration of one iteration; zero for an empty one.
    pub fn iteration(&self, it: &Iteration<'_>) -> IterationCost {
        let seqs = it.prefills.len() + it.decode_contexts.len();
        if seqs == 0 {
            return IterationCost::default();
        }
        let mut tokens = it.decode_contexts.len() as f64;
        let mut samples = it.decode_contexts.len() as f64;
        let decode_context: f64 = it.decode_contexts.iter().map(|&c| f64::from(c)).sum();
        let mut prefill_read = 0.0;
        let mut prefill_pairs = 0.0;
        for p in it.prefills {
            let t = f64::from(p.tokens);
            let cached = f64::from(p.cached);
            tokens += t;
            if p.samples {
                samples += 1.0;
            }
            // Reads the cached context and writes the chunk's own K and V.
            prefill_read += cached + t;
            // Causal attention: token i of the chunk sees the cache and the chunk up to itself.
            prefill_pairs += t * cached + t * (t + 1.0) / 2.0;
        }
        let kv = self.kv_bytes_per_token;
        let pair = self.attention_flops_per_pair;
        let attention_s = self.attention(kv * decode_context, pair * decode_context)
            + self.attention(kv * prefill_read, pair * prefill_pairs);
        let (layer_bytes, weights_s, dense_s) = self.layer_gemms(tokens);
        let (_, logits_s) = self.gemm(self.lm_head, samples);
        let activations_s = tokens * self.activation_bytes_per_token / self.bandwidth;
        let sampler_s = samples * self.logit_bytes_per_sample * SAMPLER_PASSES / self.bandwidth;
        let layer_overhead_s = self.layer_count * self.layer_overhead_s + self.step_overhead_s;
        let gather_s = if samples > 0.0 {
            self.interconnect
                .all_gather_s(samples * self.gather_bytes_per_sample, self.tensor_parallel)
        } else {
            0.0
        };
        let allreduce_s = self.layer_count * self.allreduce_per_layer_s(tokens) + gather_s;
        // Added last, so one GPU (allreduce_s = 0) gives bit-for-bit the single-GPU sum.
        let gpu_s = dense_s
            + attention_s
            + activations_s
            + layer_overhead_s
            + logits_s
            + sampler_s
            + allreduce_s;

        let host_s = self.host_step_s + self.host_per_seq_s * seqs as f64;
        let total_s = if self.async_host {
            gpu_s.max(host_s)
        } else {
            gpu_s + host_s
        };
        let lm_bytes = if samples > 0.0 {
            self.lm_head.weight_bytes
        } else {
            0.0
        };
        let routed = f64::from(self.experts_per_token) * tokens;
        IterationCost {
            bytes: layer_bytes
                + lm_bytes
                + kv * (decode_context + prefill_read)
                + tokens * self.activation_bytes_per_token
                + samples * self.logit_bytes_per_sample * SAMPLER_PASSES,
            weight_bytes: layer_bytes + lm_bytes,
            written_bytes: kv * tokens,
            flops: self.layers.flops_per_row * tokens
                + self.expert.flops_per_row * routed
                + self.lm_head.flops_per_row * samples
                + pair * (decode_context + prefill_pairs),
            gpu_s,
            host_s,
            parts: CostParts {
                weights_s,
                gemm_s: dense_s - weights_s,
                attention_s,
                activations_s,
                layer_overhead_s,
                logits_s,
                sampler_s,
                allreduce_s,
                host_exposed_s: total_s - gpu_s,
            },
            total_s,
        }
    }
}

/// `(aᵏ + bᵏ)^(1/k)`, computed stably; `k = ∞` gives `max(a, b)`.
fn smooth_max(a: f64, b: f64, k: f64) -> f64 {
    let hi = a.max(b);
    if hi <= 0.0 || k.is_infinite() {
        return hi;
    }
    let lo = a.min(b);
    hi * (1.0 + (lo / hi).powf(k)).powf(1.0 / k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_max_lies_between_max_and_sum() {
        for (a, b) in [(1.0, 0.0), (1.0, 1.0), (0.3, 2.0)] {
            let s = smooth_max(a, b, 2.0);
            assert!(s >= a.max(b) - 1e-12 && s <= a + b + 1e-12, "{a} {b} {s}");
        }
        assert_eq!(smooth_max(1.0, 1.0, f64::INFINITY), 1.0);
        assert!((smooth_max(3.0, 4.0, 2.0) - 5.0).abs() < 1e-12);
        assert!((smooth_max(3.0, 4.0, 1.0) - 7.0).abs() < 1e-12);
    }
}
