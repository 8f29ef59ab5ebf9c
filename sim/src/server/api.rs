//! The OpenAI-compatible request and response bodies, and the validation that turns a request into
//! what the engine needs. Unknown fields are accepted and ignored, as vLLM does for most of them.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::errors::ApiError;
use super::stream::Endpoint;
use crate::frontend::{Prompt, RequestSpec};

/// A request body as raw bytes, read under the server's limits: a JSON content type (or none, as
/// FastAPI accepts), at most [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) (a larger `Content-Length`
/// is refused before anything is read), and the whole body within the request timeout (a client
/// that stops sending halfway gets a 408). Every failure is an [`ApiError`], so it gets the API's
/// own JSON error rather than axum's plain-text rejections.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl FromRequest<AppState> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        check_content_type(content_type)?;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit = super::MAX_BODY_BYTES;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let timeout = state.config().request_timeout;
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await;
        let bytes = read
            .map_err(|_| ApiError::RequestTimeout {
                seconds: timeout.as_secs_f64(),
            })?
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::InvalidBody {
                        message: e.body_text(),
                        param: None,
                    }
                }
            })?;
        Ok(ApiBody(bytes))
    }
}

/// A JSON body parsed into `T` ([`ApiBody`]'s checks, then [`parse_json`]).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ApiBody(bytes) = ApiBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// FastAPI's rule: a body is read as JSON when there is no `Content-Type` or it is
/// `application/json` or `application/*+json` (parameters ignored); any other type is a 400.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let mime = ct.split(';').next().unwrap_or_default().trim();
    let json = mime.split_once('/').is_some_and(|(kind, sub)| {
        kind.eq_ignore_ascii_case("application")
            && (sub.eq_ignore_ascii_case("json")
                || sub.len() > 5
                    && sub
                        .get(sub.len() - 5..)
                        .is_some_and(|t| t.eq_ignore_ascii_case("+json")))
    });
    if json {
        return Ok(());
    }
    Err(ApiError::InvalidBody {
        message: format!(
            "1 validation error: {{'type': 'model_attributes_type', 'loc': 'body', 'msg': 'Input should be a valid dictionary or object to extract fields from'}} (Content-Type {:?} is not application/json)",
            clip(ct, 100)
        ),
        param: Some("body".into()),
    })
}

/// At most `max` bytes of `s`, cut at a character boundary (for echoing input in messages).
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The generation endpoints' parsing and validation as one pure function of the body: JSON into
/// the endpoint's request, the model name against `served_model`, then every field check.
/// Everything input-dependent that happens before token counting and the engine's context check;
/// the fuzz target (`fuzz/`) and the bad-request corpus test drive it. Never panics.
pub fn check_request(
    endpoint: Endpoint,
    body: &[u8],
    served_model: &str,
) -> Result<Validated, ApiError> {
    let (model, validated) = match endpoint {
        Endpoint::Chat => {
            let req: ChatRequest = parse_json(body)?;
            (req.model.clone(), req.validate())
        }
        Endpoint::Completions => {
            let req: CompletionRequest = parse_json(body)?;
            (req.model.clone(), req.validate())
        }
    };
    check_model(model.as_deref(), served_model)?;
    validated
}

/// 404 unless `model` is absent or the served name.
pub fn check_model(model: Option<&str>, served_model: &str) -> Result<(), ApiError> {
    match model {
        Some(m) if m != served_model => Err(ApiError::ModelNotFound {
            requested: clip(m, 200).to_string(),
            served: served_model.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Parse a body; the error names the missing or mistyped field the way FastAPI does (`body.FIELD`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        let param = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(|field| format!("body.{field}"));
        ApiError::InvalidBody {
            message: format!("1 validation error: {message}"),
            param,
        }
    })
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length fields shared by chat and completions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub ignore_eos: bool,
    pub min_tokens: Option<i64>,
}

/// A chat message's content: a string or a list of parts (only text parts are read).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A completions prompt: text, a one-element list of text, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: PromptInput,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `POST /tokenize`: a completions prompt or chat messages.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
}

/// `POST /detokenize`.
#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

/// vLLM's default `max_tokens` for `/v1/completions` (the legacy OpenAI default); chat defaults to
/// whatever room the context leaves.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// A request that passed validation: what the engine gets and how to answer.
#[derive(Debug, Clone)]
pub struct Validated {
    pub prompt: Prompt,
    /// `max_tokens` as asked; `None` means "fill the context" (chat without a limit).
    pub max_tokens: Option<u32>,
    pub ignore_eos: bool,
    pub min_tokens: u32,
    pub stream: bool,
    pub include_usage: bool,
    pub stop: Vec<String>,
    /// Seed of the filler text (the request's `seed`, when given).
    pub seed: Option<u64>,
    /// Text the `echo` text mode repeats.
    pub echo_source: Arc<str>,
}

impl Validated {
    /// The frontend's view, with the resolved output limit.
    pub fn spec(&self, max_tokens: u32) -> RequestSpec {
        RequestSpec {
            prompt: self.prompt.clone(),
            max_tokens,
            ignore_eos: self.ignore_eos,
            min_tokens: self.min_tokens,
        }
    }
}

fn non_negative(param: &str, v: Option<i64>) -> Result<Option<u32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x < 0 => Err(ApiError::bad_param(
            param,
            format!("{param} must be non-negative, got {x}."),
        )),
        Some(x) => Ok(Some(u32::try_from(x).unwrap_or(u32::MAX))),
    }
}

