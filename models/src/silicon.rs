//! Silicon tables (forward passes timed on a real GPU by the silicon probe) and the fit of a GPU's
//! cost-model terms to them.
//!
//! A table names the decoder's shape and times decode, prefill and mixed iterations (see
//! `fixtures/silicon/` and `validator/probe/`). [`SiliconTable::compare`] prices every row with a
//! profile's cost model; [`calibrate`] fits the GPU's achieved fractions and fixed times to the rows.

use serde::{Deserialize, Serialize};

use crate::cost::{CostModel, Iteration, PrefillChunk};
use crate::gpu::GpuSpec;
use crate::llm::{LlmSpec, TokenizerKind};
use crate::profile::Profile;

/// Why a silicon table could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SiliconError {
    #[error("cannot parse the silicon table {origin}: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },
    #[error("the silicon table {0} has no timed rows")]
    Empty(String),
}

/// The decoder a table was timed on, as the probe records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableModel {
    pub hidden: u32,
    pub inter: u32,
    pub layers: u32,
    pub heads: u32,
    pub kv: u32,
    pub hd: u32,
    pub vocab: u32,
    #[serde(default)]
    pub bias: bool,
    pub params: u64,
    /// Bytes per weight (2 for bf16); absent in tables that predate the field.
    #[serde(default)]
    pub dtype_bytes: Option<u32>,
}

/// One calibration measurement from the probe's sanity section.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sanity {
    pub median_s: f64,
    #[serde(default)]
    pub bytes_per_s: Option<f64>,
    #[serde(default)]
    pub flops_per_s: Option<f64>,
    #[serde(default)]
    pub rw_bytes_per_s: Option<f64>,
}

/// The probe's microbenchmarks: a copy, a big GEMM and a streaming GEMV.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SanitySet {
    #[serde(default)]
    pub copy_1gib: Option<Sanity>,
    #[serde(default)]
    pub gemm_8192: Option<Sanity>,
    #[serde(default)]
    pub gemv_stream_2gib: Option<Sanity>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct DecodeRow {
    batch: u32,
    context: u32,
    median_s: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct PrefillRow {
    tokens: u32,
    median_s: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct MixedRow {
    chunk: u32,
    batch: u32,
    context: u32,
    median_s: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RawTable {
    #[serde(default)]
    device: String,
    model: TableModel,
    #[serde(default)]
    sanity: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    decode: Vec<DecodeRow>,
    #[serde(default)]
    prefill: Vec<PrefillRow>,
    #[serde(default)]
    mixed: Vec<MixedRow>,
}

/// What one timed row ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RowShape {
    /// `batch` sequences each decoding one token over `context` cached tokens.
    Decode { batch: u32, context: u32 },
    /// One fresh prompt of `tokens` tokens.
    Prefill { tokens: u32 },
    /// A fresh prompt chunk of `chunk` tokens beside `batch` decodes at `context`.
    Mixed {
        chunk: u32,
        batch: u32,
        context: u32,
    },
}

impl RowShape {
    /// The row as `servesim cost` arguments would write it.
    pub fn label(&self) -> String {
        match *self {
            RowShape::Decode { batch, context } => format!("decode {batch}x{}", context + 1),
            RowShape::Prefill { tokens } => format!("prefill {tokens}"),
            RowShape::Mixed {
                chunk,
                batch,
                context,
            } => format!("prefill {chunk} + decode {batch}x{}", context + 1),
        }
    }

    /// The iteration this row is, priced by `cost`: the GPU time the probe measures.
    pub fn silicon_s(&self, cost: &CostModel) -> f64 {
        let (prefill, batch, context) = match *self {
            RowShape::Decode { batch, context } => (None, batch, context),
            RowShape::Prefill { tokens } => (Some(tokens), 0, 0),
            RowShape::Mixed {
                chunk,
                batch,
                context,
            } => (Some(chunk), batch, context),
        };
        let chunks: Vec<PrefillChunk> = prefill
            .map(|tokens| PrefillChunk {
                tokens,
                cached: 0,
                samples: true,
            })
            .into_iter()
            .collect();
        // The new token attends the cached context and itself.
        let decodes = vec![context + 1; batch as usize];
        cost.iteration(&Iteration {
            prefills: &chunks,
            decode_contexts: &decodes,
        })
        .silicon_s()
    }
}

/// One timed iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SiliconRow {
    #[serde(flatten)]
    pub shape: RowShape,
    pub measured_s: f64,
}

/// A parsed silicon table.
#[derive(Debug, Clone, PartialEq)]
pub struct SiliconTable {
    pub device: String,
    pub model: TableModel,
    pub sanity: SanitySet,
    pub rows: Vec<SiliconRow>,
}

/// A row priced by a model beside its measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RowComparison {
    #[serde(flatten)]
    pub row: SiliconRow,
    pub model_s: f64,
    /// `model / measured − 1`.
    pub error: f64,
}

