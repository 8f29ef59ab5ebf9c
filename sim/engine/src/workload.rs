//! What clients do and what they observe: the load of one drill level and the per-request records.
//!
//! These types are shared by every driver: the virtual-time runner here, and the HTTP load generator
//! in the validator, so that a drill's rows are computed from the same records whichever ran it.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::frontend::{Prompt, RequestSpec};

/// Closed-loop clients: `workers` of them share `requests`; each sends the next one as soon as its
/// previous one ends, starting `start` seconds into the level.
#[derive(Debug, Clone)]
pub struct ClientGroup {
    pub start: f64,
    pub workers: usize,
    pub requests: Vec<RequestSpec>,
    /// Background load: the workers cycle through `requests` for as long as any foreground
    /// request (another group's, or an arrival) is unsent or in flight, then send no more; what
    /// they have in flight runs to its end. Keeps a server loaded for exactly as long as the
    /// measured requests run, however fast it is. With no foreground requests it runs its list once.
    pub background: bool,
    /// Seconds a worker waits after an answer before it sends its next request (a user reading and
    /// typing). Honoured by the virtual-time runner and the HTTP load generator.
    pub think_s: f64,
}

impl ClientGroup {
    /// A foreground group: `workers` share `requests`, starting `start` seconds into the level.
    pub fn new(start: f64, workers: usize, requests: Vec<RequestSpec>) -> ClientGroup {
        ClientGroup {
            start,
            workers,
            requests,
            background: false,
            think_s: 0.0,
        }
    }

    /// A background group (see [`ClientGroup::background`]).
    pub fn background(start: f64, workers: usize, requests: Vec<RequestSpec>) -> ClientGroup {
        ClientGroup {
            background: true,
            ..ClientGroup::new(start, workers, requests)
        }
    }
}

impl LevelPlan {
    /// How many requests the foreground sends: every arrival and every foreground group's list.
    pub fn foreground_requests(&self) -> usize {
        self.arrivals.len()
            + self
                .groups
                .iter()
                .filter(|g| !g.background)
                .map(|g| g.requests.len())
                .sum::<usize>()
    }
}

/// One open-loop arrival: the request is sent at `at` seconds into the level, whatever else happens.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: f64,
    pub request: RequestSpec,
}

/// The load of one level: closed-loop groups and open-loop arrivals, run together.
#[derive(Debug, Clone, Default)]
pub struct LevelPlan {
    pub groups: Vec<ClientGroup>,
    pub arrivals: Vec<Arrival>,
    /// Keep every event's arrival time (for ITL); off for large runs.
    pub record_event_times: bool,
}

/// How a request failed, as the load generator classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorKind {
    /// The connection could not be made or was refused.
    Connect,
    /// No complete answer within the client timeout.
    Timeout,
    /// The server answered with an HTTP error status.
    Status { status: u16 },
    /// The stream ended or broke before `[DONE]`, or carried something unparseable.
    BrokenStream,
}

impl ErrorKind {
    /// The class's name as the records and summaries spell it: `connect`, `timeout`, `status` or
    /// `broken_stream`.
    pub fn class(&self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status { .. } => "status",
            ErrorKind::BrokenStream => "broken_stream",
        }
    }
}

/// A failed request: the class and the cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestError {
    #[serde(flatten)]
    pub kind: ErrorKind,
    pub message: String,
}

/// Which part of a level a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Closed-loop group number.
    Group(usize),
    /// Open-loop arrival.
    Arrival,
}

/// What a client saw of one request. Times are seconds from the level's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub origin: Origin,
    /// Index of the request within its group or the arrival list.
    pub index: usize,
    /// When the request was meant to be sent (open loop: the arrival time).
    pub scheduled: f64,
    /// When it was sent.
    pub sent: f64,
    /// When the client was free to send it: closed loop, when its worker became free; open loop,
    /// the arrival time or the moment a concurrency slot freed up, whichever came later. `sent −
    /// ready` is the client's own overhead; `None` where the driver has none (virtual time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<f64>,
    /// When the first event arrived.
    pub first_event: Option<f64>,
    /// When the request ended (`[DONE]`, the stream closing, or the error).
    pub end: f64,
    /// `data:` events other than `[DONE]`.
    pub events: u32,
    /// Arrival times of every event, when the plan asked for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_times: Vec<f64>,
    /// Token counts as the server reported them (usage), when known.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub error: Option<RequestError>,
}

