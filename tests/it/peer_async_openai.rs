//! The `async-openai` crate (crates.io, unmodified) with the same code against any vLLM-compatible server: the real
//! vLLM peer and `servesim serve`. `tests/peers/run.sh` runs it against both:
//!
//!   SERVESIM_PEER_URL=http://127.0.0.1:8000/v1 cargo test --test it peer_async_openai -- --ignored
//!
//! Ignored by default, so a plain `cargo test` stays green without a server; run with `--ignored` but without
//! `SERVESIM_PEER_URL` it says it skipped and passes. The server must serve the model `local`.
//!
//! Checks only what any vLLM-compatible server guarantees (as `tests/peers/openai_same_code.py` does for the Python
//! package): chat and completions, streaming and not; a chat stream opens with the assistant role, one event may
//! carry several tokens (real vLLM under load) or none, exactly one finish reason, the usage event last; tokens are
//! counted from usage, not from events. The prompt asks for an endless answer (the fake server's length model never
//! ends it; the peer's tiny model can never sample its end-of-sequence tokens), so `max_tokens` decides the count
//! without the non-standard `ignore_eos`.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions, CompletionFinishReason,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, FinishReason, Prompt, Role,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use futures_util::StreamExt;

const ENV: &str = "SERVESIM_PEER_URL";
const PROMPT: &str =
    "Count upward from 1, writing one number per line. Keep going and do not stop.";

fn chat_request(model: &str, max_tokens: u32) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content(PROMPT)
            .build()
            .expect("a message")
            .into()])
        .max_tokens(max_tokens)
        .build()
        .expect("a chat request")
}

fn with_usage() -> Option<ChatCompletionStreamOptions> {
    Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    })
}

#[tokio::test]
#[ignore = "needs a server: SERVESIM_PEER_URL=http://HOST:PORT/v1 (tests/peers/run.sh sets it)"]
async fn same_code_against_a_peer() {
    let Ok(base) = std::env::var(ENV) else {
        eprintln!("skipped: {ENV} is not set (e.g. {ENV}=http://127.0.0.1:8000/v1)");
        return;
    };
    let base = base.trim_end_matches('/').to_string();
    assert!(
        base.starts_with("http://") && base.ends_with("/v1"),
        "{ENV} must look like http://HOST:PORT/v1, got {base:?}"
    );
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(&base)
            .with_api_key("EMPTY"),
    );

    // Chat, not streamed.
    let answer = client
        .chat()
        .create(chat_request("local", 6))
        .await
        .expect("chat answer");
    assert_eq!(answer.choices.len(), 1);
    let choice = &answer.choices[0];
    assert_eq!(choice.message.role, Role::Assistant);
    assert!(choice.message.content.is_some(), "chat content present");
    assert_eq!(choice.finish_reason, Some(FinishReason::Length));
    let usage = answer.usage.expect("chat usage");
    assert_eq!(usage.completion_tokens, 6, "{usage:?}");
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    // Chat, streamed, with the usage event.
    let mut request = chat_request("local", 8);
    request.stream_options = with_usage();
    let mut stream = client
        .chat()
        .create_stream(request)
        .await
        .expect("a chat stream");
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("a parsed chat chunk"));
    }
    let first = chunks.first().expect("at least one chunk");
    assert_eq!(
        first.choices.first().and_then(|c| c.delta.role),
        Some(Role::Assistant),
        "the stream opens with the assistant role"
    );
    let finishes: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.choices.iter().filter_map(|x| x.finish_reason))
        .collect();
    assert_eq!(finishes, [FinishReason::Length], "exactly one finish");
    let body: Vec<_> = chunks[1..]
        .iter()
        .filter(|c| !c.choices.is_empty())
        .collect();
    assert!(
        body.iter().all(|c| c.choices[0].delta.role.is_none()),
        "the role only in the first event"
    );
    assert!(
        (1..=8).contains(&body.len()),
        "1..8 content events for 8 tokens: {}",
        body.len()
    );
    assert_eq!(
        body.last().and_then(|c| c.choices[0].finish_reason),
        Some(FinishReason::Length),
        "the finish on the last choice event"
    );
    let last = chunks.last().expect("a last chunk");
    assert!(last.choices.is_empty(), "the usage event comes last");
    assert_eq!(
        last.usage.as_ref().map(|u| u.completion_tokens),
        Some(8),
        "8 tokens by usage"
    );
    let events = body.len();

    // Completions, not streamed and streamed.
    let request = CreateCompletionRequestArgs::default()
        .model("local")
        .prompt(Prompt::String(PROMPT.into()))
        .max_tokens(4u32)
        .build()
        .expect("a completion request");
    let answer = client
        .completions()
        .create(request.clone())
        .await
        .expect("completion");
    assert_eq!(
        answer.choices.first().and_then(|c| c.finish_reason),
        Some(CompletionFinishReason::Length)
    );
    assert_eq!(answer.usage.as_ref().map(|u| u.completion_tokens), Some(4));
    let mut streaming = request;
    streaming.max_tokens = Some(5);
    streaming.stream_options = with_usage();
    let mut stream = client
        .completions()
        .create_stream(streaming)
        .await
        .expect("a completion stream");
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("a parsed completion chunk"));
    }
    let finishes: Vec<_> = chunks
        .iter()
        .flat_map(|c| c.choices.iter().filter_map(|x| x.finish_reason))
        .collect();
    assert_eq!(finishes, [CompletionFinishReason::Length]);
    assert_eq!(
        chunks
            .last()
            .and_then(|c| c.usage.as_ref())
            .map(|u| u.completion_tokens),
        Some(5),
        "completion usage event last, 5 tokens"
    );

    // The server's error body reaches the caller.
    let err = client
        .chat()
        .create(chat_request("nope", 2))
        .await
        .expect_err("an unknown model fails");
    assert!(err.to_string().contains("does not exist"), "{err}");

    eprintln!("async-openai same code: {base} OK ({events} content events for 8 chat tokens)");
}
