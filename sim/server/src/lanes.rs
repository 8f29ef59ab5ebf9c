//! Lanes: single-threaded tokio runtimes, one per core, that share the server's connections.
//!
//! Why not one multi-threaded runtime: every engine iteration hands ~256 tokens to their streams at
//! one instant. On a multi-threaded runtime the whole burst lands on the worker that woke first and
//! the others join only after they are unparked and have stolen work, 0.1–0.9 ms later on a 2-core
//! machine (`perf sched timehist`); the tokens handed over last wait for it. With lanes, each
//! connection lives on one lane, the engine hands each lane its own share of the burst, and every
//! lane starts on its share at once.

use std::cell::Cell;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The lane this thread drives (0 off the lanes: a single-runtime server has one lane).
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The lane the calling thread drives: where a request's tokens should be dispatched.
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// Running lanes; dropping them stops their threads (after their tasks are dropped).
#[derive(Debug)]
pub struct Lanes {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Lanes {
    /// Start `n` lanes (at least one), each a current-thread runtime with I/O and timers on its own
    /// OS thread named `name-N`.
    pub fn start(n: usize, name: &str) -> std::io::Result<Lanes> {
        let mut lanes = Lanes {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for lane in 0..n.max(1) {
            let (handle_tx, handle_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let blocking_name = format!("{name}-{lane}-blocking");
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{lane}"))
                .spawn(move || {
                    LANE.with(|l| l.set(lane));
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .thread_name(blocking_name)
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    // Drives the lane's tasks until told to stop (or the `Lanes` is gone).
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            lanes.threads.push(thread);
            lanes.stops.push(stop_tx);
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("a lane thread died while starting"))??;
            lanes.handles.push(handle);
        }
        Ok(lanes)
    }

    /// The lanes' runtimes, in lane order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_knows_its_index_and_runs_tasks() {
        let lanes = Lanes::start(3, "lane-test").expect("lanes");
        assert_eq!(lanes.handles().len(), 3);
        for (i, h) in lanes.handles().iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            h.spawn(async move {
                let _ = tx.send(current());
            });
            assert_eq!(rx.recv().expect("the lane ran the task"), i);
        }
        assert_eq!(current(), 0, "off the lanes");
        drop(lanes);
    }
}
