//! Prompt token counting with a real BPE (tiktoken tables compiled into the binary) plus the model's
//! chat-template overhead, so that simulated prompt lengths follow the text, not a words heuristic.

use tiktoken_rs::CoreBPE;

use crate::llm::{LlmSpec, TokenizerKind};

/// The special token that stands for chat-template tokens.
const TEMPLATE_TOKEN: &str = "<|endoftext|>";

/// Counts and encodes prompt text the way a model's server would see it.
#[derive(Clone)]
pub struct PromptTokenizer {
    bpe: &'static CoreBPE,
    ratio: f64,
    template_tokens: u32,
    message_overhead: u32,
    /// The id that stands for each chat-template token in [`encode_chat`](Self::encode_chat).
    template_id: u32,
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
        // The table's `<|endoftext|>`: a special token, so it cannot be confused with text and it
        // still decodes.
        let template_id = bpe
            .encode_with_special_tokens(TEMPLATE_TOKEN)
            .first()
            .copied()
            .unwrap_or_default();
        PromptTokenizer {
            bpe,
            ratio: model.token_ratio,
            template_tokens: model.chat_template_tokens,
            message_overhead: model.message_overhead_tokens,
            template_id,
        }
    }

    /// BPE token ids of `text` (special-token strings are encoded as ordinary text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// Token ids of a chat as the server sees it: the template's tokens, then each message's
    /// content, with the markers of each further message before it. Its length is
    /// [`count_chat`](Self::count_chat) when the table is the model's own (`token_ratio` 1).
    /// servesim counts the template without rendering its text: each of its tokens is written as
    /// the table's `<|endoftext|>`.
    pub fn encode_chat<'a>(&self, contents: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
        let mut ids = vec![self.template_id; self.template_tokens as usize];
        for (i, text) in contents.into_iter().enumerate() {
            if i > 0 {
                ids.extend(std::iter::repeat_n(
                    self.template_id,
                    self.message_overhead as usize,
                ));
            }
            ids.extend(self.bpe.encode_ordinary(text));
        }
        ids
    }

    /// Text of BPE token ids, as a Hugging Face tokenizer decodes them: ids outside the table are
    /// skipped, and bytes that are not valid UTF-8 on their own (a character split across ids)
    /// become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.bpe.decode_bytes(&[id]).ok())
            .flatten()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
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

    /// Ids of raw text as many as [`count_text`](Self::count_text) counts: the BPE ids stretched
    /// (or thinned) to the model's token ratio, position `i` taking the id at `floor(i / ratio)`.
    /// Texts that share a beginning share a beginning of ids, so prefix caching sees them alike.
    pub fn encode_scaled(&self, text: &str) -> Vec<u32> {
        let ids = self.bpe.encode_ordinary(text);
        let n = (ids.len() as f64 * self.ratio).round() as usize;
        if self.ratio == 1.0 || ids.is_empty() {
            return ids;
        }
        (0..n)
            .map(|i| ids[((i as f64 / self.ratio) as usize).min(ids.len() - 1)])
            .collect()
    }

    /// The id that stands for each chat-template token.
    pub fn template_id(&self) -> u32 {
        self.template_id
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

#[cfg(test)]
mod tests {
    use crate::Profile;

    fn qwen() -> super::PromptTokenizer {
        let profile = Profile::load("a6000-qwen2.5-7b").expect("profile");
        super::PromptTokenizer::for_model(&profile.model)
    }

    #[test]
    fn a_chat_encodes_to_as_many_ids_as_it_counts() {
        let t = qwen();
        for chat in [
            vec!["Explain what a GPU scheduler does, in two sentences."],
            vec!["You are terse.", "hello", "hi", "why?"],
            vec![""],
        ] {
            let ids = t.encode_chat(chat.iter().copied());
            assert_eq!(
                ids.len() as u32,
                t.count_chat(chat.iter().copied()),
                "{chat:?}"
            );
            // The content's own ids are in there, after the template's.
            let content = t.encode(chat[0]);
            let (template, _) = t.template_overhead();
            assert_eq!(&ids[template as usize..][..content.len()], &content[..]);
        }
        // The template's ids decode (to the special token), they are not text.
        assert_eq!(t.decode(&t.encode_chat([""])[..1]), "<|endoftext|>");
    }

    #[test]
    fn decoding_is_lossy_like_a_hugging_face_tokenizer() {
        let t = qwen();
        let ids = t.encode("é ü 中 hello");
        assert_eq!(t.decode(&ids), "é ü 中 hello");
        // A character split across ids: each half alone is U+FFFD.
        let one = t.encode("中");
        if one.len() > 1 {
            assert!(t.decode(&one[..1]).contains('\u{fffd}'));
        }
        // Single ids that are one byte of a multi-byte character (cl100k 100..102 are such bytes).
        let partial = t.decode(&[100, 101, 102]);
        assert!(partial.contains('\u{fffd}'), "{partial:?}");
        // Ids outside the table are skipped.
        assert_eq!(t.decode(&[u32::MAX, 15339]), t.decode(&[15339]));
    }
}
