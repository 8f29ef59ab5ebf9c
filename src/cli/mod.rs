//! Command-line edge: argument parsing and error reporting; the work happens in the library crates.

mod bench;
mod classes;
mod cost;
mod engine_flags;
mod fleet;
mod health;
mod inference_perf;
mod plan;
mod profiles;
mod serve;
mod simulate;
mod telemetry;
mod tokenizer;
mod validate;
mod vllm;
mod vllm_flags;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Simulate vLLM serving an LLM on a GPU, in virtual time or as a fake OpenAI server, and validate
/// the simulation against real runs.
#[derive(Debug, Parser)]
#[command(name = "servesim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in profiles, or show one's derived figures.
    Profiles(profiles::ProfilesArgs),
    /// Run drills (or replay a trace) against the simulated engine in virtual time.
    Simulate(simulate::SimulateArgs),
    /// The whole story on one profile in a few seconds: every drill, the knee, the operating point.
    Demo(simulate::DemoArgs),
    /// Serve the simulated engine as a fake vLLM OpenAI-compatible server on the wall clock.
    Serve(serve::ServeArgs),
    /// Run drills against any OpenAI-compatible endpoint (or the simulator) and measure it.
    Bench(bench::BenchArgs),
    /// Run the drill suite on a real server (or take a recording) and on the simulator, sample the
    /// GPU, compare, and write the report and the claims ledger.
    Validate(validate::ValidateArgs),
    /// Compare two saved runs (bench summaries or simulate JSON) side by side.
    Compare(validate::CompareArgs),
    /// What one engine iteration costs on a profile, term by term, or a profile beside a silicon table.
    Cost(cost::CostArgs),
    /// Fit a GPU's cost-model terms to a silicon table and write the GPU profile.
    Calibrate(cost::CalibrateArgs),
    /// Read the GPU through NVML: device facts, or a recording to keep as a fixture.
    Telemetry(telemetry::TelemetryArgs),
    /// The cheapest fleet (GPU, tensor parallelism, engine settings, replicas) that serves a
    /// traffic within its SLOs; `plan merge` joins a plan split over machines.
    Plan(Box<plan::PlanArgs>),
    /// Exit 0 when a server's /health answers 200 (the container image's healthcheck: it has no curl).
    Health(health::HealthArgs),
    /// Write the BPE table servesim counts tokens with as a Hugging Face tokenizer directory.
    Tokenizer(tokenizer::TokenizerArgs),
}

/// Parse the command line: vLLM's spellings first (see [`vllm::rewrite_args`]), then clap, which
/// exits itself on `--help` and on a bad argument (status 2, as argparse).
fn parse(argv: Vec<std::ffi::OsString>) -> anyhow::Result<Cli> {
    let as_vllm = argv.first().is_some_and(vllm::invoked_as_vllm);
    let rewritten = vllm::rewrite_args(argv)?;
    let mut command = Cli::command();
    if as_vllm {
        command = command.name("vllm").bin_name("vllm");
    }
    let matches = command.get_matches_from(rewritten.args);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Serve(args), Some(("serve", m))) = (&mut cli.command, matches.subcommand()) {
        args.ignored_vllm_flags = rewritten.ignored;
        args.profile_on_command_line =
            m.value_source("profile") == Some(clap::parser::ValueSource::CommandLine);
    }
    Ok(cli)
}

/// Parse arguments, run the command, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("servesim: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Profiles(args) => profiles::run(args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Demo(args) => simulate::demo(&args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(&args),
        Command::Validate(args) => validate::validate(&args),
        Command::Compare(args) => validate::compare_runs(&args),
        Command::Cost(args) => cost::cost(&args),
        Command::Calibrate(args) => cost::calibrate_gpu(&args),
        Command::Telemetry(args) => telemetry::run(args),
        Command::Health(args) => health::run(&args),
        Command::Tokenizer(args) => tokenizer::run(&args),
        Command::Plan(args) => plan::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servesim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags without an environment twin: what one invocation writes or reads (a job-wide value
    /// would send every command's output to one place), and the engine flags of
    /// `engine_flags.rs` (issue 15's file; their twins belong there).
    const NO_TWIN: &[&str] = &[
        "out",
        "format",
        "quiet",
        "trace",
        "trace-block-tokens",
        "real-from",
        "target",
        "workload",
        "help",
        "version",
        "enable-prefix-caching",
        "no-enable-prefix-caching",
    ];

    /// Issue 14: every flag that CI sets has a twin named `SERVESIM_` + the flag in upper snake
    /// case, the same in every command that has the flag.
    #[test]
    fn env_twins_follow_one_rule_in_every_command() {
        let cli = Cli::command();
        let mut twins = 0;
        for sub in [
            "serve",
            "simulate",
            "demo",
            "bench",
            "validate",
            "tokenizer",
            "plan",
        ] {
            let command = cli.find_subcommand(sub).expect("subcommand");
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                match arg.get_env() {
                    Some(env) => {
                        twins += 1;
                        assert_eq!(
                            env.to_string_lossy(),
                            format!("SERVESIM_{}", long.to_uppercase().replace('-', "_")),
                            "{sub} --{long}"
                        );
                    }
                    None => assert!(NO_TWIN.contains(&long), "{sub} --{long} has no env twin"),
                }
            }
        }
        assert!(twins > 60, "only {twins} twins seen");
    }
}
