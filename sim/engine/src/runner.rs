//! A single simulated server on the virtual clock: a fleet of one replica behind a router that has
//! nowhere else to send anything, so one server and a fleet share one event loop
//! ([`crate::fleet`]) and a fleet of one gives a single server's records exactly.

use servesim_models::{Profile, ProfileError};

use crate::engine_core::Engine;
use crate::fleet::Fleet;
use crate::router::RouterConfig;
use crate::workload::{LevelPlan, LevelRun};

/// A simulated server (frontend + engine) and its clock, kept across levels like a real server.
#[derive(Debug)]
pub struct VirtualServer {
    fleet: Fleet,
}

impl VirtualServer {
    /// A freshly started server for `profile`; `seed` drives answer lengths.
    pub fn new(profile: &Profile, seed: u64) -> Result<VirtualServer, ProfileError> {
        Ok(VirtualServer {
            fleet: Fleet::new(std::slice::from_ref(profile), RouterConfig::default(), seed)?,
        })
    }

    /// The simulated clock (seconds since start-up).
    pub fn now(&self) -> f64 {
        self.fleet.now()
    }

    pub fn engine(&self) -> &Engine {
        self.fleet.replicas()[0].engine()
    }

    /// Treat the server as already warm: the profile's one-off warm-up is not paid.
    pub fn skip_warmup(&mut self) {
        self.fleet.skip_warmup();
    }

    /// Run one level to completion, starting now; returns every request's record.
    pub fn run_level(&mut self, plan: &LevelPlan) -> LevelRun {
        self.fleet.run_level(plan).level
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::RequestSpec;
    use crate::workload::{ClientGroup, Origin, RequestRecord};

    /// Two background workers of long answers under six short requests sent one at a time.
    fn loaded_plan() -> LevelPlan {
        let mut long = RequestSpec::chat("Tell me a long story.", 64);
        long.ignore_eos = true;
        LevelPlan {
            groups: vec![
                ClientGroup::background(0.0, 2, vec![long; 2]),
                ClientGroup::new(0.5, 1, vec![RequestSpec::chat("Hi.", 16); 6]),
            ],
            ..LevelPlan::default()
        }
    }

    fn run(profile: &Profile, plan: &LevelPlan) -> LevelRun {
        let mut server = VirtualServer::new(profile, 7).expect("server");
        server.skip_warmup();
        server.run_level(plan)
    }

    #[test]
    fn background_load_lasts_exactly_as_long_as_the_foreground() {
        let mut profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
        for serial in [false, true] {
            if serial {
                profile.engine.max_num_seqs = 1;
            }
            let run = run(&profile, &loaded_plan());
            let (bg, fg): (Vec<_>, Vec<_>) = run
                .records
                .iter()
                .partition(|r| r.origin == Origin::Group(0));
            assert_eq!(fg.len(), 6, "serial {serial}");
            assert!(run.records.iter().all(RequestRecord::ok));
            // It cycled past its list: six short requests outlast two long ones.
            assert!(
                bg.len() > 2,
                "serial {serial}: {} background requests",
                bg.len()
            );
            // Every short request met a long one in flight.
            for f in &fg {
                assert!(
                    bg.iter().any(|b| b.sent <= f.sent && b.end > f.sent),
                    "serial {serial}: short request sent at {} ran alone",
                    f.sent
                );
            }
            // None was sent once the foreground had ended.
            let fg_end = fg.iter().map(|r| r.end).fold(0.0, f64::max);
            assert!(bg.iter().all(|b| b.sent <= fg_end), "serial {serial}");
            if serial {
                // One sequence at a time: a short request's first token comes after every long one
                // sent before it has ended.
                for f in &fg {
                    let first = f.first_event.expect("first event");
                    for b in bg.iter().filter(|b| b.sent < f.sent) {
                        assert!(
                            first >= b.end,
                            "short {} first {first} < long end {}",
                            f.sent,
                            b.end
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn background_alone_runs_its_list_once() {
        let profile = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
        let plan = LevelPlan {
            groups: vec![ClientGroup::background(
                0.0,
                2,
                vec![RequestSpec::chat("Hi.", 16); 3],
            )],
            ..LevelPlan::default()
        };
        assert_eq!(run(&profile, &plan).records.len(), 3);
    }
}
