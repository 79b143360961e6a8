//! Benchmarks of TransformScript: evaluations per second of the canonical MeshComposer rule
//! (target: at least 5 million per second on one core) and compile time of a script of about
//! 100 characters (target: under 20 µs).
//!
//! Run with `cargo bench -p mesh-expr`; criterion prints `thrpt` in elements (evaluations) per
//! second for the evaluation group and the time per compile for the compile group.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_expr::{EvalContext, compile, compile_filter};
use mesh_model::{AttributeName, Attributes, Value};

const SAM_ACCOUNT_NAME: &str = "ToLower(Concat(Left(FirstName, 1), LastName))";

/// About 100 characters: a realistic flow rule.
const HUNDRED_CHARS: &str = r#"If(department == "Contractors", Concat("ext-", ToLower(Left(sn, 6))), Trim(Coalesce(mail, userName)))"#;

fn attributes() -> Attributes {
    [
        ("FirstName", "John"),
        ("LastName", "Smith"),
        ("department", "Sales"),
        ("mail", " john.smith@example.com "),
        ("employeeId", "E00012345"),
        ("title", "Account Executive"),
    ]
    .into_iter()
    .map(|(n, v)| (AttributeName::parse(n).unwrap(), Value::from(v)))
    .collect()
}

fn evaluation(c: &mut Criterion) {
    let context = EvalContext::new("2026-03-14T09:26:53Z".parse().unwrap());
    let attributes = attributes();
    let mut group = c.benchmark_group("eval");
    group.throughput(Throughput::Elements(1));

    let program = compile(SAM_ACCOUNT_NAME, None).unwrap();
    assert_eq!(
        program.eval(&attributes, &context).unwrap(),
        Value::from("jsmith")
    );
    group.bench_function("samaccountname", |b| {
        b.iter(|| program.eval(black_box(&attributes), black_box(&context)))
    });

    let filter = compile_filter(
        r#"department != "Contractors" and not (title in ["Intern", "Temp", "Contractor"])"#,
        None,
    )
    .unwrap();
    group.bench_function("projection_filter", |b| {
        b.iter(|| filter.eval_filter(black_box(&attributes), black_box(&context)))
    });

    let hundred = compile(HUNDRED_CHARS, None).unwrap();
    group.bench_function("hundred_char_script", |b| {
        b.iter(|| hundred.eval(black_box(&attributes), black_box(&context)))
    });
    group.finish();
}

fn compilation(c: &mut Criterion) {
    assert!(
        (95..=105).contains(&HUNDRED_CHARS.len()),
        "{}",
        HUNDRED_CHARS.len()
    );
    let mut group = c.benchmark_group("compile");
    group.bench_function("hundred_char_script", |b| {
        b.iter(|| compile(black_box(HUNDRED_CHARS), None))
    });
    group.bench_function("samaccountname", |b| {
        b.iter(|| compile(black_box(SAM_ACCOUNT_NAME), None))
    });
    group.finish();
}

criterion_group!(benches, evaluation, compilation);
criterion_main!(benches);
