//! Per-class results of a workload file: each class's requests, errors, latency percentiles,
//! output tokens per second, and its SLO terms (target, measured, met), as JSON rows or a table.

use std::fmt::Write;

use anyhow::Result;
use servesim_sim::LevelRun;
use servesim_sim::workload::RequestRecord;
use servesim_sim::workload_file::{ClassLoad, ClientClass, Limit, SloMetric, SloStat, SloTerm};
use servesim_sim::{Workload, WorkloadPlan};
use servesim_validator::trace::{Summary, TraceReport, trace_report};

/// One SLO term as measured.
struct SloCheck {
    term: SloTerm,
    /// `None` when the class has no successful request to measure.
    measured: Option<f64>,
}

impl SloCheck {
    fn met(&self) -> bool {
        self.measured.is_some_and(|m| m <= self.term.target)
    }
}

/// One class's row.
struct ClassRow<'a> {
    class: &'a ClientClass,
    report: TraceReport,
    slo: Vec<SloCheck>,
}

impl ClassRow<'_> {
    /// All terms met (a class without an SLO has nothing to miss).
    fn slo_met(&self) -> bool {
        self.slo.iter().all(SloCheck::met)
    }
}

fn stat(s: &Summary, stat: SloStat) -> f64 {
    match stat {
        SloStat::Mean => s.mean,
        SloStat::P50 => s.median,
        SloStat::P90 => s.p90,
        SloStat::P95 => s.p95,
        SloStat::P99 => s.p99,
    }
}

/// How the class sends, in a few words (`poisson at 4 req/s for 600 s`, `closed loop, 8 users`).
fn load_text(class: &ClientClass) -> String {
    let mut out = match class.load {
        ClassLoad::Open {
            arrival,
            rate,
            limit,
        } => match limit {
            Limit::Requests(n) => format!("{arrival} at {rate} req/s, {n} requests"),
            Limit::DurationS(d) => format!("{arrival} at {rate} req/s for {d} s"),
        },
        ClassLoad::Closed {
            users, requests, ..
        } => format!("closed loop, {users} users, {requests} requests"),
    };
    if let Some(m) = &class.multi_turn {
        out.push_str(&format!(", sessions of {} turns", m.turns));
    }
    if let Some(p) = &class.shared_prefix {
        out.push_str(&format!(", prefix '{}' ({} tokens)", p.group, p.tokens));
    }
    out
}

fn rows<'a>(
    workload: &'a Workload,
    plan: &WorkloadPlan,
    records: &[RequestRecord],
    wall: f64,
    profile: &str,
) -> Vec<ClassRow<'a>> {
    let mut by_class: Vec<Vec<RequestRecord>> = vec![Vec::new(); workload.classes.len()];
    for r in records {
        if let Some(list) = by_class.get_mut(plan.class_of(r)) {
            list.push(r.clone());
        }
    }
    workload
        .classes
        .iter()
        .zip(by_class)
        .map(|(class, records)| {
            let ok = records.iter().any(|r| r.ok() && r.ttft().is_some());
            let report = trace_report(&class.name, profile, &LevelRun { records, wall });
            let slo = class
                .slo
                .iter()
                .map(|&term| {
                    let s = match term.metric {
                        SloMetric::Ttft => &report.ttft,
                        SloMetric::Tpot => &report.tpot,
                        SloMetric::E2e => &report.e2e,
                    };
                    SloCheck {
                        term,
                        measured: ok.then(|| stat(s, term.stat)),
                    }
                })
                .collect();
            ClassRow { class, report, slo }
        })
        .collect()
}

/// Add a `classes` array to `json`, or, when `json` is `None`, return the per-class table (a row
/// per class, then each class's load and SLO terms).
pub fn report(
    workload: &Workload,
    plan: &WorkloadPlan,
    run: &LevelRun,
    profile: &str,
    json: Option<&mut serde_json::Value>,
) -> Result<String> {
    let rows = rows(workload, plan, &run.records, run.wall, profile);
    if let Some(v) = json {
        let list = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("class".into(), r.class.name.clone().into());
                o.insert("load".into(), load_text(r.class).into());
                o.insert("requests".into(), r.report.requests.into());
                o.insert("errors".into(), r.report.errors.into());
                o.insert("ttft".into(), serde_json::to_value(r.report.ttft)?);
                o.insert("tpot".into(), serde_json::to_value(r.report.tpot)?);
                o.insert("e2e".into(), serde_json::to_value(r.report.e2e)?);
                o.insert("output_tok_s".into(), r.report.output_tok_s.into());
                let slo: Vec<serde_json::Value> = r
                    .slo
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "term": c.term.key(),
                            "target": c.term.target,
                            "measured": c.measured,
                            "met": c.met(),
                        })
                    })
                    .collect();
                o.insert("slo".into(), slo.into());
                o.insert("slo_met".into(), r.slo_met().into());
                Ok(serde_json::Value::Object(o))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(o) = v.as_object_mut() {
            o.insert("classes".into(), list.into());
        }
        return Ok(String::new());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16}{:>9}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>11}  slo",
        "class",
        "requests",
        "errors",
        "ttft p50",
        "ttft p95",
        "tpot p50",
        "e2e p50",
        "e2e p95",
        "tok/s",
    );
    for r in &rows {
        let slo = if r.slo.is_empty() {
            "-"
        } else if r.slo_met() {
            "met"
        } else {
            "MISSED"
        };
        let _ = writeln!(
            out,
            "{:<16}{:>9}{:>8}{:>10.4}{:>10.4}{:>10.4}{:>10.3}{:>10.3}{:>11.1}  {slo}",
            r.class.name,
            r.report.requests,
            r.report.errors,
            r.report.ttft.median,
            r.report.ttft.p95,
            r.report.tpot.median,
            r.report.e2e.median,
            r.report.e2e.p95,
            r.report.output_tok_s,
        );
    }
    for r in &rows {
        let _ = writeln!(out, "  {}: {}", r.class.name, load_text(r.class));
        for c in &r.slo {
            let measured = c
                .measured
                .map_or_else(|| "no successful request".into(), |m| format!("{m:.4} s"));
            let _ = writeln!(
                out,
                "    {:<10} target {} s, measured {measured}: {}",
                c.term.key(),
                c.term.target,
                if c.met() { "met" } else { "missed" }
            );
        }
    }
    Ok(out)
}
