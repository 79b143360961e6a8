//! Fuzzes the connector agent's `scim_body`; the body is shared with the regression test in
//! services/connector-agent/tests/support/fuzz_harness.rs (tests/fuzz_inputs.rs replays it).
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../../services/connector-agent/tests/support/fuzz_harness.rs");

fuzz_target!(|data: &[u8]| scim_body(data));
