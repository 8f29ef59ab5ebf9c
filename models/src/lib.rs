//! servesim-models: what is being simulated, as data, and what one engine iteration costs.
//!
//! [`gpu`], [`llm`] and [`engine`] are the three halves of a [`profile::Profile`] (GPU, model
//! architecture, vLLM engine arguments); [`length`] says how long answers are; the built-in catalogue
//! of TOML files under `catalogue/` is compiled in and users add their own files. [`cost`] turns an
//! iteration's composition into seconds, term by term; [`silicon`] reads tables of forward passes
//! timed on real GPUs and fits a GPU's terms to them; [`tokenizer`] counts prompt tokens and
//! [`hf_tokenizer`] writes that table as a Hugging Face tokenizer for clients that need one.
//! Nothing here knows about HTTP or time: the `sim` crate drives it.

pub mod cost;
pub mod engine;
pub mod gpu;
pub mod hf_config;
pub mod hf_tokenizer;
pub mod length;
pub mod llm;
pub mod profile;
pub mod silicon;
pub mod tokenizer;

pub use cost::{CostModel, CostParts, Iteration, IterationCost, PrefillChunk};
pub use engine::{EngineConfig, KvCacheDtype, PreemptionMode, Quantization, SchedulingPolicy};
pub use gpu::{GpuSpec, Interconnect};
pub use hf_config::HfConfigError;
pub use length::{AnswerLength, LengthModel, LengthRule};
pub use llm::{LlmSpec, Shard, TokenizerKind};
pub use profile::{DEFAULT_PROFILE, Derived, Profile, ProfileError};
pub use tokenizer::PromptTokenizer;
