//! inference-perf configs on the virtual clock: stages send what inference-perf sends, shared
//! prefixes hit the prefix cache, multi-turn sessions wait for their answers, the lifecycle
//! metrics follow inference-perf's definitions, and configs it cannot simulate are refused by
//! field.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use servesim_models::{DEFAULT_PROFILE, Profile};
use servesim_sim::inference_perf::report::{RequestLifecycle, percentile, summarize};
use servesim_sim::inference_perf::{Benchmark, config, run_stages, summarize_requests, timer};
use servesim_sim::{Fleet, Prompt, RouterConfig};

fn bench(yaml: &str) -> Benchmark {
    let config = config::parse(yaml).expect("parse");
    Benchmark::from_config(&config, 3).expect("benchmark")
}

fn error(yaml: &str) -> String {
    match config::parse(yaml) {
        Err(e) => e.to_string(),
        Ok(c) => match Benchmark::from_config(&c, 3) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("config accepted:\n{yaml}"),
        },
    }
}

fn fleet() -> Fleet {
    let profile = Profile::builtin(DEFAULT_PROFILE).expect("profile");
    let mut fleet = Fleet::new(&[profile], RouterConfig::default(), 7).expect("fleet");
    fleet.skip_warmup();
    fleet
}

const SHARED: &str = "
load:
  type: constant
  stages:
  - {rate: 3, duration: 10}
  - {rate: 2.5, duration: 4}
api: {type: completion, streaming: true}
server: {type: vllm, base_url: 'http://x', ignore_eos: true}
data:
  type: shared_prefix
  shared_prefix:
    num_unique_system_prompts: 2
    num_users_per_system_prompt: 5
    system_prompt_len: 320
    question_len: 40
    output_len: 24
";

#[test]
fn constant_stages_send_rate_times_duration_ending_at_the_duration() {
    let b = bench(SHARED);
    assert_eq!(b.stages.len(), 2);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    for (s, want) in [(0usize, 30usize), (1, 10)] {
        let (plan, _) = b.stage_plan(s, &mut rng);
        assert_eq!(plan.arrivals.len(), want, "stage {s}");
        let times: Vec<f64> = plan.arrivals.iter().map(|a| a.at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        // ConstantLoadTimer scales its gaps to sum to the duration: the last send is at its end.
        let duration = b.stages[s].duration;
        assert!(
            (times[times.len() - 1] - duration).abs() < 1e-9,
            "{times:?}"
        );
        assert!(times[0] > 0.0);
    }
    // int(rate * duration) in floating point, as Python computes it.
    assert_eq!(timer::request_count(0.29, 100.0), 28);
    assert_eq!(timer::request_count(2.5, 4.0), 10);
}

#[test]
fn poisson_stages_send_an_exact_count_over_a_span_near_the_duration() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    for _ in 0..20 {
        let times = timer::poisson(10.0, 1000, &mut rng);
        assert_eq!(times.len(), 1000);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        // 1000 requests at 10/s take 100 s; the count per second is Poisson, so the span's sd is
        // sqrt(1000)/10 ≈ 3.2 s. 5 sd: a failure means the process is wrong, not unlucky.
        let span = times[999];
        assert!((span - 100.0).abs() < 16.0, "span {span}");
    }
    let b = bench(&SHARED.replace("type: constant", "type: poisson"));
    let (plan, _) = b.stage_plan(0, &mut rng);
    assert_eq!(plan.arrivals.len(), 30);
}

