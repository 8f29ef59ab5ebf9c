//! The cost model: how long one engine iteration takes on the profile's GPU, from physics.
//!
//! An iteration moves bytes (every layer's weights and the LM head once, the KV cache each sequence
//! attends to, the KV it writes) and does FLOPs (2 per parameter per token in the dense layers, 2 per
//! LM-head parameter per sampled sequence, and attention, which grows with each query's context).
//! Bytes over achievable bandwidth gives the memory time `m`, FLOPs over achievable tensor FLOP/s the
//! compute time `c`. The GPU time is their smooth maximum `(mᵏ + cᵏ)^(1/k)` with `k =
//! overlap_exponent`: `k → ∞` is the ideal roofline (perfect overlap), `k = 1` no overlap at all;
//! the default `k = 3` lets batches near the ridge point cost more than either bound (up to 26 %),
//! as real mid-sized GEMMs do. On top come the fixed per-step overhead, a per-sequence overhead, and the
//! host CPU time when async scheduling does not hide it. Activation traffic is left out: it is below
//! 2 % of the weight stream in the memory-bound regime and invisible in the compute-bound one.

use crate::profile::Profile;

/// Part of one prompt processed in an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillChunk {
    /// Prompt tokens computed in this iteration.
    pub tokens: u32,
    /// Tokens of the same sequence already in the KV cache (earlier chunks).
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

/// What an iteration costs, with the parts that make it up.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IterationCost {
    /// Bytes the iteration moves through device memory: every streamed weight plus the KV cache it
    /// touches (attended context and the new tokens' own K and V).
    pub bytes: f64,
    /// KV-cache bytes written: the K and V of every token computed (prefill chunk and decode).
    pub written_bytes: f64,
    pub flops: f64,
    pub memory_s: f64,
    pub compute_s: f64,
    /// Smooth maximum of memory and compute time.
    pub gpu_s: f64,
    /// Fixed, per-sequence and (without async scheduling) host overheads.
    pub overhead_s: f64,
    /// The iteration's duration.
    pub total_s: f64,
}

/// The cost model's constants, precomputed from a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    weight_bytes: f64,
    kv_bytes_per_token: f64,
    dense_flops_per_token: f64,
    lm_head_flops_per_sample: f64,
    attention_flops_per_pair: f64,
    bandwidth: f64,
    flops: f64,
    exponent: f64,
    fixed_s: f64,
    per_seq_s: f64,
}

impl CostModel {
    /// Precompute the constants of `profile`.
    pub fn new(profile: &Profile) -> CostModel {
        let m = &profile.model;
        let g = &profile.gpu;
        let e = &profile.engine;
        let host = if e.async_scheduling {
            0.0
        } else {
            e.cpu_step_overhead_s
        };
        CostModel {
            weight_bytes: m.streamed_weight_bytes() as f64,
            kv_bytes_per_token: m.kv_bytes_per_token() as f64,
            dense_flops_per_token: 2.0 * m.layer_params() as f64,
            lm_head_flops_per_sample: 2.0 * m.lm_head_params() as f64,
            attention_flops_per_pair: m.attention_flops_per_pair(),
            bandwidth: g.memory_bandwidth_bps * g.bandwidth_efficiency,
            flops: g.tensor_flops * g.flops_efficiency,
            exponent: g.overlap_exponent,
            fixed_s: g.step_overhead_s + host,
            per_seq_s: e.per_seq_overhead_s,
        }
    }

    /// Duration of one iteration; zero for an empty one.
    pub fn iteration(&self, it: &Iteration<'_>) -> IterationCost {
        let seqs = it.prefills.len() + it.decode_contexts.len();
        if seqs == 0 {
            return IterationCost::default();
        }
        let mut tokens = it.decode_contexts.len() as f64;
        let mut samples = it.decode_contexts.len() as f64;
        let mut kv_tokens = 0.0;
        let mut pairs = 0.0;
        for &c in it.decode_contexts {
            kv_tokens += f64::from(c);
            pairs += f64::from(c);
        }
        for p in it.prefills {
            let t = f64::from(p.tokens);
            let cached = f64::from(p.cached);
            tokens += t;
            if p.samples {
                samples += 1.0;
            }
            // Reads the cached context, writes the chunk's own K and V.
            kv_tokens += cached + t;
            // Causal attention: token i of the chunk sees the cache and the chunk up to itself.
            pairs += t * cached + t * (t + 1.0) / 2.0;
        }
        let bytes = self.weight_bytes + self.kv_bytes_per_token * kv_tokens;
        let written_bytes = self.kv_bytes_per_token * tokens;
        let flops = self.dense_flops_per_token * tokens
            + self.lm_head_flops_per_sample * samples
            + self.attention_flops_per_pair * pairs;
        let memory_s = bytes / self.bandwidth;
        let compute_s = flops / self.flops;
        let gpu_s = smooth_max(memory_s, compute_s, self.exponent);
        let overhead_s = self.fixed_s + self.per_seq_s * seqs as f64;
        IterationCost {
            bytes,
            written_bytes,
            flops,
            memory_s,
            compute_s,
            gpu_s,
            overhead_s,
            total_s: gpu_s + overhead_s,
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
