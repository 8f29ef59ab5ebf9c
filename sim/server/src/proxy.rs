//! The fleet router of `servesim serve --replicas N --router-port P`: an HTTP reverse proxy in front
//! of N servers that picks a replica for each generation request with the engine crate's
//! [`Router`] — the same policies, admission and scrape model as `simulate --replicas` — so the
//! real fleet and the virtual one route alike.
//!
//! It forwards `/v1/chat/completions` and `/v1/completions` (answers, streamed or not, pass through
//! chunk by chunk as the replica sends them), answers `/v1/models`, `/health` and its own `/metrics`
//! (requests routed per replica) itself, refuses with 429 what admission refuses and with 502 what
//! it cannot deliver, and with the API's JSON 413 a body over the limit. Policies that read the
//! replicas' metrics get them from a scrape of every replica's `/metrics` each scrape interval;
//! prefix-aware ones tokenise the prompt with the engine's [`Frontend`] as the virtual fleet does.
//!
//! Failover: a replica that refuses the connection is ejected (taken out of rotation, as Envoy's
//! outlier detection does) for [`EJECTION`] or until a scrape of it succeeds, and the request is
//! sent to the next replica the policy picks. Only a request no replica received is retried: once
//! a replica has it, a generation is not idempotent, so a later failure is the client's 502.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router as HttpRouter;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use servesim_models::Profile;
use servesim_sim::frontend::{Frontend, Prompt};
use servesim_sim::kv_cache::BlockHash;
use servesim_sim::router::{Router, RouterConfig, Scraped};

use crate::MAX_BODY_BYTES;
use crate::api::{ChatMessage, chat_contents};
use crate::errors::{ApiError, ServerError};

/// What the fleet router needs to know.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The replicas' base URLs (`http://127.0.0.1:8000`), in replica order.
    pub replicas: Vec<String>,
    pub router: RouterConfig,
    /// Ties broken and the prefix tokeniser seeded from this (the fleet's seed).
    pub seed: u64,
    /// The profile whose tokeniser and block size the prefix index uses (replica 0's).
    pub profile: Profile,
    /// `GET /v1/models`'s answer: the replicas', which all serve the same names.
    pub models: serde_json::Value,
    /// Bearer tokens `/v1/models` requires, as the replicas do (`--api-key`); generation requests
    /// carry their key on to the replica, which checks it.
    pub api_keys: Vec<String>,
}

/// How long a replica that refused a connection stays out of rotation (unless a scrape of it
/// succeeds first). Envoy's outlier detection ejects for 30 s by default; a simulated replica
/// restarts in well under a second, so a shorter time brings it back sooner.
pub const EJECTION: Duration = Duration::from_secs(5);

/// The router's shared state.
#[derive(Debug)]
struct Proxy {
    config: ProxyConfig,
    /// When each ejected replica was taken out of rotation. Locked before `router` when both are.
    ejected_at: Mutex<Vec<Option<Instant>>>,
    router: Mutex<Router>,
    /// Tokenises prompts for the prefix index (only for policies that read prompts).
    frontend: Option<Mutex<Frontend>>,
    client: reqwest::Client,
    started: Instant,
    /// Requests sent to each replica.
    routed: Vec<AtomicU64>,
    /// Requests sent again to another replica after a refused connection.
    retries: AtomicU64,
    /// Times a replica was taken out of rotation.
    ejections: AtomicU64,
}

impl Proxy {
    fn router(&self) -> MutexGuard<'_, Router> {
        // A panic while the lock is held leaves counts that are still usable.
        self.router
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ejected_at(&self) -> MutexGuard<'_, Vec<Option<Instant>>> {
        self.ejected_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take replica `k` out of rotation (it refused a connection or a scrape).
    fn eject(&self, k: usize) {
        let mut at = self.ejected_at();
        if at[k].is_none() {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        at[k] = Some(Instant::now());
        self.router().eject(k);
    }

    /// Put replica `k` back into rotation (a scrape of it succeeded).
    fn restore(&self, k: usize) {
        let mut at = self.ejected_at();
        if at[k].take().is_some() {
            self.router().restore(k);
        }
    }

    /// Put back every replica whose ejection has run out.
    fn restore_expired(&self) {
        let mut at = self.ejected_at();
        for k in 0..at.len() {
            if at[k].is_some_and(|t| t.elapsed() >= EJECTION) {
                at[k] = None;
                self.router().restore(k);
            }
        }
    }

    /// The full-block hashes of the request's prompt, as the router's own tokeniser sees them.
    fn prompt_blocks(&self, body: &[u8]) -> Vec<BlockHash> {
        let Some(frontend) = &self.frontend else {
            return Vec::new();
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Vec::new();
        };
        // A body the replica will refuse anyway routes like an empty prompt.
        let prompt = if let Some(messages) = value.get("messages") {
            match serde_json::from_value::<Vec<ChatMessage>>(messages.clone()) {
                Ok(m) => Prompt::Chat(chat_contents(&m)),
                Err(_) => return Vec::new(),
            }
        } else {
            match value.get("prompt") {
                Some(serde_json::Value::String(text)) => Prompt::Text(Arc::from(text.as_str())),
                Some(serde_json::Value::Array(ids)) if ids.iter().all(|v| v.is_u64()) => {
                    Prompt::Ids(
                        ids.iter()
                            .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                            .collect(),
                    )
                }
                _ => return Vec::new(),
            }
        };
        let mut hashes = Vec::new();
        frontend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .prompt_block_hashes(
                &prompt,
                self.config.profile.engine.block_size,
                &mut hashes,
                &mut Vec::new(),
            );
        hashes
    }
}

/// Counts a request as ended on its replica when its answer is done or dropped.
struct InFlight {
    proxy: Arc<Proxy>,
    replica: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.proxy.router().done(self.replica);
    }
}

