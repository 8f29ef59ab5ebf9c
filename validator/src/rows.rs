//! From per-request records to the seed table's rows, exactly as drills.md defines them, and the
//! knee and operating point of a concurrency sweep.

use serde::{Deserialize, Serialize, Serializer};
use servesim_sim::{Origin, RequestRecord};

use crate::drills::Axis;
use crate::rounding::round_half_away;
use crate::stats::percentile;

/// SLO a request must meet to count toward goodput.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    pub ttft: f64,
    /// 0 disables the e2e bound.
    pub e2e: f64,
}

// The JSON carries each figure rounded exactly as the table prints it (see [`crate::rounding`]).
fn r3<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_half_away(*x, 3))
}
fn r4<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_half_away(*x, 4))
}
fn r1<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_half_away(*x, 1))
}

/// One row of a drill table (times in seconds). Serialises with the table's rounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub axis: Axis,
    pub reqs: usize,
    pub err: usize,
    /// Integer part of the median event count.
    #[serde(rename = "gen")]
    pub generated: u64,
    #[serde(serialize_with = "r3")]
    pub ttft_p50: f64,
    #[serde(serialize_with = "r3")]
    pub ttft_p95: f64,
    #[serde(serialize_with = "r4")]
    pub tpot_p50: f64,
    #[serde(serialize_with = "r3")]
    pub e2e_p95: f64,
    #[serde(serialize_with = "r3")]
    pub e2e_p99: f64,
    #[serde(serialize_with = "r1")]
    pub tok_s: f64,
    #[serde(serialize_with = "r1")]
    pub goodput_pct: f64,
}

/// drills.md's per-request TPOT: `(e2e − ttft) / max(events − 1, 1)`.
pub fn event_tpot(r: &RequestRecord) -> Option<f64> {
    let ttft = r.ttft()?;
    Some((r.e2e() - ttft) / f64::from(r.events.saturating_sub(1).max(1)))
}

/// The row of `measured` records over `wall` seconds.
pub fn row(axis: Axis, records: &[&RequestRecord], wall: f64, slo: Slo) -> Row {
    let ok: Vec<&RequestRecord> = records
        .iter()
        .copied()
        .filter(|r| r.ok() && r.ttft().is_some())
        .collect();
    let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft()).collect();
    let e2e: Vec<f64> = ok.iter().map(|r| r.e2e()).collect();
    let tpot: Vec<f64> = ok.iter().filter_map(|r| event_tpot(r)).collect();
    let events: Vec<f64> = ok.iter().map(|r| f64::from(r.events)).collect();
    let met = ok
        .iter()
        .filter(|r| {
            r.ttft().is_some_and(|t| t <= slo.ttft) && (slo.e2e <= 0.0 || r.e2e() <= slo.e2e)
        })
        .count();
    let total_events: f64 = events.iter().sum();
    let p = |v: &[f64], q| percentile(v, q).unwrap_or(0.0);
    Row {
        axis,
        reqs: records.len(),
        err: records.len() - ok.len(),
        generated: p(&events, 50).floor() as u64,
        ttft_p50: p(&ttft, 50),
        ttft_p95: p(&ttft, 95),
        tpot_p50: p(&tpot, 50),
        e2e_p95: p(&e2e, 95),
        e2e_p99: p(&e2e, 99),
        tok_s: if wall > 0.0 { total_events / wall } else { 0.0 },
        goodput_pct: if records.is_empty() {
            0.0
        } else {
            100.0 * met as f64 / records.len() as f64
        },
    }
}

/// The records of one origin and the wall time from `start` to the last one's end.
pub fn measured(
    records: &[RequestRecord],
    origin: Origin,
    start: f64,
) -> (Vec<&RequestRecord>, f64) {
    let mine: Vec<&RequestRecord> = records.iter().filter(|r| r.origin == origin).collect();
    let end = mine.iter().map(|r| r.end).fold(start, f64::max);
    (mine, end - start)
}

/// Where a concurrency sweep stops scaling, and the highest level that still meets the goodput target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// First level whose next level adds less than 5 % throughput (or the peak); `None` when the
    /// sweep never flattened.
    pub knee: Option<Axis>,
    /// Highest level whose goodput is at least the target.
    pub operating_point: Option<Axis>,
    pub goodput_target_pct: f64,
}

/// Gain below which throughput is said to stop growing.
pub const KNEE_GAIN: f64 = 0.05;

/// Knee and operating point of rows in sweep order.
pub fn sweep_summary(rows: &[Row], goodput_target_pct: f64) -> SweepSummary {
    let knee = rows
        .windows(2)
        .find(|w| w[1].tok_s < w[0].tok_s * (1.0 + KNEE_GAIN))
        .map(|w| w[0].axis.clone());
    let operating_point = rows
        .iter()
        .rev()
        .find(|r| r.goodput_pct >= goodput_target_pct)
        .map(|r| r.axis.clone());
    SweepSummary {
        knee,
        operating_point,
        goodput_target_pct,
    }
}
