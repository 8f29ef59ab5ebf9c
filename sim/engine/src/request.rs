//! A request inside the engine: what it asks for, how far it has got, and the KV blocks it holds.

use std::sync::Arc;

use serde::Serialize;

use crate::kv_cache::{BlockHash, KvLease, extend_hashes, hash_made_up_block};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineRequest {
    pub prompt_tokens: u32,
    /// The prompt's token ids (`prompt_tokens` of them), which prefix caching hashes. Without them
    /// the prompt is taken to share no block with any other.
    pub prompt_ids: Option<Arc<[u32]>>,
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
    /// The prompt's token ids, when known (see [`EngineRequest::prompt_ids`]).
    pub prompt_ids: Option<Arc<[u32]>>,
    /// Seeds the made-up ids of tokens that have none (generated tokens, prompts known only by
    /// length): unique to the request, so they match no other request's.
    pub salt: u64,
    /// Hashes of the request's full blocks of known tokens (kept only with prefix caching on).
    pub block_hashes: Vec<BlockHash>,
    /// Prompt tokens found in the prefix cache when the request was first admitted.
    pub cached_tokens: Option<u32>,
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

    /// The id of the token at `pos`: the prompt's own, or a made-up one seeded by the request.
    pub fn token_at(&self, pos: usize) -> u32 {
        if let Some(ids) = &self.prompt_ids
            && pos < ids.len()
        {
            return ids[pos];
        }
        made_up_token(self.salt, pos as u64)
    }

    /// Extend [`block_hashes`](Self::block_hashes) over the blocks another request could share:
    /// the full blocks of the prompt's own token ids.
    ///
    /// A block holding a made-up token (a generated one, or any of a prompt known only by its
    /// length) can match no other request's, since made-up ids are seeded by the request: such
    /// blocks are hashed only when the request is preempted ([`hash_all`](Self::hash_all)), the
    /// one time they can be found again, by the request itself. Every generated token falls in
    /// such a block, so this keeps the per-token cost of prefix caching near zero.
    pub fn update_hashes(&mut self, block_size: u32, scratch: &mut Vec<u32>) {
        let bs = block_size.max(1) as usize;
        let known_ids = self.prompt_ids.as_ref().map_or(0, |ids| ids.len());
        let shareable = (known_ids / bs).min(self.known_tokens() as usize / bs);
        if self.block_hashes.len() >= shareable {
            return;
        }
        let mut hashes = std::mem::take(&mut self.block_hashes);
        extend_hashes(
            &mut hashes,
            block_size,
            shareable,
            |p| self.token_at(p),
            scratch,
        );
        self.block_hashes = hashes;
    }

    /// Extend [`block_hashes`](Self::block_hashes) over every full block of the known tokens,
    /// made-up ones included (from the salt and the place: unique to the request, like the tokens
    /// they stand for): what a preempted request leaves in the cache for its own return.
    pub fn hash_all(&mut self, block_size: u32, scratch: &mut Vec<u32>) {
        let bs = block_size.max(1) as usize;
        let full = self.known_tokens() as usize / bs;
        let known_ids = self.prompt_ids.as_ref().map_or(0, |ids| ids.len());
        // Blocks that hold at least one of the prompt's own ids are hashed token by token.
        let with_ids = known_ids.div_ceil(bs).min(full);
        if self.block_hashes.len() < with_ids {
            let mut hashes = std::mem::take(&mut self.block_hashes);
            extend_hashes(
                &mut hashes,
                block_size,
                with_ids,
                |p| self.token_at(p),
                scratch,
            );
            self.block_hashes = hashes;
        }
        while self.block_hashes.len() < full {
            let b = self.block_hashes.len() as u64;
            let parent = self.block_hashes.last().copied();
            self.block_hashes
                .push(hash_made_up_block(parent, self.salt, b));
        }
    }
}

/// A token id that stands for a token nobody gave an id to (splitmix64 of the salt and position).
fn made_up_token(salt: u64, pos: u64) -> u32 {
    let mut z = salt ^ pos.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}
