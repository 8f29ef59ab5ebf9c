//! How fast the virtual clock runs a fleet: an open-loop Poisson load over 64 replicas at a rate
//! they serve without queueing up, at several request counts, so the cost per request shows whether
//! the run grows linearly with the requests.
//!
//! `cargo bench -p servesim-sim --bench fleet_scale` (release). Environment:
//! `SERVESIM_BENCH_REQUESTS` (comma-separated counts, default 100000,300000,1000000),
//! `SERVESIM_BENCH_REPLICAS` (default 64), `SERVESIM_BENCH_ROUTER` (default least-requests).

use std::time::Instant;

use servesim_models::Profile;
use servesim_sim::{Fleet, OpenLoop, RouterConfig, TokenDist};

fn main() {
    let counts: Vec<usize> = std::env::var("SERVESIM_BENCH_REQUESTS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 300_000, 1_000_000]);
    let replicas: usize = std::env::var("SERVESIM_BENCH_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let router = std::env::var("SERVESIM_BENCH_ROUTER").unwrap_or_else(|_| "least-requests".into());
    let Ok(profile) = Profile::builtin("a6000-qwen2.5-7b") else {
        eprintln!("the default profile does not load");
        return;
    };
    let Ok(policy) = router.parse() else {
        eprintln!("unknown router {router}");
        return;
    };
    // About 6 requests/s per A6000 replica at 512 in / 128 out keeps each well below its knee.
    let rate = 6.0 * replicas as f64;
    println!(
        "fleet_scale: {replicas} x a6000-qwen2.5-7b, {router}, poisson {rate} req/s, 512 in / 128 out"
    );
    println!(
        "{:>10}{:>10}{:>12}{:>14}{:>14}{:>12}",
        "requests", "wall s", "virtual s", "requests/s", "us/request", "steps"
    );
    for n in counts {
        let plan = OpenLoop {
            arrival: "poisson"
                .parse()
                .unwrap_or(servesim_sim::ArrivalProcess::Poisson),
            rate,
            requests: n,
            input_tokens: TokenDist::Fixed(512),
            output_tokens: TokenDist::Fixed(128),
            seed: 1,
        }
        .plan();
        let Ok(plan) = plan else { return };
        let config = RouterConfig {
            policy,
            ..RouterConfig::default()
        };
        let Ok(mut fleet) = Fleet::new(&vec![profile.clone(); replicas], config, 1) else {
            return;
        };
        fleet.skip_warmup();
        let t = Instant::now();
        let run = fleet.run_level(&plan);
        let wall = t.elapsed().as_secs_f64();
        let steps: u64 = fleet
            .replicas()
            .iter()
            .map(|r| r.engine().stats().steps_total)
            .sum();
        let ok = run.level.records.iter().filter(|r| r.ok()).count();
        assert_eq!(ok, n, "every request served");
        println!(
            "{n:>10}{wall:>10.2}{:>12.0}{:>14.0}{:>14.2}{steps:>12}",
            run.level.wall,
            n as f64 / wall,
            wall / n as f64 * 1e6
        );
    }
}
