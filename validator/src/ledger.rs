//! The claims ledger: what the drills claim about a serving system, judged on the real run and on the
//! simulator, and classified by who can substantiate it.
//!
//! Each claim has a stated threshold, a verdict on the real run (substantiated / refuted / not
//! observed), a verdict on the simulator (reproduced / not reproduced / not applicable), and a class:
//! **real-only** when the simulator reproduces it by construction (the modelling assumption is named),
//! **sim agrees within X %** or **sim disagrees** when the simulator makes a quantitative prediction,
//! **neither covers** when the real run did not exercise it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::compare::{Recording, rel_diff};
use crate::drills::{Axis, DrillKind};
use crate::rounding::{fixed, fixed_signed};
use crate::rows::Row;
use crate::suite::{DrillResult, GOODPUT_TARGET_PCT};
use crate::telemetry::{DeviceFacts, LevelTelemetry};

/// The verdict on the real run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RealVerdict {
    Substantiated,
    Refuted,
    NotObserved,
}

impl RealVerdict {
    /// The verdict in the report's plain words ("not observed"), for every human-readable output.
    pub fn word(self) -> &'static str {
        match self {
            RealVerdict::Substantiated => "substantiated",
            RealVerdict::Refuted => "refuted",
            RealVerdict::NotObserved => "not observed",
        }
    }
}

impl std::fmt::Display for RealVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// The verdict on the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimVerdict {
    Reproduced,
    NotReproduced,
    NotApplicable,
}

impl SimVerdict {
    /// The verdict in the report's plain words ("not applicable"), for every human-readable output.
    pub fn word(self) -> &'static str {
        match self {
            SimVerdict::Reproduced => "reproduced",
            SimVerdict::NotReproduced => "not reproduced",
            SimVerdict::NotApplicable => "not applicable",
        }
    }
}

impl std::fmt::Display for SimVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// Who can substantiate a claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Class {
    /// Only the real run can substantiate it: the simulator reproduces it because of `assumption`.
    RealOnly { assumption: String },
    /// The simulator's quantitative prediction is within `within_pct` of the real run.
    SimAgrees { within_pct: f64 },
    /// The simulator's verdict or figure differs: a calibration or modelling problem.
    SimDisagrees { detail: String },
    /// Neither the real run nor the simulator covers it.
    NeitherCovers { reason: String },
}

impl Class {
    pub fn label(&self) -> String {
        match self {
            Class::RealOnly { .. } => "real-only".into(),
            Class::SimAgrees { within_pct } => format!("sim agrees within {within_pct:.0} %"),
            Class::SimDisagrees { .. } => "sim disagrees".into(),
            Class::NeitherCovers { .. } => "neither covers".into(),
        }
    }
}

/// A figure both sides produce, compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    pub real: Option<f64>,
    pub sim: Option<f64>,
    pub rel_diff: Option<f64>,
}

/// One claim, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub id: u32,
    pub title: String,
    pub threshold: String,
    pub real: RealVerdict,
    pub real_evidence: String,
    pub sim: SimVerdict,
    pub sim_evidence: String,
    pub figure: Option<Figure>,
    #[serde(flatten)]
    pub class: Class,
}

/// What the whole ledger says, with the limits nobody covered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    pub real_label: String,
    pub sim_label: String,
    pub claims: Vec<Claim>,
    pub not_covered: Vec<String>,
}

/// Thresholds the claims use, stated in the report.
pub const SCALING_GAIN: f64 = 0.25;
pub const FLAT_RATIO: f64 = 1.15;
pub const TTFT_GROWTH: f64 = 1.5;
pub const BATCHING_RATIO: f64 = 2.0;
pub const FIT_RESIDUAL: f64 = 0.05;
pub const BOTTLENECK_PCT: f64 = 90.0;
/// How close a simulated figure must be to count as agreeing.
pub const AGREE_PCT: f64 = 15.0;

/// Verdict of one side: `Some((holds, evidence))`, or `None` when the drill is missing.
type Judged = Option<(bool, String)>;

