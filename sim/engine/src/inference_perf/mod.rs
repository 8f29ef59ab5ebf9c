//! inference-perf's config files, simulated: read a kubernetes-sigs/inference-perf YAML config
//! ([`config`]), turn its `data` and `load` sections into stages of open-loop arrivals on one
//! virtual clock ([`plan`], with [`lengths`] drawn and send times from [`timer`] as inference-perf
//! draws them, or from an Azure trace, [`trace`]), run them on a [`crate::Fleet`] ([`run`]), and summarise each stage in the shape
//! of inference-perf's `stage_N_lifecycle_metrics.json` ([`report`]).
//!
//! The primary source is inference-perf 0.7.0 as published on PyPI (the wheel's
//! `inference_perf/` tree); the git mirror's newest commit holding the same code is
//! kubernetes-sigs/inference-perf@7de5ef2 (the mirror has no v0.7.0 tag; v0.6.1 is a40897e).

pub mod config;
pub mod lengths;
pub mod plan;
pub mod report;
pub mod run;
pub mod timer;
pub mod trace;

pub use config::Config;
pub use plan::{Benchmark, StageSpec};
pub use report::{LifecycleReport, RequestLifecycle, summarize_requests};
pub use run::{StageOutcome, SweepResult, run_stages, summary, sweep};

/// What can be wrong with a config file for a simulation.
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    /// The YAML does not parse into inference-perf's schema (unknown key, wrong type).
    #[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Parse { path: String, message: String },
    /// A field whose value inference-perf itself would refuse.
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// A field inference-perf accepts but servesim cannot simulate; the run would not be the one
    /// the file describes, so it is refused rather than ignored.
    #[error("{field}: {why}")]
    Unsupported { field: String, why: String },
}
