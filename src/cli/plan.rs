//! `servesim plan`: the cheapest fleet that serves a traffic within its SLOs (issue 16), and
//! `servesim plan merge`, which joins the shard files of a plan split over machines. The search
//! lives in crate servesim-planner; this file turns flags into its inputs and writes its outputs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servesim_models::{KvCacheDtype, Quantization};
use servesim_planner::capacity::{Bisection, SimMeasure};
use servesim_planner::plan::{View, assemble};
use servesim_planner::prices::{Prices, gpu_name};
use servesim_planner::search::{Grid, PlanInputs, evaluate_all};
use servesim_planner::shard::{self, Shard};
use servesim_planner::traffic::{PRESETS, Shape, Traffic, TrafficSpec, parse_slo, preset};
use servesim_planner::{Plan, emit, frontier};
use servesim_sim::{Policy, Workload};

/// Requests in one simulated run at most (a fleet's verification included).
const MAX_REQUESTS: usize = 50_000;

/// `servesim plan [FLAGS]` or `servesim plan merge FILES...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PlanArgs {
    #[command(subcommand)]
    action: Option<PlanAction>,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum PlanAction {
    /// Join the JSON-lines files of `plan --shard i/N` into the output of one unsharded run.
    Merge(MergeArgs),
}

/// What is planned for: the model, the traffic and its SLOs, and the search space.
#[derive(Debug, Args)]
struct SearchArgs {
    /// A preset (chat, rag, code, summarise: token shape and default SLOs, docs/planning.md), a
    /// workload file FILE.toml of open-loop classes (their rates scaled together), or an
    /// inference-perf config FILE.yaml (its highest-rate stage, replayed at each rate).
    #[arg(long, default_value = "chat")]
    workload: String,
    /// A trace to replay instead (CSV or Mooncake JSON lines, as `simulate --trace`), compressed
    /// or stretched in time to each rate tried.
    #[arg(long, conflicts_with_all = ["input_tokens", "output_tokens"])]
    trace: Option<PathBuf>,
    /// Prompt lengths instead of the preset's: N or lognormal:mean=M,sd=S, normal:..., uniform:...
    #[arg(long, env = "SERVESIM_INPUT_TOKENS")]
    input_tokens: Option<String>,
    /// Answer lengths instead of the preset's (same forms).
    #[arg(long, env = "SERVESIM_OUTPUT_TOKENS")]
    output_tokens: Option<String>,
    /// Arrival process of synthetic traffic: poisson, constant or gamma:cv=X.
    #[arg(long, default_value = "poisson", env = "SERVESIM_ARRIVAL")]
    arrival: String,
    /// SLO terms, e.g. ttft_p95=1,tpot_p50=0.05 (ttft, tpot, e2e × mean, p50, p90, p95, p99;
    /// seconds); default: the preset's.
    #[arg(long, env = "SERVESIM_SLO")]
    slo: Option<String>,
    /// Peak arrival rate, requests per second.
    #[arg(long, env = "SERVESIM_RATE", conflicts_with = "users")]
    rate: Option<f64>,
    /// Or the peak from users: --users U --requests-per-user R (R per user per hour).
    #[arg(long, env = "SERVESIM_USERS", requires = "requests_per_user")]
    users: Option<f64>,
    /// Requests each user sends per hour at the peak (with --users).
    #[arg(long, env = "SERVESIM_REQUESTS_PER_USER", requires = "users")]
    requests_per_user: Option<f64>,
    /// Catalogue model.
    #[arg(long, default_value = "qwen2.5-7b-instruct", env = "SERVESIM_MODEL")]
    model: String,
    /// GPUs to consider (catalogue names or short forms: a6000, l40s, h100, h200, a100, l4, rtx4090).
    #[arg(long, default_value = "a6000,l40s,h100,h200", env = "SERVESIM_GPUS")]
    gpus: String,
    /// Tensor-parallel sizes to try (refused where vLLM refuses them).
    #[arg(
        long,
        default_value = "1,2,4,8",
        value_delimiter = ',',
        env = "SERVESIM_TP"
    )]
    tp: Vec<u32>,
    /// max_num_seqs values to try.
    #[arg(
        long,
        default_value = "64,256",
        value_delimiter = ',',
        env = "SERVESIM_MAX_NUM_SEQS"
    )]
    max_num_seqs: Vec<u32>,
    /// max_num_batched_tokens values to try.
    #[arg(
        long,
        default_value = "2048,8192",
        value_delimiter = ',',
        env = "SERVESIM_MAX_NUM_BATCHED_TOKENS"
    )]
    max_num_batched_tokens: Vec<u32>,
    /// gpu_memory_utilization values to try.
    #[arg(
        long,
        default_value = "0.9",
        value_delimiter = ',',
        env = "SERVESIM_GPU_MEMORY_UTILIZATION"
    )]
    gpu_memory_utilization: Vec<f64>,
    /// Weight quantisations to try: none (the checkpoint's bf16) and/or fp8 (vLLM quantises on
    /// load; AWQ and GPTQ need checkpoints of their own, so they are not searched).
    #[arg(long, default_value = "none", value_delimiter = ',', env = "SERVESIM_QUANTIZATION", value_parser = ["none", "fp8"])]
    quantization: Vec<String>,
    /// KV-cache dtypes to try: auto (the model's) and/or fp8.
    #[arg(long, default_value = "auto", value_delimiter = ',', env = "SERVESIM_KV_CACHE_DTYPE", value_parser = ["auto", "fp8"])]
    kv_cache_dtype: Vec<String>,
    /// max_model_len for every candidate (default: the model's context).
    #[arg(long, env = "SERVESIM_MAX_MODEL_LEN")]
    max_model_len: Option<u32>,
    /// Replicas = ceil(headroom × peak ÷ capacity per replica).
    #[arg(long, default_value_t = 1.2, env = "SERVESIM_HEADROOM")]
    headroom: f64,
    /// A fleet over an SLO target by at most this fraction is a near miss.
    #[arg(long, default_value_t = 0.05, env = "SERVESIM_TOLERANCE")]
    tolerance: f64,
    /// Requests per replica in each simulated run of the bisection.
    #[arg(long, default_value_t = 300, env = "SERVESIM_REQUESTS")]
    requests: usize,
    /// Seconds of arrivals in each simulated run, at least (an overloaded server needs time for
    /// its queue to break the SLO; a short run is one burst).
    #[arg(long, default_value_t = 60.0, env = "SERVESIM_PROBE_SECONDS")]
    probe_seconds: f64,
    /// Seed of arrivals and lengths.
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    seed: u64,
    /// Router of the winner's verification run (the same policies as simulate --router).
    #[arg(long, default_value = "least-requests", env = "SERVESIM_ROUTER", value_parser = super::fleet::parse_policy)]
    router: Policy,
    /// A prices file to use instead of models/catalogue/prices.toml (same shape).
    #[arg(long, env = "SERVESIM_PRICES")]
    prices: Option<PathBuf>,
    /// Override one card's price: GPU=USD_PER_HOUR (repeat for more).
    #[arg(long, env = "SERVESIM_GPU_COST", value_delimiter = ',')]
    gpu_cost: Vec<String>,
    /// Evaluate only this part of the search, i/N, and write it as JSON lines (then `plan merge`).
    #[arg(long, env = "SERVESIM_SHARD")]
    shard: Option<String>,
}

