//! The text of simulated answers: one piece of text per token, deterministic for a seed, either
//! filler words or the prompt echoed back. The simulator decides how many tokens there are; this only
//! decides what they say.

use std::sync::Arc;

/// What answers contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextMode {
    /// Seeded filler words ("lorem ipsum"-like), one word per token.
    #[default]
    Lorem,
    /// The (last) prompt message repeated word by word.
    Echo,
}

impl std::str::FromStr for TextMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lorem" => Ok(TextMode::Lorem),
            "echo" => Ok(TextMode::Echo),
            _ => Err(format!("unknown text mode '{s}' (lorem, echo)")),
        }
    }
}

impl std::fmt::Display for TextMode {
    /// The name `--text` takes, so logs say "echo" as the user typed it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TextMode::Lorem => "lorem",
            TextMode::Echo => "echo",
        })
    }
}

/// The filler words. Each is exactly one token of the cl100k table servesim counts with (a unit test
/// checks it), so a client that counts streamed text with that tokenizer counts one token a chunk, as
/// many as the server emitted: inference-perf's ITL is per counted token (reportgen/base.py, v0.7.0).
const WORDS: &[&str] = &[
    " lorem",
    " ipsum",
    " dolor",
    " sit",
    " amet",
    " consectetur",
    " adipiscing",
    " elit",
    " sed",
    " do",
    " eiusmod",
    " tempor",
    " incididunt",
    " ut",
    " labore",
    " et",
    " dolore",
    " magna",
    " aliqua",
    " enim",
    " ad",
    " minim",
    " veniam",
    " quis",
    " vitae",
    " exercitation",
    " justo",
    " eros",
    " nisi",
    " quam",
    " ex",
    " ea",
    " commodo",
    " consequat",
    " ante",
    " aute",
    " diam",
    " in",
    " odio",
    " libero",
    " velit",
    " esse",
    " massa",
    " porta",
    " nulla",
    " leo",
    " mi",
    " sint",
    " sem",
    " integer",
    " non",
    " vel",
    " sunt",
    " culpa",
    " qui",
    " nec",
    " ac",
    " eu",
    " anim",
    " id",
    " est",
    " nam",
    ".",
    ",",
];

/// SplitMix64: a tiny, well-mixed hash so that token `i` of a seeded answer needs no RNG state.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The text source of one answer.
#[derive(Debug, Clone)]
pub struct AnswerText {
    mode: TextMode,
    seed: u64,
    words: Vec<(usize, usize)>,
    source: Arc<str>,
    /// The first word with a space before it, for when the echo wraps round to the start of a
    /// prompt that neither ends nor begins with whitespace (else the two ends would run together).
    rewrap: Option<String>,
}

impl AnswerText {
    /// Text for one request: `seed` fixes the filler, `source` is what `echo` repeats.
    pub fn new(mode: TextMode, seed: u64, source: Arc<str>) -> AnswerText {
        let mut words = Vec::new();
        if mode == TextMode::Echo {
            // Words with the whitespace before them, so the echo reads like the prompt.
            let mut start = 0;
            let bytes = source.as_bytes();
            for (i, c) in source.char_indices() {
                if i > start && c.is_whitespace() && !bytes[i - 1].is_ascii_whitespace() {
                    words.push((start, i));
                    start = i;
                }
            }
            if start < source.len() {
                words.push((start, source.len()));
            }
        }
        let rewrap = match (words.first(), source.chars().last()) {
            (Some(&(a, b)), Some(last))
                if !last.is_whitespace() && !source[a..b].starts_with(char::is_whitespace) =>
            {
                Some(format!(" {}", &source[a..b]))
            }
            _ => None,
        };
        AnswerText {
            mode,
            seed,
            words,
            source,
            rewrap,
        }
    }

    /// The text of token `index` (1-based).
    pub fn token(&self, index: u32) -> &str {
        if self.mode == TextMode::Echo && !self.words.is_empty() {
            let at = (index as usize).saturating_sub(1) % self.words.len();
            if let (0, true, Some(w)) = (at, index > 1, &self.rewrap) {
                return w;
            }
            let (a, b) = self.words[at];
            return &self.source[a..b];
        }
        let h = splitmix(self.seed ^ u64::from(index).wrapping_mul(0x2545_f491_4f6c_dd1d));
        WORDS[(h % WORDS.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filler_word_is_one_token() {
        let profile =
            servesim_models::Profile::load(servesim_models::DEFAULT_PROFILE).expect("profile");
        let tokenizer = servesim_models::PromptTokenizer::for_model(&profile.model);
        for word in WORDS {
            assert_eq!(tokenizer.encode(word).len(), 1, "{word:?}");
        }
    }

    #[test]
    fn modes_print_as_the_flag_spells_them() {
        for mode in [TextMode::Lorem, TextMode::Echo] {
            assert_eq!(mode.to_string().parse::<TextMode>(), Ok(mode));
        }
        assert_eq!(TextMode::Echo.to_string(), "echo");
    }

    #[test]
    fn lorem_is_seeded() {
        let a = AnswerText::new(TextMode::Lorem, 7, Arc::from(""));
        let b = AnswerText::new(TextMode::Lorem, 7, Arc::from(""));
        let c = AnswerText::new(TextMode::Lorem, 8, Arc::from(""));
        let text = |t: &AnswerText| (1..=20).map(|i| t.token(i)).collect::<String>();
        assert_eq!(text(&a), text(&b));
        assert_ne!(text(&a), text(&c));
    }

    #[test]
    fn echo_repeats_the_prompt_word_by_word() {
        let t = AnswerText::new(TextMode::Echo, 0, Arc::from("count  to three"));
        let got: Vec<&str> = (1..=4).map(|i| t.token(i)).collect();
        assert_eq!(got, vec!["count", "  to", " three", " count"]);
    }

    #[test]
    fn echo_keeps_a_separator_where_the_prompt_wraps_round() {
        let text = |prompt: &str, n: u32| {
            let t = AnswerText::new(TextMode::Echo, 0, Arc::from(prompt));
            (1..=n).map(|i| t.token(i)).collect::<String>()
        };
        assert_eq!(
            text("the quick brown fox jumps over the lazy dog", 11),
            "the quick brown fox jumps over the lazy dog the quick"
        );
        // One word: repeated with a space between the copies.
        assert_eq!(text("hi", 3), "hi hi hi");
        // Whitespace already at either end is enough: nothing is added.
        assert_eq!(text("a b ", 4), "a b a");
        assert_eq!(text(" a b", 3), " a b a");
        // A prompt of whitespace only echoes as it is.
        assert_eq!(text("  ", 2), "    ");
    }
}
