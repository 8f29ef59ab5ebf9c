//! What a request's stream receives from the engine: shared by the driver that sends it and the
//! stream writers that deliver it, so neither imports the other for it.

use std::time::Instant;

use servesim_sim::engine_core::{AdmissionError, Finished};

/// What a request's stream receives from the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenEvent {
    /// Token `index` (1-based), due at the client at `due`; `finished` on the last one.
    Token {
        index: u32,
        finished: Option<Finished>,
        due: Instant,
    },
    /// The engine refused the request.
    Rejected(AdmissionError),
}
