//! Workload files: a TOML file of client classes, each with its arrival process (open or closed
//! loop), prompt and answer length distributions, an optional shared system prompt, optional
//! multi-turn sessions with think time, and its own SLO; built into one [`LevelPlan`] with a side
//! table that says which class each request belongs to, so results can be reported per class.
//!
//! Prompts are token ids ([`Prompt::Ids`]), built deterministically: a shared prefix is the same
//! ids in every request of its group, and each turn of a session starts with the previous turn's
//! prompt, so the prefix cache hits exactly as it would on the real conversation. The format is
//! documented in `docs/workloads.md`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::frontend::{Prompt, RequestSpec};
use crate::synthetic::{ArrivalProcess, Gaps, TokenDist};
use crate::workload::{Arrival, ClientGroup, LevelPlan, Origin, RequestRecord};

/// Most requests one class may plan (a typo in `rate` or `duration_s` should fail, not eat memory).
const MAX_CLASS_REQUESTS: usize = 10_000_000;

/// What went wrong reading a workload file; every message names the file, and the class or key.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("reading workload file {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The TOML did not parse, or a key is unknown or of the wrong type (toml names the key and
    /// its line).
    #[error("workload file {file}: {message}")]
    Syntax { file: String, message: String },
    /// A class that parsed but makes no sense (no rate, a duplicate name, ...).
    #[error("workload file {file}: {message}")]
    Invalid { file: String, message: String },
}

// ---- The file as written --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    duration_s: Option<f64>,
    #[serde(rename = "class", default)]
    classes: Vec<RawClass>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: String,
    #[serde(deserialize_with = "de_from_str")]
    arrival: ClassArrival,
    rate: Option<f64>,
    requests: Option<usize>,
    duration_s: Option<f64>,
    #[serde(default)]
    start_s: f64,
    #[serde(deserialize_with = "de_dist")]
    input_tokens: TokenDist,
    #[serde(deserialize_with = "de_dist")]
    output_tokens: TokenDist,
    #[serde(default = "yes")]
    ignore_eos: bool,
    think_s: Option<f64>,
    shared_prefix: Option<SharedPrefixSpec>,
    multi_turn: Option<MultiTurnSpec>,
    slo: Option<BTreeMap<String, f64>>,
}

fn yes() -> bool {
    true
}

/// `arrival`: an open-loop process or `closed:users=N`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClassArrival {
    Open(ArrivalProcess),
    Closed { users: usize },
}

impl FromStr for ClassArrival {
    type Err = String;

    fn from_str(s: &str) -> Result<ClassArrival, String> {
        if let Some(users) = s.strip_prefix("closed:users=") {
            return match users.trim().parse::<usize>() {
                Ok(users) if users > 0 => Ok(ClassArrival::Closed { users }),
                _ => Err(format!("'{s}': users must be a count >= 1")),
            };
        }
        s.parse::<ArrivalProcess>()
            .map(ClassArrival::Open)
            .map_err(|e| format!("{e}, or closed:users=N"))
    }
}

fn de_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<ClassArrival, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(de::Error::custom)
}

/// A token distribution written as a number (`512`) or a string (`"lognormal:mean=512,sd=256"`).
fn de_dist<'de, D: Deserializer<'de>>(d: D) -> Result<TokenDist, D::Error> {
    struct DistVisitor;
    impl Visitor<'_> for DistVisitor {
        type Value = TokenDist;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a token count or a distribution such as \"lognormal:mean=512,sd=256\"")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenDist, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenDist, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<TokenDist, E> {
            v.parse()
                .map_err(|e: crate::router::ParseError| E::custom(e))
        }
    }
    d.deserialize_any(DistVisitor)
}

// ---- The validated workload -----------------------------------------------------------------

/// Requests in a group share a system prompt of `tokens` tokens; every class naming the same
/// group shares it (a shorter one is a prefix of a longer one).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefixSpec {
    pub group: String,
    pub tokens: u32,
}

/// Sessions of `turns` turns; a user waits `think_s` after each answer before the next turn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiTurnSpec {
    pub turns: usize,
    #[serde(default)]
    pub think_s: f64,
}

