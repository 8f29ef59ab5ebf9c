//! Request-trace replay: open-loop arrivals with fixed input and output lengths (ignore_eos), and
//! the latency summary that vLLM's serving benchmark reports for such a run.

use std::sync::Arc;

use serde::Serialize;
use servesim_sim::{Arrival, LevelPlan, LevelRun, Prompt, RequestSpec};

use crate::stats::percentile_linear;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    pub id: Arc<str>,
    /// Seconds after the first arrival.
    pub arrival_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("trace {path}, line {line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

/// Parse a CSV trace with a header naming `arrival_s`, `input_tokens`, `output_tokens` (and
/// optionally `request_id`), in any column order.
pub fn parse_trace(text: &str, path: &str) -> Result<Vec<TraceRequest>, TraceError> {
    let err = |line: usize, message: String| TraceError::Parse {
        path: path.to_string(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(err(1, "empty file".into()));
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(arr), Some(inp), Some(out)) = (
        find("arrival_s"),
        find("input_tokens"),
        find("output_tokens"),
    ) else {
        return Err(err(
            1,
            format!("header must name arrival_s, input_tokens, output_tokens; got '{header}'"),
        ));
    };
    let id_col = find("request_id");
    let mut reqs = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |c: usize| {
            f.get(c)
                .copied()
                .ok_or_else(|| err(i + 1, format!("missing column {c}")))
        };
        let arrival_s: f64 = get(arr)?
            .parse()
            .map_err(|e| err(i + 1, format!("arrival_s: {e}")))?;
        let input_tokens: u32 = get(inp)?
            .parse()
            .map_err(|e| err(i + 1, format!("input_tokens: {e}")))?;
        let output_tokens: u32 = get(out)?
            .parse()
            .map_err(|e| err(i + 1, format!("output_tokens: {e}")))?;
        if !arrival_s.is_finite() || arrival_s < 0.0 || output_tokens == 0 || input_tokens == 0 {
            return Err(err(
                i + 1,
                "arrival_s must be >= 0 and token counts >= 1".into(),
            ));
        }
        let id = match id_col {
            Some(c) => Arc::from(get(c)?),
            None => Arc::from(format!("req-{}", reqs.len()).as_str()),
        };
        reqs.push(TraceRequest {
            id,
            arrival_s,
            input_tokens,
            output_tokens,
        });
    }
    Ok(reqs)
}

/// The open-loop load of a trace: each request at its arrival time, `max_tokens` = its output length
/// and `ignore_eos`, so it generates exactly that many tokens.
pub fn trace_plan(trace: &[TraceRequest]) -> LevelPlan {
    LevelPlan {
        arrivals: trace
            .iter()
            .map(|t| Arrival {
                at: t.arrival_s,
                request: RequestSpec {
                    prompt: Prompt::Tokens(t.input_tokens),
                    max_tokens: t.output_tokens,
                    ignore_eos: true,
                    min_tokens: 0,
                },
            })
            .collect(),
        ..LevelPlan::default()
    }
}

/// Mean, median and tail percentiles of one latency (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// Percentiles by linear interpolation (NumPy's default), as vLLM's benchmark computes them.
    pub fn of(values: &[f64]) -> Summary {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let p = |q| percentile_linear(&v, q).unwrap_or(0.0);
        Summary {
            mean: if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            },
            median: p(50.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
        }
    }
}

/// The result of replaying a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceReport {
    pub trace: String,
    pub profile: String,
    pub requests: usize,
    /// Requests that failed (e.g. rejected as longer than the context).
    #[serde(skip_serializing_if = "is_zero")]
    pub errors: usize,
    pub ttft: Summary,
    /// `(e2e − ttft) / (output_tokens − 1)`: the first token excluded.
    pub tpot: Summary,
    pub e2e: Summary,
    /// Output tokens over the time from the first send to the last completion.
    pub output_tok_s: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Summarise a replayed trace.
pub fn trace_report(trace_name: &str, profile: &str, run: &LevelRun) -> TraceReport {
    let ok: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.ok() && r.ttft().is_some())
        .collect();
    let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft()).collect();
    let e2e: Vec<f64> = ok.iter().map(|r| r.e2e()).collect();
    let tpot: Vec<f64> = ok
        .iter()
        .filter_map(|r| {
            let n = r.completion_tokens?;
            (n > 1).then(|| (r.e2e() - r.ttft().unwrap_or(0.0)) / f64::from(n - 1))
        })
        .collect();
    let out_tokens: u64 = ok
        .iter()
        .filter_map(|r| r.completion_tokens)
        .map(u64::from)
        .sum();
    let first = run
        .records
        .iter()
        .map(|r| r.sent)
        .fold(f64::INFINITY, f64::min);
    let last = run.records.iter().map(|r| r.end).fold(0.0, f64::max);
    let span = last - first;
    TraceReport {
        trace: trace_name.to_string(),
        profile: profile.to_string(),
        requests: run.records.len(),
        errors: run.records.len() - ok.len(),
        ttft: Summary::of(&ttft),
        tpot: Summary::of(&tpot),
        e2e: Summary::of(&e2e),
        output_tok_s: if span > 0.0 {
            out_tokens as f64 / span
        } else {
            0.0
        },
    }
}