#[test]
fn shared_prefix_prompts_share_their_group_system_prompt_and_hit_the_cache() {
    let b = bench(SHARED);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (plan, gates) = b.stage_plan(0, &mut rng);
    assert!(gates.after.is_empty());
    let ids: Vec<Vec<u32>> = plan
        .arrivals
        .iter()
        .map(|a| match &a.request.prompt {
            Prompt::Ids(ids) => ids.to_vec(),
            other => panic!("prompt {other:?}"),
        })
        .collect();
    // 10 distinct prompts of 320 + 40 tokens, cycled; two system prompts among them.
    assert!(ids.iter().all(|p| p.len() == 360));
    let mut systems: Vec<&[u32]> = ids.iter().map(|p| &p[..320]).collect();
    systems.sort();
    systems.dedup();
    assert_eq!(systems.len(), 2);
    let mut questions: Vec<&[u32]> = ids.iter().map(|p| &p[320..]).collect();
    questions.sort();
    questions.dedup();
    assert_eq!(questions.len(), 10);
    assert_eq!(ids[0], ids[10], "request i sends prompt i mod 10");
    assert!(plan.arrivals.iter().all(|a| a.request.max_tokens == 24));
    assert!(plan.arrivals.iter().all(|a| a.request.ignore_eos));

    let mut fleet = fleet();
    let stages = run_stages(&mut fleet, &b, "m", |_| {});
    let s = fleet.replicas()[0].engine().stats();
    assert!(s.prefix_cache_hits > 0);
    let hit = s.prefix_cache_hits as f64 / s.prefix_cache_queries as f64;
    // Of 360 tokens a prompt, 320 are a shared system prompt and every prompt repeats: most hit.
    assert!(hit > 0.5, "hit rate {hit}");
    // ignore_eos: every answer runs to output_len.
    for st in &stages {
        assert!(st.requests.iter().all(|r| r.output_tokens == 24));
        assert!(st.requests.iter().all(|r| r.token_times.len() == 24));
    }
    // Stage 1 starts after stage 0 drained, on a whole second, plus the interval (1 s).
    assert!(stages[1].started >= stages[0].ended + 1.0 - 1e-9);
    let first_send = stages[1]
        .requests
        .iter()
        .map(|r| r.scheduled)
        .fold(f64::INFINITY, f64::min);
    assert!(first_send > stages[1].started + 1.0);
    let last_end = stages[0].requests.iter().map(|r| r.end).fold(0.0, f64::max);
    assert!(stages[0].ended >= last_end && stages[0].ended < last_end + 1.0 + 1e-9);
}

#[test]
fn without_ignore_eos_answers_stop_where_the_model_would() {
    let b = bench(
        &SHARED
            .replace("ignore_eos: true", "ignore_eos: false")
            .replace("output_len: 24", "output_len: 4000"),
    );
    assert!(!b.ignore_eos);
    let mut fleet = fleet();
    let stages = run_stages(&mut fleet, &b, "m", |_| {});
    let outputs: Vec<u32> = stages[0].requests.iter().map(|r| r.output_tokens).collect();
    assert!(outputs.iter().all(|n| (1..=4000).contains(n)));
    assert!(outputs.iter().any(|&n| n < 4000), "{outputs:?}");
}

#[test]
fn multi_turn_rounds_carry_the_conversation_and_wait_for_the_answer() {
    let yaml = SHARED
        .replace(
            "output_len: 24",
            "output_len: 24\n    enable_multi_turn_chat: true",
        )
        .replace("rate: 3, duration: 10", "rate: 10, duration: 3");
    let b = bench(&yaml);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (plan, gates) = b.stage_plan(0, &mut rng);
    assert_eq!(plan.arrivals.len(), 30);
    let ids = |i: usize| match &plan.arrivals[i].request.prompt {
        Prompt::Ids(ids) => ids.to_vec(),
        other => panic!("prompt {other:?}"),
    };
    for i in 10..30 {
        assert_eq!(
            gates.after[i],
            Some(i - 10),
            "request {i} is user {}'s next turn",
            i % 10
        );
        let (prev, this) = (ids(i - 10), ids(i));
        // Previous prompt, its 24-token answer, then the user's prompt again.
        assert_eq!(this.len(), prev.len() + 24 + 360);
        assert_eq!(&this[..prev.len()], prev.as_slice());
        assert_eq!(&this[prev.len() + 24..], ids(i % 10).as_slice());
    }

    let mut fleet = fleet();
    let stages = run_stages(&mut fleet, &b, "m", |_| {});
    let r = &stages[0].requests;
    for i in 10..30 {
        assert!(
            r[i].start >= r[i - 10].end - 1e-12,
            "turn {i} sent at {} before the previous answer ended at {}",
            r[i].start,
            r[i - 10].end
        );
        assert!(r[i].start >= r[i].scheduled);
    }
}