/// How a class's requests are sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLoad {
    /// Open loop: requests (multi-turn: sessions) start by `arrival` at `rate` requests per second,
    /// `requests` of them or for `duration_s` seconds.
    Open {
        arrival: ArrivalProcess,
        rate: f64,
        limit: Limit,
    },
    /// Closed loop: `users` users share `requests` requests, each sending its next one `think_s`
    /// after its previous answer.
    Closed {
        users: usize,
        requests: usize,
        think_s: f64,
    },
}

/// How long an open-loop class runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Requests(usize),
    DurationS(f64),
}

/// The latency an SLO term bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloMetric {
    Ttft,
    Tpot,
    E2e,
}

/// The statistic of that latency an SLO term bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SloStat {
    Mean,
    P50,
    P90,
    P95,
    P99,
}

/// One SLO term: `metric`'s `stat` must be at most `target` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloTerm {
    pub metric: SloMetric,
    pub stat: SloStat,
    pub target: f64,
}

impl SloTerm {
    /// The term's key as the file writes it, e.g. `ttft_p95`.
    pub fn key(&self) -> String {
        let metric = match self.metric {
            SloMetric::Ttft => "ttft",
            SloMetric::Tpot => "tpot",
            SloMetric::E2e => "e2e",
        };
        let stat = match self.stat {
            SloStat::Mean => "mean",
            SloStat::P50 => "p50",
            SloStat::P90 => "p90",
            SloStat::P95 => "p95",
            SloStat::P99 => "p99",
        };
        format!("{metric}_{stat}")
    }

    /// Parse `ttft_p95 = 1.0`-style keys (a workload file's `[class.slo]`, the planner's `--slo`).
    pub fn parse(key: &str, target: f64) -> Result<SloTerm, String> {
        let bad = || {
            format!(
                "unknown SLO term '{key}' (ttft, tpot or e2e, then _mean, _p50, _p90, _p95 or \
                 _p99, e.g. ttft_p95)"
            )
        };
        let (metric, stat) = key.split_once('_').ok_or_else(bad)?;
        let metric = match metric {
            "ttft" => SloMetric::Ttft,
            "tpot" => SloMetric::Tpot,
            "e2e" => SloMetric::E2e,
            _ => return Err(bad()),
        };
        let stat = match stat {
            "mean" => SloStat::Mean,
            "p50" => SloStat::P50,
            "p90" => SloStat::P90,
            "p95" => SloStat::P95,
            "p99" => SloStat::P99,
            _ => return Err(bad()),
        };
        if !(target.is_finite() && target > 0.0) {
            return Err(format!(
                "SLO {key} = {target}: a target must be > 0 seconds"
            ));
        }
        Ok(SloTerm {
            metric,
            stat,
            target,
        })
    }
}

/// One client class, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientClass {
    pub name: String,
    pub load: ClassLoad,
    /// Seconds into the run at which the class starts sending.
    pub start_s: f64,
    /// Tokens of each new user message (after the shared prefix and the conversation so far).
    pub input_tokens: TokenDist,
    /// Tokens of each answer: exact with `ignore_eos`, else `max_tokens` and the profile's length
    /// model decides.
    pub output_tokens: TokenDist,
    pub ignore_eos: bool,
    pub shared_prefix: Option<SharedPrefixSpec>,
    pub multi_turn: Option<MultiTurnSpec>,
    pub slo: Vec<SloTerm>,
}

/// A workload file's classes, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub classes: Vec<ClientClass>,
}

impl Workload {
    /// Read and check the workload file at `path`.
    pub fn load(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        Workload::parse(&text, &file)
    }

    /// Parse and check a workload file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Workload, WorkloadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| WorkloadError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| WorkloadError::Invalid {
            file: file.to_string(),
            message,
        };
        if raw.classes.is_empty() {
            return Err(invalid(
                "no [[class]] tables: a workload needs at least one".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut classes = Vec::with_capacity(raw.classes.len());
        for c in raw.classes {
            if c.name.trim().is_empty() {
                return Err(invalid("a class has an empty name".into()));
            }
            if !names.insert(c.name.clone()) {
                return Err(invalid(format!("two classes are named '{}'", c.name)));
            }
            let name = c.name.clone();
            classes.push(
                check_class(c, raw.duration_s)
                    .map_err(|m| invalid(format!("class '{name}': {m}")))?,
            );
        }
        Ok(Workload { classes })
    }

    /// The load of every class, as one level; `seed` seeds the length draws and arrival times.
    pub fn plan(&self, seed: u64) -> WorkloadPlan {
        let mut out = WorkloadPlan::default();
        for (k, class) in self.classes.iter().enumerate() {
            class_plan(class, k, seed, &mut out);
        }
        out
    }
}

fn positive(what: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{what} = {v} must be > 0"))
    }
}

