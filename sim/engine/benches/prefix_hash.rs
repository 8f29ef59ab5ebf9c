//! Cost of automatic prefix caching per prompt token: hashing a prompt's full blocks (what every
//! request pays once when it reaches the engine) and looking them up in a warm cache (what each
//! admission pays).
//!
//! `cargo bench -p servesim-sim --bench prefix_hash` (release). Environment: `SERVESIM_BENCH_TOKENS`
//! (prompt length, default 4096), `SERVESIM_BENCH_ROUNDS` (default 2000).

use std::hint::black_box;
use std::time::Instant;

use servesim_sim::kv_cache::{KvCache, extend_hashes};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tokens = env_or("SERVESIM_BENCH_TOKENS", 4096);
    let rounds = env_or("SERVESIM_BENCH_ROUNDS", 2000);
    let block_size = 16u32;
    let prompt: Vec<u32> = (0..tokens as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % 150_000)
        .collect();
    let full = tokens / block_size as usize;
    let mut scratch = Vec::new();

    let mut hashes = Vec::with_capacity(full);
    let t = Instant::now();
    for _ in 0..rounds {
        hashes.clear();
        extend_hashes(&mut hashes, block_size, full, |p| prompt[p], &mut scratch);
        black_box(&hashes);
    }
    let hash_ns = t.elapsed().as_nanos() as f64 / (rounds * full * block_size as usize) as f64;

    // A cache holding the prompt's blocks; look the whole prompt up, again and again.
    let kv = KvCache::new(full as u64 + 2, block_size, true);
    let mut lease = kv.lease();
    assert!(kv.grow(&mut lease, &[], tokens as u64));
    kv.commit(&mut lease, &hashes);
    let mut hit = Vec::new();
    let t = Instant::now();
    for _ in 0..rounds {
        kv.lookup(black_box(&hashes), full, &mut hit);
        black_box(&hit);
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / (rounds * full * block_size as usize) as f64;
    assert_eq!(hit.len(), full);

    println!(
        "prefix caching, {tokens}-token prompt, block size {block_size}: hashing {hash_ns:.2} ns/token ({:.1} µs per prompt), lookup {lookup_ns:.2} ns/token",
        hash_ns * tokens as f64 / 1000.0
    );
}
