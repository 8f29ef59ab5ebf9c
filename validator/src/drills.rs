//! The drills of `shared/reference/drills.md` as data: prompts, levels, and the load each level puts
//! on a target. Every driver (virtual time, HTTP) runs these same plans.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use servesim_sim::{ClientGroup, LevelPlan, Origin, RequestSpec};

/// The short question whose answer ends by itself after ~50 tokens.
pub const SHORT_PROMPT: &str = "Explain what a GPU scheduler does, in two sentences.";
/// The prompt a chat model keeps answering until `max_tokens` stops it.
pub const COUNT_PROMPT: &str =
    "Count upward from 1, writing one number per line. Keep going and do not stop.";
const SIZED_PREFIX: &str = "Summarize this note in one short sentence: ";
const SIZED_WORDS: [&str; 19] = [
    "gpu",
    "scheduler",
    "memory",
    "bandwidth",
    "kernel",
    "batching",
    "latency",
    "throughput",
    "tensor",
    "core",
    "occupancy",
    "prefill",
    "decode",
    "kv",
    "cache",
    "token",
    "replica",
    "goodput",
    "percentile",
];

/// `sized(n)`: the drill words repeated and cut to `max(1, floor(n / 0.75))`, after the summary prefix.
pub fn sized_prompt(n: u32) -> String {
    let words = ((f64::from(n) / 0.75).floor() as usize).max(1);
    let body: Vec<&str> = SIZED_WORDS.iter().copied().cycle().take(words).collect();
    format!("{SIZED_PREFIX}{}", body.join(" "))
}

/// The six drills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillKind {
    Baseline,
    Saturation,
    Overload,
    Prefill,
    Decode,
    Batching,
}

impl DrillKind {
    pub const ALL: [DrillKind; 6] = [
        DrillKind::Baseline,
        DrillKind::Saturation,
        DrillKind::Overload,
        DrillKind::Prefill,
        DrillKind::Decode,
        DrillKind::Batching,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DrillKind::Baseline => "baseline",
            DrillKind::Saturation => "saturation",
            DrillKind::Overload => "overload",
            DrillKind::Prefill => "prefill",
            DrillKind::Decode => "decode",
            DrillKind::Batching => "batching",
        }
    }

    /// Name of the swept column in the seed table.
    pub fn axis_name(self) -> &'static str {
        match self {
            DrillKind::Baseline | DrillKind::Saturation | DrillKind::Overload => "conc",
            DrillKind::Prefill => "in_tok",
            DrillKind::Decode => "out_tok",
            DrillKind::Batching => "phase",
        }
    }

    /// Whether the drill sweeps concurrency (so a knee and an operating point make sense).
    pub fn sweeps_concurrency(self) -> bool {
        self.axis_name() == "conc"
    }
}

impl fmt::Display for DrillKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DrillKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DrillKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown drill '{s}' (baseline, saturation, overload, prefill, decode, batching, all)"))
    }
}

/// Which overload sweep to run: the GPU one (conc 32..512, max_tokens 512, 64 requests) or the
/// CPU-tier one (conc 1..32, 12 requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Gpu,
    Cpu,
}

/// Overrides of a drill's defaults; `None` keeps drills.md's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillParams {
    pub concurrency: Option<Vec<usize>>,
    pub requests_per_level: Option<usize>,
    pub max_tokens: Option<Vec<u32>>,
    pub input_tokens: Option<Vec<u32>>,
    pub ttft_slo: f64,
    pub e2e_slo: f64,
    pub tier: Tier,
}

impl Default for DrillParams {
    fn default() -> Self {
        DrillParams {
            concurrency: None,
            requests_per_level: None,
            max_tokens: None,
            input_tokens: None,
            ttft_slo: 1.0,
            e2e_slo: 0.0,
            tier: Tier::Gpu,
        }
    }
}

/// The value on a row's axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Axis {
    Num(u64),
    Label(String),
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Axis::Num(n) => write!(f, "{n}"),
            Axis::Label(s) => f.write_str(s),
        }
    }
}

/// One level: its axis value, its load, and which records make its row.
#[derive(Debug, Clone)]
pub struct Level {
    pub axis: Axis,
    pub plan: LevelPlan,
    /// The group whose requests are measured (the others are background load).
    pub measured: Origin,
    /// Offset into the level at which the measured group starts (its wall clock starts there).
    pub measured_start: f64,
}

fn closed(axis: u64, conc: usize, reqs: usize, spec: RequestSpec) -> Level {
    let reqs = reqs.max(conc);
    Level {
        axis: Axis::Num(axis),
        plan: LevelPlan {
            groups: vec![ClientGroup::new(0.0, conc, vec![spec; reqs])],
            ..LevelPlan::default()
        },
        measured: Origin::Group(0),
        measured_start: 0.0,
    }
}

