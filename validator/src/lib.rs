//! servesim-validator: drills, their metrics and reports, for the simulator and for real servers.
//!
//! [`drills`] turns drills.md into level plans; a [`suite::Target`] runs them (the virtual-time
//! simulator here, an HTTP server in the load generator) and returns per-request records; [`rows`]
//! computes the seed table's rows from those records with [`stats`]' Python-exact percentiles;
//! [`report`] prints tables, JSON and CSV, all rounded by [`rounding`]; [`trace`] replays request traces open-loop.
//!
//! The load generator (`servesim bench`) is built from: [`http`], the streaming client
//! ([`http::sse`] parses the stream, [`http::client`] measures one request) and [`http::HttpTarget`];
//! [`load`], which runs a level's closed-loop workers and open-loop arrivals in real time and turns
//! any drill into Poisson or gamma arrivals; [`level_detail`], the per-level measurements beyond the seed
//! table (token TPOT, ITL, token throughput, schedule and client lag) and their definitions;
//! [`records`], the output directory with per-request JSON Lines; [`bench`], which runs drills on
//! a target (HTTP or [`bench::SimTarget`]) and renders the result; and [`mock`], a scripted,
//! misbehaving streaming server for tests and the client benchmark.
//!
//! `servesim validate` is built from: [`telemetry`] (NVML device facts and samples behind a trait,
//! summarised per level), [`compare`] (saved runs side by side, suite-wide error figures), [`ledger`]
//! (the claims, judged on the real run and the simulator, and classified), [`charts`] (SVG) and
//! [`validation`], which runs both sides and writes the report.

pub mod bench;
pub mod charts;
pub mod compare;
pub mod drills;
pub mod http;
pub mod ledger;
pub mod level_detail;
pub mod load;
pub mod mock;
pub mod records;
pub mod report;
pub mod rounding;
pub mod rows;
pub mod stats;
pub mod suite;
pub mod telemetry;
pub mod trace;
pub mod validation;

pub use drills::{Axis, DrillKind, DrillParams, Tier};
pub use rows::{Row, Slo, SweepSummary};
pub use suite::{DrillResult, DrillServer, Start, Target, TargetError, run_drill};