fn sweep_drill(r: &Recording) -> Option<&DrillResult> {
    r.drill(DrillKind::Saturation)
        .or_else(|| r.drill(DrillKind::Overload))
}

/// The sweep claim 1 reads: the baseline, else the saturation or overload sweep.
fn scale_drill(rec: &Recording) -> Option<&DrillResult> {
    rec.drill(DrillKind::Baseline).or_else(|| sweep_drill(rec))
}

fn scaling(d: Option<&DrillResult>) -> Judged {
    let d = d?;
    if d.rows.len() < 2 {
        return None;
    }
    let knee = d.sweep.as_ref().and_then(|s| s.knee.clone());
    let upto = knee
        .as_ref()
        .and_then(|k| d.rows.iter().position(|r| &r.axis == k))
        .unwrap_or(d.rows.len() - 1);
    let rows = &d.rows[..=upto.max(1)];
    let gains: Vec<f64> = rows
        .windows(2)
        .map(|w| w[1].tok_s / w[0].tok_s - 1.0)
        .collect();
    let min_gain = gains.iter().copied().fold(f64::INFINITY, f64::min);
    let goodput = rows
        .iter()
        .map(|r| r.goodput_pct)
        .fold(f64::INFINITY, f64::min);
    let holds = min_gain >= SCALING_GAIN && goodput >= GOODPUT_TARGET_PCT;
    Some((
        holds,
        format!(
            "{}: conc {}..{} tok/s {} -> {}, smallest step gain {:.0} %, lowest goodput {} %",
            d.drill,
            rows[0].axis,
            rows[rows.len() - 1].axis,
            fixed(rows[0].tok_s, 1),
            fixed(rows[rows.len() - 1].tok_s, 1),
            min_gain * 100.0,
            fixed(goodput, 1)
        ),
    ))
}

fn knee(d: Option<&DrillResult>) -> Judged {
    let d = d?;
    let (first, last) = (d.rows.first()?, d.rows.last()?);
    let s = d.sweep.as_ref()?;
    let show = |a: &Option<Axis>| a.as_ref().map_or("none".to_string(), |a| a.to_string());
    let holds = s.knee.is_some()
        && last.ttft_p95 >= 2.0 * first.ttft_p95
        && last.goodput_pct < s.goodput_target_pct;
    Some((
        holds,
        format!(
            "{}: knee at conc {}, operating point conc {}; ttft_p95 {} -> {} s; goodput {} -> {} %",
            d.drill,
            show(&s.knee),
            show(&s.operating_point),
            fixed(first.ttft_p95, 3),
            fixed(last.ttft_p95, 3),
            fixed(first.goodput_pct, 1),
            fixed(last.goodput_pct, 1)
        ),
    ))
}

fn batching(d: Option<&DrillResult>) -> Judged {
    let ratio = d?.ratio?;
    Some((
        ratio <= BATCHING_RATIO,
        format!("ttft_p95 ratio B-loaded/A-alone = {}", fixed(ratio, 2)),
    ))
}

fn flat(rows: &[Row]) -> f64 {
    let tpots: Vec<f64> = rows
        .iter()
        .map(|r| r.tpot_p50)
        .filter(|t| *t > 0.0)
        .collect();
    let max = tpots.iter().copied().fold(0.0, f64::max);
    let min = tpots.iter().copied().fold(f64::INFINITY, f64::min);
    if min.is_finite() && min > 0.0 {
        max / min
    } else {
        f64::INFINITY
    }
}

/// Claim 4 on the prefill drill's tail: each level sends one prompt 12 times, and with vLLM V1's
/// prefix caching (on by default) only the first request computes it; the others read it from the
/// cache, so the median TTFT stays flat (0.047-0.049 s on the real A6000) and the growth is in p95.
fn prefill(d: Option<&DrillResult>) -> Judged {
    let d = d?;
    let (first, last) = (d.rows.first()?, d.rows.last()?);
    let monotonic = d
        .rows
        .windows(2)
        .all(|w| w[1].ttft_p95 >= w[0].ttft_p95 * 0.98);
    let growth = last.ttft_p95 / first.ttft_p95.max(1e-9);
    let flatness = flat(&d.rows);
    Some((
        monotonic && growth >= TTFT_GROWTH && flatness <= FLAT_RATIO,
        format!(
            "ttft_p95 {:.3} -> {:.3} s ({growth:.2}x, {}monotonic); tpot_p50 max/min {flatness:.2}",
            first.ttft_p95,
            last.ttft_p95,
            if monotonic { "" } else { "not " }
        ),
    ))
}

