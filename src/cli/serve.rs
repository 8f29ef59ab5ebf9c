//! `servesim serve`: the fake vLLM OpenAI server (issue 3). Parses flags into a
//! [`ServerConfig`], builds the tokio runtime, binds the port and runs the library's server until
//! SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use servesim_models::{DEFAULT_PROFILE, Profile};
use servesim_server::proxy::{ProxyConfig, proxy_app};
use servesim_server::{self as server, AppState, FaultConfig, ServerConfig, TextMode};
use servesim_sim::{Admission, Policy, RouterConfig, replica_seed};

/// Flags of `servesim serve`: servesim's own, and `vllm serve`'s with vLLM's meaning (issue 17).
/// The vLLM flags that do not change the simulation are taken out before parsing (see
/// [`super::vllm`]) and listed in the start-up log.
#[derive(Debug, Args)]
#[command(
    after_help = "Every other flag of `vllm serve` (vLLM 0.32: --trust-remote-code, --download-dir, \
--enforce-eager, -tp, -O3, ...) is accepted with its values and listed once in the start-up log as ignored.\n\
Installed or linked as `vllm`, the binary answers `vllm serve ...`."
)]
pub struct ServeArgs {
    /// The model, as `vllm serve MODEL` takes it: a Hugging Face id (`Qwen/Qwen2.5-7B-Instruct`), a
    /// catalogue name, or a path ending in the id's name; served on --gpu with vLLM's defaults.
    /// Without it, --profile is served.
    #[arg(value_name = "MODEL_TAG")]
    pub model_tag: Option<String>,
    /// The model, as `--model` (the positional MODEL_TAG wins when both are given, as in vLLM).
    #[arg(long = "model", value_name = "MODEL", env = "SERVESIM_MODEL")]
    pub model: Option<String>,
    /// The GPU a model given by name is served on (a catalogue GPU or a GPU .toml file).
    #[arg(long, default_value = "rtx-a6000", env = "SERVESIM_GPU")]
    pub gpu: String,
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile (when no model is given).
    #[arg(long, env = "SERVESIM_PROFILE")]
    pub profile: Option<String>,
    /// Whether --profile came from the command line (not SERVESIM_PROFILE): only then does it
    /// conflict with a model; a model on the command line wins over the environment's profile.
    #[arg(skip)]
    pub profile_on_command_line: bool,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1", env = "SERVESIM_HOST")]
    pub host: String,
    /// Port to listen on (0: any free port; the chosen one is logged).
    #[arg(long, default_value_t = 8000, env = "SERVESIM_PORT",
          value_parser = |s: &str| s.trim().parse::<u16>().map_err(|_| format!("invalid int value: '{s}'")))]
    pub port: u16,
    /// The model name(s) clients may ask for; answers and metrics carry the first. Default: the
    /// model as given (as vLLM), or `local` when serving --profile.
    #[arg(long, num_args = 1.., env = "SERVESIM_SERVED_MODEL_NAME")]
    pub served_model_name: Vec<String>,
    /// Require `Authorization: Bearer KEY` on /v1/* (any of the keys given).
    #[arg(long, num_args = 1.., env = "SERVESIM_API_KEY")]
    pub api_key: Vec<String>,
    /// vLLM's --max-model-len: tokens of prompt and answer (`8k`, `8K`, or -1/auto: the longest the
    /// KV cache holds). Default: the model's context.
    #[arg(long, env = "SERVESIM_MAX_MODEL_LEN", allow_hyphen_values = true,
          value_parser = super::vllm::parse_max_model_len)]
    pub max_model_len: Option<super::vllm::MaxModelLen>,
    /// vLLM's --max-num-seqs: sequences per iteration.
    #[arg(long, env = "SERVESIM_MAX_NUM_SEQS",
          value_parser = |s: &str| super::vllm::positive_int("SchedulerConfig", "max_num_seqs", false, s))]
    pub max_num_seqs: Option<u32>,
    /// vLLM's --max-num-batched-tokens: tokens per iteration (`8k` and the like accepted).
    #[arg(long, env = "SERVESIM_MAX_NUM_BATCHED_TOKENS",
          value_parser = |s: &str| super::vllm::positive_int("SchedulerConfig", "max_num_batched_tokens", true, s))]
    pub max_num_batched_tokens: Option<u32>,
    /// vLLM's --gpu-memory-utilization: the fraction of GPU memory for weights, activations and
    /// KV cache.
    #[arg(long, alias = "device-memory-utilization", env = "SERVESIM_GPU_MEMORY_UTILIZATION",
          value_parser = super::vllm::gpu_memory_utilization)]
    pub gpu_memory_utilization: Option<f64>,
    /// vLLM's --num-gpu-blocks-override: KV blocks regardless of memory.
    #[arg(long, env = "SERVESIM_NUM_GPU_BLOCKS_OVERRIDE",
          value_parser = |s: &str| super::vllm::positive_int("CacheConfig", "num_gpu_blocks_override", false, s))]
    pub num_gpu_blocks_override: Option<u32>,
    /// vLLM's --block-size: tokens per KV block.
    #[arg(long, env = "SERVESIM_BLOCK_SIZE",
          value_parser = |s: &str| super::vllm::positive_int("CacheConfig", "block_size", false, s))]
    pub block_size: Option<u32>,
    /// Split long prompts over iterations within --max-num-batched-tokens (vLLM V1's default).
    #[arg(
        long,
        overrides_with = "no_enable_chunked_prefill",
        env = "SERVESIM_ENABLE_CHUNKED_PREFILL"
    )]
    pub enable_chunked_prefill: bool,
    /// Schedule each prompt whole.
    #[arg(
        long,
        overrides_with = "enable_chunked_prefill",
        env = "SERVESIM_NO_ENABLE_CHUNKED_PREFILL"
    )]
    pub no_enable_chunked_prefill: bool,
    /// vLLM's --dtype. The catalogue's models are 16-bit (bf16): auto, bfloat16, half and float16
    /// simulate the same bytes; float/float32 are refused.
    #[arg(long, env = "SERVESIM_DTYPE",
          value_parser = |s: &str| super::vllm::choice(s, &["auto", "bfloat16", "float", "float16", "float32", "half"]).map(str::to_string))]
    pub dtype: Option<String>,
    /// Log level of the HTTP layer's own lines (uvicorn's in vLLM: "Uvicorn running on ...",
    /// "Application startup complete.").
    #[arg(long, default_value = "info", env = "SERVESIM_UVICORN_LOG_LEVEL",
          value_parser = |s: &str| super::vllm::choice(s, &["critical", "debug", "error", "info", "trace", "warning"]).map(str::to_string))]
    pub uvicorn_log_level: String,
    /// Wall seconds per simulated second: 0.1 runs the simulated GPU ten times faster than real.
    #[arg(long, default_value_t = 1.0, env = "SERVESIM_TIME_SCALE")]
    pub time_scale: f64,
    /// Seed of answer lengths, answer text and fault dice (vLLM's --seed; default 0 as in vLLM).
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED",
          value_parser = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("invalid int value: '{s}'")))]
    pub seed: u64,
    /// Answer 503 when this many requests wait for the engine (default: unbounded).
    #[arg(long, env = "SERVESIM_MAX_WAITING")]
    pub max_waiting: Option<usize>,
    /// Answer text: lorem (seeded filler words) or echo (the prompt repeated).
    #[arg(long, default_value = "lorem", env = "SERVESIM_TEXT")]
    pub text: TextMode,
    /// Fraction of requests answered with a 500.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_500")]
    pub fault_500: f64,
    /// Fraction of requests answered with a 503.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_503")]
    pub fault_503: f64,
    /// Fraction of requests answered with a 429.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_429")]
    pub fault_429: f64,
    /// Fraction of requests answered with a context-length 400.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_CONTEXT")]
    pub fault_context: f64,
    /// Fraction of answers whose connection is dropped halfway.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_CUT")]
    pub fault_cut: f64,
    /// Fraction of requests delayed by --fault-spike-ms before they reach the engine.
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_FAULT_SPIKE")]
    pub fault_spike: f64,
    /// The latency spike, in simulated milliseconds (also what `X-Servesim-Fault: spike` adds).
    #[arg(long, default_value_t = 1000.0, env = "SERVESIM_FAULT_SPIKE_MS")]
    pub fault_spike_ms: f64,
    /// Seconds that streams in flight get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30.0, env = "SERVESIM_SHUTDOWN_GRACE")]
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
    #[arg(
        long,
        overrides_with = "no_enable_prompt_tokens_details",
        env = "SERVESIM_ENABLE_PROMPT_TOKENS_DETAILS"
    )]
    pub enable_prompt_tokens_details: bool,
    /// Leave `prompt_tokens_details` null (the default).
    #[arg(
        long,
        overrides_with = "enable_prompt_tokens_details",
        env = "SERVESIM_NO_ENABLE_PROMPT_TOKENS_DETAILS"
    )]
    pub no_enable_prompt_tokens_details: bool,
    /// Start this many full servers in one process, each with its own engine, /metrics and seed,
    /// on consecutive ports from --port (with --port 0, each on a free port of its own).
    #[arg(long, env = "SERVESIM_REPLICAS", conflicts_with = "replica_profile")]
    pub replicas: Option<usize>,
    /// A mixed fleet of full servers, as `simulate --replica-profile`: PROFILE:COUNT,... (e.g.
    /// h100-qwen2.5-7b:1,a6000-qwen2.5-7b:2), on consecutive ports in that order; the engine flags
    /// apply to every replica, and all must serve the same model.
    #[arg(long, env = "SERVESIM_REPLICA_PROFILE")]
    pub replica_profile: Option<String>,
    /// Put the built-in router in front of the replicas on this port (0: any free port).
    #[arg(long, env = "SERVESIM_ROUTER_PORT")]
    pub router_port: Option<u16>,
    /// The built-in router's policy, as `simulate --router`: round-robin, least-requests,
    /// least-kv, prefix-affinity, or weighted:prefix=W,queue=W,kv=W,requests=W.
    #[arg(long, default_value = "round-robin", env = "SERVESIM_ROUTER",
          value_parser = super::fleet::parse_policy)]
    pub router: Policy,
    /// Seconds between the built-in router's scrapes of each replica's /metrics.
    #[arg(long, default_value_t = 0.1, env = "SERVESIM_SCRAPE_INTERVAL")]
    pub scrape_interval: f64,
    /// The built-in router's admission: unbounded, queue:N or token-bucket:rate=R,burst=B
    /// (refused requests get 429).
    #[arg(long, default_value = "unbounded", env = "SERVESIM_ADMISSION",
          value_parser = super::fleet::parse_admission)]
    pub admission: Admission,
    /// The vLLM flags taken out before parsing (no effect on the simulation), for the start-up log.
    #[arg(skip)]
    pub ignored_vllm_flags: Vec<String>,
}

