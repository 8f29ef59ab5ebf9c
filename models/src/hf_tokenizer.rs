//! The BPE table servesim counts with, written as a Hugging Face tokenizer (`tokenizer.json` and
//! `tokenizer_config.json`), so that a client that needs a Hugging Face tokenizer (inference-perf,
//! GuideLLM, AIPerf) counts the very tokens the server counts, offline.
//!
//! The conversion is the one transformers applies to a tiktoken file
//! (`TikTokenConverter` in transformers 5.13's `convert_slow_tokenizer.py`): the vocabulary is each
//! rank's bytes through GPT-2's byte-to-unicode map, the merges are every split of a token into two
//! tokens of the table, ordered by the merged token's rank, and the model takes a whole pre-token
//! when it is in the vocabulary (`ignore_merges`), as tiktoken does.

use std::collections::HashMap;

use serde_json::{Value, json};
use tiktoken_rs::CoreBPE;

use crate::llm::{LlmSpec, TokenizerKind};

/// cl100k's pre-tokenizer pattern as transformers writes it for tiktoken tables (the
/// `TikTokenConverter` default, Llama 3's), in the Oniguruma dialect `tokenizers` runs.
const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// o200k's pattern (tiktoken-rs 0.12 `O200K_BASE_PAT_STR`, which `tokenizers` also accepts).
const O200K_PATTERN: &str = tiktoken_rs::O200K_BASE_PAT_STR;

/// ChatML, the template of Qwen2.5's tokenizer_config.json (what the chat API's clients render).
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The two files of a Hugging Face tokenizer directory.
#[derive(Debug, Clone)]
pub struct HfTokenizer {
    /// `tokenizer.json`: the fast tokenizer (model, pre-tokenizer, decoder, special tokens).
    pub tokenizer: Value,
    /// `tokenizer_config.json`: the class, the special tokens' roles and the chat template.
    pub config: Value,
}

/// GPT-2's reversible map from bytes to printable characters (`bytes_to_unicode`): printable
/// Latin-1 bytes stand for themselves, the others for U+0100 onwards in byte order.
fn byte_to_char() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut map = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    map
}

/// A rank table read back out of tiktoken-rs: what a `.tiktoken` file and its specials hold.
#[derive(Debug)]
struct Table {
    /// Each ordinary token's bytes and rank, by rank.
    ranks: Vec<(Vec<u8>, u32)>,
    /// Each special token and its id, by id.
    specials: Vec<(String, u32)>,
}

/// One merge: the merged token's rank first, so that sorting orders merges as transformers does
/// (by that rank, then by the two parts' ranks).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Merge<'a> {
    rank: u32,
    left_rank: u32,
    right_rank: u32,
    left: &'a [u8],
    right: &'a [u8],
}

/// Ranks and special tokens of a table: every id below the first special one that decodes,
/// then the specials by id.
fn table(bpe: &CoreBPE) -> Table {
    let mut specials: Vec<(String, u32)> = bpe
        .special_tokens()
        .into_iter()
        .filter_map(|s| Some((s.to_string(), *bpe.encode_with_special_tokens(s).first()?)))
        .collect();
    specials.sort_by_key(|&(_, id)| id);
    let first_special = specials.first().map_or(u32::MAX, |&(_, id)| id);
    let ranks = (0..first_special)
        .map_while(|rank| Some((bpe.decode_bytes(&[rank]).ok()?, rank)))
        .collect();
    Table { ranks, specials }
}

