//! Tensor parallelism, mixtures of experts and quantisation: the invariants the cost model must keep
//! and the configurations vLLM refuses.

use proptest::prelude::*;
use servesim_models::{
    Interconnect, Iteration, IterationCost, KvCacheDtype, PrefillChunk, Profile, Quantization,
};

/// `gpu` and `model` with `tp` GPUs. The GPU gets 1 TB of memory so that any layout loads: memory
/// decides what is servable, never what a step costs.
fn on(gpu: &str, model: &str, tp: u32) -> Profile {
    let text = format!(
        "name = \"test\"\nmodel = {model:?}\n[gpu]\nbase = {gpu:?}\nmemory_bytes = 1_000_000_000_000\n\
         [engine]\ntensor_parallel_size = {tp}\n"
    );
    Profile::from_toml(&text, "test").unwrap_or_else(|e| panic!("{e}"))
}

fn cost(p: &Profile, prefills: &[PrefillChunk], decodes: &[u32]) -> IterationCost {
    p.cost_model().iteration(&Iteration {
        prefills,
        decode_contexts: decodes,
    })
}

fn chunks() -> impl Strategy<Value = Vec<PrefillChunk>> {
    prop::collection::vec(
        (1u32..4096, 0u32..8192, any::<bool>()).prop_map(|(tokens, cached, samples)| {
            PrefillChunk {
                tokens,
                cached,
                samples,
            }
        }),
        0..4,
    )
}

/// Models big enough to shard: dense 14B-72B and Mixtral (every head count divides by 8).
fn big_models() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "llama-3.1-70b-instruct",
        "qwen2.5-72b-instruct",
        "qwen2.5-32b-instruct",
        "qwen2.5-14b-instruct",
        "mixtral-8x7b-instruct-v0.1",
    ])
}

/// Every model whose KV heads TP 2, 4 and 8 split without replication (so nothing is duplicated).
fn kv8_models() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "llama-3.1-70b-instruct",
        "qwen2.5-72b-instruct",
        "qwen2.5-14b-instruct",
        "mixtral-8x7b-instruct-v0.1",
        "llama-3.1-8b-instruct",
    ])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// On NVLink every doubling of the GPUs shortens the step; on PCIe the gain over one GPU is
    /// smaller than on NVLink because each all-reduce costs more.
    #[test]
    fn steps_fall_with_tp_and_less_on_pcie(
        model in big_models(),
        prefills in chunks(),
        decodes in prop::collection::vec(1u32..16_384, 0..256),
    ) {
        prop_assume!(!prefills.is_empty() || !decodes.is_empty());
        let mut last = f64::INFINITY;
        for tp in [1, 2, 4, 8] {
            let nvlink = on("h100-sxm", model, tp);
            let t = cost(&nvlink, &prefills, &decodes).total_s;
            prop_assert!(t < last, "{model} TP {tp}: {t} after {last}");
            last = t;
            if tp > 1 {
                let mut pcie = nvlink.clone();
                pcie.gpu.interconnect = Interconnect::default();
                let one = cost(&on("h100-sxm", model, 1), &prefills, &decodes).total_s;
                let slow = cost(&pcie, &prefills, &decodes);
                prop_assert!(slow.parts.allreduce_s > 0.0);
                prop_assert!(one / slow.total_s < one / t, "{model} TP {tp}: PCIe gains more");
            }
        }
    }

    /// Sharding moves no work: summed over the GPUs, weights streamed, KV written and FLOPs are
    /// those of one GPU (for models whose KV heads divide by TP, so nothing is replicated).
    #[test]
    fn bytes_and_flops_are_conserved_across_tp(
        model in kv8_models(),
        gpu in prop::sample::select(vec!["h100-sxm", "l40s", "a100-80gb"]),
        prefills in chunks(),
        decodes in prop::collection::vec(1u32..16_384, 0..256),
    ) {
        prop_assume!(!prefills.is_empty() || !decodes.is_empty());
        let one = cost(&on(gpu, model, 1), &prefills, &decodes);
        for tp in [2u32, 4, 8] {
            let c = cost(&on(gpu, model, tp), &prefills, &decodes);
            let n = f64::from(tp);
            prop_assert!(close(c.flops * n, one.flops), "{model} TP {tp} flops");
            prop_assert!(close(c.weight_bytes * n, one.weight_bytes), "{model} TP {tp} weights");
            prop_assert!(close(c.written_bytes * n, one.written_bytes), "{model} TP {tp} KV");
        }
    }

    /// A MoE step streams more experts as it carries more tokens, never more than all of them, and
    /// all of them once the batch is large.
    #[test]
    fn moe_weights_grow_with_the_batch_and_saturate(
        model in prop::sample::select(vec!["mixtral-8x7b-instruct-v0.1", "qwen3-30b-a3b"]),
        tp in prop::sample::select(vec![1u32, 2, 4]),
        b in 1usize..512,
        more in 1usize..512,
    ) {
        let p = on("h200", model, tp);
        let read = |n: usize| cost(&p, &[], &vec![64; n]).weight_bytes;
        let m = &p.model;
        let shard = m.shard(tp);
        let bpw = f64::from(m.dtype_bytes);
        let all = (shard.dense_params + f64::from(m.num_experts) * shard.expert_params
            + shard.lm_head_params) * bpw;
        prop_assert!(read(b + more) >= read(b), "{model}: {} then {}", read(b), read(b + more));
        prop_assert!(read(2) > read(1) && read(8) > read(2));
        prop_assert!(read(b + more) <= all * (1.0 + 1e-12));
        prop_assert!(close(read(100_000), all), "{model}: {} of {all}", read(100_000));
        // One token touches exactly its top-k experts.
        let top_k = (shard.dense_params + f64::from(m.num_experts_per_tok) * shard.expert_params
            + shard.lm_head_params) * bpw;
        prop_assert!(close(read(1), top_k));
    }
}

