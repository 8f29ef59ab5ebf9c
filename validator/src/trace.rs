//! Request-trace replay: open-loop arrivals with fixed input and output lengths (ignore_eos), and
//! the latency summary that vLLM's serving benchmark reports for such a run. Two formats: CSV
//! (`arrival_s, input_tokens, output_tokens`) and Mooncake's JSON Lines (`timestamp` in ms,
//! `input_length`, `output_length`, `hash_ids`: one id per block of the prompt, equal ids meaning
//! equal content), whose hash ids become token ids that hit the prefix cache where they repeat.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
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
    /// Mooncake traces: one hash id per block of the prompt (empty for CSV traces, whose prompts
    /// are known only by their length).
    pub hash_ids: Vec<u64>,
}

/// Mooncake's block size: each hash id of its traces stands for 512 prompt tokens.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

/// Token ids stay below this (any 100k-vocabulary model could read them).
const TOKEN_ID_RANGE: u64 = 100_000;

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

/// Parse a trace in either format: Mooncake JSON Lines when the path ends in `.jsonl` or the text
/// starts with `{`, CSV otherwise.
pub fn parse_trace(text: &str, path: &str) -> Result<Vec<TraceRequest>, TraceError> {
    if is_mooncake(text, path) {
        parse_mooncake_trace(text, path)
    } else {
        parse_csv_trace(text, path)
    }
}

/// Whether a trace is in Mooncake's JSON Lines format (by extension, or by its first character).
pub fn is_mooncake(text: &str, path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".jsonl") || text.trim_start().starts_with('{')
}

/// One line of a Mooncake trace; other fields (e.g. `session_id`) are ignored.
#[derive(Deserialize)]
struct MooncakeLine {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Parse a Mooncake trace (JSON Lines): one object per line with `timestamp` (ms since the trace
/// began), `input_length`, `output_length` and `hash_ids`. Blank lines are skipped; requests are
/// named `req-N` in file order.
pub fn parse_mooncake_trace(text: &str, path: &str) -> Result<Vec<TraceRequest>, TraceError> {
    let err = |line: usize, message: String| TraceError::Parse {
        path: path.to_string(),
        line,
        message,
    };
    let mut reqs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m: MooncakeLine = serde_json::from_str(line)
            .map_err(|e| err(i + 1, format!("not a Mooncake record: {e}")))?;
        if !m.timestamp.is_finite()
            || m.timestamp < 0.0
            || m.input_length == 0
            || m.output_length == 0
        {
            return Err(err(
                i + 1,
                "timestamp must be >= 0 and input_length, output_length >= 1".into(),
            ));
        }
        reqs.push(TraceRequest {
            id: Arc::from(format!("req-{}", reqs.len()).as_str()),
            arrival_s: m.timestamp / 1000.0,
            input_tokens: m.input_length,
            output_tokens: m.output_length,
            hash_ids: m.hash_ids,
        });
    }
    if reqs.is_empty() {
        return Err(err(1, "empty file".into()));
    }
    Ok(reqs)
}

/// SplitMix64's output function: a cheap, well-mixed 64-bit hash.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` pseudo-random token ids (below 100 000) from a SplitMix64 stream seeded with `seed`.
fn token_stream(seed: u64, n: usize) -> impl Iterator<Item = u32> {
    let mut state = seed;
    (0..n).map(move |_| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (mix64(state) % TOKEN_ID_RANGE) as u32
    })
}

/// The prompt token ids of a Mooncake request: for each hash id, `block_tokens` pseudo-random ids
/// seeded by that hash id alone (so equal hash ids give equal blocks, in any request), concatenated
/// and cut to `input_tokens`; a tail beyond the hashed blocks gets ids seeded by `request` (its
/// index in the trace), unique to it, so it matches nothing else.
pub fn mooncake_prompt_ids(
    hash_ids: &[u64],
    input_tokens: u32,
    block_tokens: u32,
    request: u64,
) -> Vec<u32> {
    let want = input_tokens as usize;
    let block = block_tokens.max(1) as usize;
    let mut ids = Vec::with_capacity(want);
    for &h in hash_ids {
        if ids.len() >= want {
            break;
        }
        // Domain-separated seeds: block content from the hash id, padding from the request.
        let n = block.min(want - ids.len());
        ids.extend(token_stream(mix64(h ^ 0x6D6F_6F6E_6361_6B65), n));
    }
    if ids.len() < want {
        let n = want - ids.len();
        ids.extend(token_stream(
            mix64(request ^ 0x7061_6464_696E_6721).rotate_left(17),
            n,
        ));
    }
    ids
}

/// Parse a CSV trace with a header naming `arrival_s`, `input_tokens`, `output_tokens` (and
/// optionally `request_id`), in any column order.
pub fn parse_csv_trace(text: &str, path: &str) -> Result<Vec<TraceRequest>, TraceError> {
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
            hash_ids: Vec::new(),
        });
    }
    Ok(reqs)
}