#[test]
fn a_shared_prefix_seed_fixes_the_prompts_and_the_run_seed_still_moves_the_send_times() {
    let yaml = SHARED.replace("output_len: 24", "output_len: 24\n    seed: 99");
    let config = config::parse(&yaml).expect("parse");
    let (a, b) = (
        Benchmark::from_config(&config, 1).expect("a"),
        Benchmark::from_config(&config, 2).expect("b"),
    );
    let plan = |bench: &Benchmark| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(bench.seed());
        bench.stage_plan(0, &mut rng).0
    };
    let (pa, pb) = (plan(&a), plan(&b));
    let prompts = |p: &servesim_sim::LevelPlan| -> Vec<Prompt> {
        p.arrivals
            .iter()
            .map(|x| x.request.prompt.clone())
            .collect()
    };
    assert_eq!(
        prompts(&pa),
        prompts(&pb),
        "same prompts: shared_prefix.seed"
    );
    assert_ne!(
        pa.arrivals[0].at, pb.arrivals[0].at,
        "send times follow the run's seed"
    );
}

#[test]
fn multi_turn_prompts_past_the_context_are_carried_by_length_alone() {
    let yaml = SHARED
        .replace(
            "output_len: 24",
            "output_len: 24\n    enable_multi_turn_chat: true",
        )
        .replace("rate: 3, duration: 10", "rate: 10, duration: 5");
    let b = bench(&yaml);
    let plan = |limit| {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        b.stage_plan_within(0, &mut rng, limit).0
    };
    let (full, cut) = (plan(None), plan(Some(1200)));
    let len = |p: &Prompt| match p {
        Prompt::Ids(ids) => ids.len() as u32,
        Prompt::Tokens(n) => *n,
        other => panic!("prompt {other:?}"),
    };
    for (a, c) in full.arrivals.iter().zip(&cut.arrivals) {
        let (a, c) = (&a.request.prompt, &c.request.prompt);
        assert_eq!(len(a), len(c), "same lengths either way");
        // Rounds: 360, 744, 1128, 1512, 1896 tokens; with 24 to generate, 1128 + 24 fits in 1200.
        let fits = len(a) + 24 <= 1200;
        assert_eq!(matches!(c, Prompt::Ids(_)), fits, "{}", len(a));
        if fits {
            assert_eq!(a, c);
        }
    }
}

#[test]
fn concurrent_stages_keep_their_concurrency_level() {
    let yaml = "
load:
  type: concurrent
  stages:
  - {num_requests: 30, concurrency_level: 3}
api: {streaming: true}
data:
  type: random
  input_distribution: {min: 50, max: 300, mean: 150, std_dev: 50, total_count: 40}
  output_distribution: {min: 10, max: 60, mean: 30, std_dev: 10, total_count: 40}
";
    let b = bench(yaml);
    assert_eq!(b.stages[0].rate, 30.0);
    assert_eq!(b.stages[0].concurrency, Some(3));
    let mut fleet = fleet();
    let stages = run_stages(&mut fleet, &b, "m", |_| {});
    let r = &stages[0].requests;
    assert_eq!(r.len(), 30);
    let mut peak = 0;
    for x in r {
        let flying = r
            .iter()
            .filter(|y| y.start <= x.start && y.end > x.start)
            .count();
        peak = peak.max(flying);
    }
    assert_eq!(peak, 3);
    let report = stages[0].report.as_ref().expect("report");
    assert_eq!(report.load_summary.concurrency, Some(3));
    assert_eq!(report.load_summary.requested_rate, Some(30.0));
    // Requests wait for a slot: the schedule delay shows it.
    assert!(
        report
            .load_summary
            .schedule_delay
            .as_ref()
            .expect("delay")
            .max
            > 0.5
    );
}

fn record(start: f64, end: f64, times: &[f64], out: u32) -> RequestLifecycle {
    RequestLifecycle {
        scheduled: start,
        start,
        end,
        token_times: times.to_vec(),
        input_tokens: 5,
        output_tokens: out,
        request_bytes: 100.0,
        error: None,
    }
}

