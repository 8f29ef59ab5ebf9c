//! The built-in catalogue: every profile resolves, and the derived figures follow the physics.

use servesim_models::{Iteration, PrefillChunk, Profile, PromptTokenizer};

#[test]
fn every_builtin_profile_resolves_and_is_servable() {
    let names = Profile::builtin_names();
    assert!(names.len() >= 16, "{names:?}");
    for name in names {
        let p = Profile::builtin(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = p.derive().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.kv_blocks > 0 && d.single_decode_step_s > 0.0, "{name}");
        eprintln!(
            "{name:24} weights {:6.2} GiB kv/token {:7} kv tokens {:8} blocks {:6} seqs {:4} budget {:5} step {:.2} ms",
            d.weight_bytes as f64 / (1u64 << 30) as f64,
            d.kv_bytes_per_token,
            d.kv_tokens,
            d.kv_blocks,
            p.engine.max_num_seqs,
            p.engine.max_num_batched_tokens,
            d.single_decode_step_s * 1e3
        );
    }
}

#[test]
fn default_profile_figures() {
    let p = Profile::builtin("a6000-qwen2.5-7b").expect("default profile");
    let d = p.derive().expect("servable");
    assert_eq!(d.kv_bytes_per_token, 57_344);
    assert_eq!(d.weight_bytes, 7_615_616_512 * 2);
    assert_eq!(d.kv_tokens, d.kv_blocks * 16);
    // vLLM's defaults for a card under 70 GiB.
    assert_eq!(
        (p.engine.max_num_seqs, p.engine.max_num_batched_tokens),
        (256, 2048)
    );
    let tok = PromptTokenizer::for_model(&p.model);
    eprintln!(
        "short prompt: {}",
        tok.count_chat(["Explain what a GPU scheduler does, in two sentences."])
    );
    let cost = p.cost_model();
    for (n, ctx) in [(1, 60), (8, 60), (64, 80), (256, 80)] {
        let ctxs = vec![ctx; n];
        let c = cost.iteration(&Iteration {
            prefills: &[],
            decode_contexts: &ctxs,
        });
        eprintln!(
            "decode batch {n}: weights {:.2} gemm {:.2} total {:.2} ms",
            c.parts.weights_s * 1e3,
            c.parts.gemm_s * 1e3,
            c.total_s * 1e3
        );
    }
    for t in [40, 160, 320, 1800] {
        let c = cost.iteration(&Iteration {
            prefills: &[PrefillChunk {
                tokens: t,
                cached: 0,
                samples: true,
            }],
            decode_contexts: &[],
        });
        eprintln!(
            "prefill {t}: weights {:.2} gemm {:.2} total {:.2} ms",
            c.parts.weights_s * 1e3,
            c.parts.gemm_s * 1e3,
            c.total_s * 1e3
        );
    }
}

/// Multi-GPU profiles are named `GPUxN-MODEL[-QUANT]` and shard over exactly N GPUs; a `-fp8`,
/// `-awq` or `-gptq` suffix is the profile's quantisation.
#[test]
fn profile_names_say_their_gpu_count_and_quantisation() {
    for name in Profile::builtin_names() {
        let p = Profile::builtin(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        // `h100x4-...`, `a100-80gbx2-...`: "x" and the count close the GPU part.
        let gpus = (2..=8u32)
            .find(|n| name.contains(&format!("x{n}-")))
            .unwrap_or(1);
        assert_eq!(p.engine.tensor_parallel_size, gpus, "{name}");
        let quant = p.engine.quantization.map(|q| q.as_str());
        let suffix = ["fp8", "awq", "gptq"]
            .into_iter()
            .find(|q| name.ends_with(&format!("-{q}")));
        assert_eq!(quant, suffix, "{name}");
    }
}
