//! Profiles: a GPU, an LLM and an engine configuration, read from TOML and resolved against the
//! built-in catalogue, plus the figures that follow from them (KV capacity, weights, step time).
//!
//! A profile file names catalogue entries (`gpu = "rtx-a6000"`) or gives tables; a table with a
//! `base = "..."` key starts from that catalogue entry and overrides some fields. The `[engine]` table
//! always starts from vLLM V1's defaults for the card, so a profile only states what differs.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::cost::{CostModel, Iteration};
use crate::engine::EngineConfig;
use crate::gpu::GpuSpec;
use crate::length::LengthModel;
use crate::llm::LlmSpec;

/// Name of the profile used when none is given.
pub const DEFAULT_PROFILE: &str = "a6000-qwen2.5-7b";

const GIB: u64 = 1 << 30;

/// Why a profile could not be loaded or does not describe a servable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile '{0}' (see `servesim profiles`, or give a path to a .toml file)")]
    UnknownProfile(String),
    #[error(
        "unknown {kind} '{name}' in the catalogue; valid {}: {}",
        plural(kind),
        .known.join(", ")
    )]
    UnknownEntry {
        kind: &'static str,
        name: String,
        /// The catalogue's names of that kind, so the message says what would have worked.
        known: Vec<String>,
    },
    #[error("cannot read profile file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid profile {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("profile {profile}: {message}")]
    NotServable { profile: String, message: String },
}

/// "GPUs" and "models": the kinds of catalogue entry as the error message lists them.
fn plural(kind: &str) -> String {
    match kind {
        "gpu" => "GPUs".into(),
        other => format!("{other}s"),
    }
}

/// A fully resolved profile: everything the cost model and the engine need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub gpu: GpuSpec,
    pub model: LlmSpec,
    pub engine: EngineConfig,
    pub length: LengthModel,
}

const GPUS: &[&str] = &[
    include_str!("../catalogue/gpus/rtx-a6000.toml"),
    include_str!("../catalogue/gpus/a100-80gb.toml"),
    include_str!("../catalogue/gpus/h100-sxm.toml"),
    include_str!("../catalogue/gpus/h200.toml"),
    include_str!("../catalogue/gpus/l4.toml"),
    include_str!("../catalogue/gpus/l40s.toml"),
    include_str!("../catalogue/gpus/rtx4090.toml"),
];

const LLMS: &[&str] = &[
    include_str!("../catalogue/llms/qwen2.5-7b-instruct.toml"),
    include_str!("../catalogue/llms/qwen2.5-0.5b-instruct.toml"),
    include_str!("../catalogue/llms/llama-3.1-8b-instruct.toml"),
    include_str!("../catalogue/llms/mistral-7b-instruct-v0.3.toml"),
    include_str!("../catalogue/llms/llama-3.1-70b-instruct.toml"),
    include_str!("../catalogue/llms/qwen2.5-72b-instruct.toml"),
    include_str!("../catalogue/llms/qwen2.5-14b-instruct.toml"),
    include_str!("../catalogue/llms/qwen2.5-32b-instruct.toml"),
    include_str!("../catalogue/llms/mixtral-8x7b-instruct-v0.1.toml"),
    include_str!("../catalogue/llms/qwen3-30b-a3b.toml"),
];

