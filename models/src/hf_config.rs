//! Build an [`LlmSpec`] from a Hugging Face `config.json` of the Llama, Qwen2, Qwen3, Mistral,
//! Mixtral or Qwen3-MoE families (`--hf-config`). Parsing only: nothing is downloaded.

use serde_json::{Map, Value};

use crate::engine::Quantization;
use crate::llm::{LlmSpec, TokenizerKind};

/// The quantisation a checkpoint's config.json declares (`quantization_config.quant_method`), which
/// vLLM applies without `--quantization`: `Ok(None)` for an unquantised checkpoint, an error naming
/// a method servesim does not model.
pub fn hf_quantization(text: &str, origin: &str) -> Result<Option<Quantization>, HfConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| HfConfigError::Json {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    let method = value
        .get("quantization_config")
        .and_then(|q| q.get("quant_method"))
        .and_then(Value::as_str);
    match method {
        None => Ok(None),
        Some("fp8") => Ok(Some(Quantization::Fp8)),
        Some("awq") => Ok(Some(Quantization::Awq)),
        Some("gptq") => Ok(Some(Quantization::Gptq)),
        Some(other) => Err(HfConfigError::Invalid {
            origin: origin.to_string(),
            message: format!(
                "quantization_config.quant_method '{other}' is not modelled (servesim models fp8, awq and gptq)"
            ),
        }),
    }
}

/// Why a config.json could not become a model.
#[derive(Debug, thiserror::Error)]
pub enum HfConfigError {
    #[error("--hf-config {origin}: not a JSON object ({message})")]
    Json { origin: String, message: String },
    #[error(
        "--hf-config {origin}: architecture {arch} is not one servesim models (it reads Llama, \
         Qwen2, Qwen3, Mistral, Mixtral and Qwen3-MoE configs){}",
        lacks(.missing)
    )]
    Unsupported {
        origin: String,
        arch: String,
        /// The fields servesim needs that the config lacks.
        missing: Vec<&'static str>,
    },
    #[error("--hf-config {origin}: a {family} config needs {}", .missing.join(", "))]
    Missing {
        origin: String,
        family: &'static str,
        missing: Vec<&'static str>,
    },
    #[error("--hf-config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn lacks(missing: &[&'static str]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!("; it also lacks {}", missing.join(", "))
    }
}

/// The families servesim reads: how their layers are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Mistral,
    Mixtral,
    Qwen3Moe,
}

impl Family {
    fn from_names(arch: Option<&str>, model_type: Option<&str>) -> Option<Family> {
        let by_arch = match arch {
            Some("LlamaForCausalLM") => Some(Family::Llama),
            Some("Qwen2ForCausalLM") => Some(Family::Qwen2),
            Some("Qwen3ForCausalLM") => Some(Family::Qwen3),
            Some("MistralForCausalLM") => Some(Family::Mistral),
            Some("MixtralForCausalLM") => Some(Family::Mixtral),
            Some("Qwen3MoeForCausalLM") => Some(Family::Qwen3Moe),
            _ => None,
        };
        by_arch.or(match model_type {
            Some("llama") => Some(Family::Llama),
            Some("qwen2") => Some(Family::Qwen2),
            Some("qwen3") => Some(Family::Qwen3),
            Some("mistral") => Some(Family::Mistral),
            Some("mixtral") => Some(Family::Mixtral),
            Some("qwen3_moe") => Some(Family::Qwen3Moe),
            _ => None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Family::Llama => "Llama",
            Family::Qwen2 => "Qwen2",
            Family::Qwen3 => "Qwen3",
            Family::Mistral => "Mistral",
            Family::Mixtral => "Mixtral",
            Family::Qwen3Moe => "Qwen3-MoE",
        }
    }

    /// The config fields this family's shape needs (others have defaults).
    fn required(self) -> &'static [&'static str] {
        const DENSE: &[&str] = &[
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
        ];
        match self {
            Family::Mixtral => &[
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "vocab_size",
                "max_position_embeddings",
                "num_local_experts",
                "num_experts_per_tok",
            ],
            Family::Qwen3Moe => &[
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "moe_intermediate_size",
                "vocab_size",
                "max_position_embeddings",
                "num_experts",
                "num_experts_per_tok",
            ],
            _ => DENSE,
        }
    }
}

/// Fields every family needs, named when an unknown architecture lacks them.
const COMMON: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
];

