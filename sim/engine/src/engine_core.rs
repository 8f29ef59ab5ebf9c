//! The engine core: a synchronous state machine that is told the time.
//!
//! Drivers call [`Engine::add_request`] when a request reaches the engine and [`Engine::step`] when
//! the GPU is free; `step(now)` plans one iteration, prices it with the cost model and returns its
//! duration with the tokens it emits at `now + duration`. The core never reads a clock, so the same
//! code runs under the virtual-time runner and the real-time server.

use servesim_models::{CostModel, Iteration, IterationCost, PrefillChunk, Profile, ProfileError};

use crate::kv_cache::KvCache;
use crate::request::{EngineRequest, FinishReason, Phase, Request, RequestId};
use crate::scheduler::{Scheduled, Scheduler, SchedulerLimits};

/// Why the engine refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error(
        "This model's maximum context length is {max_model_len} tokens. However, you requested {total} tokens ({prompt} in the messages, {max_tokens} in the completion). Please reduce the length of the messages or completion."
    )]
    ContextLength {
        max_model_len: u32,
        total: u64,
        prompt: u32,
        max_tokens: u32,
    },
    #[error("max_tokens must be at least 1, got {0}")]
    MaxTokens(u32),
    #[error("the prompt is empty")]
    EmptyPrompt,
}

/// One token leaving the engine at the end of an iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Emission {
    pub id: RequestId,
    /// 1-based index of the token in the answer.
    pub index: u32,
    /// Set on the last token.
    pub finished: Option<Finished>,
}

/// A request's end and its engine-side timings (seconds, engine clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    /// The request's `max_tokens` limit.
    pub max_tokens: u32,
    pub generated: u32,
    /// Prompt tokens read from the prefix cache instead of computed, at first admission (vLLM's
    /// `num_cached_tokens`, the response's `prompt_tokens_details.cached_tokens`).
    pub cached_tokens: u32,
    pub arrival: f64,
    pub first_scheduled: f64,
    pub first_token: f64,
    pub end: f64,
    pub preemptions: u32,
}

/// What one iteration did.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    pub start: f64,
    pub duration: f64,
    pub cost: IterationCost,
    /// Tokens computed in this iteration (prefill + decode), vLLM's `iteration_tokens_total`.
    pub tokens: u32,
    pub prefill_tokens: u32,
    pub emissions: Vec<Emission>,
    pub preempted: Vec<RequestId>,
}

impl StepOutcome {
    /// When the iteration's tokens exist.
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// Counters and gauges, as the server's `/metrics` exposes them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
    pub kv_used_blocks: u64,
    pub preemptions_total: u64,
    pub steps_total: u64,
    pub prompt_tokens_total: u64,
    /// Of the prompt tokens, those read from the prefix cache (vLLM's `prompt_tokens_cached`).
    pub prompt_tokens_cached_total: u64,
    pub generation_tokens_total: u64,
    /// Prompt tokens looked up in the prefix cache by newly admitted requests, and found there.
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
}

/// The simulated serving engine.
#[derive(Debug)]
pub struct Engine {
    sched: Scheduler,
    cost: CostModel,
    max_model_len: u32,
    warmup_s: f64,
    /// Whether the next iteration is the first after start-up and pays the warm-up.
    cold: bool,
    next_id: RequestId,
    steps: u64,
    prompt_tokens_total: u64,
    prompt_tokens_cached_total: u64,
    generation_tokens_total: u64,
    plan: Vec<Scheduled>,
    prefills: Vec<PrefillChunk>,
    decodes: Vec<u32>,
    scratch: Vec<u32>,
}

