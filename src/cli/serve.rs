//! `servesim serve`: the fake vLLM OpenAI server (issue 3). Parses flags into a
//! [`ServerConfig`], builds the tokio runtime, binds the port and runs the library's server until
//! SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use servesim_models::{DEFAULT_PROFILE, Profile};
use servesim_server::{self as server, AppState, FaultConfig, ServerConfig, TextMode};

/// Flags of `servesim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile.
    #[arg(long, default_value = DEFAULT_PROFILE, env = "SERVESIM_PROFILE")]
    pub profile: String,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1", env = "SERVESIM_HOST")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is logged).
    #[arg(long, default_value_t = 8000, env = "SERVESIM_PORT")]
    pub port: u16,
    /// The model name clients must ask for.
    #[arg(long, default_value = "local", env = "SERVESIM_SERVED_MODEL_NAME")]
    pub served_model_name: String,
    /// Require `Authorization: Bearer KEY` on /v1/*.
    #[arg(long, env = "SERVESIM_API_KEY")]
    pub api_key: Option<String>,
    /// Wall seconds per simulated second: 0.1 runs the simulated GPU ten times faster than real.
    #[arg(long, default_value_t = 1.0, env = "SERVESIM_TIME_SCALE")]
    pub time_scale: f64,
    /// Seed of answer lengths, answer text and fault dice.
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    pub seed: u64,
    /// Answer 503 when this many requests wait for the engine (default: unbounded).
    #[arg(long, env = "SERVESIM_MAX_WAITING")]
    pub max_waiting: Option<usize>,
    /// Answer text: lorem (seeded filler words) or echo (the prompt repeated).
    #[arg(long, default_value = "lorem", env = "SERVESIM_TEXT")]
    pub text: TextMode,
    /// Fraction of requests answered with a 500.
    #[arg(long, default_value_t = 0.0)]
    pub fault_500: f64,
    /// Fraction of requests answered with a 503.
    #[arg(long, default_value_t = 0.0)]
    pub fault_503: f64,
    /// Fraction of requests answered with a 429.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,
    /// Fraction of requests answered with a context-length 400.
    #[arg(long, default_value_t = 0.0)]
    pub fault_context: f64,
    /// Fraction of answers whose connection is dropped halfway.
    #[arg(long, default_value_t = 0.0)]
    pub fault_cut: f64,
    /// Fraction of requests delayed by --fault-spike-ms before they reach the engine.
    #[arg(long, default_value_t = 0.0)]
    pub fault_spike: f64,
    /// The latency spike, in simulated milliseconds (also what `X-Servesim-Fault: spike` adds).
    #[arg(long, default_value_t = 1000.0)]
    pub fault_spike_ms: f64,
    /// Seconds that streams in flight get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Seconds allowed to receive a request's head (also how long an idle keep-alive connection
    /// stays open) and, separately, its body; a client that stops sending halfway is cut off.
    #[arg(long, default_value_t = 30.0, env = "SERVESIM_REQUEST_TIMEOUT")]
    pub request_timeout: f64,
    /// HTTP threads: connections are spread over this many single-threaded runtimes, each
    /// handed its own share of every iteration's tokens (default: one per CPU).
    #[arg(long, env = "SERVESIM_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    #[command(flatten)]
    pub engine: super::engine_flags::EngineFlags,
    /// Report `usage.prompt_tokens_details.cached_tokens` (prompt tokens read from the prefix cache)
    /// in answers, as vLLM does with this flag; without it `prompt_tokens_details` is null.
    #[arg(long)]
    pub enable_prompt_tokens_details: bool,
}

/// Build the configuration, start the server and run it until a signal.
pub fn run(args: ServeArgs) -> Result<()> {
    // RUST_LOG overrides; the default says what vLLM's start-up says, and no more.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();

    let mut profile = Profile::load(&args.profile)?;
    args.engine.apply(&mut profile)?;
    let config = ServerConfig {
        profile,
        served_model_name: args.served_model_name,
        api_key: args.api_key,
        time_scale: args.time_scale,
        seed: args.seed,
        max_waiting: args.max_waiting,
        text: args.text,
        faults: FaultConfig {
            error_500: args.fault_500,
            error_503: args.fault_503,
            error_429: args.fault_429,
            error_context: args.fault_context,
            cut: args.fault_cut,
            spike: args.fault_spike,
            spike_s: args.fault_spike_ms / 1000.0,
        },
        shutdown_grace: Duration::try_from_secs_f64(args.shutdown_grace)
            .context("--shutdown-grace must be a number of seconds >= 0")?,
        request_timeout: Duration::try_from_secs_f64(args.request_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--request-timeout must be a number of seconds > 0")?,
        prompt_tokens_details: args.enable_prompt_tokens_details,
    };
    let threads = match args.http_threads {
        Some(0) => anyhow::bail!("--http-threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let lanes =
        server::Lanes::start(threads, "servesim-http").context("cannot start the HTTP threads")?;
    // The accept loop and signal handling: little work, one thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("servesim-accept")
        .build()
        .context("cannot start the tokio runtime")?;
    let handles = lanes.handles().to_vec();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let state = AppState::with_lanes(config, &handles)?;
        log_startup(&state);
        let addr = listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        server::serve(listener, state, shutdown_signal()).await?;
        tracing::info!("shut down");
        Ok::<(), anyhow::Error>(())
    });
    // The connections' tasks are gone with the server; stop their threads.
    drop(lanes);
    served
}

/// The figures vLLM logs at start-up, from the profile.
fn log_startup(state: &AppState) {
    let c = state.config();
    let d = state.derived();
    let e = &c.profile.engine;
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    tracing::info!(
        "profile {}: {} on {}",
        c.profile.name,
        c.profile.model.hf_id,
        c.profile.gpu.display_name
    );
    tracing::info!(
        "Model loading took {:.2} GiB; KV cache memory {:.2} GiB",
        gib(d.weight_bytes),
        gib(d.kv_cache_bytes)
    );
    tracing::info!(
        "# GPU blocks: {}, GPU KV cache size: {} tokens",
        d.kv_blocks,
        d.kv_tokens
    );
    tracing::info!(
        "Maximum concurrency for {} tokens per request: {:.2}x",
        d.max_model_len,
        d.kv_tokens as f64 / f64::from(d.max_model_len)
    );
    tracing::info!(
        "max_num_seqs={}, max_num_batched_tokens={}, block_size={}, chunked_prefill={}, enable_prefix_caching={}, max_model_len={}",
        e.max_num_seqs,
        e.max_num_batched_tokens,
        e.block_size,
        e.chunked_prefill,
        e.enable_prefix_caching,
        d.max_model_len
    );
    tracing::info!(
        "served model name {:?}, time scale {}, text {}",
        c.served_model_name,
        c.time_scale,
        c.text
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received: no new connections; finishing the streams in flight");
}
