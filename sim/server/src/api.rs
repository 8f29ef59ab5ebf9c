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
use servesim_sim::frontend::{Prompt, RequestSpec};

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
/// the endpoint's request, the model name against the served names, then every field check.
/// Everything input-dependent that happens before token counting and the engine's context check;
/// the fuzz target (`fuzz/`) and the bad-request corpus test drive it. Never panics.
pub fn check_request(
    endpoint: Endpoint,
    body: &[u8],
    served_models: &[impl AsRef<str>],
) -> Result<Validated, ApiError> {
    let (model, validated) = match endpoint {
        Endpoint::Chat => {
            let req = ChatRequest::parse(body)?;
            (req.model.clone(), req.validate())
        }
        Endpoint::Completions => {
            let req = CompletionRequest::parse(body)?;
            (req.model.clone(), req.validate())
        }
    };
    check_model(model.as_deref(), served_models)?;
    validated
}

/// 404 unless `model` is absent or one of the served names (`--served-model-name` may give several;
/// vLLM answers to any of them and lists them all in the error).
pub fn check_model(model: Option<&str>, served_models: &[impl AsRef<str>]) -> Result<(), ApiError> {
    match model {
        Some(m) if !served_models.iter().any(|s| s.as_ref() == m) => Err(ApiError::ModelNotFound {
            requested: clip(m, 200).to_string(),
            served: served_models
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Ok(()),
    }
}

/// Parse a body the way FastAPI and pydantic do, as far as the error's `param` (pydantic's
/// location) goes: `body.<character offset>` when the body is not JSON (Python's decoder position),
/// `body.<field>[.<index>...]` when a field is missing or of the wrong type, `body` when the body is
/// not an object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array; pydantic wants an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => validation_error(bytes, "", &e),
            Ok(_) => ApiError::InvalidBody {
                message: "1 validation error:\n  {'type': 'model_attributes_type', 'loc': 'body', 'msg': 'Input should be a valid dictionary or object to extract fields from'}".into(),
                param: Some("body".into()),
            },
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (String::new(), e)));
    let (path, error) = match parsed {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // pydantic decodes the whole document before validating any field: a syntax error anywhere
    // wins over a type error met earlier.
    let error = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(syntax) if error.classify() == serde_json::error::Category::Data => syntax,
        _ => error,
    };
    Err(validation_error(bytes, &path, &error))
}

/// A pydantic validation error of one top-level field, found after parsing.
fn field_error(kind: &str, field: &str, msg: &str) -> ApiError {
    ApiError::InvalidBody {
        message: format!(
            "1 validation error:\n  {{'type': '{kind}', 'loc': 'body.{field}', 'msg': {msg:?}}}"
        ),
        param: Some(format!("body.{field}")),
    }
}

/// The 400 for a body that [`parse_json`] refused.
fn validation_error(bytes: &[u8], path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let detail = e.to_string();
    let (kind, loc) = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => (
            "json_invalid",
            format!("body.{}", decode_position(bytes, e)),
        ),
        Category::Data => {
            let mut loc = String::from("body");
            // serde_path_to_error writes `.` for the root and `a.b[0].c` below it.
            for part in path.split(['.', '[', ']']).filter(|p| !p.is_empty()) {
                loc.push('.');
                loc.push_str(part);
            }
            match detail
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(field) => {
                    loc.push('.');
                    loc.push_str(field);
                    ("missing", loc)
                }
                None => ("invalid_type", loc),
            }
        }
    };
    // The line/column suffix is serde's, not pydantic's.
    let msg = detail
        .rsplit_once(" at line ")
        .map_or(detail.as_str(), |(m, _)| m);
    ApiError::InvalidBody {
        message: format!(
            "1 validation error:\n  {{'type': '{kind}', 'loc': '{loc}', 'msg': {msg:?}}}"
        ),
        param: Some(loc),
    }
}

