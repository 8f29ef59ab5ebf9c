//! `servesim cost` (what one iteration costs, and why) and `servesim calibrate` (fit a GPU's terms
//! to a silicon table).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use servesim_models::silicon::{
    Calibration, Comparison, FITTED_TERMS, SiliconTable, calibrate, term_value,
};
use servesim_models::{CostModel, GpuSpec, Iteration, IterationCost, PrefillChunk, Profile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile.
    #[arg(long, env = "SERVESIM_PROFILE", default_value = servesim_models::DEFAULT_PROFILE)]
    profile: String,
    /// B decoding sequences whose new query attends C tokens each (C counts the new token): BxC.
    /// Repeat it, and add --prefill, for one mixed iteration.
    #[arg(long, value_name = "BxC")]
    decode: Vec<String>,
    /// A prefill chunk of N new tokens on top of K tokens already in the KV cache: N or N+K.
    #[arg(long, value_name = "N[+K]")]
    prefill: Vec<String>,
    /// Print the decode table instead: B from 1 to max_num_seqs at a few contexts, with tok/s.
    #[arg(long, conflicts_with_all = ["decode", "prefill", "silicon"])]
    sweep: bool,
    /// Price every row of a silicon table (forward passes timed on a GPU) with this profile's GPU
    /// and show model and silicon side by side.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["decode", "prefill"])]
    silicon: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    engine: super::engine_flags::EngineFlags,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// A silicon table written by the probe (validator/probe/silicon_probe.py).
    #[arg(long, value_name = "FILE")]
    silicon: PathBuf,
    /// The catalogue GPU the table was timed on (its data-sheet peaks are kept; its achieved
    /// fractions are the fit's starting point).
    #[arg(long, value_name = "BASE")]
    gpu: String,
    /// Where to write the fitted GPU profile (TOML); `-` for standard output.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Catalogue name of the written GPU (default: BASE-calibrated).
    #[arg(long)]
    name: Option<String>,
}

/// Parse `BxC`.
fn parse_decode(s: &str) -> Result<(u32, u32)> {
    let (b, c) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--decode {s:?}: expected BxC, e.g. 64x1024"))?;
    let b: u32 = b
        .trim()
        .parse()
        .with_context(|| format!("--decode {s:?}: B is not a count"))?;
    let c: u32 = c
        .trim()
        .parse()
        .with_context(|| format!("--decode {s:?}: C is not a count"))?;
    if b == 0 || c == 0 {
        bail!("--decode {s:?}: B and C must be at least 1");
    }
    if b > 1_000_000 {
        bail!("--decode {s:?}: B above 1,000,000 sequences is not an iteration any engine runs");
    }
    Ok((b, c))
}

/// Parse `N` or `N+K`.
fn parse_prefill(s: &str) -> Result<PrefillChunk> {
    let (n, k) = match s.split_once('+') {
        Some((n, k)) => (n, k),
        None => (s, "0"),
    };
    let tokens: u32 = n
        .trim()
        .parse()
        .with_context(|| format!("--prefill {s:?}: expected N or N+K, e.g. 512+1024"))?;
    let cached: u32 = k
        .trim()
        .parse()
        .with_context(|| format!("--prefill {s:?}: K is not a count"))?;
    if tokens == 0 {
        bail!("--prefill {s:?}: N must be at least 1");
    }
    Ok(PrefillChunk {
        tokens,
        cached,
        samples: true,
    })
}