/// The profile and served names a command line asks for: a model (HF id, on --gpu) or a profile.
fn resolve_profile(args: &ServeArgs) -> Result<(Profile, Vec<String>)> {
    let model = args.model_tag.as_ref().or(args.model.as_ref());
    let (profile, default_name) = match model {
        Some(_) if args.profile_on_command_line => {
            bail!("give either a model (vLLM's MODEL_TAG or --model) or --profile, not both")
        }
        // A model outside the catalogue, described by --hf-config: the GPU's profile with the
        // default model, which the engine flags then replace by the config's.
        Some(model) if args.engine.hf_config.is_some() => {
            let name = super::vllm::catalogue_model(model)
                .unwrap_or_else(|_| "qwen2.5-7b-instruct".to_string());
            let mut profile = Profile::load_unchecked(&format!("{}+{name}", args.gpu))?;
            profile.name = format!("{}+{model}", args.gpu);
            (profile, model.clone())
        }
        Some(model) => {
            let name = super::vllm::catalogue_model(model)?;
            (
                Profile::load_unchecked(&format!("{}+{name}", args.gpu))?,
                model.clone(),
            )
        }
        None => {
            let spec = args.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
            (Profile::load_unchecked(spec)?, "local".to_string())
        }
    };
    let names = if args.served_model_name.is_empty() {
        vec![default_name]
    } else {
        args.served_model_name.clone()
    };
    Ok((profile, names))
}