fn non_negative(what: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{what} = {v} must be >= 0"))
    }
}

fn check_class(c: RawClass, file_duration: Option<f64>) -> Result<ClientClass, String> {
    let start_s = non_negative("start_s", c.start_s)?;
    if let Some(m) = &c.multi_turn {
        if m.turns == 0 {
            return Err("multi_turn.turns must be >= 1".into());
        }
        non_negative("multi_turn.think_s", m.think_s)?;
    }
    if let Some(p) = &c.shared_prefix
        && (p.tokens == 0 || p.group.trim().is_empty())
    {
        return Err("shared_prefix needs a group name and tokens >= 1".into());
    }
    if c.requests == Some(0) {
        return Err("requests must be >= 1".into());
    }
    let load = match c.arrival {
        ClassArrival::Open(arrival) => {
            let rate = positive(
                "rate",
                c.rate
                    .ok_or("an open-loop class needs rate (requests per second)")?,
            )?;
            if c.think_s.is_some() {
                return Err(
                    "think_s applies to closed-loop classes; open-loop sessions take \
                     multi_turn.think_s"
                        .into(),
                );
            }
            let limit = match (c.requests, c.duration_s.or(file_duration)) {
                (Some(n), _) => Limit::Requests(n),
                (None, Some(d)) => Limit::DurationS(positive("duration_s", d)?),
                (None, None) => {
                    return Err(
                        "an open-loop class needs requests or duration_s (its own or the file's)"
                            .into(),
                    );
                }
            };
            if let Limit::DurationS(d) = limit
                && rate * d > MAX_CLASS_REQUESTS as f64
            {
                return Err(format!(
                    "rate {rate} × duration_s {d} plans more than {MAX_CLASS_REQUESTS} requests"
                ));
            }
            ClassLoad::Open {
                arrival,
                rate,
                limit,
            }
        }
        ClassArrival::Closed { users } => {
            if c.rate.is_some() {
                return Err("rate applies to open-loop classes; a closed loop's rate is set by its users and the server".into());
            }
            if c.duration_s.is_some() {
                return Err(
                    "closed-loop classes run a number of requests: give requests, not duration_s"
                        .into(),
                );
            }
            let requests = c
                .requests
                .ok_or("a closed-loop class needs requests (its total, shared by its users)")?;
            let think_s = non_negative("think_s", c.think_s.unwrap_or(0.0))?;
            if c.multi_turn.is_some() && c.think_s.is_some() {
                return Err(
                    "a multi-turn class thinks for multi_turn.think_s; drop think_s".into(),
                );
            }
            ClassLoad::Closed {
                users,
                requests,
                think_s,
            }
        }
    };
    if let ClassLoad::Open {
        limit: Limit::Requests(n),
        ..
    }
    | ClassLoad::Closed { requests: n, .. } = load
        && n > MAX_CLASS_REQUESTS
    {
        return Err(format!(
            "{n} requests: at most {MAX_CLASS_REQUESTS} per class"
        ));
    }
    let slo = c
        .slo
        .unwrap_or_default()
        .iter()
        .map(|(k, &v)| SloTerm::parse(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientClass {
        name: c.name,
        load,
        start_s,
        input_tokens: c.input_tokens,
        output_tokens: c.output_tokens,
        ignore_eos: c.ignore_eos,
        shared_prefix: c.shared_prefix,
        multi_turn: c.multi_turn,
        slo,
    })
}

// ---- The plan ------------------------------------------------------------------------------

/// A workload's level and which class each of its groups and arrivals belongs to.
#[derive(Debug, Clone, Default)]
pub struct WorkloadPlan {
    pub plan: LevelPlan,
    group_class: Vec<usize>,
    arrival_class: Vec<usize>,
}

impl WorkloadPlan {
    /// The class (index into [`Workload::classes`]) of a record of this plan's level.
    pub fn class_of(&self, record: &RequestRecord) -> usize {
        match record.origin {
            Origin::Group(g) => self.group_class.get(g).copied().unwrap_or(0),
            Origin::Arrival => self.arrival_class.get(record.index).copied().unwrap_or(0),
        }
    }
}

/// FNV-1a of a name: seeds that stay put when classes are added or reordered.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: the `i`-th word of the stream `key`.
fn mix(key: u64, i: u64) -> u64 {
    let mut z = key.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` deterministic token ids of the stream `key`, in 1000..33000 (inside every catalogue
/// model's vocabulary, clear of the special tokens at its ends).
fn ids(key: u64, n: u32, out: &mut Vec<u32>) {
    out.extend((0..u64::from(n)).map(|i| 1000 + (mix(key, i) % 32_000) as u32));
}

/// Builds one class's sessions.
struct Sessions<'a> {
    class: &'a ClientClass,
    key: u64,
    prefix: Vec<u32>,
    rng: Xoshiro256PlusPlus,
    next: u64,
}

impl Sessions<'_> {
    /// The next session: `turns` requests, turn k's prompt = the shared prefix, the earlier
    /// messages and a stand-in answer of each (as long as that turn's answer), then a new message.
    fn session(&mut self, turns: usize) -> Vec<RequestSpec> {
        let s = self.next;
        self.next += 1;
        let mut conversation = self.prefix.clone();
        let mut answer = 0;
        (0..turns as u64)
            .map(|t| {
                let input = self.class.input_tokens.sample(&mut self.rng);
                let output = self.class.output_tokens.sample(&mut self.rng);
                if t > 0 {
                    ids(mix(self.key ^ s, t << 1 | 1), answer, &mut conversation);
                }
                ids(mix(self.key ^ s, t << 1), input, &mut conversation);
                answer = output;
                RequestSpec {
                    prompt: Prompt::Ids(Arc::from(conversation.as_slice())),
                    max_tokens: output,
                    ignore_eos: self.class.ignore_eos,
                    min_tokens: 0,
                }
            })
            .collect()
    }
}

fn class_plan(class: &ClientClass, k: usize, seed: u64, out: &mut WorkloadPlan) {
    let key = name_hash(&class.name) ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut prefix = Vec::new();
    if let Some(p) = &class.shared_prefix {
        // Keyed by the group's name alone, so every class in the group shares it.
        ids(
            name_hash(&p.group) ^ 0x5eed_0f9e_0f1c,
            p.tokens,
            &mut prefix,
        );
    }
    let mut sessions = Sessions {
        class,
        key,
        prefix,
        rng: Xoshiro256PlusPlus::seed_from_u64(key),
        next: 0,
    };
    let turns = class.multi_turn.as_ref().map_or(1, |m| m.turns);
    let think_s = class.multi_turn.as_ref().map_or(0.0, |m| m.think_s);
    match class.load {
        ClassLoad::Open {
            arrival,
            rate,
            limit,
        } => {
            // Sessions start at rate / turns, so the class sends `rate` requests per second.
            let gaps = Gaps::new(arrival, rate / turns as f64);
            let mut times_rng = Xoshiro256PlusPlus::seed_from_u64(key ^ 0x0a11_1ba1);
            let mut at = 0.0;
            let mut started = 0;
            loop {
                if started > 0 {
                    at += gaps.sample(&mut times_rng);
                }
                let more = match limit {
                    Limit::Requests(n) => started * turns < n,
                    Limit::DurationS(d) => at < d,
                };
                if !more {
                    break;
                }
                started += 1;
                let requests = sessions.session(turns);
                if class.multi_turn.is_some() {
                    out.group_class.push(k);
                    out.plan.groups.push(ClientGroup {
                        think_s,
                        ..ClientGroup::new(class.start_s + at, 1, requests)
                    });
                } else {
                    for request in requests {
                        out.arrival_class.push(k);
                        out.plan.arrivals.push(Arrival {
                            at: class.start_s + at,
                            request,
                        });
                    }
                }
            }
        }
        ClassLoad::Closed {
            users,
            requests,
            think_s: class_think,
        } => {
            let n_sessions = requests.div_ceil(turns);
            if class.multi_turn.is_some() {
                // A user runs its sessions one after another; a session's turns stay in order
                // because each user is a group of one worker.
                let active = users.min(n_sessions);
                let mut per_user: Vec<Vec<RequestSpec>> = vec![Vec::new(); active];
                for s in 0..n_sessions {
                    let session = sessions.session(turns);
                    per_user[s % active].extend(session);
                }
                for requests in per_user {
                    out.group_class.push(k);
                    out.plan.groups.push(ClientGroup {
                        think_s,
                        ..ClientGroup::new(class.start_s, 1, requests)
                    });
                }
            } else {
                let requests = (0..n_sessions).flat_map(|_| sessions.session(1)).collect();
                out.group_class.push(k);
                out.plan.groups.push(ClientGroup {
                    think_s: class_think,
                    ..ClientGroup::new(class.start_s, users, requests)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
duration_s = 60

[[class]]
name = "chat"
arrival = "poisson"
rate = 4.0
input_tokens = "lognormal:mean=200,sd=80"
output_tokens = 64
shared_prefix = { group = "sys-a", tokens = 300 }
multi_turn = { turns = 4, think_s = 2.0 }
slo = { ttft_p95 = 1.0, tpot_p50 = 0.05 }

[[class]]
name = "rag"
arrival = "constant"
rate = 2.0
requests = 50
input_tokens = "uniform:min=1000,max=2000"
output_tokens = "normal:mean=100,sd=10"
shared_prefix = { group = "sys-a", tokens = 500 }
slo = { e2e_p99 = 30 }

[[class]]
name = "batch"
arrival = "closed:users=3"
requests = 20
think_s = 0.5
input_tokens = 100
output_tokens = 10
"#;

    fn good() -> Workload {
        Workload::parse(GOOD, "good.toml").expect("parses")
    }

    #[test]
    fn a_good_file_parses_into_checked_classes() {
        let w = good();
        assert_eq!(w.classes.len(), 3);
        let chat = &w.classes[0];
        assert_eq!(
            chat.load,
            ClassLoad::Open {
                arrival: ArrivalProcess::Poisson,
                rate: 4.0,
                limit: Limit::DurationS(60.0)
            }
        );
        assert_eq!(chat.output_tokens, TokenDist::Fixed(64));
        assert!(chat.ignore_eos);
        let keys: Vec<String> = chat.slo.iter().map(SloTerm::key).collect();
        assert_eq!(keys, ["tpot_p50", "ttft_p95"]);
        assert_eq!(
            w.classes[1].load,
            ClassLoad::Open {
                arrival: ArrivalProcess::Constant,
                rate: 2.0,
                limit: Limit::Requests(50)
            }
        );
        assert_eq!(
            w.classes[2].load,
            ClassLoad::Closed {
                users: 3,
                requests: 20,
                think_s: 0.5
            }
        );
    }

    fn err(text: &str) -> String {
        Workload::parse(text, "w.toml")
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_file_and_key() {
        let unknown = err(&GOOD.replace("think_s = 0.5", "think_s = 0.5\nthinks = 1"));
        assert!(
            unknown.contains("w.toml") && unknown.contains("thinks"),
            "{unknown}"
        );
        let nested = err(&GOOD.replace("tokens = 300 }", "tokens = 300, size = 2 }"));
        assert!(nested.contains("size"), "{nested}");
        let dist = err(&GOOD.replace("lognormal:mean=200,sd=80", "pareto:a=2"));
        assert!(
            dist.contains("pareto") && dist.contains("input_tokens"),
            "{dist}"
        );
        let slo = err(&GOOD.replace("e2e_p99", "e2e_p42"));
        assert!(
            slo.contains("class 'rag'") && slo.contains("e2e_p42"),
            "{slo}"
        );
        let arrival = err(&GOOD.replace("closed:users=3", "closed:users=0"));
        assert!(arrival.contains("users"), "{arrival}");
        let top = err(&GOOD.replace("duration_s = 60", "duration = 60"));
        assert!(top.contains("duration"), "{top}");
        let dup = err(&GOOD.replace("\"rag\"", "\"chat\""));
        assert!(dup.contains("two classes"), "{dup}");
        let no_rate = err(&GOOD.replace("rate = 2.0\n", ""));
        assert!(
            no_rate.contains("class 'rag'") && no_rate.contains("rate"),
            "{no_rate}"
        );
        let no_limit = err(&GOOD.replace("duration_s = 60\n", ""));
        assert!(
            no_limit.contains("class 'chat'") && no_limit.contains("duration_s"),
            "{no_limit}"
        );
        assert!(err("").contains("no [[class]]"));
    }

    fn prompt(spec: &RequestSpec) -> &[u32] {
        match &spec.prompt {
            Prompt::Ids(ids) => ids,
            other => panic!("not ids: {other:?}"),
        }
    }

    #[test]
    fn the_plan_keeps_rates_counts_and_classes() {
        let w = good();
        let p = w.plan(7);
        // chat: poisson sessions at 4/4 = 1 per second for 60 s; rag: 50 arrivals at 2/s;
        // batch: one group of three users sharing 20 requests.
        let chat_groups: Vec<_> = p
            .plan
            .groups
            .iter()
            .zip(&p.group_class)
            .filter(|(_, c)| **c == 0)
            .collect();
        let sessions = chat_groups.len() as f64;
        assert!(
            (40.0..=80.0).contains(&sessions),
            "{sessions} sessions in 60 s at 1/s"
        );
        assert!(chat_groups.iter().all(|(g, _)| g.requests.len() == 4
            && g.workers == 1
            && g.think_s == 2.0
            && g.start < 60.0));
        assert_eq!(p.plan.arrivals.len(), 50);
        assert!(p.arrival_class.iter().all(|&c| c == 1));
        let last = p.plan.arrivals.last().map(|a| a.at).unwrap_or_default();
        assert!(
            (last - 49.0 / 2.0).abs() < 1e-9,
            "constant at 2/s: last at {last}"
        );
        let batch: Vec<_> = p
            .plan
            .groups
            .iter()
            .zip(&p.group_class)
            .filter(|(_, c)| **c == 2)
            .collect();
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].0.workers, batch[0].0.requests.len()), (3, 20));
        assert!(
            batch[0]
                .0
                .requests
                .iter()
                .all(|r| prompt(r).len() == 100 && r.max_tokens == 10)
        );
        // Records map back to their class.
        let rec = RequestRecord::new(Origin::Arrival, 3, 0.0, 0.0);
        assert_eq!(p.class_of(&rec), 1);
        let g = p
            .group_class
            .iter()
            .position(|&c| c == 2)
            .expect("batch group");
        assert_eq!(
            p.class_of(&RequestRecord::new(Origin::Group(g), 0, 0.0, 0.0)),
            2
        );
        // The same seed plans the same load; another seed another.
        let again = w.plan(7);
        assert_eq!(
            prompt(&again.plan.arrivals[5].request),
            prompt(&p.plan.arrivals[5].request)
        );
        let other = w.plan(8);
        assert_ne!(
            prompt(&other.plan.arrivals[5].request),
            prompt(&p.plan.arrivals[5].request)
        );
    }

    #[test]
    fn shared_prefixes_are_equal_across_a_group_and_turns_extend() {
        let p = good().plan(1);
        let chat = &p.plan.groups[0];
        let rag = &p.plan.arrivals;
        // One group, two classes: the 300-token prefix is the 500-token one's start.
        let sys = &prompt(&rag[0].request)[..500];
        for a in rag {
            assert_eq!(&prompt(&a.request)[..500], sys);
        }
        assert_eq!(&prompt(&chat.requests[0])[..300], &sys[..300]);
        // After the prefix, requests differ.
        assert_ne!(
            prompt(&rag[0].request)[500..510],
            prompt(&rag[1].request)[500..510]
        );
        // Each turn's prompt starts with the previous turn's, plus an answer and a new message.
        for w in chat.requests.windows(2) {
            let (a, b) = (prompt(&w[0]), prompt(&w[1]));
            assert!(b.len() > a.len() + w[0].max_tokens as usize);
            assert_eq!(&b[..a.len()], a);
        }
        // Two sessions of the class share the system prompt and nothing after it.
        let other = &p.plan.groups[1];
        assert_eq!(&prompt(&other.requests[0])[..300], &sys[..300]);
        assert_ne!(
            prompt(&other.requests[0])[300..310],
            prompt(&chat.requests[0])[300..310]
        );
    }
    #[test]
    fn closed_loop_users_run_their_sessions_in_order() {
        let text = r#"
[[class]]
name = "agents"
arrival = "closed:users=2"
requests = 12
input_tokens = 30
output_tokens = 5
multi_turn = { turns = 3, think_s = 1.5 }
"#;
        let p = Workload::parse(text, "c.toml").expect("parses").plan(0);
        // Four sessions of three turns, two per user; each user is one worker, so turns stay in order.
        assert_eq!(p.plan.groups.len(), 2);
        for g in &p.plan.groups {
            assert_eq!((g.workers, g.requests.len(), g.think_s), (1, 6, 1.5));
            let r: Vec<&[u32]> = g.requests.iter().map(prompt).collect();
            for k in [1, 2, 4, 5] {
                assert_eq!(
                    &r[k][..r[k - 1].len()],
                    r[k - 1],
                    "turn {k} extends the last"
                );
            }
            assert_ne!(r[3][..30], r[2][..30], "a new session starts afresh");
            assert_eq!(r[3].len(), 30);
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A one-class file from its parts.
    fn file(arrival: &str, count: usize, turns: Option<usize>, prefix: u32, start: f64) -> String {
        let load = if arrival.starts_with("closed") {
            format!("requests = {count}")
        } else {
            format!("rate = 3.0\nrequests = {count}")
        };
        let turns = turns.map_or(String::new(), |t| {
            format!("multi_turn = {{ turns = {t}, think_s = 0.5 }}")
        });
        let prefix = if prefix > 0 {
            format!("shared_prefix = {{ group = \"g\", tokens = {prefix} }}")
        } else {
            String::new()
        };
        format!(
            "[[class]]\nname = \"c\"\narrival = \"{arrival}\"\n{load}\nstart_s = {start}\n\
             input_tokens = \"uniform:min=1,max=50\"\noutput_tokens = \"lognormal:mean=20,sd=10\"\n\
             {turns}\n{prefix}\n"
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the class, the plan sends whole sessions covering `requests` (at most one
        /// session over), every request starts with the shared prefix, no request starts before
        /// `start_s`, arrivals are in time order, and every group and arrival maps to the class.
        #[test]
        fn plans_send_whole_sessions_after_the_prefix(
            arrival in prop::sample::select(vec!["poisson", "constant", "gamma:cv=3", "closed:users=1", "closed:users=4"]),
            count in 1usize..60,
            turns in prop::option::of(1usize..6),
            prefix in prop::sample::select(vec![0u32, 1, 16, 100]),
            start in 0.0f64..5.0,
            seed in any::<u64>(),
        ) {
            let w = Workload::parse(&file(arrival, count, turns, prefix, start), "p.toml")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let p = w.plan(seed);
            let t = turns.unwrap_or(1);
            let sent = p.plan.foreground_requests();
            prop_assert_eq!(sent, count.div_ceil(t) * t);
            prop_assert_eq!(p.group_class.len(), p.plan.groups.len());
            prop_assert_eq!(p.arrival_class.len(), p.plan.arrivals.len());
            prop_assert!(p.plan.arrivals.windows(2).all(|a| a[0].at <= a[1].at));
            prop_assert!(p.plan.arrivals.iter().all(|a| a.at >= start));
            prop_assert!(p.plan.groups.iter().all(|g| g.start >= start && !g.background));
            let mut shared: Option<Vec<u32>> = None;
            let all = p.plan.arrivals.iter().map(|a| &a.request)
                .chain(p.plan.groups.iter().flat_map(|g| &g.requests));
            for r in all {
                let Prompt::Ids(ids) = &r.prompt else { return Err(TestCaseError::fail("not ids")) };
                prop_assert!(ids.len() > prefix as usize);
                let head = ids[..prefix as usize].to_vec();
                prop_assert_eq!(shared.get_or_insert_with(|| head.clone()), &head);
                prop_assert!(r.ignore_eos && r.max_tokens >= 1);
            }
        }
    }
}