pub fn cost(args: &CostArgs) -> Result<()> {
    let mut profile = Profile::load_unchecked(&args.profile)?;
    args.engine.apply(&mut profile)?;
    // Refuse what vLLM would refuse (a TP that does not divide the heads, weights that do not fit).
    profile.derive()?;
    for w in profile.vllm_warnings() {
        eprintln!("servesim: vLLM would warn: {w}");
    }
    if let Some(path) = &args.silicon {
        let table = read_table(path)?;
        let c = table.compare(&profile, &profile.gpu);
        return match args.format {
            Format::Json => print_json(&serde_json::json!({
                "profile": profile.name,
                "silicon": path.display().to_string(),
                "device": table.device,
                "median_abs_error": c.median_abs_error,
                "max_abs_error": c.max_abs_error,
                "rows": c.rows,
            })),
            Format::Table => emit(&format!(
                "# {} against {} ({})\n{}",
                profile.name,
                path.display(),
                table.device,
                comparison_table(&c)
            )),
        };
    }
    let model = profile.cost_model();
    if args.sweep {
        return sweep(&profile, &model, args.format);
    }
    let mut decodes = Vec::new();
    for d in &args.decode {
        let (b, c) = parse_decode(d)?;
        decodes.extend(std::iter::repeat_n(c, b as usize));
    }
    let prefills = args
        .prefill
        .iter()
        .map(|p| parse_prefill(p))
        .collect::<Result<Vec<_>>>()?;
    if decodes.is_empty() && prefills.is_empty() {
        bail!(
            "nothing to cost: give --decode BxC and/or --prefill N[+K], or --sweep, or --silicon FILE"
        );
    }
    let c = model.iteration(&Iteration {
        prefills: &prefills,
        decode_contexts: &decodes,
    });
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "profile": profile.name,
            "decode": args.decode,
            "prefill": args.prefill,
            "total_s": c.total_s,
            "gpu_s": c.gpu_s,
            "host_s": c.host_s,
            "silicon_s": c.silicon_s(),
            "parts": c.parts,
            "flops": c.flops,
            "bytes": c.bytes,
        })),
        Format::Table => emit(&breakdown(&profile, &c)),
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Write to stdout; a reader that went away (`servesim cost --sweep | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn ms(s: f64) -> String {
    format!("{:9.3} ms", s * 1e3)
}

/// One iteration's terms, one per line.
fn breakdown(profile: &Profile, c: &IterationCost) -> String {
    let q = &c.parts;
    let mut out = String::new();
    let e = &profile.engine;
    let _ = writeln!(
        out,
        "# one iteration on {} ({}; tensor parallel {}, quantization {}, KV cache {}; per-GPU terms)",
        profile.name,
        profile.model.hf_id,
        e.tensor_parallel_size,
        e.quantization.map_or("none", |q| q.as_str()),
        e.kv_cache_dtype.as_str()
    );
    for (name, v, why) in [
        (
            "weights",
            q.weights_s,
            "layer weights streamed at GEMV/GEMM bandwidth",
        ),
        (
            "gemm",
            q.gemm_s,
            "dense GEMM compute above the weight floor",
        ),
        (
            "attention",
            q.attention_s,
            "KV reads (decode), causal FLOPs (prefill)",
        ),
        (
            "activations",
            q.activations_s,
            "activations through GEMMs, norms, residuals",
        ),
        (
            "layer overhead",
            q.layer_overhead_s,
            "fixed kernel time per layer and step",
        ),
        ("logits", q.logits_s, "LM head over the sampled sequences"),
        (
            "all-reduce",
            q.allreduce_s,
            "tensor-parallel all-reduces and logits gather",
        ),
        (
            "sampler",
            q.sampler_s,
            "sampler passes over the fp32 logits",
        ),
    ] {
        let _ = writeln!(out, "{name:16}{}   {why}", ms(v));
    }
    let _ = writeln!(
        out,
        "{:16}{}   device time of the forward pass",
        "gpu",
        ms(c.gpu_s)
    );
    let _ = writeln!(
        out,
        "{:16}{}   engine CPU time ({})",
        "host",
        ms(c.host_s),
        if profile.engine.async_scheduling {
            "overlapped with the GPU: async scheduling"
        } else {
            "added to the GPU: no async scheduling"
        }
    );
    let _ = writeln!(
        out,
        "{:16}{}   the iteration ({:.1} GFLOP, {:.2} GB moved)",
        "total",
        ms(c.total_s),
        c.flops / 1e9,
        c.bytes / 1e9
    );
    out
}

fn sweep(profile: &Profile, model: &CostModel, format: Format) -> Result<()> {
    let max = profile.engine.max_num_seqs.max(1);
    let mut batches = Vec::new();
    let mut b = 1u32;
    while b < max {
        batches.push(b);
        b *= 2;
    }
    batches.push(max);
    let contexts = [128u32, 1024, 4096];
    let mut rows = Vec::new();
    for &ctx in &contexts {
        for &b in &batches {
            let decodes = vec![ctx; b as usize];
            let c = model.iteration(&Iteration {
                prefills: &[],
                decode_contexts: &decodes,
            });
            rows.push((b, ctx, c));
        }
    }
    match format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(b, ctx, c)| {
                    serde_json::json!({
                        "batch": b, "context": ctx, "total_s": c.total_s, "gpu_s": c.gpu_s,
                        "host_s": c.host_s, "tok_s": f64::from(*b) / c.total_s, "parts": c.parts,
                    })
                })
                .collect();
            print_json(&serde_json::json!({ "profile": profile.name, "decode": v }))
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# decode steps on {} ({}, tensor parallel {}; max_num_seqs {max}); C counts the new token",
                profile.name, profile.model.hf_id, profile.engine.tensor_parallel_size
            );
            let _ = writeln!(
                out,
                "{:>6} {:>6} {:>10} {:>10} {:>10} {:>10}  bound by",
                "B", "C", "total ms", "gpu ms", "host ms", "tok/s"
            );
            for (b, ctx, c) in &rows {
                let q = &c.parts;
                let bound = if q.host_exposed_s > 0.0 {
                    "host"
                } else if q.attention_s > q.weights_s + q.gemm_s {
                    "attention"
                } else if q.allreduce_s > q.weights_s + q.gemm_s {
                    "all-reduce"
                } else if q.gemm_s > 0.14 * q.weights_s {
                    // Past the ridge: at equal compute and weight time the smooth maximum adds
                    // 2^(1/k) − 1 ≈ 14 % (k ≈ 5).
                    "gemm compute"
                } else {
                    "weight streaming"
                };
                let _ = writeln!(
                    out,
                    "{b:>6} {ctx:>6} {:>10.3} {:>10.3} {:>10.3} {:>10.0}  {bound}",
                    c.total_s * 1e3,
                    c.gpu_s * 1e3,
                    c.host_s * 1e3,
                    f64::from(*b) / c.total_s
                );
            }
            emit(&out)
        }
    }
}

fn read_table(path: &PathBuf) -> Result<SiliconTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read silicon table {}", path.display()))?;
    Ok(SiliconTable::from_json(&text, &path.display().to_string())?)
}

/// Model and silicon side by side, row by row.
fn comparison_table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:34} {:>12} {:>12} {:>8}",
        "iteration", "silicon ms", "model ms", "error"
    );
    for r in &c.rows {
        let _ = writeln!(
            out,
            "{:34} {:>12.3} {:>12.3} {:>+7.1}%",
            r.row.shape.label(),
            r.row.measured_s * 1e3,
            r.model_s * 1e3,
            r.error * 100.0
        );
    }
    let _ = writeln!(
        out,
        "{} rows: median |error| {:.1} %, max {:.1} %",
        c.rows.len(),
        c.median_abs_error * 100.0,
        c.max_abs_error * 100.0
    );
    out
}

pub fn calibrate_gpu(args: &CalibrateArgs) -> Result<()> {
    let table = read_table(&args.silicon)?;
    // The engine does not enter GPU time; any catalogue model gives the profile its shape, and the
    // table's own decoder replaces it.
    let profile = Profile::builtin(&format!("{}+qwen2.5-7b-instruct", args.gpu))?;
    let before = table.compare(&profile, &profile.gpu);
    let fit = calibrate(&table, &profile, &profile.gpu);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-calibrated", args.gpu));
    let toml = gpu_toml(&fit, &name, &args.silicon, &table, before.median_abs_error);
    if args.out.as_os_str() == "-" {
        emit(&toml)?;
    } else {
        std::fs::write(&args.out, &toml)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
    }
    eprint!("{}", comparison_table(&fit.comparison));
    eprintln!(
        "fitted {} from {} rows of {} (median |error| {:.1} % before, {:.1} % after){}",
        name,
        table.rows.len(),
        args.silicon.display(),
        before.median_abs_error * 100.0,
        fit.comparison.median_abs_error * 100.0,
        if args.out.as_os_str() == "-" {
            String::new()
        } else {
            format!("; wrote {}", args.out.display())
        }
    );
    Ok(())
}

/// The fitted GPU as a catalogue TOML file, every number with its source.
fn gpu_toml(
    fit: &Calibration,
    name: &str,
    source: &std::path::Path,
    table: &SiliconTable,
    before: f64,
) -> String {
    let g: &GpuSpec = &fit.gpu;
    let src = source.display();
    let c = &fit.comparison;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# {} calibrated by `servesim calibrate` from {src} ({} rows timed on {}).",
        g.display_name,
        table.rows.len(),
        table.device
    );
    let _ = writeln!(
        t,
        "# Fit: median |error| {:.1} %, max {:.1} % (the base's terms gave a median of {:.1} %).",
        c.median_abs_error * 100.0,
        c.max_abs_error * 100.0,
        before * 100.0
    );
    let _ = writeln!(t, "name = {name:?}");
    let _ = writeln!(t, "display_name = {:?}", g.display_name);
    let _ = writeln!(t, "# Data sheet (kept from the base GPU).");
    let _ = writeln!(t, "memory_bytes = {}", g.memory_bytes);
    let _ = writeln!(t, "memory_bandwidth_bps = {:e}", g.memory_bandwidth_bps);
    let _ = writeln!(t, "tensor_flops = {:e}", g.tensor_flops);
    let _ = writeln!(t, "sm_count = {}", g.sm_count);
    for (i, term) in FITTED_TERMS.iter().enumerate() {
        let value = term_value(g, i);
        let why = if i == 0 && fit.bandwidth_measured {
            format!("measured: the table's gemv_stream_2GiB microbenchmark ({src})")
        } else {
            format!("fitted to {src}")
        };
        let _ = writeln!(t, "# {why}.");
        if value.abs() >= 0.01 {
            let _ = writeln!(t, "{term} = {value:.4}");
        } else {
            let _ = writeln!(t, "{term} = {value:.3e}");
        }
    }
    let _ = writeln!(
        t,
        "# Kept from the base GPU (not separable from the per-layer time with one model)."
    );
    let _ = writeln!(t, "step_overhead_s = {}", g.step_overhead_s);
    if let Some(fp8) = g.fp8_tensor_flops {
        let _ = writeln!(t, "# Data sheet (kept from the base GPU).");
        let _ = writeln!(t, "fp8_tensor_flops = {fp8:e}");
    }
    let _ = writeln!(
        t,
        "# Silicon-calibrated: the fitted terms above come from a table timed on the card."
    );
    let _ = writeln!(t, "calibrated_from = {:?}", src.to_string());
    let link = &g.interconnect;
    let _ = writeln!(t, "# The base GPU's link (see its catalogue file).");
    let _ = writeln!(t, "[interconnect]");
    let _ = writeln!(t, "kind = {:?}", link.kind);
    let _ = writeln!(t, "bandwidth_bps = {:e}", link.bandwidth_bps);
    let _ = writeln!(t, "efficiency = {}", link.efficiency);
    let _ = writeln!(t, "latency_s = {:e}", link.latency_s);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_arguments_parse_or_say_why_not() {
        assert_eq!(parse_decode("64x1024").ok(), Some((64, 1024)));
        assert!(parse_decode("64").is_err());
        assert!(parse_decode("0x5").is_err());
        let p = parse_prefill("512+1024").expect("chunk");
        assert_eq!((p.tokens, p.cached), (512, 1024));
        assert_eq!(parse_prefill("16").map(|p| p.cached).ok(), Some(0));
        assert!(parse_prefill("x").is_err() && parse_prefill("0").is_err());
    }
}
