//! servesim-validator: drills, their metrics and reports, for the simulator and for real servers.
//!
//! [`drills`] turns drills.md into level plans; a [`suite::Target`] runs them (the virtual-time
//! simulator here, an HTTP server in the load generator) and returns per-request records; [`rows`]
//! computes the seed table's rows from those records with [`stats`]' Python-exact percentiles;
//! [`report`] prints tables, JSON and CSV; [`trace`] replays request traces open-loop.

pub mod drills;
pub mod report;
pub mod rows;
pub mod stats;
pub mod suite;
pub mod trace;

pub use drills::{Axis, DrillKind, DrillParams, Tier};
pub use rows::{Row, Slo, SweepSummary};
pub use suite::{DrillResult, Target, TargetError, run_drill};
