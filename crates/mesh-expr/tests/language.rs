//! The language's rules: literals, names, precedence, comparison, boolean logic, bounds, the
//! compile API, and the purity of `Now()`.

use chrono::{DateTime, Utc};
use mesh_expr::limits::{MAX_DEPTH, MAX_LIST_LEN, MAX_SOURCE_LEN, MAX_VALUE_BYTES};
use mesh_expr::{Code, EvalContext, EvalError, Schema, compile, compile_filter, to_literal};
use mesh_model::{AttributeName, Attributes, Value, ValueKind};

fn now() -> DateTime<Utc> {
    "2026-03-14T09:26:53Z".parse().unwrap()
}

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(n, v)| (AttributeName::parse(n).unwrap(), v.clone()))
        .collect()
}

/// Evaluates and returns the literal form of the result, or the error code.
fn run(source: &str, pairs: &[(&str, Value)]) -> String {
    match compile(source, None) {
        Err(d) => format!("refused {}", d.errors().next().unwrap().code),
        Ok(p) => match p.eval(&attrs(pairs), &EvalContext::new(now())) {
            Ok(v) => to_literal(&v),
            Err(e) => format!("error {}", e.code()),
        },
    }
}

fn code(source: &str) -> Code {
    compile(source, None)
        .unwrap_err()
        .errors()
        .next()
        .unwrap()
        .code
}

