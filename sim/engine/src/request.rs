//! A request inside the engine: what it asks for, how far it has got, and the KV blocks it holds.

use serde::Serialize;

use crate::kv_cache::KvLease;

/// Engine-wide request identifier, assigned in arrival order.
pub type RequestId = u64;

/// Why a request stopped generating, as OpenAI's `finish_reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (EOS or a stop string).
    Stop,
    /// `max_tokens` or the context length cut it.
    Length,
    /// The client went away or the request was cancelled.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// What the engine is asked to do; the frontend has already tokenised the prompt and decided the
/// answer's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineRequest {
    pub prompt_tokens: u32,
    /// Upper bound on generated tokens (the request's `max_tokens`).
    pub max_tokens: u32,
    /// Tokens the model will generate before it ends by itself (`u32::MAX`: never).
    pub natural_tokens: u32,
}

impl EngineRequest {
    /// Tokens that will be generated, and why generation ends.
    pub fn outcome(&self) -> (u32, FinishReason) {
        if self.natural_tokens < self.max_tokens {
            (self.natural_tokens.max(1), FinishReason::Stop)
        } else {
            (self.max_tokens, FinishReason::Length)
        }
    }
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Running,
}

/// A request's state in the scheduler.
#[derive(Debug)]
pub struct Request {
    pub id: RequestId,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    /// Tokens this request will generate in total.
    pub target_tokens: u32,
    pub finish: FinishReason,
    /// Tokens generated so far (they survive preemption; their KV does not).
    pub generated: u32,
    /// Tokens whose KV is in the cache.
    pub computed: u32,
    pub lease: KvLease,
    pub phase: Phase,
    pub arrival: f64,
    pub first_scheduled: Option<f64>,
    pub first_token: Option<f64>,
    pub preemptions: u32,
}

impl Request {
    /// Tokens the model knows of: the prompt and what it has generated.
    pub fn known_tokens(&self) -> u32 {
        self.prompt_tokens + self.generated
    }

    /// Tokens still to compute before the next sample.
    pub fn pending_tokens(&self) -> u32 {
        self.known_tokens() - self.computed
    }

    /// Whether the next computed token is a decode (the prompt and all outputs are in the cache).
    pub fn is_decoding(&self) -> bool {
        self.generated > 0 && self.pending_tokens() == 1
    }
}
