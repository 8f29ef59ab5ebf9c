//! Benchmark of the load generator itself: how many requests and streamed events per second it
//! sustains, how late it sends open-loop arrivals at high rates, and what a timestamp costs.
//!
//! `cargo bench -p servesim-validator --bench client` runs it against the in-process scripted server
//! (zero service time). Set `SERVESIM_BENCH_URL=http://127.0.0.1:PORT` to aim it at another server
//! instead (e.g. `servesim serve` with a tiny `--time-scale`), and `SERVESIM_BENCH_THREADS` to set
//! the client's runtime threads (default 1, leaving a core to the server on a 2-core machine) and
//! `SERVESIM_BENCH_REQUESTS` the requests per closed-loop run (default 20000).

use std::hint::black_box;
use std::time::Instant;

use servesim_sim::{Arrival, ClientGroup, LevelPlan, LevelRun, RequestSpec};
use servesim_validator::drills::COUNT_PROMPT;
use servesim_validator::http::{ClientConfig, HttpTarget, LevelClock};
use servesim_validator::load::CappedTarget;
use servesim_validator::mock::{Reply, ScriptedServer, StreamReply};
use servesim_validator::suite::Target;
use servesim_validator::trace::Summary;

fn closed(workers: usize, n: usize, max_tokens: u32) -> LevelPlan {
    LevelPlan {
        groups: vec![ClientGroup::new(
            0.0,
            workers,
            vec![RequestSpec::chat("hi", max_tokens); n],
        )],
        ..LevelPlan::default()
    }
}

fn open(rate: f64, n: usize) -> LevelPlan {
    LevelPlan {
        arrivals: (0..n)
            .map(|i| Arrival {
                at: i as f64 / rate,
                request: RequestSpec::chat("hi", 1),
            })
            .collect(),
        ..LevelPlan::default()
    }
}

fn report(name: &str, run: &LevelRun) {
    let ok = run.records.iter().filter(|r| r.ok()).count();
    let events: u64 = run.records.iter().map(|r| u64::from(r.events)).sum();
    let lag: Vec<f64> = run
        .records
        .iter()
        .filter_map(|r| r.ready.map(|ready| r.sent - ready))
        .collect();
    let lag = Summary::of(&lag);
    println!(
        "{name:<44} {:>6} ok {:>9.0} req/s {:>11.0} events/s  client lag p50 {:>6.1} us p99 {:>7.1} us",
        ok,
        run.records.len() as f64 / run.wall,
        events as f64 / run.wall,
        lag.median * 1e6,
        lag.p99 * 1e6
    );
}

fn schedule(name: &str, run: &LevelRun) {
    let lag: Vec<f64> = run.records.iter().map(|r| r.sent - r.scheduled).collect();
    let s = Summary::of(&lag);
    println!(
        "{name:<44} {:>6} sent, schedule lag p50 {:>7.1} us p99 {:>8.1} us max {:>8.1} us",
        run.records.len(),
        s.median * 1e6,
        s.p99 * 1e6,
        lag.iter().copied().fold(0.0, f64::max) * 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Timestamp overhead: what the client pays per read for its clock.
    let n = 10_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(Instant::now());
    }
    let instant_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let clock = LevelClock::start();
    let t = Instant::now();
    for _ in 0..n {
        black_box(clock.now());
    }
    let clock_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!(
        "timestamp: Instant::now {instant_ns:.1} ns, level clock (f64 seconds) {clock_ns:.1} ns"
    );

    let threads: usize = std::env::var("SERVESIM_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    match std::env::var("SERVESIM_BENCH_URL") {
        Ok(url) => {
            println!("server: {url}; client threads {threads}");
            run_all(&url, &url, threads)
        }
        Err(_) => {
            let short = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(1)))?;
            let long = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(LONG)))?;
            println!(
                "server: in-process scripted server (zero service time); client threads {threads}"
            );
            run_all(&short.url(), &long.url(), threads)
        }
    }
}

/// Events per long answer (max_tokens of the counting prompt against a real server).
const LONG: u32 = 1000;

fn run_all(
    short_url: &str,
    long_url: &str,
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::var("SERVESIM_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut short = HttpTarget::new(ClientConfig::new(short_url), threads)?;
    let _ = short.run_level(&closed(64, n / 10, 1))?;
    for conc in [1, 16, 64, 256] {
        let run = short.run_level(&closed(conc, n, 1))?;
        report(&format!("closed loop, 1-event answers, conc {conc}"), &run);
    }
    let mut long = HttpTarget::new(ClientConfig::new(long_url), threads)?;
    for conc in [1, 16, 64] {
        let mut plan = closed(conc, (n / 100).max(conc), LONG);
        for r in &mut plan.groups[0].requests {
            *r = RequestSpec::chat(COUNT_PROMPT, LONG);
        }
        let run = long.run_level(&plan)?;
        report(&format!("closed loop, long answers, conc {conc}"), &run);
    }
    for rate in [1_000.0, 5_000.0, 10_000.0, 20_000.0] {
        let n = (rate * 2.0) as usize;
        let run = short.run_level_capped(&open(rate, n), None)?;
        schedule(&format!("open loop, {rate} req/s for 2 s"), &run);
    }
    Ok(())
}
