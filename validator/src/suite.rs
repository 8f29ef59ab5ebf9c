//! Running drills against a target: anything that can run a level's load and return its records.

use serde::{Deserialize, Serialize};
use servesim_models::{Profile, ProfileError};
use servesim_sim::{LevelPlan, LevelRun, VirtualServer};

use crate::drills::{DrillKind, DrillParams};
use crate::rows::{Row, Slo, SweepSummary, measured, row, sweep_summary};

/// Something drills can run against: the virtual-time simulator or a real server over HTTP.
pub trait Target {
    /// Run one level's load to completion and return every request's record.
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError>;

    /// Called by [`run_drill`] before a drill's first level. A target that can start each drill
    /// from the same state ([`DrillServer`]) does so, so a drill's rows do not depend on the drills
    /// run before it; a real server cannot be reset and keeps going.
    fn begin_drill(&mut self, _drill: DrillKind) -> Result<(), TargetError> {
        Ok(())
    }
}

/// A target that could not run a level at all (individual request failures are records, not this).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// One simulated server carried from drill to drill (its RNG stream and warm-up state go on);
/// [`DrillServer`] is what the commands use.
impl Target for VirtualServer {
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        Ok(VirtualServer::run_level(self, plan))
    }
}

/// How the simulated server starts each drill: after the profile's one-off warm-up or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Every drill on a freshly started server that pays the warm-up.
    Cold,
    /// Every drill on a server that has warmed up already.
    Warm,
    /// The baseline drill cold, the others warm: the reference suite began with the baseline on a
    /// fresh server, so its conc-1 row carries the warm-up, and every later drill ran warm.
    Auto,
}

impl Start {
    /// Whether `drill` starts on a cold server.
    pub fn cold_for(self, drill: DrillKind) -> bool {
        match self {
            Start::Cold => true,
            Start::Warm => false,
            Start::Auto => drill == DrillKind::Baseline,
        }
    }
}

impl std::str::FromStr for Start {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cold" => Ok(Start::Cold),
            "warm" => Ok(Start::Warm),
            "auto" => Ok(Start::Auto),
            _ => Err(format!("unknown start '{s}' (auto, cold, warm)")),
        }
    }
}

/// The simulator as a drill target that gives every drill a server of its own: started as
/// [`Start`] says, with the answer-length RNG seeded afresh from the seed. A drill's rows are then
/// the same whether it runs alone or inside a suite, whatever ran before it.
#[derive(Debug)]
pub struct DrillServer {
    profile: Profile,
    seed: u64,
    start: Start,
    server: VirtualServer,
}

impl DrillServer {
    /// A target for `profile`; each drill's server is seeded with `seed` and started per `start`.
    pub fn new(profile: &Profile, seed: u64, start: Start) -> Result<DrillServer, ProfileError> {
        Ok(DrillServer {
            profile: profile.clone(),
            seed,
            start,
            server: VirtualServer::new(profile, seed)?,
        })
    }
}

impl Target for DrillServer {
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        Ok(self.server.run_level(plan))
    }

    fn begin_drill(&mut self, drill: DrillKind) -> Result<(), TargetError> {
        let mut server =
            VirtualServer::new(&self.profile, self.seed).map_err(|e| TargetError(e.to_string()))?;
        if !self.start.cold_for(drill) {
            server.skip_warmup();
        }
        self.server = server;
        Ok(())
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
    target.begin_drill(drill)?;
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