/// Where Python's JSON decoder would report `e`: a character offset into the body. serde stops on
/// the offending character (column = its 1-based byte column), Python points at it; at the end of
/// the input both point past the last character.
fn decode_position(bytes: &[u8], e: &serde_json::Error) -> usize {
    let byte = if e.classify() == serde_json::error::Category::Eof {
        bytes.len()
    } else {
        let line_start: usize = bytes
            .split_inclusive(|&b| b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(<[u8]>::len)
            .sum();
        (line_start + e.column().saturating_sub(1)).min(bytes.len())
    };
    String::from_utf8_lossy(&bytes[..byte]).chars().count()
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
    #[serde(default, deserialize_with = "lax::bool")]
    pub include_usage: bool,
}

/// Sampling and length fields shared by chat and completions. Numbers and booleans are read as
/// pydantic's lax mode reads them (vLLM's request models): `"8"` and `8.0` are 8, `"yes"` is true.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    #[serde(default, deserialize_with = "lax::int")]
    pub max_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lax::int")]
    pub max_completion_tokens: Option<i64>,
    /// Kept raw: vLLM checks `stream_options` against the raw value's truthiness first.
    #[serde(default)]
    pub stream: Option<serde_json::Value>,
    /// Kept raw, as `stream`.
    #[serde(default)]
    pub stream_options: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lax::int")]
    pub n: Option<i64>,
    #[serde(default, deserialize_with = "lax::float")]
    pub temperature: Option<f64>,
    #[serde(default, deserialize_with = "lax::float")]
    pub top_p: Option<f64>,
    #[serde(default, deserialize_with = "lax::int")]
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default, deserialize_with = "lax::bool")]
    pub ignore_eos: bool,
    #[serde(default, deserialize_with = "lax::int")]
    pub min_tokens: Option<i64>,
}

/// pydantic's lax-mode coercions for the scalar fields of vLLM's request models.
mod lax {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A boolean: `true`/`false`, 0 and 1 (integer or float), and the strings `0 off f false n no`
    /// and `1 on t true y yes` in any case (not trimmed); null is false.
    pub fn from_value(v: &Value) -> Result<bool, String> {
        match v {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Ok(false),
                Some(1.0) => Ok(true),
                _ => Err("Input should be a valid boolean".into()),
            },
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
                _ => Err("Input should be a valid boolean, unable to interpret input".into()),
            },
            _ => Err("Input should be a valid boolean".into()),
        }
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        from_value(&Value::deserialize(d)?).map_err(D::Error::custom)
    }

    /// An integer: a JSON integer, a float without a fractional part (within 64 bits), a boolean,
    /// or a string of one (trimmed, optional sign, `.0` allowed).
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Value::deserialize(d)?;
        let int_from_f64 = |x: f64| {
            if x.fract() != 0.0 {
                Err("Input should be a valid integer, got a number with a fractional part")
            } else if x.abs() >= 9.223_372_036_854_776e18 || !x.is_finite() {
                Err("Unable to parse input string as an integer, exceeded maximum size")
            } else {
                Ok(x as i64)
            }
        };
        let n = match &v {
            Value::Null => return Ok(None),
            Value::Bool(b) => Ok(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(i),
                None => int_from_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => {
                let t = s.trim();
                let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
                let digits = whole.strip_prefix(['+', '-']).unwrap_or(whole);
                if !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && fraction.bytes().all(|b| b == b'0')
                {
                    whole.parse::<i64>().map_err(
                        |_| "Unable to parse input string as an integer, exceeded maximum size",
                    )
                } else {
                    Err("Input should be a valid integer, unable to parse string as an integer")
                }
            }
            _ => Err("Input should be a valid integer"),
        };
        n.map(Some).map_err(D::Error::custom)
    }

    /// A number: a JSON number, a boolean, or a string of one (trimmed).
    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(f64::from(u8::from(b)))),
            Value::Number(n) => Ok(n.as_f64()),
            Value::String(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                D::Error::custom(
                    "Input should be a valid number, unable to parse string as a number",
                )
            }),
            _ => Err(D::Error::custom("Input should be a valid number")),
        }
    }

    /// Python's truthiness of a JSON value (what vLLM's `before` validators test).
    pub fn truthy(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::Bool(true)) => true,
        }
    }
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

