//! How long a model's answer is when nothing cuts it: rules that match the prompt and draw a length.
//!
//! Real chat models end short questions by themselves after a typical number of tokens, and keep going
//! on prompts that ask for an endless answer. The rules are data in the profile, checked in order; the
//! first rule whose patterns all occur in the prompt decides.

use serde::{Deserialize, Serialize};

/// One rule of the length model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthRule {
    /// Case-insensitive substrings that must all occur in the prompt; empty matches every prompt.
    #[serde(default)]
    pub contains: Vec<String>,
    /// What the model does on a matching prompt.
    #[serde(flatten)]
    pub answer: AnswerLength,
}

/// The natural length of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnswerLength {
    /// The model never ends by itself; `max_tokens` (or the context) stops it.
    Unbounded,
    /// A normal distribution of lengths (rounded, at least `min`), as sampling at temperature > 0 gives.
    Normal { mean: f64, sd: f64, min: u32 },
}

/// The ordered rules plus a fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthModel {
    #[serde(default)]
    pub rules: Vec<LengthRule>,
    /// Used when no rule matches.
    pub default: AnswerLength,
}

impl LengthModel {
    /// The answer model for a prompt: the first matching rule, else the default.
    pub fn for_prompt(&self, prompt: &str) -> &AnswerLength {
        let lower = prompt.to_lowercase();
        self.rules
            .iter()
            .find(|r| r.contains.iter().all(|p| lower.contains(&p.to_lowercase())))
            .map_or(&self.default, |r| &r.answer)
    }
}