/// Least-squares fit of e2e = a + b × (gen − 1) over the decode drill's rows where `max_tokens` cut
/// the median answer: (a, b, max |residual| / e2e). Where answers end by themselves (the real
/// Qwen2.5-7B counts to ~55 tokens whatever the cap above that), gen is the median answer and
/// e2e_p95 a long one's, so such a row says nothing of e2e against gen; fewer than two capped levels
/// decide nothing. A level counts as capped when gen reaches 90 % of the cap: a loaded server may put
/// several tokens in one event (the CPU vLLM peer gave 125 events at cap 128), while an answer that
/// ended by itself stays well short (the A6000's 55 at cap 64 is 86 %).
pub fn decode_fit(rows: &[Row]) -> Option<(f64, f64, f64)> {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.axis, Axis::Num(cap) if r.generated as f64 >= 0.9 * cap as f64))
        .collect();
    if rows.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = rows
        .iter()
        .map(|r| r.generated.saturating_sub(1) as f64)
        .collect();
    let ys: Vec<f64> = rows.iter().map(|r| r.e2e_p95).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let b = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / sxx;
    let a = my - b * mx;
    let resid = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| ((a + b * x) - y).abs() / y.max(1e-9))
        .fold(0.0, f64::max);
    Some((a, b, resid))
}

fn decode(d: Option<&DrillResult>) -> Judged {
    let d = d?;
    let (a, b, resid) = decode_fit(&d.rows)?;
    let flatness = flat(&d.rows);
    Some((
        resid <= FIT_RESIDUAL && flatness <= FLAT_RATIO,
        format!(
            "e2e_p95 = {a:.3} s + {:.2} ms × (gen − 1), max residual {:.1} %; tpot_p50 max/min {flatness:.2}",
            b * 1e3,
            resid * 100.0
        ),
    ))
}

fn to_real(j: &Judged) -> RealVerdict {
    match j {
        Some((true, _)) => RealVerdict::Substantiated,
        Some((false, _)) => RealVerdict::Refuted,
        None => RealVerdict::NotObserved,
    }
}

fn to_sim(j: &Judged) -> SimVerdict {
    match j {
        Some((true, _)) => SimVerdict::Reproduced,
        Some((false, _)) => SimVerdict::NotReproduced,
        None => SimVerdict::NotApplicable,
    }
}

fn evidence(j: &Judged, missing: &str) -> String {
    j.as_ref().map_or(missing.to_string(), |(_, e)| e.clone())
}

fn figure(name: &str, real: Option<f64>, sim: Option<f64>) -> Figure {
    Figure {
        name: name.to_string(),
        real,
        sim,
        rel_diff: real.zip(sim).and_then(|(r, s)| rel_diff(r, s)),
    }
}

