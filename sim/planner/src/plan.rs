//! From evaluated candidates to the answer: rows with fleet size, latencies and cost, ranked by a
//! view; the unservable candidates with the reason; and the winner verified as a whole fleet at the
//! peak rate.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use servesim_models::{KvCacheDtype, Quantization};

use crate::PlanError;
use crate::capacity::Measure;
use crate::latency::{Latencies, SloStatus, Summary};
use crate::prices::HOURS_PER_MONTH;
use crate::search::{CandidateResult, PlanInputs};

/// How rows are ranked (always passing rows first, then near misses, then failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Lowest $/h first.
    Cheapest,
    /// Lowest TTFT p95 at the peak first, then TPOT p50.
    Latency,
    /// Lowest product of $/h and e2e p95: a fleet twice as dear must be twice as fast.
    Balanced,
}

impl View {
    /// The view's name as `--view` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            View::Cheapest => "cheapest",
            View::Latency => "latency",
            View::Balanced => "balanced",
        }
    }
}

impl std::str::FromStr for View {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<View, PlanError> {
        match s {
            "cheapest" => Ok(View::Cheapest),
            "latency" => Ok(View::Latency),
            "balanced" => Ok(View::Balanced),
            _ => Err(PlanError::Invalid(format!(
                "unknown view '{s}' (cheapest, latency, balanced)"
            ))),
        }
    }
}

/// One fleet that serves the peak: a candidate, its replica count and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub rank: usize,
    /// The candidate's index in the search space.
    pub candidate: usize,
    /// The model's Hugging Face id, as `vllm serve` takes it.
    pub model_id: String,
    pub gpu: String,
    pub gpu_display: String,
    /// `silicon-calibrated` or `data-sheet`.
    pub calibration: String,
    pub calibrated_from: Option<String>,
    pub tensor_parallel_size: u32,
    pub replicas: u32,
    pub total_gpus: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    /// `--quantization` (absent: the checkpoint's dtype).
    pub quantization: Option<Quantization>,
    pub kv_cache_dtype: KvCacheDtype,
    pub kv_tokens: u64,
    /// Requests per second one replica serves within the SLOs (bisected).
    pub capacity_per_replica_rps: f64,
    /// replicas × capacity: the fleet's goodput at the SLOs.
    pub fleet_capacity_rps: f64,
    /// One replica at its share of the peak rate.
    pub ttft: Summary,
    /// TPOT: the mean inter-token latency of each request (ITL averaged per request).
    pub tpot: Summary,
    pub e2e: Summary,
    /// Requests in flight per replica at the peak (Little's law: λ × mean e2e).
    pub in_flight_per_replica: f64,
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
    /// Dollars per million output tokens at the peak rate.
    pub usd_per_million_output_tokens: f64,
    pub slo_status: SloStatus,
}

/// A candidate with no row, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unservable {
    pub candidate: usize,
    pub gpu: String,
    pub tensor_parallel_size: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    pub quantization: Option<Quantization>,
    pub kv_cache_dtype: KvCacheDtype,
    pub reason: String,
}

/// The winner simulated as a whole fleet behind the router at the peak rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub candidate: usize,
    pub replicas: u32,
    pub rate: f64,
    pub router: String,
    pub latencies: Latencies,
    pub slo_status: SloStatus,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub inputs: PlanInputs,
    pub view: View,
    pub candidates: usize,
    pub rows: Vec<Row>,
    pub unservable: Vec<Unservable>,
    pub verified: Option<Verified>,
}

