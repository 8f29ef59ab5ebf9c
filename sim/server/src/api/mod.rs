//! The OpenAI-compatible request and response bodies, and the validation that turns a request into
//! what the engine needs. Unknown fields are accepted and ignored, as vLLM does for most of them.
//!
//! `body` reads a request's bytes under the server's limits; `parse` turns bytes into a request
//! type, with pydantic's error locations, and `lax` coerces scalar fields as pydantic's lax mode
//! does; `request` holds the request bodies, `validate` the checks that turn one into a
//! [`Validated`], and `response` the non-streaming answers and their usage.

mod body;
mod lax;
mod parse;
mod request;
mod response;
mod validate;

pub use body::{ApiBody, ApiJson, check_content_type};
pub use parse::parse_json;
pub use request::{
    ChatMessage, ChatRequest, CompletionRequest, Content, ContentPart, DetokenizeRequest, Endpoint,
    PromptInput, Sampling, Stop, StreamOptions, TokenizeRequest,
};
pub use response::{
    AnswerUsage, AssistantMessage, ChatChoice, ChatCompletion, PromptTokensDetails, TextChoice,
    TextCompletion, Usage,
};
pub use validate::{
    COMPLETIONS_DEFAULT_MAX_TOKENS, ROLES, Validated, chat_contents, check_model, check_request,
};

/// At most `max` bytes of `s`, cut at a character boundary (for echoing input in messages).
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
