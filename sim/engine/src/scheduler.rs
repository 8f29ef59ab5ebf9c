//! The vLLM-V1-like scheduler: which requests run in the next iteration and how many tokens each.
//!
//! Running requests come first, in order, each taking what it needs from the token budget (one token
//! for a decode, a chunk for an unfinished prompt); when the KV cache cannot hold a running request's
//! next tokens the most recently admitted running request is preempted (its blocks freed, its tokens
//! to be recomputed) until it can. Then, if nothing was preempted, waiting requests are admitted
//! first-come first-served while a sequence slot, budget and blocks remain. `static` admits a whole
//! batch only when the previous one has drained; `serial` is static with one sequence.

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
                if self.kv.grow(&mut r.lease, target) {
                    break;
                }
                // Preempt the lowest-priority running request: the last one (FCFS order).
                let Some(mut victim) = self.running.pop() else {
                    break;
                };
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
            let want = front.pending_tokens();
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
            if !self
                .kv
                .grow(&mut req.lease, u64::from(req.computed + tokens.max(1)))
            {
                self.waiting.push_front(req);
                break;
            }
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