/// How well a cost model matches a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub rows: Vec<RowComparison>,
    pub median_abs_error: f64,
    pub max_abs_error: f64,
}

impl SiliconTable {
    /// Parse the probe's JSON.
    pub fn from_json(text: &str, origin: &str) -> Result<SiliconTable, SiliconError> {
        let raw: RawTable = serde_json::from_str(text).map_err(|source| SiliconError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let sanity_of = |key: &str| {
            raw.sanity
                .get(key)
                .and_then(|v| serde_json::from_value::<Sanity>(v.clone()).ok())
        };
        let sanity = SanitySet {
            copy_1gib: sanity_of("copy_1GiB"),
            gemm_8192: sanity_of("gemm_8192"),
            gemv_stream_2gib: sanity_of("gemv_stream_2GiB"),
        };
        let mut rows = Vec::new();
        rows.extend(raw.decode.iter().map(|r| SiliconRow {
            shape: RowShape::Decode {
                batch: r.batch,
                context: r.context,
            },
            measured_s: r.median_s,
        }));
        rows.extend(raw.prefill.iter().map(|r| SiliconRow {
            shape: RowShape::Prefill { tokens: r.tokens },
            measured_s: r.median_s,
        }));
        rows.extend(raw.mixed.iter().map(|r| SiliconRow {
            shape: RowShape::Mixed {
                chunk: r.chunk,
                batch: r.batch,
                context: r.context,
            },
            measured_s: r.median_s,
        }));
        rows.retain(|r| r.measured_s.is_finite() && r.measured_s > 0.0);
        if rows.is_empty() {
            return Err(SiliconError::Empty(origin.to_string()));
        }
        Ok(SiliconTable {
            device: raw.device,
            model: raw.model,
            sanity,
            rows,
        })
    }

    /// The table's decoder as a catalogue model (shape only: names and chat figures are placeholders).
    pub fn llm(&self) -> LlmSpec {
        let m = &self.model;
        let (h, heads, kv, hd) = (
            u64::from(m.hidden),
            u64::from(m.heads),
            u64::from(m.kv),
            u64::from(m.hd),
        );
        let qkv_out = (heads + 2 * kv) * hd;
        let per_layer = h * qkv_out
            + if m.bias { qkv_out } else { 0 }
            + heads * hd * h
            + 3 * h * u64::from(m.inter)
            + 2 * h;
        let embedding = u64::from(m.vocab) * h;
        let body = u64::from(m.layers) * per_layer + h;
        // Untied when the recorded total holds a second vocab-sized matrix.
        let tied = m.params < body + embedding + embedding / 2;
        LlmSpec {
            name: "silicon-table".into(),
            hf_id: "silicon-table".into(),
            params: m.params,
            num_layers: m.layers,
            hidden_size: m.hidden,
            intermediate_size: m.inter,
            num_attention_heads: m.heads,
            num_kv_heads: m.kv,
            head_dim: m.hd,
            vocab_size: m.vocab,
            tie_word_embeddings: tied,
            dtype_bytes: m.dtype_bytes.unwrap_or(2),
            max_context: 32_768,
            chat_template_tokens: 0,
            message_overhead_tokens: 0,
            tokenizer: TokenizerKind::Cl100kBase,
            token_ratio: 1.0,
            num_experts: 0,
            num_experts_per_tok: 0,
            moe_intermediate_size: 0,
        }
    }

    /// `profile` with its model replaced by this table's decoder.
    pub fn profile_on(&self, profile: &Profile, gpu: &GpuSpec) -> Profile {
        let mut p = profile.clone();
        p.model = self.llm();
        p.gpu = gpu.clone();
        p
    }

    /// Every row priced by `gpu` running this table's decoder under `profile`'s engine.
    pub fn compare(&self, profile: &Profile, gpu: &GpuSpec) -> Comparison {
        let cost = self.profile_on(profile, gpu).cost_model();
        let rows: Vec<RowComparison> = self
            .rows
            .iter()
            .map(|&row| {
                let model_s = row.shape.silicon_s(&cost);
                RowComparison {
                    row,
                    model_s,
                    error: model_s / row.measured_s - 1.0,
                }
            })
            .collect();
        let mut abs: Vec<f64> = rows.iter().map(|r| r.error.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let median_abs_error = if abs.is_empty() {
            0.0
        } else if abs.len() % 2 == 1 {
            abs[abs.len() / 2]
        } else {
            (abs[abs.len() / 2 - 1] + abs[abs.len() / 2]) / 2.0
        };
        Comparison {
            max_abs_error: abs.last().copied().unwrap_or(0.0),
            median_abs_error,
            rows,
        }
    }
}

/// The GPU terms a fit can set, in the order [`calibrate`] reports them.
pub const FITTED_TERMS: [&str; 7] = [
    "bandwidth_efficiency",
    "flops_efficiency",
    "gemm_tile_tokens",
    "overlap_exponent",
    "attention_bandwidth_efficiency",
    "attention_flops_efficiency",
    "layer_overhead_s",
];

/// The outcome of fitting a GPU to a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub gpu: GpuSpec,
    /// Whether the weight-streaming bandwidth came from the table's GEMV microbenchmark (then it
    /// was not fitted).
    pub bandwidth_measured: bool,
    pub comparison: Comparison,
}

/// The value of fitted term `i` (an index into [`FITTED_TERMS`]) in `g`.
pub fn term_value(g: &GpuSpec, i: usize) -> f64 {
    match i {
        0 => g.bandwidth_efficiency,
        1 => g.flops_efficiency,
        2 => g.gemm_tile_tokens,
        3 => g.overlap_exponent,
        4 => g.attention_bandwidth_efficiency,
        5 => g.attention_flops_efficiency,
        _ => g.layer_overhead_s,
    }
}

fn set(g: &mut GpuSpec, i: usize, v: f64) {
    match i {
        0 => g.bandwidth_efficiency = v,
        1 => g.flops_efficiency = v,
        2 => g.gemm_tile_tokens = v,
        3 => g.overlap_exponent = v,
        4 => g.attention_bandwidth_efficiency = v,
        5 => g.attention_flops_efficiency = v,
        _ => g.layer_overhead_s = v,
    }
}

/// Bounds that keep every term physical: fractions of peak in (0, 1], a tile of at most 512 rows,
/// an exponent between no overlap (1) and nearly ideal (16), under 1 ms per layer.
fn clamp(i: usize, v: f64) -> f64 {
    match i {
        2 => v.clamp(0.0, 512.0),
        3 => v.clamp(1.0, 16.0),
        6 => v.clamp(0.0, 1e-3),
        _ => v.clamp(1e-3, 1.0),
    }
}

/// Fit `base`'s cost-model terms to `table`, timed with `profile`'s engine. The weight-streaming
/// bandwidth is taken from the table's GEMV microbenchmark when it has one (an independent
/// measurement); the other terms minimise the squared log error over all rows (Nelder–Mead from
/// `base`'s values).
pub fn calibrate(table: &SiliconTable, profile: &Profile, base: &GpuSpec) -> Calibration {
    let mut gpu = base.clone();
    let measured_bw = table
        .sanity
        .gemv_stream_2gib
        .and_then(|s| s.bytes_per_s)
        .filter(|b| *b > 0.0 && gpu.memory_bandwidth_bps > 0.0);
    if let Some(bw) = measured_bw {
        gpu.bandwidth_efficiency = (bw / gpu.memory_bandwidth_bps).min(1.0);
    }
    let free: Vec<usize> = (0..FITTED_TERMS.len())
        .filter(|&i| !(i == 0 && measured_bw.is_some()))
        .collect();
    let model = table.profile_on(profile, &gpu);
    let loss = |x: &[f64]| -> f64 {
        let mut g = gpu.clone();
        for (&i, &v) in free.iter().zip(x) {
            set(&mut g, i, clamp(i, v));
        }
        let mut p = model.clone();
        p.gpu = g;
        let cost = p.cost_model();
        table
            .rows
            .iter()
            .map(|r| (r.shape.silicon_s(&cost) / r.measured_s).ln().powi(2))
            .sum()
    };
    let start: Vec<f64> = free.iter().map(|&i| term_value(&gpu, i)).collect();
    let best = nelder_mead(&loss, &start, 4000);
    for (&i, &v) in free.iter().zip(&best) {
        set(&mut gpu, i, clamp(i, v));
    }
    Calibration {
        comparison: table.compare(profile, &gpu),
        bandwidth_measured: measured_bw.is_some(),
        gpu,
    }
}

/// Minimise `f` from `start` with the Nelder–Mead simplex (standard coefficients), restarting once
/// from the best point so a collapsed simplex does not stop it early.
fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, start: &[f64], max_evals: usize) -> Vec<f64> {
    let mut best = start.to_vec();
    for _ in 0..3 {
        best = simplex_run(f, &best, max_evals);
    }
    best
}

