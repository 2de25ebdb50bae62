//! Hooks for the workspace's fuzz targets (feature `_internal_test_exports`). Not a stable API.

pub mod fuzz;
