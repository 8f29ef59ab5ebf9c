//! `--hf-config`: a Hugging Face config.json becomes the same model the catalogue carries, and an
//! unsupported one is refused naming what it lacks.

use servesim_models::{LlmSpec, Profile};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../fixtures/hf-config/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The catalogue's entry for `model` (through a profile that names it).
fn catalogue(model: &str) -> LlmSpec {
    let text = format!(
        "name = \"t\"\nmodel = {model:?}\n[gpu]\nbase = \"h200\"\nmemory_bytes = 1_000_000_000_000\n"
    );
    Profile::from_toml(&text, "t").expect("profile").model
}

#[test]
fn configs_of_every_family_match_the_catalogue_shapes() {
    for (file, model) in [
        ("llama-3.1-70b-instruct.json", "llama-3.1-70b-instruct"),
        ("qwen2.5-72b-instruct.json", "qwen2.5-72b-instruct"),
        (
            "mixtral-8x7b-instruct-v0.1.json",
            "mixtral-8x7b-instruct-v0.1",
        ),
        ("qwen3-30b-a3b.json", "qwen3-30b-a3b"),
    ] {
        let got = LlmSpec::from_hf_config(&fixture(file), file).expect(file);
        let want = catalogue(model);
        // The parameter count summed from the config's shapes is the model card's.
        assert_eq!(got.params, want.params, "{file}");
        assert_eq!(
            (
                got.num_layers,
                got.hidden_size,
                got.num_attention_heads,
                got.num_kv_heads,
                got.head_dim,
                got.vocab_size,
                got.max_context,
                got.tie_word_embeddings,
            ),
            (
                want.num_layers,
                want.hidden_size,
                want.num_attention_heads,
                want.num_kv_heads,
                want.head_dim,
                want.vocab_size,
                want.max_context,
                want.tie_word_embeddings,
            ),
            "{file}"
        );
        assert_eq!(
            (
                got.num_experts,
                got.num_experts_per_tok,
                got.moe_intermediate_size
            ),
            (
                want.num_experts,
                want.num_experts_per_tok,
                want.moe_intermediate_size
            ),
            "{file}"
        );
        assert_eq!(got.hf_id, want.hf_id, "{file}");
    }
}

#[test]
fn an_unsupported_architecture_is_refused_naming_what_it_lacks() {
    let err = LlmSpec::from_hf_config(&fixture("gpt2.json"), "gpt2.json")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "--hf-config gpt2.json: architecture 'GPT2LMHeadModel' (model_type 'gpt2') is not one \
         servesim models (it reads Llama, Qwen2, Qwen3, Mistral, Mixtral and Qwen3-MoE configs); \
         it also lacks hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, \
         max_position_embeddings"
    );
    // A supported family with fields missing names them.
    let err = LlmSpec::from_hf_config(
        r#"{"model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 48}"#,
        "cut.json",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert_eq!(
        err,
        "--hf-config cut.json: a Qwen3-MoE config needs num_attention_heads, \
         moe_intermediate_size, vocab_size, max_position_embeddings, num_experts, \
         num_experts_per_tok"
    );
    assert!(LlmSpec::from_hf_config("[1, 2]", "list.json").is_err());
    assert!(LlmSpec::from_hf_config("{", "broken.json").is_err());
}

#[test]
fn a_quantised_checkpoint_declares_its_method() {
    use servesim_models::Quantization;
    use servesim_models::hf_config::hf_quantization;
    let awq = r#"{"model_type": "qwen2", "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}"#;
    assert_eq!(
        hf_quantization(awq, "awq.json").ok(),
        Some(Some(Quantization::Awq))
    );
    assert_eq!(
        hf_quantization(&fixture("llama-3.1-70b-instruct.json"), "llama").ok(),
        Some(None)
    );
    let other = r#"{"quantization_config": {"quant_method": "bitsandbytes"}}"#;
    let err = hf_quantization(other, "bnb.json")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("'bitsandbytes' is not modelled"), "{err}");
}
