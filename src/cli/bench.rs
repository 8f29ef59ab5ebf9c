//! `servesim bench`: the load generator against any OpenAI-compatible endpoint (issue 4), or the
//! identical drill code in-process against the virtual-time engine (`--target sim[:PROFILE]`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use servesim_models::{DEFAULT_PROFILE, Profile};
use servesim_validator::bench::{self, BenchSpec, SimTarget, run_bench};
use servesim_validator::http::{ClientConfig, HttpTarget, INTERRUPTED, prometheus_counter};
use servesim_validator::load::{CappedTarget, OpenLoop};
use servesim_validator::records::{self, OutputDir, RecordLog};
use servesim_validator::report::{self, Format};
use servesim_validator::suite::Target;
use servesim_validator::trace::trace_report;
use servesim_validator::{DrillServer, Start};

use super::simulate::{DrillArgs, WorkloadArgs, is_workload_file, summary_text, workload_file};

/// Errors printed with their cause before the rest are only counted.
const PRINTED_ERRORS: usize = 5;

/// Failed requests as a run reports them: the first few on stderr as they come, the first kept for
/// the closing message.
#[derive(Debug, Default)]
struct Failures {
    printed: usize,
    first: Option<String>,
}

impl Failures {
    /// Note the failures among `records`; `what` names the level or workload they belong to.
    fn note(&mut self, what: &str, records: &[servesim_sim::workload::RequestRecord]) {
        for r in records {
            let Some(e) = &r.error else { continue };
            self.first
                .get_or_insert_with(|| format!("{}: {}", e.kind.class(), e.message));
            if self.printed < PRINTED_ERRORS {
                self.printed += 1;
                eprintln!(
                    "servesim bench: {what} request {}: {}: {}",
                    r.index,
                    e.kind.class(),
                    e.message
                );
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000 (http only).
    #[arg(long, env = "SERVESIM_URL")]
    pub url: Option<String>,
    /// Run in-process against the virtual-time engine instead of a URL: sim or sim:PROFILE.
    #[arg(long, conflicts_with = "url")]
    pub target: Option<String>,
    /// The `model` field of every request.
    #[arg(long, default_value = "local", env = "SERVESIM_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub drills: DrillArgs,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "SERVESIM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Directory for requests.jsonl (written as requests finish), params.json, summary.json,
    /// summary.csv and table.txt.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// table, json or csv (stdout).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Open loop: requests per second (inf = all at once) instead of drills.md's closed loop.
    #[arg(long, env = "SERVESIM_RATE")]
    pub rate: Option<f64>,
    /// Open loop: gamma shape of the gaps (1 = Poisson, < 1 burstier, > 1 more regular).
    #[arg(
        long,
        default_value_t = 1.0,
        requires = "rate",
        env = "SERVESIM_BURSTINESS"
    )]
    pub burstiness: f64,
    /// Open loop: cap requests in flight at the level's concurrency (vLLM's --max-concurrency).
    #[arg(long, requires = "rate", env = "SERVESIM_RATE_CAP")]
    pub rate_cap: bool,
    /// Seed of the arrival times (and, with --target sim, of the answer lengths).
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    pub seed: u64,
    /// Client timeout per request, seconds.
    #[arg(long, default_value_t = 180.0, env = "SERVESIM_TIMEOUT")]
    pub timeout: f64,
    /// Do not ask for stream_options.include_usage (no token counts, no token TPOT).
    #[arg(long, env = "SERVESIM_NO_USAGE")]
    pub no_usage: bool,
    /// Client runtime threads (0 = one per core).
    #[arg(long, default_value_t = 0, env = "SERVESIM_THREADS")]
    pub threads: usize,
    /// No progress bar and no per-level lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// With --target sim: the engine's prefix caching.
    #[command(flatten)]
    pub engine: super::engine_flags::EngineFlags,
    /// `--workload multi-turn|shared-prefix` with `--sessions`, `--turns`, `--think`: the requests
    /// `simulate --workload` runs in virtual time, sent to the server at --url instead of drills.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// The HTTP target for `--url`: the client configured from the flags, records to `log`, stopped
/// by Ctrl-C.
fn http_target(args: &BenchArgs, url: &str, log: Option<Arc<RecordLog>>) -> Result<HttpTarget> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be > 0");
    }
    let config = ClientConfig {
        model: args.model.clone(),
        api_key: args.api_key.clone(),
        timeout: Duration::from_secs_f64(args.timeout),
        include_usage: !args.no_usage,
        ..ClientConfig::new(url)
    };
    let mut target = HttpTarget::new(config, args.threads)?.with_progress(!args.quiet);
    if let Some(log) = log {
        target = target.with_record_log(log);
    }
    target
        .stop_on_ctrl_c()
        .context("installing the Ctrl-C handler")?;
    Ok(target)
}

