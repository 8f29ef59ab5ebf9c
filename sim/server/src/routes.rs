//! The HTTP routes: the OpenAI API under `/v1` and vLLM's extensions, and the path every
//! generation request takes (faults, token counting, admission checks, the engine, the answer).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::api::{self, ApiBody, ApiJson, DetokenizeRequest, Endpoint, TokenizeRequest, Validated};
use super::driver::Sink;
use super::sse::{self, SseSender, SseStream};
use super::stream::{self, AbortGuard, Envelope, Generation, GenerationSetup, OutputProcessor};
use super::{
    ApiError, AppState, InjectedError, MAX_BODY_BYTES, VLLM_VERSION, driver, faults, text, unix_now,
};
use servesim_sim::engine_core::AdmissionError;
use servesim_sim::frontend::Frontend;
use servesim_sim::request::EngineRequest;

/// What the recipient of a request's tokens is made with, besides the request.
#[derive(Debug, Clone, Copy)]
struct RecipientOptions {
    /// The cut fault fires halfway through the answer.
    cut: bool,
    /// Unix time of the answer (its events' `created`).
    created: u64,
}

/// Who receives an admitted request's tokens (the engine sends them through the matching
/// [`Sink`]): a stream the lane's dispatcher writes, or a whole answer the handler collects.
enum Recipient {
    Stream(Arc<SseStream>),
    Whole(Box<Generation>),
}