/// Build the plan from every candidate's result (in candidate order, as an unsharded run or a
/// merge produces them); `verify` simulates the winner as a fleet.
pub fn assemble(
    inputs: &PlanInputs,
    results: &[CandidateResult],
    view: View,
    verify: Option<&dyn Measure>,
) -> Result<Plan, PlanError> {
    let slo = inputs.slo_terms()?;
    let mut rows = Vec::new();
    let mut unservable = Vec::new();
    for r in results {
        let c = &r.candidate;
        let mut skip = |reason: String| {
            unservable.push(Unservable {
                candidate: c.index,
                gpu: c.gpu.clone(),
                tensor_parallel_size: c.tensor_parallel_size,
                max_num_seqs: c.max_num_seqs,
                max_num_batched_tokens: c.max_num_batched_tokens,
                gpu_memory_utilization: c.gpu_memory_utilization,
                quantization: c.quantization,
                kv_cache_dtype: c.kv_cache_dtype,
                reason,
            });
        };
        if let Some(why) = &r.rejected {
            skip(format!("vLLM refuses it: {why}"));
            continue;
        }
        let (Some(cap), Some(replicas), Some(at)) = (&r.capacity, r.replicas, &r.at_peak) else {
            let at = r
                .capacity
                .as_ref()
                .and_then(|c| c.broken_at)
                .map_or(String::new(), |b| {
                    format!(" (broken already at {b:.3} req/s)")
                });
            skip(format!("no arrival rate meets the SLOs on one replica{at}"));
            continue;
        };
        let Some(price) = inputs.prices.usd_per_hour(&c.gpu) else {
            skip(format!(
                "no price for {} (add it to the prices file)",
                c.gpu
            ));
            continue;
        };
        let total_gpus = replicas * c.tensor_parallel_size;
        let usd_per_hour = f64::from(total_gpus) * price;
        let tokens_per_hour = inputs.peak_rate * inputs.traffic.mean_output_tokens * 3600.0;
        rows.push(Row {
            rank: 0,
            candidate: c.index,
            model_id: r.model_id.clone(),
            gpu: c.gpu.clone(),
            gpu_display: r.gpu_display.clone(),
            calibration: if r.calibrated_from.is_some() {
                "silicon-calibrated".into()
            } else {
                "data-sheet".into()
            },
            calibrated_from: r.calibrated_from.clone(),
            tensor_parallel_size: c.tensor_parallel_size,
            replicas,
            total_gpus,
            max_num_seqs: c.max_num_seqs,
            max_num_batched_tokens: c.max_num_batched_tokens,
            gpu_memory_utilization: c.gpu_memory_utilization,
            quantization: c.quantization,
            kv_cache_dtype: c.kv_cache_dtype,
            kv_tokens: r.kv_tokens.unwrap_or(0),
            capacity_per_replica_rps: cap.rate,
            fleet_capacity_rps: cap.rate * f64::from(replicas),
            ttft: at.ttft,
            tpot: at.tpot,
            e2e: at.e2e,
            in_flight_per_replica: inputs.peak_rate / f64::from(replicas) * at.e2e.mean,
            usd_per_hour,
            usd_per_month: usd_per_hour * HOURS_PER_MONTH,
            usd_per_million_output_tokens: if tokens_per_hour > 0.0 {
                usd_per_hour / tokens_per_hour * 1e6
            } else {
                0.0
            },
            slo_status: at.status(&slo, inputs.tolerance),
        });
    }
    rank(&mut rows, view);
    let verified = match (verify, rows.first()) {
        (Some(m), Some(best)) => {
            let r = &results[results
                .iter()
                .position(|r| r.candidate.index == best.candidate)
                .unwrap_or(0)];
            let profile = r
                .candidate
                .profile(&inputs.model, inputs.grid.max_model_len)?;
            let latencies = m.measure(&r.candidate, &profile, inputs.peak_rate, best.replicas)?;
            Some(Verified {
                candidate: best.candidate,
                replicas: best.replicas,
                rate: inputs.peak_rate,
                router: inputs.router.clone(),
                slo_status: latencies.status(&slo, inputs.tolerance),
                latencies,
            })
        }
        _ => None,
    };
    Ok(Plan {
        inputs: inputs.clone(),
        view,
        candidates: results.len(),
        rows,
        unservable,
        verified,
    })
}

/// Sort rows by the view, ties broken by the candidate's index so the order is total.
fn rank(rows: &mut [Row], view: View) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| match view {
            View::Cheapest => (r.usd_per_hour, r.ttft.p95),
            View::Latency => (r.ttft.p95, r.tpot.p50),
            View::Balanced => (r.usd_per_hour * r.e2e.p95, r.usd_per_hour),
        };
        let (ka, kb) = (key(a), key(b));
        a.slo_status
            .cmp(&b.slo_status)
            .then(ka.0.total_cmp(&kb.0))
            .then(ka.1.total_cmp(&kb.1))
            .then(a.candidate.cmp(&b.candidate))
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
}