/// How the answer is written (also `plan merge`'s).
#[derive(Debug, Args)]
struct OutputArgs {
    /// Rank rows by cheapest ($/h), latency (TTFT p95) or balanced ($/h × e2e p95).
    #[arg(long, default_value = "cheapest", env = "SERVESIM_VIEW")]
    view: String,
    /// table or json.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Rows the table shows (JSON has them all).
    #[arg(long, default_value_t = 15, env = "SERVESIM_ROWS")]
    rows: usize,
    /// Write the cost-vs-goodput frontier to this SVG file.
    #[arg(long, env = "SERVESIM_SVG")]
    svg: Option<PathBuf>,
    /// Write the winner's vLLM command line and Kubernetes manifests into this folder.
    #[arg(long, env = "SERVESIM_EMIT")]
    emit: Option<PathBuf>,
    /// Write the output (or the shard's JSON lines) to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `plan merge`'s files.
#[derive(Debug, Args)]
struct MergeArgs {
    /// Shard files, or folders whose *.jsonl files are the shards.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Wait up to this many seconds for every shard to appear (a Kubernetes merge step that starts
    /// beside the shards' pods).
    #[arg(long, default_value_t = 0, env = "SERVESIM_WAIT")]
    wait: u64,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: &PlanArgs) -> Result<()> {
    if let Some(PlanAction::Merge(m)) = &args.action {
        return merge(m);
    }
    let (inputs, traffic) = inputs(&args.search)?;
    let measure = SimMeasure {
        traffic,
        requests: inputs.requests,
        probe_seconds: inputs.probe_seconds,
        max_requests: MAX_REQUESTS,
        seed: inputs.seed,
        router: args.search.router,
    };
    let all = inputs.candidates();
    if let Some(spec) = &args.search.shard {
        let shard: Shard = spec.parse()?;
        let part = evaluate_all(&inputs, &measure, &shard.select(&all))?;
        let text = shard::write(&inputs, shard, all.len(), &part)?;
        return match &args.output.out {
            // Whole or not at all: a merge waiting beside this shard never reads half a file.
            Some(path) => {
                let tmp = path.with_extension("partial");
                std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
            }
            None => write_out(None, &text),
        };
    }
    let results = evaluate_all(&inputs, &measure, &all)?;
    // Through the shard format, so that this run and a merge of shards give the same bytes.
    let (inputs, results) = shard::roundtrip(&inputs, &results)?;
    finish(&inputs, &results, &args.output, &measure)
}

/// The verification run's measure, rebuilt from a plan's inputs (a merge has no flags for it).
fn measure_from(inputs: &PlanInputs, traffic: Traffic) -> Result<SimMeasure> {
    Ok(SimMeasure {
        traffic,
        requests: inputs.requests,
        probe_seconds: inputs.probe_seconds,
        max_requests: MAX_REQUESTS,
        seed: inputs.seed,
        router: inputs
            .router
            .parse()
            .map_err(|e: servesim_sim::ParseError| anyhow::anyhow!("{e}"))?,
    })
}

fn finish(
    inputs: &PlanInputs,
    results: &[servesim_planner::CandidateResult],
    output: &OutputArgs,
    measure: &SimMeasure,
) -> Result<()> {
    let view: View = output.view.parse()?;
    let plan = assemble(inputs, results, view, Some(measure))?;
    let text = match output.format.as_str() {
        "json" => format!("{}\n", serde_json::to_string_pretty(&plan)?),
        _ => plan.table(output.rows),
    };
    write_out(output.out.as_deref(), &text)?;
    if let Some(path) = &output.svg {
        std::fs::write(path, frontier::svg(&plan)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &output.emit {
        emit_files(&plan, dir)?;
    }
    Ok(())
}

fn write_out(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn emit_files(plan: &Plan, dir: &Path) -> Result<()> {
    let Some(files) = emit::files(plan) else {
        bail!("--emit: no fleet serves the peak within the SLOs, nothing to deploy");
    };
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, f.text).with_context(|| format!("writing {}", path.display()))?;
        // The scripts are run as they are (`./vllm-serve.sh`, `./validate.sh URL`).
        #[cfg(unix)]
        if f.path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    eprintln!(
        "wrote the winner's deployment to {} (vllm-serve.sh, profile.toml, validate.sh, gpu/, servesim/)",
        dir.display()
    );
    Ok(())
}

/// The traffic the flags ask for, as a spec to keep in the plan's inputs, with the preset's or
/// the workload file's SLOs.
fn traffic_spec(a: &SearchArgs) -> Result<(TrafficSpec, Option<String>)> {
    if let Some(path) = &a.trace {
        let path = path.display().to_string();
        return Ok((TrafficSpec::Trace { path }, None));
    }
    if super::inference_perf::is_config_file(&a.workload) {
        // inference-perf's goodput constraints bound every request; a fleet whose 95th
        // percentile meets a bound gives at least 95 % goodput, so they become p95 terms.
        let bench = super::inference_perf::load(&a.workload, 0)?;
        let slo = bench.goodput.map(|g| {
            [
                ("ttft_p95", g.ttft),
                ("tpot_p95", g.tpot),
                ("e2e_p95", g.request_latency),
            ]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
        });
        let path = a.workload.clone();
        return Ok((
            TrafficSpec::InferencePerf { path },
            slo.filter(|s| !s.is_empty()),
        ));
    }
    if a.workload.ends_with(".toml") {
        let workload = Workload::load(Path::new(&a.workload))?;
        // Classes with SLOs are always held to their own (measured apart); --slo adds terms for
        // the traffic as a whole, and is needed when no class has SLOs.
        let slo = workload
            .classes
            .iter()
            .any(|c| !c.slo.is_empty())
            .then(String::new);
        let path = a.workload.clone();
        return Ok((TrafficSpec::File { path }, slo));
    }
    let Some(p) = preset(&a.workload) else {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        bail!(
            "unknown --workload '{}' (presets: {}; or a workload file FILE.toml)",
            a.workload,
            names.join(", ")
        );
    };
    let input = a
        .input_tokens
        .clone()
        .unwrap_or_else(|| p.input.to_string());
    let output = a
        .output_tokens
        .clone()
        .unwrap_or_else(|| p.output.to_string());
    let custom = a.input_tokens.is_some() || a.output_tokens.is_some() || a.arrival != "poisson";
    let name = if custom {
        format!("{} ({input} in, {output} out, {})", p.name, a.arrival)
    } else {
        p.name.to_string()
    };
    let spec = TrafficSpec::Synthetic {
        name,
        arrival: a.arrival.clone(),
        input,
        output,
    };
    Ok((spec, Some(p.slo.to_string())))
}

/// The traffic a spec describes (files and traces read now); `seed` draws an inference-perf
/// config's data and send times.
fn traffic_of(spec: &TrafficSpec, seed: u64) -> Result<Traffic> {
    Ok(match spec {
        TrafficSpec::Synthetic {
            name,
            arrival,
            input,
            output,
        } => Traffic::synthetic(name, arrival, input, output)?,
        TrafficSpec::File { path } => {
            let workload = Workload::load(Path::new(path))?;
            let name = Path::new(path)
                .file_name()
                .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
            Traffic::file(&name, workload)?
        }
        TrafficSpec::Trace { path } => trace_traffic(Path::new(path))?,
        TrafficSpec::InferencePerf { path } => inference_perf_traffic(path, seed)?,
    })
}

/// An inference-perf config's highest-rate stage as a replayable plan at that stage's rate.
/// Concurrent stages (no rate: the server sets it) and multi-turn data (each turn waits for the
/// previous answer, which a replay at another rate cannot keep) are refused; a file's limit on
/// requests in flight is not applied (the planner sizes for the open-loop arrivals).
fn inference_perf_traffic(path: &str, seed: u64) -> Result<Traffic> {
    use rand::SeedableRng;
    let bench = super::inference_perf::load(path, seed)?;
    if bench.sweep.is_some() {
        bail!(
            "{path}: a load.sweep's stages come from a saturation probe of the server; the planner bisects the rate itself (give fixed stages)"
        );
    }
    if bench.load == servesim_sim::inference_perf::config::LoadType::Concurrent {
        bail!(
            "{path}: a concurrent load has no arrival rate to plan for (use constant or poisson stages)"
        );
    }
    let Some((s, stage)) = bench
        .stages
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate).then(b.0.cmp(&a.0)))
    else {
        bail!("{path}: no load stages");
    };
    // The same draw of send times as `simulate --workload` makes for its first stage.
    let mut rng =
        rand::rngs::Xoshiro256PlusPlus::seed_from_u64(bench.seed() ^ 0x5eed_71be_5e0d_0001);
    let (plan, gates) = bench.stage_plan(s, &mut rng);
    if gates.after.iter().any(Option::is_some) {
        bail!(
            "{path}: multi-turn data waits for each answer; the planner replays open-loop arrivals only"
        );
    }
    if plan.arrivals.len() < 2 || stage.rate.is_nan() || stage.rate <= 0.0 {
        bail!("{path}: stage {s} has fewer than two requests");
    }
    let file = Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Traffic {
        name: format!("{file} stage {s}"),
        shape: Shape::Replay {
            plan,
            rate: stage.rate,
        },
    })
}

