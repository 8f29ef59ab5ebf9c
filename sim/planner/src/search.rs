//! The search space (GPU × tensor parallelism × engine settings), each candidate checked as vLLM
//! checks it, and the evaluation of one candidate: its capacity per replica at the SLOs, the
//! replicas the peak needs, and the latencies each replica then sees.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use servesim_models::{KvCacheDtype, Profile, Quantization};
use servesim_sim::workload_file::SloTerm;

use crate::PlanError;
use crate::capacity::{Bisection, Capacity, Measure, bisect, replicas_for};
use crate::latency::Latencies;
use crate::prices::Prices;
use crate::traffic::TrafficSummary;

/// The settings tried: every combination is a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Catalogue GPU names.
    pub gpus: Vec<String>,
    /// `--tensor-parallel-size` values.
    pub tensor_parallel: Vec<u32>,
    /// `--max-num-seqs` values.
    pub max_num_seqs: Vec<u32>,
    /// `--max-num-batched-tokens` values.
    pub max_num_batched_tokens: Vec<u32>,
    /// `--gpu-memory-utilization` values.
    pub gpu_memory_utilization: Vec<f64>,
    /// `--max-model-len` for every candidate (absent: the model's context).
    pub max_model_len: Option<u32>,
    /// `--quantization` values to try (`None`: the checkpoint's dtype). FP8 only: vLLM quantises a
    /// bf16 checkpoint to FP8 on load, while AWQ and GPTQ need a checkpoint of their own.
    #[serde(default = "no_quantization")]
    pub quantization: Vec<Option<Quantization>>,
    /// `--kv-cache-dtype` values to try.
    #[serde(default = "auto_kv")]
    pub kv_cache_dtype: Vec<KvCacheDtype>,
}

fn no_quantization() -> Vec<Option<Quantization>> {
    vec![None]
}

fn auto_kv() -> Vec<KvCacheDtype> {
    vec![KvCacheDtype::Auto]
}

/// Everything a plan's results depend on: the header of every shard file, so shards of different
/// plans are never merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInputs {
    /// Catalogue model name.
    pub model: String,
    pub grid: Grid,
    pub traffic: TrafficSummary,
    /// The SLO terms as `--slo` writes them (`ttft_p95=1,tpot_p50=0.05`); empty when only a
    /// workload file's classes carry SLOs (each class is then held to its own).
    pub slo: String,
    /// Peak arrival rate, requests per second.
    pub peak_rate: f64,
    /// Where the peak rate came from (`--rate`, or users × requests per user per hour).
    pub rate_source: String,
    /// Replicas = ⌈headroom × peak ÷ capacity⌉.
    pub headroom: f64,
    /// A term over its target by at most this fraction is a near miss.
    pub tolerance: f64,
    /// Requests per replica in each simulated run (at least).
    pub requests: usize,
    /// Seconds of arrivals in each simulated run (at least).
    pub probe_seconds: f64,
    pub seed: u64,
    pub bisection: Bisection,
    /// The router of the verified fleet.
    pub router: String,
    pub prices: Prices,
}

impl PlanInputs {
    /// The SLO terms (checked when the inputs were made); none when the whole traffic has no
    /// terms of its own (a workload file whose classes carry theirs).
    pub fn slo_terms(&self) -> Result<Vec<SloTerm>, PlanError> {
        if self.slo.is_empty() {
            return Ok(Vec::new());
        }
        crate::traffic::parse_slo(&self.slo)
    }

