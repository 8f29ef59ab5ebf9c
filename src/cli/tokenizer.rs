//! `servesim tokenizer --profile P --out DIR`: the BPE table servesim counts with, as a Hugging Face
//! tokenizer directory, for benchmark clients that count tokens with one (inference-perf needs
//! `tokenizer.pretrained_model_name_or_path`) on a machine that cannot reach huggingface.co.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use servesim_models::Profile;

/// Flags of `servesim tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile: its model's table.
    #[arg(long, default_value = servesim_models::DEFAULT_PROFILE, env = "SERVESIM_PROFILE")]
    pub profile: String,
    /// Directory to write `tokenizer.json` and `tokenizer_config.json` into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// Write the two files and say where.
pub fn run(args: &TokenizerArgs) -> Result<()> {
    let profile = Profile::load(&args.profile)?;
    let max_model_len = profile.engine.max_model_len(profile.model.max_context);
    let hf = servesim_models::hf_tokenizer::hf_tokenizer(&profile.model, max_model_len);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, value) in [
        ("tokenizer.json", &hf.tokenizer),
        ("tokenizer_config.json", &hf.config),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, serde_json::to_vec(value)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{}: the {:?} table of {} as a Hugging Face tokenizer",
        args.out.display(),
        profile.model.tokenizer,
        profile.model.hf_id
    );
    Ok(())
}
