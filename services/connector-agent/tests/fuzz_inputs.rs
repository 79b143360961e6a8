//! Inputs for the connector agent's fuzz targets (fuzz/: scim_filter, scim_patch, scim_body,
//! hr_extract), replayed through every target as a test: their seeds, every crash they found,
//! and hand-made edge cases. The harness is tests/support/fuzz_harness.rs, which the fuzz
//! targets include.

use std::path::Path;

#[path = "support/fuzz_harness.rs"]
mod fuzz_harness;

#[test]
fn fuzz_inputs_replay_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        fuzz_harness::run_all(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count >= 8, "the seeds are there");
}
