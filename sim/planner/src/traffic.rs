//! What the planned fleet is sent: a shape that can be replayed at any arrival rate.
//!
//! The planner bisects the rate, so every traffic must rescale: synthetic open loops (presets or
//! token-length distributions) draw their arrivals at the asked rate; workload files scale every
//! open-loop class's rate by one factor; any other open-loop plan (a CSV or Mooncake trace, or a
//! converted inference-perf config: the hook for other front ends) is compressed or stretched in
//! time. Closed-loop load has no rate of its own (the server sets it) and is refused.

use serde::Serialize;
use servesim_sim::workload_file::SloTerm;
use servesim_sim::workload_file::{ClassLoad, Limit};
use servesim_sim::{ArrivalProcess, LevelPlan, OpenLoop, TokenDist, Workload};

use crate::PlanError;

/// A common use case: its token shape and the SLOs it is usually held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub input: &'static str,
    pub output: &'static str,
    /// Default SLO terms, `--slo`'s syntax.
    pub slo: &'static str,
    /// Where the shape and the SLOs come from.
    pub source: &'static str,
}

/// The built-in use cases. Lengths are lognormal around the cited typical length with a standard
/// deviation of half the mean (our choice: real prompt lengths are right-skewed; the cited sources
/// give typical lengths, not spreads).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "chat",
        input: "lognormal:mean=256,sd=128",
        output: "lognormal:mean=256,sd=128",
        slo: "ttft_p95=1,tpot_p50=0.05",
        source: "shape: NVIDIA Enterprise RAG sizing guide, chat ISL/OSL 128/128 (docs.nvidia.com/enterprise-reference-architectures/enterprise-rag-retrieval-scaling-and-sizing-guide, RAG benchmarking methodology), doubled for multi-sentence turns; SLO: issue 16's example (TTFT p95 1 s; 50 ms per token = 20 tok/s, faster than reading)",
    },
    Preset {
        name: "rag",
        input: "lognormal:mean=1000,sd=500",
        output: "lognormal:mean=100,sd=50",
        slo: "ttft_p95=2,tpot_p95=0.1",
        source: "shape: NVIDIA NIM benchmarking guide, 'Summarization: retrieval, chain-of-thought, multi-turn: ISL near 1,000 tokens and OSL near 100' (docs.nvidia.com/nim/benchmarking/llm/latest/parameters.html); SLO: MLPerf Inference's Llama-2-70B server scenario bounds TTFT at 2000 ms and TPOT at 200 ms (mlcommons/inference, loadgen/mlperf.conf: llama2-70b.Server.ttft_latency, tpot_latency; p99 there), held here at p95 with TPOT halved to 100 ms for an interactive answer",
    },
    Preset {
        name: "code",
        input: "lognormal:mean=1500,sd=750",
        output: "lognormal:mean=64,sd=32",
        slo: "ttft_p95=0.5,e2e_p95=2",
        source: "code completion (fill-in-the-middle): a file's context in, a few lines out; no public reference shape found, our assumption (documented in docs/planning.md); SLO: completions must arrive while the user types: TTFT p95 0.5 s, whole answer within 2 s",
    },
    Preset {
        name: "summarise",
        input: "lognormal:mean=4096,sd=1024",
        output: "lognormal:mean=512,sd=128",
        slo: "ttft_p95=4,tpot_p95=0.1",
        source: "shape: NVIDIA Enterprise RAG sizing guide, summarization ISL/OSL 4096/512 (docs.nvidia.com/enterprise-reference-architectures/enterprise-rag-retrieval-scaling-and-sizing-guide); SLO: a batch-like read that the user waits for: TTFT p95 4 s, TPOT p95 100 ms",
    },
];

/// A preset by name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The rescalable load.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Open-loop arrivals with token lengths drawn from distributions.
    Synthetic {
        arrival: ArrivalProcess,
        input: TokenDist,
        output: TokenDist,
    },
    /// A workload file of open-loop classes; `rate` scales all their rates together.
    File(Workload),
    /// Any open-loop plan recorded at `rate` requests per second (a trace, or another front end's
    /// load converted to a plan); replayed faster or slower.
    Replay { plan: LevelPlan, rate: f64 },
}

