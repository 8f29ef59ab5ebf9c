//! Engine arguments that `serve`, `simulate` and `bench --target sim` take on top of a profile, spelt
//! as `vllm serve` spells them.

use anyhow::Result;
use clap::{Args, ValueEnum};
use servesim_models::hf_config::hf_quantization;
use servesim_models::{KvCacheDtype, LlmSpec, Profile, Quantization};

/// `--quantization` values servesim models, as vLLM spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantizationArg {
    Fp8,
    Awq,
    Gptq,
}

/// `--kv-cache-dtype` values servesim models, as vLLM spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KvCacheDtypeArg {
    Auto,
    Fp8,
}

/// `--enable-prefix-caching` / `--no-enable-prefix-caching` (the profile decides when neither is given;
/// vLLM V1's default, and every built-in profile's, is on).
#[derive(Debug, Args, Clone, Default)]
pub struct EngineFlags {
    /// Keep full KV blocks by content hash and reuse them for prompts that start alike.
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// Compute every prompt in full (vLLM V0's default; today's V1 needs this flag).
    #[arg(long, overrides_with = "enable_prefix_caching")]
    pub no_enable_prefix_caching: bool,
    /// GPUs to shard the model over (1, 2, 4 or 8; must divide the attention heads).
    #[arg(long, env = "SERVESIM_TENSOR_PARALLEL_SIZE", value_name = "N")]
    pub tensor_parallel_size: Option<u32>,
    /// Weight quantisation: fp8 (W8A8; weight-only on cards without FP8 tensor cores), awq or gptq
    /// (INT4 weight-only).
    #[arg(long, env = "SERVESIM_QUANTIZATION", value_enum)]
    pub quantization: Option<QuantizationArg>,
    /// KV-cache element type: auto (the model's dtype) or fp8 (half the bytes per token).
    #[arg(long, env = "SERVESIM_KV_CACHE_DTYPE", value_enum)]
    pub kv_cache_dtype: Option<KvCacheDtypeArg>,
    /// Replace the profile's model with one built from a Hugging Face config.json (Llama, Qwen2,
    /// Qwen3, Mistral, Mixtral or Qwen3-MoE).
    #[arg(long, env = "SERVESIM_HF_CONFIG", value_name = "CONFIG_JSON")]
    pub hf_config: Option<std::path::PathBuf>,
}

fn quantization(q: QuantizationArg) -> Quantization {
    match q {
        QuantizationArg::Fp8 => Quantization::Fp8,
        QuantizationArg::Awq => Quantization::Awq,
        QuantizationArg::Gptq => Quantization::Gptq,
    }
}

impl EngineFlags {
    /// Apply the flags given to `profile`'s model and engine; an unreadable or unsupported
    /// `--hf-config` is an error. Callers re-derive the profile, which refuses what vLLM refuses.
    pub fn apply(&self, profile: &mut Profile) -> Result<()> {
        if let Some(path) = &self.hf_config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read --hf-config {}: {e}", path.display()))?;
            let origin = path.display().to_string();
            profile.model = LlmSpec::from_hf_config(&text, &origin)?;
            // A quantised checkpoint brings its method, as vLLM reads it from the config.
            let declared = hf_quantization(&text, &origin)?;
            if let (Some(d), Some(asked)) = (declared, self.quantization) {
                let asked = quantization(asked);
                if d != asked {
                    // vLLM's ModelConfig._verify_quantization, word for word.
                    anyhow::bail!(
                        "Quantization method specified in the model config ({}) does not match the quantization method specified in the `quantization` argument ({}).",
                        d.as_str(),
                        asked.as_str()
                    );
                }
            }
            profile.engine.quantization = declared.or(profile.engine.quantization);
        }
        if let Some(tp) = self.tensor_parallel_size {
            profile.engine.tensor_parallel_size = tp;
        }
        if let Some(q) = self.quantization {
            profile.engine.quantization = Some(quantization(q));
        }
        if let Some(k) = self.kv_cache_dtype {
            profile.engine.kv_cache_dtype = match k {
                KvCacheDtypeArg::Auto => KvCacheDtype::Auto,
                KvCacheDtypeArg::Fp8 => KvCacheDtype::Fp8,
            };
        }
        if self.enable_prefix_caching {
            profile.engine.enable_prefix_caching = true;
        }
        if self.no_enable_prefix_caching {
            profile.engine.enable_prefix_caching = false;
        }
        Ok(())
    }
}
