//! The floor under the server's emission lag on this machine: the same bursts of token-sized
//! writes, with no HTTP, no engine and no per-request state.
//!
//! One writer thread per CPU (as the server's HTTP lanes) owns its share of `STREAMS` loopback TCP
//! connections (`TCP_NODELAY`, as the server sets). Every `PERIOD` (an iteration of the A6000
//! profile at 256 running requests) each writer wakes just before the due time, as the server's
//! lanes do, and writes one 380-byte chunk (a chat token's SSE event with its chunk framing) to
//! each of its connections; a tokio client with 2 workers (as `server_lag`'s) reads every
//! connection. Reported: the lag of each write (its end minus the due time) p50/p99/p99.9, as
//! `server_lag` reports the server's, and the writers' CPU per write.
//!
//! `cargo bench -p servesim-server --bench loopback_floor`. Environment: `SERVESIM_FLOOR_STREAMS`
//! (default 256), `SERVESIM_FLOOR_WRITERS` (default: CPUs), `SERVESIM_FLOOR_SECS` (default 10).

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{clock_ticks, env_or, thread_cpu};
use tokio::io::AsyncReadExt;

const PERIOD: Duration = Duration::from_millis(70);
const CHUNK: usize = 380;
/// How early a writer wakes before each due time (the server's lanes get their share 0.5 ms early).
const LEAD: Duration = Duration::from_micros(500);

fn main() {
    let streams: usize = env_or("SERVESIM_FLOOR_STREAMS", 256);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let writers: usize = env_or("SERVESIM_FLOOR_WRITERS", cpus).max(1);
    let secs: f64 = env_or("SERVESIM_FLOOR_SECS", 10.0);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("floor-client")
        .enable_all()
        .build()
        .expect("client runtime");
    let mut shares: Vec<Vec<TcpStream>> = (0..writers).map(|_| Vec::new()).collect();
    for i in 0..streams {
        let reader = TcpStream::connect(addr).expect("connect");
        let (sender, _) = listener.accept().expect("accept");
        sender.set_nodelay(true).expect("nodelay");
        reader.set_nonblocking(true).expect("nonblocking");
        client.spawn(async move {
            let Ok(mut reader) = tokio::net::TcpStream::from_std(reader) else {
                return;
            };
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
        shares[i % writers].push(sender);
    }
    let rounds = (secs / PERIOD.as_secs_f64()).ceil() as u32;
    let start = Instant::now() + Duration::from_millis(100);
    let ticks = clock_ticks();
    let cpu_before = thread_cpu(&["floor-writer"], ticks);
    let threads: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(w, mut share)| {
            std::thread::Builder::new()
                .name(format!("floor-writer-{w}"))
                .spawn(move || {
                    let chunk = vec![b'x'; CHUNK];
                    let mut lags = Vec::with_capacity(share.len() * rounds as usize);
                    for r in 0..rounds {
                        let due = start + PERIOD * r;
                        if let Some(wait) = due.checked_duration_since(Instant::now() + LEAD) {
                            std::thread::sleep(wait);
                        }
                        while Instant::now() < due {
                            std::hint::spin_loop();
                        }
                        for s in &mut share {
                            if s.write_all(&chunk).is_err() {
                                continue;
                            }
                            lags.push(due.elapsed().as_secs_f64());
                        }
                    }
                    lags
                })
                .expect("writer thread")
        })
        .collect();
    // The writers' CPU is read while they are alive (a finished thread leaves /proc/self/task).
    let mut lags: Vec<f64> = Vec::new();
    let mut cpu = 0.0;
    for (i, t) in threads.into_iter().enumerate() {
        if i == 0 {
            // Sample between the last two rounds: every writer is alive, and `rounds - 1` rounds
            // are written.
            let end = start + PERIOD * rounds.saturating_sub(2) + PERIOD / 2;
            if let Some(wait) = end.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            cpu = thread_cpu(&["floor-writer"], ticks) - cpu_before;
        }
        lags.extend(t.join().expect("writer"));
    }
    lags.sort_by(f64::total_cmp);
    let q = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize] * 1e3;
    let writes_measured = streams as f64 * f64::from(rounds.saturating_sub(1));
    println!(
        "## loopback floor: {streams} connections, {writers} writer threads, {CHUNK}-byte writes every {} ms, {} rounds, {cpus} CPUs",
        PERIOD.as_millis(),
        rounds
    );
    println!("| writes | lag p50 ms | lag p99 ms | lag p99.9 ms | writer CPU µs/write |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {:.3} | {:.3} | {:.3} | {:.1} |",
        lags.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        cpu / writes_measured * 1e6
    );
}
