//! Engine arguments that `serve`, `simulate` and `bench --target sim` take on top of a profile, spelt
//! as `vllm serve` spells them.

use clap::Args;
use servesim_models::Profile;

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
}

impl EngineFlags {
    /// Apply the flags given to `profile`'s engine.
    pub fn apply(&self, profile: &mut Profile) {
        if self.enable_prefix_caching {
            profile.engine.enable_prefix_caching = true;
        }
        if self.no_enable_prefix_caching {
            profile.engine.enable_prefix_caching = false;
        }
    }
}