/// A named shape.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// How the plan's output names it (`chat`, `lognormal:mean=512,... -> 128`, `file.toml`).
    pub name: String,
    pub shape: Shape,
}

/// How the traffic was asked for, kept in the plan's inputs so that a merge on another machine
/// rebuilds the same traffic to verify the winner (files are named by path, not copied).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrafficSpec {
    /// A preset, or its shape with other lengths or arrivals.
    Synthetic {
        name: String,
        arrival: String,
        input: String,
        output: String,
    },
    /// A workload file of open-loop classes.
    File { path: String },
    /// A CSV or Mooncake trace.
    Trace { path: String },
    /// An inference-perf config (its highest-rate stage).
    InferencePerf { path: String },
}

/// What the output says about the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TrafficSummary {
    pub name: String,
    /// How to rebuild it.
    pub spec: Option<TrafficSpec>,
    pub mean_input_tokens: f64,
    pub mean_output_tokens: f64,
}

impl Traffic {
    /// A synthetic spec's traffic (files and traces are read by the caller).
    pub fn synthetic(
        name: &str,
        arrival: &str,
        input: &str,
        output: &str,
    ) -> Result<Traffic, PlanError> {
        let bad = |e: servesim_sim::ParseError| PlanError::Invalid(e.to_string());
        Ok(Traffic {
            name: name.to_string(),
            shape: Shape::Synthetic {
                arrival: arrival.parse().map_err(bad)?,
                input: input.parse().map_err(bad)?,
                output: output.parse().map_err(bad)?,
            },
        })
    }

    /// A preset's shape with Poisson arrivals.
    pub fn preset(p: &Preset) -> Result<Traffic, PlanError> {
        let dist = |s: &str| {
            s.parse::<TokenDist>()
                .map_err(|e| PlanError::Invalid(e.to_string()))
        };
        Ok(Traffic {
            name: p.name.to_string(),
            shape: Shape::Synthetic {
                arrival: ArrivalProcess::Poisson,
                input: dist(p.input)?,
                output: dist(p.output)?,
            },
        })
    }

    /// A workload file: every class must be open-loop (a closed loop has no rate to scale).
    pub fn file(name: &str, workload: Workload) -> Result<Traffic, PlanError> {
        if let Some(c) = workload
            .classes
            .iter()
            .find(|c| matches!(c.load, ClassLoad::Closed { .. }))
        {
            return Err(PlanError::Invalid(format!(
                "{name}: class '{}' is closed-loop; the planner needs open-loop classes (a rate \
                 to scale)",
                c.name
            )));
        }
        Ok(Traffic {
            name: name.to_string(),
            shape: Shape::File(workload),
        })
    }