impl AppState {
    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        api::check_model(model, &self.0.served_names)
    }

    fn frontend(&self) -> std::sync::MutexGuard<'_, Frontend> {
        // The frontend holds no invariant a panicking holder could break.
        self.0.frontend.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn context_error(&self, e: &AdmissionError) -> ApiError {
        ApiError::BadRequest {
            message: e.to_string(),
            param: None,
        }
    }

    /// The recipient of an admitted request's tokens, and where the engine sends them: a stream
    /// whose events the lane's dispatcher formats (see [`sse`]) or a channel the handler waits on.
    fn recipient(
        &self,
        endpoint: Endpoint,
        v: &Validated,
        key: u64,
        request: &EngineRequest,
        options: RecipientOptions,
    ) -> (Recipient, Sink, String) {
        let s = &self.0;
        let seed = v
            .seed
            .unwrap_or_else(|| text::splitmix(s.config.seed ^ key.rotate_left(17)));
        let setup = GenerationSetup {
            guard: AbortGuard::new(s.driver.clone(), key),
            text: text::AnswerText::new(s.config.text, seed, v.echo_source.clone()),
            stop: v.stop.clone(),
            cut_after: options.cut.then(|| (request.outcome().0 / 2).max(1)),
            metrics: Arc::clone(&s.metrics),
            lag_probe: Arc::clone(&s.lag_probe),
            prompt_tokens: request.prompt_tokens,
            prompt_tokens_details: s.config.prompt_tokens_details,
        };
        let id = match endpoint {
            Endpoint::Chat => format!("chatcmpl-{:016x}", text::splitmix(seed ^ key)),
            Endpoint::Completions => format!("cmpl-{:016x}", text::splitmix(seed ^ key)),
        };
        if v.stream {
            let envelope = Envelope::new(
                endpoint,
                &id,
                options.created,
                &s.config.served_model_name,
                &s.fingerprint,
                v.include_usage,
            );
            let stream = SseStream::new(OutputProcessor::new(setup), envelope);
            let sink = Sink::Stream(SseSender::new(Arc::clone(&stream)));
            (Recipient::Stream(stream), sink, id)
        } else {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (
                Recipient::Whole(Box::new(Generation::new(rx, setup))),
                Sink::Channel(tx),
                id,
            )
        }
    }

    /// Run a validated request: faults, the `max_tokens` bound, then one turn of the API server
    /// (counting, admission, submission) and the answer. `received` is the engine time the
    /// request's body was in: the modelled input latency counts from there, so the server's own
    /// parsing and tokenising is part of it, not added to it.
    async fn generate(
        &self,
        endpoint: Endpoint,
        v: Validated,
        headers: &HeaderMap,
        received: f64,
    ) -> Result<Response, ApiError> {
        let plan = self.fault_plan(headers)?;
        let max_model_len = self.0.derived.max_model_len;
        check_max_tokens(v.max_tokens, max_model_len)?;
        let turn = Turn {
            endpoint,
            arrival: received + self.0.driver.config().input_latency_s,
            spike_s: plan.spike_s,
            // The lane this handler runs on (the blocking thread of the turn is on none).
            lane: super::lanes::current(),
            options: RecipientOptions {
                cut: plan.cut,
                created: unix_now(),
            },
        };
        let created = turn.options.created;
        // Off the async workers: counting a prompt of megabytes takes a while, and the other
        // connections (streams, /metrics, /health) go on meanwhile.
        let (recipient, id) = {
            let state = self.clone();
            tokio::task::spawn_blocking(move || state.take_turn(&v, turn))
                .await
                .map_err(|_| ApiError::EngineGone)??
        };
        match recipient {
            Recipient::Stream(stream) => Ok(sse_response(stream)),
            Recipient::Whole(generation) => {
                self.whole_answer(endpoint, &id, created, *generation).await
            }
        }
    }

    /// The fault plan of a request (dice, or the fault its header forces); an injected error is
    /// returned as the request's error.
    fn fault_plan(&self, headers: &HeaderMap) -> Result<faults::FaultPlan, ApiError> {
        let forced = headers
            .get(faults::FAULT_HEADER)
            .and_then(|h| h.to_str().ok());
        let plan = self
            .0
            .faults
            .plan(forced)
            .map_err(|m| ApiError::BadRequest {
                message: m,
                param: Some(faults::FAULT_HEADER.into()),
            })?;
        let max_model_len = self.0.derived.max_model_len;
        match plan.error {
            Some(InjectedError::Status(status)) => Err(ApiError::Injected { status }),
            Some(InjectedError::ContextLength) => {
                Err(self.context_error(&AdmissionError::ContextLength {
                    max_model_len,
                    total: u64::from(max_model_len) + 1,
                    prompt: max_model_len,
                    max_tokens: 1,
                }))
            }
            None => Ok(plan),
        }
    }

    /// One turn of the API server. Requests are handled in turn, as the virtual-time runner does:
    /// one turn counts the prompt, draws the answer's length, paces the arrival and submits it,
    /// so that lengths are drawn in the order requests reach the engine (in two turns, two HTTP
    /// threads interleaved them, and which answer got an iteration alone became a matter of
    /// luck). Blocking: it holds the frontend's lock while it counts.
    fn take_turn(&self, v: &Validated, turn: Turn) -> Result<(Recipient, String), ApiError> {
        let s = &self.0;
        let mut frontend = self.frontend();
        let prompt_tokens = frontend.prompt_tokens(&v.prompt);
        let max_tokens = context_limit(
            &v.prompt,
            prompt_tokens,
            v.max_tokens,
            s.derived.max_model_len,
        )?;
        let request = frontend.prepare(&v.spec(max_tokens));
        s.limits
            .validate(&request)
            .map_err(|e| self.context_error(&e))?;
        let admission = s.driver.admit(s.config.max_waiting).map_err(|waiting| {
            s.metrics.admission_rejected();
            ApiError::QueueFull {
                waiting,
                limit: s.config.max_waiting.unwrap_or(waiting),
            }
        })?;
        // A refused request does not take a turn: it never reaches the engine.
        let key = s.next_key.fetch_add(1, Ordering::Relaxed);
        let (recipient, sink, id) = self.recipient(turn.endpoint, v, key, &request, turn.options);
        let paced = frontend.pace(turn.arrival);
        let submitted = admission.submit(driver::Submission {
            key,
            request,
            arrival: paced + turn.spike_s,
            events: sink,
            lane: turn.lane,
        });
        if submitted {
            Ok((recipient, id))
        } else {
            Err(ApiError::EngineGone)
        }
    }

    /// A non-streaming answer: the whole text once the engine has finished, as vLLM writes it.
    async fn whole_answer(
        &self,
        endpoint: Endpoint,
        id: &str,
        created: u64,
        generation: Generation,
    ) -> Result<Response, ApiError> {
        let Some((content, finish)) = generation.collect().await? else {
            // The cut fault on a non-streaming answer: drop the connection without an answer.
            let body = Body::from_stream(futures_util::stream::once(async {
                Err::<bytes::Bytes, stream::StreamCut>(stream::StreamCut::fault())
            }));
            return Ok(Response::new(body));
        };
        let head = AnswerHead {
            id,
            created,
            model: &self.0.config.served_model_name,
            fingerprint: &self.0.fingerprint,
        };
        let body = match endpoint {
            Endpoint::Chat => serde_json::to_vec(&chat_completion(&head, &content, &finish)),
            Endpoint::Completions => serde_json::to_vec(&text_completion(&head, &content, &finish)),
        };
        let body = body.map_err(|_| ApiError::EngineGone)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// How the turn of an admitted request goes, decided before it is taken.
#[derive(Debug, Clone, Copy)]
struct Turn {
    endpoint: Endpoint,
    /// Engine time the request reaches the engine, before pacing and the spike fault.
    arrival: f64,
    /// The spike fault's extra seconds.
    spike_s: f64,
    lane: usize,
    options: RecipientOptions,
}

/// 400 for a `max_tokens` above the context, before the prompt is counted (vLLM's message).
fn check_max_tokens(max_tokens: Option<u32>, max_model_len: u32) -> Result<(), ApiError> {
    match max_tokens {
        Some(m) if m > max_model_len => Err(ApiError::bad_param(
            "max_tokens",
            format!(
                "max_tokens={m} cannot be greater than max_model_len={max_model_len}. Please request fewer output tokens. (parameter=max_tokens, value={m})"
            ),
        )),
        _ => Ok(()),
    }
}

/// A streaming answer: its events come from the lane's dispatcher (see [`sse`]).
fn sse_response(stream: Arc<SseStream>) -> Response {
    let mut response = Response::new(sse::body(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    response
}

/// What every non-streaming answer starts with.
struct AnswerHead<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    fingerprint: &'a str,
}

/// A chat answer's body (nulls included, as vLLM 0.32 writes it).
fn chat_completion<'a>(
    head: &AnswerHead<'a>,
    content: &'a str,
    finish: &'a stream::Finish,
) -> api::ChatCompletion<'a> {
    api::ChatCompletion {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model: head.model,
        choices: [api::ChatChoice {
            index: 0,
            message: api::AssistantMessage {
                role: "assistant",
                content,
                refusal: None,
                annotations: None,
                audio: None,
                function_call: None,
                reasoning: None,
            },
            logprobs: None,
            finish_reason: finish.reason.as_str(),
            stop_reason: finish.stop.as_deref(),
            token_ids: None,
            routed_experts: None,
        }],
        service_tier: None,
        system_fingerprint: head.fingerprint,
        usage: api::AnswerUsage::chat(finish.usage),
        prompt_logprobs: None,
        prompt_token_ids: None,
        prompt_text: None,
        kv_transfer_params: None,
        ec_transfer_params: None,
        metrics: None,
    }
}