const PROFILES: &[&str] = &[
    include_str!("../catalogue/profiles/a6000-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/a6000-qwen2.5-0.5b.toml"),
    include_str!("../catalogue/profiles/a6000-llama3.1-8b.toml"),
    include_str!("../catalogue/profiles/a6000-mistral-7b.toml"),
    include_str!("../catalogue/profiles/a100-80gb-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/a100-80gb-llama3.1-8b.toml"),
    include_str!("../catalogue/profiles/h100-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/h100-llama3.1-8b.toml"),
    include_str!("../catalogue/profiles/h200-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/h200-llama3.1-8b.toml"),
    include_str!("../catalogue/profiles/l4-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/l4-qwen2.5-0.5b.toml"),
    include_str!("../catalogue/profiles/l40s-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/l40s-mistral-7b.toml"),
    include_str!("../catalogue/profiles/rtx4090-qwen2.5-7b.toml"),
    include_str!("../catalogue/profiles/rtx4090-llama3.1-8b.toml"),
    include_str!("../catalogue/profiles/h100x2-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h100x4-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h100x8-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h200x2-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h200x4-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h200x8-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/l40sx4-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/a100-80gbx2-llama3.1-70b.toml"),
    include_str!("../catalogue/profiles/h100x4-qwen2.5-72b.toml"),
    include_str!("../catalogue/profiles/h100x2-mixtral-8x7b.toml"),
    include_str!("../catalogue/profiles/h100x2-llama3.1-70b-fp8.toml"),
    include_str!("../catalogue/profiles/h200-llama3.1-70b-fp8.toml"),
    include_str!("../catalogue/profiles/l4-qwen2.5-7b-awq.toml"),
];

const ENGINE_DEFAULTS: &str = include_str!("../catalogue/engine-vllm-v1.toml");
const LENGTH_DEFAULT: &str = include_str!("../catalogue/length-chat.toml");