/// The plan's inputs and the traffic they describe.
fn inputs(a: &SearchArgs) -> Result<(PlanInputs, Traffic)> {
    let (spec, default_slo) = traffic_spec(a)?;
    let traffic = traffic_of(&spec, a.seed)?;
    let Some(slo) = a.slo.clone().or(default_slo) else {
        bail!("--slo is needed (this workload has no default SLOs)");
    };
    if !slo.is_empty() {
        parse_slo(&slo)?;
    }
    let (peak_rate, rate_source) = match (a.rate, a.users, a.requests_per_user) {
        (Some(r), _, _) => (r, format!("--rate {r}")),
        (None, Some(u), Some(per)) => (
            u * per / 3600.0,
            format!("{u} users × {per} requests per user per hour"),
        ),
        _ => {
            bail!("give the peak: --rate REQ_PER_S, or --users U --requests-per-user R (per hour)")
        }
    };
    if !(peak_rate.is_finite() && peak_rate > 0.0) {
        bail!("the peak rate must be > 0 requests per second");
    }
    if !(a.headroom.is_finite() && a.headroom >= 1.0) {
        bail!("--headroom must be >= 1");
    }
    if !(a.tolerance.is_finite() && a.tolerance >= 0.0) {
        bail!("--tolerance must be >= 0");
    }
    if a.requests < 10 {
        bail!("--requests must be >= 10");
    }
    if !(a.probe_seconds.is_finite() && a.probe_seconds >= 0.0) {
        bail!("--probe-seconds must be >= 0");
    }
    let gpus = a
        .gpus
        .split(',')
        .map(|g| gpu_name(g).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let mut prices = match &a.prices {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --prices {}", path.display()))?;
            Prices::parse(&text, &path.display().to_string())?
        }
        None => Prices::builtin()?,
    };
    for spec in &a.gpu_cost {
        prices.override_one(spec)?;
    }
    let mut summary = traffic.summary();
    summary.spec = Some(spec);
    let inputs = PlanInputs {
        model: a.model.clone(),
        grid: Grid {
            gpus,
            tensor_parallel: a.tp.clone(),
            max_num_seqs: a.max_num_seqs.clone(),
            max_num_batched_tokens: a.max_num_batched_tokens.clone(),
            gpu_memory_utilization: a.gpu_memory_utilization.clone(),
            max_model_len: a.max_model_len,
            quantization: a
                .quantization
                .iter()
                .map(|q| (q == "fp8").then_some(Quantization::Fp8))
                .collect(),
            kv_cache_dtype: a
                .kv_cache_dtype
                .iter()
                .map(|k| {
                    if k == "fp8" {
                        KvCacheDtype::Fp8
                    } else {
                        KvCacheDtype::Auto
                    }
                })
                .collect(),
        },
        traffic: summary,
        slo,
        peak_rate,
        rate_source,
        headroom: a.headroom,
        tolerance: a.tolerance,
        requests: a.requests,
        probe_seconds: a.probe_seconds,
        seed: a.seed,
        bisection: Bisection::default(),
        router: a.router.to_string(),
        prices,
    };
    Ok((inputs, traffic))
}

