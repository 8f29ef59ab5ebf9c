//! The vLLM-V1-like scheduler: which requests run in the next iteration and how many tokens each.
//!
//! Running requests come first, in order, each taking what it needs from the token budget (one token
//! for a decode, a chunk for an unfinished prompt); when the KV cache cannot hold a running request's
//! next tokens the most recently admitted running request is preempted (its blocks freed, its tokens
//! to be recomputed) until it can. Then, if nothing was preempted, waiting requests are admitted
//! first-come first-served while a sequence slot, budget and blocks remain. `static` admits a whole
//! batch only when the previous one has drained; `serial` is static with one sequence.
//!
//! With prefix caching on, a request being admitted (new, or preempted and back) first adopts its
//! longest run of cached full blocks, capped so that at least its last token is computed (vLLM's
//! `get_computed_blocks`: at most `num_tokens - 1` tokens, in whole blocks); those tokens count as
//! computed. Each allocation then commits the blocks that the scheduled tokens fill to the cache
//! (vLLM's `allocate_slots` → `cache_blocks`). The lookup is counted in the prefix-cache stats when
//! the request is admitted, as vLLM records it.

use std::collections::VecDeque;

use servesim_models::SchedulingPolicy;

use crate::kv_cache::KvCache;
use crate::request::{Phase, Request, RequestId};

/// Limits the scheduler enforces.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerLimits {
    pub policy: SchedulingPolicy,
    pub max_num_seqs: usize,
    pub token_budget: u32,
    pub chunked_prefill: bool,
}

/// One request's share of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Index into the running list.
    pub slot: usize,
    pub tokens: u32,
}

/// The scheduler's state: queues and the KV pool.
#[derive(Debug)]
pub struct Scheduler {
    pub limits: SchedulerLimits,
    pub kv: KvCache,
    pub waiting: VecDeque<Request>,
    pub running: Vec<Request>,
    pub preemptions_total: u64,
    /// Tokens whose KV was thrown away by preemption and must be computed again.
    pub discarded_tokens_total: u64,
    /// Prefix-cache lookups of new requests: tokens looked up and tokens found (vLLM's
    /// `prefix_cache_queries` and `prefix_cache_hits`).
    pub prefix_cache: PrefixCacheStats,
    /// The same for requests coming back from preemption (vLLM keeps them apart).
    pub preempted_prefix_cache: PrefixCacheStats,
    hit: Vec<u32>,
    scratch: Vec<u32>,
}

/// Prefix-cache lookups counted in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    pub requests: u64,
    pub queries: u64,
    pub hits: u64,
}

impl Scheduler {
    pub fn new(limits: SchedulerLimits, kv: KvCache) -> Scheduler {
        Scheduler {
            limits,
            kv,
            waiting: VecDeque::new(),
            running: Vec::new(),
            preemptions_total: 0,
            discarded_tokens_total: 0,
            prefix_cache: PrefixCacheStats::default(),
            preempted_prefix_cache: PrefixCacheStats::default(),
            hit: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Prepare a request for the queue: hash its prompt's full blocks when caching is on.
    pub fn prepare(&mut self, req: &mut Request) {
        if self.kv.caching() {
            req.update_hashes(self.kv.block_size(), &mut self.scratch);
        }
    }

    fn max_running(&self) -> usize {
        match self.limits.policy {
            SchedulingPolicy::Serial => 1,
            _ => self.limits.max_num_seqs,
        }
    }

    /// Plan the next iteration into `plan` (cleared first); returns the ids preempted while planning.
    pub fn schedule(&mut self, plan: &mut Vec<Scheduled>) -> Vec<RequestId> {
        plan.clear();
        let mut preempted = Vec::new();
        let mut budget = self.limits.token_budget;

        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let want = self.running[i].pending_tokens();
            let tokens = want.min(budget);
            loop {
                let r = &mut self.running[i];
                let target = u64::from(r.computed + tokens);
                if self.kv.grow(&mut r.lease, &[], target) {
                    self.kv.commit_upto(&mut r.lease, &r.block_hashes, target);
                    break;
                }
                // Preempt the lowest-priority running request: the last one (FCFS order).
                let Some(mut victim) = self.running.pop() else {
                    break;
                };
                if self.kv.caching() {
                    // Its computed blocks stay in the cache, free, for its own return.
                    victim.hash_all(self.kv.block_size(), &mut self.scratch);
                    self.kv.commit_upto(
                        &mut victim.lease,
                        &victim.block_hashes,
                        u64::from(victim.computed),
                    );
                }
                victim.lease = self.kv.lease();
                self.discarded_tokens_total += u64::from(victim.computed);
                victim.computed = 0;
                victim.phase = Phase::Waiting;
                victim.preemptions += 1;
                self.preemptions_total += 1;
                preempted.push(victim.id);
                self.waiting.push_front(victim);
                if self.running.len() <= i {
                    break;
                }
            }
            if i >= self.running.len() {
                break;
            }
            plan.push(Scheduled { slot: i, tokens });
            budget -= tokens;
            i += 1;
        }

        if !preempted.is_empty() {
            return preempted;
        }
        let batch_admission = matches!(
            self.limits.policy,
            SchedulingPolicy::Static | SchedulingPolicy::Serial
        );
        if batch_admission && !self.running.is_empty() {
            return preempted;
        }
        while let Some(front) = self.waiting.front() {
            if self.running.len() >= self.max_running() {
                break;
            }
            // Cached leading blocks, at most all but the last token's (only waiting requests are
            // looked up, and they hold no blocks).
            let known = front.known_tokens();
            let max_hit = ((known - 1) / self.kv.block_size()) as usize;
            self.kv.lookup(&front.block_hashes, max_hit, &mut self.hit);
            let hit_tokens = self.hit.len() as u32 * self.kv.block_size();
            let want = known - front.computed - hit_tokens;
            // A static batch is formed whole; its prompts are then computed within the budget.
            let tokens = if batch_admission && budget == 0 {
                0
            } else {
                want.min(budget)
            };
            if !batch_admission && (tokens == 0 || (!self.limits.chunked_prefill && want > budget))
            {
                break;
            }
            let Some(mut req) = self.waiting.pop_front() else {
                break;
            };
            let target = u64::from(req.computed + hit_tokens + tokens.max(1));
            if !self.kv.grow(&mut req.lease, &self.hit, target) {
                self.waiting.push_front(req);
                break;
            }
            req.computed += hit_tokens;
            self.kv.commit_upto(
                &mut req.lease,
                &req.block_hashes,
                u64::from(req.computed + tokens),
            );
            if self.kv.caching() {
                let stats = if req.preemptions > 0 {
                    &mut self.preempted_prefix_cache
                } else {
                    &mut self.prefix_cache
                };
                stats.requests += 1;
                stats.queries += u64::from(known);
                stats.hits += u64::from(hit_tokens);
            }
            req.cached_tokens.get_or_insert(hit_tokens);
            req.phase = Phase::Running;
            self.running.push(req);
            if tokens > 0 {
                plan.push(Scheduled {
                    slot: self.running.len() - 1,
                    tokens,
                });
                budget -= tokens;
            }
        }
        preempted
    }
}
