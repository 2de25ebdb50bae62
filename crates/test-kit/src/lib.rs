//! Helpers for mediabot's own test suites (never a dependency of a library crate).
//!
//! [`figure`] asserts a measured figure against its bound and, when the `MEDIABOT_FIGURES`
//! variable names a file, appends the figure to it, so `scripts/flake-check` can report the
//! worst value of every asserted figure over many runs: that is how a threshold's margin is
//! measured instead of guessed.

pub mod figure;

pub use figure::{at_least, at_most};