    /// Every candidate, GPU-major, in a fixed order (shards split this list by index).
    pub fn candidates(&self) -> Vec<Candidate> {
        let g = &self.grid;
        let mut out = Vec::new();
        for gpu in &g.gpus {
            for &tp in &g.tensor_parallel {
                for &seqs in &g.max_num_seqs {
                    for &tokens in &g.max_num_batched_tokens {
                        for &mem in &g.gpu_memory_utilization {
                            for &quantization in &g.quantization {
                                for &kv_cache_dtype in &g.kv_cache_dtype {
                                    out.push(Candidate {
                                        index: out.len(),
                                        gpu: gpu.clone(),
                                        tensor_parallel_size: tp,
                                        max_num_seqs: seqs,
                                        max_num_batched_tokens: tokens,
                                        gpu_memory_utilization: mem,
                                        quantization,
                                        kv_cache_dtype,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// One point of the search space: a replica's GPU, sharding and engine settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Position in [`PlanInputs::candidates`].
    pub index: usize,
    pub gpu: String,
    pub tensor_parallel_size: u32,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    #[serde(default)]
    pub quantization: Option<Quantization>,
    #[serde(default)]
    pub kv_cache_dtype: KvCacheDtype,
}

impl Candidate {
    /// The profile of one replica: `GPU+MODEL` with vLLM's defaults and these settings, refused
    /// (heads not divisible, weights or KV cache not fitting) as vLLM refuses it.
    pub fn profile(&self, model: &str, max_model_len: Option<u32>) -> Result<Profile, PlanError> {
        let mut p = Profile::builtin_unchecked(&format!("{}+{model}", self.gpu))?;
        p.engine.tensor_parallel_size = self.tensor_parallel_size;
        p.engine.max_num_seqs = self.max_num_seqs;
        p.engine.max_num_batched_tokens = self.max_num_batched_tokens;
        p.engine.gpu_memory_utilization = self.gpu_memory_utilization;
        p.engine.quantization = self.quantization;
        p.engine.kv_cache_dtype = self.kv_cache_dtype;
        if max_model_len.is_some() {
            p.engine.max_model_len = max_model_len;
        }
        p.derive()?;
        Ok(p)
    }
}

/// What the search learnt about one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateResult {
    pub candidate: Candidate,
    /// The model's Hugging Face id (what `vllm serve` takes).
    pub model_id: String,
    pub gpu_display: String,
    /// The measurement the GPU's terms were fitted to; absent: data-sheet figures only.
    pub calibrated_from: Option<String>,
    /// vLLM's refusal, word for word, when the candidate cannot be served at all.
    pub rejected: Option<String>,
    /// KV-cache capacity in tokens (over the replica's GPUs).
    pub kv_tokens: Option<u64>,
    pub capacity: Option<Capacity>,
    /// Replicas the peak needs with the headroom; absent when no rate meets the SLOs.
    pub replicas: Option<u32>,
    /// One replica at its share of the peak (peak ÷ replicas).
    pub at_peak: Option<Latencies>,
}

/// Evaluate one candidate: check it, bisect its capacity, size the fleet, measure its share.
pub fn evaluate(
    inputs: &PlanInputs,
    measure: &dyn Measure,
    candidate: &Candidate,
) -> Result<CandidateResult, PlanError> {
    let slo = inputs.slo_terms()?;
    let base = Profile::builtin_unchecked(&format!("{}+{}", candidate.gpu, inputs.model))?;
    let mut result = CandidateResult {
        candidate: candidate.clone(),
        model_id: base.model.hf_id.clone(),
        gpu_display: base.gpu.display_name.clone(),
        calibrated_from: base.gpu.calibrated_from,
        rejected: None,
        kv_tokens: None,
        capacity: None,
        replicas: None,
        at_peak: None,
    };
    let profile = match candidate.profile(&inputs.model, inputs.grid.max_model_len) {
        Ok(p) => p,
        Err(PlanError::Profile(e)) => {
            result.rejected = Some(e.to_string());
            return Ok(result);
        }
        Err(e) => return Err(e),
    };
    result.kv_tokens = Some(profile.derive()?.kv_tokens);
    let capacity = bisect(measure, candidate, &profile, &slo, inputs.bisection)?;
    result.replicas = replicas_for(inputs.peak_rate, inputs.headroom, capacity.rate);
    if let Some(r) = result.replicas {
        result.at_peak =
            Some(measure.measure(candidate, &profile, inputs.peak_rate / f64::from(r), 1)?);
    }
    result.capacity = Some(capacity);
    Ok(result)
}

/// Evaluate candidates in parallel over the cores; results keep the candidates' order, so they do
/// not depend on the number of threads.
pub fn evaluate_all(
    inputs: &PlanInputs,
    measure: &dyn Measure,
    candidates: &[Candidate],
) -> Result<Vec<CandidateResult>, PlanError> {
    candidates
        .par_iter()
        .map(|c| evaluate(inputs, measure, c))
        .collect()
}
