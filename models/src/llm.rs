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

/// A decoder-only LLM of the Llama/Qwen2/Mistral family (GQA attention, gated MLP), dense or with a
/// mixture-of-experts MLP (Mixtral, Qwen3-MoE: every layer routes each token to `num_experts_per_tok`
/// of `num_experts` gated-MLP experts).
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
    /// Routed experts per layer (config.json `num_local_experts` / `num_experts`); 0 for a dense model.
    #[serde(default)]
    pub num_experts: u32,
    /// Experts each token is routed to (config.json `num_experts_per_tok`).
    #[serde(default)]
    pub num_experts_per_tok: u32,
    /// Intermediate size of one expert's gated MLP (config.json `moe_intermediate_size`; Mixtral's
    /// experts use `intermediate_size`).
    #[serde(default)]
    pub moe_intermediate_size: u32,
}

/// One GPU's share of a model under tensor parallelism, in parameters and bytes (f64: the shares are
/// exact integers below 2⁵³, so TP = 1 reproduces the whole model's figures exactly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    /// Transformer-layer parameters outside the experts (attention, norms, router, a dense MLP),
    /// including K/V projections replicated where TP exceeds the KV heads.
    pub dense_params: f64,
    /// Parameters of one expert over all layers (zero for a dense model).
    pub expert_params: f64,
    /// LM-head parameters (the vocabulary is split across GPUs).
    pub lm_head_params: f64,
    /// Embedding-table parameters held (vocab-parallel; zero extra when tied to the LM head).
    pub embedding_params: f64,
    /// KV heads each GPU holds (replicated when TP exceeds the model's KV heads, as vLLM does).
    pub kv_heads: u32,
    /// KV-cache elements per token on this GPU (K and V over all layers), to be multiplied by the
    /// KV dtype's bytes.
    pub kv_elements_per_token: f64,
    /// Activation bytes per token through the layers outside attention (see
    /// [`LlmSpec::activation_bytes_per_token`]); hidden-sized vectors are whole on every GPU.
    pub activation_bytes_per_token: f64,
    /// Attention FLOPs per (query, key) pair on this GPU.
    pub attention_flops_per_pair: f64,
}

/// Expected distinct experts of `experts` that `tokens` tokens touch when each is routed to `top_k`
/// of them uniformly at random: E·(1 − (1 − k/E)^B); zero for a dense model or no tokens.
pub fn expected_experts(experts: u32, top_k: u32, tokens: f64) -> f64 {
    if experts == 0 || tokens <= 0.0 {
        return 0.0;
    }
    let e = f64::from(experts);
    let k = f64::from(top_k).min(e);
    e * (1.0 - (1.0 - k / e).powf(tokens))
}

fn five() -> u32 {
    5
}

fn one() -> f64 {
    1.0
}

impl LlmSpec {
    /// Whether the MLP is a mixture of experts.
    pub fn is_moe(&self) -> bool {
        self.num_experts > 0
    }

    /// Parameters of one expert in one layer (gate, up and down projections).
    pub fn expert_layer_params(&self) -> u64 {
        3 * u64::from(self.hidden_size) * u64::from(self.moe_intermediate_size)
    }

    /// Parameters of every expert in every layer (zero for a dense model).
    pub fn expert_params(&self) -> u64 {
        u64::from(self.num_layers) * u64::from(self.num_experts) * self.expert_layer_params()
    }

    /// Parameters of the model a token actually passes through (all of a dense model's; for a MoE,
    /// the top-k experts instead of all of them), embeddings included.
    pub fn active_params(&self) -> u64 {
        let routed = u64::from(self.num_layers)
            * u64::from(self.num_experts_per_tok)
            * self.expert_layer_params();
        self.params.saturating_sub(self.expert_params()) + routed
    }

    /// Width of the MLP a token passes through: the intermediate size, or top-k expert widths.
    pub fn active_ffn_width(&self) -> u64 {
        if self.is_moe() {
            u64::from(self.num_experts_per_tok) * u64::from(self.moe_intermediate_size)
        } else {
            u64::from(self.intermediate_size)
        }
    }

    /// Expected distinct experts per layer that `tokens` tokens touch when each picks
    /// `num_experts_per_tok` of `num_experts` (uniform routing): E·(1 − (1 − k/E)^B).
    pub fn expected_experts(&self, tokens: f64) -> f64 {
        expected_experts(self.num_experts, self.num_experts_per_tok, tokens)
    }

    /// KV heads each of `tp` GPUs holds: an equal share, or one replicated head when TP exceeds them
    /// (vLLM's `QKVParallelLinear`).
    pub fn kv_heads_per_gpu(&self, tp: u32) -> u32 {
        (self.num_kv_heads / tp.max(1)).max(1)
    }

    /// One GPU's share of the model under `tp`-way tensor parallelism.
    pub fn shard(&self, tp: u32) -> Shard {
        let tp = tp.max(1);
        let t = f64::from(tp);
        let kv_proj = 2
            * u64::from(self.num_layers)
            * u64::from(self.hidden_size)
            * u64::from(self.num_kv_heads)
            * u64::from(self.head_dim);
        let kv_heads = self.kv_heads_per_gpu(tp);
        let kv_proj_here =
            kv_proj as f64 * f64::from(kv_heads) * t / f64::from(self.num_kv_heads.max(1));
        let split = self
            .layer_params()
            .saturating_sub(self.expert_params())
            .saturating_sub(kv_proj);
        let expert_one = u64::from(self.num_layers)
            * self.expert_layer_params()
            * u64::from(self.num_experts.min(1));
        let tables = if self.tie_word_embeddings { 0 } else { 1 };
        Shard {
            dense_params: (split as f64 + kv_proj_here) / t,
            expert_params: expert_one as f64 / t,
            lm_head_params: self.lm_head_params() as f64 / t,
            embedding_params: (tables * self.embedding_params()) as f64 / t,
            kv_heads,
            kv_elements_per_token: 2.0
                * f64::from(self.num_layers)
                * f64::from(kv_heads)
                * f64::from(self.head_dim),
            activation_bytes_per_token: self.activation_bytes(tp, kv_heads) as f64,
            attention_flops_per_pair: self.attention_flops_per_pair() / t,
        }
    }

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
    /// For a MoE the intermediate vectors are the top-k experts' together.
    pub fn activation_bytes_per_token(&self) -> u64 {
        self.activation_bytes(1, self.num_kv_heads)
    }

    /// [`Self::activation_bytes_per_token`] on one of `tp` GPUs holding `kv_heads` KV heads: the
    /// hidden-sized vectors are whole on every GPU, the head- and intermediate-sized ones split.
    fn activation_bytes(&self, tp: u32, kv_heads: u32) -> u64 {
        let tp = u64::from(tp.max(1));
        let h = u64::from(self.hidden_size);
        let i = self.active_ffn_width() / tp;
        let q = u64::from(self.num_attention_heads) * u64::from(self.head_dim) / tp;
        let kv = u64::from(kv_heads) * u64::from(self.head_dim);
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
