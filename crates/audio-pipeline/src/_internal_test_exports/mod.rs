//! Hooks for the workspace's benchmarks and fuzz targets (feature `_internal_test_exports`).
//! Not a stable API: nothing a bot should call.

pub mod bench;
pub mod fuzz;
