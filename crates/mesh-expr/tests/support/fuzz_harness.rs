// The body of the `transform_script` fuzz target, shared by fuzz/fuzz_targets (through
// `include!`) and by the regression test that replays its inputs, so the two never drift.
//
// Input layout: the script, then optionally a NUL byte and bytes that seed the attribute
// values, so that libFuzzer can mutate the script and the data independently.

use chrono::{DateTime, Utc};
use mesh_expr::{EvalContext, Schema, compile};
use mesh_model::{Attributes, Value, ValueKind};

/// Compiles (with and without a schema), renders the diagnostics, and evaluates whatever
/// compiles over attributes derived from the input. Must never panic.
pub fn run_one(data: &[u8]) {
    let (script, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let source = String::from_utf8_lossy(script);
    let program = match compile(&source, None) {
        Ok(program) => program,
        Err(diagnostics) => {
            let _ = diagnostics.render(&source, "fuzz");
            return;
        }
    };
    let _ = program.warnings().render(&source, "fuzz");
    let text = String::from_utf8_lossy(rest).into_owned();
    let seed = rest
        .iter()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
    let now = DateTime::<Utc>::from_timestamp(
        (seed % 8_000_000_000) as i64 - 2_000_000_000,
        (seed % 1_000_000_000) as u32,
    )
    .unwrap_or(DateTime::UNIX_EPOCH);
    let mut attributes = Attributes::new();
    let mut schema = Schema::new();
    for (i, name) in program.attributes().enumerate() {
        let value = match (seed as usize).wrapping_add(i) % 8 {
            0 => Value::from(text.clone()),
            1 => Value::Integer(seed as i64),
            2 => Value::Decimal(f64::from_bits(seed)),
            3 => Value::List(text.split(',').map(Value::from).collect()),
            4 => Value::Timestamp(now),
            5 => Value::Bool(seed % 2 == 0),
            6 => Value::from(now.to_rfc3339()),
            _ => Value::Null,
        };
        let kind = (!value.is_null()).then(|| value.kind());
        schema.insert(name.clone(), kind.filter(|k| *k != ValueKind::Decimal));
        attributes.insert(name.clone(), value);
    }
    let context = EvalContext::new(now);
    let _ = program.eval(&attributes, &context);
    let _ = program.eval_filter(&attributes, &context);
    if let Err(diagnostics) = compile(&source, Some(&schema)) {
        let _ = diagnostics.render(&source, "fuzz");
    }
}