impl RequestRecord {
    /// A record for a request sent at `sent`, nothing received yet.
    pub fn new(origin: Origin, index: usize, scheduled: f64, sent: f64) -> RequestRecord {
        RequestRecord {
            origin,
            index,
            scheduled,
            sent,
            ready: None,
            first_event: None,
            end: sent,
            events: 0,
            event_times: Vec::new(),
            prompt_tokens: None,
            completion_tokens: None,
            error: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Time to the first event, from sending.
    pub fn ttft(&self) -> Option<f64> {
        self.first_event.map(|t| t - self.sent)
    }

    /// End-to-end latency, from sending.
    pub fn e2e(&self) -> f64 {
        self.end - self.sent
    }

    /// How late the request was sent against its schedule (`sent − scheduled`).
    pub fn schedule_lag(&self) -> f64 {
        self.sent - self.scheduled
    }
}

/// The records of one level and its wall time.
#[derive(Debug, Clone, Default)]
pub struct LevelRun {
    pub records: Vec<RequestRecord>,
    /// From the level's start until its last request ended.
    pub wall: f64,
}

/// Multi-turn chat sessions: each user sends `turns` turns one after another, `think_s` apart; turn
/// `k`'s prompt is the conversation so far (the system prompt, the earlier messages and a stand-in
/// answer to each) and a new message, so each turn starts with the previous turn's prompt.
#[derive(Debug, Clone)]
pub struct MultiTurn {
    pub sessions: usize,
    pub turns: usize,
    /// Words of the system prompt, of each user message and of each stand-in answer.
    pub system_words: usize,
    pub message_words: usize,
    pub answer_words: usize,
    pub max_tokens: u32,
    pub think_s: f64,
}

/// Shared-prefix groups: `users` users behind one system prompt, each sending `requests` distinct
/// questions after it, `think_s` apart.
#[derive(Debug, Clone)]
pub struct SharedPrefix {
    pub users: usize,
    pub requests: usize,
    pub system_words: usize,
    pub message_words: usize,
    pub max_tokens: u32,
    pub think_s: f64,
}

/// `n` words of text seeded by `seed`: the same seed gives the same text, different ones differ
/// from their first word.
fn words(seed: u64, n: usize) -> String {
    const WORDS: [&str; 16] = [
        "kernel", "batch", "memory", "token", "latency", "cache", "queue", "tensor", "block",
        "prefill", "decode", "stream", "model", "request", "budget", "server",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = format!("#{seed}");
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(' ');
        out.push_str(WORDS[(x % 16) as usize]);
    }
    out
}

impl MultiTurn {
    /// The load: one closed-loop group of one worker per session.
    pub fn plan(&self) -> LevelPlan {
        let groups = (0..self.sessions)
            .map(|u| {
                let u = u as u64 + 1;
                let mut history: Vec<Arc<str>> = vec![Arc::from(words(u << 32, self.system_words))];
                let requests = (0..self.turns)
                    .map(|t| {
                        let t = t as u64 + 1;
                        if t > 1 {
                            history
                                .push(Arc::from(words(u << 32 | t << 16 | 1, self.answer_words)));
                        }
                        history.push(Arc::from(words(u << 32 | t << 16, self.message_words)));
                        RequestSpec {
                            prompt: Prompt::Chat(history.clone()),
                            max_tokens: self.max_tokens,
                            ignore_eos: false,
                            min_tokens: 0,
                        }
                    })
                    .collect();
                ClientGroup {
                    think_s: self.think_s,
                    ..ClientGroup::new(0.0, 1, requests)
                }
            })
            .collect();
        LevelPlan {
            groups,
            ..LevelPlan::default()
        }
    }
}

impl SharedPrefix {
    /// The load: one closed-loop group of `users` workers sharing the questions.
    pub fn plan(&self) -> LevelPlan {
        let system: Arc<str> = Arc::from(words(7, self.system_words));
        let requests = (0..self.users * self.requests)
            .map(|i| RequestSpec {
                prompt: Prompt::Chat(vec![
                    Arc::clone(&system),
                    Arc::from(words(1000 + i as u64, self.message_words)),
                ]),
                max_tokens: self.max_tokens,
                ignore_eos: false,
                min_tokens: 0,
            })
            .collect();
        LevelPlan {
            groups: vec![ClientGroup {
                think_s: self.think_s,
                ..ClientGroup::new(0.0, self.users, requests)
            }],
            ..LevelPlan::default()
        }
    }
}
