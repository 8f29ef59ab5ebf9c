//! Real-time fidelity and emission-lag benchmark of the fake vLLM server (issue 3).
//!
//! Runs the server in-process on a loopback port with a lightweight raw-HTTP client (so the client
//! costs little CPU next to the server on a small machine), then reports:
//! - **fidelity**: the saturation drill's level at 256 concurrent streams (512 short-prompt chat
//!   requests, max_tokens 128) measured at the client in real time, against the virtual-time
//!   runner on the same workload (closed loop), and against the same requests replayed in virtual
//!   time at the moments the real clients sent them: TTFT p50 and TPOT p50 and their difference;
//! - **lag and CPU**: closed-loop load at 1 k and 4 k concurrent streams for a fixed time; the
//!   server's emission lag (actual minus scheduled send time of each token) p50/p99 and the CPU time
//!   the server's threads use per streamed token.
//!
//! `cargo bench -p servesim-server --bench server_lag` (release). Environment: `SERVESIM_BENCH_PROFILE`
//! (default a6000-qwen2.5-7b), `SERVESIM_BENCH_SECS` (load seconds per level, default 10),
//! `SERVESIM_BENCH_STREAMS` (comma-separated, default 1000,4000), `SERVESIM_BENCH_MAX_SEQS`
//! (override max_num_seqs, to let every stream run at once), `SERVESIM_BENCH_WORKERS` (server
//! tokio workers, default 2), `SERVESIM_BENCH_CLIENT_THREADS` (default 2),
//! `SERVESIM_BENCH_CLIENT_NICE` (niceness of the client threads, default 0: same as the server),
//! `SERVESIM_BENCH_CDF=1` (also print the lag distribution of each level to stderr),
//! `SERVESIM_BENCH_LANES` (single-threaded HTTP runtimes, default one per CPU as `servesim serve`;
//! 0: one multi-threaded runtime with `SERVESIM_BENCH_WORKERS` workers),
//! `SERVESIM_BENCH_SKIP_FIDELITY=1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{CpuMeter, clock_ticks, env_or, fd_limit};
use servesim_models::Profile;
use servesim_server::{self as server, AppState, ServerConfig};
use servesim_sim::{Arrival, ClientGroup, LevelPlan, LevelRun, RequestSpec, VirtualServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMPT: &str = "Explain what a GPU scheduler does, in two sentences.";

/// What one request looked like at the client (seconds from the level's start).
#[derive(Debug, Clone, Copy)]
struct Observed {
    sent: f64,
    first: f64,
    end: f64,
    events: u32,
}

/// The successful requests of a virtual-time run, as the client would have seen them.
fn observed(run: &LevelRun) -> Vec<Observed> {
    run.records
        .iter()
        .filter(|r| r.ok())
        .map(|r| Observed {
            sent: r.sent,
            first: r.first_event.unwrap_or(r.end),
            end: r.end,
            events: r.events,
        })
        .collect()
}

fn request_bytes(addr: SocketAddr, max_tokens: u32) -> Vec<u8> {
    let body = format!(
        "{{\"model\":\"local\",\"messages\":[{{\"role\":\"user\",\"content\":\"{PROMPT}\"}}],\"stream\":true,\"max_tokens\":{max_tokens},\"temperature\":0.7}}"
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// One streaming request over a kept-alive connection; `None` on any failure.
async fn one_request(
    conn: &mut TcpStream,
    req: &[u8],
    t0: Instant,
    buf: &mut Vec<u8>,
) -> Option<Observed> {
    buf.clear();
    let sent = t0.elapsed().as_secs_f64();
    conn.write_all(req).await.ok()?;
    let mut chunk = [0u8; 16 * 1024];
    let mut scan = 0;
    let mut body_start = None;
    let mut first = None;
    let mut events = 0;
    let mut done = false;
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let now = t0.elapsed().as_secs_f64();
        if body_start.is_none() {
            let h = find(buf, b"\r\n\r\n", 0)?;
            if !buf.starts_with(b"HTTP/1.1 200") {
                return None;
            }
            body_start = Some(h + 4);
            scan = h + 4;
        }
        while let Some(p) = find(buf, b"data: ", scan) {
            if buf.len() < p + 12 {
                // Too short to tell `[DONE]` from an event: wait for more bytes.
                scan = p;
                break;
            }
            scan = p + 6;
            if buf[scan..].starts_with(b"[DONE]") {
                done = true;
            } else {
                events += 1;
                first.get_or_insert(now);
            }
        }
        if find(buf, b"data: ", scan).is_none() {
            scan = scan.max(buf.len().saturating_sub(6));
        }
        if done && buf.ends_with(b"0\r\n\r\n") {
            return Some(Observed {
                sent,
                first: first?,
                end: now,
                events,
            });
        }
    }
}

/// `workers` closed-loop clients; stop after `total` requests or when `stop` is set.
async fn closed_loop(
    addr: SocketAddr,
    workers: usize,
    total: Option<u64>,
    max_tokens: u32,
    stop: Arc<AtomicBool>,
    t0: Instant,
) -> Vec<Observed> {
    let req: Arc<[u8]> = Arc::from(request_bytes(addr, max_tokens));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (req, issued, stop) = (Arc::clone(&req), Arc::clone(&issued), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut buf = Vec::with_capacity(32 * 1024);
            let Ok(mut conn) = TcpStream::connect(addr).await else {
                return out;
            };
            let _ = conn.set_nodelay(true);
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(total) = total
                    && issued.fetch_add(1, Ordering::Relaxed) >= total
                {
                    break;
                }
                match one_request(&mut conn, &req, t0, &mut buf).await {
                    Some(o) => out.push(o),
                    None => break,
                }
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(v) = t.await {
            all.extend(v);
        }
    }
    all
}

/// Python's `statistics.quantiles(n=100)` exclusive method, the `p`-th cut point (as drills.md).
fn pct(values: &mut [f64], p: usize) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 1 {
        return values[0];
    }
    let m = n as f64 + 1.0;
    let pos = p as f64 * m / 100.0;
    let j = (pos.floor() as usize).clamp(1, n - 1);
    let delta = pos - j as f64;
    values[j - 1] + (values[j] - values[j - 1]) * delta
}

fn ttft_tpot(obs: &[Observed]) -> (f64, f64) {
    let mut ttft: Vec<f64> = obs.iter().map(|o| o.first - o.sent).collect();
    let mut tpot: Vec<f64> = obs
        .iter()
        .map(|o| (o.end - o.first) / f64::from(o.events.saturating_sub(1).max(1)))
        .collect();
    (pct(&mut ttft, 50), pct(&mut tpot, 50))
}

struct Running {
    state: AppState,
    lanes: Option<server::Lanes>,
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    runtime: tokio::runtime::Runtime,
}

/// Start a server on its own 2-thread runtime (the "2 cores" of the target).
fn start_server(profile: &Profile, seed: u64) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("SERVESIM_BENCH_WORKERS", 2))
        .thread_name("servesim-http")
        .enable_all()
        .build()
        .expect("server runtime");
    let mut config = ServerConfig::new(profile.clone());
    config.seed = seed;
    config.shutdown_grace = Duration::from_secs(1);
    // SERVESIM_BENCH_LANES=N: connections on N single-threaded runtimes (default one per CPU, as
    // `servesim serve` does); 0: all on the multi-threaded runtime above.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lanes = match env_or("SERVESIM_BENCH_LANES", cpus) {
        0 => None,
        n => Some(server::Lanes::start(n, "servesim-lane").expect("lanes")),
    };
    let state = {
        let _inside = runtime.enter();
        match &lanes {
            Some(l) => AppState::with_lanes(config, l.handles()).expect("server state"),
            None => AppState::new(config).expect("server state"),
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let st = state.clone();
    runtime.spawn(async move {
        let _ = server::serve(listener, st, async {
            let _ = rx.await;
        })
        .await;
    });
    Running {
        state,
        lanes,
        addr,
        shutdown: tx,
        runtime,
    }
}

fn stop_server(s: Running) {
    let _ = s.shutdown.send(());
    s.runtime.shutdown_timeout(Duration::from_secs(3));
    s.state.driver().stop();
    drop(s.lanes);
}

fn client_runtime() -> tokio::runtime::Runtime {
    let nice: i32 = env_or("SERVESIM_BENCH_CLIENT_NICE", 0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("SERVESIM_BENCH_CLIENT_THREADS", 2))
        .thread_name("bench-client")
        .on_thread_start(move || {
            if nice != 0 {
                lower_priority(nice);
            }
        })
        .enable_all()
        .build()
        .expect("client runtime")
}

/// Give the calling thread a niceness of `nice` (Linux, via `renice` on its thread id; the workspace
/// forbids the unsafe `setpriority` call). With the client at a lower priority than the server on
/// the same two cores, a token burst is written before the client reads it, as when the client
/// runs on other cores; the lag is then the server's own.
fn lower_priority(nice: i32) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
    let ok = tid.is_some_and(|tid| {
        std::process::Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", &tid])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        eprintln!("warning: could not renice a client thread to {nice}");
    }
}

fn fidelity(profile: &Profile) {
    let (workers, requests, max_tokens, seed) = (256usize, 512usize, 128u32, 0u64);
    let mut virt = VirtualServer::new(profile, seed).expect("servable profile");
    // One request first on both sides, so the engine's one-off start-up delay is out of the way
    // (in real time the 256 clients cannot all send at the same instant the way they do in
    // virtual time, and who joins the slow first iteration would otherwise decide the TTFTs).
    let warm = |n: usize| LevelPlan {
        groups: vec![ClientGroup::new(
            0.0,
            1,
            vec![RequestSpec::chat(PROMPT, max_tokens); n],
        )],
        arrivals: vec![],
        record_event_times: false,
    };
    virt.run_level(&warm(1));
    let run = virt.run_level(&LevelPlan {
        groups: vec![ClientGroup::new(
            0.0,
            workers,
            vec![RequestSpec::chat(PROMPT, max_tokens); requests],
        )],
        arrivals: vec![],
        record_event_times: false,
    });
    let virt_obs = observed(&run);
    let (v_ttft, v_tpot) = ttft_tpot(&virt_obs);

    let server = start_server(profile, seed);
    let client = client_runtime();
    let t0 = Instant::now();
    let _ = client.block_on(closed_loop(
        server.addr,
        1,
        Some(1),
        max_tokens,
        Arc::new(AtomicBool::new(false)),
        t0,
    ));
    server.state.lag_probe().emission.reset();
    let real = client.block_on(closed_loop(
        server.addr,
        workers,
        Some(requests as u64),
        max_tokens,
        Arc::new(AtomicBool::new(false)),
        t0,
    ));
    let lag = &server.state.lag_probe().emission;
    let (lag50, lag99) = (lag.quantile(0.5), lag.quantile(0.99));
    stop_server(server);
    let (r_ttft, r_tpot) = ttft_tpot(&real);
    let diff = |r: f64, v: f64| 100.0 * (r - v) / v;

    // The same requests replayed in virtual time at the moments the real clients sent them: this
    // takes the clients' own timing (connection set-up, how spread out 256 "simultaneous" sends
    // really are) out of the comparison and leaves the server's fidelity.
    let first_sent = real.iter().map(|o| o.sent).fold(f64::INFINITY, f64::min);
    let mut arrivals: Vec<Arrival> = real
        .iter()
        .map(|o| Arrival {
            at: o.sent - first_sent,
            request: RequestSpec::chat(PROMPT, max_tokens),
        })
        .collect();
    arrivals.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut replay = VirtualServer::new(profile, seed).expect("servable profile");
    replay.run_level(&warm(1));
    let replayed = observed(&replay.run_level(&LevelPlan {
        groups: vec![],
        arrivals,
        record_event_times: false,
    }));
    let (p_ttft, p_tpot) = ttft_tpot(&replayed);
    println!(
        "## fidelity: {} at {workers} streams, {requests} requests, max_tokens {max_tokens}",
        profile.name
    );
    println!(
        "requests ok: real {} / virtual {}",
        real.len(),
        virt_obs.len()
    );
    println!(
        "ttft_p50: real {:.4} s, virtual {:.4} s, diff {:+.2} %",
        r_ttft,
        v_ttft,
        diff(r_ttft, v_ttft)
    );
    println!(
        "tpot_p50: real {:.5} s, virtual {:.5} s, diff {:+.2} %",
        r_tpot,
        v_tpot,
        diff(r_tpot, v_tpot)
    );
    println!(
        "replayed at the real send times: ttft_p50 virtual {:.4} s (real {:+.2} %), tpot_p50 virtual {:.5} s (real {:+.2} %)",
        p_ttft,
        diff(r_ttft, p_ttft),
        p_tpot,
        diff(r_tpot, p_tpot)
    );
    println!(
        "emission lag during the run: p50 {:.3} ms, p99 {:.3} ms",
        lag50.unwrap_or(f64::NAN) * 1e3,
        lag99.unwrap_or(f64::NAN) * 1e3
    );
}

fn lag_level(profile: &Profile, streams: usize, secs: f64, ticks: f64) {
    // Client and server share the process: two descriptors per stream.
    if let Some(limit) = fd_limit()
        && (2 * streams as u64 + 256) > limit
    {
        eprintln!(
            "warning: {streams} streams need about {} file descriptors in this process, the limit is {limit} (ulimit -n): connections beyond it fail or wait",
            2 * streams + 256
        );
    }
    let server = start_server(profile, 1);
    let client = client_runtime();
    // Opened before the load, which may use up the file descriptors. The server's CPU is the
    // process's less the client's (its runtime's threads live through the level; the main thread
    // sleeps): the server's blocking threads come and go.
    let mut meter = CpuMeter::open(
        &["bench-client"],
        env_or("SERVESIM_BENCH_CLIENT_THREADS", 2),
        ticks,
    )
    .expect("/proc/self readable");
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let load = client.spawn(closed_loop(
        server.addr,
        streams,
        None,
        128,
        Arc::clone(&stop),
        t0,
    ));
    // Warm-up: connections open, the engine's first (slow) iteration passes, the batch fills.
    std::thread::sleep(Duration::from_secs(3));
    let probe = server.state.lag_probe();
    probe.emission.reset();
    probe.wakeup.reset();
    let tokens_before = probe.emission.count();
    let (process0, client0) = (meter.process(), meter.threads());
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let wall = w0.elapsed().as_secs_f64();
    let client_cpu = meter.threads() - client0;
    let cpu = meter.process() - process0 - client_cpu;
    let tokens = probe.emission.count() - tokens_before;
    let (p50, p99, p999) = (
        probe.emission.quantile(0.5).unwrap_or(f64::NAN),
        probe.emission.quantile(0.99).unwrap_or(f64::NAN),
        probe.emission.quantile(0.999).unwrap_or(f64::NAN),
    );
    if std::env::var("SERVESIM_BENCH_CDF").is_ok() {
        let qs = [
            0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999,
        ];
        let cdf: Vec<String> = qs
            .iter()
            .map(|&q| {
                format!(
                    "p{}={:.2}",
                    q * 100.0,
                    probe.emission.quantile(q).unwrap_or(f64::NAN) * 1e3
                )
            })
            .collect();
        eprintln!("lag cdf (ms): {}", cdf.join(" "));
    }
    let wake = (
        probe.wakeup.quantile(0.5).unwrap_or(f64::NAN),
        probe.wakeup.quantile(0.99).unwrap_or(f64::NAN),
    );
    stop.store(true, Ordering::Relaxed);
    stop_server(server);
    let done = client.block_on(load).map(|v| v.len()).unwrap_or(0);
    client.shutdown_timeout(Duration::from_secs(3));
    println!(
        "| {streams:>6} | {:>9.0} | {:>8.3} | {:>8.3} | {:>9.3} | {:.3} / {:.3} | {:>8.1} | {:>9.2} | {:>9.2} | {done:>8} |",
        tokens as f64 / wall,
        p50 * 1e3,
        p99 * 1e3,
        p999 * 1e3,
        wake.0 * 1e3,
        wake.1 * 1e3,
        1e6 * cpu / tokens.max(1) as f64,
        cpu / wall,
        client_cpu / wall,
    );
}

/// The 1-minute load average: other processes on a small machine distort the lag figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let name: String = env_or("SERVESIM_BENCH_PROFILE", "a6000-qwen2.5-7b".to_string());
    let mut profile = Profile::load(&name).expect("a profile");
    let max_seqs: u32 = env_or("SERVESIM_BENCH_MAX_SEQS", 0);
    if max_seqs > 0 {
        profile.engine.max_num_seqs = max_seqs;
        profile.engine.max_num_batched_tokens =
            profile.engine.max_num_batched_tokens.max(max_seqs * 2);
    }
    let secs: f64 = env_or("SERVESIM_BENCH_SECS", 10.0);
    let streams: String = env_or("SERVESIM_BENCH_STREAMS", "1000,4000".to_string());
    if std::env::var("SERVESIM_BENCH_SKIP_FIDELITY").is_err() {
        fidelity(&profile);
    }
    let ticks = clock_ticks();
    println!(
        "1-minute load average before the lag levels: {}",
        load_average()
    );
    println!(
        "## emission lag and CPU: {} (max_num_seqs {}), {secs} s per level, {} CPUs, HTTP lanes {}, client niceness {}",
        profile.name,
        profile.engine.max_num_seqs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env_or(
            "SERVESIM_BENCH_LANES",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        env_or("SERVESIM_BENCH_CLIENT_NICE", 0)
    );
    println!(
        "| streams | tokens/s | lag p50 ms | lag p99 ms | lag p99.9 ms | engine wake-up lag p50 / p99 ms | server CPU µs/token | server cores | client cores | requests |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in streams
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        lag_level(&profile, s, secs, ticks);
    }
    println!("1-minute load average after: {}", load_average());
}
