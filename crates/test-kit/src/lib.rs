//! The test bench's measuring tools, kept out of the production crates: a speech recording,
//! the similarity oracle that judges audio after a lossy path, and asserted figures.
//!
//! graph-sim uses the recording as a simulated user's voice and the oracle in its reports; the
//! workspace's tests and benchmarks use all three. A bot built without the `sim` feature links
//! none of it.
//!
//! [`figure`] asserts a measured figure against its bound and, when the `MEDIABOT_FIGURES`
//! variable names a file, appends the figure to it, so `scripts/flake-check` can report the
//! worst value of every asserted figure over many runs: that is how a threshold's margin is
//! measured instead of guessed.
//!
//! [`host_stalls`] watches for stalls of the whole host while a test runs, so a figure a
//! shared machine's noise can spoil is judged against the noise measured in the same run.
//!
//! With the `certs` feature, [`certs`] makes throwaway RSA certificates for tests of
//! certificate credentials.

#[cfg(feature = "certs")]
pub mod certs;
pub mod figure;
pub mod fixtures;
pub mod host_stalls;
pub mod seeds;
pub mod similarity;

pub use figure::{at_least, at_most};
