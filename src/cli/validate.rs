//! `servesim validate` (real endpoint or recording vs the simulator, with NVML, comparison, ledger and
//! report) and `servesim compare` (any two saved runs side by side).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args};
use servesim_models::{DEFAULT_PROFILE, Profile};
use servesim_validator::compare::{Recording, before_after, compare};
use servesim_validator::http::{ClientConfig, HttpTarget};
use servesim_validator::rounding::fixed;
use servesim_validator::telemetry::{NvmlSource, TelemetrySource};
use servesim_validator::validation::{
    Environment, RealRun, assemble, probe_server, run_real, run_sim, write_report,
};

use super::simulate::DrillArgs;

/// The real side comes from exactly one of `--real` and `--real-from`: the group makes clap's
/// message name both when neither is given.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("real_side").required(true).args(["real", "real_from"])))]
pub struct ValidateArgs {
    /// Base URL of the real server (vLLM on the GPU), e.g. http://127.0.0.1:8000.
    #[arg(long, value_name = "URL", env = "SERVESIM_REAL")]
    pub real: Option<String>,
    /// Take the real run from a saved `bench` run instead (its --out directory or summary.json),
    /// or from `simulate --format json` output.
    #[arg(long, value_name = "PATH")]
    pub real_from: Option<String>,
    /// Profile of the simulated side.
    #[arg(long, default_value = DEFAULT_PROFILE, env = "SERVESIM_PROFILE")]
    pub profile: String,
    #[command(flatten)]
    pub drills: DrillArgs,
    /// The `model` field of real requests.
    #[arg(long, default_value = "local", env = "SERVESIM_MODEL")]
    pub model: String,
    #[arg(long, env = "SERVESIM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Output directory for report.md, report.json, fake-vs-real-limitations.md, charts, telemetry.csv.
    #[arg(long, default_value = "validate-out")]
    pub out: PathBuf,
    /// Do not sample the GPU with NVML.
    #[arg(long, env = "SERVESIM_NO_NVML")]
    pub no_nvml: bool,
    /// Which GPU NVML samples.
    #[arg(long, default_value_t = 0, env = "SERVESIM_GPU_INDEX")]
    pub gpu_index: u32,
    /// NVML samples per second.
    #[arg(long, default_value_t = 10.0, env = "SERVESIM_SAMPLE_HZ")]
    pub sample_hz: f64,
    /// Seed of the simulator's answer lengths.
    #[arg(long, default_value_t = 0, env = "SERVESIM_SEED")]
    pub seed: u64,
}

pub fn validate(args: &ValidateArgs) -> Result<()> {
    let profile = Profile::load(&args.profile)?;
    let drills = args.drills.drills()?;
    let params = args.drills.params()?;
    if !(args.sample_hz > 0.0 && args.sample_hz <= 1000.0) {
        bail!("--sample-hz must be in (0, 1000]");
    }
    let mut env = Environment {
        profile: profile.name.clone(),
        tool_version: format!("servesim {}", env!("CARGO_PKG_VERSION")),
        ..Environment::default()
    };
    let (real, drills) = match (&args.real, &args.real_from) {
        (_, Some(path)) => {
            let rec = Recording::load(path)?;
            env.real_source = format!("recording {path} ({})", rec.label);
            eprintln!(
                "servesim: real run from {path}: NVML not observed (a recording carries no telemetry)"
            );
            // Simulate exactly the drills the recording has, so the tables line up.
            let drills: Vec<_> = rec.drills.iter().map(|d| d.drill).collect();
            (
                RealRun::from_recording(rec, "the real run is a recording"),
                drills,
            )
        }
        (Some(url), None) => {
            env.real_source = format!("live server {url}");
            let (models, version) = probe_server(url, args.api_key.as_deref());
            env.server_models = models;
            env.server_version = version;
            let telemetry: Result<Box<dyn TelemetrySource>, String> = if args.no_nvml {
                Err("--no-nvml was given".into())
            } else {
                NvmlSource::open(args.gpu_index)
                    .map(|s| Box::new(s) as Box<dyn TelemetrySource>)
                    .map_err(|e| e.0)
            };
            if let Err(why) = &telemetry {
                eprintln!(
                    "servesim: GPU telemetry not observed: {why}; telemetry-based claims will say so"
                );
            }
            let config = ClientConfig {
                model: args.model.clone(),
                api_key: args.api_key.clone(),
                ..ClientConfig::new(url)
            };
            let mut target = HttpTarget::new(config, 0)?;
            let interval = Duration::from_secs_f64(1.0 / args.sample_hz);
            let real = run_real(
                &mut target,
                &drills,
                &params,
                url,
                telemetry,
                interval,
                &mut |d, row| {
                    eprintln!(
                        "servesim: real {d} {} done: {} tok/s, {} errors",
                        row.axis,
                        fixed(row.tok_s, 1),
                        row.err
                    );
                },
            )?;
            (real, drills)
        }
        (None, None) => bail!("one of --real <URL> or --real-from <PATH> is required"),
    };
    let sim = run_sim(&profile, &drills, &params, args.seed, args.drills.start())?;
    let v = assemble(env, real, sim);
    let files = write_report(&args.out, &v)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    for e in &v.comparison.errors {
        println!(
            "{:6} ({:8}): median {:5.1} %, max {:5.1} % over {} rows",
            e.metric, e.column, e.median_abs_pct, e.max_abs_pct, e.rows
        );
    }
    for c in &v.ledger.claims {
        println!(
            "claim {}: {} on the real run, {} on the simulator -> {}",
            c.id,
            c.real,
            c.sim,
            c.class.label()
        );
    }
    println!(
        "report: {}",
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The reference run (A, before): a bench summary or simulate JSON.
    pub a: String,
    /// The run compared with it (B, after).
    pub b: String,
}

pub fn compare_runs(args: &CompareArgs) -> Result<()> {
    let a = Recording::load(&args.a)?;
    let b = Recording::load(&args.b)?;
    let c = compare(&a, &b);
    if c.drills.is_empty() {
        bail!("the two runs have no drill in common");
    }
    print!("{}", before_after(&c));
    Ok(())
}
