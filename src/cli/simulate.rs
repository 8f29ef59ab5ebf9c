//! `servesim simulate` and `servesim demo`: drills and trace replay in virtual time.

use anyhow::{Context, Result, bail};
use clap::Args;
use servesim_models::{DEFAULT_PROFILE, Profile, SchedulingPolicy};
use servesim_sim::{Fleet, LevelPlan, Workload, WorkloadPlan};

use super::fleet::{FleetArgs, OpenLoopArgs, fleet_stats, print_replicas};
use servesim_validator::report::{self, Format};
use servesim_validator::rounding::fixed;
use servesim_validator::trace::{parse_trace, trace_plan, trace_report};
use servesim_validator::{
    DrillKind, DrillParams, DrillResult, DrillServer, Start, SweepSummary, Tier, run_drill,
};

/// Drill selection and the overrides of drills.md's defaults.
#[derive(Debug, Args, Clone)]
pub struct DrillArgs {
    /// baseline, saturation, overload, prefill, decode, batching, or all.
    #[arg(long, default_value = "all", env = "SERVESIM_DRILL")]
    pub drill: String,
    /// Concurrency levels (sweep drills) or the fixed concurrency (prefill, decode), comma-separated.
    #[arg(long, value_delimiter = ',', env = "SERVESIM_CONCURRENCY")]
    pub concurrency: Option<Vec<usize>>,
    /// Requests per level (raised to at least the concurrency).
    #[arg(long, env = "SERVESIM_REQUESTS_PER_LEVEL")]
    pub requests_per_level: Option<usize>,
    /// max_tokens: the sweep for the decode drill, the fixed cap for the others.
    #[arg(long, value_delimiter = ',', env = "SERVESIM_MAX_TOKENS")]
    pub max_tokens: Option<Vec<u32>>,
    /// Approximate input lengths of the prefill drill, comma-separated; with `--arrival`, the
    /// input-length distribution (a number, or lognormal:mean=M,sd=S, normal:..., uniform:...).
    #[arg(long, env = "SERVESIM_INPUT_TOKENS")]
    pub input_tokens: Option<String>,
    /// A request meets the SLO when its TTFT is at most this (seconds).
    #[arg(long, default_value_t = 1.0, env = "SERVESIM_TTFT_SLO")]
    pub ttft_slo: f64,
    /// ... and its e2e latency at most this (seconds; 0 = no bound).
    #[arg(long, default_value_t = 0.0, env = "SERVESIM_E2E_SLO")]
    pub e2e_slo: f64,
    /// How the simulated server starts each drill (every drill gets a server of its own, so a
    /// drill gives the same rows alone or in a suite): cold (the profile's one-off warm-up hits its
    /// first requests), warm, or auto = the baseline drill cold, as the reference suite began, and
    /// the others warm.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cold", "warm"], env = "SERVESIM_START")]
    pub start: String,
    /// Overload sweep: gpu (conc 32..512, max_tokens 512, 64 requests) or cpu (conc 1..32, 12 requests).
    #[arg(long, default_value = "gpu", value_parser = parse_tier, env = "SERVESIM_TIER")]
    pub tier: Tier,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    match s {
        "gpu" => Ok(Tier::Gpu),
        "cpu" => Ok(Tier::Cpu),
        _ => Err(format!("unknown tier '{s}' (gpu, cpu)")),
    }
}

impl DrillArgs {
    pub fn drills(&self) -> Result<Vec<DrillKind>> {
        if self.drill == "all" {
            return Ok(DrillKind::ALL.to_vec());
        }
        self.drill
            .split(',')
            .map(|d| d.parse::<DrillKind>().map_err(anyhow::Error::msg))
            .collect()
    }

    /// How the simulated server starts each drill (`--start`; clap has checked the spelling).
    pub fn start(&self) -> Start {
        self.start.parse().unwrap_or(Start::Auto)
    }