/// Classify from both verdicts; `assumption` marks claims the simulator reproduces by construction.
fn classify(
    real: RealVerdict,
    sim: SimVerdict,
    fig: &Option<Figure>,
    assumption: Option<&str>,
) -> Class {
    if real == RealVerdict::NotObserved {
        return Class::NeitherCovers {
            reason: "the real run did not exercise it".into(),
        };
    }
    let agree_verdict = matches!(
        (real, sim),
        (RealVerdict::Substantiated, SimVerdict::Reproduced)
            | (RealVerdict::Refuted, SimVerdict::NotReproduced)
    );
    let diff = fig.as_ref().and_then(|f| f.rel_diff);
    if sim == SimVerdict::NotApplicable {
        return match (real, assumption) {
            (RealVerdict::Substantiated, Some(a)) => Class::RealOnly {
                assumption: a.into(),
            },
            _ => Class::SimDisagrees {
                detail: "the real run refutes what the simulator assumes".into(),
            },
        };
    }
    if !agree_verdict {
        return Class::SimDisagrees {
            detail: format!("real run: {real}, simulator: {sim}"),
        };
    }
    match (diff, assumption) {
        (Some(d), _) if d.abs() * 100.0 > AGREE_PCT => Class::SimDisagrees {
            detail: format!(
                "{} differs by {} %",
                fig.as_ref().map_or("", |f| f.name.as_str()),
                fixed_signed(d * 100.0, 1)
            ),
        },
        (_, Some(a)) => Class::RealOnly {
            assumption: a.into(),
        },
        (Some(d), None) => Class::SimAgrees {
            within_pct: (d.abs() * 100.0).ceil().max(1.0),
        },
        (None, None) => Class::SimAgrees {
            within_pct: AGREE_PCT,
        },
    }
}

fn knee_figure(d: Option<&DrillResult>) -> Option<f64> {
    d?.rows.iter().map(|r| r.tok_s).reduce(f64::max)
}

/// One claim as its evaluator states it: the verdict-deciding judgements on both runs, the figure
/// compared, and the modelling assumption when the simulator reproduces it by construction.
struct Judgement {
    id: u32,
    title: &'static str,
    threshold: String,
    real: Judged,
    sim: Judged,
    figure: Option<Figure>,
    assumption: Option<&'static str>,
}

impl Judgement {
    /// The verdicts, the evidence and the class of the claim.
    fn into_claim(self) -> Claim {
        let (rv, sv) = (to_real(&self.real), to_sim(&self.sim));
        let class = classify(rv, sv, &self.figure, self.assumption);
        Claim {
            id: self.id,
            title: self.title.into(),
            threshold: self.threshold,
            real: rv,
            real_evidence: evidence(
                &self.real,
                "undecided: drill not run, or no level of it decides the claim",
            ),
            sim: sv,
            sim_evidence: evidence(
                &self.sim,
                "undecided: drill not simulated, or no level of it decides the claim",
            ),
            figure: self.figure,
            class,
        }
    }
}

/// Claim 1: throughput scales with concurrency below the knee.
fn scaling_claim(real: &Recording, sim: &Recording) -> Judgement {
    let last_below_knee = |d: Option<&DrillResult>| d.and_then(|d| d.rows.last().map(|r| r.tok_s));
    Judgement {
        id: 1,
        title: "Throughput scales with concurrency below the knee, goodput held",
        threshold: format!(
            "every step up to the knee gains >= {:.0} % tok/s and goodput >= {GOODPUT_TARGET_PCT:.0} %",
            SCALING_GAIN * 100.0
        ),
        real: scaling(scale_drill(real)),
        sim: scaling(scale_drill(sim)),
        figure: Some(figure(
            "tok/s at the sweep's last level",
            last_below_knee(scale_drill(real)),
            last_below_knee(scale_drill(sim)),
        )),
        assumption: Some(
            "continuous batching over a memory-bound decode: the simulator reads the weights once per iteration whatever the batch, so throughput grows with the batch by construction",
        ),
    }
}

/// Claim 2: the sweep has a knee.
fn knee_claim(real: &Recording, sim: &Recording) -> Judgement {
    Judgement {
        id: 2,
        title: "There is a knee: throughput stops growing while TTFT p95 rises and goodput falls",
        threshold: format!(
            "a level gains < 5 % tok/s, the last level's ttft_p95 >= 2x the first's, and its goodput < {GOODPUT_TARGET_PCT:.0} %; operating point = highest level with goodput >= {GOODPUT_TARGET_PCT:.0} %"
        ),
        real: knee(sweep_drill(real)),
        sim: knee(sweep_drill(sim)),
        figure: Some(figure(
            "peak tok/s of the sweep",
            knee_figure(sweep_drill(real)),
            knee_figure(sweep_drill(sim)),
        )),
        assumption: None,
    }
}