/// The target to run, with what the summary calls it.
fn choose(
    args: &BenchArgs,
    log: Option<Arc<RecordLog>>,
    start: Start,
) -> Result<(Box<dyn CappedTarget>, String)> {
    match (&args.url, &args.target) {
        (Some(url), None) => Ok((Box::new(http_target(args, url, log)?), url.clone())),
        (None, Some(spec)) => {
            let profile_name = match spec.split_once(':') {
                None if spec == "sim" => DEFAULT_PROFILE,
                Some(("sim", p)) if !p.is_empty() => p,
                _ if spec.starts_with("http://") || spec.starts_with("https://") => {
                    bail!("--target takes sim or sim:PROFILE; for a server give --url {spec}")
                }
                _ => bail!("--target must be sim or sim:PROFILE, got '{spec}'"),
            };
            let mut profile = Profile::load_unchecked(profile_name)?;
            args.engine.apply(&mut profile)?;
            profile.derive()?;
            let server = DrillServer::new(&profile, args.seed, start)?;
            Ok((Box::new(SimTarget::new(server, log)), profile.name))
        }
        _ => bail!("give --url URL (an OpenAI-compatible server) or --target sim[:PROFILE]"),
    }
}

/// The command line with the API key's value blanked out.
fn redacted_command_line() -> Vec<String> {
    let mut hide_next = false;
    std::env::args()
        .map(|a| {
            if std::mem::take(&mut hide_next) {
                return "***".to_string();
            }
            if a == "--api-key" {
                hide_next = true;
            } else if a.starts_with("--api-key=") {
                return "--api-key=***".to_string();
            }
            a
        })
        .collect()
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(workload) = &args.workload.workload {
        return run_workload(args, workload);
    }
    let drills = args.drills.drills()?;
    let params = args.drills.params()?;
    let open_loop = match args.rate {
        Some(rate) if rate.is_nan() || rate <= 0.0 => bail!("--rate must be > 0 (or inf)"),
        Some(_) if !(args.burstiness.is_finite() && args.burstiness > 0.0) => {
            bail!("--burstiness must be > 0")
        }
        Some(rate) => Some(OpenLoop {
            rate,
            burstiness: args.burstiness,
            cap_at_concurrency: args.rate_cap,
            seed: args.seed,
        }),
        None => None,
    };
    let out = args.out.as_deref().map(OutputDir::create).transpose()?;
    let log = out
        .as_ref()
        .map(|o| o.record_log().map(Arc::new))
        .transpose()?;
    // Each drill's simulated server starts cold or warm exactly as in `simulate` (`--start`).
    let (mut target, label) = choose(args, log.clone(), args.drills.start())?;
    let spec = BenchSpec {
        drills,
        params,
        label,
        open_loop,
    };
    if let Some(out) = &out {
        let params = run_params(
            args.url.as_deref(),
            json!({
            "target": args.target,
            "model": args.model,
            "spec": spec,
            "timeout_s": args.timeout,
            "include_usage": !args.no_usage,
            "seed": args.seed,
            "definitions": bench::definitions_json(),
            }),
        );
        out.write(
            records::PARAMS_FILE,
            &serde_json::to_string_pretty(&params)?,
        )?;
    }

    let mut failures = Failures::default();
    let quiet = args.quiet;
    let outcome = run_bench(
        target.as_mut(),
        &spec,
        log.as_deref(),
        &mut |drill, row, detail, run| {
            failures.note(&format!("{drill} {}", detail.axis), &run.records);
            if let Some(w) = detail.client_bottleneck() {
                eprintln!("servesim bench: warning: {drill}: {w}");
            }
            if !quiet {
                eprintln!(
                    "servesim bench: {drill} {} {}: {} requests, {} errors, {:.2} s",
                    drill.axis_name(),
                    row.axis,
                    row.reqs,
                    row.err,
                    detail.wall_s
                );
            }
        },
    );

    print!("{}", bench::render(&outcome, args.format));
    if let Some(out) = &out {
        let results: Vec<_> = outcome.drills.iter().map(|d| d.result.clone()).collect();
        out.write(
            records::SUMMARY_FILE,
            &(serde_json::to_string_pretty(&bench::summary_json(&outcome, &spec))? + "\n"),
        )?;
        out.write(records::CSV_FILE, &report::csv(&results))?;
        out.write(records::TABLE_FILE, &bench::render(&outcome, Format::Table))?;
        if let Some(failure) = log.as_ref().and_then(|l| l.failure()) {
            bail!("could not write every record: {failure}");
        }
    }
    // The output files are written by now: a failed run still leaves its records behind.
    let (requests, ok, errors) = outcome.totals();
    match outcome.stopped {
        None if requests > 0 && ok == 0 => bail!(
            "{}",
            nothing_succeeded(requests, &errors, failures.first.as_deref(), &spec.label)
        ),
        None => Ok(()),
        Some(why) if why == INTERRUPTED => {
            let done: usize = outcome
                .drills
                .iter()
                .flat_map(|d| &d.result.rows)
                .map(|r| r.reqs)
                .sum();
            bail!("interrupted: the results above cover the {done} requests that finished")
        }
        Some(why) => Err(anyhow::Error::msg(why)).context("the bench could not run"),
    }
}

