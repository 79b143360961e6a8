//! Property tests: compiling never panics; evaluating a program that compiled never panics,
//! whatever the attributes; the text functions keep their algebraic promises.

use chrono::DateTime;
use mesh_expr::{EvalContext, compile};
use mesh_model::{AttributeName, Attributes, Value};
use proptest::prelude::*;

fn context() -> EvalContext {
    EvalContext::new("2026-03-14T09:26:53Z".parse().unwrap())
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Decimal),
        any::<String>().prop_map(Value::from),
        "[a-z ,;.-]{0,12}".prop_map(Value::from),
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?".prop_map(Value::from),
        (-62_000_000_000i64..250_000_000_000i64)
            .prop_map(|s| Value::Timestamp(DateTime::from_timestamp(s, 0).unwrap())),
        Just(Value::String("2024-02-29T08:30:00Z".into())),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Value::List)
    })
}

const NAMES: &[&str] = &["a", "b", "c", "FirstName", "`last name`"];

/// Function names with the arities they accept (and some they do not).
const CALLS: &[(&str, usize)] = &[
    ("ToLower", 1),
    ("ToUpper", 1),
    ("Trim", 1),
    ("Replace", 3),
    ("Concat", 1),
    ("Concat", 3),
    ("Left", 2),
    ("Right", 2),
    ("Substring", 3),
    ("Split", 2),
    ("Join", 2),
    ("Now", 0),
    ("Format", 2),
    ("Coalesce", 2),
    ("If", 3),
    ("Switch", 4),
    ("Switch", 6),
    ("left", 1),
];

const LITERALS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "-1",
    "3",
    "100",
    "2.5",
    "-0.0",
    r#""""#,
    r#"",""#,
    r#""a""#,
    r#""É ß İ""#,
    r#"" x ""#,
    r#""%Y-%m-%d""#,
    r##""#,##0.00""##,
    r#""0.##""#,
    r#""%Q""#,
    "[]",
    r#"["a", 1, null]"#,
    "9223372036854775807",
];

/// Generates scripts that are mostly well formed, so that many of them compile.
fn script() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_owned),
        prop::sample::select(LITERALS).prop_map(str::to_owned),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            (
                prop::sample::select(CALLS),
                prop::collection::vec(inner.clone(), 6)
            )
                .prop_map(|((name, arity), args)| format!("{name}({})", args[..arity].join(", "))),
            (
                inner.clone(),
                prop::sample::select(
                    &["==", "!=", "<", "<=", ">", ">=", "in", "and", "or", "&&"][..]
                ),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("not {a}")),
            prop::collection::vec(inner, 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    prop::collection::vec(value(), NAMES.len()).prop_map(|values| {
        NAMES
            .iter()
            .zip(values)
            .map(|(name, value)| (AttributeName::parse(name.trim_matches('`')).unwrap(), value))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiling_any_string_never_panics(source in any::<String>()) {
        let _ = compile(&source, None).map_err(|d| d.render(&source, "p"));
    }

    #[test]
    fn compiling_token_soup_never_panics(
        tokens in prop::collection::vec(
            prop::sample::select(&[
                "(", ")", "[", "]", ",", "\"", "`", "-", "!", "==", "<", "and", "not", "in",
                "x", "Left", "If", "1", "2.5", "\"s\"", "null", " ", "\\", "\n", "é",
            ][..]),
            0..40,
        )
    ) {
        let source = tokens.concat();
        let _ = compile(&source, None).map_err(|d| d.render(&source, "p"));
    }

    #[test]
    fn evaluating_a_compiled_program_never_panics(source in script(), attrs in attributes()) {
        if let Ok(program) = compile(&source, None) {
            let _ = program.eval(&attrs, &context()).map_err(|e| e.render(&source, "p"));
            let _ = program.eval_filter(&attrs, &context());
        }
    }

    #[test]
    fn case_mapping_and_trim_are_idempotent(s in any::<String>()) {
        for function in ["ToLower", "ToUpper", "Trim"] {
            let once = compile(&format!("{function}(s)"), None).unwrap();
            let twice = compile(&format!("{function}({function}(s))"), None).unwrap();
            let attrs: Attributes =
                [(AttributeName::parse("s").unwrap(), Value::from(s.clone()))].into_iter().collect();
            prop_assert_eq!(
                once.eval(&attrs, &context()).unwrap(),
                twice.eval(&attrs, &context()).unwrap(),
                "{}", function
            );
        }
    }

    #[test]
    fn left_and_the_rest_make_the_whole(s in any::<String>(), n in 0i64..40) {
        let len = s.chars().count() as i64;
        let attrs: Attributes = [
            (AttributeName::parse("s").unwrap(), Value::from(s.clone())),
            (AttributeName::parse("n").unwrap(), Value::Integer(n)),
            (AttributeName::parse("rest").unwrap(), Value::Integer((len - n).max(0))),
        ]
        .into_iter()
        .collect();
        for source in [
            "Concat(Left(s, n), Substring(s, n, 1000000))",
            "Concat(Left(s, n), Right(s, rest))",
        ] {
            let program = compile(source, None).unwrap();
            prop_assert_eq!(program.eval(&attrs, &context()).unwrap(), Value::from(s.clone()));
        }
    }

    #[test]
    fn split_then_join_round_trips(s in "[a-z,]{0,30}") {
        let program = compile(r#"Join(Split(s, ","), ",")"#, None).unwrap();
        let attrs: Attributes =
            [(AttributeName::parse("s").unwrap(), Value::from(s.clone()))].into_iter().collect();
        prop_assert_eq!(program.eval(&attrs, &context()).unwrap(), Value::from(s));
    }
}

/// Guards the generator above: a property over programs that compile is only worth something
/// if a good share of the generated scripts do compile.
#[test]
fn the_script_generator_mostly_compiles() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = script();
    let total = 1000;
    let compiled = (0..total)
        .filter(|_| {
            let source = strategy.new_tree(&mut runner).unwrap().current();
            compile(&source, None).is_ok()
        })
        .count();
    assert!(compiled * 4 >= total, "only {compiled} of {total} compiled");
}
