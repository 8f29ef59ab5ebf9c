//! Prompt token counting with a real BPE (tiktoken tables compiled into the binary) plus the model's
//! chat-template overhead, so that simulated prompt lengths follow the text, not a words heuristic.

use tiktoken_rs::CoreBPE;

use crate::llm::{LlmSpec, TokenizerKind};

/// Counts and encodes prompt text the way a model's server would see it.
#[derive(Clone)]
pub struct PromptTokenizer {
    bpe: &'static CoreBPE,
    ratio: f64,
    template_tokens: u32,
    message_overhead: u32,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("ratio", &self.ratio)
            .field("template_tokens", &self.template_tokens)
            .finish()
    }
}

impl PromptTokenizer {
    /// The tokenizer of `model` (the BPE table is parsed once per process).
    pub fn for_model(model: &LlmSpec) -> PromptTokenizer {
        let bpe = match model.tokenizer {
            TokenizerKind::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            TokenizerKind::O200kBase => tiktoken_rs::o200k_base_singleton(),
        };
        PromptTokenizer {
            bpe,
            ratio: model.token_ratio,
            template_tokens: model.chat_template_tokens,
            message_overhead: model.message_overhead_tokens,
        }
    }

    /// BPE token ids of `text` (special-token strings are encoded as ordinary text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// Text of BPE token ids; invalid ids or split UTF-8 sequences give an error message.
    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        self.bpe.decode(ids).map_err(|e| e.to_string())
    }

    /// Template tokens around the first chat message, and tokens each further message adds.
    pub fn template_overhead(&self) -> (u32, u32) {
        (self.template_tokens, self.message_overhead)
    }

    /// Tokens of raw text (a completions prompt), scaled to the model's own tokenizer.
    pub fn count_text(&self, text: &str) -> u32 {
        let n = self.bpe.encode_ordinary(text).len() as f64;
        (n * self.ratio).round() as u32
    }

    /// Tokens of a chat: each message's content, the template around the first message, and the
    /// per-message markers of the others.
    pub fn count_chat<'a>(&self, contents: impl IntoIterator<Item = &'a str>) -> u32 {
        let mut total = self.template_tokens;
        for (i, text) in contents.into_iter().enumerate() {
            if i > 0 {
                total += self.message_overhead;
            }
            total += self.count_text(text);
        }
        total
    }
}