/// A trace as a replayable plan at its own mean rate.
fn trace_traffic(path: &Path) -> Result<Traffic> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --trace {}", path.display()))?;
    let name = path.display().to_string();
    let trace = servesim_validator::trace::parse_trace(&text, &name)?;
    let plan = servesim_validator::trace::trace_plan(
        &trace,
        servesim_validator::trace::MOONCAKE_BLOCK_TOKENS,
    );
    let last = plan.arrivals.last().map_or(0.0, |a| a.at);
    if plan.arrivals.len() < 2 || last <= 0.0 {
        bail!("--trace {name}: needs at least two requests at different times");
    }
    let rate = (plan.arrivals.len() - 1) as f64 / last;
    let file = path
        .file_name()
        .map_or(name, |n| n.to_string_lossy().into_owned());
    Ok(Traffic {
        name: file,
        shape: Shape::Replay { plan, rate },
    })
}

/// The shard files named on the command line (folders: their *.jsonl files, sorted).
fn shard_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in args {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn merge(m: &MergeArgs) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(m.wait);
    let (inputs, results) = loop {
        let paths = shard_paths(&m.files)?;
        let files = paths
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| (p.display().to_string(), t))
                    .with_context(|| format!("reading {}", p.display()))
            })
            .collect::<Result<Vec<_>>>();
        let merged = files.and_then(|f| shard::merge(&f).map_err(anyhow::Error::from));
        match merged {
            Ok(done) => break done,
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            // Shards still being written: look again shortly.
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(2)),
        }
    };
    // The winner is verified on the traffic the shards ran, rebuilt from the inputs' spec.
    let spec = inputs.traffic.spec.clone().ok_or_else(|| {
        anyhow::anyhow!("the shard header does not say how to rebuild the traffic")
    })?;
    let measure = measure_from(&inputs, traffic_of(&spec, inputs.seed)?)?;
    finish(&inputs, &results, &m.output, &measure)
}