/// A completions answer's body (nulls included, as vLLM 0.32 writes it).
fn text_completion<'a>(
    head: &AnswerHead<'a>,
    content: &'a str,
    finish: &'a stream::Finish,
) -> api::TextCompletion<'a> {
    api::TextCompletion {
        id: head.id,
        object: "text_completion",
        created: head.created,
        model: head.model,
        choices: [api::TextChoice {
            index: 0,
            text: content,
            logprobs: None,
            finish_reason: finish.reason.as_str(),
            stop_reason: finish.stop.as_deref(),
            token_ids: None,
            prompt_logprobs: None,
            prompt_token_ids: None,
            routed_experts: None,
        }],
        service_tier: None,
        system_fingerprint: head.fingerprint,
        usage: finish.usage.into(),
        kv_transfer_params: None,
        ec_transfer_params: None,
        metrics: None,
    }
}

/// vLLM 0.32's context rule, once the prompt is counted: a prompt longer than the context is
/// refused (`input_tokens`); otherwise the output limit (`max_tokens`, or none for chat) is cut to
/// the room the prompt leaves, and no room at all is a `max_tokens` of 0. (A `max_tokens` above
/// `max_model_len` was refused before counting.)
fn context_limit(
    prompt: &servesim_sim::frontend::Prompt,
    prompt_tokens: u32,
    max_tokens: Option<u32>,
    max_model_len: u32,
) -> Result<u32, ApiError> {
    if prompt_tokens > max_model_len {
        // vLLM tokenizes text with truncation at max_model_len + 1, so it only knows "at least"
        // that many; token ids it counts exactly.
        let (at_least, n) = match prompt {
            servesim_sim::frontend::Prompt::Tokens(n) => (*n == max_model_len + 1, *n),
            servesim_sim::frontend::Prompt::Ids(ids) => {
                (ids.len() as u32 == max_model_len + 1, ids.len() as u32)
            }
            _ => (true, max_model_len + 1),
        };
        let at_least = if at_least { "at least " } else { "" };
        return Err(ApiError::bad_param(
            "input_tokens",
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, your prompt contains {at_least}{n} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={n})"
            ),
        ));
    }
    let room = max_model_len - prompt_tokens;
    let max_tokens = max_tokens.map_or(room, |m| m.min(room));
    if max_tokens == 0 {
        return Err(ApiError::bad_param(
            "max_tokens",
            "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)".into(),
        ));
    }
    Ok(max_tokens)
}

