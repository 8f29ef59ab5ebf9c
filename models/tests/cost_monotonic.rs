//! The cost model never makes more work cheaper: adding tokens, sequences or context only adds time.

use proptest::prelude::*;
use servesim_models::{Iteration, PrefillChunk, Profile};

fn chunks() -> impl Strategy<Value = Vec<PrefillChunk>> {
    prop::collection::vec(
        (1u32..4096, 0u32..16_384, any::<bool>()).prop_map(|(tokens, cached, samples)| {
            PrefillChunk {
                tokens,
                cached,
                samples,
            }
        }),
        0..6,
    )
}

fn profiles() -> impl Strategy<Value = Profile> {
    prop::sample::select(Profile::builtin_names())
        .prop_map(|n| Profile::builtin(&n).expect("built-in"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn more_work_is_never_cheaper(
        profile in profiles(),
        prefills in chunks(),
        decodes in prop::collection::vec(1u32..32_768, 0..300),
        extra_tokens in 1u32..512,
        extra_context in 1u32..4096,
        which in 0usize..4,
    ) {
        let cost = profile.cost_model();
        let base = cost.iteration(&Iteration { prefills: &prefills, decode_contexts: &decodes });
        let mut p2 = prefills;
        let mut d2 = decodes;
        match which {
            0 => d2.push(extra_context),
            1 if !d2.is_empty() => d2[0] += extra_context,
            2 if !p2.is_empty() => p2[0].tokens += extra_tokens,
            3 if !p2.is_empty() => p2[0].cached += extra_context,
            _ => p2.push(PrefillChunk { tokens: extra_tokens, cached: 0, samples: true }),
        }
        let more = cost.iteration(&Iteration { prefills: &p2, decode_contexts: &d2 });
        prop_assert!(more.total_s >= base.total_s, "{:?} -> {:?}", base, more);
        prop_assert!(more.flops >= base.flops && more.bytes >= base.bytes);
        prop_assert!(more.total_s.is_finite() && more.total_s > 0.0);
    }
}

#[test]
fn decode_is_weight_bound_and_big_prefill_compute_bound() {
    let p = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    let cost = p.cost_model();
    let one = cost.iteration(&Iteration {
        prefills: &[],
        decode_contexts: &[100],
    });
    let q = one.parts;
    assert!(q.weights_s > 0.85 * one.gpu_s, "{one:?}");
    assert!(q.gemm_s < 0.01 * q.weights_s, "{one:?}");
    // Single-sequence decode streams the layers' 13.05 GB at 86.8 % of 768 GB/s: ~19.6 ms.
    assert!((q.weights_s - 0.01958).abs() < 0.0002, "{one:?}");
    let chunk = [PrefillChunk {
        tokens: 2048,
        cached: 0,
        samples: true,
    }];
    let big = cost.iteration(&Iteration {
        prefills: &chunk,
        decode_contexts: &[],
    });
    assert!(big.parts.gemm_s > 5.0 * big.parts.weights_s, "{big:?}");
    let empty = cost.iteration(&Iteration {
        prefills: &[],
        decode_contexts: &[],
    });
    assert_eq!(empty.total_s, 0.0);
}

#[test]
fn async_scheduling_hides_host_time_until_it_is_longer() {
    let mut p = Profile::builtin("h200+qwen2.5-0.5b-instruct").expect("profile");
    let one = [10u32];
    let hidden = p.cost_model().iteration(&Iteration {
        prefills: &[],
        decode_contexts: &one,
    });
    // A 0.5B model's step is shorter than the engine's CPU work: the host sets the pace.
    assert!(hidden.host_s > hidden.gpu_s, "{hidden:?}");
    assert_eq!(hidden.total_s, hidden.host_s);
    p.engine.async_scheduling = false;
    let serial = p.cost_model().iteration(&Iteration {
        prefills: &[],
        decode_contexts: &one,
    });
    assert!((serial.total_s - (serial.gpu_s + serial.host_s)).abs() < 1e-12);
}

/// The parts of an iteration's cost add up to its GPU time and its total.
#[test]
fn parts_add_up_to_the_total() {
    let p = Profile::builtin("h200-qwen2.5-7b").expect("profile");
    let cost = p.cost_model();
    let c = cost.iteration(&Iteration {
        prefills: &[PrefillChunk {
            tokens: 512,
            cached: 1024,
            samples: true,
        }],
        decode_contexts: &[1000; 64],
    });
    let q = c.parts;
    let sum = q.weights_s
        + q.gemm_s
        + q.attention_s
        + q.activations_s
        + q.layer_overhead_s
        + q.logits_s
        + q.sampler_s;
    assert!((sum - c.gpu_s).abs() < 1e-12, "{c:?}");
    assert!((c.gpu_s + q.host_exposed_s - c.total_s).abs() < 1e-12);
    assert!(q.gemm_s > 0.0 && q.attention_s > 0.0 && c.silicon_s() < c.gpu_s);
}
