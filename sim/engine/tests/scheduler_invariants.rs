//! Property tests of the engine's scheduler on random workloads: limits are never exceeded, admission
//! is first-come first-served, every admitted request finishes, and preempted work is redone.

use proptest::prelude::*;
use servesim_models::{Profile, SchedulingPolicy};
use servesim_sim::{Engine, EngineRequest, StepOutcome};

#[derive(Debug, Clone)]
struct Arriving {
    at: f64,
    req: EngineRequest,
}

fn small_profile(
    max_num_seqs: u32,
    budget: u32,
    kv_gib_tenths: u32,
    chunked: bool,
    policy: SchedulingPolicy,
) -> Profile {
    let mut p = Profile::builtin("a6000-qwen2.5-0.5b").expect("built-in profile");
    p.engine.max_num_seqs = max_num_seqs;
    p.engine.max_num_batched_tokens = budget;
    p.engine.chunked_prefill = chunked;
    p.engine.policy = policy;
    p.engine.max_model_len = Some(budget.max(2048));
    // Shrink the card so that the KV cache holds only a few thousand tokens and preemption happens.
    let d = p.derive().expect("servable");
    let reserved =
        (p.gpu.memory_bytes as f64 * p.engine.gpu_memory_utilization) as u64 - d.kv_cache_bytes;
    let kv =
        u64::from(kv_gib_tenths) * d.kv_bytes_per_token * 1024 / 10 + d.kv_bytes_per_token * 4096;
    p.gpu.memory_bytes =
        ((reserved + kv) as f64 / p.engine.gpu_memory_utilization).ceil() as u64 + 1;
    p
}

fn workload() -> impl Strategy<Value = Vec<Arriving>> {
    prop::collection::vec((0.0f64..2.0, 1u32..1500, 1u32..300, 1u32..400), 1..60).prop_map(|v| {
        let mut v: Vec<Arriving> = v
            .into_iter()
            .map(|(at, prompt, max_tokens, natural)| Arriving {
                at,
                req: EngineRequest {
                    prompt_tokens: prompt,
                    max_tokens,
                    natural_tokens: natural,
                },
            })
            .collect();
        v.sort_by(|a, b| a.at.total_cmp(&b.at));
        v
    })
}