#[test]
fn tp_one_in_bf16_is_the_single_gpu_model_exactly() {
    for name in Profile::builtin_names() {
        let p = Profile::builtin(&name).expect("built-in");
        let mut explicit = p.clone();
        explicit.engine.tensor_parallel_size = 1;
        if p.engine.tensor_parallel_size == 1 && p.engine.quantization.is_none() {
            let c = cost(&p, &[], &[512; 8]);
            assert_eq!(c.parts.allreduce_s, 0.0, "{name}");
            assert_eq!(c, cost(&explicit, &[], &[512; 8]), "{name}");
            // The single-GPU formulas, bit for bit: every layer weight streamed once, the whole
            // model's KV bytes per token.
            let (m, g) = (&p.model, &p.gpu);
            if !m.is_moe() {
                let floor = m.layer_params() as f64 * f64::from(m.dtype_bytes)
                    / (g.memory_bandwidth_bps * g.bandwidth_efficiency);
                assert_eq!(c.parts.weights_s, floor, "{name}");
            }
            assert_eq!(
                c.written_bytes,
                8.0 * m.kv_bytes_per_token() as f64,
                "{name}"
            );
        }
    }
}

#[test]
fn vllm_refuses_what_does_not_divide_or_fit() {
    let mut p = Profile::builtin("h100x4-llama3.1-70b").expect("profile");
    p.engine.tensor_parallel_size = 3;
    let msg = p.derive().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.ends_with(
            "Total number of attention heads (64) must be divisible by tensor parallel size (3)."
        ),
        "{msg}"
    );
    // 141 GB of bf16 weights on one 80 GB card.
    p.engine.tensor_parallel_size = 1;
    let msg = p.derive().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("CUDA out of memory"), "{msg}");
    // Two H100s hold the weights but not a 131072-token sequence's KV cache.
    p.engine.tensor_parallel_size = 2;
    let msg = p.derive().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("To serve at least one request with the model's max seq len (131072)")
            && msg.contains("Based on the available memory, the estimated maximum model length is"),
        "{msg}"
    );
    // ... which the catalogue profile avoids with max_model_len 16384.
    let d = Profile::builtin("h100x2-llama3.1-70b")
        .expect("profile")
        .derive()
        .expect("servable");
    assert!(
        d.kv_tokens >= 16_384 && d.kv_tokens < 131_072,
        "{}",
        d.kv_tokens
    );
}

