//! How a router in front of a fleet of vLLM replicas picks one for each request, seeing only what a
//! real router sees: its own count of the requests it has in flight on each replica, each replica's
//! `/metrics` as of its last scrape (so a policy that reads them acts on stale numbers between
//! scrapes), and an index of the prompt blocks it has already sent to each replica (llm-d's
//! prefix-cache scorer keeps such an approximate index; it never asks the engines).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::kv_cache::BlockHash;

/// Weights of the scorers a weighted router adds up, in the manner of llm-d's scheduler: each
/// scorer gives every replica a score in [0, 1] and the highest weighted sum wins.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Weights {
    /// Share of the prompt's leading blocks the router has already sent to the replica.
    pub prefix: f64,
    /// Waiting queue (scraped `num_requests_waiting`), min-max normalised, shortest = 1.
    pub queue: f64,
    /// Free KV cache (1 − scraped `kv_cache_usage_perc`).
    pub kv: f64,
    /// The router's own in-flight count, min-max normalised, fewest = 1.
    pub requests: f64,
}

/// A routing policy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Policy {
    /// Each replica in turn.
    #[default]
    RoundRobin,
    /// Fewest requests in flight, as the router counts them (always current).
    LeastRequests,
    /// Lowest KV-cache usage as of the last scrape.
    LeastKv,
    /// Cache-aware routing as SGLang's router (SMG) does it: the replica that was sent the
    /// longest run of this prompt's leading blocks, if that run is over
    /// [`CACHE_THRESHOLD`] of the prompt and the fleet is not out of balance; otherwise the one
    /// with fewest requests in flight.
    PrefixAffinity,
    /// A weighted sum of scorers.
    Weighted(Weights),
}

/// Prefix affinity follows a match only when it covers more than this share of the prompt's blocks
/// (SMG's `cache-threshold` default, lightseekorg/smg docs/concepts/routing/cache-aware.md).
pub const CACHE_THRESHOLD: f64 = 0.3;
/// The fleet is out of balance when the busiest replica has this many more requests in flight than
/// the idlest (SMG's `balance_abs_threshold`, same source) ...
pub const BALANCE_ABS_THRESHOLD: f64 = 64.0;
/// ... and this many times as many (`balance_rel_threshold`).
pub const BALANCE_REL_THRESHOLD: f64 = 1.5;

/// A policy string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub fn new(message: String) -> ParseError {
        ParseError(message)
    }
}

impl FromStr for Policy {
    type Err = ParseError;

    /// `round-robin`, `least-requests`, `least-kv`, `prefix-affinity`, or
    /// `weighted:prefix=2,queue=1,kv=1[,requests=1]`.
    fn from_str(s: &str) -> Result<Policy, ParseError> {
        match s {
            "round-robin" => return Ok(Policy::RoundRobin),
            "least-requests" => return Ok(Policy::LeastRequests),
            "least-kv" => return Ok(Policy::LeastKv),
            "prefix-affinity" => return Ok(Policy::PrefixAffinity),
            _ => {}
        }
        let Some(spec) = s.strip_prefix("weighted:") else {
            return Err(ParseError(format!(
                "unknown router '{s}' (round-robin, least-requests, least-kv, prefix-affinity, \
                 weighted:prefix=W,queue=W,kv=W,requests=W)"
            )));
        };
        let mut w = Weights::default();
        for (key, value) in key_values(spec, "weighted router")? {
            let slot = match key {
                "prefix" => &mut w.prefix,
                "queue" => &mut w.queue,
                "kv" => &mut w.kv,
                "requests" => &mut w.requests,
                _ => {
                    return Err(ParseError(format!(
                        "unknown scorer '{key}' in '{s}' (prefix, queue, kv, requests)"
                    )));
                }
            };
            if value < 0.0 {
                return Err(ParseError(format!(
                    "scorer weight {key}={value} is negative"
                )));
            }
            *slot = value;
        }
        if w.prefix + w.queue + w.kv + w.requests <= 0.0 {
            return Err(ParseError(format!("'{s}' gives no scorer a weight")));
        }
        Ok(Policy::Weighted(w))
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::RoundRobin => f.write_str("round-robin"),
            Policy::LeastRequests => f.write_str("least-requests"),
            Policy::LeastKv => f.write_str("least-kv"),
            Policy::PrefixAffinity => f.write_str("prefix-affinity"),
            Policy::Weighted(w) => write!(
                f,
                "weighted:prefix={},queue={},kv={},requests={}",
                w.prefix, w.queue, w.kv, w.requests
            ),
        }
    }
}