/// Claim 3: continuous batching protects TTFT.
fn batching_claim(real: &Recording, sim: &Recording) -> Judgement {
    Judgement {
        id: 3,
        title: "Continuous batching protects TTFT",
        threshold: format!(
            "batching drill ttft_p95 ratio B-loaded/A-alone <= {BATCHING_RATIO} (a serial server gives tens)"
        ),
        real: batching(real.drill(DrillKind::Batching)),
        sim: batching(sim.drill(DrillKind::Batching)),
        figure: Some(figure(
            "ratio B/A",
            real.drill(DrillKind::Batching).and_then(|d| d.ratio),
            sim.drill(DrillKind::Batching).and_then(|d| d.ratio),
        )),
        assumption: Some(
            "the simulated scheduler admits new requests at every iteration (continuous batching), so short requests never wait for long ones",
        ),
    }
}

/// Claim 4: TTFT grows with the input while TPOT stays flat.
fn prefill_claim(real: &Recording, sim: &Recording) -> Judgement {
    let ttft_last = |rec: &Recording| {
        rec.drill(DrillKind::Prefill)
            .and_then(|d| d.rows.last().map(|r| r.ttft_p95))
    };
    Judgement {
        id: 4,
        title: "Prefill: TTFT (p95: the uncached first request) grows with input length while TPOT stays flat",
        threshold: format!(
            "ttft_p95 non-decreasing and last/first >= {TTFT_GROWTH}; tpot_p50 max/min <= {FLAT_RATIO}"
        ),
        real: prefill(real.drill(DrillKind::Prefill)),
        sim: prefill(sim.drill(DrillKind::Prefill)),
        figure: Some(figure(
            "ttft_p95 at the longest input",
            ttft_last(real),
            ttft_last(sim),
        )),
        assumption: None,
    }
}

/// Claim 5: e2e is linear in the answer's length.
fn decode_claim(real: &Recording, sim: &Recording) -> Judgement {
    let slope = |rec: &Recording| {
        rec.drill(DrillKind::Decode)
            .and_then(|d| decode_fit(&d.rows))
            .map(|f| f.1)
    };
    Judgement {
        id: 5,
        title: "Decode: e2e = ttft + tpot × gen, TPOT flat across output caps",
        threshold: format!(
            "least-squares fit of e2e_p95 on gen, max residual <= {:.0} %; tpot_p50 max/min <= {FLAT_RATIO}",
            FIT_RESIDUAL * 100.0
        ),
        real: decode(real.drill(DrillKind::Decode)),
        sim: decode(sim.drill(DrillKind::Decode)),
        figure: Some(figure(
            "fitted s per generated token",
            slope(real),
            slope(sim),
        )),
        assumption: None,
    }
}

/// The GPU was busy at the knee: NVML's utilisation or power near the limit.
fn gpu_bound(t: &LevelTelemetry, facts: Option<&DeviceFacts>) -> (bool, String) {
    let limit = facts.map_or(0.0, |f| f.power_limit_w);
    let power_pct = if limit > 0.0 {
        100.0 * t.power_w.mean / limit
    } else {
        0.0
    };
    let holds = t.gpu_util_pct.mean >= BOTTLENECK_PCT || power_pct >= BOTTLENECK_PCT;
    (
        holds,
        format!(
            "{} conc {}: GPU utilisation mean {:.0} %, power {:.0} W ({power_pct:.0} % of the {limit:.0} W limit), SM clock {:.0} MHz, throttled {:.0} % of samples",
            t.drill,
            t.axis,
            t.gpu_util_pct.mean,
            t.power_w.mean,
            t.sm_clock_mhz.mean,
            t.throttled_fraction * 100.0
        ),
    )
}

