//! The request bodies of the OpenAI API and vLLM's extensions, as parsed (before validation).

use serde::Deserialize;

use super::{lax, parse_json};
use crate::errors::ApiError;

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

/// Which generation endpoint a request came to: its body's shape and its answer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}