impl Engine {
    /// An engine sized by `profile` (KV blocks, limits, cost model).
    pub fn new(profile: &Profile) -> Result<Engine, ProfileError> {
        let derived = profile.derive()?;
        let e = &profile.engine;
        let limits = SchedulerLimits {
            policy: e.policy,
            max_num_seqs: e.max_num_seqs as usize,
            token_budget: e.max_num_batched_tokens,
            chunked_prefill: e.chunked_prefill,
        };
        Ok(Engine {
            sched: Scheduler::new(
                limits,
                KvCache::new(derived.kv_blocks, e.block_size, e.enable_prefix_caching),
            ),
            cost: profile.cost_model(),
            max_model_len: derived.max_model_len,
            warmup_s: e.warmup_s,
            cold: true,
            next_id: 0,
            steps: 0,
            prompt_tokens_total: 0,
            prompt_tokens_cached_total: 0,
            generation_tokens_total: 0,
            plan: Vec::new(),
            prefills: Vec::new(),
            decodes: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Start as a server that has already warmed up (no one-off warm-up on the next iteration), or
    /// as a freshly started one.
    pub fn set_cold(&mut self, cold: bool) {
        self.cold = cold;
    }

    /// Longest prompt + output the engine accepts.
    pub fn max_model_len(&self) -> u32 {
        self.max_model_len
    }

    /// Check a request against the engine's limits without queueing it.
    pub fn validate(&self, req: &EngineRequest) -> Result<(), AdmissionError> {
        if req.prompt_tokens == 0 {
            return Err(AdmissionError::EmptyPrompt);
        }
        if req.max_tokens == 0 {
            return Err(AdmissionError::MaxTokens(0));
        }
        let total = u64::from(req.prompt_tokens) + u64::from(req.max_tokens);
        if total > u64::from(self.max_model_len) {
            return Err(AdmissionError::ContextLength {
                max_model_len: self.max_model_len,
                total,
                prompt: req.prompt_tokens,
                max_tokens: req.max_tokens,
            });
        }
        Ok(())
    }

    /// Queue a request that reached the engine at `now`.
    pub fn add_request(
        &mut self,
        req: EngineRequest,
        now: f64,
    ) -> Result<RequestId, AdmissionError> {
        self.validate(&req)?;
        let (target_tokens, finish) = req.outcome();
        let id = self.next_id;
        self.next_id += 1;
        let mut request = Request {
            id,
            prompt_tokens: req.prompt_tokens,
            max_tokens: req.max_tokens,
            target_tokens,
            finish,
            generated: 0,
            computed: 0,
            prompt_ids: req.prompt_ids,
            salt: id ^ 0x0a11_ce5a_17ed_0000,
            block_hashes: Vec::new(),
            cached_tokens: None,
            lease: self.sched.kv.lease(),
            phase: Phase::Waiting,
            arrival: now,
            first_scheduled: None,
            first_token: None,
            preemptions: 0,
        };
        self.sched.prepare(&mut request);
        self.sched.waiting.push_back(request);
        Ok(id)
    }

    /// Remove a request wherever it is; its KV blocks are freed at once. False if it is not here.
    pub fn abort(&mut self, id: RequestId) -> bool {
        if let Some(pos) = self.sched.running.iter().position(|r| r.id == id) {
            self.sched.running.remove(pos);
            return true;
        }
        if let Some(pos) = self.sched.waiting.iter().position(|r| r.id == id) {
            self.sched.waiting.remove(pos);
            return true;
        }
        false
    }

    /// Whether any request is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.sched.running.is_empty() || !self.sched.waiting.is_empty()
    }

    /// Run one iteration starting at `now`; `None` when there is nothing to do.
    pub fn step(&mut self, now: f64) -> Option<StepOutcome> {
        let mut out = StepOutcome {
            start: now,
            ..StepOutcome::default()
        };
        self.step_into(now, &mut out).then_some(out)
    }

    /// [`Engine::step`] reusing the caller's outcome buffers; false when idle.
    pub fn step_into(&mut self, now: f64, out: &mut StepOutcome) -> bool {
        out.start = now;
        out.emissions.clear();
        out.preempted = self.sched.schedule(&mut self.plan);
        if self.plan.is_empty() {
            out.duration = 0.0;
            out.tokens = 0;
            return false;
        }
        self.prefills.clear();
        self.decodes.clear();
        let mut tokens = 0;
        let mut prefill_tokens = 0;
        for s in &self.plan {
            let r = &self.sched.running[s.slot];
            tokens += s.tokens;
            if r.is_decoding() {
                self.decodes.push(r.computed + 1);
            } else {
                prefill_tokens += s.tokens;
                self.prefills.push(PrefillChunk {
                    tokens: s.tokens,
                    cached: r.computed,
                    samples: r.computed + s.tokens == r.known_tokens(),
                });
            }
        }
        let cost = self.cost.iteration(&Iteration {
            prefills: &self.prefills,
            decode_contexts: &self.decodes,
        });
        let mut duration = cost.total_s;
        if self.cold {
            duration += self.warmup_s;
            self.cold = false;
        }
        self.steps += 1;
        let end = now + duration;

        let mut finished_slots = false;
        let caching = self.sched.kv.caching();
        let block_size = self.sched.kv.block_size();
        for s in &self.plan {
            let r = &mut self.sched.running[s.slot];
            r.first_scheduled.get_or_insert(now);
            r.computed += s.tokens;
            if r.computed < r.known_tokens() {
                continue;
            }
            r.generated += 1;
            if caching {
                r.update_hashes(block_size, &mut self.scratch);
            }
            self.generation_tokens_total += 1;
            if r.generated == 1 {
                self.prompt_tokens_total += u64::from(r.prompt_tokens);
                self.prompt_tokens_cached_total += u64::from(r.cached_tokens.unwrap_or(0));
            }
            let first_token = *r.first_token.get_or_insert(end);
            let finished = (r.generated >= r.target_tokens).then(|| {
                finished_slots = true;
                Finished {
                    reason: r.finish,
                    prompt_tokens: r.prompt_tokens,
                    max_tokens: r.max_tokens,
                    generated: r.generated,
                    cached_tokens: r.cached_tokens.unwrap_or(0),
                    arrival: r.arrival,
                    first_scheduled: r.first_scheduled.unwrap_or(now),
                    first_token,
                    end,
                    preemptions: r.preemptions,
                }
            });
            out.emissions.push(Emission {
                id: r.id,
                index: r.generated,
                finished,
            });
        }
        if finished_slots {
            // Dropping a finished request returns its KV blocks.
            self.sched.running.retain(|r| r.generated < r.target_tokens);
        }
        out.duration = duration;
        out.cost = cost;
        out.tokens = tokens;
        out.prefill_tokens = prefill_tokens;
        true
    }

    /// Current gauges and counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.sched.running.len(),
            waiting: self.sched.waiting.len(),
            kv_usage: self.sched.kv.usage(),
            prefix_cache_queries: self.sched.prefix_cache.queries,
            prefix_cache_hits: self.sched.prefix_cache.hits,
            kv_used_blocks: self.sched.kv.used_blocks(),
            preemptions_total: self.sched.preemptions_total,
            steps_total: self.steps,
            prompt_tokens_total: self.prompt_tokens_total,
            prompt_tokens_cached_total: self.prompt_tokens_cached_total,
            generation_tokens_total: self.generation_tokens_total,
        }
    }

    /// Read access to the scheduler, for invariant checks.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }
}