    pub fn params(&self) -> Result<DrillParams> {
        if self.ttft_slo.is_nan()
            || self.ttft_slo <= 0.0
            || self.e2e_slo.is_nan()
            || self.e2e_slo < 0.0
        {
            bail!("--ttft-slo must be > 0 and --e2e-slo >= 0");
        }
        if self.concurrency.as_ref().is_some_and(|c| c.contains(&0)) {
            bail!("--concurrency levels must be >= 1");
        }
        if self.max_tokens.as_ref().is_some_and(|m| m.contains(&0)) {
            bail!("--max-tokens must be >= 1");
        }
        let input_tokens = match &self.input_tokens {
            Some(list) => Some(
                list.split(',')
                    .map(|n| match n.trim().parse::<u32>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(anyhow::anyhow!(
                            "--input-tokens: '{n}' is not a token count >= 1 (drills take a \
                             comma-separated list)"
                        )),
                    })
                    .collect::<Result<Vec<u32>>>()?,
            ),
            None => None,
        };
        Ok(DrillParams {
            concurrency: self.concurrency.clone(),
            requests_per_level: self.requests_per_level,
            max_tokens: self.max_tokens.clone(),
            input_tokens,
            ttft_slo: self.ttft_slo,
            e2e_slo: self.e2e_slo,
            tier: self.tier,
        })
    }
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile.
    #[arg(long, default_value = DEFAULT_PROFILE, env = "SERVESIM_PROFILE")]
    pub profile: String,
    #[command(flatten)]
    pub drills: DrillArgs,
    /// Seed of the answer-length draws.
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    pub seed: u64,
    /// table, json or csv.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Override the scheduling policy: continuous, static or serial.
    #[arg(long, value_parser = parse_policy, env = "SERVESIM_POLICY")]
    pub policy: Option<SchedulingPolicy>,
    /// Replay a request trace instead of drills: CSV (arrival_s, input_tokens, output_tokens;
    /// prompts known only by length) or Mooncake JSON Lines (.jsonl: timestamp in ms,
    /// input_length, output_length, hash_ids; equal hash ids become equal token blocks, which hit
    /// the prefix cache).
    #[arg(long, conflicts_with_all = ["workload", "arrival"])]
    pub trace: Option<String>,
    /// Mooncake traces: prompt tokens each hash id stands for (Mooncake's traces use 512).
    #[arg(long, default_value_t = servesim_validator::trace::MOONCAKE_BLOCK_TOKENS)]
    pub trace_block_tokens: u32,
    #[command(flatten)]
    pub engine: super::engine_flags::EngineFlags,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub open_loop: OpenLoopArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// With an inference-perf config (`--workload FILE.yaml`): write its reports here, as
    /// inference-perf names them (stage_N_lifecycle_metrics.json as each stage ends, then
    /// summary_lifecycle_metrics.json).
    #[arg(long, env = "SERVESIM_REPORT_DIR")]
    pub report_dir: Option<std::path::PathBuf>,
}

/// `--workload` and its sizes, shared by `simulate` (virtual time) and `bench` (a real server), so
/// both send the same requests.
#[derive(Debug, Args, Clone)]
pub struct WorkloadArgs {
    /// Run a workload instead of drills: multi-turn (chat sessions, each turn's prompt the
    /// conversation so far), shared-prefix (users behind one system prompt), a workload file
    /// FILE.toml of client classes, reported per class with their SLOs (docs/workloads.md), or an
    /// inference-perf config FILE.yaml, reported per stage in inference-perf's shape
    /// (docs/inference-perf.md).
    #[arg(long, value_parser = parse_workload)]
    pub workload: Option<String>,
    /// Workload: sessions (multi-turn) or users (shared-prefix).
    #[arg(long, default_value_t = 16, env = "SERVESIM_SESSIONS")]
    pub sessions: usize,
    /// Workload: turns per session (multi-turn) or requests per user (shared-prefix).
    #[arg(long, default_value_t = 8, env = "SERVESIM_TURNS")]
    pub turns: usize,
    /// Workload: seconds a user thinks between an answer and the next request.
    #[arg(long, default_value_t = 1.0, env = "SERVESIM_THINK")]
    pub think: f64,
}

fn parse_workload(s: &str) -> Result<String, String> {
    if matches!(s, "multi-turn" | "shared-prefix")
        || is_workload_file(s)
        || super::inference_perf::is_config_file(s)
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown workload '{s}' (multi-turn, shared-prefix, a workload file FILE.toml, or an \
             inference-perf config FILE.yaml)"
        ))
    }
}

/// Whether `--workload` names a workload file rather than a built-in workload.
pub fn is_workload_file(name: &str) -> bool {
    name.ends_with(".toml")
}

/// A workload file's classes and their plan, drawn with `seed`.
pub fn workload_file(path: &str, seed: u64) -> Result<(Workload, WorkloadPlan)> {
    let workload = Workload::load(std::path::Path::new(path))?;
    let plan = workload.plan(seed);
    Ok((workload, plan))
}