impl Plan {
    /// The plan as a text table: the question, the ranked rows (at most `limit`), the winner's
    /// verification and the capacity arithmetic behind it.
    pub fn table(&self, limit: usize) -> String {
        let i = &self.inputs;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# plan: {} on {}; traffic {} (mean {:.0} in / {:.0} out tokens) at a peak of {:.3} req/s ({}); SLO {}; headroom {}; view {}",
            i.model,
            i.grid.gpus.join(", "),
            i.traffic.name,
            i.traffic.mean_input_tokens,
            i.traffic.mean_output_tokens,
            i.peak_rate,
            i.rate_source,
            if i.slo.is_empty() {
                "per class"
            } else {
                &i.slo
            },
            i.headroom,
            self.view.as_str()
        );
        let _ = writeln!(
            t,
            "# {} candidates: {} fleets serve the peak, {} cannot (see JSON `unservable`)",
            self.candidates,
            self.rows.len(),
            self.unservable.len()
        );
        let _ = writeln!(
            t,
            "{:>4} {:<10} {:<18} {:>2} {:>4} {:>4} {:>5} {:>6} {:>5} {:<7} {:>8} {:>21} {:>21} {:>21} {:>9} {:>10} {:>7} {:<6}",
            "rank",
            "gpu",
            "calibration",
            "tp",
            "repl",
            "gpus",
            "seqs",
            "tokens",
            "mem",
            "w/kv",
            "cap r/s",
            "ttft p50/p95/p99 s",
            "tpot p50/p95/p99 s",
            "e2e p50/p95/p99 s",
            "$/h",
            "$/month",
            "$/1M",
            "slo"
        );
        let three = |s: &Summary, d: usize| format!("{:.d$}/{:.d$}/{:.d$}", s.p50, s.p95, s.p99);
        for r in self.rows.iter().take(limit) {
            let _ = writeln!(
                t,
                "{:>4} {:<10} {:<18} {:>2} {:>4} {:>4} {:>5} {:>6} {:>5.2} {:<7} {:>8.3} {:>21} {:>21} {:>21} {:>9.2} {:>10.0} {:>7.3} {:<6}",
                r.rank,
                r.gpu,
                r.calibration,
                r.tensor_parallel_size,
                r.replicas,
                r.total_gpus,
                r.max_num_seqs,
                r.max_num_batched_tokens,
                r.gpu_memory_utilization,
                format!(
                    "{}/{}",
                    r.quantization.map_or("bf16", |q| q.as_str()),
                    match r.kv_cache_dtype {
                        KvCacheDtype::Auto => "bf16",
                        KvCacheDtype::Fp8 => "fp8",
                    }
                ),
                r.capacity_per_replica_rps,
                three(&r.ttft, 3),
                three(&r.tpot, 4),
                three(&r.e2e, 2),
                r.usd_per_hour,
                r.usd_per_month,
                r.usd_per_million_output_tokens,
                r.slo_status.as_str()
            );
        }
        if self.rows.len() > limit {
            let _ = writeln!(t, "... {} more rows in the JSON", self.rows.len() - limit);
        }
        if let Some(best) = self.rows.first() {
            let _ = writeln!(
                t,
                "\nwinner: {} × {} at TP{} (max_num_seqs {}, max_num_batched_tokens {}, gpu_memory_utilization {}{}{}), {} GPUs, ${:.2}/h, ${:.0}/month",
                best.replicas,
                best.gpu,
                best.tensor_parallel_size,
                best.max_num_seqs,
                best.max_num_batched_tokens,
                best.gpu_memory_utilization,
                best.quantization
                    .map_or(String::new(), |q| format!(", quantization {}", q.as_str())),
                if best.kv_cache_dtype == KvCacheDtype::Fp8 {
                    ", kv_cache_dtype fp8"
                } else {
                    ""
                },
                best.total_gpus,
                best.usd_per_hour,
                best.usd_per_month
            );
            let _ = writeln!(
                t,
                "  replicas = ceil(headroom {} × peak {:.3} req/s ÷ capacity {:.3} req/s per replica) = ceil({:.2}) = {}",
                i.headroom,
                i.peak_rate,
                best.capacity_per_replica_rps,
                i.headroom * i.peak_rate / best.capacity_per_replica_rps,
                best.replicas
            );
            let _ = writeln!(
                t,
                "  Little's law per replica: L = λ × W = {:.3} req/s × {:.2} s mean e2e = {:.1} requests in flight (max_num_seqs {})",
                i.peak_rate / f64::from(best.replicas),
                best.e2e.mean,
                best.in_flight_per_replica,
                best.max_num_seqs
            );
            let _ = writeln!(
                t,
                "  $/1M output tokens = ${:.2}/h ÷ ({:.3} req/s × {:.0} tokens × 3600 s) × 1e6 = ${:.3}",
                best.usd_per_hour,
                i.peak_rate,
                i.traffic.mean_output_tokens,
                best.usd_per_million_output_tokens
            );
        }
        if let Some(v) = &self.verified {
            let _ = writeln!(
                t,
                "  verified as one fleet ({} × {} behind {}, {} requests at {:.3} req/s): ttft p95 {:.3} s, tpot p50 {:.4} s, e2e p95 {:.2} s: {}",
                v.replicas,
                self.rows.first().map_or("", |r| r.gpu.as_str()),
                v.router,
                v.latencies.requests,
                v.rate,
                v.latencies.ttft.p95,
                v.latencies.tpot.p50,
                v.latencies.e2e.p95,
                v.slo_status.as_str()
            );
        }
        t
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row with a cost, a latency and a status; the rest zero.
    pub(crate) fn row(
        candidate: usize,
        usd: f64,
        ttft_p95: f64,
        e2e_p95: f64,
        s: SloStatus,
    ) -> Row {
        let at = |p95: f64| Summary {
            p95,
            ..Summary::default()
        };
        Row {
            rank: 0,
            candidate,
            model_id: String::new(),
            gpu: format!("g{candidate}"),
            gpu_display: String::new(),
            calibration: "data-sheet".into(),
            calibrated_from: None,
            tensor_parallel_size: 1,
            replicas: 1,
            total_gpus: 1,
            max_num_seqs: 1,
            max_num_batched_tokens: 1,
            gpu_memory_utilization: 0.9,
            quantization: None,
            kv_cache_dtype: KvCacheDtype::Auto,
            kv_tokens: 0,
            capacity_per_replica_rps: usd,
            fleet_capacity_rps: usd,
            ttft: at(ttft_p95),
            tpot: Summary::default(),
            e2e: at(e2e_p95),
            in_flight_per_replica: 0.0,
            usd_per_hour: usd,
            usd_per_month: usd * HOURS_PER_MONTH,
            usd_per_million_output_tokens: 0.0,
            slo_status: s,
        }
    }