/// Both generation endpoints: the body checked for `endpoint`, then [`AppState::generate`].
async fn generation(
    endpoint: Endpoint,
    state: AppState,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let received = state.0.driver.clock().now();
    let v = api::check_request(endpoint, &body, &state.0.served_names)?;
    state.generate(endpoint, v, &headers, received).await
}

async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    generation(Endpoint::Chat, state, headers, body).await
}

async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiBody(body): ApiBody,
) -> Result<Response, ApiError> {
    generation(Endpoint::Completions, state, headers, body).await
}

async fn models(State(state): State<AppState>) -> Response {
    axum::Json(models_body(&state)).into_response()
}

/// `GET /v1/models`'s body (also what the fleet router answers for its replicas).
pub fn models_body(state: &AppState) -> serde_json::Value {
    let s = &state.0;
    // One card per served name, as vLLM lists each of `--served-model-name`'s names.
    let cards: Vec<serde_json::Value> = s
        .served_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": s.started,
                "owned_by": "vllm",
                "root": s.config.profile.model.hf_id,
                "parent": null,
                "max_model_len": s.derived.max_model_len,
                "permission": [{
                    "id": format!("modelperm-{:016x}", text::splitmix(s.config.seed)),
                    "object": "model_permission",
                    "created": s.started,
                    "allow_create_engine": false,
                    "allow_sampling": true,
                    "allow_logprobs": true,
                    "allow_search_indices": false,
                    "allow_view": true,
                    "allow_fine_tuning": false,
                    "organization": "*",
                    "group": null,
                    "is_blocking": false
                }]
            })
        })
        .collect();
    json!({ "object": "list", "data": cards })
}

async fn version() -> Response {
    axum::Json(json!({ "version": VLLM_VERSION })).into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    // Chat messages win when both are given (vLLM's request union picks the chat form).
    let prompt = match (&req.messages, &req.prompt) {
        (Some(m), _) if m.is_empty() => {
            return Err(ApiError::BadRequest {
                message: "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
                param: None,
            });
        }
        (Some(m), _) => servesim_sim::frontend::Prompt::Chat(api::chat_contents(m)),
        (None, Some(p)) => servesim_sim::frontend::Prompt::Text(Arc::from(p.as_str())),
        (None, None) => {
            return Err(ApiError::InvalidBody {
                message: "1 validation error: either `prompt` or `messages` is required".into(),
                param: Some("body.prompt".into()),
            });
        }
    };
    // `count` is what the engine charges (chat template included); `tokens` are the ids of the
    // same prompt, template tokens included (see `PromptTokenizer::encode_chat`).
    // Off the async workers: a prompt of megabytes takes a while.
    let counting = state.clone();
    let (count, tokens) = tokio::task::spawn_blocking(move || {
        let mut frontend = counting.frontend();
        let count = frontend.prompt_tokens(&prompt);
        let tokens = match &prompt {
            servesim_sim::frontend::Prompt::Chat(contents) => frontend
                .tokenizer()
                .encode_chat(contents.iter().map(|c| &**c)),
            servesim_sim::frontend::Prompt::Text(text) => frontend.tokenizer().encode(text),
            servesim_sim::frontend::Prompt::Tokens(_) => Vec::new(),
            servesim_sim::frontend::Prompt::Ids(ids) => ids.to_vec(),
        };
        (count, tokens)
    })
    .await
    .map_err(|_| ApiError::EngineGone)?;
    Ok(axum::Json(json!({
        "count": count,
        "max_model_len": state.0.derived.max_model_len,
        "tokens": tokens,
        "token_strs": null
    }))
    .into_response())
}

async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let prompt = state.frontend().tokenizer().decode(&req.tokens);
    Ok(axum::Json(json!({ "prompt": prompt })).into_response())
}

