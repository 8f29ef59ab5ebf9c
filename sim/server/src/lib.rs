//! The fake vLLM: an OpenAI-compatible HTTP server whose answers come from the simulated engine on
//! the wall clock, so that client code can be developed and tested against "a GPU" on a laptop.
//!
//! [`api`] holds the request/response bodies and their validation, [`errors`] the one error type
//! and its HTTP mapping, [`driver`] the engine thread that runs the core in real time, [`event`]
//! what it sends each request's stream, [`stream`]
//! the client side of a request (text, stop strings, SSE events, abort on disconnect), [`sse`]
//! streaming answers (events formatted by the lane's dispatcher, handed to hyper as the body),
//! [`lanes`] the runtimes connections are spread over, [`metrics`] the vLLM metric families
//! ([`lag_probe`] the benchmark's finer lag records, not exposed),
//! [`faults`] fault injection and [`text`] the answers' words; [`proxy`] the fleet router
//! (`serve --router-port`) in front of several servers; `routes` has the handlers. [`app`]
//! builds the router (testable without a socket); [`serve`] runs it on a bound listener, with
//! hyper's HTTP/1.1 connections, until a shutdown future resolves.

pub mod api;
pub mod driver;
pub mod errors;
pub mod event;
pub mod faults;
pub mod lag_probe;
pub mod lanes;
pub mod metrics;
pub mod proxy;
mod routes;
pub mod sse;
pub mod stream;
pub mod text;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use servesim_models::{Derived, Profile};
use tokio::net::TcpListener;

pub use driver::{DriverHandle, EngineClock};
pub use errors::{ApiError, ServerError};
pub use faults::{FaultConfig, FaultPlan, InjectedError};
pub use lag_probe::LagProbe;
pub use lanes::Lanes;
pub use metrics::Metrics;
pub use routes::{app, models_body};
use servesim_sim::engine_core::Engine;
use servesim_sim::frontend::Frontend;
pub use text::TextMode;

/// Largest request body accepted (larger ones get a 413).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default of [`ServerConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The vLLM version this server imitates (`GET /version`, the system fingerprint).
pub const VLLM_VERSION: &str = "0.32.0";

/// Everything `servesim serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub profile: Profile,
    /// The model name clients must use (`--served-model-name`), in answers and metric labels.
    pub served_model_name: String,
    /// Further names the server answers to (`--served-model-name A B C`: B and C), listed by
    /// `/v1/models` after the first, as vLLM does.
    pub served_model_aliases: Vec<String>,
    /// Bearer tokens accepted on `/v1/*` (`--api-key`, one or more); none: no key required.
    pub api_keys: Vec<String>,
    /// Wall seconds per simulated second (0.1: the GPU runs ten times faster than real).
    pub time_scale: f64,
    /// Seed of answer lengths, filler text and fault dice.
    pub seed: u64,
    /// Bound of the waiting queue; beyond it requests get 503 (`None`: unbounded).
    pub max_waiting: Option<usize>,
    pub text: TextMode,
    pub faults: FaultConfig,
    /// How long streams in flight may run after a shutdown signal before they are ended.
    pub shutdown_grace: Duration,
    /// Time allowed to receive a request: its head (from the moment the connection waits for one,
    /// so idle keep-alive connections are closed after it too) and, separately, its body. A client
    /// that stops sending halfway (slowloris) is cut off: no answer for a partial head, a 408 for
    /// a partial body.
    pub request_timeout: Duration,
    /// Report `usage.prompt_tokens_details.cached_tokens` (`--enable-prompt-tokens-details`).
    pub prompt_tokens_details: bool,
}

impl ServerConfig {
    /// Defaults for `profile`: model `local`, real time, no key, no faults.
    pub fn new(profile: Profile) -> ServerConfig {
        ServerConfig {
            profile,
            served_model_name: "local".into(),
            served_model_aliases: Vec::new(),
            api_keys: Vec::new(),
            time_scale: 1.0,
            seed: 0,
            max_waiting: None,
            text: TextMode::Lorem,
            faults: FaultConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            prompt_tokens_details: false,
        }
    }
}

/// The server's shared state; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState(Arc<ServerState>);