/// `bench --workload`: the plan `simulate --workload` builds, sent to the server at `--url` as
/// closed-loop sessions that think between turns; prints the same summary as `simulate`, with the
/// prefix cache's hit rate over the run when the server's `/metrics` has vLLM's counters.
fn run_workload(args: &BenchArgs, workload: &str) -> Result<()> {
    let Some(url) = &args.url else {
        bail!(
            "bench --workload needs --url URL; for the virtual-time engine run \
             `servesim simulate --workload {workload}`"
        )
    };
    if args.rate.is_some() {
        bail!("--workload runs closed-loop sessions; it takes no --rate");
    }
    if super::inference_perf::is_config_file(workload) {
        bail!(
            "bench --workload {workload}: an inference-perf config is run against a server by              inference-perf itself (`inference-perf --config_file {workload}`);              `servesim simulate --workload {workload}` runs it in virtual time"
        );
    }
    // A workload file's classes are reported per class, as `simulate --workload FILE` does.
    let (plan, classes) = if is_workload_file(workload) {
        let (w, p) = workload_file(workload, args.seed)?;
        (p.plan.clone(), Some((w, p)))
    } else {
        (args.workload.plan(workload)?, None)
    };
    let out = args.out.as_deref().map(OutputDir::create).transpose()?;
    let log = out
        .as_ref()
        .map(|o| o.record_log().map(Arc::new))
        .transpose()?;
    let mut target = http_target(args, url, log.clone())?;
    if let Some(out) = &out {
        let params = run_params(
            args.url.as_deref(),
            json!({
            "model": args.model,
            "workload": workload,
            "sessions": args.workload.sessions,
            "turns": args.workload.turns,
            "think_s": args.workload.think,
            "timeout_s": args.timeout,
            "include_usage": !args.no_usage,
            }),
        );
        out.write(
            records::PARAMS_FILE,
            &serde_json::to_string_pretty(&params)?,
        )?;
    }

    let before = PrefixCounters::scrape(&target);
    let run = target
        .run_level(&plan)
        .map_err(|e| anyhow::Error::msg(e.0))?;
    let after = PrefixCounters::scrape(&target);
    let cache = before.zip(after).map(|(b, a)| PrefixCounters {
        queries: (a.queries - b.queries).max(0.0),
        hits: (a.hits - b.hits).max(0.0),
    });

    let mut failures = Failures::default();
    failures.note(workload, &run.records);
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for e in run.records.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(e.kind.class().to_string()).or_default() += 1;
    }
    let rep = trace_report(workload, url, &run);
    let hit_rate = cache.and_then(|c| (c.queries > 0.0).then(|| c.hits / c.queries));
    let json_report = || -> Result<String> {
        let mut v = serde_json::to_value(&rep)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("wall_s".into(), run.wall.into());
            o.insert("prefix_cache_hit_rate".into(), hit_rate.into());
            o.insert(
                "prefix_cache_queries".into(),
                cache.map(|c| c.queries).into(),
            );
            o.insert("prefix_cache_hits".into(), cache.map(|c| c.hits).into());
        }
        if let Some((w, p)) = &classes {
            super::classes::report(w, p, &run, url, Some(&mut v))?;
        }
        Ok(serde_json::to_string_pretty(&v)?)
    };
    let table = || -> Result<String> {
        let mut t = format!(
            "# workload {workload} against {url}: {} requests ({} failed), {:.2} s\n",
            rep.requests, rep.errors, run.wall
        );
        t.push_str(&summary_text(&rep));
        t.push_str(&match (cache, hit_rate) {
            (Some(c), Some(rate)) => format!(
                "prefix cache: {:.1} % of {} prompt tokens looked up were hits\n",
                rate * 100.0,
                c.queries
            ),
            (Some(_), None) => "prefix cache: no prompt tokens looked up (caching off?)\n".into(),
            (None, _) => format!(
                "prefix cache: hit rate unknown ({url}/metrics has no vllm:prefix_cache_* counters)\n"
            ),
        });
        if let Some((w, p)) = &classes {
            t.push_str(&super::classes::report(w, p, &run, url, None)?);
        }
        Ok(t)
    };
    match args.format {
        Format::Json => println!("{}", json_report()?),
        Format::Table | Format::Csv => print!("{}", table()?),
    }
    if let Some(out) = &out {
        out.write(records::SUMMARY_FILE, &(json_report()? + "\n"))?;
        out.write(records::TABLE_FILE, &table()?)?;
        if let Some(failure) = log.as_ref().and_then(|l| l.failure()) {
            bail!("could not write every record: {failure}");
        }
    }
    if target.stopper().is_stopped() {
        bail!(
            "interrupted: the results above cover the {} requests that finished",
            run.records.len()
        );
    }
    if !run.records.is_empty() && rep.errors == run.records.len() {
        bail!(
            "{}",
            nothing_succeeded(run.records.len(), &errors, failures.first.as_deref(), url)
        );
    }
    Ok(())
}

