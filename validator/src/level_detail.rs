//! The measurements a bench reports beyond the seed table: token-based TPOT as vLLM's benchmark
//! defines it, inter-event latencies, token throughput from the server's usage counts, latencies from
//! the scheduled send time, and the client's own lag. The seed table's event-count metrics are in
//! [`crate::rows`]; [`DEFINITIONS`] names every metric so tables from different tools are not
//! confused (they disagree on TPOT).

use std::collections::BTreeMap;

use serde::Serialize;
use servesim_sim::RequestRecord;

use crate::drills::Axis;
use crate::trace::Summary;

/// Client lag (`sent − ready`) whose p99 above this says the client, not the server, limits the run.
pub const CLIENT_LAG_WARN_S: f64 = 0.010;

/// Each reported metric and its definition (written into the summary JSON and the docs).
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "event",
        "an SSE line starting with 'data:' whose payload is not [DONE] (drills.md); the usage-only chunk that stream_options.include_usage adds (empty 'choices' plus 'usage') is not counted",
    ),
    (
        "ttft",
        "seconds from sending the request to the first event",
    ),
    (
        "e2e",
        "seconds from sending the request to [DONE] (or to the stream closing)",
    ),
    (
        "gen",
        "integer part of the median event count (seed table); vLLM's chat stream sends one event per token plus a finish event",
    ),
    (
        "tpot_p50 (seed table)",
        "median over requests of (e2e - ttft) / max(events - 1, 1): per event, drills.md",
    ),
    (
        "tpot_tokens",
        "(e2e - ttft) / (completion_tokens - 1) with the server's usage counts, requests with more than one token: vLLM benchmark_serving's TPOT",
    ),
    (
        "itl",
        "every gap between consecutive events of a request, pooled over the level's requests",
    ),
    (
        "tok_s (seed table)",
        "sum of events over the level's wall time (level start to the last measured request's end)",
    ),
    (
        "input_tok_s / output_tok_s",
        "sum of usage prompt_tokens / completion_tokens over the same wall time (null without usage)",
    ),
    (
        "goodput_pct",
        "100 x requests with ttft <= ttft_slo (and e2e <= e2e_slo when set) / all requests, errors included",
    ),
    (
        "percentiles",
        "seed table: Python statistics.quantiles(n=100, method='exclusive'); summaries here (mean, median, p90, p95, p99): linear interpolation as NumPy and vLLM's benchmark",
    ),
    (
        "schedule_lag",
        "sent - scheduled: how late a request went out against its intended time (open loop: its arrival time); latencies *_from_scheduled add it back (coordinated omission)",
    ),
    (
        "client_lag",
        "sent - ready: the client's own delay between being free to send (worker free, arrival time or concurrency slot) and sending",
    ),
];