/// The router's HTTP app (and, when the policy reads metrics, its scraper, spawned on the current
/// runtime).
pub fn proxy_app(config: ProxyConfig) -> Result<HttpRouter, ServerError> {
    if config.replicas.is_empty() {
        return Err(ServerError::Config(
            "the router needs at least one replica".into(),
        ));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| ServerError::Config(format!("cannot build the router's HTTP client: {e}")))?;
    let router = Router::new(config.router, config.replicas.len(), config.seed);
    let frontend = router
        .reads_prompts()
        .then(|| Mutex::new(Frontend::new(&config.profile, config.seed)));
    let reads_metrics = router.reads_metrics();
    let proxy = Arc::new(Proxy {
        routed: config.replicas.iter().map(|_| AtomicU64::new(0)).collect(),
        ejected_at: Mutex::new(vec![None; config.replicas.len()]),
        retries: AtomicU64::new(0),
        ejections: AtomicU64::new(0),
        router: Mutex::new(router),
        frontend,
        client,
        started: Instant::now(),
        config,
    });
    if reads_metrics {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ServerError::Config("the router needs a tokio runtime".into()))?;
        runtime.spawn(scrape_loop(Arc::downgrade(&proxy)));
    }
    Ok(HttpRouter::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/metrics", get(metrics))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::RouteNotFound {
                path: uri.path().chars().take(200).collect(),
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(proxy))
}

/// Serve the router's app on `listener` until `shutdown` resolves (then let answers in flight end).
pub async fn serve_proxy<F>(
    listener: tokio::net::TcpListener,
    app: HttpRouter,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt;
    // As the replicas: no Nagle delay on small SSE writes.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Io)
}

/// Scrape every replica's `/metrics` each interval while the router lives. A replica that does not
/// answer keeps its last scrape (a real router's view of a silent pod).
async fn scrape_loop(proxy: std::sync::Weak<Proxy>) {
    loop {
        let Some(p) = proxy.upgrade() else { return };
        // 0 means "fresh for every request" in virtual time; on the wall clock, as often as a
        // scrape takes, with a floor so an idle fleet is not hammered.
        let every = Duration::from_secs_f64(p.config.router.scrape_interval_s.max(0.005));
        for (k, base) in p.config.replicas.iter().enumerate() {
            let text = match p.client.get(format!("{base}/metrics")).send().await {
                Ok(r) => r.text().await.ok(),
                Err(_) => None,
            };
            if let Some(text) = text {
                let scraped = parse_scrape(&text);
                p.router().record(k, scraped);
                p.restore(k);
            } else {
                p.eject(k);
            }
        }
        drop(p);
        tokio::time::sleep(every).await;
    }
}

/// The three gauges a router reads from a vLLM `/metrics` page (summed over label sets, as one
/// engine has one of each).
pub fn parse_scrape(text: &str) -> Scraped {
    let mut s = Scraped::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or(name_labels);
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        match name {
            "vllm:num_requests_running" => s.running += v.max(0.0) as usize,
            "vllm:num_requests_waiting" => s.waiting += v.max(0.0) as usize,
            "vllm:kv_cache_usage_perc" => s.kv_usage += v,
            _ => {}
        }
    }
    s
}

async fn models(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    if !crate::routes::key_accepted(&proxy.config.api_keys, &headers) {
        return ApiError::Unauthorized.into_response();
    }
    axum::Json(proxy.config.models.clone()).into_response()
}

