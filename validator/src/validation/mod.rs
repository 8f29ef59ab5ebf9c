//! `servesim validate`: run the drill suite on a real endpoint (or take a recording of one) and on the
//! simulator, sample the GPU during the real run, compare, judge the claims, and write the report.
//!
//! This module runs and judges, producing a [`Validation`]; `report` prints one (charts, the
//! Markdown report, the files of the report directory) and nothing else.

mod report;

pub use report::{WriteError, charts, report_markdown, write_report};

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use servesim_models::Profile;
use servesim_sim::{LevelPlan, LevelRun};

use crate::compare::{Comparison, Recording, compare};
use crate::drills::{Axis, DrillKind, DrillParams};
use crate::ledger::{Ledger, evaluate};
use crate::suite::{DrillServer, Start, Target, TargetError, run_drill};
use crate::telemetry::{DeviceFacts, LevelTelemetry, Sample, Sampler, TelemetrySource, summarize};

/// A target wrapper that notes each level's time window on a shared clock.
struct TimedTarget<'a> {
    inner: &'a mut dyn Target,
    clock: Instant,
    windows: Vec<(f64, f64)>,
}

impl Target for TimedTarget<'_> {
    fn begin_drill(&mut self, drill: DrillKind) -> Result<(), TargetError> {
        self.inner.begin_drill(drill)
    }

    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        let start = self.clock.elapsed().as_secs_f64();
        let run = self.inner.run_level(plan);
        self.windows
            .push((start, self.clock.elapsed().as_secs_f64()));
        run
    }
}

/// The real side of a validation: the drill tables and, when NVML was there, the telemetry.
#[derive(Debug, Clone, Serialize)]
pub struct RealRun {
    pub recording: Recording,
    pub facts: Option<DeviceFacts>,
    /// Why there is no telemetry, when there is none.
    pub telemetry_note: Option<String>,
    pub samples: Vec<Sample>,
    pub levels: Vec<LevelTelemetry>,
}

impl RealRun {
    /// A real run known only from a recording (no telemetry).
    pub fn from_recording(recording: Recording, note: &str) -> RealRun {
        RealRun {
            recording,
            facts: None,
            telemetry_note: Some(note.to_string()),
            samples: Vec::new(),
            levels: Vec::new(),
        }
    }
}

/// Run `drills` on `target` while sampling `telemetry` (if any) every `interval`.
pub fn run_real(
    target: &mut dyn Target,
    drills: &[DrillKind],
    params: &DrillParams,
    label: &str,
    telemetry: Result<Box<dyn TelemetrySource>, String>,
    interval: Duration,
    on_level: &mut dyn FnMut(DrillKind, &crate::rows::Row),
) -> Result<RealRun, TargetError> {
    let (mut facts, mut note) = (None, None);
    let sampler = match telemetry {
        Ok(mut source) => match source.facts() {
            Ok(f) => {
                facts = Some(f);
                Some(Sampler::start(source, interval))
            }
            Err(e) => {
                note = Some(e.0);
                None
            }
        },
        Err(why) => {
            note = Some(why);
            None
        }
    };
    let clock = Instant::now();
    let mut timed = TimedTarget {
        inner: target,
        clock,
        windows: Vec::new(),
    };
    let mut results = Vec::new();
    let mut axes: Vec<(DrillKind, Axis)> = Vec::new();
    for &d in drills {
        let res = run_drill(&mut timed, d, params, label, &mut |row, _| on_level(d, row))?;
        axes.extend(res.rows.iter().map(|r| (d, r.axis.clone())));
        results.push(res);
    }
    // The sampler's clock started before `clock`; windows are shifted onto it.
    let (samples, errors) = match sampler {
        Some(s) => {
            let offset = s.elapsed() - clock.elapsed().as_secs_f64();
            let (samples, errors) = s.finish();
            let windows: Vec<(f64, f64)> = timed
                .windows
                .iter()
                .map(|(a, b)| (a + offset, b + offset))
                .collect();
            timed.windows = windows;
            (samples, errors)
        }
        None => (Vec::new(), Vec::new()),
    };
    if !errors.is_empty() && note.is_none() {
        note = Some(format!("some NVML reads failed: {}", errors.join("; ")));
    }
    let levels = axes
        .iter()
        .zip(&timed.windows)
        .filter_map(|((d, axis), (a, b))| summarize(&samples, d.name(), &axis.to_string(), *a, *b))
        .collect();
    Ok(RealRun {
        recording: Recording {
            label: label.to_string(),
            drills: results,
        },
        facts,
        telemetry_note: note,
        samples,
        levels,
    })
}

/// Run `drills` on the simulator in virtual time, each on a server of its own started per `start`.
pub fn run_sim(
    profile: &Profile,
    drills: &[DrillKind],
    params: &DrillParams,
    seed: u64,
    start: Start,
) -> Result<Recording, TargetError> {
    let mut server =
        DrillServer::new(profile, seed, start).map_err(|e| TargetError(e.to_string()))?;
    let label = format!("sim:{}", profile.name);
    let drills = drills
        .iter()
        .map(|&d| run_drill(&mut server, d, params, &label, &mut |_, _| {}))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Recording { label, drills })
}

/// Where the real numbers came from and what the server said about itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Environment {
    pub real_source: String,
    pub profile: String,
    pub tool_version: String,
    /// `GET /v1/models` of the real server, when it was asked.
    pub server_models: Option<Value>,
    /// `GET /version` of the real server, when it was asked.
    pub server_version: Option<Value>,
}

/// Everything `validate` found.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub environment: Environment,
    pub real: RealRun,
    pub sim: Recording,
    pub comparison: Comparison,
    pub ledger: Ledger,
}

/// Compare and judge.
pub fn assemble(environment: Environment, real: RealRun, sim: Recording) -> Validation {
    let comparison = compare(&real.recording, &sim);
    let knee_level = real
        .recording
        .drill(DrillKind::Saturation)
        .or_else(|| real.recording.drill(DrillKind::Overload))
        .and_then(|d| {
            let knee = d.sweep.as_ref()?.knee.as_ref()?.to_string();
            real.levels
                .iter()
                .find(|l| l.drill == d.drill.name() && l.axis == knee)
        });
    let ledger = evaluate(&real.recording, &sim, knee_level, real.facts.as_ref());
    Validation {
        environment,
        real,
        sim,
        comparison,
        ledger,
    }
}

/// Ask a server what it serves (`GET /v1/models`) and its version (`GET /version`), for the report's
/// environment; either is `None` when the server does not answer it with JSON.
pub fn probe_server(base_url: &str, api_key: Option<&str>) -> (Option<Value>, Option<Value>) {
    let base = base_url
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (None, None);
    };
    rt.block_on(async {
        let Ok(client) = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        else {
            return (None, None);
        };
        let get = |path: &'static str| {
            let mut req = client.get(format!("{base}{path}"));
            if let Some(k) = api_key {
                req = req.bearer_auth(k);
            }
            async move {
                let resp = req.send().await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                serde_json::from_slice::<Value>(&resp.bytes().await.ok()?).ok()
            }
        };
        (get("/v1/models").await, get("/version").await)
    })
}