/// `POST /v1/chat/completions` ([`ChatRequest::parse`]).
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
}

/// The chat request's own fields. (Not one struct with `#[serde(flatten)]` sampling: through a
/// flattened struct serde loses the path of a mistyped field, which the error must name.)
#[derive(Debug, Deserialize)]
struct ChatFields {
    model: Option<String>,
    messages: Vec<ChatMessage>,
}

impl ChatRequest {
    /// Parse a body ([`parse_json`]'s errors): the chat fields, then the sampling fields.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let ChatFields { model, messages } = parse_json(body)?;
        Ok(ChatRequest {
            model,
            messages,
            sampling: parse_json(body)?,
        })
    }
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

/// `POST /v1/completions` ([`CompletionRequest::parse`]).
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub model: Option<String>,
    /// Optional to the parser: vLLM answers a missing prompt with its own error, not pydantic's.
    pub prompt: Option<PromptInput>,
    pub sampling: Sampling,
}

/// The completions request's own fields (see [`ChatFields`]).
#[derive(Debug, Deserialize)]
struct CompletionFields {
    model: Option<String>,
    prompt: Option<PromptInput>,
}

impl CompletionRequest {
    /// Parse a body ([`parse_json`]'s errors): the prompt, then the sampling fields.
    pub fn parse(body: &[u8]) -> Result<CompletionRequest, ApiError> {
        let CompletionFields { model, prompt } = parse_json(body)?;
        Ok(CompletionRequest {
            model,
            prompt,
            sampling: parse_json(body)?,
        })
    }
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

/// Below this temperature vLLM samples greedily (its `_SAMPLING_EPS`).
const GREEDY_EPSILON: f64 = 1e-5;

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
        // vLLM's `before` validator, on the raw values: `"stream": "false"` is truthy there.
        if lax::truthy(self.stream_options.as_ref()) && !lax::truthy(self.stream.as_ref()) {
            return Err(ApiError::bad_param(
                "stream_options",
                "Stream options can only be defined when `stream=True`. (parameter=stream_options)"
                    .into(),
            ));
        }
        let stream = match &self.stream {
            None => false,
            Some(v) => {
                lax::from_value(v).map_err(|msg| field_error("bool_parsing", "stream", &msg))?
            }
        };
        let include_usage = match &self.stream_options {
            None | Some(serde_json::Value::Null) => false,
            Some(v) => {
                parse_json::<StreamOptions>(v.to_string().as_bytes())
                    .map_err(|e| match e {
                        ApiError::InvalidBody {
                            message,
                            param: Some(p),
                        } => ApiError::InvalidBody {
                            message: message.replacen("'body", "'body.stream_options", 1),
                            param: Some(p.replacen("body", "body.stream_options", 1)),
                        },
                        other => other,
                    })?
                    .include_usage
            }
        };
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
        match self.n {
            // vLLM's SamplingParams checks (no `param` in its answer).
            Some(n) if n < 1 => {
                return Err(ApiError::BadRequest {
                    message: format!("n must be at least 1, got {n}."),
                    param: None,
                });
            }
            Some(n) if n > 1 && self.temperature.is_some_and(|t| t < GREEDY_EPSILON) => {
                return Err(ApiError::BadRequest {
                    message: format!("n must be 1 when using greedy sampling, got {n}."),
                    param: None,
                });
            }
            Some(n) if n > 1 => {
                return Err(ApiError::bad_param(
                    "n",
                    format!("n must be 1: servesim generates one choice per request, got {n}."),
                ));
            }
            _ => {}
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
            stream,
            include_usage,
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
            return Err(ApiError::BadRequest {
                message: "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
                param: None,
            });
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
        let no_prompt = || {
            ApiError::bad_param(
                "prompt",
                "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)"
                    .into(),
            )
        };
        let (prompt, echo): (Prompt, Arc<str>) = match self.prompt.as_ref().ok_or_else(no_prompt)? {
            PromptInput::Text(t) if t.is_empty() => return Err(no_prompt()),
            PromptInput::Texts(v) if v.is_empty() => {
                return Err(ApiError::BadRequest {
                    message: "You must pass at least one prompt".into(),
                    param: None,
                });
            }
            PromptInput::Text(t) => {
                let t: Arc<str> = Arc::from(t.as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Texts(v) if v.len() == 1 => {
                let t: Arc<str> = Arc::from(v[0].as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Ids(ids) => (Prompt::Ids(ids.as_slice().into()), Arc::from("")),
            PromptInput::IdLists(v) if v.len() == 1 => {
                (Prompt::Ids(v[0].as_slice().into()), Arc::from(""))
            }
            _ => {
                return Err(ApiError::bad_param(
                    "prompt",
                    "servesim takes one prompt per request (batched prompts are not supported)."
                        .into(),
                ));
            }
        };
        if matches!(&prompt, Prompt::Text(t) if t.is_empty())
            || matches!(&prompt, Prompt::Ids(ids) if ids.is_empty())
        {
            return Err(ApiError::BadRequest {
                message: "The decoder prompt cannot be empty".into(),
                param: None,
            });
        }
        let mut v = self.sampling.validate(prompt, echo)?;
        v.max_tokens.get_or_insert(COMPLETIONS_DEFAULT_MAX_TOKENS);
        Ok(v)
    }
}

/// Which generation endpoint a request came to: its body's shape and its answer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens read from the prefix cache, reported only with `--enable-prompt-tokens-details`.
    #[serde(skip)]
    pub cached_tokens: Option<u32>,
}

/// `usage.prompt_tokens_details` as vLLM 0.32 writes it (with `--enable-prompt-tokens-details`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
    /// 0 in chat answers, null in completions ones (vLLM 0.32).
    pub created_cache_tokens: Option<u32>,
    pub multimodal_tokens: Option<()>,
}

/// `usage` of a non-streaming answer: the counts and vLLM 0.32's null detail fields (the stream's
/// usage event has the counts only).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AnswerUsage {
    #[serde(flatten)]
    pub counts: Usage,
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    pub completion_tokens_details: Option<()>,
}

impl From<Usage> for AnswerUsage {
    fn from(counts: Usage) -> AnswerUsage {
        AnswerUsage {
            counts,
            prompt_tokens_details: counts
                .cached_tokens
                .map(|cached_tokens| PromptTokensDetails {
                    cached_tokens,
                    created_cache_tokens: None,
                    multimodal_tokens: None,
                }),
            completion_tokens_details: None,
        }
    }
}

impl AnswerUsage {
    /// A chat answer's usage: vLLM 0.32's chat handler reports `created_cache_tokens` 0.
    pub fn chat(counts: Usage) -> AnswerUsage {
        let mut usage = AnswerUsage::from(counts);
        if let Some(d) = &mut usage.prompt_tokens_details {
            d.created_cache_tokens = Some(0);
        }
        usage
    }
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Usage {
        Usage {
            prompt_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            completion_tokens,
            cached_tokens: None,
        }
    }