/// Replica label of the router's per-replica series.
type ReplicaLabel = [(&'static str, String); 1];

/// The router's own counters, in Prometheus text (through prometheus-client, as the replicas'
/// metrics are), built from a snapshot of the router at each scrape.
async fn metrics(State(proxy): State<Arc<Proxy>>) -> Response {
    let (rejected, in_flight, scraped, ejected) = {
        let r = proxy.router();
        (
            r.rejected(),
            r.in_flight().to_vec(),
            r.scraped().to_vec(),
            r.ejected().to_vec(),
        )
    };
    let label = |k: usize| -> ReplicaLabel { [("replica", k.to_string())] };
    let mut registry = Registry::default();
    let routed = Family::<ReplicaLabel, Counter>::default();
    for (k, n) in proxy.routed.iter().enumerate() {
        routed
            .get_or_create(&label(k))
            .inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "servesim_router_requests",
        "Requests the router sent to each replica.",
        routed,
    );
    let flying = Family::<ReplicaLabel, Gauge>::default();
    for (k, &n) in in_flight.iter().enumerate() {
        flying
            .get_or_create(&label(k))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "servesim_router_in_flight",
        "Requests in flight on each replica, as the router counts them.",
        flying,
    );
    if proxy.router().reads_metrics() {
        let kv = Family::<ReplicaLabel, Gauge<f64, AtomicU64>>::default();
        let waiting = Family::<ReplicaLabel, Gauge>::default();
        for (k, m) in scraped.iter().enumerate() {
            kv.get_or_create(&label(k)).set(m.kv_usage);
            waiting
                .get_or_create(&label(k))
                .set(i64::try_from(m.waiting).unwrap_or(i64::MAX));
        }
        registry.register(
            "servesim_router_scraped_kv_cache_usage_perc",
            "Each replica's KV-cache usage as of the router's last scrape.",
            kv,
        );
        registry.register(
            "servesim_router_scraped_num_requests_waiting",
            "Each replica's waiting queue as of the router's last scrape.",
            waiting,
        );
    }
    let up = Family::<ReplicaLabel, Gauge>::default();
    for (k, &out) in ejected.iter().enumerate() {
        up.get_or_create(&label(k)).set(i64::from(!out));
    }
    registry.register(
        "servesim_router_replica_up",
        "1 while the replica is in rotation, 0 while ejected after a refused connection.",
        up,
    );
    for (name, help, n) in [
        (
            "servesim_router_retries",
            "Requests sent to another replica after a refused connection.",
            &proxy.retries,
        ),
        (
            "servesim_router_ejections",
            "Times a replica was taken out of rotation.",
            &proxy.ejections,
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(n.load(Ordering::Relaxed));
        registry.register(name, help, c);
    }
    let refused = Counter::<u64>::default();
    refused.inc_by(rejected);
    registry.register(
        "servesim_router_rejected",
        "Requests refused by the router's admission.",
        refused,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::openmetrics_to_prometheus(&text),
    )
        .into_response()
}

async fn chat(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    forward(proxy, "/v1/chat/completions", headers, body).await
}

async fn completions(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    forward(proxy, "/v1/completions", headers, body).await
}

/// A body the router could not read, as the API's JSON error (axum's own is plain text).
fn body_error(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
    } else {
        ApiError::InvalidBody {
            message: e.body_text(),
            param: None,
        }
    }
}

/// Request headers not passed on: the hop's own (RFC 9110 §7.6.1) and those the client rebuilds.
const HOP_HEADERS: [header::HeaderName; 6] = [
    header::HOST,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
];

/// Admit, pick a replica, send the request there (to the next one the policy picks if it refuses
/// the connection) and stream its answer back.
async fn forward(
    proxy: Arc<Proxy>,
    path: &str,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_error(&e).into_response(),
    };
    let blocks = if proxy.frontend.is_some() {
        proxy.prompt_blocks(&body)
    } else {
        Vec::new()
    };
    {
        let now = proxy.started.elapsed().as_secs_f64();
        let mut router = proxy.router();
        if !router.admit(now) {
            let admission = router.config().admission.to_string();
            drop(router);
            return ApiError::RouterAdmission { admission }.into_response();
        }
    }
    proxy.restore_expired();
    // Each replica at most once: a refused connection ejects it, so the policy picks another.
    let attempts = proxy.config.replicas.len();
    let mut attempt = 0;
    let (answer, guard) = loop {
        attempt += 1;
        let replica = proxy.router().route(&blocks);
        proxy.routed[replica].fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            proxy: Arc::clone(&proxy),
            replica,
        };
        let url = format!("{}{path}", proxy.config.replicas[replica]);
        let mut request = proxy.client.post(url).body(body.clone());
        for (name, value) in &headers {
            if !HOP_HEADERS.contains(name) {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => break (answer, guard),
            Err(e) => {
                drop(guard);
                tracing::warn!("router: replica {replica} unreachable: {e}");
                // Refused before the replica read anything: safe to send elsewhere.
                if e.is_connect() {
                    proxy.eject(replica);
                    if attempt < attempts {
                        proxy.retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                return ApiError::ReplicaUnreachable {
                    replica,
                    message: e.to_string(),
                }
                .into_response();
            }
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !HOP_HEADERS.contains(name) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    // Chunks pass on as they come; the request counts as in flight until the last one (or until
    // the client goes away and the body is dropped).
    let stream = answer.bytes_stream().map(move |chunk| {
        let _alive = &guard;
        chunk
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_replica_that_does_not_answer_is_a_502_with_a_json_error() {
        // A port that was just free: nothing listens there.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let app = proxy_app(ProxyConfig {
            replicas: vec![format!("http://{addr}")],
            router: RouterConfig::default(),
            seed: 0,
            profile: Profile::load(servesim_models::DEFAULT_PROFILE).expect("profile"),
            models: serde_json::json!({"object": "list", "data": []}),
            api_keys: Vec::new(),
        })
        .expect("app");
        let request = axum::http::Request::post("/v1/completions")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"model":"local","prompt":"hi","max_tokens":1}"#,
            ))
            .expect("request");
        let answer = app.clone().oneshot(request).await.expect("an answer");
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["type"], "BadGatewayError", "{v}");
        assert_eq!(v["error"]["code"], 502);
        // The failed request is no longer counted in flight.
        let metrics = app
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("metrics");
        let text = axum::body::to_bytes(metrics.into_body(), 1 << 16)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.contains("servesim_router_in_flight{replica=\"0\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("servesim_router_requests_total{replica=\"0\"} 1"),
            "{text}"
        );
    }

    fn app_over(replicas: Vec<String>) -> HttpRouter {
        proxy_app(ProxyConfig {
            replicas,
            router: RouterConfig::default(),
            seed: 0,
            profile: Profile::load(servesim_models::DEFAULT_PROFILE).expect("profile"),
            models: serde_json::json!({"object": "list", "data": []}),
            api_keys: Vec::new(),
        })
        .expect("app")
    }

    async fn text_of(app: &HttpRouter, path: &str) -> String {
        let answer = app
            .clone()
            .oneshot(
                axum::http::Request::get(path)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_refused_connection_fails_over_and_ejects_the_replica() {
        // Replica 0: nothing listens. Replica 1: a stand-in that answers every completion.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead = closed.local_addr().expect("addr");
        drop(closed);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live_addr = live.local_addr().expect("addr");
        let stand_in = HttpRouter::new().route(
            "/v1/completions",
            post(|| async { axum::Json(serde_json::json!({"object": "text_completion"})) }),
        );
        tokio::spawn(async move { axum::serve(live, stand_in).await });
        let app = app_over(vec![
            format!("http://{dead}"),
            format!("http://{live_addr}"),
        ]);
        // Round-robin would send every other request to the dead replica: all four succeed, the
        // first through a retry, the rest because replica 0 is out of rotation.
        for _ in 0..4 {
            let request = axum::http::Request::post("/v1/completions")
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"model":"local","prompt":"hi","max_tokens":1}"#,
                ))
                .expect("request");
            let answer = app.clone().oneshot(request).await.expect("an answer");
            assert_eq!(answer.status(), StatusCode::OK);
        }
        let text = text_of(&app, "/metrics").await;
        for line in [
            "servesim_router_retries_total 1",
            "servesim_router_ejections_total 1",
            "servesim_router_replica_up{replica=\"0\"} 0",
            "servesim_router_replica_up{replica=\"1\"} 1",
            "servesim_router_requests_total{replica=\"0\"} 1",
            "servesim_router_requests_total{replica=\"1\"} 4",
            "servesim_router_in_flight{replica=\"1\"} 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_the_apis_json_413() {
        let app = app_over(vec!["http://127.0.0.1:9".into()]);
        let big = format!(
            r#"{{"model":"local","prompt":"{}","max_tokens":1}}"#,
            "a".repeat(MAX_BODY_BYTES)
        );
        let request = axum::http::Request::post("/v1/completions")
            .header("content-type", "application/json")
            .body(Body::from(big))
            .expect("request");
        let answer = app.clone().oneshot(request).await.expect("an answer");
        assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["error"]["code"], 413, "{v}");
        // Refused before routing: nothing was sent anywhere.
        let text = text_of(&app, "/metrics").await;
        assert!(
            text.contains("servesim_router_requests_total{replica=\"0\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_scrape_reads_the_three_gauges() {
        let text = "# HELP vllm:num_requests_running x\n\
            vllm:num_requests_running{engine=\"0\",model_name=\"local\"} 3\n\
            vllm:num_requests_waiting{engine=\"0\",model_name=\"local\"} 7\n\
            vllm:num_requests_waiting_by_reason{engine=\"0\",reason=\"capacity\"} 7\n\
            vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"local\"} 0.25\n";
        let s = parse_scrape(text);
        assert_eq!(s.running, 3);
        assert_eq!(s.waiting, 7);
        assert!((s.kv_usage - 0.25).abs() < 1e-12);
    }
}
