//! Fleets on the virtual clock: routers differ as theory says on workloads made to show it, and a
//! fleet of one is a single server whatever its router.

use servesim_models::Profile;
use servesim_sim::{
    Fleet, FleetRun, LevelPlan, MultiTurn, OpenLoop, RouterConfig, TokenDist, VirtualServer,
};

fn profile(name: &str) -> Profile {
    Profile::builtin(name).expect("profile")
}

fn run(profiles: &[Profile], router: &str, scrape: f64, plan: &LevelPlan) -> (Fleet, FleetRun) {
    let config = RouterConfig {
        policy: router.parse().expect("router"),
        scrape_interval_s: scrape,
        ..RouterConfig::default()
    };
    let mut fleet = Fleet::new(profiles, config, 11).expect("fleet");
    fleet.skip_warmup();
    let run = fleet.run_level(plan);
    (fleet, run)
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn ttfts(run: &FleetRun) -> Vec<f64> {
    run.level.records.iter().filter_map(|r| r.ttft()).collect()
}

/// Prompt tokens found in the prefix cache over those looked up, fleet-wide.
fn hit_rate(fleet: &Fleet) -> f64 {
    let (hits, queries) = fleet.replicas().iter().fold((0, 0), |(h, q), r| {
        let s = r.engine().stats();
        (h + s.prefix_cache_hits, q + s.prefix_cache_queries)
    });
    hits as f64 / queries as f64
}

fn open_loop(rate: f64, requests: usize, input: u32, output: u32) -> LevelPlan {
    OpenLoop {
        arrival: "poisson".parse().expect("arrival"),
        rate,
        requests,
        input_tokens: TokenDist::Fixed(input),
        output_tokens: TokenDist::Fixed(output),
        seed: 5,
    }
    .plan()
    .expect("plan")
}

#[test]
fn a_fleet_of_one_is_a_single_server_whatever_its_router() {
    let p = profile("a6000-qwen2.5-7b");
    let multi = MultiTurn {
        sessions: 8,
        turns: 3,
        system_words: 200,
        message_words: 40,
        answer_words: 60,
        max_tokens: 64,
        think_s: 0.5,
    }
    .plan();
    let mut plans = vec![multi, open_loop(20.0, 200, 300, 100)];
    plans[1].record_event_times = true;
    for plan in &plans {
        let mut server = VirtualServer::new(&p, 11).expect("server");
        server.skip_warmup();
        let alone = server.run_level(plan);
        for router in [
            "round-robin",
            "least-kv",
            "prefix-affinity",
            "weighted:prefix=2,queue=1,kv=1,requests=1",
        ] {
            let (_, fleet) = run(std::slice::from_ref(&p), router, 0.1, plan);
            assert_eq!(fleet.level.records, alone.records, "{router}");
            assert_eq!(fleet.level.wall.to_bits(), alone.wall.to_bits(), "{router}");
            assert!(fleet.replica.iter().all(|k| *k == Some(0)));
        }
    }
}

#[test]
fn prefix_affinity_keeps_sessions_on_their_cache() {
    // 32 chat sessions of 6 turns on 4 replicas: each turn's prompt extends the last one.
    let plan = MultiTurn {
        sessions: 32,
        turns: 6,
        system_words: 300,
        message_words: 60,
        answer_words: 120,
        max_tokens: 64,
        think_s: 0.2,
    }
    .plan();
    let p = vec![profile("a6000-qwen2.5-7b"); 4];
    let (rr_fleet, rr) = run(&p, "round-robin", 0.1, &plan);
    let (pa_fleet, pa) = run(&p, "prefix-affinity", 0.1, &plan);
    let (rr_hit, pa_hit) = (hit_rate(&rr_fleet), hit_rate(&pa_fleet));
    eprintln!("hit rate rr {rr_hit:.3} pa {pa_hit:.3}");
    assert!(
        pa_hit > rr_hit + 0.2,
        "hit rate: prefix-affinity {pa_hit:.3}, round-robin {rr_hit:.3}"
    );
    let (rr_ttft, pa_ttft) = (mean(ttfts(&rr).into_iter()), mean(ttfts(&pa).into_iter()));
    assert!(
        pa_ttft < rr_ttft * 0.8,
        "mean TTFT: prefix-affinity {pa_ttft:.4}, round-robin {rr_ttft:.4}"
    );
    // Each session stays on one replica under prefix affinity.
    for g in 0..32 {
        let reps: std::collections::BTreeSet<_> = pa
            .level
            .records
            .iter()
            .zip(&pa.replica)
            .filter(|(r, _)| r.origin == servesim_sim::Origin::Group(g))
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(reps.len(), 1, "session {g} went to {reps:?}");
    }
}

#[test]
fn least_requests_beats_round_robin_on_a_mixed_fleet() {
    // One H100 and three A6000s; round-robin gives each a quarter, whatever its speed.
    let p = vec![
        profile("h100-qwen2.5-7b"),
        profile("a6000-qwen2.5-7b"),
        profile("a6000-qwen2.5-7b"),
        profile("a6000-qwen2.5-7b"),
    ];
    let plan = open_loop(24.0, 1500, 600, 250);
    let (_, rr) = run(&p, "round-robin", 0.1, &plan);
    let (_, lr) = run(&p, "least-requests", 0.1, &plan);
    let e2e = |r: &FleetRun| r.level.records.iter().map(|r| r.e2e()).collect::<Vec<_>>();
    let (rr_p95, lr_p95) = (percentile(e2e(&rr), 0.95), percentile(e2e(&lr), 0.95));
    assert!(
        lr_p95 < rr_p95 * 0.9,
        "e2e p95: least-requests {lr_p95:.3}, round-robin {rr_p95:.3}"
    );
    let share = |r: &FleetRun| {
        r.replica.iter().filter(|k| **k == Some(0)).count() as f64 / r.replica.len() as f64
    };
    assert!((share(&rr) - 0.25).abs() < 0.01);
    assert!(share(&lr) > 0.3, "the H100 took {:.3}", share(&lr));
}

#[test]
fn stale_metrics_make_least_kv_herd() {
    // Bursty arrivals on 4 replicas. Read fresh, least-kv spreads them; scraped once a second it
    // sends every request between two scrapes to the one replica that looked emptiest.
    let plan = OpenLoop {
        arrival: "gamma:cv=2".parse().expect("arrival"),
        rate: 8.0,
        requests: 800,
        input_tokens: TokenDist::Fixed(800),
        output_tokens: TokenDist::Fixed(200),
        seed: 9,
    }
    .plan()
    .expect("plan");
    let p = vec![profile("a6000-qwen2.5-7b"); 4];
    let (_, fresh) = run(&p, "least-kv", 0.0, &plan);
    let (_, stale) = run(&p, "least-kv", 1.0, &plan);
    // Herding: within each scrape window, the share of its requests that went to one replica.
    let herd = |r: &FleetRun| {
        let mut windows: std::collections::BTreeMap<u64, [usize; 4]> = Default::default();
        for (rec, k) in r.level.records.iter().zip(&r.replica) {
            if let Some(k) = k {
                windows.entry(rec.sent.floor() as u64).or_default()[*k as usize] += 1;
            }
        }
        mean(
            windows
                .values()
                .filter(|c| c.iter().sum::<usize>() >= 8)
                .map(|c| *c.iter().max().unwrap_or(&0) as f64 / c.iter().sum::<usize>() as f64),
        )
    };
    let (h_fresh, h_stale) = (herd(&fresh), herd(&stale));
    eprintln!("herd fresh {h_fresh:.3} stale {h_stale:.3}");
    assert!(
        h_stale > 0.95,
        "stale: {h_stale:.3} of a window's requests on one replica"
    );
    assert!(h_fresh < h_stale - 0.15, "fresh: {h_fresh:.3}");
    let (t_fresh, t_stale) = (
        percentile(ttfts(&fresh), 0.95),
        percentile(ttfts(&stale), 0.95),
    );
    eprintln!("ttft p95 fresh {t_fresh:.3} stale {t_stale:.3}");
    assert!(
        t_stale > t_fresh * 1.25,
        "ttft p95: stale {t_stale:.3}, fresh {t_fresh:.3}"
    );
}
