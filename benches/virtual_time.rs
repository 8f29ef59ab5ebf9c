//! Virtual-time speed: how many simulated requests per second of wall time the engine and runner
//! process, for the full drill suite on the default profile and for a 100 k-request run.
//!
//! `cargo bench --bench virtual_time` prints rates; it asserts nothing (timings belong here, not in
//! tests). Run on an otherwise idle machine; results are per process, one core.

use std::time::Instant;

use servesim_models::Profile;
use servesim_sim::{ClientGroup, LevelPlan, RequestSpec, VirtualServer};
use servesim_validator::drills::SHORT_PROMPT;
use servesim_validator::{DrillKind, DrillParams, run_drill};

fn main() {
    let profile = Profile::builtin("a6000-qwen2.5-7b").expect("default profile");
    let params = DrillParams::default();

    // Full suite: every drill on one simulated server, as `simulate --drill all` runs it.
    let runs = 20;
    let mut best = f64::INFINITY;
    let mut total = 0.0;
    let mut requests = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        let mut server = VirtualServer::new(&profile, 0).expect("server");
        requests = 0;
        for d in DrillKind::ALL {
            let res = run_drill(&mut server, d, &params, &profile.name, &mut |_, run| {
                requests += run.records.len();
            })
            .expect("virtual target never fails");
            std::hint::black_box(res);
        }
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        total += s;
    }
    let mean = total / f64::from(runs);
    println!(
        "full suite: {requests} requests, mean {:.1} ms, best {:.1} ms over {runs} runs -> {:.0} simulated requests/s",
        mean * 1e3,
        best * 1e3,
        requests as f64 / mean
    );

    // 100 k requests, closed loop at concurrency 256 (the card's max_num_seqs), ~50 tokens each.
    let n = 100_000;
    let plan = LevelPlan {
        groups: vec![ClientGroup::new(
            0.0,
            256,
            vec![RequestSpec::chat(SHORT_PROMPT, 128); n],
        )],
        ..LevelPlan::default()
    };
    let mut server = VirtualServer::new(&profile, 0).expect("server");
    let t = Instant::now();
    let run = server.run_level(&plan);
    let s = t.elapsed().as_secs_f64();
    let tokens: u64 = run
        .records
        .iter()
        .filter_map(|r| r.completion_tokens)
        .map(u64::from)
        .sum();
    println!(
        "100k run: {n} requests, {tokens} tokens, {:.0} s simulated in {:.2} s wall -> {:.0} requests/s, {:.2} M tokens/s, {:.0}x real time",
        run.wall,
        s,
        n as f64 / s,
        tokens as f64 / s / 1e6,
        run.wall / s
    );
}