impl DrillKind {
    /// The levels of this drill under `params`.
    pub fn levels(self, params: &DrillParams) -> Vec<Level> {
        let conc = |default: &[usize]| {
            params
                .concurrency
                .clone()
                .unwrap_or_else(|| default.to_vec())
        };
        let one_conc = || {
            params
                .concurrency
                .as_ref()
                .and_then(|c| c.first().copied())
                .unwrap_or(1)
        };
        let reqs = |default: usize| params.requests_per_level.unwrap_or(default);
        let max_tokens = |default: u32| {
            params
                .max_tokens
                .as_ref()
                .and_then(|m| m.first().copied())
                .unwrap_or(default)
        };
        match self {
            DrillKind::Baseline | DrillKind::Saturation | DrillKind::Overload => {
                let (levels, n, mt): (Vec<usize>, usize, u32) = match (self, params.tier) {
                    (DrillKind::Baseline, _) => (conc(&[1, 2, 4, 8]), reqs(12), max_tokens(128)),
                    (DrillKind::Saturation, _) => {
                        (conc(&[64, 128, 256, 512]), reqs(512), max_tokens(128))
                    }
                    (_, Tier::Gpu) => (conc(&[32, 64, 128, 256, 512]), reqs(64), max_tokens(512)),
                    (_, Tier::Cpu) => (conc(&[1, 2, 4, 8, 16, 32]), reqs(12), max_tokens(128)),
                };
                levels
                    .into_iter()
                    .map(|c| closed(c as u64, c, n, RequestSpec::chat(SHORT_PROMPT, mt)))
                    .collect()
            }
            DrillKind::Prefill => {
                let inputs = params
                    .input_tokens
                    .clone()
                    .unwrap_or_else(|| vec![16, 128, 512, 1024]);
                let mt = max_tokens(64);
                inputs
                    .into_iter()
                    .map(|n| {
                        closed(
                            u64::from(n),
                            one_conc(),
                            reqs(12),
                            RequestSpec::chat(&sized_prompt(n), mt),
                        )
                    })
                    .collect()
            }
            DrillKind::Decode => {
                let caps = params
                    .max_tokens
                    .clone()
                    .unwrap_or_else(|| vec![32, 64, 128, 256]);
                caps.into_iter()
                    .map(|mt| {
                        closed(
                            u64::from(mt),
                            one_conc(),
                            reqs(12),
                            RequestSpec::chat(COUNT_PROMPT, mt),
                        )
                    })
                    .collect()
            }
            DrillKind::Batching => {
                let n = reqs(12);
                let short = vec![RequestSpec::chat(SHORT_PROMPT, 16); n];
                let alone = Level {
                    axis: Axis::Label("A-alone".into()),
                    plan: LevelPlan {
                        groups: vec![ClientGroup::new(0.0, 1, short.clone())],
                        ..LevelPlan::default()
                    },
                    measured: Origin::Group(0),
                    measured_start: 0.0,
                };
                let long = params
                    .concurrency
                    .as_ref()
                    .and_then(|c| c.first().copied())
                    .unwrap_or(8);
                let loaded = Level {
                    axis: Axis::Label("B-loaded".into()),
                    plan: LevelPlan {
                        groups: vec![
                            // The long requests are background load: each worker sends its
                            // next one when its previous one ends, for as long as the short
                            // ones run. drills.md starts 8 once; kept going, they still load
                            // the server when a fast one (a tiny model on a CPU) would have
                            // finished them before the short phase, so on a serial server
                            // every short request waits behind them, not just the first.
                            ClientGroup::background(
                                0.0,
                                long,
                                vec![RequestSpec::chat(SHORT_PROMPT, 512); long],
                            ),
                            ClientGroup::new(0.5, 1, short),
                        ],
                        ..LevelPlan::default()
                    },
                    measured: Origin::Group(1),
                    measured_start: 0.5,
                };
                vec![alone, loaded]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_prompt_follows_the_definition() {
        assert_eq!(
            sized_prompt(1),
            "Summarize this note in one short sentence: gpu"
        );
        let p = sized_prompt(16);
        let words: Vec<&str> = p.trim_start_matches(SIZED_PREFIX).split(' ').collect();
        assert_eq!(words.len(), 21);
        assert_eq!(words[19], "gpu");
        assert_eq!(words[20], "scheduler");
        let p = sized_prompt(1024);
        assert_eq!(p.trim_start_matches(SIZED_PREFIX).split(' ').count(), 1365);
    }

    #[test]
    fn default_levels_match_drills_md() {
        let p = DrillParams::default();
        let reqs = |d: DrillKind| -> Vec<(String, usize, usize)> {
            d.levels(&p)
                .iter()
                .map(|l| {
                    let g = &l.plan.groups[0];
                    (l.axis.to_string(), g.workers, g.requests.len())
                })
                .collect()
        };
        assert_eq!(
            reqs(DrillKind::Baseline)
                .iter()
                .map(|r| r.1)
                .collect::<Vec<_>>(),
            [1, 2, 4, 8]
        );
        assert!(reqs(DrillKind::Baseline).iter().all(|r| r.2 == 12));
        assert!(reqs(DrillKind::Saturation).iter().all(|r| r.2 == 512));
        // reqs is raised to at least conc.
        let gpu = reqs(DrillKind::Overload);
        assert_eq!(gpu.last().map(|r| (r.1, r.2)), Some((512, 512)));
        assert_eq!(gpu.first().map(|r| (r.1, r.2)), Some((32, 64)));
        let cpu = DrillKind::Overload.levels(&DrillParams {
            tier: Tier::Cpu,
            ..DrillParams::default()
        });
        assert_eq!(cpu.len(), 6);
        let b = DrillKind::Batching.levels(&p);
        assert_eq!(b[1].plan.groups[0].requests[0].max_tokens, 512);
        assert_eq!(b[1].plan.groups[1].start, 0.5);
    }
}
