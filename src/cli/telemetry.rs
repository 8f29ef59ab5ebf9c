//! `servesim telemetry`: read the GPU through NVML, to check a host or record a fixture.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servesim_validator::telemetry::{NvmlSource, TelemetryRecording, TelemetrySource};

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print the device facts NVML reports.
    Facts {
        #[arg(long, default_value_t = 0)]
        gpu_index: u32,
    },
    /// Sample for a few seconds and save device facts and samples as JSON (a replayable fixture).
    Record {
        #[arg(long, default_value_t = 0)]
        gpu_index: u32,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 10.0)]
        sample_hz: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarise a recording (as `record` saves it): sampling, power, clocks, memory, throttling.
    Summary {
        /// The recording (JSON).
        file: String,
        /// Print the summary as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: TelemetryArgs) -> Result<()> {
    match args.action {
        Action::Facts { gpu_index } => {
            let mut src = NvmlSource::open(gpu_index)?;
            println!("{}", serde_json::to_string_pretty(&src.facts()?)?);
        }
        Action::Record {
            gpu_index,
            seconds,
            sample_hz,
            out,
        } => {
            if !(sample_hz > 0.0 && sample_hz <= 1000.0 && (0.0..=3600.0).contains(&seconds)) {
                bail!("--sample-hz must be in (0, 1000] and --seconds in [0, 3600]");
            }
            let src = NvmlSource::open(gpu_index)?;
            let rec = TelemetryRecording::record(
                Box::new(src),
                seconds,
                Duration::from_secs_f64(1.0 / sample_hz),
            )?;
            std::fs::write(&out, serde_json::to_string_pretty(&rec)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} samples of {} written to {}",
                rec.samples.len(),
                rec.facts.name,
                out.display()
            );
        }
        Action::Summary { file, json } => {
            let rec = TelemetryRecording::load(&file)?;
            let Some(summary) = rec.summary() else {
                bail!("{file} has no samples");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", summary.text());
            }
        }
    }
    Ok(())
}
