//! servesim's end-to-end tests, one binary for the whole crate: one link instead of eight, and the
//! shared helpers (`support`) compiled once. Each module is the former test file of the same name;
//! run one with a filter, e.g. `cargo test --test it server::` or `cargo test --test it cli::`.
//!
//! `cli`: profiles, simulate, demo, through the real binary; `fleet`: simulate's fleets and
//! open-loop load; `server`: the fake vLLM over HTTP; `serve_fleet`: `serve --replicas` and its
//! router; `http1`: HTTP/1.1 on raw sockets; `reliability_server`: bad requests, aborted streams, flood,
//! soak; `bench` and `reliability_bench`: the load generator against scripted and real servers;
//! `validate`: the validator end to end; `workloads`: workload files of client classes;
//! `inference_perf`: inference-perf configs and their report files; `plan`: the capacity
//! planner, its shards and outputs; `peer_async_openai`: the
//! async-openai crate against a peer (ignored without `SERVESIM_PEER_URL`).

mod bench;
mod cli;
mod fleet;
mod http1;
mod inference_perf;
mod peer_async_openai;
mod plan;
mod reliability_bench;
mod reliability_server;
mod serve_fleet;
mod server;
mod support;
mod validate;
mod workloads;
