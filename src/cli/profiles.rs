//! `servesim profiles [show NAME]`.

use anyhow::Result;
use clap::{Args, Subcommand};
use servesim_models::Profile;

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print a profile's inputs and derived figures (weights, KV bytes per token, KV capacity, step time).
    Show {
        /// Built-in name, GPU+MODEL, or a path to a .toml profile.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

const GIB: f64 = (1u64 << 30) as f64;

pub fn run(args: ProfilesArgs) -> Result<()> {
    match args.action {
        None => {
            println!("{:<24} description", "profile");
            for name in Profile::builtin_names() {
                let p = Profile::builtin(&name)?;
                let marker = if name == servesim_models::DEFAULT_PROFILE {
                    " (default)"
                } else {
                    ""
                };
                println!("{name:<24} {}{marker}", p.description);
            }
            let (gpus, models) = Profile::catalogue_names();
            println!("\nAny GPU+MODEL pair also works, e.g. l40s+llama-3.1-8b-instruct.");
            println!("GPUs:   {}", gpus.join(", "));
            println!("models: {}", models.join(", "));
            Ok(())
        }
        Some(Action::Show { name, json }) => show(&name, json),
    }
}

fn show(name: &str, json: bool) -> Result<()> {
    let p = Profile::load(name)?;
    let d = p.derive()?;
    if json {
        let v = serde_json::json!({ "profile": p, "derived": d });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let (g, m, e) = (&p.gpu, &p.model, &p.engine);
    println!("profile {}: {}", p.name, p.description);
    println!(
        "gpu     {} ({}): {:.1} GiB, {:.0} GB/s, {:.1} TFLOP/s bf16 dense, {} SMs; achievable {:.0} % of bandwidth, {:.0} % of FLOP/s",
        g.display_name,
        g.name,
        g.memory_bytes as f64 / GIB,
        g.memory_bandwidth_bps / 1e9,
        g.tensor_flops / 1e12,
        g.sm_count,
        g.bandwidth_efficiency * 100.0,
        g.flops_efficiency * 100.0
    );
    println!(
        "model   {}: {:.2} B params, {} layers, hidden {}, intermediate {}, {} heads / {} KV heads × {}, vocab {}",
        m.hf_id,
        m.params as f64 / 1e9,
        m.num_layers,
        m.hidden_size,
        m.intermediate_size,
        m.num_attention_heads,
        m.num_kv_heads,
        m.head_dim,
        m.vocab_size
    );
    if m.is_moe() {
        println!(
            "        mixture of experts: {} experts of intermediate {} per layer, {} per token ({:.2} B active params)",
            m.num_experts,
            m.moe_intermediate_size,
            m.num_experts_per_tok,
            m.active_params() as f64 / 1e9
        );
    }
    println!(
        "engine  max_num_seqs {}, max_num_batched_tokens {}, block_size {}, gpu_memory_utilization {}, chunked prefill {}, async scheduling {}, policy {}, preemption {}",
        e.max_num_seqs,
        e.max_num_batched_tokens,
        e.block_size,
        e.gpu_memory_utilization,
        on_off(e.chunked_prefill),
        on_off(e.async_scheduling),
        serde_json::to_value(e.policy)?.as_str().unwrap_or_default(),
        serde_json::to_value(e.preemption)?
            .as_str()
            .unwrap_or_default()
    );
    let link = &g.interconnect;
    println!(
        "layout  tensor parallel {} over {} ({:.0} GB/s per direction, {:.0} % achievable, {:.0} µs per all-reduce); quantization {}; KV cache {}",
        d.tensor_parallel_size,
        link.kind,
        link.bandwidth_bps / 1e9,
        link.efficiency * 100.0,
        link.latency_s * 1e6,
        e.quantization.map_or("none", |q| q.as_str()),
        e.kv_cache_dtype.as_str()
    );
    println!();
    println!(
        "weight bytes             {} ({:.2} GiB); per GPU {} ({:.2} GiB)",
        group(d.weight_bytes),
        d.weight_bytes as f64 / GIB,
        group(d.weight_bytes_per_gpu),
        d.weight_bytes_per_gpu as f64 / GIB
    );
    println!(
        "KV bytes per token       {} ({} per GPU)",
        group(d.kv_bytes_per_token),
        group(d.kv_bytes_per_token_per_gpu)
    );
    println!(
        "activation reserve       {:.2} GiB (+ {:.2} GiB runtime)",
        d.activation_bytes as f64 / GIB,
        e.runtime_reserve_bytes as f64 / GIB
    );
    println!(
        "KV cache                 {:.2} GiB ({:.2} GiB per GPU) = {} tokens in {} blocks of {}",
        d.kv_cache_bytes as f64 / GIB,
        d.kv_cache_bytes_per_gpu as f64 / GIB,
        group(d.kv_tokens),
        group(d.kv_blocks),
        e.block_size
    );
    println!("max_model_len            {}", d.max_model_len);
    println!(
        "single-sequence decode   {:.2} ms per step ({:.1} tok/s)",
        d.single_decode_step_s * 1e3,
        1.0 / d.single_decode_step_s
    );
    println!(
        "all-reduce per layer     {:.1} µs (two all-reduces of one token's activations)",
        d.allreduce_per_layer_s * 1e6
    );
    for w in p.vllm_warnings() {
        println!("vLLM warns               {w}");
    }
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// 57344 -> "57,344".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
