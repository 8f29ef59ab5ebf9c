//! End-to-end tests of `servesim bench` (issue 4).

mod support;