async fn prometheus(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        state.0.metrics.render(),
    )
        .into_response()
}

/// `--api-key`: a bearer token on `/v1/*` (any of the keys given), compared in constant time.
async fn require_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !key_accepted(&state.0.config.api_keys, req.headers()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

/// Whether the request's bearer token is one of `keys` (always, when there are none).
pub(crate) fn key_accepted(keys: &[String], headers: &HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Every key is compared, so that the time taken does not say which one nearly matched.
    let matched = keys.iter().fold(subtle::Choice::from(0), |m, k| {
        m | given.as_bytes().ct_eq(k.as_bytes())
    });
    bool::from(matched)
}

/// The router: the OpenAI API under `/v1` (behind the key, if any) and vLLM's extensions.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(prometheus))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::RouteNotFound {
                path: uri.path().chars().take(200).collect(),
            }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;
    use axum::body::to_bytes;
    use servesim_models::Profile;
    use tower::ServiceExt;

    fn state() -> AppState {
        let profile = Profile::load("a6000-qwen2.5-7b").expect("profile");
        let mut config = ServerConfig::new(profile);
        config.time_scale = 0.01;
        config.api_keys = vec!["sk-test".into()];
        AppState::new(config).expect("state")
    }

    async fn call(app: Router, req: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn post_json(uri: &str, body: &str, key: Option<&str>) -> axum::http::Request<Body> {
        let mut b = axum::http::Request::post(uri).header("content-type", "application/json");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::from(body.to_string())).expect("request")
    }

    #[test]
    fn the_context_cuts_max_tokens_as_vllm_does() {
        use servesim_sim::frontend::Prompt;
        let text = Prompt::Text(Arc::from("gpu"));
        // As the real peer answered (max_model_len 2048, a 1965-token prompt).
        for asked in [Some(1), Some(83), Some(200), Some(2048), None] {
            let got = context_limit(&text, 1965, asked, 2048).expect("room left");
            assert_eq!(got, asked.map_or(83, |m| m.min(83)), "{asked:?}");
        }
        let err = |prompt: &Prompt, tokens: u32| match context_limit(prompt, tokens, Some(5), 2048)
        {
            Err(ApiError::BadRequest {
                message,
                param: Some(param),
            }) => (message, param),
            other => panic!("{other:?}"),
        };
        // No room at all.
        let (message, param) = err(&Prompt::Tokens(2048), 2048);
        assert_eq!(param, "max_tokens");
        assert!(message.starts_with("max_tokens must be at least 1, got 0."));
        // Longer than the context: text is known only up to max_model_len + 1 tokens.
        let (message, param) = err(&text, 3000);
        assert_eq!(param, "input_tokens");
        assert!(message.contains("your prompt contains at least 2049 input tokens"));
        assert!(message.ends_with("(parameter=input_tokens, value=2049)"));
        let (message, _) = err(&Prompt::Tokens(2500), 2500);
        assert!(message.contains("your prompt contains 2500 input tokens"));
        let (message, _) = err(&Prompt::Tokens(2049), 2049);
        assert!(message.contains("at least 2049"));
    }

    #[tokio::test]
    async fn key_model_and_validation_errors() {
        let s = state();
        let chat =
            r#"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
        let (st, body) = call(
            app(s.clone()),
            post_json("/v1/chat/completions", chat, None),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"error": "Unauthorized"}));
        let (st, _) = call(
            app(s.clone()),
            post_json("/v1/chat/completions", chat, Some("sk-bad")),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let nope = chat.replace("\"local\"", "\"nope\"");
        let (st, body) = call(
            app(s.clone()),
            post_json("/v1/chat/completions", &nope, Some("sk-test")),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(
            body["error"]["message"],
            "The model `nope` does not exist. Valid aliases: local."
        );
        let (st, body) = call(
            app(s.clone()),
            post_json("/v1/chat/completions", "{\"model\":", Some("sk-test")),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["type"], "Bad Request");
        let (st, body) = call(
            app(s.clone()),
            post_json("/v1/chat/completions", chat, Some("sk-test")),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(body["usage"]["completion_tokens"], 3);
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        // Unprotected vLLM extensions.
        let (st, body) = call(
            app(s.clone()),
            post_json("/tokenize", r#"{"prompt":"hello world"}"#, None),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body["count"], 2);
        s.driver().stop();
    }
}
