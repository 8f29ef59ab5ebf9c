//! A bench run: drills on a target level by level through [`run_drill`] (so rows are exactly those of
//! `servesim simulate` on the same records), each level's [`LevelDetail`], records logged as they
//! finish, a clean partial result when the run is stopped, and the summary printers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};
use servesim_sim::{LevelPlan, LevelRun};

use crate::drills::{DrillKind, DrillParams};
use crate::http::INTERRUPTED;
use crate::level_detail::{DEFINITIONS, LevelDetail};
use crate::load::{CappedTarget, OpenLoop, OpenLoopTarget};
use crate::records::RecordLog;
use crate::report::{self, Format};
use crate::rows::{Row, measured, sweep_summary};
use crate::suite::{DrillResult, DrillServer, GOODPUT_TARGET_PCT, Target, TargetError, run_drill};

/// The virtual-time engine as a bench target: the same [`DrillServer`] `simulate` uses (a server
/// of its own per drill), keeping event times (for ITL) and logging each level's records.
pub struct SimTarget {
    server: DrillServer,
    log: Option<Arc<RecordLog>>,
}

impl std::fmt::Debug for SimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTarget")
            .field("logging", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

impl SimTarget {
    /// Wrap `server`; records go to `log` after each level.
    pub fn new(server: DrillServer, log: Option<Arc<RecordLog>>) -> SimTarget {
        SimTarget { server, log }
    }
}

impl Target for SimTarget {
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        let mut plan = plan.clone();
        plan.record_event_times = true;
        let run = self.server.run_level(&plan)?;
        if let Some(log) = &self.log {
            for r in &run.records {
                log.write(r);
            }
        }
        Ok(run)
    }

    fn begin_drill(&mut self, drill: DrillKind) -> Result<(), TargetError> {
        self.server.begin_drill(drill)
    }
}

impl CappedTarget for SimTarget {
    fn run_level_capped(
        &mut self,
        plan: &LevelPlan,
        max_in_flight: Option<usize>,
    ) -> Result<LevelRun, TargetError> {
        if max_in_flight.is_some() {
            return Err(TargetError(
                "the virtual-time runner cannot cap open-loop arrivals yet: drop --rate-cap with --target sim".into(),
            ));
        }
        self.run_level(plan)
    }
}

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchSpec {
    pub drills: Vec<DrillKind>,
    pub params: DrillParams,
    /// Profile name or URL, shown in titles.
    pub label: String,
    /// Open-loop arrivals instead of drills.md's closed loop.
    pub open_loop: Option<OpenLoop>,
}

/// One drill's outcome.
#[derive(Debug, Clone)]
pub struct DrillBench {
    pub result: DrillResult,
    pub details: Vec<LevelDetail>,
    /// Levels planned.
    pub levels_planned: usize,
    /// The run was stopped during this drill: its last row covers only the requests that
    /// finished before the stop, and later levels have none.
    pub cut_short: bool,
}

impl DrillBench {
    /// Every planned level ran to its end.
    pub fn complete(&self) -> bool {
        !self.cut_short && self.result.rows.len() == self.levels_planned
    }
}

/// A whole run's outcome.
#[derive(Debug, Clone, Default)]
pub struct BenchOutcome {
    pub drills: Vec<DrillBench>,
    /// Why the run stopped early (e.g. [`crate::http::INTERRUPTED`]).
    pub stopped: Option<String>,
}

impl BenchOutcome {
    /// Requests measured over the whole run, how many succeeded, and the failures by class.
    pub fn totals(&self) -> (usize, usize, BTreeMap<String, usize>) {
        let (mut requests, mut ok, mut errors) = (0, 0, BTreeMap::new());
        for detail in self.drills.iter().flat_map(|d| &d.details) {
            requests += detail.requests;
            ok += detail.ok;
            for (class, n) in &detail.errors {
                *errors.entry(class.clone()).or_insert(0) += n;
            }
        }
        (requests, ok, errors)
    }
}

/// Called after each level with its drill, row, detail and raw run.
pub type LevelHook<'a> = dyn FnMut(DrillKind, &Row, &LevelDetail, &LevelRun) + 'a;