/// Apply vLLM's engine flags to the profile's engine, refusing what vLLM refuses.
fn apply_vllm_engine_flags(args: &ServeArgs, profile: &mut Profile) -> Result<()> {
    args.engine.apply(profile)?;
    let e = &mut profile.engine;
    if let Some(n) = args.max_num_seqs {
        e.max_num_seqs = n;
    }
    if let Some(n) = args.max_num_batched_tokens {
        e.max_num_batched_tokens = n;
    }
    if let Some(x) = args.gpu_memory_utilization {
        e.gpu_memory_utilization = x;
    }
    if let Some(n) = args.block_size {
        e.block_size = n;
    }
    if let Some(n) = args.num_gpu_blocks_override {
        e.num_gpu_blocks_override = Some(u64::from(n));
    }
    if args.enable_chunked_prefill {
        e.chunked_prefill = true;
    }
    if args.no_enable_chunked_prefill {
        e.chunked_prefill = false;
    }
    if let Some(d) = args.dtype.as_deref()
        && matches!(d, "float" | "float32")
    {
        bail!(
            "--dtype {d}: servesim simulates the 16-bit weights and KV cache of its catalogue models \
             (auto, bfloat16, half, float16)"
        );
    }
    let context = profile.model.max_context;
    match args.max_model_len {
        None => {}
        Some(super::vllm::MaxModelLen::Tokens(n)) if n > context => bail!(
            "User-specified max_model_len ({n}) is greater than the derived max_model_len \
             (max_position_embeddings={context} or model_max_length=None in model's config.json). \
             To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."
        ),
        Some(super::vllm::MaxModelLen::Tokens(n)) => profile.engine.max_model_len = Some(n),
        Some(super::vllm::MaxModelLen::Auto) => {
            // vLLM's auto-fit: the longest context whose blocks fit the KV cache, at most the
            // model's (derived here with a one-block length, which always fits the check).
            let block = profile.engine.block_size;
            profile.engine.max_model_len = Some(block);
            let d = profile.derive()?;
            let room = match profile.engine.num_gpu_blocks_override {
                Some(n) => n.saturating_sub(1) * u64::from(block),
                None => d.kv_tokens,
            };
            let fit = u32::try_from(room).unwrap_or(u32::MAX).min(context);
            if fit == 0 {
                bail!(
                    "Cannot auto-fit max_model_len: not enough GPU memory available to serve even \
                     a single token. Try increasing `gpu_memory_utilization`."
                );
            }
            if fit < context {
                tracing::info!(
                    "Auto-fit max_model_len: reduced from {context} to {fit} to fit in available KV cache memory"
                );
            } else {
                tracing::info!(
                    "Auto-fit max_model_len: full model context length {context} fits in available KV cache memory"
                );
            }
            profile.engine.max_model_len = Some(fit);
        }
    }
    // vLLM's scheduler defaults and checks (EngineArgs, SchedulerConfig.verify_max_model_len):
    // without chunked prefill the default token budget grows to max_model_len, so that every
    // prompt fits one iteration; a budget given that is smaller is refused.
    let len = profile.engine.max_model_len(context);
    let e = &mut profile.engine;
    if !e.chunked_prefill && args.max_num_batched_tokens.is_none() {
        e.max_num_batched_tokens = e.max_num_batched_tokens.max(len);
    }
    if !e.chunked_prefill && e.max_num_batched_tokens < len {
        bail!(
            "max_num_batched_tokens ({}) is smaller than max_model_len ({len}). This effectively \
             limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject \
             longer sequences. Please increase max_num_batched_tokens or decrease max_model_len.",
            e.max_num_batched_tokens
        );
    }
    if e.max_num_batched_tokens < e.max_num_seqs {
        bail!(
            "max_num_batched_tokens ({}) must be greater than or equal to max_num_seqs ({}).",
            e.max_num_batched_tokens,
            e.max_num_seqs
        );
    }
    // Loaded unchecked so that the flags could make it servable: refuse it now if they did not.
    profile.derive()?;
    Ok(())
}