/// The open-loop load of a trace: each request at its arrival time, `max_tokens` = its output length
/// and `ignore_eos`, so it generates exactly that many tokens. A request with hash ids (Mooncake)
/// gets the token ids [`mooncake_prompt_ids`] builds with `block_tokens` tokens per hash id; one
/// without is known only by its length and shares nothing with any other.
pub fn trace_plan(trace: &[TraceRequest], block_tokens: u32) -> LevelPlan {
    LevelPlan {
        arrivals: trace
            .iter()
            .enumerate()
            .map(|(i, t)| Arrival {
                at: t.arrival_s,
                request: RequestSpec {
                    prompt: if t.hash_ids.is_empty() {
                        Prompt::Tokens(t.input_tokens)
                    } else {
                        Prompt::Ids(
                            mooncake_prompt_ids(
                                &t.hash_ids,
                                t.input_tokens,
                                block_tokens,
                                i as u64,
                            )
                            .into(),
                        )
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"timestamp": 0, "input_length": 1200, "output_length": 40, "hash_ids": [0, 1, 2]}

{"timestamp": 1500, "input_length": 1100, "output_length": 12, "hash_ids": [0, 1, 3], "session_id": "s1"}
{"timestamp": 2250.5, "input_length": 700, "output_length": 8, "hash_ids": [7, 1]}
"#;

    #[test]
    fn mooncake_lines_parse_into_requests() {
        let t = parse_trace(SAMPLE, "sample.jsonl").expect("parses");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].id.as_ref(), "req-0");
        assert_eq!(t[1].id.as_ref(), "req-1");
        assert_eq!(t[1].arrival_s, 1.5);
        assert_eq!(t[2].arrival_s, 2.2505);
        assert_eq!(t[1].input_tokens, 1100);
        assert_eq!(t[1].output_tokens, 12);
        assert_eq!(t[1].hash_ids, [0, 1, 3]);
        // Detected by content as well as by extension.
        assert_eq!(parse_trace(SAMPLE, "sample.txt").expect("parses"), t);
        // CSV still parses as CSV, with no hash ids.
        let csv =
            parse_trace("arrival_s,input_tokens,output_tokens\n0,10,5\n", "t.csv").expect("parses");
        assert!(csv[0].hash_ids.is_empty());
    }

    #[test]
    fn a_bad_mooncake_line_names_its_line() {
        let text = "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1]}\n\n{\"timestamp\": 5, \"input_length\": \"ten\"}\n";
        let e = parse_trace(text, "bad.jsonl")
            .expect_err("rejected")
            .to_string();
        assert!(
            e.starts_with("trace bad.jsonl, line 3: not a Mooncake record"),
            "{e}"
        );
        let zero = "{\"timestamp\": 0, \"input_length\": 0, \"output_length\": 5}\n";
        let e = parse_trace(zero, "zero.jsonl")
            .expect_err("rejected")
            .to_string();
        assert!(e.contains("line 1") && e.contains("input_length"), "{e}");
        let e = parse_trace("", "empty.jsonl")
            .expect_err("rejected")
            .to_string();
        assert!(e.contains("empty file"), "{e}");
    }

    #[test]
    fn shared_leading_hash_ids_give_shared_leading_tokens() {
        let a = mooncake_prompt_ids(&[0, 1, 2], 1200, 512, 0);
        let b = mooncake_prompt_ids(&[0, 1, 3], 1100, 512, 1);
        let c = mooncake_prompt_ids(&[7, 1], 700, 512, 2);
        assert_eq!((a.len(), b.len(), c.len()), (1200, 1100, 700));
        assert_eq!(a[..1024], b[..1024], "two shared blocks, identical ids");
        assert_ne!(a[1024..1100], b[1024..1100], "third block differs");
        assert_ne!(a[..512], c[..512], "different first hash id");
        // The same hash id gives the same block wherever it stands.
        assert_eq!(a[512..700], c[512..700]);
        assert!(a.iter().chain(&b).all(|&id| id < 100_000));
        // Deterministic, and independent of the request for hashed blocks.
        assert_eq!(a, mooncake_prompt_ids(&[0, 1, 2], 1200, 512, 0));
        assert_eq!(a, mooncake_prompt_ids(&[0, 1, 2], 1200, 512, 99));
    }

    #[test]
    fn the_tail_beyond_the_hash_ids_is_unique_to_the_request() {
        let a = mooncake_prompt_ids(&[5], 600, 512, 0);
        let b = mooncake_prompt_ids(&[5], 600, 512, 1);
        assert_eq!(a[..512], b[..512]);
        assert_ne!(a[512..], b[512..]);
        // A smaller block size spreads the same hash ids over fewer tokens.
        let small = mooncake_prompt_ids(&[5, 6], 64, 16, 0);
        assert_eq!(small[..16], a[..16]);
        assert_eq!(small[16..32], mooncake_prompt_ids(&[6], 16, 16, 3)[..]);
    }

    #[test]
    fn the_plan_carries_ids_for_mooncake_and_lengths_for_csv() {
        let mut t = parse_trace(SAMPLE, "s.jsonl").expect("parses");
        t.push(TraceRequest {
            id: Arc::from("csv"),
            arrival_s: 3.0,
            input_tokens: 50,
            output_tokens: 7,
            hash_ids: Vec::new(),
        });
        let plan = trace_plan(&t, MOONCAKE_BLOCK_TOKENS);
        assert_eq!(plan.arrivals.len(), 4);
        match &plan.arrivals[0].request.prompt {
            Prompt::Ids(ids) => assert_eq!(ids.len(), 1200),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            plan.arrivals[3].request.prompt,
            Prompt::Tokens(50)
        ));
        let r = &plan.arrivals[1].request;
        assert_eq!((r.max_tokens, r.ignore_eos), (12, true));
        assert_eq!(plan.arrivals[1].at, 1.5);
    }
}
