//! Property tests of the engine's scheduler on random workloads: limits are never exceeded, admission
//! is first-come first-served, every admitted request finishes, and preempted work is redone. The
//! prompts are drawn from a few families that share beginnings, so that with prefix caching on the
//! block pool's invariants are checked after every step: reference counts equal the leases holding a
//! block, the free queue holds exactly the unreferenced blocks, the hash index agrees with the blocks.

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

/// Prompt ids of family `family`, `len` of them: prompts of one family share their beginning.
fn family_ids(family: u32, len: u32) -> Option<std::sync::Arc<[u32]>> {
    (family > 0).then(|| (0..len).map(|i| family * 1_000_000 + i).collect())
}

fn workload() -> impl Strategy<Value = Vec<Arriving>> {
    prop::collection::vec(
        (0.0f64..2.0, 1u32..1500, 1u32..300, 1u32..400, 0u32..4),
        1..60,
    )
    .prop_map(|v| {
        let mut v: Vec<Arriving> = v
            .into_iter()
            .map(|(at, prompt, max_tokens, natural, family)| Arriving {
                at,
                req: EngineRequest {
                    prompt_tokens: prompt,
                    prompt_ids: family_ids(family, prompt),
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
        caching in any::<bool>(),
    ) {
        let mut profile = small_profile(seqs, budget, kv, chunked || budget < 2048, policy);
        profile.engine.enable_prefix_caching = caching;
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
                let r = work[next].req.clone();
                if let Ok(id) = engine.add_request(r.clone(), work[next].at) {
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
            // Each block is referenced once per lease that holds it, and the held ones are the used.
            let mut holders = std::collections::HashMap::new();
            for r in s.running.iter().chain(s.waiting.iter()) {
                let ids = r.lease.block_ids();
                let distinct: std::collections::HashSet<_> = ids.iter().collect();
                prop_assert_eq!(distinct.len(), ids.len(), "a lease holds a block twice");
                for &b in ids {
                    *holders.entry(b).or_insert(0u32) += 1;
                }
            }
            prop_assert_eq!(holders.len() as u64, s.kv.used_blocks(), "blocks held vs used");
            for (&b, &n) in &holders {
                prop_assert_eq!(s.kv.ref_count(b), n, "ref count of block {}", b);
            }
            if let Err(e) = s.kv.check() {
                prop_assert!(false, "pool: {}", e);
            }
            prop_assert!((s.kv.usage() - s.kv.used_blocks() as f64 / s.kv.usable_blocks() as f64).abs() < 1e-9);
            if !caching {
                prop_assert_eq!(s.kv.cached_blocks(), 0);
            }
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
        // Preempted work is redone: every prompt and every generated token but the last was computed
        // or read from the prefix cache, plus everything preemption threw away.
        let needed: u64 = admitted.iter().map(|(_, p, t)| u64::from(*p) + u64::from(*t) - 1).sum();
        let sched = engine.scheduler();
        let read = sched.prefix_cache.hits + sched.preempted_prefix_cache.hits;
        prop_assert_eq!(computed_tokens + read, needed + sched.discarded_tokens_total);
        if !caching {
            prop_assert_eq!(read, 0);
        }
        prop_assert_eq!(sched.prefix_cache.requests, if caching { admitted.len() as u64 } else { 0 });
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
                    ..EngineRequest::default()
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
                ..EngineRequest::default()
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
                    natural_tokens: 5,
                    ..EngineRequest::default()
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
                ..EngineRequest::default()
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

fn prompt(ids: &[u32]) -> EngineRequest {
    EngineRequest {
        prompt_tokens: ids.len() as u32,
        prompt_ids: Some(ids.into()),
        max_tokens: 4,
        natural_tokens: u32::MAX,
    }
}

/// Run to completion; the end time.
fn drain(engine: &mut Engine, mut now: f64) -> f64 {
    while let Some(out) = engine.step(now) {
        now = out.end();
    }
    now
}

#[test]
fn a_repeated_prompt_reads_all_but_its_last_block_from_the_cache() {
    let profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    let mut engine = Engine::new(&profile).expect("engine");
    let ids: Vec<u32> = (0..100).collect();
    engine.add_request(prompt(&ids), 0.0).expect("admitted");
    let now = drain(&mut engine, 0.0);
    assert_eq!(engine.stats().prefix_cache_hits, 0);
    engine.add_request(prompt(&ids), now).expect("admitted");
    let now = drain(&mut engine, now);
    // 100 tokens: 6 full blocks of 16, all cached, all of them hit (at most 99 tokens may be).
    assert_eq!(engine.stats().prefix_cache_hits, 96);
    assert_eq!(engine.stats().prefix_cache_queries, 200);
    // A prompt of exactly 6 blocks recomputes its last block.
    engine
        .add_request(prompt(&ids[..96]), now)
        .expect("admitted");
    let now = drain(&mut engine, now);
    assert_eq!(engine.stats().prefix_cache_hits, 96 + 80);
    // An extension of the prompt hits the first one's blocks; a different start hits nothing.
    let mut longer = ids.clone();
    longer.extend(500..600);
    engine.add_request(prompt(&longer), now).expect("admitted");
    let now = drain(&mut engine, now);
    assert_eq!(engine.stats().prefix_cache_hits, 96 + 80 + 96);
    let mut other = ids;
    other[0] = 7;
    engine.add_request(prompt(&other), now).expect("admitted");
    drain(&mut engine, now);
    assert_eq!(engine.stats().prefix_cache_hits, 96 + 80 + 96);
    assert_eq!(engine.stats().kv_used_blocks, 0);
    engine.scheduler().kv.check().expect("consistent pool");
}

#[test]
fn without_prefix_caching_nothing_is_read() {
    let mut profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    profile.engine.enable_prefix_caching = false;
    let mut engine = Engine::new(&profile).expect("engine");
    let ids: Vec<u32> = (0..100).collect();
    let mut now = 0.0;
    for _ in 0..3 {
        engine.add_request(prompt(&ids), now).expect("admitted");
        now = drain(&mut engine, now);
    }
    let s = engine.stats();
    assert_eq!((s.prefix_cache_hits, s.prefix_cache_queries), (0, 0));
    assert_eq!(engine.scheduler().kv.cached_blocks(), 0);
}