/// Mean, median and tail of a lag, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lag {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Lag {
    fn of(values: &[f64]) -> Option<Lag> {
        if values.is_empty() {
            return None;
        }
        let s = Summary::of(values);
        Some(Lag {
            mean: s.mean,
            p50: s.median,
            p99: s.p99,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Everything measured on one level beyond its seed-table row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelDetail {
    pub axis: Axis,
    pub requests: usize,
    pub ok: usize,
    /// Failed requests by class (`connect`, `timeout`, `status`, `broken_stream`).
    pub errors: BTreeMap<String, usize>,
    pub wall_s: f64,
    pub ttft: Summary,
    pub ttft_from_scheduled: Summary,
    pub e2e: Summary,
    pub e2e_from_scheduled: Summary,
    /// Token-based TPOT (vLLM's definition); `None` when the server reported no usage.
    pub tpot_tokens: Option<Summary>,
    /// Inter-event latencies; `None` when no request had two events or times were not kept.
    pub itl: Option<Summary>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub input_tok_s: Option<f64>,
    pub output_tok_s: Option<f64>,
    pub schedule_lag: Option<Lag>,
    pub client_lag: Option<Lag>,
}

impl LevelDetail {
    /// The detail of `records` (the level's measured ones) over `wall` seconds.
    pub fn of(axis: Axis, records: &[&RequestRecord], wall: f64) -> LevelDetail {
        let ok: Vec<&RequestRecord> = records
            .iter()
            .copied()
            .filter(|r| r.ok() && r.ttft().is_some())
            .collect();
        let mut errors = BTreeMap::new();
        for r in records {
            if let Some(e) = &r.error {
                *errors.entry(e.kind.class().to_string()).or_insert(0) += 1;
            } else if r.ttft().is_none() {
                *errors.entry("no_event".to_string()).or_insert(0) += 1;
            }
        }
        let col = |f: &dyn Fn(&RequestRecord) -> Option<f64>| -> Vec<f64> {
            ok.iter().filter_map(|r| f(r)).collect()
        };
        let ttft = col(&|r| r.ttft());
        let ttft_sched = col(&|r| r.first_event.map(|t| t - r.scheduled));
        let e2e = col(&|r| Some(r.e2e()));
        let e2e_sched = col(&|r| Some(r.end - r.scheduled));
        let tpot = col(&|r| {
            let n = r.completion_tokens?;
            (n > 1).then(|| (r.e2e() - r.ttft().unwrap_or(0.0)) / f64::from(n - 1))
        });
        let itl: Vec<f64> = ok
            .iter()
            .flat_map(|r| r.event_times.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let sum = |f: &dyn Fn(&RequestRecord) -> Option<u32>| -> Option<u64> {
            let vals: Vec<u64> = ok.iter().filter_map(|r| f(r)).map(u64::from).collect();
            (!vals.is_empty()).then(|| vals.iter().sum())
        };
        let prompt_tokens = sum(&|r| r.prompt_tokens);
        let completion_tokens = sum(&|r| r.completion_tokens);
        let per_s = |n: Option<u64>| n.filter(|_| wall > 0.0).map(|n| n as f64 / wall);
        let lag: Vec<f64> = records.iter().map(|r| r.schedule_lag()).collect();
        let client: Vec<f64> = records
            .iter()
            .filter_map(|r| r.ready.map(|ready| r.sent - ready))
            .collect();
        let nonempty = |v: &[f64]| (!v.is_empty()).then(|| Summary::of(v));
        LevelDetail {
            axis,
            requests: records.len(),
            ok: ok.len(),
            errors,
            wall_s: wall,
            ttft: Summary::of(&ttft),
            ttft_from_scheduled: Summary::of(&ttft_sched),
            e2e: Summary::of(&e2e),
            e2e_from_scheduled: Summary::of(&e2e_sched),
            tpot_tokens: nonempty(&tpot),
            itl: nonempty(&itl),
            prompt_tokens,
            completion_tokens,
            input_tok_s: per_s(prompt_tokens),
            output_tok_s: per_s(completion_tokens),
            schedule_lag: Lag::of(&lag),
            client_lag: Lag::of(&client),
        }
    }

    /// A warning when the client's own lag says it, not the server, was the bottleneck.
    pub fn client_bottleneck(&self) -> Option<String> {
        let lag = self.client_lag?;
        (lag.p99 > CLIENT_LAG_WARN_S).then(|| {
            format!(
                "client lag p99 {:.1} ms (max {:.1} ms) at {}: the load generator, not the server, may be the bottleneck (give it more cores, or lower the load)",
                lag.p99 * 1e3,
                lag.max * 1e3,
                self.axis
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use servesim_sim::{ErrorKind, Origin, RequestError};

    fn rec(sent: f64, times: &[f64], tokens: u32) -> RequestRecord {
        let mut r = RequestRecord::new(Origin::Group(0), 0, sent - 0.01, sent);
        r.ready = Some(sent - 0.002);
        r.first_event = times.first().copied();
        r.end = times.last().copied().unwrap_or(sent);
        r.events = times.len() as u32;
        r.event_times = times.to_vec();
        r.prompt_tokens = Some(10);
        r.completion_tokens = Some(tokens);
        r
    }

    #[test]
    fn token_tpot_itl_and_throughput() {
        let a = rec(0.0, &[0.1, 0.2, 0.3, 0.5], 3);
        let b = rec(1.0, &[1.2, 1.3, 1.4, 1.6], 3);
        let mut c = rec(2.0, &[], 0);
        c.error = Some(RequestError {
            kind: ErrorKind::Status { status: 503 },
            message: "busy".into(),
        });
        let d = LevelDetail::of(Axis::Num(1), &[&a, &b, &c], 2.0);
        assert_eq!((d.requests, d.ok), (3, 2));
        assert_eq!(d.errors.get("status"), Some(&1));
        // (0.5 - 0.1) / (3 - 1) and (0.6 - 0.2) / 2.
        let tpot = d.tpot_tokens.expect("usage reported");
        assert!((tpot.mean - 0.2).abs() < 1e-12);
        let itl = d.itl.expect("event times");
        assert!((itl.median - 0.1).abs() < 1e-12);
        assert!((itl.p99 - 0.2).abs() < 0.01);
        assert_eq!(d.completion_tokens, Some(6));
        assert_eq!(d.output_tok_s, Some(3.0));
        assert_eq!(d.input_tok_s, Some(10.0));
        let lag = d.schedule_lag.expect("lag");
        assert!((lag.max - 0.01).abs() < 1e-12);
        assert!((d.ttft_from_scheduled.mean - (d.ttft.mean + 0.01)).abs() < 1e-12);
        assert!(d.client_bottleneck().is_none());
    }

    #[test]
    fn a_slow_client_is_called_out() {
        let mut late = rec(0.0, &[0.1, 0.2], 1);
        late.ready = Some(late.sent - 0.05);
        let d = LevelDetail::of(Axis::Num(8), &[&late], 1.0);
        let warning = d.client_bottleneck().expect("50 ms of client lag");
        assert!(warning.contains("client lag p99 50.0 ms"), "{warning}");
    }
}