/// `k=v,k=v` with numeric values.
fn key_values<'a>(spec: &'a str, what: &str) -> Result<Vec<(&'a str, f64)>, ParseError> {
    spec.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ParseError(format!("{what}: expected key=value, got '{kv}'")))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| ParseError(format!("{what}: '{v}' is not a number")))?;
            if !v.is_finite() {
                return Err(ParseError(format!("{what}: '{kv}' is not finite")));
            }
            Ok((k.trim(), v))
        })
        .collect()
}

/// What the router lets in before it picks a replica.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Admission {
    /// Every request.
    #[default]
    Unbounded,
    /// At most this many requests in flight through the router; more are refused with 429.
    Queue(usize),
    /// A token bucket: `rate` requests per second on average, bursts of up to `burst`.
    TokenBucket { rate: f64, burst: f64 },
}

impl FromStr for Admission {
    type Err = ParseError;

    /// `unbounded`, `queue:N`, or `token-bucket:rate=R,burst=B`.
    fn from_str(s: &str) -> Result<Admission, ParseError> {
        if s == "unbounded" {
            return Ok(Admission::Unbounded);
        }
        if let Some(n) = s.strip_prefix("queue:") {
            return match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Admission::Queue(n)),
                _ => Err(ParseError(format!(
                    "queue bound '{n}' must be an integer >= 1"
                ))),
            };
        }
        if let Some(spec) = s.strip_prefix("token-bucket:") {
            let (mut rate, mut burst) = (None, None);
            for (k, v) in key_values(spec, "token bucket")? {
                match k {
                    "rate" => rate = Some(v),
                    "burst" => burst = Some(v),
                    _ => return Err(ParseError(format!("token bucket: unknown key '{k}'"))),
                }
            }
            return match (rate, burst) {
                (Some(rate), Some(burst)) if rate > 0.0 && burst >= 1.0 => {
                    Ok(Admission::TokenBucket { rate, burst })
                }
                _ => Err(ParseError(
                    "token bucket needs rate > 0 and burst >= 1: token-bucket:rate=R,burst=B"
                        .into(),
                )),
            };
        }
        Err(ParseError(format!(
            "unknown admission '{s}' (unbounded, queue:N, token-bucket:rate=R,burst=B)"
        )))
    }
}

impl fmt::Display for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admission::Unbounded => f.write_str("unbounded"),
            Admission::Queue(n) => write!(f, "queue:{n}"),
            Admission::TokenBucket { rate, burst } => {
                write!(f, "token-bucket:rate={rate},burst={burst}")
            }
        }
    }
}

/// The router's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterConfig {
    pub policy: Policy,
    pub admission: Admission,
    /// Seconds between scrapes of the replicas' `/metrics`; 0 = the metrics are read fresh for
    /// every request (no real router can do that; a bound for comparisons).
    pub scrape_interval_s: f64,
    /// Prompt blocks the prefix index remembers per replica before it forgets the least recently
    /// sent (llm-d's prefix plugin defaults to 31,250).
    pub prefix_blocks_per_replica: usize,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            policy: Policy::RoundRobin,
            admission: Admission::Unbounded,
            scrape_interval_s: 0.1,
            prefix_blocks_per_replica: 31_250,
        }
    }
}

/// A replica's `/metrics` as the router last scraped them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scraped {
    pub running: usize,
    pub waiting: usize,
    /// KV-cache usage, 0..1.
    pub kv_usage: f64,
}

/// The prompt blocks sent to one replica, least recently sent forgotten first.
#[derive(Debug, Default)]
struct PrefixIndex {
    last_sent: HashMap<BlockHash, u64>,
}

