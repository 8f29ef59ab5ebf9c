//! servesim-planner: "what is the cheapest fleet that serves this traffic within these SLOs".
//!
//! [`traffic`] says what is sent (a preset, token-length distributions, a workload file or any
//! open-loop plan, at a rate it can rescale); [`latency`] summarises a run's records against
//! [`SloTerm`]s. [`search`] enumerates candidates (GPU × tensor parallelism × engine settings, each
//! checked by the models crate as vLLM checks it) and, per candidate, [`capacity`] bisects the
//! arrival rate one replica sustains within the SLOs; replicas follow from the peak rate and the
//! headroom. [`prices`] turns GPUs into dollars; [`plan`] ranks the candidates into rows (the
//! views) and verifies the winner as a fleet; [`shard`] splits the search over machines and joins it
//! back; [`frontier`] draws the cost-vs-goodput SVG and [`emit`] writes the winner's vLLM command
//! line and Kubernetes manifests. Everything runs in virtual time: offline and deterministic, in
//! parallel over cores (rayon) with results independent of the thread count.

pub mod capacity;
pub mod emit;
pub mod frontier;
pub mod latency;
pub mod plan;
pub mod prices;
pub mod search;
pub mod shard;
pub mod traffic;

pub use capacity::{Bisection, Capacity, Measure, SimMeasure};
pub use latency::{Latencies, SloStatus, Summary};
pub use plan::{Plan, Row, View};
pub use prices::Prices;
pub use search::{Candidate, CandidateResult, Grid, PlanInputs};
pub use servesim_sim::workload_file::SloTerm;
pub use traffic::{Preset, Traffic};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
    #[error("prices {origin}: {message}")]
    Prices { origin: String, message: String },
    #[error("shard files: {0}")]
    Shards(String),
    #[error(transparent)]
    Profile(#[from] servesim_models::ProfileError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("chart: {0}")]
    Chart(String),
}
