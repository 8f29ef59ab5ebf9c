//! The validator's integration tests, one binary: `silicon_tables` checks the silicon tables'
//! shared format, `telemetry_h200` replays a real H200 NVML recording through the validator.

mod silicon_tables;
mod telemetry_h200;
