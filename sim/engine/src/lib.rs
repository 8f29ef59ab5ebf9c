//! servesim-sim: the simulated vLLM engine and its virtual-time driver.
//!
//! [`engine_core::Engine`] is the core: a synchronous state machine that is told the time. It owns the
//! [`scheduler::Scheduler`] (queues, token budget, preemption) and the paged [`kv_cache::KvCache`], and
//! prices each iteration with the models crate's cost model. [`frontend::Frontend`] turns client
//! requests into engine requests (token counts, answer lengths). [`fleet::Fleet`] drives
//! replicas, a [`router`] and clients on a simulated clock ([`runner::VirtualServer`] is a fleet of
//! one); the HTTP server (crate `servesim-server`) drives the same core on the wall clock.
//! [`workload`] holds the load plans and per-request records that every driver shares;
//! [`workload_file`] reads TOML files of client classes into such a plan; [`inference_perf`] reads
//! inference-perf's YAML configs into stages of such plans and reports them in its shape.

pub mod engine_core;
pub mod fleet;
pub mod frontend;
pub mod inference_perf;
pub mod kv_cache;
pub mod request;
pub mod router;
pub mod runner;
pub mod scheduler;
pub mod synthetic;
pub mod workload;
pub mod workload_file;

pub use engine_core::{AdmissionError, Emission, Engine, EngineStats, Finished, StepOutcome};
pub use fleet::{Fleet, FleetRun, Gates, Replica, replica_seed};
pub use frontend::{Frontend, Prompt, RequestSpec};
pub use kv_cache::{KvCache, KvLease};
pub use request::{EngineRequest, FinishReason, RequestId};
pub use router::{Admission, ParseError, Policy, RouterConfig, Weights};
pub use runner::VirtualServer;
pub use synthetic::{ArrivalProcess, Gaps, OpenLoop, TokenDist};
pub use workload::{
    Arrival, ClientGroup, ErrorKind, LevelPlan, LevelRun, MultiTurn, Origin, RequestError,
    RequestRecord, SharedPrefix,
};
pub use workload_file::{ClientClass, Workload, WorkloadError, WorkloadPlan};
