//! The validator: load generator, telemetry, comparison and claims ledger (see issues 4 and 5).