fn simplex_run(f: &dyn Fn(&[f64]) -> f64, start: &[f64], max_evals: usize) -> Vec<f64> {
    let n = start.len();
    if n == 0 {
        return Vec::new();
    }
    let mut pts: Vec<Vec<f64>> = vec![start.to_vec()];
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] = if p[i].abs() > 1e-12 {
            p[i] * 1.25
        } else {
            0.05
        };
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| f(p)).collect();
    let mut evals = n + 1;
    while evals < max_evals {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
        pts = order.iter().map(|&i| pts[i].clone()).collect();
        vals = order.iter().map(|&i| vals[i]).collect();
        if (vals[n] - vals[0]).abs() <= 1e-12 * (1.0 + vals[0].abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| pts[..n].iter().map(|p| p[j]).sum::<f64>() / n as f64)
            .collect();
        let toward = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|j| centroid[j] + t * (pts[n][j] - centroid[j]))
                .collect()
        };
        let reflected = toward(-1.0);
        let fr = f(&reflected);
        evals += 1;
        if fr < vals[0] {
            let expanded = toward(-2.0);
            let fe = f(&expanded);
            evals += 1;
            if fe < fr {
                pts[n] = expanded;
                vals[n] = fe;
            } else {
                pts[n] = reflected;
                vals[n] = fr;
            }
        } else if fr < vals[n - 1] {
            pts[n] = reflected;
            vals[n] = fr;
        } else {
            let contracted = if fr < vals[n] {
                toward(-0.5)
            } else {
                toward(0.5)
            };
            let fc = f(&contracted);
            evals += 1;
            if fc < vals[n].min(fr) {
                pts[n] = contracted;
                vals[n] = fc;
            } else {
                for i in 1..=n {
                    pts[i] = (0..n)
                        .map(|j| pts[0][j] + 0.5 * (pts[i][j] - pts[0][j]))
                        .collect();
                    vals[i] = f(&pts[i]);
                    evals += 1;
                }
            }
        }
    }
    let mut bi = 0;
    for i in 1..vals.len() {
        if vals[i] < vals[bi] {
            bi = i;
        }
    }
    pts.swap_remove(bi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nelder_mead_finds_a_quadratic_minimum() {
        let f = |x: &[f64]| (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2);
        let x = nelder_mead(&f, &[0.5, 0.5], 2000);
        assert!(
            (x[0] - 3.0).abs() < 1e-3 && (x[1] + 1.0).abs() < 1e-3,
            "{x:?}"
        );
    }
}
