//! Splitting the search over machines: `--shard i/N` evaluates the candidates whose index is i
//! modulo N and writes them as JSON lines under a header of the plan's inputs; a merge checks that
//! the files come from one plan and cover every candidate once, and rebuilds the candidate-ordered
//! results. An unsharded run goes through the same lines, so both produce the same bytes.

use serde::{Deserialize, Serialize};

use crate::PlanError;
use crate::search::{Candidate, CandidateResult, PlanInputs};

/// `i/N`: this machine's part of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Shard, PlanError> {
        let bad = || PlanError::Invalid(format!("--shard '{s}': expected i/N with 0 <= i < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The candidates of this shard (round-robin by index, so expensive GPUs spread out).
    pub fn select(&self, all: &[Candidate]) -> Vec<Candidate> {
        all.iter()
            .filter(|c| c.index % self.count == self.index)
            .cloned()
            .collect()
    }
}

/// The first line of a shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    servesim_plan_shard: Shard,
    candidates: usize,
    inputs: PlanInputs,
}

/// One evaluated candidate per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    result: CandidateResult,
}

/// A shard's JSON lines: the header, then one line per result.
pub fn write(
    inputs: &PlanInputs,
    shard: Shard,
    candidates: usize,
    results: &[CandidateResult],
) -> Result<String, PlanError> {
    let mut out = serde_json::to_string(&Header {
        servesim_plan_shard: shard,
        candidates,
        inputs: inputs.clone(),
    })?;
    out.push('\n');
    for r in results {
        out.push_str(&serde_json::to_string(&Line { result: r.clone() })?);
        out.push('\n');
    }
    Ok(out)
}

/// Join shard files (name, text): one plan's inputs, every shard 0..N present once, every
/// candidate once; the results in candidate order.
pub fn merge(files: &[(String, String)]) -> Result<(PlanInputs, Vec<CandidateResult>), PlanError> {
    let mut inputs: Option<(PlanInputs, usize, usize)> = None;
    let mut seen_shards = Vec::new();
    let mut results: Vec<Option<CandidateResult>> = Vec::new();
    for (name, text) in files {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let head = lines
            .next()
            .ok_or_else(|| PlanError::Shards(format!("{name} is empty")))?;
        let header: Header = serde_json::from_str(head)
            .map_err(|e| PlanError::Shards(format!("{name}: not a plan shard header: {e}")))?;
        match &inputs {
            None => {
                results = vec![None; header.candidates];
                seen_shards = vec![false; header.servesim_plan_shard.count];
                inputs = Some((
                    header.inputs.clone(),
                    header.servesim_plan_shard.count,
                    header.candidates,
                ));
            }
            Some((first, count, total)) => {
                if *first != header.inputs
                    || *count != header.servesim_plan_shard.count
                    || *total != header.candidates
                {
                    return Err(PlanError::Shards(format!(
                        "{name} is a shard of another plan (its inputs or shard count differ from the first file's)"
                    )));
                }
            }
        }
        let s = header.servesim_plan_shard;
        if std::mem::replace(&mut seen_shards[s.index], true) {
            return Err(PlanError::Shards(format!(
                "shard {}/{} given twice ({name})",
                s.index, s.count
            )));
        }
        for (k, line) in lines.enumerate() {
            let line: Line = serde_json::from_str(line)
                .map_err(|e| PlanError::Shards(format!("{name} line {}: {e}", k + 2)))?;
            let i = line.result.candidate.index;
            if i >= results.len() || i % s.count != s.index {
                return Err(PlanError::Shards(format!(
                    "{name}: candidate {i} does not belong to shard {}/{}",
                    s.index, s.count
                )));
            }
            results[i] = Some(line.result);
        }
    }
    let Some((inputs, count, _)) = inputs else {
        return Err(PlanError::Shards("no shard files given".into()));
    };
    let missing: Vec<String> = seen_shards
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(PlanError::Shards(format!(
            "missing shards: {}",
            missing.join(", ")
        )));
    }
    let results = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.ok_or_else(|| PlanError::Shards(format!("candidate {i} is in no shard file")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((inputs, results))
}

/// An unsharded run's results through the same JSON a shard file holds, so that a merge and an
/// unsharded run assemble the very same values (floats included).
pub fn roundtrip(
    inputs: &PlanInputs,
    results: &[CandidateResult],
) -> Result<(PlanInputs, Vec<CandidateResult>), PlanError> {
    let text = write(inputs, Shard { index: 0, count: 1 }, results.len(), results)?;
    merge(&[("unsharded".into(), text)])
}
