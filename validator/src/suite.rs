//! Running drills against a target: anything that can run a level's load and return its records.

use serde::{Deserialize, Serialize};
use servesim_sim::{LevelPlan, LevelRun, VirtualServer};

use crate::drills::{DrillKind, DrillParams};
use crate::rows::{Row, Slo, SweepSummary, measured, row, sweep_summary};

/// Something drills can run against: the virtual-time simulator or a real server over HTTP.
pub trait Target {
    /// Run one level's load to completion and return every request's record.
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError>;
}

/// A target that could not run a level at all (individual request failures are records, not this).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

impl Target for VirtualServer {
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        Ok(VirtualServer::run_level(self, plan))
    }
}

/// One drill's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillResult {
    pub drill: DrillKind,
    /// Profile name (simulator) or URL (real server).
    pub profile: String,
    pub rows: Vec<Row>,
    /// Batching drill: B-loaded ttft_p95 over A-alone ttft_p95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Concurrency sweeps: knee and operating point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSummary>,
}

/// Goodput a level must reach to be an operating point.
pub const GOODPUT_TARGET_PCT: f64 = 99.0;

/// Run `drill` against `target`, level by level, calling `on_level` after each with its row.
pub fn run_drill(
    target: &mut dyn Target,
    drill: DrillKind,
    params: &DrillParams,
    label: &str,
    on_level: &mut dyn FnMut(&Row, &LevelRun),
) -> Result<DrillResult, TargetError> {
    let slo = Slo {
        ttft: params.ttft_slo,
        e2e: params.e2e_slo,
    };
    let mut rows = Vec::new();
    for level in drill.levels(params) {
        let run = target.run_level(&level.plan)?;
        let (records, wall) = measured(&run.records, level.measured, level.measured_start);
        let r = row(level.axis.clone(), &records, wall, slo);
        on_level(&r, &run);
        rows.push(r);
    }
    let ratio = (drill == DrillKind::Batching && rows.len() == 2 && rows[0].ttft_p95 > 0.0)
        .then(|| rows[1].ttft_p95 / rows[0].ttft_p95);
    let sweep = drill
        .sweeps_concurrency()
        .then(|| sweep_summary(&rows, GOODPUT_TARGET_PCT));
    Ok(DrillResult {
        drill,
        profile: label.to_string(),
        rows,
        ratio,
        sweep,
    })
}