/// Vocabulary and merges of a rank table, as transformers' `TikTokenConverter` derives them.
fn vocab_and_merges(ranks: &[(Vec<u8>, u32)]) -> (serde_json::Map<String, Value>, Vec<Value>) {
    let chars = byte_to_char();
    let text = |bytes: &[u8]| bytes.iter().map(|&b| chars[b as usize]).collect::<String>();
    let by_bytes: HashMap<&[u8], u32> = ranks.iter().map(|(b, r)| (b.as_slice(), *r)).collect();
    let mut vocab = serde_json::Map::new();
    let mut merges: Vec<Merge<'_>> = Vec::new();
    for (bytes, rank) in ranks {
        vocab.insert(text(bytes), json!(rank));
        for i in 1..bytes.len() {
            let (l, r) = bytes.split_at(i);
            if let (Some(&lr), Some(&rr)) = (by_bytes.get(l), by_bytes.get(r)) {
                merges.push(Merge {
                    rank: *rank,
                    left_rank: lr,
                    right_rank: rr,
                    left: l,
                    right: r,
                });
            }
        }
    }
    merges.sort_unstable();
    let merges = merges
        .into_iter()
        .map(|m| json!([text(m.left), text(m.right)]))
        .collect();
    (vocab, merges)
}

/// The Hugging Face tokenizer of `model`'s BPE table (the table servesim counts prompts with).
/// `max_model_len` becomes `model_max_length`, where clients truncate what they count.
pub fn hf_tokenizer(model: &LlmSpec, max_model_len: u32) -> HfTokenizer {
    let (bpe, pattern) = match model.tokenizer {
        TokenizerKind::Cl100kBase => (tiktoken_rs::cl100k_base_singleton(), CL100K_PATTERN),
        TokenizerKind::O200kBase => (tiktoken_rs::o200k_base_singleton(), O200K_PATTERN),
    };
    let Table { ranks, specials } = table(bpe);
    let (vocab, merges) = vocab_and_merges(&ranks);
    // ChatML's markers after the table's own specials, so the chat template renders to known tokens.
    let first_free = specials
        .last()
        .map_or(ranks.len() as u32, |&(_, id)| id + 1);
    let mut added: Vec<(String, u32)> = specials.clone();
    added.extend(
        ["<|im_start|>", "<|im_end|>"]
            .into_iter()
            .zip(first_free..)
            .map(|(marker, id)| (marker.to_string(), id)),
    );
    let added_tokens: Vec<Value> = added
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": true, "vocab": vocab, "merges": merges},
    });
    let end = specials
        .iter()
        .find(|(s, _)| s == "<|endoftext|>")
        .map(|(s, _)| s.clone());
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_model_len,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": end,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHATML_TEMPLATE,
        "servesim_model": model.hf_id,
    });
    HfTokenizer { tokenizer, config }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Profile;

    #[test]
    fn the_byte_map_is_gpt2s() {
        let map = byte_to_char();
        assert_eq!(map[b'a' as usize], 'a');
        // A space is U+0120 ("Ġ"), a newline U+010A ("Ċ"), as in every GPT-2-style vocabulary.
        assert_eq!(map[b' ' as usize], '\u{120}');
        assert_eq!(map[b'\n' as usize], '\u{10a}');
        let distinct: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn cl100k_converts_to_its_whole_table_with_merges_for_every_long_token() {
        let profile = Profile::load(crate::DEFAULT_PROFILE).expect("profile");
        let hf = hf_tokenizer(&profile.model, 32768);
        let model = &hf.tokenizer["model"];
        let vocab = model["vocab"].as_object().expect("vocab");
        // cl100k: ranks 0..=100255 (tiktoken's cl100k_base.tiktoken), specials from 100257.
        assert_eq!(vocab.len(), 100_256);
        assert_eq!(vocab["Ġhello"], json!(24748));
        let merges = model["merges"].as_array().expect("merges");
        assert!(merges.len() >= 100_000, "{}", merges.len());
        // The first merge builds rank 256, the table's first two-byte token ("  ").
        assert_eq!(merges[0], json!(["Ġ", "Ġ"]));
        let added = hf.tokenizer["added_tokens"].as_array().expect("added");
        assert_eq!(added[0]["content"], "<|endoftext|>");
        assert_eq!(added[0]["id"], 100_257);
    }
}