/// Run `spec` on `target`; `log`'s level tag follows the levels.
pub fn run_bench(
    target: &mut dyn CappedTarget,
    spec: &BenchSpec,
    log: Option<&RecordLog>,
    on_level: &mut LevelHook<'_>,
) -> BenchOutcome {
    let stop = target.stop_handle();
    let stopped = || stop.as_ref().is_some_and(|s| s.is_stopped());
    let mut open;
    let target: &mut dyn Target = match &spec.open_loop {
        Some(load) => {
            open = OpenLoopTarget::new(target, load.clone());
            &mut open
        }
        None => target,
    };
    let mut outcome = BenchOutcome::default();
    for &drill in &spec.drills {
        let levels = drill.levels(&spec.params);
        if let (Some(log), Some(first)) = (log, levels.first()) {
            log.set_level(drill, 0, &first.axis);
        }
        let mut rows = Vec::new();
        let mut details = Vec::new();
        let result = run_drill(target, drill, &spec.params, &spec.label, &mut |row, run| {
            let k = details.len();
            if let Some(level) = levels.get(k) {
                let (records, wall) = measured(&run.records, level.measured, level.measured_start);
                let detail = LevelDetail::of(level.axis.clone(), &records, wall);
                on_level(drill, row, &detail, run);
                details.push(detail);
            }
            rows.push(row.clone());
            if let (Some(log), Some(next)) = (log, levels.get(k + 1)) {
                log.set_level(drill, k + 1, &next.axis);
            }
        });
        match result {
            Ok(result) => {
                let cut_short = stopped();
                outcome.drills.push(DrillBench {
                    result,
                    details,
                    levels_planned: levels.len(),
                    cut_short,
                });
                if cut_short {
                    outcome.stopped = Some(INTERRUPTED.to_string());
                    break;
                }
            }
            Err(e) => {
                if !rows.is_empty() {
                    let sweep = drill
                        .sweeps_concurrency()
                        .then(|| sweep_summary(&rows, GOODPUT_TARGET_PCT));
                    outcome.drills.push(DrillBench {
                        result: DrillResult {
                            drill,
                            profile: spec.label.clone(),
                            rows,
                            ratio: None,
                            sweep,
                        },
                        details,
                        levels_planned: levels.len(),
                        cut_short: true,
                    });
                }
                outcome.stopped = Some(e.0);
                break;
            }
        }
    }
    outcome
}

/// The note printed above tables: what the columns count.
pub const TABLE_NOTE: &str = "# events exclude the usage-only chunk; tpot_p50 = median (e2e - ttft) / max(events - 1, 1) per event (drills.md); token TPOT, ITL and token throughput are in the JSON";

/// One drill as JSON: `simulate --format json`'s object plus knee, operating point and the level
/// details.
pub fn drill_json(d: &DrillBench) -> Value {
    let mut v = report::json_value(&d.result);
    if let Some(obj) = v.as_object_mut() {
        if let Some(s) = &d.result.sweep {
            obj.insert("knee".into(), json!(s.knee));
            obj.insert("operating_point".into(), json!(s.operating_point));
            obj.insert("goodput_target_pct".into(), json!(s.goodput_target_pct));
        }
        obj.insert("complete".into(), json!(d.complete()));
        obj.insert("levels".into(), json!(d.details));
    }
    v
}

/// The drills as `--format json` prints them: one object for one drill, an array for more (the
/// shape of `simulate --format json`).
pub fn results_json(outcome: &BenchOutcome) -> Value {
    match outcome.drills.as_slice() {
        [one] => drill_json(one),
        many => Value::Array(many.iter().map(drill_json).collect()),
    }
}

/// Metric definitions as a JSON object.
pub fn definitions_json() -> Value {
    Value::Object(
        DEFINITIONS
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// The summary file: tool, version, target, definitions, why it stopped, and every drill.
pub fn summary_json(outcome: &BenchOutcome, spec: &BenchSpec) -> Value {
    json!({
        "tool": "servesim bench",
        "version": env!("CARGO_PKG_VERSION"),
        "target": spec.label,
        "definitions": definitions_json(),
        "stopped": outcome.stopped,
        "drills": outcome.drills.iter().map(drill_json).collect::<Vec<_>>(),
    })
}

/// The run in `format` (tables get the note on top and an interruption line where it applies).
pub fn render(outcome: &BenchOutcome, format: Format) -> String {
    let results: Vec<DrillResult> = outcome.drills.iter().map(|d| d.result.clone()).collect();
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&results_json(outcome)).unwrap_or_default() + "\n"
        }
        Format::Csv => report::csv(&results),
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(out, "{TABLE_NOTE}");
            for (i, d) in outcome.drills.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&report::table(&d.result));
                if d.cut_short {
                    let _ = writeln!(
                        out,
                        "# stopped: {} of {} levels have rows; the last covers only the requests that finished",
                        d.result.rows.len(),
                        d.levels_planned
                    );
                }
            }
            out
        }
    }
}
