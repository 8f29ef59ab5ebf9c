//! End-to-end tests of the CLI: profiles, simulate, demo.

mod support;