    /// The open-loop plan at `rate` requests per second, `requests` requests long (a replayed
    /// plan is cut there, or cycled through again), drawn with `seed`.
    pub fn plan_at(&self, rate: f64, requests: usize, seed: u64) -> Result<LevelPlan, PlanError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(PlanError::Invalid(format!("rate {rate} must be > 0")));
        }
        match &self.shape {
            Shape::Synthetic {
                arrival,
                input,
                output,
            } => OpenLoop {
                arrival: *arrival,
                rate,
                requests: requests.max(1),
                input_tokens: *input,
                output_tokens: *output,
                seed,
            }
            .plan()
            .map_err(|e| PlanError::Invalid(e.to_string())),
            Shape::File(workload) => {
                let base = file_rate(workload);
                let mut scaled = workload.clone();
                for class in &mut scaled.classes {
                    if let ClassLoad::Open { rate: r, limit, .. } = &mut class.load {
                        // Each class keeps its share of the rate and of the probe's requests.
                        let share = *r / base;
                        *r *= rate / base;
                        *limit =
                            Limit::Requests(((requests as f64 * share).round() as usize).max(1));
                    }
                }
                Ok(scaled.plan(seed).plan)
            }
            Shape::Replay { plan, rate: base } => {
                let src = &plan.arrivals;
                let (Some(first), Some(last)) = (src.first(), src.last()) else {
                    return Err(PlanError::Invalid(format!(
                        "{}: no requests to replay",
                        self.name
                    )));
                };
                // Longer runs than the plan cycle through it again, one mean gap after its end
                // (a short trace at a high rate would otherwise be one burst, which a big batch
                // absorbs however overloaded the server would be in steady state).
                let span = last.at - first.at;
                let period = span + span / (src.len().max(2) - 1) as f64;
                let stretch = base / rate;
                let arrivals = (0..requests.max(1))
                    .map(|i| {
                        let a = &src[i % src.len()];
                        let cycle = (i / src.len()) as f64;
                        servesim_sim::Arrival {
                            at: (a.at - first.at + cycle * period) * stretch,
                            request: a.request.clone(),
                        }
                    })
                    .collect();
                Ok(LevelPlan {
                    arrivals,
                    ..plan.clone()
                })
            }
        }
    }

    /// Mean prompt and answer lengths, for the output's token arithmetic.
    pub fn summary(&self) -> TrafficSummary {
        let (mean_input_tokens, mean_output_tokens) = match &self.shape {
            Shape::Synthetic { input, output, .. } => (input.mean(), output.mean()),
            Shape::File(w) => {
                let base = file_rate(w);
                w.classes.iter().fold((0.0, 0.0), |(i, o), c| {
                    let share = match c.load {
                        ClassLoad::Open { rate, .. } => rate / base,
                        ClassLoad::Closed { .. } => 0.0,
                    };
                    (
                        i + share * c.input_tokens.mean(),
                        o + share * c.output_tokens.mean(),
                    )
                })
            }
            Shape::Replay { plan, .. } => {
                let n = plan.arrivals.len().max(1) as f64;
                let (i, o) = plan.arrivals.iter().fold((0.0, 0.0), |(i, o), a| {
                    // Traces give lengths or token ids; chat and text prompts (not made by the
                    // planner's front ends) count as unknown.
                    let input = match &a.request.prompt {
                        servesim_sim::Prompt::Tokens(t) => f64::from(*t),
                        servesim_sim::Prompt::Ids(ids) => ids.len() as f64,
                        _ => 0.0,
                    };
                    (i + input, o + f64::from(a.request.max_tokens))
                });
                (i / n, o / n)
            }
        };
        TrafficSummary {
            name: self.name.clone(),
            spec: None,
            mean_input_tokens,
            mean_output_tokens,
        }
    }
}

/// A workload file's classes at `rate` in all, `requests` requests long: each class keeps its share
/// of the rate and of the requests.
pub fn scaled(workload: &Workload, rate: f64, requests: usize) -> Workload {
    let base = file_rate(workload);
    let mut out = workload.clone();
    for class in &mut out.classes {
        if let ClassLoad::Open { rate: r, limit, .. } = &mut class.load {
            let share = *r / base;
            *r *= rate / base;
            *limit = Limit::Requests(((requests as f64 * share).round() as usize).max(1));
        }
    }
    out
}

/// The sum of a workload file's open-loop class rates (requests or sessions per second).
fn file_rate(w: &Workload) -> f64 {
    w.classes
        .iter()
        .map(|c| match c.load {
            ClassLoad::Open { rate, .. } => rate,
            ClassLoad::Closed { .. } => 0.0,
        })
        .sum::<f64>()
        .max(f64::MIN_POSITIVE)
}

