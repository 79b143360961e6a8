//! Fuzzes the connector agent's `hr_extract`; the body is shared with the regression test in
//! services/connector-agent/tests/support/fuzz_harness.rs (tests/fuzz_inputs.rs replays it).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../../services/connector-agent/tests/support/fuzz_harness.rs");

fuzz_target!(|data: &[u8]| hr_extract(data));