#[test]
fn metrics_follow_inference_perfs_definitions_on_a_hand_worked_set() {
    // tests/required/reportgen/test_summarize_requests.py: 10 output tokens, token times 1, 2, 3,
    // over 0..10 s: TPOT = (3 − 1) / (10 − 1), NTPOT = 10 / 10, TTFT = 1.
    let r = summarize_requests(&[record(0.0, 10.0, &[1.0, 2.0, 3.0], 10)], &[50.0], None)
        .expect("report");
    let l = &r.successes.latency;
    let tpot = l.time_per_output_token.as_ref().expect("tpot").mean;
    assert!((tpot - 2.0 / 9.0).abs() < 1e-12);
    assert_eq!(
        l.normalized_time_per_output_token
            .as_ref()
            .expect("ntpot")
            .mean,
        1.0
    );
    assert_eq!(l.time_to_first_token.as_ref().expect("ttft").mean, 1.0);
    assert_eq!(l.inter_token_latency.as_ref().expect("itl").mean, 1.0);
    assert_eq!(r.successes.throughput.output_tokens_per_sec, 1.0);
    assert_eq!(r.successes.throughput.total_tokens_per_sec, 1.5);
    // The run's summary has no stage rate: its load_summary is the count and schedule delay only.
    assert!(r.load_summary.send_duration.is_none());

    // One token time: not streamable, no TTFT/TPOT/ITL (and None summaries are `null`).
    let r = summarize_requests(&[record(0.0, 2.0, &[1.0], 1)], &[50.0], None).expect("report");
    assert!(r.successes.latency.time_to_first_token.is_none());
    assert!(r.successes.latency.inter_token_latency.is_none());

    // ITL pools every gap of every request (not per-request means); TPOT is per request.
    let set = [
        record(0.0, 1.0, &[0.2, 0.3, 0.4, 0.5], 4),
        record(1.0, 3.0, &[1.5, 2.5], 2),
    ];
    let r = summarize_requests(
        &set,
        &[50.0, 99.9],
        Some(servesim_sim::inference_perf::report::StageRate {
            rate: 1.0,
            concurrency: None,
        }),
    )
    .expect("report");
    let itl = r
        .successes
        .latency
        .inter_token_latency
        .as_ref()
        .expect("itl");
    assert!((itl.mean - (0.1 + 0.1 + 0.1 + 1.0) / 4.0).abs() < 1e-12);
    let tpot = r
        .successes
        .latency
        .time_per_output_token
        .as_ref()
        .expect("tpot");
    assert!((tpot.mean - (0.1 + 1.0) / 2.0).abs() < 1e-12);
    assert_eq!(r.benchmark_time_seconds, 3.0);
    assert_eq!(r.load_summary.send_duration, Some(1.0));
    assert_eq!(r.load_summary.achieved_rate, Some(2.0));

    // Keys in the order inference-perf writes them (serde_json::Value would sort them: compare
    // the text).
    let text = serde_json::to_string(&r).expect("json");
    let order = |keys: &[&str]| {
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).expect(k))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{keys:?} in {text}");
    };
    order(&[
        "benchmark_time_seconds",
        "load_summary",
        "successes",
        "failures",
    ]);
    order(&[
        "count",
        "schedule_delay",
        "send_duration",
        "requested_rate",
        "achieved_rate",
    ]);
    order(&["mean", "min", "max", "median", "p99.9"]);
    assert!(
        text.contains(
            r#""request_latency":{"mean":1.5,"min":1.0,"max":2.0,"median":1.5,"p99.9":1.999}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#""prompt_tokens":{"total":10.0,"cached":0.0,"uncached":10.0,"mean":5.0"#),
        "{text}"
    );
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["failures"]["request_latency"], serde_json::Value::Null);
    assert_eq!(
        json["failures"]["prompt_tokens"]["total"].to_string(),
        "0.0"
    );
}

#[test]
fn percentiles_interpolate_linearly_as_numpy_does() {
    // np.percentile([1, 2, 3, 4], [0.1, 25, 50, 99.9]) = 1.003, 1.75, 2.5, 3.997.
    let x = [1.0, 2.0, 3.0, 4.0];
    for (p, want) in [
        (0.1, 1.003),
        (25.0, 1.75),
        (50.0, 2.5),
        (99.9, 3.997),
        (100.0, 4.0),
    ] {
        assert!((percentile(&x, p) - want).abs() < 1e-12, "p{p}");
    }
    let s = summarize(&[3.0, 1.0, 2.0], &[0.1, 1.0, 50.0]).expect("stats");
    let keys: Vec<&str> = s.percentiles.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["p0.1", "p1", "median"]);
    assert!(summarize(&[], &[50.0]).is_none());
}