/// The name a run reports for a workload: a file's name without its folders, else the workload's.
fn workload_label(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned())
}

impl WorkloadArgs {
    /// The load of built-in workload `name` at these sizes.
    pub fn plan(&self, name: &str) -> Result<LevelPlan> {
        if self.sessions == 0 || self.turns == 0 || self.think.is_nan() || self.think < 0.0 {
            bail!("--sessions and --turns must be >= 1 and --think >= 0");
        }
        Ok(match name {
            "multi-turn" => servesim_sim::MultiTurn {
                sessions: self.sessions,
                turns: self.turns,
                system_words: 200,
                message_words: 60,
                answer_words: 120,
                max_tokens: 128,
                think_s: self.think,
            }
            .plan(),
            _ => servesim_sim::SharedPrefix {
                users: self.sessions,
                requests: self.turns,
                system_words: 800,
                message_words: 40,
                max_tokens: 128,
                think_s: self.think,
            }
            .plan(),
        })
    }
}

fn parse_policy(s: &str) -> Result<SchedulingPolicy, String> {
    match s {
        "continuous" => Ok(SchedulingPolicy::Continuous),
        "static" => Ok(SchedulingPolicy::Static),
        "serial" => Ok(SchedulingPolicy::Serial),
        _ => Err(format!("unknown policy '{s}' (continuous, static, serial)")),
    }
}

fn load_profile(
    spec: &str,
    policy: Option<SchedulingPolicy>,
    engine: &super::engine_flags::EngineFlags,
) -> Result<Profile> {
    let mut profile = Profile::load_unchecked(spec)?;
    if let Some(policy) = policy {
        profile.engine.policy = policy;
    }
    engine.apply(&mut profile)?;
    profile.derive()?;
    Ok(profile)
}

