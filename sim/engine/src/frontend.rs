//! The API-server half of the engine: turns a request as a client sends it (prompt text, sampling
//! limits) into an [`EngineRequest`] by tokenising the prompt with the model's tokenizer (its ids
//! feed prefix caching; their number is the prompt's length) and drawing the answer's natural
//! length from the profile's length model with a seeded, named RNG.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use servesim_models::{AnswerLength, LengthModel, Profile, PromptTokenizer};

use crate::kv_cache::{BlockHash, extend_hashes};
use crate::request::EngineRequest;

/// A prompt as the client gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Chat message contents, rendered through the model's chat template.
    Chat(Vec<Arc<str>>),
    /// A raw completions prompt.
    Text(Arc<str>),
    /// A prompt known only by its token count (trace replay); it shares no KV block with any other.
    Tokens(u32),
    /// A prompt given as token ids (a completions `prompt` that is a list of integers).
    Ids(Arc<[u32]>),
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
    /// Token ids of recently seen texts (drills reuse a handful of prompts many times).
    ids: HashMap<Arc<str>, Arc<[u32]>>,
    service_s: f64,
    /// When the last request reached the engine (the API server's one thread handles them in turn).
    last_arrival: f64,
}

/// Texts whose token ids are remembered.
const IDS_CACHE: usize = 4096;
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
            ids: HashMap::new(),
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

    /// Token ids of a text, scaled to the model's own tokenizer.
    fn text_ids(&mut self, text: &Arc<str>) -> Arc<[u32]> {
        if let Some(ids) = self.ids.get(text) {
            return Arc::clone(ids);
        }
        let ids: Arc<[u32]> = self.tokenizer.encode_scaled(text).into();
        if text.len() > COUNT_CACHE_MAX_TEXT {
            return ids;
        }
        if self.ids.len() >= IDS_CACHE {
            self.ids.clear();
        }
        self.ids.insert(Arc::clone(text), Arc::clone(&ids));
        ids
    }

    /// Prompt tokens as the server counts them (chat template included).
    pub fn prompt_tokens(&mut self, prompt: &Prompt) -> u32 {
        match prompt {
            Prompt::Tokens(n) => *n,
            Prompt::Ids(ids) => ids.len() as u32,
            Prompt::Text(t) => self.text_ids(t).len() as u32,
            Prompt::Chat(messages) => {
                let mut total = 0;
                for m in messages {
                    total += self.text_ids(m).len() as u32;
                }
                let (template, per_message) = self.tokenizer.template_overhead();
                total + template + per_message * (messages.len().saturating_sub(1) as u32)
            }
        }
    }

    /// The prompt's token ids as the engine sees them (chat template included, each template
    /// token written as one stand-in id); `None` for a prompt known only by its length.
    pub fn prompt_ids(&mut self, prompt: &Prompt) -> Option<Arc<[u32]>> {
        match prompt {
            Prompt::Tokens(_) => None,
            Prompt::Ids(ids) => Some(Arc::clone(ids)),
            Prompt::Text(t) => Some(self.text_ids(t)),
            Prompt::Chat(messages) => {
                let (template, per_message) = self.tokenizer.template_overhead();
                let filler = self.tokenizer.template_id();
                let mut ids = vec![filler; template as usize];
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        ids.extend(std::iter::repeat_n(filler, per_message as usize));
                    }
                    ids.extend_from_slice(&self.text_ids(m));
                }
                Some(ids.into())
            }
        }
    }

    /// The hashes of a prompt's full blocks of `block_size` tokens, into `out` (cleared first): what
    /// a prefix-aware router indexes (the simulated fleet's and the real one's). Empty for a prompt
    /// known only by its length.
    pub fn prompt_block_hashes(
        &mut self,
        prompt: &Prompt,
        block_size: u32,
        out: &mut Vec<BlockHash>,
        scratch: &mut Vec<u32>,
    ) {
        out.clear();
        let Some(ids) = self.prompt_ids(prompt) else {
            return;
        };
        let block_size = block_size.max(1);
        let full = ids.len() / block_size as usize;
        extend_hashes(out, block_size, full, |p| ids[p], scratch);
    }

    /// Draw the natural answer length for a prompt (`u32::MAX` when the model would not stop).
    pub fn natural_tokens(&mut self, prompt: &Prompt) -> u32 {
        let answer = match prompt {
            Prompt::Tokens(_) | Prompt::Ids(_) => &self.length.default,
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
        let prompt_ids = self.prompt_ids(&spec.prompt);
        let prompt_tokens = match &prompt_ids {
            Some(ids) => ids.len() as u32,
            None => self.prompt_tokens(&spec.prompt),
        };
        let natural = self.natural_tokens(&spec.prompt);
        let natural_tokens = if spec.ignore_eos {
            u32::MAX
        } else {
            natural.max(spec.min_tokens)
        };
        EngineRequest {
            prompt_tokens,
            prompt_ids,
            max_tokens: spec.max_tokens,
            natural_tokens,
        }
    }
}