fn policy() -> impl Strategy<Value = SchedulingPolicy> {
    prop_oneof![
        4 => Just(SchedulingPolicy::Continuous),
        1 => Just(SchedulingPolicy::Static),
        1 => Just(SchedulingPolicy::Serial),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn scheduler_invariants_hold(
        work in workload(),
        seqs in 1u32..32,
        budget in prop::sample::select(vec![256u32, 512, 2048]),
        kv in 0u32..40,
        chunked in any::<bool>(),
        policy in policy(),
    ) {
        let profile = small_profile(seqs, budget, kv, chunked || budget < 2048, policy);
        let mut engine = Engine::new(&profile).expect("engine");
        let total_blocks = engine.scheduler().kv.total_blocks();
        let max_running = if policy == SchedulingPolicy::Serial { 1 } else { seqs as usize };

        let mut now = 0.0;
        let mut next = 0;
        let mut admitted = Vec::new(); // (id, prompt, target)
        let mut first_scheduled_order = Vec::new();
        let mut finished = std::collections::HashMap::new();
        let mut computed_tokens: u64 = 0;
        let mut out = StepOutcome::default();
        let mut steps = 0;
        loop {
            while next < work.len() && work[next].at <= now {
                let r = work[next].req;
                if let Ok(id) = engine.add_request(r, work[next].at) {
                    let (target, _) = r.outcome();
                    admitted.push((id, r.prompt_tokens, target));
                }
                next += 1;
            }
            let before: Vec<u64> = engine.scheduler().running.iter().filter(|r| r.first_scheduled.is_none()).map(|r| r.id).collect();
            let waiting_before: Vec<u64> = engine.scheduler().waiting.iter().filter(|r| r.first_scheduled.is_none()).map(|r| r.id).collect();
            if !engine.step_into(now, &mut out) {
                prop_assert!(!engine.has_work() || next < work.len(), "idle engine with work left");
                if next >= work.len() { break; }
                now = work[next].at;
                continue;
            }
            steps += 1;
            prop_assert!(steps < 200_000, "no progress");
            let s = engine.scheduler();
            prop_assert!(s.running.len() <= max_running, "running {} > {}", s.running.len(), max_running);
            prop_assert!(out.tokens <= budget, "step of {} tokens over budget {}", out.tokens, budget);
            prop_assert!(s.kv.used_blocks() <= total_blocks);
            let leased: u64 = s.running.iter().chain(s.waiting.iter()).map(|r| r.lease.blocks()).sum();
            prop_assert_eq!(leased, s.kv.used_blocks(), "blocks leased vs used");
            computed_tokens += u64::from(out.tokens);
            // Newly scheduled requests, in the order they were admitted.
            for id in before.iter().chain(waiting_before.iter()) {
                let seen = s.running.iter().chain(s.waiting.iter()).find(|r| r.id == *id).map(|r| r.first_scheduled.is_some());
                let done = out.emissions.iter().any(|e| e.id == *id && e.finished.is_some());
                if seen == Some(true) || done {
                    first_scheduled_order.push(*id);
                }
            }
            for e in &out.emissions {
                if let Some(f) = e.finished {
                    prop_assert!(finished.insert(e.id, f.generated).is_none(), "finished twice");
                }
            }
            now = out.end();
        }
        // Every admitted request finished with exactly its target length.
        prop_assert_eq!(finished.len(), admitted.len());
        for (id, _, target) in &admitted {
            prop_assert_eq!(finished.get(id).copied(), Some(*target));
        }
        // FCFS: requests were first scheduled in arrival (id) order.
        let mut sorted = first_scheduled_order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(&first_scheduled_order, &sorted);
        // Preempted work is redone: every prompt and every generated token but the last was computed,
        // plus everything preemption threw away.
        let needed: u64 = admitted.iter().map(|(_, p, t)| u64::from(*p) + u64::from(*t) - 1).sum();
        prop_assert_eq!(computed_tokens, needed + engine.scheduler().discarded_tokens_total);
        prop_assert_eq!(engine.scheduler().kv.used_blocks(), 0, "all blocks returned");
    }
}

#[test]
fn preemption_happens_when_the_cache_is_small() {
    let profile = small_profile(64, 2048, 0, true, SchedulingPolicy::Continuous);
    let mut engine = Engine::new(&profile).expect("engine");
    for _ in 0..40 {
        engine
            .add_request(
                EngineRequest {
                    prompt_tokens: 500,
                    max_tokens: 400,
                    natural_tokens: u32::MAX,
                },
                0.0,
            )
            .expect("fits the context");
    }
    let mut now = 0.0;
    while let Some(out) = engine.step(now) {
        now = out.end();
    }
    assert!(
        engine.stats().preemptions_total > 0,
        "40 × 900 tokens in a ~4k-token cache must preempt"
    );
    assert!(engine.scheduler().discarded_tokens_total > 0);
    assert_eq!(engine.stats().kv_used_blocks, 0);
}

#[test]
fn requests_beyond_the_context_are_rejected() {
    let profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    let mut engine = Engine::new(&profile).expect("engine");
    let max = engine.max_model_len();
    let err = engine
        .add_request(
            EngineRequest {
                prompt_tokens: max,
                max_tokens: 1,
                natural_tokens: 5,
            },
            0.0,
        )
        .expect_err("over the context");
    assert!(
        err.to_string().contains("maximum context length is 32768"),
        "{err}"
    );
    assert!(
        engine
            .add_request(
                EngineRequest {
                    prompt_tokens: 1,
                    max_tokens: 0,
                    natural_tokens: 5
                },
                0.0
            )
            .is_err()
    );
    assert!(!engine.has_work());
}

#[test]
fn abort_frees_blocks_at_once() {
    let profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    let mut engine = Engine::new(&profile).expect("engine");
    let id = engine
        .add_request(
            EngineRequest {
                prompt_tokens: 1000,
                max_tokens: 100,
                natural_tokens: u32::MAX,
            },
            0.0,
        )
        .expect("admitted");
    let out = engine.step(0.0).expect("one step");
    assert!(engine.stats().kv_used_blocks > 0);
    assert!(engine.abort(id));
    assert_eq!(engine.stats().kv_used_blocks, 0);
    assert_eq!(engine.stats().running, 0);
    assert!(!engine.abort(id));
    assert!(engine.step(out.end()).is_none());
}
