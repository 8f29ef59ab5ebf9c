//! The non-streaming answers' bodies and the token counts (`usage`) every answer reports.

use serde::Serialize;

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