#[test]
fn configs_servesim_cannot_simulate_are_refused_by_field() {
    let e = error(
        "data: {type: shareGPT, path: /data/sharegpt.json}\nload: {stages: [{rate: 1, duration: 1}]}",
    );
    assert!(
        e.contains("data.type") && e.contains("real dataset") && e.contains("sharegpt.json"),
        "{e}"
    );
    let e = error(&SHARED.replace("question_len: 40", "question_len: 40\n    questoin: 3"));
    assert!(
        e.contains("data.shared_prefix") && e.contains("questoin"),
        "{e}"
    );
    let e = error(&SHARED.replace("rate: 2.5, duration: 4", "rate: 2.5"));
    assert!(
        e.contains("load.stages[1]") && e.contains("duration"),
        "{e}"
    );
    let e = error(&SHARED.replace("duration: 4", "duration: 4.5"));
    assert!(
        e.contains("load.stages[1]") && e.contains("whole number"),
        "{e}"
    );
    assert_eq!(
        bench(&SHARED.replace("duration: 4", "duration: 4.0")).stages[1].requests,
        10
    );
    let e = error(&SHARED.replace("type: constant", "type: concurrent"));
    assert!(
        e.contains("load.stages[0]") && e.contains("concurrency_level"),
        "{e}"
    );
    let e = error(&SHARED.replace(
        "type: constant",
        "type: constant\n  sweep: {type: sideways}",
    ));
    assert!(e.contains("load.sweep"), "{e}");
    let e = error("load: {stages: [{rate: 1, duration: 1}]}");
    assert!(e.contains("data.type") && e.contains("mock"), "{e}");
    let random = "
load: {stages: [{rate: 5, duration: 10}]}
data:
  type: random
  input_distribution: {min: 10, max: 100, mean: 50, std_dev: 10, total_count: 20}
  output_distribution: {min: 10, max: 100, mean: 50, std_dev: 10, total_count: 20}
";
    // 50 requests but 20 lengths: inference-perf would fail the rest.
    let e = error(random);
    assert!(
        e.contains("total_count") && e.contains("50 requests"),
        "{e}"
    );
    let e = error(
        &random
            .replace(
                "std_dev: 10, total_count: 20}\n",
                "std_dev: 10, total_count: 20, type: poisson}\n",
            )
            .replace("total_count: 20", "total_count: 60"),
    );
    assert!(
        e.contains("data.input_distribution") || e.contains("data.output_distribution"),
        "{e}"
    );
    let e = error(&random.replace(", total_count: 20", ""));
    assert!(e.contains("total_count"), "{e}");
    let e = error(&SHARED.replace("server:", "serverr:"));
    assert!(e.contains("serverr"), "{e}");
    // The path is named once, with the YAML position.
    let e = error(&SHARED.replace("streaming: true", "streaming: yes please"));
    assert!(e.starts_with("api.streaming: invalid type"), "{e}");
    assert!(!e.contains("api.streaming: api.streaming"), "{e}");
}

#[test]
fn fields_that_do_not_change_a_simulation_are_accepted() {
    let b = bench(
        "
api: {type: completion, streaming: false, headers: {x: y}}
server: {type: vllm, model_name: m, base_url: 'http://h:8000', api_key: k}
tokenizer: {pretrained_model_name_or_path: m}
metrics: {type: prometheus, prometheus: {url: 'http://p:9090'}}
storage: {local_storage: {path: out}}
report:
  request_lifecycle: {summary: true, per_stage: true, per_request: true, percentiles: [50, 90]}
  goodput: {constraints: {ttft: 0.5, request_latency: 4}}
load: {type: poisson, stages: [{rate: 1, duration: 5}], num_workers: 4, base_seed: 9}
data:
  type: synthetic
  input_distribution: {min: 10, max: 100, mean: 50, std_dev: 10, total_count: 10}
  output_distribution: {min: 10, max: 100, mean: 50, std_dev: 10, total_count: 10}
",
    );
    assert!(b.ignore_eos, "inference-perf's default");
    assert!(!b.streaming);
    assert_eq!(b.percentiles, [50.0, 90.0]);
    assert_eq!(b.max_in_flight, Some(400));
    let slo = b.goodput.expect("goodput");
    assert_eq!(
        (slo.ttft, slo.request_latency, slo.tpot),
        (Some(0.5), Some(4.0), None)
    );
}

