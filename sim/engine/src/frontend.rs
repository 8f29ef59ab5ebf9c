//! The API-server half of the engine: turns a request as a client sends it (prompt text, sampling
//! limits) into an [`EngineRequest`] by counting tokens with the model's tokenizer and drawing the
//! answer's natural length from the profile's length model with a seeded, named RNG.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use servesim_models::{AnswerLength, LengthModel, Profile, PromptTokenizer};

use crate::request::EngineRequest;

/// A prompt as the client gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat message contents, rendered through the model's chat template.
    Chat(Vec<Arc<str>>),
    /// A raw completions prompt.
    Text(Arc<str>),
    /// A prompt known only by its token count (trace replay).
    Tokens(u32),
}

impl Prompt {
    /// A one-message chat.
    pub fn user(text: &str) -> Prompt {
        Prompt::Chat(vec![Arc::from(text)])
    }
}

/// One request as a client would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    pub prompt: Prompt,
    pub max_tokens: u32,
    /// Generate to `max_tokens` whatever the model would do.
    pub ignore_eos: bool,
    /// Generate at least this many tokens.
    pub min_tokens: u32,
}

impl RequestSpec {
    /// A chat request with one user message.
    pub fn chat(text: &str, max_tokens: u32) -> RequestSpec {
        RequestSpec {
            prompt: Prompt::user(text),
            max_tokens,
            ignore_eos: false,
            min_tokens: 0,
        }
    }
}

/// Tokenizer + length model + RNG; one per simulated server.
#[derive(Debug)]
pub struct Frontend {
    tokenizer: PromptTokenizer,
    length: LengthModel,
    rng: Xoshiro256PlusPlus,
    counts: HashMap<Arc<str>, u32>,
    service_s: f64,
    /// When the last request reached the engine (the API server's one thread handles them in turn).
    last_arrival: f64,
}

/// Prompts whose token counts are remembered (drills reuse a handful of prompts many times).
const COUNT_CACHE: usize = 4096;
/// Longest prompt text worth remembering: drills' prompts are a few KiB; caching 2 MiB bodies
/// would let 4096 entries hold gigabytes.
const COUNT_CACHE_MAX_TEXT: usize = 16 * 1024;

impl Frontend {
    /// The frontend of `profile`'s model, with answer lengths drawn from `seed`.
    pub fn new(profile: &Profile, seed: u64) -> Frontend {
        Frontend {
            tokenizer: PromptTokenizer::for_model(&profile.model),
            length: profile.length.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            counts: HashMap::new(),
            service_s: profile.engine.frontend_service_s,
            last_arrival: f64::NEG_INFINITY,
        }
    }

    /// When a request that could reach the engine at `earliest` does reach it: the API server
    /// handles requests one at a time, so arrivals are at least `frontend_service_s` apart. Call in
    /// the order requests came in; both drivers do.
    pub fn pace(&mut self, earliest: f64) -> f64 {
        let at = earliest.max(self.last_arrival + self.service_s);
        self.last_arrival = at;
        at
    }

    pub fn tokenizer(&self) -> &PromptTokenizer {
        &self.tokenizer
    }

    fn count(&mut self, text: &Arc<str>) -> u32 {
        if let Some(&n) = self.counts.get(text) {
            return n;
        }
        let n = self.tokenizer.count_text(text);
        if text.len() > COUNT_CACHE_MAX_TEXT {
            return n;
        }
        if self.counts.len() >= COUNT_CACHE {
            self.counts.clear();
        }
        self.counts.insert(Arc::clone(text), n);
        n
    }

    /// Prompt tokens as the server counts them (chat template included).
    pub fn prompt_tokens(&mut self, prompt: &Prompt) -> u32 {
        match prompt {
            Prompt::Tokens(n) => *n,
            Prompt::Text(t) => self.count(t),
            Prompt::Chat(messages) => {
                let mut total = 0;
                for m in messages {
                    total += self.count(m);
                }
                let (template, per_message) = self.tokenizer.template_overhead();
                total + template + per_message * (messages.len().saturating_sub(1) as u32)
            }
        }
    }

    /// Draw the natural answer length for a prompt (`u32::MAX` when the model would not stop).
    pub fn natural_tokens(&mut self, prompt: &Prompt) -> u32 {
        let answer = match prompt {
            Prompt::Tokens(_) => &self.length.default,
            Prompt::Text(t) => self.length.for_prompt(t),
            Prompt::Chat(m) => self.length.for_prompt(m.last().map_or("", |s| s)),
        };
        // A mixture costs one extra draw to pick its part; single models draw as before.
        let answer = match answer {
            AnswerLength::Mixture { .. } => answer.pick(self.rng.random::<f64>()),
            single => single,
        };
        match answer {
            AnswerLength::Unbounded | AnswerLength::Mixture { .. } => u32::MAX,
            AnswerLength::Normal { mean, sd, min } => {
                let x = match Normal::new(*mean, sd.max(0.0)) {
                    Ok(d) => d.sample(&mut self.rng),
                    Err(_) => *mean,
                };
                (x.round().max(f64::from(*min)).max(1.0)) as u32
            }
        }
    }

    /// The engine's view of a client request. Always draws a length, so the RNG stream depends only
    /// on the order of requests, not on their options.
    pub fn prepare(&mut self, spec: &RequestSpec) -> EngineRequest {
        let prompt_tokens = self.prompt_tokens(&spec.prompt);
        let natural = self.natural_tokens(&spec.prompt);
        let natural_tokens = if spec.ignore_eos {
            u32::MAX
        } else {
            natural.max(spec.min_tokens)
        };
        EngineRequest {
            prompt_tokens,
            max_tokens: spec.max_tokens,
            natural_tokens,
        }
    }
}