impl Sampling {
    fn validate(&self, prompt: Prompt, echo_source: Arc<str>) -> Result<Validated, ApiError> {
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => Some(("max_completion_tokens", v)),
            (None, Some(v)) => Some(("max_tokens", v)),
            (None, None) => None,
        };
        if let Some((param, v)) = max_tokens
            && v < 1
        {
            return Err(ApiError::bad_param(
                param,
                format!("{param} must be at least 1, got {v}. (parameter={param}, value={v})"),
            ));
        }
        let max_tokens = max_tokens.map(|(_, v)| u32::try_from(v).unwrap_or(u32::MAX));
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::bad_param(
                "n",
                format!("n must be 1: servesim generates one choice per request, got {n}."),
            ));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::bad_param(
                "temperature",
                format!("temperature must be in [0, 2], got {t}."),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::bad_param(
                "top_p",
                format!("top_p must be in (0, 1], got {p}."),
            ));
        }
        let min_tokens = non_negative("min_tokens", self.min_tokens)?.unwrap_or(0);
        if let Some(max) = max_tokens
            && min_tokens > max
        {
            return Err(ApiError::bad_param(
                "min_tokens",
                format!(
                    "min_tokens must be less than or equal to max_tokens={max}, got {min_tokens}."
                ),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Validated {
            prompt,
            max_tokens,
            ignore_eos: self.ignore_eos,
            min_tokens,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            stop,
            seed: self.seed.map(|s| s as u64),
            echo_source,
        })
    }
}

fn content_text(content: &Option<Content>) -> String {
    match content {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter(|p| p.kind == "text")
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The message contents of a chat, in order.
pub fn chat_contents(messages: &[ChatMessage]) -> Vec<Arc<str>> {
    messages
        .iter()
        .map(|m| Arc::from(content_text(&m.content)))
        .collect()
}

/// The chat roles vLLM's OpenAI server knows.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl ChatRequest {
    /// Check the request and build the engine's view of it.
    pub fn validate(&self) -> Result<Validated, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::bad_param(
                "messages",
                "messages must contain at least one message.".into(),
            ));
        }
        // vLLM renders any role name through the chat template (the real peer answers 200 for a
        // role "wizard"); only an empty one is refused.
        for (i, m) in self.messages.iter().enumerate() {
            if m.role.is_empty() {
                return Err(ApiError::bad_param(
                    "messages",
                    format!(
                        "Empty role in messages[{i}]: expected e.g. one of {}.",
                        ROLES.join(", ")
                    ),
                ));
            }
        }
        let contents = chat_contents(&self.messages);
        let echo = contents.last().cloned().unwrap_or_else(|| Arc::from(""));
        self.sampling.validate(Prompt::Chat(contents), echo)
    }
}

