//! Fuzzes TransformScript end to end; the body is shared with the regression test in
//! crates/mesh-expr/tests/support/fuzz_harness.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../../crates/mesh-expr/tests/support/fuzz_harness.rs");

fuzz_target!(|data: &[u8]| run_one(data));