fn parse_table(text: &str, origin: &str) -> Result<Table, ProfileError> {
    text.parse::<Table>().map_err(|e| ProfileError::Invalid {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

fn from_table<T: serde::de::DeserializeOwned>(
    table: Table,
    origin: &str,
) -> Result<T, ProfileError> {
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ProfileError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })
}

/// Overlay `top` onto `base`, key by key (tables merge recursively, other values replace).
fn overlay(base: &mut Table, top: Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(t)) => overlay(b, t),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn catalogue_table(
    entries: &[&str],
    kind: &'static str,
    name: &str,
) -> Result<Table, ProfileError> {
    for text in entries {
        let table = parse_table(text, kind)?;
        if table.get("name").and_then(Value::as_str) == Some(name) {
            return Ok(table);
        }
    }
    Err(ProfileError::UnknownEntry {
        kind,
        name: name.to_string(),
        known: entry_names(entries),
    })
}

/// The `name` of every catalogue entry in `entries`, in catalogue order.
fn entry_names(entries: &[&str]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|t| t.parse::<Table>().ok())
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Resolve `gpu = "name"`, `gpu = "file.toml"` or a `[gpu]` table (optionally with `base = "name"`) to a table.
fn resolve_entry(
    value: Option<Value>,
    entries: &[&str],
    kind: &'static str,
    origin: &str,
) -> Result<Table, ProfileError> {
    match value {
        // A GPU or model file of its own, e.g. one `servesim calibrate` wrote.
        Some(Value::String(name)) if name.ends_with(".toml") => {
            let text = std::fs::read_to_string(&name).map_err(|source| ProfileError::Read {
                path: name.clone(),
                source,
            })?;
            parse_table(&text, &name)
        }
        Some(Value::String(name)) => catalogue_table(entries, kind, &name),
        Some(Value::Table(mut t)) => match t.remove("base") {
            Some(Value::String(base)) => {
                let mut table = catalogue_table(entries, kind, &base)?;
                overlay(&mut table, t);
                Ok(table)
            }
            Some(_) => Err(ProfileError::Invalid {
                origin: origin.to_string(),
                message: format!("{kind}.base must be a string"),
            }),
            None => Ok(t),
        },
        Some(_) => Err(ProfileError::Invalid {
            origin: origin.to_string(),
            message: format!("'{kind}' must be a catalogue name or a table"),
        }),
        None => Err(ProfileError::Invalid {
            origin: origin.to_string(),
            message: format!("missing '{kind}'"),
        }),
    }
}

/// vLLM V1's OpenAI-server defaults for max_num_seqs and max_num_batched_tokens: cards with at least
/// 70 GiB that are not A100s get 1024 and 8192, all others 256 and 2048 (vLLM `EngineArgs`
/// `_set_default_args`, usage context OPENAI_API_SERVER).
fn card_defaults(gpu: &GpuSpec) -> (u32, u32) {
    let big = gpu.memory_bytes >= 70 * GIB && !gpu.display_name.to_lowercase().contains("a100");
    if big { (1024, 8192) } else { (256, 2048) }
}

impl Profile {
    /// Parse a profile from TOML text; `origin` names it in errors. Refused, as vLLM would refuse
    /// it, when it cannot be served (see [`Profile::derive`]).
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile = Profile::parse_toml(text, origin)?;
        profile.derive()?;
        Ok(profile)
    }

    /// Parse a profile from TOML text without checking that it can be served: for callers that
    /// change it first (a 70B model on one GPU becomes servable with `--tensor-parallel-size`),
    /// and must [`derive`](Profile::derive) it afterwards.
    pub fn parse_toml(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let mut top = parse_table(text, origin)?;
        let gpu: GpuSpec = from_table(
            resolve_entry(top.remove("gpu"), GPUS, "gpu", origin)?,
            origin,
        )?;
        let model: LlmSpec = from_table(
            resolve_entry(top.remove("model"), LLMS, "model", origin)?,
            origin,
        )?;

        let mut engine = parse_table(ENGINE_DEFAULTS, "engine defaults")?;
        let (seqs, tokens) = card_defaults(&gpu);
        engine.insert("max_num_seqs".into(), Value::Integer(i64::from(seqs)));
        engine.insert(
            "max_num_batched_tokens".into(),
            Value::Integer(i64::from(tokens)),
        );
        match top.remove("engine") {
            Some(Value::Table(t)) => overlay(&mut engine, t),
            Some(_) => {
                return Err(ProfileError::Invalid {
                    origin: origin.to_string(),
                    message: "'engine' must be a table".into(),
                });
            }
            None => {}
        }
        let engine: EngineConfig = from_table(engine, origin)?;

        let length: LengthModel = match top.remove("length") {
            Some(Value::Table(t)) => from_table(t, origin)?,
            Some(_) => {
                return Err(ProfileError::Invalid {
                    origin: origin.to_string(),
                    message: "'length' must be a table".into(),
                });
            }
            None => from_table(
                parse_table(LENGTH_DEFAULT, "length defaults")?,
                "length defaults",
            )?,
        };

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Head {
            name: String,
            #[serde(default)]
            description: String,
        }
        let head: Head = from_table(top, origin)?;
        let profile = Profile {
            name: head.name,
            description: head.description,
            gpu,
            model,
            engine,
            length,
        };
        Ok(profile)
    }

    /// A built-in profile by name, or `GPU+MODEL` (catalogue names, or a GPU file such as
    /// `my-gpu.toml+qwen2.5-7b-instruct`) with vLLM defaults for the card.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let profile = Profile::builtin_unchecked(name)?;
        profile.derive()?;
        Ok(profile)
    }

    /// [`builtin`](Profile::builtin) without the check that it can be served (see
    /// [`parse_toml`](Profile::parse_toml)).
    pub fn builtin_unchecked(name: &str) -> Result<Profile, ProfileError> {
        for text in PROFILES {
            let table = parse_table(text, "catalogue")?;
            if table.get("name").and_then(Value::as_str) == Some(name) {
                return Profile::parse_toml(text, name);
            }
        }
        if let Some((gpu, model)) = name.split_once('+') {
            let text = format!(
                "name = {name:?}\ndescription = \"{gpu} + {model}, vLLM V1 defaults\"\ngpu = {gpu:?}\nmodel = {model:?}\n"
            );
            return Profile::parse_toml(&text, name);
        }
        Err(ProfileError::UnknownProfile(name.to_string()))
    }

    /// A built-in name, a `GPU+MODEL` pair, or a path to a `.toml` file.
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        let profile = Profile::load_unchecked(spec)?;
        profile.derive()?;
        Ok(profile)
    }

    /// [`load`](Profile::load) without the check that it can be served, for callers that apply
    /// command-line overrides (tensor parallelism, quantisation, memory) and then derive.
    pub fn load_unchecked(spec: &str) -> Result<Profile, ProfileError> {
        if (spec.ends_with(".toml") && !spec.contains('+')) || Path::new(spec).is_file() {
            let text = std::fs::read_to_string(spec).map_err(|source| ProfileError::Read {
                path: spec.to_string(),
                source,
            })?;
            return Profile::parse_toml(&text, spec);
        }
        Profile::builtin_unchecked(spec)
    }

    /// Names of the built-in profiles, in catalogue order.
    pub fn builtin_names() -> Vec<String> {
        entry_names(PROFILES)
    }

    /// The catalogue's models as (name, Hugging Face id), read without pairing them with a GPU
    /// (a 70B model fits no single card, yet its id must still be found).
    pub fn catalogue_hf_ids() -> Result<Vec<(String, String)>, ProfileError> {
        LLMS.iter()
            .map(|text| {
                let table = parse_table(text, "catalogue")?;
                let get = |key: &str| {
                    table
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| ProfileError::Invalid {
                            origin: "catalogue".into(),
                            message: format!("a model entry lacks `{key}`"),
                        })
                };
                Ok((get("name")?, get("hf_id")?))
            })
            .collect()
    }

    /// Names of the catalogue's GPUs and models, for `GPU+MODEL` profiles.
    pub fn catalogue_names() -> (Vec<String>, Vec<String>) {
        (entry_names(GPUS), entry_names(LLMS))
    }

    /// The warnings vLLM logs for this layout, word for word, where they change what is modelled:
    /// FP8 on a card without FP8 tensor cores runs weight-only through Marlin
    /// (vllm/model_executor/layers/quantization/utils/marlin_utils_fp8.py), and more than two
    /// PCIe-only GPUs all-reduce through NCCL instead of vLLM's custom kernel
    /// (vllm/distributed/device_communicators/custom_all_reduce.py).
    pub fn vllm_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.engine.quantization == Some(crate::engine::Quantization::Fp8)
            && self.gpu.fp8_tensor_flops.is_none()
        {
            out.push(
                "Your GPU does not have native support for FP8 computation but FP8 quantization \
                 is being used. Weight-only FP8 compression will be used leveraging the Marlin \
                 kernel. This may degrade performance for compute-heavy workloads."
                    .to_string(),
            );
        }
        if self.engine.tensor_parallel_size > 2 && self.gpu.interconnect.kind.starts_with("PCIe") {
            out.push(
                "Custom allreduce is disabled because it's not supported on more than two \
                 PCIe-only GPUs. To silence this warning, specify disable_custom_all_reduce=True \
                 explicitly."
                    .to_string(),
            );
        }
        out
    }

    /// The cost model of this GPU, model and engine.
    pub fn cost_model(&self) -> CostModel {
        CostModel::new(&self.gpu, &self.model, &self.engine)
    }

    /// The figures that follow from the profile; an error when the model cannot be served on the card.
    pub fn derive(&self) -> Result<Derived, ProfileError> {
        let not_servable = |message: String| ProfileError::NotServable {
            profile: self.name.clone(),
            message,
        };
        let e = &self.engine;
        if e.block_size == 0 || e.max_num_seqs == 0 || e.max_num_batched_tokens == 0 {
            return Err(not_servable(
                "block_size, max_num_seqs and max_num_batched_tokens must be positive".into(),
            ));
        }
        if !(e.gpu_memory_utilization > 0.0 && e.gpu_memory_utilization <= 1.0) {
            return Err(not_servable(
                "gpu_memory_utilization must be in (0, 1]".into(),
            ));
        }
        let m = &self.model;
        let tp = e.tensor_parallel_size;
        if tp == 0 || tp > 8 {
            return Err(not_servable(format!(
                "tensor_parallel_size {tp}: servesim models one node of 1 to 8 GPUs"
            )));
        }
        // vLLM's ModelConfig.verify_with_parallel_config, word for word.
        if !m.num_attention_heads.is_multiple_of(tp) {
            return Err(not_servable(format!(
                "Total number of attention heads ({}) must be divisible by tensor parallel size ({tp}).",
                m.num_attention_heads
            )));
        }
        // vLLM's QKVParallelLinear asserts that KV heads split evenly or replicate evenly.
        let kv = m.num_kv_heads;
        if (tp <= kv && !kv.is_multiple_of(tp)) || (tp > kv && !tp.is_multiple_of(kv)) {
            return Err(not_servable(format!(
                "Total number of KV heads ({kv}) and tensor parallel size ({tp}) must divide one another (vLLM's QKVParallelLinear asserts it)."
            )));
        }
        let shard = m.shard(tp);
        let dtype = u64::from(m.dtype_bytes);
        let layer_bytes = e.layer_bytes_per_weight(m.dtype_bytes);
        let weight_bytes_per_gpu =
            ((shard.dense_params + f64::from(m.num_experts) * shard.expert_params) * layer_bytes
                + (shard.lm_head_params + shard.embedding_params) * dtype as f64)
                .round() as u64;
        let weight_bytes = weight_bytes_per_gpu * u64::from(tp);
        let kv_bytes_per_token_per_gpu =
            shard.kv_elements_per_token as u64 * u64::from(e.kv_cache_dtype.bytes(m.dtype_bytes));
        let kv_bytes_per_token = kv_bytes_per_token_per_gpu * u64::from(tp);
        // vLLM sizes the KV cache after a profiling forward pass at the full token budget: the peak
        // activations are the widest per-token tensors (the gated MLP's gate+up output, one GPU's
        // share, plus the residual stream and QKV) for every batched token, plus fp32 logits for
        // every sequence (gathered whole on the first GPU).
        let per_token_activation =
            dtype * (2 * m.active_ffn_width() / u64::from(tp) + 4 * u64::from(m.hidden_size));
        let activation_bytes = u64::from(e.max_num_batched_tokens) * per_token_activation
            + u64::from(e.max_num_seqs) * u64::from(m.vocab_size) * 4;
        if weight_bytes_per_gpu >= self.gpu.memory_bytes {
            return Err(not_servable(format!(
                "CUDA out of memory: the weights take {:.2} GiB per GPU and the GPU has {:.2} GiB \
                 (vLLM fails loading the model with torch.OutOfMemoryError); raise \
                 --tensor-parallel-size or quantise the weights",
                weight_bytes_per_gpu as f64 / GIB as f64,
                self.gpu.memory_bytes as f64 / GIB as f64,
            )));
        }
        let budget = (self.gpu.memory_bytes as f64 * e.gpu_memory_utilization) as u64;
        let reserved = weight_bytes_per_gpu + activation_bytes + e.runtime_reserve_bytes;
        if budget <= reserved {
            // vLLM V1's message (vllm/v1/core/kv_cache_utils.py), with the figures that led to it.
            return Err(not_servable(format!(
                "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` \
                 when initializing the engine. (Weights {:.2} GiB and activations {:.2} GiB per GPU \
                 leave nothing of {:.2} GiB = {} × {}.)",
                weight_bytes_per_gpu as f64 / GIB as f64,
                activation_bytes as f64 / GIB as f64,
                budget as f64 / GIB as f64,
                self.gpu.memory_bytes,
                e.gpu_memory_utilization
            )));
        }
        let kv_cache_bytes_per_gpu = budget - reserved;
        let block_bytes = kv_bytes_per_token_per_gpu * u64::from(e.block_size);
        let kv_blocks = e
            .num_gpu_blocks_override
            .unwrap_or(kv_cache_bytes_per_gpu / block_bytes);
        let kv_tokens = kv_blocks * u64::from(e.block_size);
        let max_model_len = e.max_model_len(m.max_context);
        // With an override vLLM checks the blocks it can hand out (all but the null block).
        let room = match e.num_gpu_blocks_override {
            Some(n) => n.saturating_sub(1) * u64::from(e.block_size),
            None => kv_tokens,
        };
        if u64::from(max_model_len) > room {
            // vLLM V1's check_enough_kv_cache_memory (vllm/v1/core/kv_cache_utils.py), word for word.
            let gib = |b: u64| b as f64 / GIB as f64;
            return Err(not_servable(format!(
                "To serve at least one request with the model's max seq len ({max_model_len}), \
                 ({:.2} GiB KV cache is needed, which is larger than the available KV cache memory \
                 ({:.2} GiB). Based on the available memory, the estimated maximum model length is \
                 {room}. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when \
                 initializing the engine.",
                gib(u64::from(max_model_len) * kv_bytes_per_token_per_gpu),
                gib(room * kv_bytes_per_token_per_gpu),
            )));
        }
        let cost = self.cost_model();
        let single = cost.iteration(&Iteration {
            prefills: &[],
            decode_contexts: &[1],
        });
        Ok(Derived {
            tensor_parallel_size: tp,
            weight_bytes,
            weight_bytes_per_gpu,
            kv_bytes_per_token,
            kv_bytes_per_token_per_gpu,
            activation_bytes,
            kv_cache_bytes: kv_cache_bytes_per_gpu * u64::from(tp),
            kv_cache_bytes_per_gpu,
            kv_blocks,
            kv_tokens,
            max_model_len,
            single_decode_step_s: single.total_s,
            allreduce_per_layer_s: cost.allreduce_per_layer_s(1.0),
        })
    }
}