fn missing(c: &Map<String, Value>, fields: &[&'static str]) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|f| c.get(*f).and_then(Value::as_u64).is_none())
        .collect()
}

impl LlmSpec {
    /// The model a Hugging Face `config.json` describes; `origin` names it in errors. Parameter
    /// counts follow from the shapes; the chat-template overhead is the family's usual one.
    pub fn from_hf_config(text: &str, origin: &str) -> Result<LlmSpec, HfConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| HfConfigError::Json {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let Value::Object(c) = value else {
            return Err(HfConfigError::Json {
                origin: origin.to_string(),
                message: "the top level is not an object".into(),
            });
        };
        let arch = c
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        let model_type = c.get("model_type").and_then(Value::as_str);
        let Some(family) = Family::from_names(arch, model_type) else {
            return Err(HfConfigError::Unsupported {
                origin: origin.to_string(),
                arch: format!(
                    "'{}' (model_type '{}')",
                    arch.unwrap_or("none"),
                    model_type.unwrap_or("none")
                ),
                missing: missing(&c, COMMON),
            });
        };
        let lacking = missing(&c, family.required());
        if !lacking.is_empty() {
            return Err(HfConfigError::Missing {
                origin: origin.to_string(),
                family: family.name(),
                missing: lacking,
            });
        }
        let invalid = |message: String| HfConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let int = |key: &str| -> Result<u32, HfConfigError> {
            let v = c.get(key).and_then(Value::as_u64).unwrap_or(0);
            u32::try_from(v).map_err(|_| invalid(format!("{key} = {v} is out of range")))
        };
        let hidden = int("hidden_size")?;
        let layers = int("num_hidden_layers")?;
        let heads = int("num_attention_heads")?;
        let vocab = int("vocab_size")?;
        if hidden == 0 || layers == 0 || heads == 0 || vocab == 0 {
            return Err(invalid(
                "hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive"
                    .into(),
            ));
        }
        let kv_heads = match c.get("num_key_value_heads").and_then(Value::as_u64) {
            Some(_) => int("num_key_value_heads")?,
            None => heads,
        };
        let head_dim = match c.get("head_dim").and_then(Value::as_u64) {
            Some(_) => int("head_dim")?,
            None => hidden / heads,
        };
        if kv_heads == 0 || head_dim == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(invalid(format!(
                "num_key_value_heads ({kv_heads}) must be positive and divide num_attention_heads ({heads}), and head_dim ({head_dim}) be positive"
            )));
        }
        let (experts, top_k, moe_inter, inter) = match family {
            Family::Mixtral => {
                let i = int("intermediate_size")?;
                (int("num_local_experts")?, int("num_experts_per_tok")?, i, i)
            }
            Family::Qwen3Moe => {
                // servesim prices every layer as MoE, as Qwen3-MoE's released configs have it.
                let step = c
                    .get("decoder_sparse_step")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let dense_layers = c
                    .get("mlp_only_layers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                if step != 1 || dense_layers != 0 {
                    return Err(invalid(
                        "decoder_sparse_step other than 1 or a non-empty mlp_only_layers (dense layers among MoE ones) is not modelled".into(),
                    ));
                }
                let mi = int("moe_intermediate_size")?;
                let i = match c.get("intermediate_size").and_then(Value::as_u64) {
                    Some(_) => int("intermediate_size")?,
                    None => mi,
                };
                (int("num_experts")?, int("num_experts_per_tok")?, mi, i)
            }
            _ => (0, 0, 0, int("intermediate_size")?),
        };
        if experts > 0 && (top_k == 0 || top_k > experts || moe_inter == 0) {
            return Err(invalid(format!(
                "num_experts_per_tok ({top_k}) must be between 1 and the experts ({experts}), and the expert intermediate size positive"
            )));
        }
        let tied = c
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let attention_bias = c
            .get("attention_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (h, q, kv, hd) = (
            u64::from(hidden),
            u64::from(heads) * u64::from(head_dim),
            u64::from(kv_heads) * u64::from(head_dim),
            u64::from(head_dim),
        );
        let qkv_bias = family == Family::Qwen2 || attention_bias;
        let attention = h * (q + 2 * kv)
            + q * h
            + if qkv_bias { q + 2 * kv } else { 0 }
            + if matches!(family, Family::Qwen3 | Family::Qwen3Moe) {
                2 * hd // q_norm and k_norm
            } else {
                0
            };
        let mlp = if experts > 0 {
            u64::from(experts) * 3 * h * u64::from(moe_inter) + h * u64::from(experts)
        } else {
            3 * h * u64::from(inter)
        };
        let per_layer = attention + mlp + 2 * h;
        let tables = if tied { 1 } else { 2 };
        let params = u64::from(layers) * per_layer + tables * u64::from(vocab) * h + h;
        let max_context = int("max_position_embeddings")?;
        let name_or_path = c.get("_name_or_path").and_then(Value::as_str);
        let hf_id = name_or_path.map_or_else(|| format!("hf-config:{origin}"), str::to_string);
        // The usual chat-template overheads of each family (see the catalogue's model files).
        let chat_template_tokens = match family {
            Family::Qwen2 => 29,
            Family::Qwen3 | Family::Qwen3Moe => 8,
            Family::Llama if vocab >= 128_000 => 34,
            Family::Mixtral => 9,
            _ => 3,
        };
        Ok(LlmSpec {
            name: name_or_path.map_or_else(|| "hf-config".to_string(), |n| n.to_lowercase()),
            hf_id,
            params,
            num_layers: layers,
            hidden_size: hidden,
            intermediate_size: inter,
            num_attention_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            vocab_size: vocab,
            tie_word_embeddings: tied,
            // vLLM's dtype "auto" serves bf16/fp16 checkpoints as they are and fp32 ones in 16 bits.
            dtype_bytes: 2,
            max_context,
            chat_template_tokens,
            message_overhead_tokens: 5,
            tokenizer: TokenizerKind::Cl100kBase,
            // SentencePiece vocabularies of 32 k split English ~1.25× finer than cl100k.
            token_ratio: if vocab <= 32_768 { 1.25 } else { 1.0 },
            num_experts: experts,
            num_experts_per_tok: top_k,
            moe_intermediate_size: moe_inter,
        })
    }
}
