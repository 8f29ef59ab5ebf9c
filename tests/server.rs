//! End-to-end tests of `servesim serve` (issue 3).

mod support;