/// vLLM's prefix-cache counters (`vllm:prefix_cache_queries_total`, `..._hits_total`: prompt
/// tokens looked up and found), summed over engines.
#[derive(Debug, Clone, Copy)]
struct PrefixCounters {
    queries: f64,
    hits: f64,
}

impl PrefixCounters {
    /// The target's counters now, `None` when its `/metrics` lacks them.
    fn scrape(target: &HttpTarget) -> Option<PrefixCounters> {
        let text = target.scrape_metrics()?;
        Some(PrefixCounters {
            queries: prometheus_counter(&text, "vllm:prefix_cache_queries_total")?,
            hits: prometheus_counter(&text, "vllm:prefix_cache_hits_total")?,
        })
    }
}

/// Why a run in which every request failed is an error: how many, by class, the first cause, and
/// (when none could even connect) what to check.
fn nothing_succeeded(
    requests: usize,
    errors: &std::collections::BTreeMap<String, usize>,
    first: Option<&str>,
    target: &str,
) -> String {
    let classes = errors
        .iter()
        .map(|(class, n)| format!("{class}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut msg = format!("no request succeeded: all {requests} failed ({classes})");
    if let Some(first) = first {
        msg.push_str(&format!("; the first: {first}"));
    }
    if errors.len() == 1 && errors.contains_key("connect") {
        msg.push_str(&format!(
            "; is a server listening at {target}? (`servesim serve` starts the fake one)"
        ));
    }
    msg
}

/// `params.json`: what every bench run records about itself (tool, version, start, command line,
/// URL), then the run's own parameters.
fn run_params(url: Option<&str>, own: serde_json::Value) -> serde_json::Value {
    let mut params = json!({
        "tool": "servesim bench",
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        "command": redacted_command_line(),
        "url": url,
    });
    if let (Some(all), serde_json::Value::Object(own)) = (params.as_object_mut(), own) {
        all.extend(own);
    }
    params
}