/// Claim 6: the GPU was the bottleneck at the knee (real run only: NVML telemetry).
fn gpu_claim(knee_telemetry: Option<&LevelTelemetry>, facts: Option<&DeviceFacts>) -> Judgement {
    Judgement {
        id: 6,
        title: "The GPU was the bottleneck at the knee",
        threshold: format!(
            "NVML at the knee level: GPU utilisation or power mean >= {BOTTLENECK_PCT:.0} % (of the power limit)"
        ),
        real: knee_telemetry.map(|t| gpu_bound(t, facts)),
        sim: None,
        figure: None,
        assumption: Some(
            "the simulator has no host, network or client limits: every delay it models is GPU time or a fixed latency, so the GPU is the bottleneck by construction",
        ),
    }
}

/// What neither run covers: the simulator's known gaps, the drills not run against the real
/// server, and the telemetry when NVML was missing.
fn not_covered(real: &Recording, has_telemetry: bool) -> Vec<String> {
    let mut not_covered: Vec<String> = [
        "multi-replica routing and load balancing (one engine, one GPU)",
        "multi-node scale and tensor/pipeline parallelism across GPUs",
        "NVLink/PCIe topology and interconnect contention",
        "GPU sharing with other tenants under sustained load (MIG, MPS, time slicing)",
        "real memory pressure: OOM, fragmentation, CPU swap; the simulator only preempts by recompute",
        "thermal and power throttling over long runs (only seen in telemetry, never simulated)",
        "prefix caching, speculative decoding, LoRA adapters, quantised weights",
        "answer quality: the simulator emits filler text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for kind in DrillKind::ALL {
        if real.drill(kind).is_none() {
            not_covered.push(format!("the {kind} drill: not run against the real server"));
        }
    }
    if !has_telemetry {
        not_covered.push(
            "GPU telemetry: NVML was not available during the real run, so claim 6 is not observed"
                .into(),
        );
    }
    not_covered
}

/// Judge every claim on `real` and `sim`; `knee_telemetry` is the real run's NVML summary of the
/// sweep's knee level, when there was NVML.
pub fn evaluate(
    real: &Recording,
    sim: &Recording,
    knee_telemetry: Option<&LevelTelemetry>,
    facts: Option<&DeviceFacts>,
) -> Ledger {
    let claims = [
        scaling_claim(real, sim),
        knee_claim(real, sim),
        batching_claim(real, sim),
        prefill_claim(real, sim),
        decode_claim(real, sim),
        gpu_claim(knee_telemetry, facts),
    ]
    .into_iter()
    .map(Judgement::into_claim)
    .collect();
    Ledger {
        real_label: real.label.clone(),
        sim_label: sim.label.clone(),
        claims,
        not_covered: not_covered(real, knee_telemetry.is_some()),
    }
}

/// The ledger as a Markdown table plus details.
pub fn markdown(l: &Ledger) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| # | claim | threshold | real ({}) | simulator ({}) | class |",
        l.real_label, l.sim_label
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for c in &l.claims {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            c.id,
            c.title,
            c.threshold,
            c.real.word(),
            c.sim.word(),
            c.class.label()
        );
    }
    let _ = writeln!(out);
    for c in &l.claims {
        let _ = writeln!(out, "**{}. {}** — {}", c.id, c.title, c.class.label());
        let _ = writeln!(out, "- real: {} ({})", c.real.word(), c.real_evidence);
        let _ = writeln!(out, "- simulator: {} ({})", c.sim.word(), c.sim_evidence);
        if let Some(f) = &c.figure {
            let show = |v: Option<f64>| v.map_or("n/a".into(), |v| fixed(v, 4));
            let _ = writeln!(
                out,
                "- {}: real {}, simulator {}{}",
                f.name,
                show(f.real),
                show(f.sim),
                f.rel_diff.map_or(String::new(), |d| format!(
                    " ({} %)",
                    fixed_signed(d * 100.0, 1)
                ))
            );
        }
        match &c.class {
            Class::RealOnly { assumption } => {
                let _ = writeln!(
                    out,
                    "- why only the real run can substantiate it: {assumption}"
                );
            }
            Class::SimDisagrees { detail } => {
                let _ = writeln!(
                    out,
                    "- disagreement: {detail} — a calibration problem to fix in the profile"
                );
            }
            Class::NeitherCovers { reason } => {
                let _ = writeln!(out, "- {reason}");
            }
            Class::SimAgrees { .. } => {}
        }
        let _ = writeln!(out);
    }
    out
}

