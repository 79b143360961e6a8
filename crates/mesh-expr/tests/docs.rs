//! The reference in docs/transform-script.md embeds sections generated from the code: the
//! function reference (with every example and its actual result) and the table of codes.
//! This test fails when they drift apart; `UPDATE_DOCS=1 cargo test -p mesh-expr --test docs`
//! rewrites the generated sections in place.

use std::path::PathBuf;

use mesh_expr::docs::{codes_markdown, functions_markdown};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/transform-script.md")
}

fn replace_section(doc: &str, name: &str, content: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
    let end = format!("<!-- END GENERATED: {name} -->");
    let start = doc.find(&begin)? + begin.len();
    let stop = start + doc[start..].find(&end)?;
    Some(format!("{}{}{}", &doc[..start], content, &doc[stop..]))
}

#[test]
fn reference_matches_the_code() {
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).expect("docs/transform-script.md exists");
    let mut expected = doc.clone();
    for (name, content) in [
        ("functions", functions_markdown()),
        ("codes", codes_markdown()),
    ] {
        expected = replace_section(&expected, name, &content)
            .unwrap_or_else(|| panic!("the doc has no generated section `{name}`"));
    }
    if expected == doc {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let first_difference = doc
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .map_or(doc.lines().count().min(expected.lines().count()), |i| i);
    panic!(
        "docs/transform-script.md is out of date (first difference at line {}); run \
         UPDATE_DOCS=1 cargo test -p mesh-expr --test docs",
        first_difference + 1
    );
}

#[test]
fn every_example_source_appears_in_the_reference() {
    let doc = std::fs::read_to_string(doc_path()).unwrap();
    for function in mesh_expr::functions() {
        assert!(
            doc.contains(&format!("### {}", function.name())),
            "{} is not documented",
            function.name()
        );
        for example in function.examples() {
            let cell = example.source.replace('|', "\\|");
            assert!(
                doc.contains(&cell),
                "example `{}` is missing",
                example.source
            );
        }
    }
    for code in mesh_expr::Code::ALL {
        assert!(doc.contains(code.as_str()), "code {code} is not documented");
    }
}
