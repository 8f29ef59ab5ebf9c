//! `simulate`'s fleet and open-loop flags: how many replicas of which profiles, the router in front
//! of them, its admission, and a synthetic open-loop load; and the fleet's report (fleet rows, then
//! one row per replica).

use anyhow::{Context, Result, bail};
use clap::Args;
use servesim_models::Profile;
use servesim_sim::{
    Admission, ArrivalProcess, EngineStats, Fleet, FleetRun, LevelPlan, OpenLoop, Policy,
    RouterConfig, TokenDist,
};
use servesim_validator::report::Format;
use servesim_validator::trace::{TraceReport, trace_report};

/// Replicas and the router in front of them.
#[derive(Debug, Args, Clone)]
pub struct FleetArgs {
    /// Replicas of `--profile` behind one router, on one virtual clock.
    #[arg(long, env = "SERVESIM_REPLICAS", conflicts_with = "replica_profile")]
    pub replicas: Option<usize>,
    /// A mixed fleet: PROFILE:COUNT,... (e.g. h100-qwen2.5-7b:2,a6000-qwen2.5-7b:4); the engine
    /// flags apply to every replica.
    #[arg(long, env = "SERVESIM_REPLICA_PROFILE")]
    pub replica_profile: Option<String>,
    /// round-robin, least-requests (the router's own in-flight counts), least-kv (scraped KV
    /// usage), prefix-affinity (SMG-style cache-aware), or weighted:prefix=W,queue=W,kv=W,requests=W
    /// (llm-d-style scorers).
    #[arg(long, default_value = "round-robin", env = "SERVESIM_ROUTER", value_parser = parse_policy)]
    pub router: Policy,
    /// Seconds between the router's scrapes of each replica's /metrics (0 = read fresh).
    #[arg(long, default_value_t = 0.1, env = "SERVESIM_SCRAPE_INTERVAL")]
    pub scrape_interval: f64,
    /// unbounded, queue:N (at most N requests in flight through the router; more get 429), or
    /// token-bucket:rate=R,burst=B.
    #[arg(long, default_value = "unbounded", env = "SERVESIM_ADMISSION", value_parser = parse_admission)]
    pub admission: Admission,
}

pub(crate) fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
        .map_err(|e: servesim_sim::ParseError| e.to_string())
}

pub(crate) fn parse_admission(s: &str) -> Result<Admission, String> {
    s.parse()
        .map_err(|e: servesim_sim::ParseError| e.to_string())
}

fn parse_arrival(s: &str) -> Result<ArrivalProcess, String> {
    s.parse()
        .map_err(|e: servesim_sim::ParseError| e.to_string())
}

fn parse_dist(s: &str) -> Result<TokenDist, String> {
    s.parse()
        .map_err(|e: servesim_sim::ParseError| e.to_string())
}

impl FleetArgs {
    /// Whether a fleet was asked for (then the report has router and per-replica rows).
    pub fn is_fleet(&self) -> bool {
        self.replicas.is_some() || self.replica_profile.is_some()
    }

    /// The replicas' profiles: `--replica-profile`'s list, or `--replicas` copies of `base`.
    /// `load` resolves a profile name with the run's overrides applied.
    pub fn profiles(
        &self,
        base: &Profile,
        load: impl Fn(&str) -> Result<Profile>,
    ) -> Result<Vec<Profile>> {
        let profiles = match &self.replica_profile {
            Some(list) => replica_profiles(list, load)?,
            None => vec![base.clone(); self.replicas.unwrap_or(1)],
        };
        if profiles.is_empty() {
            bail!("a fleet needs at least one replica (--replicas >= 1)");
        }
        if profiles.len() > 4096 {
            bail!("{} replicas: at most 4096", profiles.len());
        }
        Ok(profiles)
    }

    pub fn router_config(&self) -> Result<RouterConfig> {
        if !(self.scrape_interval.is_finite() && self.scrape_interval >= 0.0) {
            bail!("--scrape-interval must be >= 0 seconds");
        }
        Ok(RouterConfig {
            policy: self.router,
            admission: self.admission,
            scrape_interval_s: self.scrape_interval,
            ..RouterConfig::default()
        })
    }
}

/// The profiles of `--replica-profile PROFILE:COUNT,...` (a missing count is 1), each resolved by
/// `load` (which applies the run's engine flags), in replica order.
pub fn replica_profiles(
    list: &str,
    load: impl Fn(&str) -> Result<Profile>,
) -> Result<Vec<Profile>> {
    let mut out = Vec::new();
    for part in list.split(',') {
        let (name, count) = match part.rsplit_once(':') {
            Some((name, n)) => (
                name,
                n.trim().parse::<usize>().with_context(|| {
                    format!("--replica-profile: '{n}' in '{part}' is not a count")
                })?,
            ),
            None => (part, 1),
        };
        let p = load(name.trim())?;
        out.extend(std::iter::repeat_n(p, count));
    }
    Ok(out)
}

/// A synthetic open-loop load.
#[derive(Debug, Args, Clone)]
pub struct OpenLoopArgs {
    /// Run a synthetic open-loop load instead of drills: poisson, constant or gamma:cv=X.
    #[arg(long, env = "SERVESIM_ARRIVAL", value_parser = parse_arrival, conflicts_with = "workload")]
    pub arrival: Option<ArrivalProcess>,
    /// Open loop: requests per second.
    #[arg(long, default_value_t = 1.0, env = "SERVESIM_RATE")]
    pub rate: f64,
    /// Open loop: how many requests.
    #[arg(long, default_value_t = 1000, env = "SERVESIM_REQUESTS")]
    pub requests: usize,
    /// Open loop: output tokens per request, a number or a distribution
    /// (lognormal:mean=M,sd=S, normal:mean=M,sd=S, uniform:min=A,max=B).
    #[arg(long, default_value = "128", env = "SERVESIM_OUTPUT_TOKENS", value_parser = parse_dist)]
    pub output_tokens: TokenDist,
}