/// `fake-vs-real-limitations.md`: generated from the ledger, never written by hand.
pub fn limitations(l: &Ledger) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# What the fake can and cannot stand in for\n");
    let _ = writeln!(
        out,
        "Generated by `servesim validate` from the measured rows of the real run ({}) and the simulator ({}).\n",
        l.real_label, l.sim_label
    );
    let group = |title: &str, pred: &dyn Fn(&Class) -> bool| {
        let mut s = format!("## {title}\n\n");
        let mut any = false;
        for c in l.claims.iter().filter(|c| pred(&c.class)) {
            any = true;
            let why = match &c.class {
                Class::RealOnly { assumption } => {
                    format!(" The simulator reproduces it by construction: {assumption}.")
                }
                Class::SimDisagrees { detail } => format!(" {detail}."),
                Class::SimAgrees { within_pct } => format!(" Agreement within {within_pct:.0} %."),
                Class::NeitherCovers { reason } => format!(" {reason}."),
            };
            s.push_str(&format!(
                "- **{}** (real: {}; simulator: {}).{}\n",
                c.title,
                c.real.word(),
                c.sim.word(),
                why
            ));
        }
        if !any {
            s.push_str("- none\n");
        }
        s.push('\n');
        s
    };
    out.push_str(&group("Only the real run can substantiate", &|c| {
        matches!(c, Class::RealOnly { .. })
    }));
    out.push_str(&group("The simulator predicts, and agrees", &|c| {
        matches!(c, Class::SimAgrees { .. })
    }));
    out.push_str(&group(
        "The simulator disagrees (fix the profile before trusting it here)",
        &|c| matches!(c, Class::SimDisagrees { .. }),
    ));
    out.push_str(&group("Not covered by this run", &|c| {
        matches!(c, Class::NeitherCovers { .. })
    }));
    let _ = writeln!(out, "## Neither the real run nor the simulator covers\n");
    for n in &l.not_covered {
        let _ = writeln!(out, "- {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Stat;
    use crate::validation::run_sim;

    fn sim(profile: &str) -> Recording {
        let p = servesim_models::Profile::builtin(profile).expect("profile");
        let mut r = run_sim(
            &p,
            &DrillKind::ALL,
            &crate::drills::DrillParams::default(),
            0,
            crate::suite::Start::Warm,
        )
        .expect("sim");
        r.label = profile.to_string();
        r
    }

    fn stat(x: f64) -> Stat {
        Stat {
            mean: x,
            p95: x,
            max: x,
        }
    }

    fn knee_level(util: f64, power: f64) -> LevelTelemetry {
        LevelTelemetry {
            drill: "saturation".into(),
            axis: "256".into(),
            start: 0.0,
            end: 1.0,
            samples: 10,
            gpu_util_pct: stat(util),
            mem_util_pct: stat(50.0),
            mem_used_gib: stat(40.0),
            power_w: stat(power),
            sm_clock_mhz: stat(1700.0),
            temperature_c: stat(70.0),
            throttled_fraction: 0.0,
        }
    }

    fn facts() -> DeviceFacts {
        DeviceFacts {
            name: "NVIDIA RTX A6000".into(),
            uuid: "GPU-test".into(),
            memory_total_bytes: 48 << 30,
            driver_version: "550".into(),
            cuda_version: "12.4".into(),
            power_limit_w: 300.0,
            pcie_link: "PCIe gen 4 x16".into(),
        }
    }

    #[test]
    fn the_same_run_on_both_sides_agrees_everywhere() {
        let a = sim("a6000-qwen2.5-7b");
        let l = evaluate(&a, &a, Some(&knee_level(97.0, 290.0)), Some(&facts()));
        let classes: Vec<String> = l.claims.iter().map(|c| c.class.label()).collect();
        assert_eq!(
            classes,
            [
                "real-only",
                "sim agrees within 1 %",
                "real-only",
                "sim agrees within 1 %",
                "neither covers",
                "real-only"
            ]
        );
        // Claim 5 needs two decode levels that max_tokens cut; the count prompt's answers end by
        // themselves near 55 tokens, as the real Qwen2.5-7B's did, so only the 32 cap bites.
        assert_eq!(l.claims[4].real, RealVerdict::NotObserved);
        assert!(
            l.claims
                .iter()
                .filter(|c| c.id != 5)
                .all(|c| c.real == RealVerdict::Substantiated),
            "{:#?}",
            l.claims
        );
        assert_eq!(l.claims[5].sim, SimVerdict::NotApplicable);
        assert!(l.claims[5].real_evidence.contains("97 %"));
        assert!(!l.not_covered.iter().any(|n| n.contains("drill: not run")));
    }

    #[test]
    fn a_different_card_disagrees_and_telemetry_can_refute() {
        let real = sim("a6000-qwen2.5-7b");
        let other = sim("h100-qwen2.5-7b");
        let l = evaluate(
            &real,
            &other,
            Some(&knee_level(40.0, 120.0)),
            Some(&facts()),
        );
        // An H100 profile's peak throughput is far above the A6000's: claim 2 disagrees.
        assert!(
            matches!(l.claims[1].class, Class::SimDisagrees { .. }),
            "{:?}",
            l.claims[1]
        );
        let fig = l.claims[1]
            .figure
            .as_ref()
            .and_then(|f| f.rel_diff)
            .expect("figure");
        assert!(fig > 0.5, "{fig}");
        // 40 % utilisation and 40 % power: the GPU was not the bottleneck.
        assert_eq!(l.claims[5].real, RealVerdict::Refuted);
        assert!(matches!(l.claims[5].class, Class::SimDisagrees { .. }));
        let md = markdown(&l);
        assert!(md.contains("| 2 | There is a knee"));
        assert!(limitations(&l).contains("The simulator disagrees"));
    }

    #[test]
    fn decode_fit_recovers_a_line() {
        let row = |generated: u64, e2e: f64| Row {
            axis: Axis::Num(generated),
            reqs: 12,
            err: 0,
            generated,
            ttft_p50: 0.05,
            ttft_p95: 0.05,
            tpot_p50: 0.022,
            e2e_p95: e2e,
            e2e_p99: e2e,
            tok_s: 44.0,
            goodput_pct: 100.0,
        };
        let rows: Vec<Row> = [33u64, 65, 129, 257]
            .iter()
            .map(|&g| row(g, 0.05 + 0.022 * (g - 1) as f64))
            .collect();
        let (a, b, resid) = decode_fit(&rows).expect("fit");
        assert!(
            (a - 0.05).abs() < 1e-9 && (b - 0.022).abs() < 1e-12 && resid < 1e-9,
            "{a} {b} {resid}"
        );
        assert!(decode_fit(&rows[..1]).is_none());
        // The real A6000 decode rows: Qwen2.5-7B stopped by itself near 55 tokens, the cap bit at 32
        // only, so the rows decide nothing.
        let real = [
            (32, 33, 0.739),
            (64, 55, 1.454),
            (128, 56, 2.557),
            (256, 57, 2.22),
        ];
        let rows: Vec<Row> = real
            .iter()
            .map(|&(cap, generated, e2e)| Row {
                axis: Axis::Num(cap),
                ..row(generated, e2e)
            })
            .collect();
        assert!(decode_fit(&rows).is_none());
        assert!(decode_fit(&rows[..1]).is_none());
        // A loaded server merging tokens into fewer events still ran to the cap.
        let merged: Vec<Row> = [(32, 33, 0.7), (64, 65, 1.4), (128, 125, 2.8)]
            .iter()
            .map(|&(cap, generated, e2e)| Row {
                axis: Axis::Num(cap),
                ..row(generated, e2e)
            })
            .collect();
        assert!(decode_fit(&merged).is_some_and(|(_, b, _)| b > 0.0));
    }
}