/// Figures that follow from a profile, as `servesim profiles show` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Derived {
    /// GPUs the model is sharded over.
    pub tensor_parallel_size: u32,
    /// All weights held in GPU memory, over every GPU (replicated KV projections counted on each).
    pub weight_bytes: u64,
    /// Weights held on one GPU.
    pub weight_bytes_per_gpu: u64,
    /// KV-cache bytes per token over every GPU (57,344 for Qwen2.5-7B in bf16 on one GPU).
    pub kv_bytes_per_token: u64,
    /// KV-cache bytes per token on one GPU.
    pub kv_bytes_per_token_per_gpu: u64,
    /// Peak activation memory vLLM's profiling run reserves on each GPU.
    pub activation_bytes: u64,
    /// Memory left for the KV cache, over every GPU.
    pub kv_cache_bytes: u64,
    /// Memory left for the KV cache on one GPU.
    pub kv_cache_bytes_per_gpu: u64,
    /// KV blocks of `block_size` tokens.
    pub kv_blocks: u64,
    /// KV capacity in tokens.
    pub kv_tokens: u64,
    /// Longest prompt + output a request may have.
    pub max_model_len: u32,
    /// Predicted duration of one decode iteration with a single short sequence.
    pub single_decode_step_s: f64,
    /// One layer's two all-reduces of a single token's activations (zero on one GPU).
    pub allreduce_per_layer_s: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_catalogue_entry_lists_the_valid_names() {
        let err = Profile::builtin("h200+nosuch").map(|p| p.name);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "unknown model 'nosuch' in the catalogue; valid models: qwen2.5-7b-instruct, \
             qwen2.5-0.5b-instruct, llama-3.1-8b-instruct, mistral-7b-instruct-v0.3, \
             llama-3.1-70b-instruct, qwen2.5-72b-instruct, qwen2.5-14b-instruct, \
             qwen2.5-32b-instruct, mixtral-8x7b-instruct-v0.1, qwen3-30b-a3b"
        );
        let err = Profile::builtin("nosuch+qwen2.5-7b-instruct").map(|p| p.name);
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "unknown gpu 'nosuch' in the catalogue; valid GPUs: rtx-a6000, a100-80gb, h100-sxm, \
             h200, l4, l40s, rtx4090"
        );
    }
}