impl PrefixIndex {
    /// Leading blocks of `blocks` this replica was sent.
    fn matched(&self, blocks: &[BlockHash]) -> usize {
        blocks
            .iter()
            .take_while(|b| self.last_sent.contains_key(b))
            .count()
    }

    fn insert(&mut self, blocks: &[BlockHash], stamp: u64, capacity: usize) {
        for &b in blocks {
            self.last_sent.insert(b, stamp);
        }
        if self.last_sent.len() > capacity {
            // Forget down to 90 % at once, so the cost of finding the cut is spread over many sends.
            let keep = capacity - capacity / 10;
            let mut stamps: Vec<u64> = self.last_sent.values().copied().collect();
            let cut = stamps.len() - keep;
            let (_, &mut oldest_kept, _) = stamps.select_nth_unstable(cut);
            self.last_sent.retain(|_, s| *s >= oldest_kept);
        }
    }
}

/// The router's state: counts, last scrape, prefix index, admission bucket.
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    in_flight: Vec<usize>,
    scraped: Vec<Scraped>,
    next_scrape: f64,
    prefix: Vec<PrefixIndex>,
    sends: u64,
    next_rr: usize,
    rng: Xoshiro256PlusPlus,
    bucket: f64,
    bucket_at: f64,
    scores: Vec<f64>,
    rejected: u64,
    /// Replicas taken out of rotation (a real router's outlier ejection: a connection to them
    /// failed); the virtual fleet never ejects.
    ejected: Vec<bool>,
}