impl OpenLoopArgs {
    /// The open-loop plan; `input` is `--input-tokens` read as one distribution.
    pub fn plan(
        &self,
        arrival: ArrivalProcess,
        input: Option<&str>,
        seed: u64,
    ) -> Result<LevelPlan> {
        let input_tokens = match input {
            Some(s) => parse_dist(s).map_err(anyhow::Error::msg)?,
            None => TokenDist::Fixed(512),
        };
        if self.requests == 0 {
            bail!("--requests must be >= 1");
        }
        Ok(OpenLoop {
            arrival,
            rate: self.rate,
            requests: self.requests,
            input_tokens,
            output_tokens: self.output_tokens,
            seed,
        }
        .plan()?)
    }
}

/// One replica's row.
#[derive(Debug)]
struct ReplicaRow {
    replica: usize,
    report: TraceReport,
    prefix_cache_hit_rate: f64,
    preemptions: u64,
}

impl ReplicaRow {
    /// The replica's report with its number, hit rate and preemptions added.
    fn to_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("replica".into(), self.replica.into());
            o.insert(
                "prefix_cache_hit_rate".into(),
                self.prefix_cache_hit_rate.into(),
            );
            o.insert("preemptions".into(), self.preemptions.into());
        }
        Ok(v)
    }
}

/// What the router did.
#[derive(Debug)]
struct RouterRow {
    policy: String,
    admission: String,
    scrape_interval_s: f64,
    rejected: u64,
}

/// Every replica's engine counters added up.
pub fn fleet_stats(fleet: &Fleet) -> EngineStats {
    let mut total = EngineStats::default();
    for r in fleet.replicas() {
        let s = r.engine().stats();
        total.running += s.running;
        total.waiting += s.waiting;
        total.kv_used_blocks += s.kv_used_blocks;
        total.preemptions_total += s.preemptions_total;
        total.steps_total += s.steps_total;
        total.prompt_tokens_total += s.prompt_tokens_total;
        total.prompt_tokens_cached_total += s.prompt_tokens_cached_total;
        total.generation_tokens_total += s.generation_tokens_total;
        total.prefix_cache_queries += s.prefix_cache_queries;
        total.prefix_cache_hits += s.prefix_cache_hits;
    }
    total
}

fn hit_rate(s: &EngineStats) -> f64 {
    if s.prefix_cache_queries == 0 {
        0.0
    } else {
        s.prefix_cache_hits as f64 / s.prefix_cache_queries as f64
    }
}

/// Add the router and one row per replica to a fleet's JSON report, or print them under its table.
pub fn print_replicas(
    fleet: &Fleet,
    run: &FleetRun,
    kind: &str,
    json: Option<&mut serde_json::Value>,
    format: Format,
) -> Result<()> {
    let rows: Vec<ReplicaRow> = fleet
        .replicas()
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let stats = r.engine().stats();
            ReplicaRow {
                replica: k,
                report: trace_report(kind, r.profile(), &run.of_replica(k)),
                prefix_cache_hit_rate: hit_rate(&stats),
                preemptions: stats.preemptions_total,
            }
        })
        .collect();
    let config = fleet.router().config();
    let router = RouterRow {
        policy: config.policy.to_string(),
        admission: config.admission.to_string(),
        scrape_interval_s: config.scrape_interval_s,
        rejected: fleet.router().rejected(),
    };
    if let Some(v) = json {
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "router".into(),
                serde_json::json!({
                    "policy": router.policy,
                    "admission": router.admission,
                    "scrape_interval_s": router.scrape_interval_s,
                    "rejected": router.rejected,
                }),
            );
            let rows = rows
                .iter()
                .map(ReplicaRow::to_json)
                .collect::<Result<Vec<_>>>()?;
            o.insert("replicas".into(), rows.into());
        }
        return Ok(());
    }
    if format == Format::Json {
        return Ok(());
    }
    println!(
        "router {} (admission {}, scrapes every {} s): {} refused",
        router.policy, router.admission, router.scrape_interval_s, router.rejected
    );
    let w = rows
        .iter()
        .map(|r| r.report.profile.len() + 2)
        .max()
        .unwrap_or(0)
        .max(22);
    println!(
        "{:>7}  {:<w$}{:>9}{:>8}{:>10}{:>10}{:>10}{:>10}{:>11}{:>8}{:>8}",
        "replica",
        "profile",
        "requests",
        "errors",
        "ttft p50",
        "ttft p95",
        "tpot p50",
        "e2e p95",
        "tok/s",
        "hit %",
        "preempt"
    );
    for r in &rows {
        println!(
            "{:>7}  {:<w$}{:>9}{:>8}{:>10.4}{:>10.4}{:>10.4}{:>10.3}{:>11.1}{:>8.1}{:>8}",
            r.replica,
            r.report.profile,
            r.report.requests,
            r.report.errors,
            r.report.ttft.median,
            r.report.ttft.p95,
            r.report.tpot.median,
            r.report.e2e.p95,
            r.report.output_tok_s,
            r.prefix_cache_hit_rate * 100.0,
            r.preemptions
        );
    }
    Ok(())
}
