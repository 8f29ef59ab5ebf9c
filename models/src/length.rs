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
    /// One of several length models, drawn by weight: an answer that usually ends at one length and
    /// sometimes runs on (a count that mostly stops near 55 and now and then near 100).
    Mixture { parts: Vec<MixturePart> },
}

/// One weighted part of a [`AnswerLength::Mixture`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixturePart {
    /// Relative weight (the weights need not sum to 1).
    pub weight: f64,
    #[serde(flatten)]
    pub answer: AnswerLength,
}

impl AnswerLength {
    /// The part of a mixture that a uniform draw `u` in [0, 1) picks (the model itself otherwise).
    pub fn pick(&self, u: f64) -> &AnswerLength {
        let AnswerLength::Mixture { parts } = self else {
            return self;
        };
        let total: f64 = parts.iter().map(|p| p.weight.max(0.0)).sum();
        let mut left = u * total;
        for p in parts {
            left -= p.weight.max(0.0);
            if left < 0.0 {
                return p.answer.pick(u);
            }
        }
        parts.last().map_or(self, |p| &p.answer)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(mean: f64) -> AnswerLength {
        AnswerLength::Normal {
            mean,
            sd: 1.0,
            min: 1,
        }
    }

    #[test]
    fn a_mixture_picks_its_parts_by_weight() {
        let m = AnswerLength::Mixture {
            parts: vec![
                MixturePart {
                    weight: 3.0,
                    answer: normal(55.0),
                },
                MixturePart {
                    weight: 1.0,
                    answer: normal(100.0),
                },
            ],
        };
        assert_eq!(m.pick(0.0), &normal(55.0));
        assert_eq!(m.pick(0.74), &normal(55.0));
        assert_eq!(m.pick(0.76), &normal(100.0));
        assert_eq!(m.pick(0.999), &normal(100.0));
        assert_eq!(normal(7.0).pick(0.5), &normal(7.0));
    }

    #[test]
    fn the_catalogue_count_rule_parses_as_a_mixture() {
        let model: LengthModel =
            toml::from_str(include_str!("../catalogue/length-chat.toml")).expect("catalogue");
        let count = model.for_prompt(
            "Count upward from 1, writing one number per line. Keep going and do not stop.",
        );
        assert!(matches!(count, AnswerLength::Mixture { parts } if parts.len() == 2));
        assert!(matches!(
            model.for_prompt("Explain what a GPU scheduler does, in two sentences."),
            AnswerLength::Normal { .. }
        ));
    }
}
