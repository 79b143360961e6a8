//! Every documented example of every function runs here, plus the examples of the issue and
//! DESIGN.md. The same examples are rendered into docs/transform-script.md (see docs.rs).

use mesh_expr::docs::run_example;
use mesh_expr::{Example, functions};

#[test]
fn every_function_example_gives_its_documented_result() {
    let mut failures = Vec::new();
    let mut count = 0;
    for function in functions() {
        assert!(
            !function.examples().is_empty(),
            "{} has no examples",
            function.name()
        );
        for example in function.examples() {
            count += 1;
            let outcome = run_example(example).expect("the example itself is well formed");
            let actual = outcome.as_expected();
            let expected = example.result.map(str::to_owned).map_err(str::to_owned);
            if actual != expected {
                failures.push(format!(
                    "{}: `{}` gave {actual:?}, documented {expected:?} ({outcome:?})",
                    function.name(),
                    example.source
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= 45, "only {count} examples");
}

#[test]
fn the_examples_of_the_issue_hold() {
    let cases: &[Example] = &[
        Example {
            source: r#"Concat(Left(givenName, 1), ". ", sn)"#,
            attributes: &[("givenName", r#""John""#), ("sn", r#""Smith""#)],
            result: Ok(r#""J. Smith""#),
        },
        Example {
            source: "ToLower(Concat(Left(FirstName, 1), LastName))",
            attributes: &[("firstname", r#""John""#), ("LASTNAME", r#""Smith""#)],
            result: Ok(r#""jsmith""#),
        },
        Example {
            source: r#"department != "Contractors""#,
            attributes: &[("Department", r#""Contractors""#)],
            result: Ok("false"),
        },
        Example {
            source: r#"department != "Contractors""#,
            attributes: &[("department", r#""Sales""#)],
            result: Ok("true"),
        },
        Example {
            source: r#"Join("a", ",")"#,
            attributes: &[],
            result: Err("E022"),
        },
        Example {
            source: "Tolower(x)",
            attributes: &[("x", r#""AB""#)],
            result: Ok(r#""ab""#),
        },
        Example {
            source: "ToLowr(x)",
            attributes: &[],
            result: Err("E020"),
        },
        Example {
            source: "Left(memberOf, 1)",
            attributes: &[("memberOf", r#"["a"]"#)],
            result: Err("R001"),
        },
    ];
    for example in cases {
        let outcome = run_example(example).unwrap();
        let expected = example.result.map(str::to_owned).map_err(str::to_owned);
        assert_eq!(outcome.as_expected(), expected, "{}", example.source);
    }
}