/// The records of fixtures/inference-perf/reference/summarize_requests.py.
fn reference_records(failures: bool) -> Vec<RequestLifecycle> {
    let ok = |start: f64, end: f64, times: &[f64], out: u32| RequestLifecycle {
        scheduled: start,
        start,
        end,
        token_times: times.to_vec(),
        input_tokens: 5,
        output_tokens: out,
        request_bytes: 100.0,
        error: None,
    };
    let failed = |start: f64, end: f64, status: u16, message: &str| RequestLifecycle {
        scheduled: start - 0.25,
        start,
        end,
        token_times: Vec::new(),
        input_tokens: 7,
        output_tokens: 0,
        request_bytes: 1.0,
        error: Some((format!("HTTP Error {status}"), message.to_string())),
    };
    let mut v = vec![
        ok(0.0, 1.0, &[0.2, 0.3, 0.4, 0.5], 4),
        ok(1.0, 3.0, &[1.5, 2.5], 2),
    ];
    if failures {
        v.push(failed(
            0.5,
            0.5,
            429,
            "the router's admission refused the request",
        ));
        v.push(failed(
            2.0,
            2.125,
            400,
            "This model's maximum context length is 32768 tokens",
        ));
        v.push(failed(
            2.5,
            2.5,
            429,
            "the router's admission refused the request",
        ));
    }
    v
}

/// The same records through inference-perf 0.7.0's own `summarize_requests` (its output checked
/// in beside the script that made it) and through ours give the same text, keys, order and values.
#[test]
fn reports_match_inference_perfs_own_summarize_requests_byte_for_byte() {
    use servesim_sim::inference_perf::config::default_percentiles;
    use servesim_sim::inference_perf::report::{Slo, StageRate, summarize_requests_with_goodput};
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/inference-perf/reference"
    );
    let cases = [
        (
            "tiny",
            reference_records(false),
            vec![50.0, 99.9],
            Some(StageRate {
                rate: 1.0,
                concurrency: None,
            }),
        ),
        (
            "summary",
            reference_records(false),
            default_percentiles(),
            None,
        ),
        (
            "concurrent-failures",
            reference_records(true),
            default_percentiles(),
            Some(StageRate {
                rate: 5.0,
                concurrency: Some(4),
            }),
        ),
    ];
    for (name, records, percentiles, stage) in cases {
        let want = std::fs::read_to_string(format!("{dir}/{name}.json")).expect("reference");
        let report = summarize_requests(&records, &percentiles, stage).expect("report");
        let got = serde_json::to_string_pretty(&report).expect("json");
        assert_eq!(got, want.trim_end(), "{name}");
    }
    // A stage whose every request failed.
    let failed: Vec<RequestLifecycle> = reference_records(true)
        .into_iter()
        .filter(|r| r.error.is_some() && r.start != 2.0)
        .collect();
    let want = std::fs::read_to_string(format!("{dir}/all-failed.json")).expect("reference");
    let report = summarize_requests(
        &failed,
        &default_percentiles(),
        Some(StageRate {
            rate: 2.0,
            concurrency: None,
        }),
    )
    .expect("report");
    let got = serde_json::to_string_pretty(&report).expect("json");
    assert_eq!(got, want.trim_end(), "all-failed");
    // report.goodput: constraints {request_latency: 1.5, itl: 0.2, ttft: 0.3, tpot: 0.5}.
    let slo = Slo {
        ttft: Some(0.3),
        tpot: Some(0.5),
        itl: Some(0.2),
        ntpot: None,
        request_latency: Some(1.5),
    };
    let want = std::fs::read_to_string(format!("{dir}/goodput.json")).expect("reference");
    let report = summarize_requests_with_goodput(
        &reference_records(false),
        &default_percentiles(),
        Some(StageRate {
            rate: 1.0,
            concurrency: None,
        }),
        Some(&slo),
    )
    .expect("report");
    let got = serde_json::to_string_pretty(&report).expect("json");
    assert_eq!(got, want.trim_end(), "goodput");
}

