//! The model half of a profile: a decoder-only transformer's architecture and what follows from it.

use serde::{Deserialize, Serialize};

/// Which BPE table counts prompt tokens for this model (compiled into the binary, no download).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// OpenAI's cl100k_base: the ancestor of the Qwen2 and Llama-3 vocabularies; counts within a few %.
    Cl100kBase,
    /// OpenAI's o200k_base.
    O200kBase,
}

/// A dense decoder-only LLM (Llama/Qwen2/Mistral family: GQA attention, gated MLP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// Catalogue key, e.g. `qwen2.5-7b-instruct`.
    pub name: String,
    /// Hugging Face repository id, for reports.
    pub hf_id: String,
    /// Total parameter count including embeddings and LM head.
    pub params: u64,
    pub num_layers: u32,
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_attention_heads: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub vocab_size: u32,
    /// Whether the LM head shares the embedding matrix (then it is not a separate weight).
    pub tie_word_embeddings: bool,
    /// Bytes per weight and per KV element (2 for bf16/fp16).
    pub dtype_bytes: u32,
    /// Maximum context (max_position_embeddings), the default max_model_len.
    pub max_context: u32,
    /// Tokens the chat template adds around one user message (system prompt, role markers).
    pub chat_template_tokens: u32,
    /// Tokens each further chat message adds (role markers and separators).
    #[serde(default = "five")]
    pub message_overhead_tokens: u32,
    /// BPE table used to count prompt tokens.
    pub tokenizer: TokenizerKind,
    /// Multiplier from the BPE table's count to this model's own tokenizer's count (1.0 when they agree).
    #[serde(default = "one")]
    pub token_ratio: f64,
}

fn five() -> u32 {
    5
}

fn one() -> f64 {
    1.0
}

impl LlmSpec {
    /// Bytes of all weights held in GPU memory.
    pub fn weight_bytes(&self) -> u64 {
        self.params * u64::from(self.dtype_bytes)
    }

    /// Parameters of one embedding-sized matrix (vocab × hidden).
    pub fn embedding_params(&self) -> u64 {
        u64::from(self.vocab_size) * u64::from(self.hidden_size)
    }

    /// Parameters of the LM head that a sampling step multiplies with (shared or not, it is read).
    pub fn lm_head_params(&self) -> u64 {
        self.embedding_params()
    }

    /// Parameters in the transformer layers (everything but the embedding table and a separate LM head).
    pub fn layer_params(&self) -> u64 {
        let tables = if self.tie_word_embeddings { 1 } else { 2 };
        self.params.saturating_sub(tables * self.embedding_params())
    }

    /// Weight bytes streamed from memory by one forward pass: every layer, plus the LM head.
    /// The embedding lookup touches only the rows it needs, so the table itself is not streamed.
    pub fn streamed_weight_bytes(&self) -> u64 {
        (self.layer_params() + self.lm_head_params()) * u64::from(self.dtype_bytes)
    }

    /// KV-cache bytes per token: K and V, for every layer and KV head.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.num_layers)
            * u64::from(self.num_kv_heads)
            * u64::from(self.head_dim)
            * u64::from(self.dtype_bytes)
    }

    /// Activation bytes one token moves through one forward pass outside the attention kernel: each
    /// GEMM's input and output, the norms, rotary, SiLU·up and residual adds, read and written once
    /// (14 hidden-sized vectors, the Q/K/V outputs and their rotary pass, the attention output, and
    /// six intermediate-sized ones per layer).
    pub fn activation_bytes_per_token(&self) -> u64 {
        let h = u64::from(self.hidden_size);
        let i = u64::from(self.intermediate_size);
        let q = u64::from(self.num_attention_heads) * u64::from(self.head_dim);
        let kv = u64::from(self.num_kv_heads) * u64::from(self.head_dim);
        let per_layer = 14 * h + (q + 2 * kv) + 2 * (q + kv) + q + 6 * i;
        u64::from(self.num_layers) * per_layer * u64::from(self.dtype_bytes)
    }

    /// Attention FLOPs for one query token against one key position, over all layers (QKᵀ and PV).
    pub fn attention_flops_per_pair(&self) -> f64 {
        4.0 * f64::from(self.num_layers)
            * f64::from(self.num_attention_heads)
            * f64::from(self.head_dim)
    }
}