#[test]
fn literals() {
    assert_eq!(run(r#""a\"b\\c\n\t\u{1F600}""#, &[]), r#""a\"b\\c\n\t😀""#);
    assert_eq!(run("-9223372036854775808", &[]), "-9223372036854775808");
    assert_eq!(run("9223372036854775807", &[]), "9223372036854775807");
    assert_eq!(code("9223372036854775808"), Code::InvalidNumber);
    assert_eq!(code("-9223372036854775809"), Code::InvalidNumber);
    assert_eq!(run("-2.50", &[]), "-2.5");
    assert_eq!(
        run("[1, 2.0, \"x\", null, true, [],]", &[]),
        r#"[1, 2.0, "x", null, true, []]"#
    );
    assert_eq!(run("TRUE and not False", &[]), "true");
    assert_eq!(run("NULL", &[]), "null");
    assert_eq!(code("1."), Code::InvalidNumber);
    assert_eq!(code("12abc"), Code::InvalidNumber);
    assert_eq!(code(r#""abc"#), Code::UnterminatedString);
    assert_eq!(code(r#""\q""#), Code::InvalidEscape);
    assert_eq!(code(r#""\u{D800}""#), Code::InvalidEscape);
    assert_eq!(code("'abc'"), Code::UnexpectedCharacter);
    assert_eq!(code("   "), Code::EmptySource);
    assert_eq!(code("- x"), Code::UnexpectedToken);
}

#[test]
fn attribute_names_are_case_insensitive_and_quotable() {
    let a = [
        ("Display Name", Value::from("Jane")),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            Value::from("IT"),
        ),
        ("name.givenName", Value::from("J")),
    ];
    assert_eq!(run("`display name`", &a), r#""Jane""#);
    assert_eq!(
        run(
            "`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`",
            &a
        ),
        r#""IT""#
    );
    assert_eq!(run("NAME.GIVENNAME", &a), r#""J""#);
    assert_eq!(run("missing", &a), "null");
    assert_eq!(code("``"), Code::InvalidAttributeName);
    assert_eq!(code("`abc"), Code::UnterminatedString);
    // Keywords need quoting to be used as names.
    assert_eq!(run("`not`", &[("not", Value::from(1))]), "1");
}

#[test]
fn precedence_not_and_or() {
    // `or` binds looser than `and`.
    assert_eq!(run("true or true and false", &[]), "true");
    assert_eq!(run("(true or true) and false", &[]), "false");
    // `not` binds looser than comparison, as in SQL.
    let a = [("department", Value::from("IT"))];
    assert_eq!(run(r#"not department == "IT""#, &a), "false");
    assert_eq!(run(r#"!department == "IT""#, &a), "false");
    assert_eq!(run("not true and false", &[]), "false");
    assert_eq!(run("not (true and false)", &[]), "true");
    assert_eq!(run("!!true", &[]), "true");
    assert_eq!(run("true && false || true", &[]), "true");
    assert_eq!(code("1 < 2 < 3"), Code::ChainedComparison);
    assert_eq!(code("a == not b"), Code::UnexpectedToken);
    assert_eq!(run("a == (not b)", &[("a", Value::Bool(true))]), "true");
}

#[test]
fn boolean_operators_short_circuit_and_treat_null_as_false() {
    assert_eq!(
        run("missing and Left(x, 1) == 1", &[("x", Value::from(1))]),
        "false"
    );
    assert_eq!(
        run("true or Left(x, 1) == 1", &[("x", Value::from(1))]),
        "true"
    );
    assert_eq!(run("not missing", &[]), "true");
    assert_eq!(run("missing or false", &[]), "false");
    assert_eq!(
        run("x and true", &[("x", Value::from("yes"))]),
        "error R001"
    );
    assert_eq!(code(r#""yes" and true"#), Code::OperandType);
}

#[test]
fn equality_rules() {
    let t = [("t", Value::Timestamp(now())), ("n", Value::Integer(3))];
    assert_eq!(run("1 == 1.0", &[]), "true");
    assert_eq!(run("n == 3.0", &t), "true");
    assert_eq!(run("n != 3.5", &t), "true");
    assert_eq!(run(r#""a" == "A""#, &[]), "false");
    assert_eq!(run("missing == null", &[]), "true");
    assert_eq!(run(r#"missing == """#, &[]), "false");
    assert_eq!(run(r#"missing != "x""#, &[]), "true");
    assert_eq!(run(r#"t == "2026-03-14T10:26:53+01:00""#, &t), "true");
    assert_eq!(run(r#"t == "not a time""#, &t), "false");
    assert_eq!(run("[1, [2]] == [1.0, [2]]", &[]), "true");
    assert_eq!(run("[1, 2] == [2, 1]", &[]), "false");
    assert_eq!(run(r#"n == "3""#, &t), "false");
    // A constant mixed comparison compiles, with a warning.
    let program = compile(r#""3" == 3"#, None).unwrap();
    assert_eq!(
        program.warnings().iter().next().unwrap().code,
        Code::MixedTypeComparison
    );
}

#[test]
fn ordering_rules() {
    let a = [
        ("t", Value::Timestamp(now())),
        ("s", Value::from("b")),
        ("b", Value::Bool(true)),
    ];
    assert_eq!(run("1 < 1.5", &[]), "true");
    assert_eq!(run("9007199254740993 > 9007199254740992.0", &[]), "true");
    assert_eq!(run(r#""B" < "a""#, &[]), "true");
    assert_eq!(run(r#""é" > "z""#, &[]), "true");
    assert_eq!(run("t > \"2026-01-01T00:00:00Z\"", &a), "true");
    assert_eq!(run("t <= Now()", &a), "true");
    assert_eq!(run("missing < 1", &a), "false");
    assert_eq!(run("missing >= 1", &a), "false");
    assert_eq!(run("s < 1", &a), "error R001");
    assert_eq!(run("b < s", &a), "error R001");
    assert_eq!(run("b < true", &a), "refused E023");
    assert_eq!(run("t < \"soon\"", &a), "error R001");
    assert_eq!(code(r#""a" < 1"#), Code::OperandType);
}

#[test]
fn membership() {
    let a = [
        ("dept", Value::from("HR")),
        ("groups", Value::List(vec![Value::from("admins")])),
    ];
    assert_eq!(run(r#"dept in ["IT", "HR"]"#, &a), "true");
    assert_eq!(run(r#""admins" in groups"#, &a), "true");
    assert_eq!(run("1 in [1.0]", &a), "true");
    assert_eq!(run(r#""x" in missing"#, &a), "false");
    assert_eq!(run(r#""x" in dept"#, &a), "error R001");
    assert_eq!(code(r#"dept in "HR""#), Code::OperandType);
}

#[test]
fn functions_are_case_insensitive_with_a_warning() {
    let program = compile("toupper(x)", None).unwrap();
    let warning = program.warnings().iter().next().unwrap();
    assert_eq!(warning.code, Code::FunctionNameCase);
    assert_eq!(warning.suggestion.as_deref(), Some("write `ToUpper`"));
    let err = compile("ToLowr(x)", None).unwrap_err();
    let d = err.errors().next().unwrap();
    assert_eq!(d.code, Code::UnknownFunction);
    assert_eq!(d.suggestion.as_deref(), Some("did you mean `ToLower`?"));
    assert_eq!(code("Left(x)"), Code::WrongArity);
    assert_eq!(code("Now(1)"), Code::WrongArity);
    assert_eq!(code("Concat()"), Code::WrongArity);
    assert_eq!(code("Switch(x, 1, 2)"), Code::WrongArity);
    assert_eq!(code("Left(x, -1)"), Code::InvalidArgument);
    assert_eq!(code(r#"Left(x, "1")"#), Code::ArgumentType);
    assert_eq!(code(r#"Format(x, "%Q")"#), Code::InvalidArgument);
    assert_eq!(code(r#"Format(Now(), "0.00%Q")"#), Code::InvalidArgument);
    assert_eq!(
        code(r#"Left("abc", 1) == Left([1], 1)"#),
        Code::ArgumentType
    );
    // A constant expression that always fails is refused.
    assert_eq!(
        code(r#"Split(Concat(Left("a", 0)), "") == Format("x", "0")"#),
        Code::InvalidArgument
    );
}

#[test]
fn schema_warnings_and_types() {
    let schema = Schema::new()
        .with(
            AttributeName::parse("FirstName").unwrap(),
            Some(ValueKind::String),
        )
        .with(
            AttributeName::parse("Age").unwrap(),
            Some(ValueKind::Integer),
        )
        .with(AttributeName::parse("Groups").unwrap(), None);
    let program = compile("Concat(FirstNmae, Age, Groups)", Some(&schema)).unwrap();
    let warning = program.warnings().iter().next().unwrap();
    assert_eq!(warning.code, Code::UnknownAttribute);
    assert_eq!(
        warning.suggestion.as_deref(),
        Some("did you mean `FirstName`?")
    );
    let errors = compile("Join(FirstName, \",\")", Some(&schema)).unwrap_err();
    assert_eq!(errors.errors().next().unwrap().code, Code::ArgumentType);
    let errors = compile(r#"Age < "30""#, Some(&schema)).unwrap_err();
    assert_eq!(errors.errors().next().unwrap().code, Code::OperandType);
    assert!(compile("Left(null, 1)", None).is_ok());
    assert_eq!(code("Left(x, null)"), Code::ArgumentType);
    let warn = compile(r#"Age == "30""#, Some(&schema)).unwrap();
    assert_eq!(warn.warnings().len(), 1);
    assert!(
        compile(r#"Age == "30""#, None)
            .unwrap()
            .warnings()
            .is_empty()
    );
    let attributes: Vec<_> = program
        .attributes()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert_eq!(attributes, ["Age", "FirstNmae", "Groups"]);
}

#[test]
fn filters_must_be_boolean() {
    assert_eq!(
        compile_filter("department", None).unwrap().eval_filter(
            &attrs(&[("department", Value::Null)]),
            &EvalContext::new(now())
        ),
        Ok(false)
    );
    let refused = compile_filter(r#"Concat("a", department)"#, None).unwrap_err();
    assert_eq!(refused.errors().next().unwrap().code, Code::NotACondition);
    let filter = compile_filter(r#"department != "Contractors""#, None).unwrap();
    assert!(
        filter
            .eval_filter(
                &attrs(&[("department", Value::from("Sales"))]),
                &EvalContext::new(now())
            )
            .unwrap()
    );
    let not_bool = compile_filter("department", None).unwrap().eval_filter(
        &attrs(&[("department", Value::from("x"))]),
        &EvalContext::new(now()),
    );
    assert!(matches!(not_bool, Err(EvalError::TypeMismatch { .. })));
}

#[test]
fn now_comes_from_the_context_only() {
    let program = compile("Now()", None).unwrap();
    assert!(program.reads_now());
    let at = |s: &str| EvalContext::new(s.parse().unwrap());
    let a = program
        .eval(&Attributes::new(), &at("2001-02-03T04:05:06Z"))
        .unwrap();
    let b = program
        .eval(&Attributes::new(), &at("2001-02-03T04:05:06Z"))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(to_literal(&a), "2001-02-03T04:05:06Z");
    assert!(!compile("ToLower(x)", None).unwrap().reads_now());
}

#[test]
fn bounds_are_enforced() {
    assert_eq!(code(&"a".repeat(MAX_SOURCE_LEN + 1)), Code::SourceTooLong);
    let deep = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(code(&deep), Code::TooDeep);
    let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(run(&ok, &[]), "1");
    assert_eq!(code(&"not ".repeat(MAX_DEPTH + 1)), Code::TooDeep);
    assert_eq!(
        code(&format!("{}x{}", "ToLower(".repeat(100), ")".repeat(100))),
        Code::TooDeep
    );
    // Ten thousand nested brackets must neither overflow the stack nor be accepted.
    assert_eq!(code(&"[".repeat(10_000)), Code::TooDeep);
    assert_eq!(code(&"(".repeat(10_000)), Code::TooDeep);
    // Long and/or chains are flat, not deep.
    let chain = vec!["x"; 2000].join(" or ");
    assert_eq!(run(&chain, &[]), "false");
    let long_list = format!("[{}]", vec!["1"; MAX_LIST_LEN + 1].join(","));
    assert!(long_list.len() > MAX_SOURCE_LEN);
    let big = "x".repeat(MAX_VALUE_BYTES / 2 + 1);
    let a = [("big", Value::from(big.as_str()))];
    assert_eq!(run("Concat(big, big)", &a), "error R003");
    assert_eq!(run(r#"Replace(big, "x", "yy")"#, &a), "error R003");
    assert_eq!(run(r#"Join([big, big], "")"#, &a), "error R003");
    assert_eq!(run(r#"[big, big]"#, &a), "error R003");
    let many = ",".repeat(MAX_LIST_LEN);
    assert_eq!(
        run(
            "Split(many, \",\")",
            &[("many", Value::from(many.as_str()))]
        ),
        "error R004"
    );
    // Work budget: every step is small, but there are many of them.
    let huge = "x".repeat(MAX_VALUE_BYTES);
    let calls = vec!["ToLower(h) == \"\""; 40].join(" or ");
    assert_eq!(
        run(&calls, &[("h", Value::from(huge.as_str()))]),
        "error R005"
    );
}

#[test]
fn diagnostics_render_with_caret_and_suggestion() {
    let source = "ToLower(Concat(Left(FirstName, 1), LastNme))\n";
    let schema = Schema::new()
        .with(AttributeName::parse("FirstName").unwrap(), None)
        .with(AttributeName::parse("LastName").unwrap(), None);
    let program = compile(source, Some(&schema)).unwrap();
    let rendered = program.warnings().render(source, "rule");
    assert_eq!(
        rendered,
        "warning[W001]: attribute `LastNme` is not in the schema; it will always be null\n \
         --> rule:1:36\n  |\n1 | ToLower(Concat(Left(FirstName, 1), LastNme))\n  |                                    ^^^^^^^\n  \
         = help: did you mean `LastName`?\n"
    );
    let err = compile("Left(\"\u{1b}[31m\", -1)", None).unwrap_err();
    assert!(
        !err.render("Left(\"\u{1b}[31m\", -1)", "s")
            .contains('\u{1b}')
    );
}

#[test]
fn runtime_errors_carry_a_span_and_render() {
    let source = "Concat(a, Left(b, 1))";
    let program = compile(source, None).unwrap();
    let error = program
        .eval(
            &attrs(&[("b", Value::Integer(5))]),
            &EvalContext::new(now()),
        )
        .unwrap_err();
    assert_eq!(error.code(), "R001");
    assert_eq!(&source[error.span().range()], "b");
    assert!(error.render(source, "rule").contains("^"));
}

#[test]
fn programs_are_shared_across_threads() {
    let program = compile("ToLower(Concat(Left(FirstName, 1), LastName))", None).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let program = program.clone();
            std::thread::spawn(move || {
                let a = attrs(&[
                    ("FirstName", Value::from(format!("A{i}"))),
                    ("LastName", Value::from("B")),
                ]);
                program.eval(&a, &EvalContext::new(now())).unwrap()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(
            h.join().unwrap(),
            Value::from(if i < 10 { "ab" } else { "" })
        );
    }
}