#[test]
fn trace_replay_sends_at_the_traces_times_with_its_lengths() {
    use servesim_sim::inference_perf::trace;
    // Timestamps as inference-perf's parse_timestamp reads them: relative to the first line.
    let t = trace::parse(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n\
         2023-11-16 18:15:46.6805900,374,44\n\
         2023-11-16T18:15:50.9951690Z,396,109\n\
         not a line\n\
         2023-11-17 00:00:00,10,5\n",
    );
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].at, 0.0);
    assert!((t[1].at - 4.314579).abs() < 1e-6, "{}", t[1].at);
    assert!((t[2].at - (5.0 * 3600.0 + 44.0 * 60.0 + 13.31941)).abs() < 1e-5);
    assert_eq!((t[1].input, t[1].output), (396, 109));

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let yaml = std::fs::read_to_string(format!("{root}/fixtures/inference-perf/trace-replay.yaml"))
        .expect("fixture")
        .replace("fixtures/", &format!("{root}/fixtures/"));
    let b = bench(&yaml);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (plan, _) = b.stage_plan(0, &mut rng);
    assert_eq!(
        plan.arrivals.len(),
        20,
        "the data trace's count, not rate × duration"
    );
    assert_eq!(plan.arrivals[0].at, 0.0);
    assert_eq!(plan.arrivals[0].request.prompt, Prompt::Tokens(374));
    assert_eq!(plan.arrivals[0].request.max_tokens, 44);
    assert!((plan.arrivals[1].at - 4.314579).abs() < 1e-6);

    // A load trace shorter than the stage's requests (3 req/s × 30 s = 90 > 20): inference-perf's
    // timer runs dry.
    let short = format!(
        "load:\n  type: trace_replay\n  trace: {{file: {root}/fixtures/inference-perf/azure-trace.csv}}\n  \
         stages: [{{rate: 3, duration: 30}}]\n\
         data:\n  type: random\n  \
         input_distribution: {{total_count: 100, mean: 50, min: 10, max: 100}}\n  \
         output_distribution: {{total_count: 100, mean: 50, min: 10, max: 100}}\n"
    );
    let e = error(&short);
    assert!(
        e.contains("load.stages[0]") && e.contains("only 20 send times"),
        "{e}"
    );
    let e = error(&short.replace("  trace: {", "  tracee: {"));
    assert!(e.contains("tracee"), "{e}");
    let e = error(&short.replace("  trace: {file", "  trace: {format: Other, file"));
    assert!(e.contains("load.trace.format"), "{e}");
}

#[test]
fn a_sweep_probes_the_saturation_and_spaces_its_stages_as_inference_perf_does() {
    let yaml = |kind: &str| {
        SHARED.replace(
            "type: constant\n",
            &format!(
                "type: constant\n  sweep: {{type: {kind}, num_requests: 200, timeout: 30, num_stages: 5, \
                 stage_duration: 10}}\n"
            ),
        )
    };
    // generateRates: np.linspace(1, S, 5) and 1 + S − np.geomspace(S, 1, 5), rounded to 2 places.
    let b = bench(&yaml("linear"));
    let rates: Vec<f64> = b
        .swept(10.0)
        .expect("swept")
        .stages
        .iter()
        .map(|s| s.rate)
        .collect();
    assert_eq!(rates, [1.0, 3.25, 5.5, 7.75, 10.0]);
    let b = bench(&yaml("geometric"));
    let swept = b.swept(10.0).expect("swept");
    let rates: Vec<f64> = swept.stages.iter().map(|s| s.rate).collect();
    assert_eq!(rates, [1.0, 5.38, 7.84, 9.22, 10.0]);
    assert_eq!(
        swept.stages[4].requests, 100,
        "10 req/s for stage_duration 10 s"
    );

    // The probe: 200 requests over 5 s, then stages from what it found.
    let mut fleet = fleet();
    let found = servesim_sim::inference_perf::sweep(&mut fleet, &b).expect("sweep");
    assert_eq!(found.probe_requests, 200);
    assert!(found.samples >= 2);
    assert!(found.saturation > 1.0, "{found:?}");
    let stages = run_stages(
        &mut fleet,
        &b.swept(found.saturation).expect("swept"),
        "m",
        |_| {},
    );
    assert_eq!(stages.len(), 5);

    let e = error(&yaml("linear").replace("type: constant", "type: concurrent"));
    assert!(e.contains("load.sweep") && e.contains("CONCURRENT"), "{e}");
}
