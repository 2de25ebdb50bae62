//! Hooks for the workspace's tests and fuzz targets (feature `_internal_test_exports`). Not a
//! stable API: nothing a bot should use.

pub mod fuzz;
pub mod harness;