/// uvicorn's level names as a tracing level (`critical` is `error`, the most severe there is).
fn uvicorn_filter(level: &str) -> &'static str {
    match level {
        "critical" | "error" => "error",
        "warning" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    }
}

/// Build the configuration, start the server and run it until a signal.
pub fn run(args: ServeArgs) -> Result<()> {
    // RUST_LOG overrides the default, which says what vLLM's start-up says and no more; the
    // HTTP layer's own lines follow --uvicorn-log-level unless RUST_LOG names them.
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = if base.contains("uvicorn") {
        base
    } else {
        format!("{base},uvicorn={}", uvicorn_filter(&args.uvicorn_log_level))
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();

    let (mut profile, mut names) = resolve_profile(&args)?;
    apply_vllm_engine_flags(&args, &mut profile)?;
    let served_model_name = names.remove(0);
    let config = ServerConfig {
        profile,
        served_model_name,
        served_model_aliases: names,
        api_keys: args.api_key.clone(),
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
    let notes = start_notes(&args);
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
    if args.router_port.is_none()
        && (args.router != Policy::RoundRobin || args.admission != Admission::Unbounded)
    {
        tracing::warn!(
            "--router and --admission configure the built-in router: without --router-port there is none"
        );
    }
    if args.replicas.is_some() || args.replica_profile.is_some() || args.router_port.is_some() {
        let profiles = fleet_profiles(&args, &config.profile)?;
        let served = runtime.block_on(serve_fleet(args, config, profiles, notes, handles));
        drop(lanes);
        return served;
    }
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let state = AppState::with_lanes(config, &handles)?;
        let shutdown = shutdown_signal();
        log_startup(&state);
        for note in &notes {
            tracing::info!("{note}");
        }
        let addr = listener.local_addr()?;
        tracing::info!("listening on http://{addr}");
        tracing::info!(target: "uvicorn", "Started server process [{}]", std::process::id());
        tracing::info!(target: "uvicorn", "Waiting for application startup.");
        tracing::info!(target: "uvicorn", "Application startup complete.");
        tracing::info!(target: "uvicorn", "Uvicorn running on http://{addr} (Press CTRL+C to quit)");
        server::serve(listener, state, shutdown).await?;
        tracing::info!("shut down");
        Ok::<(), anyhow::Error>(())
    });
    // The connections' tasks are gone with the server; stop their threads.
    drop(lanes);
    served
}