/// Run drills in virtual time, each on a simulated server of its own seeded with `seed` and started
/// cold (it pays the profile's one-off warm-up, like a freshly started real server) or warm as
/// `start` says; so each drill's rows are those it gives alone.
pub fn simulate_drills(
    profile: &Profile,
    drills: &[DrillKind],
    params: &DrillParams,
    seed: u64,
    start: Start,
) -> Result<Vec<DrillResult>> {
    let mut server = DrillServer::new(profile, seed, start)?;
    drills
        .iter()
        .map(|&d| {
            run_drill(&mut server, d, params, &profile.name, &mut |_, _| {})
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Run a level (workload, trace or open-loop load) on a fleet (by default one server) and print
/// its latency summary and prefix-cache hit rate; a fleet adds its router and a row per replica.
fn run_level(
    args: &SimulateArgs,
    profile: &Profile,
    plan: &LevelPlan,
    kind: &str,
    name: &str,
    classes: Option<&(Workload, WorkloadPlan)>,
) -> Result<()> {
    let profiles = args
        .fleet
        .profiles(profile, |p| load_profile(p, args.policy, &args.engine))?;
    let mut fleet = Fleet::new(&profiles, args.fleet.router_config()?, args.seed)?;
    if args.drills.start != "cold" {
        fleet.skip_warmup();
    }
    let run = fleet.run_level(plan);
    let label = match &args.fleet.replica_profile {
        Some(list) => list.clone(),
        None => profile.name.clone(),
    };
    let rep = trace_report(name, &label, &run.level);
    let stats = fleet_stats(&fleet);
    let caching = profiles.iter().all(|p| p.engine.enable_prefix_caching);
    print_replay(kind, &rep, &stats, caching, args.format, |mut json| {
        if let Some((workload, wplan)) = classes {
            print!(
                "{}",
                super::classes::report(workload, wplan, &run.level, &label, json.as_deref_mut())?
            );
        }
        if args.fleet.is_fleet() {
            print_replicas(&fleet, &run, name, json, args.format)?;
        }
        Ok(())
    })
}

/// Print a replayed trace's or workload's latency summary with the prefix cache's hit rate (the
/// share of prompt tokens looked up at admission that were cached) and token counts; `more` adds
/// to the JSON object (given it) or prints after the table (given `None`).
fn print_replay(
    kind: &str,
    rep: &servesim_validator::trace::TraceReport,
    stats: &servesim_sim::EngineStats,
    caching: bool,
    format: Format,
    more: impl FnOnce(Option<&mut serde_json::Value>) -> Result<()>,
) -> Result<()> {
    let hit_rate = if stats.prefix_cache_queries == 0 {
        0.0
    } else {
        stats.prefix_cache_hits as f64 / stats.prefix_cache_queries as f64
    };
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(rep)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("prefix_caching".into(), caching.into());
                o.insert("prefix_cache_hit_rate".into(), hit_rate.into());
                o.insert("prompt_tokens".into(), stats.prompt_tokens_total.into());
                o.insert(
                    "prompt_tokens_cached".into(),
                    stats.prompt_tokens_cached_total.into(),
                );
            }
            more(Some(&mut v))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table | Format::Csv => {
            println!(
                "# {kind} {} on {}: {} requests ({} failed), prefix caching {}",
                rep.trace,
                rep.profile,
                rep.requests,
                rep.errors,
                if caching { "on" } else { "off" }
            );
            print!("{}", summary_text(rep));
            if caching {
                println!(
                    "prefix cache: {:.1} % of {} prompt tokens looked up were hits",
                    hit_rate * 100.0,
                    stats.prefix_cache_queries
                );
            } else {
                println!(
                    "prefix cache: off ({} prompt tokens computed in full)",
                    stats.prompt_tokens_total
                );
            }
            more(None)?;
        }
    }
    Ok(())
}

pub(crate) fn summary_text(rep: &servesim_validator::trace::TraceReport) -> String {
    let mut out = format!(
        "{:<6}{:>10}{:>10}{:>10}{:>10}{:>10}\n",
        "", "mean", "median", "p90", "p95", "p99"
    );
    for (name, s) in [("ttft", rep.ttft), ("tpot", rep.tpot), ("e2e", rep.e2e)] {
        out.push_str(&format!(
            "{name:<6}{:>10.4}{:>10.4}{:>10.4}{:>10.4}{:>10.4}\n",
            s.mean, s.median, s.p90, s.p95, s.p99
        ));
    }
    out.push_str(&format!(
        "output throughput: {:.1} tok/s\n",
        rep.output_tok_s
    ));
    out
}

/// `--workload FILE.yaml`: an inference-perf config's stages on a fleet (by default one server).
fn run_inference_perf(args: &SimulateArgs, profile: &Profile, path: &str) -> Result<()> {
    let bench = super::inference_perf::load(path, args.seed)?;
    let profiles = args
        .fleet
        .profiles(profile, |p| load_profile(p, args.policy, &args.engine))?;
    let mut fleet = Fleet::new(&profiles, args.fleet.router_config()?, args.seed)?;
    if args.drills.start != "cold" {
        fleet.skip_warmup();
    }
    let caching = profiles.iter().all(|p| p.engine.enable_prefix_caching);
    super::inference_perf::run(
        &mut fleet,
        profile,
        &bench,
        &workload_label(path),
        args.report_dir.as_deref(),
        args.format,
        caching,
    )
}

pub fn run(args: &SimulateArgs) -> Result<()> {
    let profile = load_profile(&args.profile, args.policy, &args.engine)?;
    if args.report_dir.is_some()
        && !args
            .workload
            .workload
            .as_deref()
            .is_some_and(super::inference_perf::is_config_file)
    {
        bail!("--report-dir goes with an inference-perf config (--workload FILE.yaml)");
    }
    if let Some(workload) = &args.workload.workload {
        if super::inference_perf::is_config_file(workload) {
            return run_inference_perf(args, &profile, workload);
        }
        if is_workload_file(workload) {
            let classes = workload_file(workload, args.seed)?;
            let name = workload_label(workload);
            return run_level(
                args,
                &profile,
                &classes.1.plan,
                "workload",
                &name,
                Some(&classes),
            );
        }
        let plan = args.workload.plan(workload)?;
        return run_level(args, &profile, &plan, "workload", workload, None);
    }
    if let Some(arrival) = args.open_loop.arrival {
        let plan = args
            .open_loop
            .plan(arrival, args.drills.input_tokens.as_deref(), args.seed)?;
        let name = format!("{arrival} at {} req/s", args.open_loop.rate);
        return run_level(args, &profile, &plan, "open loop", &name, None);
    }
    if let Some(path) = &args.trace {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading trace {path}"))?;
        let trace = parse_trace(&text, path)?;
        if args.trace_block_tokens == 0 {
            bail!("--trace-block-tokens must be >= 1");
        }
        let plan = trace_plan(&trace, args.trace_block_tokens);
        let name = std::path::Path::new(path)
            .file_name()
            .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
        return run_level(args, &profile, &plan, "trace", &name, None);
    }
    if args.fleet.is_fleet() {
        bail!(
            "--replicas and --replica-profile apply to --workload, --arrival and --trace runs; \
             drills run on one server"
        );
    }
    let drills = args.drills.drills()?;
    let params = args.drills.params()?;
    let results = simulate_drills(&profile, &drills, &params, args.seed, args.drills.start())?;
    print!("{}", report::render(&results, args.format));
    Ok(())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Built-in profile name, GPU+MODEL, or a path to a .toml profile.
    #[arg(long, default_value = DEFAULT_PROFILE, env = "SERVESIM_PROFILE")]
    pub profile: String,
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    pub seed: u64,
}

pub fn demo(args: &DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let profile = load_profile(&args.profile, None, &Default::default())?;
    let d = profile.derive()?;
    println!("servesim demo: {} ({})", profile.name, profile.description);
    println!(
        "KV cache {} tokens in {} blocks; max_num_seqs {}; token budget {}; one decode step {:.1} ms\n",
        d.kv_tokens,
        d.kv_blocks,
        profile.engine.max_num_seqs,
        profile.engine.max_num_batched_tokens,
        d.single_decode_step_s * 1e3
    );
    let params = DrillParams::default();
    let results = simulate_drills(&profile, &DrillKind::ALL, &params, args.seed, Start::Auto)?;
    println!("{}", report::render(&results, Format::Table));

    // Warm, so that the one-off warm-up does not land inside phase A of the contrast.
    let mut serial_profile = profile;
    serial_profile.engine.policy = SchedulingPolicy::Serial;
    let serial = simulate_drills(
        &serial_profile,
        &[DrillKind::Batching],
        &params,
        args.seed,
        Start::Warm,
    )?;
    println!(
        "The same batching drill on a server that runs one request at a time (policy serial, already warm):"
    );
    println!("{}", report::table(&serial[0]));

    println!("What it shows:");
    for r in &results {
        if let Some(s) = &r.sweep {
            println!("- {}: {}", r.drill, sweep_story(r, s));
        }
    }
    if let (Some(c), Some(s)) = (
        results
            .iter()
            .find(|r| r.drill == DrillKind::Batching)
            .and_then(|r| r.ratio),
        serial[0].ratio,
    ) {
        println!(
            "- continuous batching keeps TTFT under load: ratio B/A {}, against {} when requests run one at a time",
            fixed(c, 2),
            fixed(s, 1)
        );
    }
    println!(
        "({} drills simulated in {:.2} s of wall time)",
        results.len() + 1,
        started.elapsed().as_secs_f64()
    );
    print!("{}", next_steps(&args.profile));
    Ok(())
}

/// One sweep's knee and operating point as a sentence; a sweep that never flattened says it was
/// still growing at its highest level rather than naming a knee it did not reach.
fn sweep_story(r: &DrillResult, s: &SweepSummary) -> String {
    let knee = match (&s.knee, r.rows.last()) {
        (Some(knee), _) => format!("throughput stops growing at conc {knee} (knee)"),
        (None, Some(last)) => format!(
            "throughput still growing at the highest concurrency tried, conc {} (no knee reached)",
            last.axis
        ),
        (None, None) => "no levels (no knee)".into(),
    };
    let target = fixed(s.goodput_target_pct, 0);
    let operating = match &s.operating_point {
        Some(op) => {
            format!("the highest level holding {target} % goodput is conc {op} (operating point)")
        }
        None => format!("no level held {target} % goodput (no operating point)"),
    };
    format!("{knee}; {operating}")
}

/// What to run after the demo: the same profile as a fake vLLM server, the load generator against
/// it (or against a real vLLM), and the validation of that run against the simulator.
fn next_steps(profile: &str) -> String {
    let flag = if profile == DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    };
    let lines = [
        (
            format!("servesim serve{flag}"),
            "fake vLLM on :8000; Ctrl-C stops it",
        ),
        (
            "servesim bench --url http://127.0.0.1:8000 --drill baseline --out bench-run".into(),
            "another shell; ~30 s",
        ),
        (
            format!("servesim validate --real-from bench-run{flag}"),
            "vs the simulator: validate-out/",
        ),
    ];
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Next: serve this profile as a fake vLLM, measure it over HTTP as you would a real one, and validate the run:\n",
    );
    for (command, note) in lines {
        out.push_str(&format!("  {command:<width$}  # {note}\n"));
    }
    out
}