/// Parse `ttft_p95=1,tpot_p50=0.05` into SLO terms (at least one).
pub fn parse_slo(spec: &str) -> Result<Vec<SloTerm>, PlanError> {
    let mut terms = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            PlanError::Invalid(format!(
                "--slo: '{part}' is not KEY=SECONDS (e.g. ttft_p95=1)"
            ))
        })?;
        let target: f64 = value.trim().parse().map_err(|_| {
            PlanError::Invalid(format!(
                "--slo: '{value}' in '{part}' is not a number of seconds"
            ))
        })?;
        terms.push(SloTerm::parse(key.trim(), target).map_err(PlanError::Invalid)?);
    }
    if terms.is_empty() {
        return Err(PlanError::Invalid("--slo needs at least one term".into()));
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_keep_the_asked_rate() {
        for p in PRESETS {
            let t = Traffic::preset(p).expect(p.name);
            parse_slo(p.slo).expect(p.slo);
            let plan = t.plan_at(4.0, 2000, 1).expect("plan");
            let last = plan.arrivals.last().map_or(0.0, |a| a.at);
            let rate = (plan.arrivals.len() - 1) as f64 / last;
            assert!((rate - 4.0).abs() < 0.3, "{}: {rate}", p.name);
        }
    }

    #[test]
    fn a_replayed_plan_is_compressed_to_the_asked_rate() {
        let t = Traffic::preset(&PRESETS[0]).expect("chat");
        let plan = t.plan_at(1.0, 100, 1).expect("plan");
        let replay = Traffic {
            name: "trace".into(),
            shape: Shape::Replay {
                plan: plan.clone(),
                rate: 1.0,
            },
        };
        let fast = replay.plan_at(4.0, 50, 1).expect("fast");
        assert_eq!(fast.arrivals.len(), 50);
        assert!((fast.arrivals[49].at - plan.arrivals[49].at / 4.0).abs() < 1e-12);
        // Longer than the plan: cycled, the second lap one mean gap after the first ends.
        let long = replay.plan_at(1.0, 250, 1).expect("long");
        let span = plan.arrivals[99].at;
        assert!((long.arrivals[100].at - (span + span / 99.0)).abs() < 1e-9);
        assert_eq!(long.arrivals[100].request, plan.arrivals[0].request);
        assert!(long.arrivals.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn a_workload_file_scales_its_open_classes_together_and_refuses_closed_ones() {
        let text = "[[class]]\nname = \"a\"\narrival = \"poisson\"\nrate = 1.0\nrequests = 10\ninput_tokens = 100\noutput_tokens = 10\n\n[[class]]\nname = \"b\"\narrival = \"constant\"\nrate = 3.0\nrequests = 10\ninput_tokens = 300\noutput_tokens = 30\n";
        let w = Workload::parse(text, "two.toml").expect("workload");
        let t = Traffic::file("two.toml", w).expect("open classes");
        let s = t.summary();
        // Rate-weighted means: a is a quarter of the traffic.
        assert!((s.mean_input_tokens - 250.0).abs() < 1e-9);
        // At 8 req/s (twice the file's 4), 400 requests split 1:3 and arrive twice as fast.
        let plan = t.plan_at(8.0, 400, 1).expect("plan");
        assert_eq!(plan.arrivals.len(), 400);
        let last = plan.arrivals.iter().map(|a| a.at).fold(0.0, f64::max);
        assert!(
            (last - 300.0 / 6.0).abs() < 1.0,
            "class b: 300 at 6 req/s ends near 50 s: {last}"
        );
        let closed = "[[class]]\nname = \"c\"\narrival = \"closed:users=2\"\nrequests = 10\ninput_tokens = 100\noutput_tokens = 10\n";
        let w = Workload::parse(closed, "closed.toml").expect("workload");
        assert!(Traffic::file("closed.toml", w).is_err());
    }

    #[test]
    fn slo_specs_parse_or_say_why_not() {
        let terms = parse_slo("ttft_p95=1, tpot_p50=0.05").expect("slo");
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[1].key(), "tpot_p50");
        for bad in ["", "ttft_p95", "ttft_p95=x", "itl_p95=1", "ttft_p95=0"] {
            assert!(parse_slo(bad).is_err(), "{bad}");
        }
    }
}
