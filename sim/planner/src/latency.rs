//! A run's latencies (TTFT, TPOT, end-to-end) as percentiles, and how they stand against SLO terms.

use serde::{Deserialize, Serialize};
use servesim_sim::LevelRun;
use servesim_sim::workload_file::{SloMetric, SloStat, SloTerm};

/// Mean and percentiles of one latency, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// The summary of `values` (sorted here); zeros when empty. Percentiles interpolate linearly
    /// between order statistics (numpy's default), so they move smoothly with the rate.
    pub fn of(values: &mut [f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let pos = q * (values.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
        };
        Summary {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
        }
    }

    fn stat(&self, stat: SloStat) -> f64 {
        match stat {
            SloStat::Mean => self.mean,
            SloStat::P50 => self.p50,
            SloStat::P90 => self.p90,
            SloStat::P95 => self.p95,
            SloStat::P99 => self.p99,
        }
    }
}

/// What clients saw in one run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Latencies {
    pub requests: usize,
    /// Requests that failed (refused, too long for the context): any error fails the SLO.
    pub errors: usize,
    /// Time to the first token, from sending.
    pub ttft: Summary,
    /// Time per output token after the first: (e2e − ttft) / (tokens − 1), requests of 2+ tokens
    /// (vLLM benchmark_serving's TPOT; the mean inter-token latency of each request).
    pub tpot: Summary,
    pub e2e: Summary,
    /// Output tokens per second over the run.
    pub output_tok_s: f64,
    /// Requests in flight on average (Little's law: arrival rate × mean e2e).
    pub mean_in_flight: f64,
    /// A workload file's classes that carry SLOs of their own, each measured apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassLatencies>,
}

/// One client class's latencies and the SLO terms it is held to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassLatencies {
    pub class: String,
    /// `(key, target)` pairs, e.g. `("ttft_p95", 1.0)`.
    pub slo: Vec<(String, f64)>,
    pub latencies: Latencies,
}

impl ClassLatencies {
    /// The class's SLO terms (checked when the workload file was read).
    fn terms(&self) -> Vec<SloTerm> {
        self.slo
            .iter()
            .filter_map(|(k, v)| SloTerm::parse(k, *v).ok())
            .collect()
    }
}

impl Latencies {
    /// Summarise a run's records.
    pub fn of(run: &LevelRun) -> Latencies {
        let ok: Vec<_> = run.records.iter().filter(|r| r.ok()).collect();
        let mut ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft()).collect();
        let mut tpot: Vec<f64> = ok
            .iter()
            .filter_map(|r| {
                let n = r.completion_tokens?;
                (n > 1).then(|| (r.e2e() - r.ttft().unwrap_or(0.0)) / f64::from(n - 1))
            })
            .collect();
        let mut e2e: Vec<f64> = ok.iter().map(|r| r.e2e()).collect();
        let tokens: u64 = ok
            .iter()
            .map(|r| u64::from(r.completion_tokens.unwrap_or(0)))
            .sum();
        let first = run
            .records
            .iter()
            .map(|r| r.sent)
            .fold(f64::INFINITY, f64::min);
        let last = run.records.iter().map(|r| r.end).fold(0.0, f64::max);
        let span = (last - first.min(last)).max(f64::MIN_POSITIVE);
        let e2e_sum: f64 = e2e.iter().sum();
        Latencies {
            requests: run.records.len(),
            errors: run.records.len() - ok.len(),
            ttft: Summary::of(&mut ttft),
            tpot: Summary::of(&mut tpot),
            e2e: Summary::of(&mut e2e),
            output_tok_s: tokens as f64 / span,
            mean_in_flight: e2e_sum / span,
            classes: Vec::new(),
        }
    }

    /// The value an SLO term bounds.
    pub fn value(&self, term: &SloTerm) -> f64 {
        let s = match term.metric {
            SloMetric::Ttft => &self.ttft,
            SloMetric::Tpot => &self.tpot,
            SloMetric::E2e => &self.e2e,
        };
        s.stat(term.stat)
    }

    /// Whether every term holds (and nothing failed), every class's own terms included.
    pub fn meets(&self, slo: &[SloTerm]) -> bool {
        self.errors == 0
            && self.requests > 0
            && slo.iter().all(|t| self.value(t) <= t.target)
            && self.classes.iter().all(|c| c.latencies.meets(&c.terms()))
    }

    /// Whether every term, every class's included, is within `tolerance` of its target.
    fn near(&self, slo: &[SloTerm], tolerance: f64) -> bool {
        self.errors == 0
            && self.requests > 0
            && slo
                .iter()
                .all(|t| self.value(t) <= t.target * (1.0 + tolerance))
            && self
                .classes
                .iter()
                .all(|c| c.latencies.near(&c.terms(), tolerance))
    }

    /// Pass, near miss (every term within `tolerance` of its target, e.g. 0.05 = 5 % over), or fail.
    pub fn status(&self, slo: &[SloTerm], tolerance: f64) -> SloStatus {
        if self.meets(slo) {
            SloStatus::Pass
        } else if self.near(slo, tolerance) {
            SloStatus::Near
        } else {
            SloStatus::Fail
        }
    }
}

/// A fleet's standing against the SLOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloStatus {
    Pass,
    /// Over a target by no more than the tolerance: worth a look, not a guarantee.
    Near,
    Fail,
}

impl SloStatus {
    /// The word the table prints.
    pub fn as_str(self) -> &'static str {
        match self {
            SloStatus::Pass => "pass",
            SloStatus::Near => "near",
            SloStatus::Fail => "FAIL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        let mut v: Vec<f64> = (1..=101).map(f64::from).rev().collect();
        let s = Summary::of(&mut v);
        assert_eq!((s.p50, s.p95, s.p99, s.mean), (51.0, 96.0, 100.0, 51.0));
        assert_eq!(Summary::of(&mut []), Summary::default());
    }

    #[test]
    fn status_separates_pass_near_miss_and_fail() {
        let slo = crate::traffic::parse_slo("ttft_p95=1").expect("slo");
        let mut l = Latencies {
            requests: 10,
            ..Latencies::default()
        };
        l.ttft.p95 = 1.0;
        assert_eq!(l.status(&slo, 0.05), SloStatus::Pass);
        l.ttft.p95 = 1.04;
        assert_eq!(l.status(&slo, 0.05), SloStatus::Near);
        l.ttft.p95 = 1.2;
        assert_eq!(l.status(&slo, 0.05), SloStatus::Fail);
        l.ttft.p95 = 0.5;
        l.errors = 1;
        assert_eq!(l.status(&slo, 0.05), SloStatus::Fail);
        // A class held to its own terms fails the whole though the whole meets its own.
        l.errors = 0;
        let mut class = Latencies {
            requests: 5,
            ..Latencies::default()
        };
        class.e2e.p99 = 16.0;
        l.classes.push(ClassLatencies {
            class: "rag".into(),
            slo: vec![("e2e_p99".into(), 15.0)],
            latencies: class,
        });
        assert_eq!(l.status(&slo, 0.05), SloStatus::Fail);
        l.classes[0].latencies.e2e.p99 = 15.5;
        assert_eq!(l.status(&slo, 0.05), SloStatus::Near);
        l.classes[0].latencies.e2e.p99 = 14.0;
        assert_eq!(l.status(&[], 0.05), SloStatus::Pass);
    }
}