impl Router {
    /// A router over `replicas` replicas; `seed` breaks ties.
    pub fn new(config: RouterConfig, replicas: usize, seed: u64) -> Router {
        let burst = match config.admission {
            Admission::TokenBucket { burst, .. } => burst,
            _ => 0.0,
        };
        Router {
            config,
            in_flight: vec![0; replicas],
            scraped: vec![Scraped::default(); replicas],
            next_scrape: 0.0,
            prefix: (0..replicas).map(|_| PrefixIndex::default()).collect(),
            sends: 0,
            next_rr: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5011_7e50_0000_0001),
            bucket: burst,
            bucket_at: 0.0,
            scores: vec![0.0; replicas],
            rejected: 0,
            ejected: vec![false; replicas],
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Whether the policy reads the replicas' metrics (so scrapes must be taken).
    pub fn reads_metrics(&self) -> bool {
        match self.config.policy {
            Policy::LeastKv => true,
            Policy::Weighted(w) => w.queue > 0.0 || w.kv > 0.0,
            _ => false,
        }
    }

    /// Whether the policy needs the prompt's block hashes.
    pub fn reads_prompts(&self) -> bool {
        match self.config.policy {
            Policy::PrefixAffinity => true,
            Policy::Weighted(w) => w.prefix > 0.0,
            _ => false,
        }
    }

    /// Whether a scrape falls due at `now` (the caller then [`record`](Self::record)s every
    /// replica's metrics as they stand). Scrapes tick every interval from time 0; a stretch with
    /// no events between ticks leaves nothing new to read, so only the latest tick is taken.
    pub fn scrape_due(&mut self, now: f64) -> bool {
        if !self.reads_metrics() {
            return false;
        }
        let every = self.config.scrape_interval_s;
        if every <= 0.0 {
            return true;
        }
        if now < self.next_scrape {
            return false;
        }
        self.next_scrape = ((now / every).floor() + 1.0) * every;
        true
    }

    /// Replica `k`'s metrics as of this scrape.
    pub fn record(&mut self, k: usize, metrics: Scraped) {
        self.scraped[k] = metrics;
    }

    /// Whether admission lets a request in at `now` (a refused one counts as rejected).
    pub fn admit(&mut self, now: f64) -> bool {
        let ok = match self.config.admission {
            Admission::Unbounded => true,
            Admission::Queue(n) => self.in_flight.iter().sum::<usize>() < n,
            Admission::TokenBucket { rate, burst } => {
                self.bucket = (self.bucket + (now - self.bucket_at).max(0.0) * rate).min(burst);
                self.bucket_at = now;
                if self.bucket >= 1.0 {
                    self.bucket -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        if !ok {
            self.rejected += 1;
        }
        ok
    }

    /// Requests refused by admission so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Each replica's metrics as of the last scrape the router recorded.
    pub fn scraped(&self) -> &[Scraped] {
        &self.scraped
    }

    /// Requests in flight on each replica, as the router counts them.
    pub fn in_flight(&self) -> &[usize] {
        &self.in_flight
    }

    /// Pick the replica for a request whose prompt has these full-block hashes, and count it as
    /// sent there.
    pub fn route(&mut self, blocks: &[BlockHash]) -> usize {
        let k = self.pick(blocks);
        self.in_flight[k] += 1;
        self.sends += 1;
        if self.reads_prompts() && !blocks.is_empty() {
            let cap = self.config.prefix_blocks_per_replica.max(1);
            self.prefix[k].insert(blocks, self.sends, cap);
        }
        k
    }

    /// A request sent to replica `k` has ended.
    pub fn done(&mut self, k: usize) {
        self.in_flight[k] = self.in_flight[k].saturating_sub(1);
    }

    /// Take replica `k` out of rotation: no request goes there while another replica is in it.
    pub fn eject(&mut self, k: usize) {
        self.ejected[k] = true;
    }

    /// Put replica `k` back into rotation.
    pub fn restore(&mut self, k: usize) {
        self.ejected[k] = false;
    }

    /// Which replicas are out of rotation.
    pub fn ejected(&self) -> &[bool] {
        &self.ejected
    }

    /// Whether replica `k` may be picked: it is in rotation, or every replica is out (then all
    /// are tried rather than none).
    fn eligible(&self, k: usize) -> bool {
        !self.ejected[k] || self.ejected.iter().all(|&e| e)
    }

    fn pick(&mut self, blocks: &[BlockHash]) -> usize {
        let n = self.in_flight.len();
        if n == 1 {
            return 0;
        }
        match self.config.policy {
            Policy::RoundRobin => {
                // The next replica in turn that is in rotation.
                let mut k = self.next_rr % n;
                for _ in 0..n {
                    if self.eligible(k) {
                        break;
                    }
                    k = (k + 1) % n;
                }
                self.next_rr = (k + 1) % n;
                k
            }
            Policy::LeastRequests => {
                for k in 0..n {
                    self.scores[k] = -(self.in_flight[k] as f64);
                }
                self.best()
            }
            Policy::LeastKv => {
                for k in 0..n {
                    self.scores[k] = -self.scraped[k].kv_usage;
                }
                self.best()
            }
            Policy::PrefixAffinity => {
                let (lo, hi) = min_max(self.in_flight.iter().map(|&c| c as f64));
                let imbalanced = hi - lo > BALANCE_ABS_THRESHOLD && hi > BALANCE_REL_THRESHOLD * lo;
                let mut best_match = 0;
                for k in 0..n {
                    let matched = self.prefix[k].matched(blocks);
                    best_match = best_match.max(matched);
                    // Matched blocks first; among equals, fewer in flight (in-flight counts are
                    // far below 2^20, so the fraction never outweighs one block).
                    self.scores[k] =
                        matched as f64 - self.in_flight[k] as f64 / f64::from(1u32 << 20);
                }
                let ratio = best_match as f64 / blocks.len().max(1) as f64;
                if imbalanced || ratio <= CACHE_THRESHOLD {
                    for k in 0..n {
                        self.scores[k] = -(self.in_flight[k] as f64);
                    }
                }
                self.best()
            }
            Policy::Weighted(w) => {
                let total = blocks.len().max(1) as f64;
                let waiting = min_max(self.scraped.iter().map(|s| s.waiting as f64));
                let flying = min_max(self.in_flight.iter().map(|&c| c as f64));
                for k in 0..n {
                    let s = &self.scraped[k];
                    self.scores[k] = w.prefix * self.prefix[k].matched(blocks) as f64 / total
                        + w.queue * fewest_best(s.waiting as f64, waiting)
                        + w.kv * (1.0 - s.kv_usage.clamp(0.0, 1.0))
                        + w.requests * fewest_best(self.in_flight[k] as f64, flying);
                }
                self.best()
            }
        }
    }

    /// The highest score among replicas in rotation; ties broken at random (llm-d's max-score picker does the same), so
    /// equal replicas share the load rather than the first taking it all.
    fn best(&mut self) -> usize {
        if self.ejected.iter().any(|&e| e) {
            for k in 0..self.scores.len() {
                if !self.eligible(k) {
                    self.scores[k] = f64::NEG_INFINITY;
                }
            }
        }
        let top = self
            .scores
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let ties = self.scores.iter().filter(|&&s| s == top).count();
        let mut pick = if ties > 1 {
            self.rng.random_range(0..ties)
        } else {
            0
        };
        for (k, &s) in self.scores.iter().enumerate() {
            if s == top {
                if pick == 0 {
                    return k;
                }
                pick -= 1;
            }
        }
        0
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// llm-d's queue scorer: `(max − v) / (max − min)`, and 1 for everyone when all are equal.
fn fewest_best(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo { (hi - v) / (hi - lo) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(policy: &str, n: usize) -> Router {
        let config = RouterConfig {
            policy: policy.parse().expect("policy"),
            ..RouterConfig::default()
        };
        Router::new(config, n, 1)
    }

    #[test]
    fn policies_and_admissions_parse_and_print_back() {
        for s in [
            "round-robin",
            "least-requests",
            "least-kv",
            "prefix-affinity",
            "weighted:prefix=2,queue=1,kv=1,requests=0",
        ] {
            assert_eq!(s.parse::<Policy>().expect(s).to_string(), s);
        }
        for s in ["unbounded", "queue:8", "token-bucket:rate=5,burst=2"] {
            assert_eq!(s.parse::<Admission>().expect(s).to_string(), s);
        }
        for bad in [
            "random",
            "weighted:",
            "weighted:prefix=x",
            "weighted:foo=1",
            "weighted:kv=0",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
        for bad in [
            "queue:0",
            "queue:-1",
            "token-bucket:rate=1",
            "token-bucket:rate=0,burst=1",
        ] {
            assert!(bad.parse::<Admission>().is_err(), "{bad}");
        }
    }

    #[test]
    fn no_policy_picks_an_ejected_replica_while_another_is_in_rotation() {
        for policy in [
            "round-robin",
            "least-requests",
            "least-kv",
            "prefix-affinity",
            "weighted:prefix=1,queue=1,kv=1,requests=1",
        ] {
            let mut r = router(policy, 3);
            // Replicas 0 and 2 look loaded; replica 1 idle and empty.
            r.record(
                0,
                Scraped {
                    running: 9,
                    waiting: 9,
                    kv_usage: 0.9,
                },
            );
            r.record(
                2,
                Scraped {
                    running: 9,
                    waiting: 9,
                    kv_usage: 0.9,
                },
            );
            r.eject(1);
            let picks: Vec<usize> = (0..12).map(|_| r.route(&[7, 8])).collect();
            assert!(!picks.contains(&1), "{policy}: {picks:?}");
            // Back in rotation, the idle replica is picked again (a fresh prompt, so that
            // prefix-affinity balances by load).
            r.restore(1);
            let picks: Vec<usize> = (0..12).map(|_| r.route(&[])).collect();
            assert!(picks.contains(&1), "{policy} after restore: {picks:?}");
            // With every replica out, requests still go somewhere rather than nowhere.
            for k in 0..3 {
                r.eject(k);
            }
            assert!(r.route(&[]) < 3);
        }
    }

    #[test]
    fn round_robin_cycles_and_least_requests_fills_the_emptiest() {
        let mut r = router("round-robin", 3);
        let picks: Vec<usize> = (0..6).map(|_| r.route(&[])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);

        let mut r = router("least-requests", 3);
        for _ in 0..6 {
            r.route(&[]);
        }
        assert_eq!(r.in_flight(), [2, 2, 2]);
        r.done(1);
        r.done(1);
        assert_eq!(r.route(&[]), 1);
        assert_eq!(r.route(&[]), 1);
    }

    #[test]
    fn prefix_affinity_follows_the_prompt_and_forgets_the_oldest() {
        let mut r = router("prefix-affinity", 4);
        let a = [11, 12, 13];
        let b = [21, 22];
        let ka = r.route(&a);
        let kb = r.route(&b);
        // The same prompt, and one extending it, go where it went, whatever the load.
        for _ in 0..5 {
            assert_eq!(r.route(&a), ka);
            assert_eq!(r.route(&[11, 12, 13, 14]), ka);
            assert_eq!(r.route(&b), kb);
        }
        // A prompt nobody has seen goes to the least loaded.
        let fresh = r.route(&[99]);
        assert!(fresh != ka && fresh != kb);

        let mut index = PrefixIndex::default();
        for i in 0..100u64 {
            index.insert(&[i], i, 50);
        }
        assert!(index.last_sent.len() <= 50);
        assert_eq!(index.matched(&[99]), 1);
        assert_eq!(index.matched(&[0]), 0);
    }

    #[test]
    fn scrapes_tick_on_the_interval_and_admission_bounds_hold() {
        let mut r = router("least-kv", 2);
        assert!(r.scrape_due(0.0));
        assert!(!r.scrape_due(0.05));
        assert!(r.scrape_due(0.1));
        assert!(r.scrape_due(0.35));
        assert!(!r.scrape_due(0.39));
        assert!(r.scrape_due(0.4));
        assert!(!router("round-robin", 2).scrape_due(0.0));

        let config = RouterConfig {
            admission: Admission::Queue(2),
            ..RouterConfig::default()
        };
        let mut q = Router::new(config, 2, 0);
        assert!(q.admit(0.0));
        q.route(&[]);
        assert!(q.admit(0.0));
        q.route(&[]);
        assert!(!q.admit(0.0));
        q.done(0);
        assert!(q.admit(0.0));
        assert_eq!(q.rejected(), 1);

        let config = RouterConfig {
            admission: Admission::TokenBucket {
                rate: 2.0,
                burst: 2.0,
            },
            ..RouterConfig::default()
        };
        let mut t = Router::new(config, 1, 0);
        let admitted = (0..10).filter(|_| t.admit(0.0)).count();
        assert_eq!(admitted, 2, "a burst of two");
        // Two more tokens a second after.
        let admitted = (0..10).filter(|_| t.admit(1.0)).count();
        assert_eq!(admitted, 2);
    }

    #[test]
    fn weighted_scores_combine_as_llm_d_does() {
        let mut r = router("weighted:queue=1,kv=1", 3);
        r.record(
            0,
            Scraped {
                running: 4,
                waiting: 6,
                kv_usage: 0.9,
            },
        );
        r.record(
            1,
            Scraped {
                running: 4,
                waiting: 0,
                kv_usage: 0.2,
            },
        );
        r.record(
            2,
            Scraped {
                running: 4,
                waiting: 3,
                kv_usage: 0.1,
            },
        );
        // Scores: 0 + 0.1, 1 + 0.8, 0.5 + 0.9.
        assert_eq!(r.route(&[]), 1);
        let mut r = router("weighted:prefix=3,queue=1", 2);
        r.record(
            0,
            Scraped {
                running: 0,
                waiting: 0,
                kv_usage: 0.0,
            },
        );
        r.record(
            1,
            Scraped {
                running: 0,
                waiting: 5,
                kv_usage: 0.0,
            },
        );
        let k = r.route(&[1, 2, 3]);
        // Replica k now holds the prefix: 3 + queue beats the other's queue alone, even when it
        // has the longer queue.
        r.record(
            k,
            Scraped {
                running: 0,
                waiting: 5,
                kv_usage: 0.0,
            },
        );
        r.record(
            1 - k,
            Scraped {
                running: 0,
                waiting: 0,
                kv_usage: 0.0,
            },
        );
        assert_eq!(r.route(&[1, 2, 3]), k);
    }
}
