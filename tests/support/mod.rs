//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Path of the `servesim` binary cargo built for these tests.
pub fn servesim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_servesim")
}

/// Run `servesim ARGS` to completion.
pub fn servesim(args: &[&str]) -> Output {
    Command::new(servesim_bin())
        .args(args)
        .output()
        .expect("the servesim binary runs")
}

/// Stdout of a successful run; panics with stderr otherwise.
pub fn stdout_ok(args: &[&str]) -> String {
    let out = servesim(args);
    assert!(
        out.status.success(),
        "servesim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