/// What every handler shares: the configuration, the engine's driver, the frontend that counts
/// prompts, the metrics and the fault dice.
#[derive(Debug)]
struct ServerState {
    config: ServerConfig,
    /// The served name followed by its aliases: every name a request may give.
    served_names: Vec<String>,
    derived: Derived,
    frontend: Mutex<Frontend>,
    /// An engine that never runs: [`Engine::validate`] on it applies the engine's own admission
    /// rules in the handler, so a bad request gets its 400 at once instead of after the input
    /// latency, without a second copy of the rules.
    limits: Engine,
    driver: DriverHandle,
    metrics: Arc<Metrics>,
    /// The benchmark's fine-grained lag records (not exposed).
    lag_probe: Arc<LagProbe>,
    faults: faults::Faults,
    next_key: AtomicU64,
    started: u64,
    fingerprint: String,
    /// The runtimes connections are served on (one: the runtime the state was made in).
    lanes: Vec<tokio::runtime::Handle>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AppState {
    /// Build the engine for the profile and start its thread; called inside the tokio runtime
    /// that will serve every connection (the driver's dispatcher task runs there).
    pub fn new(config: ServerConfig) -> Result<AppState, ServerError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ServerError::Config("the server state needs a tokio runtime".into()))?;
        AppState::with_lanes(config, &[runtime])
    }

    /// As [`AppState::new`], with connections spread over `lanes` (see [`lanes`]): each
    /// connection is served on one of them, and each lane gets its share of every iteration's
    /// tokens from its own dispatcher task.
    pub fn with_lanes(
        config: ServerConfig,
        lanes: &[tokio::runtime::Handle],
    ) -> Result<AppState, ServerError> {
        if !(config.time_scale > 0.0 && config.time_scale.is_finite()) {
            return Err(ServerError::Config("--time-scale must be > 0".into()));
        }
        config.faults.check().map_err(ServerError::Config)?;
        if config.request_timeout.is_zero() {
            return Err(ServerError::Config("--request-timeout must be > 0".into()));
        }
        let derived = config.profile.derive()?;
        let engine = Engine::new(&config.profile)?;
        let limits = Engine::new(&config.profile)?;
        let metrics = Arc::new(Metrics::new(
            &config.served_model_name,
            derived.max_model_len,
        ));
        metrics.cache_config(&config.profile, &derived);
        let lag_probe = Arc::new(LagProbe::default());
        let e = &config.profile.engine;
        let driver = driver::spawn(
            engine,
            driver::DriverConfig {
                time_scale: config.time_scale,
                input_latency_s: e.input_latency_s,
                output_latency_s: e.output_latency_s,
            },
            Arc::clone(&metrics),
            Arc::clone(&lag_probe),
            lanes,
        )
        .map_err(ServerError::Thread)?;
        Ok(AppState(Arc::new(ServerState {
            frontend: Mutex::new(Frontend::new(&config.profile, config.seed)),
            faults: faults::Faults::new(config.faults, config.seed),
            derived,
            limits,
            driver,
            metrics,
            lag_probe,
            next_key: AtomicU64::new(1),
            started: unix_now(),
            fingerprint: format!("vllm-{VLLM_VERSION}-servesim"),
            lanes: lanes.to_vec(),
            served_names: std::iter::once(config.served_model_name.clone())
                .chain(config.served_model_aliases.iter().cloned())
                .collect(),
            config,
        })))
    }

    /// The profile's derived figures (KV capacity, max_model_len, ...).
    pub fn derived(&self) -> &Derived {
        &self.0.derived
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The fine-grained emission and wake-up lag records the `server_lag` benchmark reads.
    pub fn lag_probe(&self) -> &LagProbe {
        &self.0.lag_probe
    }

    pub fn driver(&self) -> &DriverHandle {
        &self.0.driver
    }
}

/// Serve `state` on `listener` until `shutdown` resolves; then stop accepting, let streams in flight
/// finish for up to the configured grace period, end the rest, and stop the engine.
pub async fn serve<F>(
    listener: TcpListener,
    state: AppState,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let server = run_http(
        listener,
        app(state.clone()),
        state.0.config.request_timeout,
        state.0.lanes.clone(),
        signal,
    );
    tokio::pin!(server);
    let grace = state.0.config.shutdown_grace;
    let expired = async move {
        if fired_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = &mut server => {
            state.0.driver.stop();
            return Ok(());
        }
        () = expired => {
            tracing::warn!("shutdown grace period over: ending the streams still open");
        }
    }
    // Stopping the engine ends every open stream (as broken); connections then close.
    state.0.driver.stop();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// The HTTP/1.1 accept loop (what `axum::serve` does, plus hyper's header read timeout, which
/// `axum::serve` leaves off, and the lanes): every connection is served by hyper on its own task;
/// when `shutdown` resolves the listener closes, every connection finishes its request in flight
/// and closes, and this returns once they all have.
async fn run_http<F>(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    lanes: Vec<tokio::runtime::Handle>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    let mut next_lane = 0usize;
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Like uvicorn under vLLM: no Nagle delay on small SSE writes.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        // Round robin: connections are long-lived (keep-alive), so the lanes' shares stay even.
        // The socket moves to its lane's own I/O driver, so that its readiness wakes that lane.
        let lane = &lanes[next_lane % lanes.len()];
        next_lane = next_lane.wrapping_add(1);
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!("cannot hand a connection to its lane: {e}");
                continue;
            }
        };
        lane.spawn(async move {
            let tcp = match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!("cannot register a connection on its lane: {e}");
                    return;
                }
            };
            // The header read timeout runs from the moment the connection waits for a head, so
            // an idle keep-alive connection closes after it too; a body has its own (see
            // `api::ApiBody`).
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = signal.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(close);
        });
    }
    drop(listener);
    let _ = signal_tx.send(());
    drop(signal_rx);
    drop(close_rx);
    close_tx.closed().await;
}