    /// The same counts reporting `cached` prompt tokens when there is a figure to report.
    pub fn with_cached(self, cached: Option<u32>) -> Usage {
        Usage {
            cached_tokens: cached,
            ..self
        }
    }
}

/// Non-streaming chat answer (fields, nulls included, in the order vLLM 0.32 writes them).
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatChoice<'a>; 1],
    pub service_tier: Option<()>,
    pub system_fingerprint: &'a str,
    pub usage: AnswerUsage,
    pub prompt_logprobs: Option<()>,
    pub prompt_token_ids: Option<()>,
    pub prompt_text: Option<()>,
    pub kv_transfer_params: Option<()>,
    pub ec_transfer_params: Option<()>,
    pub metrics: Option<()>,
}

/// The one choice of a chat answer.
#[derive(Debug, Serialize)]
pub struct ChatChoice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
    pub stop_reason: Option<&'a str>,
    pub token_ids: Option<()>,
    pub routed_experts: Option<()>,
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
    pub usage: AnswerUsage,
    pub kv_transfer_params: Option<()>,
    pub ec_transfer_params: Option<()>,
    pub metrics: Option<()>,
}

/// The one choice of a completions answer.
#[derive(Debug, Serialize)]
pub struct TextChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
    pub stop_reason: Option<&'a str>,
    pub token_ids: Option<()>,
    pub prompt_logprobs: Option<()>,
    pub prompt_token_ids: Option<()>,
    pub routed_experts: Option<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Validated, ApiError> {
        ChatRequest::parse(body.as_bytes())?.validate()
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
        assert!(chat(&format!("{{{base},\"n\":0}}")).is_err());
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
        let v = CompletionRequest::parse(br#"{"prompt":"hello"}"#)
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(v.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
        let batched = CompletionRequest::parse(br#"{"prompt":["a","b"]}"#).expect("parses");
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
            &["local"],
        )
        .expect_err("model");
        assert_eq!(err.status(), 404);
        assert!(
            check_request(
                Endpoint::Completions,
                br#"{"model":"local","prompt":"hi"}"#,
                &["local"]
            )
            .is_ok()
        );
    }

    fn param_of(endpoint: Endpoint, body: &str) -> Option<String> {
        match check_request(endpoint, body.as_bytes(), &["local"]) {
            Err(ApiError::InvalidBody { param, .. } | ApiError::BadRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn validation_errors_name_pydantic_locations() {
        // Each as the real vLLM 0.32 peer answered it.
        for (body, loc) in [
            ("{\"model\":", "body.9"),
            ("hello", "body.0"),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2} x"#,
                "body.61",
            ),
            (
                r#"  {"messages":[{"role":"user","content":"hi"}],"max_tokens":2"#,
                "body.61",
            ),
            (
                r#"{"messages" [{"role":"user","content":"hi"}],"max_tokens":2}"#,
                "body.12",
            ),
            // A character offset, not a byte offset.
            (
                r#"{"messages":[{"role":"user","content":"hé"}],"max_tokens":2,}"#,
                "body.60",
            ),
            ("[1,2]", "body"),
            ("\"x\"", "body"),
            (r#"{"model":"local"}"#, "body.messages"),
            (r#"{"messages":"hello","max_tokens":4}"#, "body.messages"),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}"#,
                "body.max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}"#,
                "body.max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":"x"}"#,
                "body.temperature",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stop":5}"#,
                "body.stop",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":2}"#,
                "body.stream",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":"x"}}"#,
                "body.stream_options.include_usage",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":"usage"}"#,
                "body.stream_options",
            ),
            // A syntax error wins over a type error met before it (pydantic decodes first).
            (
                r#"{"max_tokens":"ten","messages" [{"role":"user","content":"hi"}]}"#,
                "body.31",
            ),
        ] {
            assert_eq!(
                param_of(Endpoint::Chat, body).as_deref(),
                Some(loc),
                "{body}"
            );
        }
        let err = parse_json::<DetokenizeRequest>(br#"{"tokens":[-1]}"#).expect_err("negative");
        assert!(
            matches!(err, ApiError::InvalidBody { param: Some(p), .. } if p == "body.tokens.0")
        );
    }

    #[test]
    fn booleans_and_numbers_are_read_as_pydantic_lax_mode_does() {
        let with = |field: &str, v: &str| {
            chat(&format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"{field}":{v}}}"#
            ))
        };
        for v in [
            "true", "1", "1.0", "\"yes\"", "\"true\"", "\"1\"", "\"on\"", "\"y\"", "\"t\"",
            "\"TRUE\"", "\"Yes\"",
        ] {
            assert!(with("stream", v).expect(v).stream, "{v}");
            assert!(with("ignore_eos", v).expect(v).ignore_eos, "{v}");
        }
        for v in [
            "false",
            "0",
            "0.0",
            "null",
            "\"no\"",
            "\"false\"",
            "\"0\"",
            "\"off\"",
            "\"n\"",
            "\"f\"",
        ] {
            assert!(!with("stream", v).expect(v).stream, "{v}");
        }
        for v in ["2", "1.5", "\" true\"", "\"maybe\"", "\"\"", "[]", "{}"] {
            assert!(with("stream", v).is_err(), "{v}");
        }
        for (v, want) in [
            ("\"10\"", 10),
            ("\" 10\"", 10),
            ("\"+3\"", 3),
            ("\"10.0\"", 10),
            ("2.0", 2),
            ("true", 1),
        ] {
            assert_eq!(
                with("max_tokens", v).expect(v).max_tokens,
                Some(want),
                "{v}"
            );
        }
        for v in [
            "\"1e1\"",
            "\"0x10\"",
            "3.0000000001",
            "1e308",
            "\"ten\"",
            "[1]",
        ] {
            assert!(with("max_tokens", v).is_err(), "{v}");
        }
        assert!(with("temperature", "\"0.5\"").is_ok());
    }

    #[test]
    fn stream_options_need_a_truthy_stream() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        for opts in [
            r#"{"include_usage":true}"#,
            r#"{"include_usage":false}"#,
            "\"usage\"",
        ] {
            let err = chat(&format!("{{{msgs},\"stream_options\":{opts}}}")).expect_err(opts);
            assert!(
                matches!(&err, ApiError::BadRequest { param: Some(p), .. } if p == "stream_options"),
                "{err:?}"
            );
        }
        // Empty or null options pass; vLLM tests the raw `stream` ("false" is a truthy string).
        for ok in [
            r#""stream_options":{}"#,
            r#""stream_options":null"#,
            r#""stream":"false","stream_options":{"include_usage":true}"#,
        ] {
            let v = chat(&format!("{{{msgs},{ok}}}")).expect(ok);
            assert!(!v.stream, "{ok}");
        }
    }

    #[test]
    fn vllm_messages_for_n_messages_and_prompts() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        let bad = |body: String| match chat(&body) {
            Err(ApiError::BadRequest { message, param }) => (message, param),
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(
            bad(format!("{{{msgs},\"n\":0}}")),
            ("n must be at least 1, got 0.".to_string(), None)
        );
        assert_eq!(
            bad(format!("{{{msgs},\"n\":2,\"temperature\":0}}")),
            (
                "n must be 1 when using greedy sampling, got 2.".to_string(),
                None
            )
        );
        assert_eq!(bad(format!("{{{msgs},\"n\":2}}")).1.as_deref(), Some("n"));
        assert_eq!(bad(r#"{"messages":[]}"#.to_string()).1, None);
        let completion = |body: &str| {
            check_request(Endpoint::Completions, body.as_bytes(), &["local"]).expect_err(body)
        };
        for body in [
            r#"{"model":"local"}"#,
            r#"{"prompt":null}"#,
            r#"{"prompt":""}"#,
        ] {
            assert!(
                matches!(completion(body), ApiError::BadRequest { param: Some(p), .. } if p == "prompt"),
                "{body}"
            );
        }
        for body in [r#"{"prompt":[]}"#, r#"{"prompt":[""]}"#] {
            assert!(
                matches!(completion(body), ApiError::BadRequest { param: None, .. }),
                "{body}"
            );
        }
    }

    mod fuzz {
        //! The stable-toolchain stand-in for `fuzz/` (cargo fuzz needs nightly flags): property
        //! tests that feed arbitrary bytes, and mutated valid requests, to the same entry point.
        use super::super::*;
        use proptest::prelude::*;

        const SEED: &str = r#"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true},"stop":["x"],"temperature":0.5,"top_p":0.9,"n":1,"min_tokens":1,"seed":3}"#;

        fn never_panics(body: &[u8]) {
            for endpoint in [Endpoint::Chat, Endpoint::Completions] {
                if let Err(e) = check_request(endpoint, body, &["local"]) {
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