    #[test]
    fn views_rank_passing_rows_first_then_by_their_own_key() {
        let rows = vec![
            row(0, 1.0, 0.9, 9.0, SloStatus::Near),
            row(1, 2.0, 0.2, 2.0, SloStatus::Pass),
            row(2, 4.0, 0.1, 0.8, SloStatus::Pass),
            row(3, 3.0, 0.5, 2.0, SloStatus::Pass),
        ];
        let order = |view| {
            let mut r = rows.clone();
            rank(&mut r, view);
            assert!(r.iter().enumerate().all(|(i, x)| x.rank == i + 1));
            r.iter().map(|x| x.candidate).collect::<Vec<_>>()
        };
        // The near miss is cheapest but ranks after every pass.
        assert_eq!(order(View::Cheapest), [1, 3, 2, 0]);
        assert_eq!(order(View::Latency), [2, 1, 3, 0]);
        // $/h × e2e p95: 4, 3.2, 6.
        assert_eq!(order(View::Balanced), [2, 1, 3, 0]);
    }

    #[test]
    fn the_frontier_keeps_the_fleets_nothing_beats_on_cost_and_goodput() {
        // capacity = cost in `row`: make one dominated point (dear and slow).
        let mut rows = vec![
            row(0, 1.0, 0.0, 0.0, SloStatus::Pass),
            row(1, 2.0, 0.0, 0.0, SloStatus::Pass),
            row(2, 3.0, 0.0, 0.0, SloStatus::Pass),
        ];
        rows[2].fleet_capacity_rps = 1.5;
        let front: Vec<usize> = crate::frontier::pareto(&rows)
            .iter()
            .map(|r| r.candidate)
            .collect();
        assert_eq!(front, [0, 1]);
    }
}
