//! The real-time target: drills over HTTP against any OpenAI-compatible server.
//!
//! [`sse`] splits a streamed body into `data:` lines whatever the read boundaries; [`client`] sends
//! one request and measures it; [`HttpTarget`] runs a level's load (`run`) on its own
//! tokio runtime and implements [`Target`], so [`crate::run_drill`] drives it like the simulator.

pub mod client;
mod run;
pub mod sse;

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use servesim_sim::{LevelPlan, LevelRun};
use tokio::sync::{mpsc, watch};

pub use client::{ChatClient, ClientConfig, ClientError, LevelClock};

use crate::load::{CappedTarget, StopHandle};
use crate::records::RecordLog;
use crate::suite::{Target, TargetError};
use run::{LevelSender, PreparedPlan, run_plan, specs};

/// Message of the [`TargetError`] returned once a run has been stopped.
pub const INTERRUPTED: &str = "interrupted";

/// Why an HTTP target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot start the client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// An OpenAI-compatible server reached over HTTP.
pub struct HttpTarget {
    runtime: tokio::runtime::Runtime,
    client: Arc<ChatClient>,
    stop: StopHandle,
    keep_event_times: bool,
    log: Option<Arc<RecordLog>>,
    progress: bool,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("keep_event_times", &self.keep_event_times)
            .field("logging", &self.log.is_some())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// A target for `config` whose requests run on `threads` runtime threads (0 = one per core).
    pub fn new(config: ClientConfig, threads: usize) -> Result<HttpTarget, HttpError> {
        let client = ChatClient::new(config)?;
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            builder.worker_threads(threads);
        }
        let runtime = builder.enable_all().build()?;
        let (tx, _) = watch::channel(false);
        Ok(HttpTarget {
            runtime,
            client: Arc::new(client),
            stop: StopHandle(Arc::new(tx)),
            keep_event_times: true,
            log: None,
            progress: false,
        })
    }

    /// Write every record to `log` as soon as its request finishes.
    pub fn with_record_log(mut self, log: Arc<RecordLog>) -> HttpTarget {
        self.log = Some(log);
        self
    }

    /// Show a progress bar on stderr during each level (only when stderr is a terminal).
    pub fn with_progress(mut self, on: bool) -> HttpTarget {
        self.progress = on && std::io::stderr().is_terminal();
        self
    }

    /// Keep every event's arrival time (ITL); on by default.
    pub fn with_event_times(mut self, on: bool) -> HttpTarget {
        self.keep_event_times = on;
        self
    }

    /// The handle that stops this target's run.
    pub fn stopper(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stop the run on Ctrl-C (SIGINT) instead of dying, so what finished can be reported. The
    /// handler is in place when this returns.
    pub fn stop_on_ctrl_c(&self) -> std::io::Result<()> {
        let stop = self.stop.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut sigint = self
                .runtime
                .block_on(async { signal(SignalKind::interrupt()) })?;
            self.runtime.spawn(async move {
                if sigint.recv().await.is_some() {
                    stop.stop();
                }
            });
        }
        #[cfg(not(unix))]
        self.runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.stop();
            }
        });
        Ok(())
    }

    /// The client requests go through.
    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// The server's Prometheus text (`GET /metrics`), `None` when it serves none.
    pub fn scrape_metrics(&self) -> Option<String> {
        self.runtime.block_on(self.client.metrics())
    }

    fn prepare(&self, plan: &LevelPlan) -> Result<PreparedPlan, ClientError> {
        let groups = plan
            .groups
            .iter()
            .map(|g| g.requests.iter().map(|s| self.client.prepare(s)).collect())
            .collect::<Result<Vec<Vec<_>>, _>>()?;
        let arrivals = plan
            .arrivals
            .iter()
            .map(|a| self.client.prepare(&a.request))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreparedPlan { groups, arrivals })
    }

    fn progress_bar(&self, total: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} requests  {elapsed_precise} (eta {eta})",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb
    }
}

impl Target for HttpTarget {
    fn run_level(&mut self, plan: &LevelPlan) -> Result<LevelRun, TargetError> {
        self.run_level_capped(plan, None)
    }
}

impl CappedTarget for HttpTarget {
    fn run_level_capped(
        &mut self,
        plan: &LevelPlan,
        max_in_flight: Option<usize>,
    ) -> Result<LevelRun, TargetError> {
        if self.stop.is_stopped() {
            return Err(TargetError(INTERRUPTED.into()));
        }
        let prepared = self.prepare(plan).map_err(|e| TargetError(e.to_string()))?;
        let pb = self.progress_bar(specs(plan).count());
        let log = self.log.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shared = LevelSender {
            client: Arc::clone(&self.client),
            clock: LevelClock::start(),
            keep_times: self.keep_event_times || plan.record_event_times,
            stop: self.stop.0.subscribe(),
            done: tx,
        };
        let mut on_record = |r: &servesim_sim::RequestRecord| {
            pb.inc(1);
            if let Some(log) = &log {
                log.write(r);
            }
        };
        let run = self.runtime.block_on(run_plan(
            shared,
            plan,
            max_in_flight,
            prepared,
            &mut rx,
            &mut on_record,
        ));
        pb.finish_and_clear();
        Ok(run)
    }

    fn stop_handle(&self) -> Option<StopHandle> {
        Some(self.stop.clone())
    }
}

/// The value of Prometheus counter `name` in `text`: its samples summed over every label set
/// (`name` or `name{...}` lines), or `None` when there is no such sample.
pub fn prometheus_counter(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = match rest.chars().next() {
            Some('{') => match rest.find('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            },
            Some(' ' | '\t') => rest,
            _ => continue,
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        *total.get_or_insert(0.0) += value;
    }
    total
}

#[cfg(test)]
mod prometheus_tests {
    use super::prometheus_counter;

    #[test]
    fn counters_sum_over_label_sets_and_skip_lookalikes() {
        let text = "# TYPE vllm:prefix_cache_hits_total counter\n\
                    vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"a\"} 3\n\
                    vllm:prefix_cache_hits_total{engine=\"1\",model_name=\"a\"} 4.5\n\
                    vllm:prefix_cache_hits_totally 100\n\
                    vllm:prefix_cache_hits_created 9\n";
        assert_eq!(
            prometheus_counter(text, "vllm:prefix_cache_hits_total"),
            Some(7.5)
        );
        assert_eq!(
            prometheus_counter("x 1\n", "vllm:prefix_cache_hits_total"),
            None
        );
        assert_eq!(
            prometheus_counter("plain 2 1700000000\n", "plain"),
            Some(2.0)
        );
    }
}