/// The replicas' profiles: `--replica-profile`'s list with the engine flags applied to each, or
/// `--replicas` copies of the server's. A mixed fleet must serve one model: the router answers
/// `/v1/models` once for all and indexes prompts with one tokeniser.
fn fleet_profiles(args: &ServeArgs, base: &Profile) -> Result<Vec<Profile>> {
    let Some(list) = &args.replica_profile else {
        let n = args.replicas.unwrap_or(1);
        if n == 0 {
            bail!("--replicas must be at least 1");
        }
        return Ok(vec![base.clone(); n]);
    };
    let profiles = super::fleet::replica_profiles(list, |name| {
        let mut p = Profile::load_unchecked(name)?;
        apply_vllm_engine_flags(args, &mut p)?;
        Ok(p)
    })?;
    let Some(first) = profiles.first() else {
        bail!("--replica-profile names no replica");
    };
    if profiles.len() > 1024 {
        bail!("{} replicas: `serve` starts at most 1024", profiles.len());
    }
    if let Some(other) = profiles.iter().find(|p| p.model.name != first.model.name) {
        bail!(
            "--replica-profile: every replica must serve the same model ({} is {}, {} is {}); \
             a fleet of different models is several fleets",
            first.name,
            first.model.name,
            other.name,
            other.model.name
        );
    }
    Ok(profiles)
}

