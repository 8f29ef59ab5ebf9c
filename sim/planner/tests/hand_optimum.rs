//! The planner against an optimum worked out by hand: two GPU types whose per-replica capacities
//! and prices are known (a formula stands in for the simulator), so the cheapest fleet, its
//! replica count and its cost can be computed on paper and asserted.

use servesim_models::Profile;
use servesim_planner::capacity::{Bisection, Measure};
use servesim_planner::latency::{Latencies, Summary};
use servesim_planner::plan::{View, assemble};
use servesim_planner::prices::Prices;
use servesim_planner::search::{Candidate, Grid, PlanInputs, evaluate_all};
use servesim_planner::shard::{Shard, merge, roundtrip, write};
use servesim_planner::traffic::TrafficSummary;
use servesim_planner::{PlanError, SloStatus};

/// Capacity (req/s per replica at ttft_p95 = 0.5 s) by GPU, TP and max_num_seqs.
fn true_capacity(c: &Candidate) -> f64 {
    let base = match (c.gpu.as_str(), c.tensor_parallel_size) {
        ("l4", 1) => 2.2,
        ("l4", 2) => 3.1,
        ("rtx-a6000", 1) => 4.5,
        ("rtx-a6000", 2) => 7.0,
        _ => 1.0,
    };
    if c.max_num_seqs < 256 {
        base * 0.6
    } else {
        base
    }
}

/// TTFT p95 grows linearly with the load: 0.5 s exactly at the capacity.
#[derive(Debug)]
struct Formula;

impl Measure for Formula {
    fn measure(
        &self,
        c: &Candidate,
        _profile: &Profile,
        rate: f64,
        replicas: u32,
    ) -> Result<Latencies, PlanError> {
        let t = 0.5 * rate / (true_capacity(c) * f64::from(replicas));
        let flat = |v: f64| Summary {
            mean: v,
            p50: v,
            p90: v,
            p95: v,
            p99: v,
        };
        Ok(Latencies {
            requests: 100,
            errors: 0,
            ttft: flat(t),
            tpot: flat(0.02),
            e2e: flat(t + 2.0),
            output_tok_s: 0.0,
            mean_in_flight: 0.0,
            classes: Vec::new(),
        })
    }
}

fn inputs(prices: &str) -> PlanInputs {
    PlanInputs {
        model: "qwen2.5-0.5b-instruct".into(),
        grid: Grid {
            gpus: vec!["l4".into(), "rtx-a6000".into()],
            // Qwen2.5-0.5B has 14 attention heads: TP 4 is refused, as vLLM refuses it.
            tensor_parallel: vec![1, 2, 4],
            max_num_seqs: vec![64, 256],
            max_num_batched_tokens: vec![2048],
            gpu_memory_utilization: vec![0.9],
            max_model_len: None,
            quantization: vec![None],
            kv_cache_dtype: vec![servesim_models::KvCacheDtype::Auto],
        },
        traffic: TrafficSummary {
            name: "formula".into(),
            spec: None,
            mean_input_tokens: 100.0,
            mean_output_tokens: 100.0,
        },
        slo: "ttft_p95=0.5".into(),
        peak_rate: 10.0,
        rate_source: "--rate 10".into(),
        headroom: 1.2,
        tolerance: 0.05,
        requests: 100,
        probe_seconds: 60.0,
        seed: 0,
        bisection: Bisection::default(),
        router: "round-robin".into(),
        prices: Prices::parse(prices, "test").expect("prices"),
    }
}

const PRICES: &str = "[gpu.l4]\nusd_per_hour = 1.0\n[gpu.rtx-a6000]\nusd_per_hour = 3.0\n";

