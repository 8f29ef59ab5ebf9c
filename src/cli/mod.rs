//! Command-line edge: argument parsing and error reporting; the work happens in the library crates.

mod bench;
mod cost;
mod engine_flags;
mod fleet;
mod profiles;
mod serve;
mod simulate;
mod telemetry;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Parse arguments, run the command, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Profiles(args) => profiles::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => simulate::demo(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Validate(args) => validate::validate(args),
        Command::Compare(args) => validate::compare_runs(args),
        Command::Cost(args) => cost::cost(args),
        Command::Calibrate(args) => cost::calibrate_gpu(args),
        Command::Telemetry(args) => telemetry::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servesim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