/// `--replicas N` / `--replica-profile` and/or `--router-port`: full servers in this process on
/// consecutive ports, each with its own engine, profile and seed (replica k's drawn as `simulate
/// --replicas` draws it), and the built-in router in front when asked for. All stop on the same
/// signal.
async fn serve_fleet(
    args: ServeArgs,
    config: ServerConfig,
    profiles: Vec<Profile>,
    notes: Vec<String>,
    lanes: Vec<tokio::runtime::Handle>,
) -> Result<()> {
    let n = profiles.len();
    if args.port != 0 && usize::from(args.port) + (n - 1) > usize::from(u16::MAX) {
        bail!(
            "--replicas {n} from --port {}: the ports run past 65535",
            args.port
        );
    }
    if !(args.scrape_interval.is_finite() && args.scrape_interval >= 0.0) {
        bail!("--scrape-interval must be >= 0 seconds");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Installed now, before any address is announced (see shutdown_signal).
    let shutdown = shutdown_signal();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut bases = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n + 1);
    let mut models = serde_json::Value::Null;
    for (k, profile) in profiles.into_iter().enumerate() {
        // Port 0 asks the OS for a free port, replica by replica; otherwise P, P+1, ...
        let port = if args.port == 0 {
            0
        } else {
            args.port + u16::try_from(k).context("too many replicas")?
        };
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), port))
            .await
            .with_context(|| format!("replica {k}: cannot listen on {}:{port}", args.host))?;
        let mut replica = config.clone();
        replica.seed = replica_seed(config.seed, k);
        replica.profile = profile;
        let state = AppState::with_lanes(replica, &lanes)?;
        if k == 0 {
            log_startup(&state);
            for note in &notes {
                tracing::info!("{note}");
            }
            models = server::models_body(&state);
        }
        let addr = listener.local_addr()?;
        tracing::info!(
            "replica {k} (seed {}, profile {}) listening on http://{addr}",
            state.config().seed,
            state.config().profile.name
        );
        bases.push(format!("http://{addr}"));
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            server::serve(listener, state, stop)
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    if let Some(port) = args.router_port {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), port))
            .await
            .with_context(|| format!("router: cannot listen on {}:{port}", args.host))?;
        let router = RouterConfig {
            policy: args.router,
            admission: args.admission,
            scrape_interval_s: args.scrape_interval,
            ..RouterConfig::default()
        };
        let app = proxy_app(ProxyConfig {
            replicas: bases,
            router,
            seed: config.seed,
            profile: config.profile.clone(),
            models,
            api_keys: config.api_keys.clone(),
        })?;
        let addr = listener.local_addr()?;
        tracing::info!(
            "router ({}, admission {}, scrape every {} s) over {n} replicas listening on http://{addr}",
            args.router,
            args.admission,
            args.scrape_interval
        );
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            server::proxy::serve_proxy(listener, app, stop)
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    tracing::info!(target: "uvicorn", "Started server process [{}]", std::process::id());
    tracing::info!(target: "uvicorn", "Application startup complete.");
    let mut outcome = Ok(());
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => outcome = Err(e),
            Err(e) => outcome = Err(anyhow::anyhow!("a server task failed: {e}")),
        }
    }
    tracing::info!("shut down");
    outcome
}

/// What the start-up log says about the vLLM command line: the flags accepted and ignored (once),
/// and flags accepted whose value changes nothing.
fn start_notes(args: &ServeArgs) -> Vec<String> {
    let mut notes = Vec::new();
    if !args.ignored_vllm_flags.is_empty() {
        notes.push(format!(
            "vLLM flags accepted and ignored (no effect on the simulation): {}",
            args.ignored_vllm_flags.join(", ")
        ));
    }
    let legacy: Vec<&str> = args
        .ignored_vllm_flags
        .iter()
        .map(String::as_str)
        .filter(|f| super::vllm::LEGACY.iter().any(|(l, _)| l == f))
        .collect();
    if !legacy.is_empty() {
        notes.push(format!(
            "{} gone from vLLM 0.32 (which refuses them); accepted for older manifests",
            legacy.join(", ")
        ));
    }
    if let Some(d) = args.dtype.as_deref().filter(|d| *d != "auto") {
        notes.push(format!(
            "--dtype {d}: 2 bytes per weight and KV element, as the model's bf16: the simulation is unchanged"
        ));
    }
    if args.model_tag.is_some() && args.model.is_some() {
        notes.push("both MODEL_TAG and --model given: MODEL_TAG is served, as in vLLM".into());
    }
    notes
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
        "served model name {:?}{}, time scale {}, text {}",
        c.served_model_name,
        if c.served_model_aliases.is_empty() {
            String::new()
        } else {
            format!(" (also {:?})", c.served_model_aliases)
        },
        c.time_scale,
        c.text
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
fn shutdown_signal() -> impl Future<Output = ()> {
    // The handlers are installed here, before the address is announced: a SIGTERM sent as soon as
    // "listening on" is read must reach them, not the default action (which would kill the
    // process without draining the streams or logging "shut down").
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!(
            "shutdown signal received: no new connections; finishing the streams in flight"
        );
    }
}