#[test]
fn kv_heads_replicate_past_the_kv_head_count() {
    // Qwen3-30B-A3B has 4 KV heads: at TP 8 each GPU holds one, so each token's KV is stored twice.
    let four = on("h200", "qwen3-30b-a3b", 4).derive().expect("servable");
    let eight = on("h200", "qwen3-30b-a3b", 8).derive().expect("servable");
    assert_eq!(
        four.kv_bytes_per_token_per_gpu,
        eight.kv_bytes_per_token_per_gpu
    );
    assert_eq!(eight.kv_bytes_per_token, 2 * four.kv_bytes_per_token);
}

#[test]
fn capacity_comes_from_every_gpu() {
    let two = Profile::builtin("h200x2-llama3.1-70b")
        .expect("profile")
        .derive()
        .expect("servable");
    let four = Profile::builtin("h200x4-llama3.1-70b")
        .expect("profile")
        .derive()
        .expect("servable");
    assert_eq!(two.kv_cache_bytes, 2 * two.kv_cache_bytes_per_gpu);
    assert_eq!(four.weight_bytes_per_gpu * 2, two.weight_bytes_per_gpu);
    // Half the weights per GPU and half the KV per token per GPU: more than twice the tokens.
    assert!(four.kv_tokens > 2 * two.kv_tokens);
}

#[test]
fn quantisation_shrinks_weights_and_fp8_kv_halves_the_cache_per_token() {
    let bf16 = on("h100-sxm", "llama-3.1-70b-instruct", 4);
    let mut fp8 = bf16.clone();
    fp8.engine.quantization = Some(Quantization::Fp8);
    let mut awq = bf16.clone();
    awq.engine.quantization = Some(Quantization::Awq);
    let (b, f, a) = (
        bf16.derive().expect("bf16"),
        fp8.derive().expect("fp8"),
        awq.derive().expect("awq"),
    );
    // Layers halve (FP8) or quarter plus scales (INT4); the embedding and LM head stay bf16.
    let tables = 2.0 * 128_256.0 * 8192.0 * 2.0 / 4.0;
    let layers = b.weight_bytes_per_gpu as f64 - tables;
    let fp8_layers = f.weight_bytes_per_gpu as f64 - tables;
    assert!(
        (2.0 * fp8_layers - layers).abs() < 4.0,
        "{fp8_layers} {layers}"
    );
    let int4 = (a.weight_bytes_per_gpu as f64 - tables) / layers;
    assert!((int4 - (0.5 + 2.5 / 128.0) / 2.0).abs() < 1e-6, "{int4}");
    // FP8 W8A8 on Hopper: a big prefill runs on FP8 tensor cores, nearly twice as fast.
    let big = [PrefillChunk {
        tokens: 8192,
        cached: 0,
        samples: true,
    }];
    let (cb, cf) = (cost(&bf16, &big, &[]), cost(&fp8, &big, &[]));
    let gemm = |c: &IterationCost| c.parts.weights_s + c.parts.gemm_s;
    assert!(gemm(&cb) / gemm(&cf) > 1.8, "{}", gemm(&cb) / gemm(&cf));
    // Weight-only INT4 is cheaper per decode step (fewer bytes) but dearer per prefill FLOP.
    assert!(cost(&awq, &[], &[128]).total_s < cost(&bf16, &[], &[128]).total_s);
    assert!(gemm(&cost(&awq, &big, &[])) > gemm(&cb));
    // FP8 on an A100 (no FP8 tensor cores): vLLM's weight-only Marlin path, so no faster GEMMs.
    let a100 = on("a100-80gb", "llama-3.1-70b-instruct", 4);
    let mut a100_fp8 = a100.clone();
    a100_fp8.engine.quantization = Some(Quantization::Fp8);
    assert!(gemm(&cost(&a100_fp8, &big, &[])) > gemm(&cost(&a100, &big, &[])));
    // An fp8 KV cache: one byte per element, so about twice the tokens.
    let mut kv8 = bf16;
    kv8.engine.kv_cache_dtype = KvCacheDtype::Fp8;
    let k = kv8.derive().expect("fp8 kv");
    assert_eq!(2 * k.kv_bytes_per_token, b.kv_bytes_per_token);
    assert!(k.kv_tokens >= 2 * b.kv_tokens - 16);
}