impl CompletionRequest {
    /// Check the request and build the engine's view of it; a missing `max_tokens` is 16.
    pub fn validate(&self) -> Result<Validated, ApiError> {
        let (prompt, echo): (Prompt, Arc<str>) = match &self.prompt {
            PromptInput::Text(t) => {
                let t: Arc<str> = Arc::from(t.as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Texts(v) if v.len() == 1 => {
                let t: Arc<str> = Arc::from(v[0].as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Ids(ids) => (Prompt::Tokens(ids.len() as u32), Arc::from("")),
            PromptInput::IdLists(v) if v.len() == 1 => {
                (Prompt::Tokens(v[0].len() as u32), Arc::from(""))
            }
            _ => {
                return Err(ApiError::bad_param(
                    "prompt",
                    "servesim takes one prompt per request (batched prompts are not supported)."
                        .into(),
                ));
            }
        };
        if matches!(&prompt, Prompt::Text(t) if t.is_empty()) || matches!(prompt, Prompt::Tokens(0))
        {
            return Err(ApiError::bad_param(
                "prompt",
                "The prompt cannot be empty.".into(),
            ));
        }
        let mut v = self.sampling.validate(prompt, echo)?;
        v.max_tokens.get_or_insert(COMPLETIONS_DEFAULT_MAX_TOKENS);
        Ok(v)
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Usage {
        Usage {
            prompt_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            completion_tokens,
        }
    }
}

/// Non-streaming chat answer (field order as vLLM writes it).
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatChoice<'a>; 1],
    pub service_tier: Option<()>,
    pub system_fingerprint: &'a str,
    pub usage: Usage,
}

/// The one choice of a chat answer.
#[derive(Debug, Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
    pub stop_reason: Option<&'a str>,
}

/// The assistant's message.
#[derive(Debug, Serialize)]
pub struct AssistantMessage<'a> {
    pub role: &'static str,
    pub content: &'a str,
    pub refusal: Option<()>,
    pub annotations: Option<()>,
    pub audio: Option<()>,
    pub function_call: Option<()>,
    pub reasoning: Option<()>,
}

/// Non-streaming completions answer.
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [TextChoice<'a>; 1],
    pub service_tier: Option<()>,
    pub system_fingerprint: &'a str,
    pub usage: Usage,
}

/// The one choice of a completions answer.
#[derive(Debug, Serialize)]
pub struct TextChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
    pub stop_reason: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Validated, ApiError> {
        parse_json::<ChatRequest>(body.as_bytes())?.validate()
    }

    #[test]
    fn missing_messages_names_the_field() {
        let err = chat(r#"{"model":"local"}"#).expect_err("messages are required");
        assert_eq!(err.status(), 400);
        assert!(
            matches!(err, ApiError::InvalidBody { param: Some(p), .. } if p == "body.messages")
        );
    }

    #[test]
    fn limits_are_checked() {
        let base = r#""messages":[{"role":"user","content":"hi"}]"#;
        let err = chat(&format!("{{{base},\"max_tokens\":0}}")).expect_err("max_tokens 0");
        assert!(
            err.to_string()
                .starts_with("max_tokens must be at least 1, got 0.")
        );
        assert!(chat(&format!("{{{base},\"n\":2}}")).is_err());
        assert!(chat(&format!("{{{base},\"max_tokens\":\"x\"}}")).is_err());
        assert!(chat(r#"{"messages":[]}"#).is_err());
        let ok = chat(&format!(
            "{{{base},\"max_completion_tokens\":7,\"stop\":\"x\",\"stream\":true,\"stream_options\":{{\"include_usage\":true}},\"n\":1}}"
        ))
        .expect("valid");
        assert_eq!(ok.max_tokens, Some(7));
        assert_eq!(ok.stop, vec!["x".to_string()]);
        assert!(ok.stream && ok.include_usage);
    }

    #[test]
    fn completions_default_to_sixteen_tokens() {
        let v = parse_json::<CompletionRequest>(br#"{"prompt":"hello"}"#)
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(v.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
        let batched = parse_json::<CompletionRequest>(br#"{"prompt":["a","b"]}"#).expect("parses");
        assert!(batched.validate().is_err());
    }

    #[test]
    fn content_types_follow_fastapi() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/vnd.api+json"),
        ] {
            assert!(check_content_type(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "}}}",
            "",
            "+json",
        ] {
            let err = check_content_type(Some(bad)).expect_err(bad);
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn empty_roles_and_unknown_models_are_refused() {
        // Real vLLM renders any role name (it answered 200 for "wizard"); an empty one is refused.
        assert!(chat(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#).is_ok());
        let err = chat(r#"{"messages":[{"role":"","content":"hi"}]}"#).expect_err("role");
        assert!(matches!(err, ApiError::BadRequest { param: Some(p), .. } if p == "messages"));
        let err = check_request(
            Endpoint::Chat,
            br#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            "local",
        )
        .expect_err("model");
        assert_eq!(err.status(), 404);
        assert!(
            check_request(
                Endpoint::Completions,
                br#"{"model":"local","prompt":"hi"}"#,
                "local"
            )
            .is_ok()
        );
    }

    mod fuzz {
        //! The stable-toolchain stand-in for `fuzz/` (cargo fuzz needs nightly flags): property
        //! tests that feed arbitrary bytes, and mutated valid requests, to the same entry point.
        use super::super::*;
        use proptest::prelude::*;

        const SEED: &str = r#"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true},"stop":["x"],"temperature":0.5,"top_p":0.9,"n":1,"min_tokens":1,"seed":3}"#;

        fn never_panics(body: &[u8]) {
            for endpoint in [Endpoint::Chat, Endpoint::Completions] {
                if let Err(e) = check_request(endpoint, body, "local") {
                    let status = e.status().as_u16();
                    assert!((400..500).contains(&status), "{status}: {e}");
                    assert!(!e.to_string().is_empty());
                }
            }
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("role".to_string()),
                            Just("content".to_string()),
                            Just("type".to_string()),
                            Just("text".to_string()),
                            "[a-z_]{1,8}"
                        ],
                        inner,
                        0..5
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
                never_panics(&body);
            }

            #[test]
            fn a_valid_request_cut_or_corrupted(cut in 0..SEED.len(), at in 0..SEED.len(), byte in any::<u8>()) {
                let mut b = SEED.as_bytes().to_vec();
                b[at] = byte;
                never_panics(&b);
                never_panics(&SEED.as_bytes()[..cut]);
            }

            #[test]
            fn any_value_in_any_field(
                field in prop_oneof![
                    Just("model"), Just("messages"), Just("prompt"), Just("max_tokens"),
                    Just("max_completion_tokens"), Just("stream"), Just("stream_options"),
                    Just("n"), Just("temperature"), Just("top_p"), Just("seed"), Just("stop"),
                    Just("ignore_eos"), Just("min_tokens")
                ],
                value in json_value(),
            ) {
                let mut v: serde_json::Value = serde_json::from_str(SEED).expect("seed");
                v[field] = value;
                never_panics(v.to_string().as_bytes());
            }
        }
    }
}
