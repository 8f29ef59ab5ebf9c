//! The bisection on the real simulator: the capacity it reports meets the SLOs on a run of its
//! own, the rate it stopped at breaks them, and the two are within the bisection's precision.

use servesim_planner::capacity::{Bisection, Measure, SimMeasure, bisect};
use servesim_planner::search::Candidate;
use servesim_planner::traffic::{Traffic, parse_slo, preset};
use servesim_sim::Policy;

#[test]
fn the_bisected_capacity_holds_the_slo_and_the_next_rate_breaks_it() {
    let candidate = Candidate {
        index: 0,
        gpu: "l4".into(),
        tensor_parallel_size: 1,
        max_num_seqs: 64,
        max_num_batched_tokens: 2048,
        gpu_memory_utilization: 0.9,
        quantization: None,
        kv_cache_dtype: servesim_models::KvCacheDtype::Auto,
    };
    let profile = candidate
        .profile("qwen2.5-0.5b-instruct", None)
        .expect("servable");
    let measure = SimMeasure {
        traffic: Traffic::preset(preset("chat").expect("chat")).expect("traffic"),
        requests: 40,
        probe_seconds: 5.0,
        max_requests: 5_000,
        seed: 3,
        router: Policy::RoundRobin,
    };
    let slo = parse_slo("ttft_p95=0.5,tpot_p50=0.02").expect("slo");
    let how = Bisection::default();
    let cap = bisect(&measure, &candidate, &profile, &slo, how).expect("bisect");
    let broken = cap.broken_at.expect("some rate breaks the SLO");
    assert!(cap.rate > 0.0 && broken > cap.rate && broken / cap.rate <= how.precision);
    assert!(cap.runs <= how.max_runs);
    let at = measure
        .measure(&candidate, &profile, cap.rate, 1)
        .expect("run");
    assert!(at.meets(&slo), "{at:?}");
    let over = measure
        .measure(&candidate, &profile, broken, 1)
        .expect("run");
    assert!(!over.meets(&slo), "{over:?}");
    // Deterministic: the same inputs give the same capacity.
    let again = bisect(&measure, &candidate, &profile, &slo, how).expect("bisect");
    assert_eq!(again, cap);
}