#[test]
fn the_cheapest_fleet_is_the_one_worked_out_by_hand() {
    let inputs = inputs(PRICES);
    let all = inputs.candidates();
    assert_eq!(all.len(), 2 * 3 * 2);
    let results = evaluate_all(&inputs, &Formula, &all).expect("evaluate");
    // Bisection lands within 2 % below each true capacity.
    for r in results.iter().filter(|r| r.rejected.is_none()) {
        let cap = r.capacity.as_ref().expect("capacity").rate;
        let truth = true_capacity(&r.candidate);
        assert!(cap <= truth && cap >= truth / 1.02, "{cap} vs {truth}");
    }
    let plan = assemble(&inputs, &results, View::Cheapest, Some(&Formula)).expect("plan");
    // 1.2 × 10 req/s = 12 req/s to serve:
    //   L4 TP1:    ceil(12 / 2.2) = 6 replicas × 1 GPU × $1 = $6/h   <- the optimum
    //   L4 TP2:    ceil(12 / 3.1) = 4 replicas × 2 GPUs × $1 = $8/h
    //   A6000 TP1: ceil(12 / 4.5) = 3 replicas × 1 GPU × $3 = $9/h
    //   L4 TP1 at max_num_seqs 64 (0.6 × 2.2 = 1.32): ceil(12 / 1.32) = 10 replicas = $10/h
    //   A6000 TP2: ceil(12 / 7.0) = 2 replicas × 2 GPUs × $3 = $12/h
    let costs: Vec<(String, u32, u32, u32, f64)> = plan
        .rows
        .iter()
        .map(|r| {
            (
                r.gpu.clone(),
                r.tensor_parallel_size,
                r.max_num_seqs,
                r.replicas,
                r.usd_per_hour,
            )
        })
        .take(4)
        .collect();
    assert_eq!(
        costs,
        vec![
            ("l4".into(), 1, 256, 6, 6.0),
            ("l4".into(), 2, 256, 4, 8.0),
            ("rtx-a6000".into(), 1, 256, 3, 9.0),
            ("l4".into(), 1, 64, 10, 10.0),
        ]
    );
    let best = &plan.rows[0];
    assert_eq!((best.total_gpus, best.usd_per_month), (6, 6.0 * 730.0));
    assert_eq!(best.calibration, "data-sheet");
    assert_eq!(plan.rows[2].calibration, "silicon-calibrated");
    assert_eq!(best.slo_status, SloStatus::Pass);
    // $/1M output tokens: $6/h over 10 req/s × 100 tokens × 3600 s.
    assert!((best.usd_per_million_output_tokens - 6.0 / 3.6).abs() < 1e-9);
    // TP 4 on both cards is refused with vLLM's words.
    assert_eq!(plan.unservable.len(), 4);
    assert!(plan.unservable.iter().all(|u| u.tensor_parallel_size == 4
        && u.reason.contains(
            "Total number of attention heads (14) must be divisible by tensor parallel size (4)."
        )));
    let v = plan.verified.as_ref().expect("verified");
    assert_eq!((v.candidate, v.replicas), (best.candidate, 6));
    assert_eq!(v.slo_status, SloStatus::Pass);
}

#[test]
fn a_cheaper_price_moves_the_optimum_and_views_rank_differently() {
    let mut inputs = inputs(PRICES);
    inputs.prices.override_one("a6000=1.5").expect("override");
    let results = evaluate_all(&inputs, &Formula, &inputs.candidates()).expect("evaluate");
    let plan = assemble(&inputs, &results, View::Cheapest, None).expect("plan");
    // A6000 TP1: 3 replicas × $1.5 = $4.5/h beats the L4s' $6/h.
    let best = &plan.rows[0];
    assert_eq!(
        (best.gpu.as_str(), best.replicas, best.usd_per_hour),
        ("rtx-a6000", 3, 4.5)
    );
    let fast = assemble(&inputs, &results, View::Latency, None).expect("plan");
    assert!(fast.rows[0].ttft.p95 <= fast.rows[1].ttft.p95);
}

#[test]
fn shards_merged_equal_one_unsharded_run() {
    let inputs = inputs(PRICES);
    let all = inputs.candidates();
    let results = evaluate_all(&inputs, &Formula, &all).expect("evaluate");
    let (i, r) = roundtrip(&inputs, &results).expect("roundtrip");
    let whole = assemble(&i, &r, View::Cheapest, Some(&Formula)).expect("plan");
    let files: Vec<(String, String)> = (0..3)
        .map(|k| {
            let shard = Shard { index: k, count: 3 };
            let part = evaluate_all(&inputs, &Formula, &shard.select(&all)).expect("part");
            (
                format!("shard-{k}"),
                write(&inputs, shard, all.len(), &part).expect("write"),
            )
        })
        .rev()
        .collect();
    let (mi, mr) = merge(&files).expect("merge");
    let merged = assemble(&mi, &mr, View::Cheapest, Some(&Formula)).expect("plan");
    assert_eq!(
        serde_json::to_string_pretty(&merged).expect("json"),
        serde_json::to_string_pretty(&whole).expect("json")
    );
    // A missing shard, a duplicate and a shard of another plan are refused.
    assert!(merge(&files[..2]).is_err());
    let mut twice = files.clone();
    twice.push(files[0].clone());
    assert!(merge(&twice).is_err());
    let mut other = inputs;
    other.peak_rate = 11.0;
    let stranger = write(&other, Shard { index: 0, count: 3 }, all.len(), &[]).expect("write");
    let mut mixed = files[..2].to_vec();
    mixed.push(("other".into(), stranger));
    assert!(merge(&mixed).is_err());
}
