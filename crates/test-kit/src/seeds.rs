//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`), as the crates' seed writers and
//! seed checks reach them.

use std::path::PathBuf;

/// A fuzz entry point: takes the target's bytes, panics on a finding.
pub type EntryPoint = fn(&[u8]);

/// The seed directory of `target`, from a crate under `crates/` (its `CARGO_MANIFEST_DIR`).
pub fn dir(manifest_dir: &str, target: &str) -> PathBuf {
    PathBuf::from(manifest_dir)
        .join("../../fuzz/seeds")
        .join(target)
}

/// Runs every committed seed of each target through its entry point, and asserts each target
/// has at least three seeds.
#[track_caller]
pub fn check_committed(manifest_dir: &str, targets: &[(&str, EntryPoint)]) {
    for (target, entry) in targets {
        let mut n = 0;
        for file in std::fs::read_dir(dir(manifest_dir, target)).unwrap() {
            entry(&std::fs::read(file.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 3, "{target}: {n} seeds");
    }
}
