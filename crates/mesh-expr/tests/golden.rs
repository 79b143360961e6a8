//! Golden files for diagnostics: tests/golden/*.txt.
//!
//! Each file starts with header lines, then the expected output:
//!
//! ```text
//! # source: ToLowr(FirstName)        (repeat for a multi-line script)
//! # schema: FirstName, Age:integer   (optional; declares attributes and their kinds)
//! # filter                           (optional; compile as a filter)
//! # attr: FirstName = "John"         (optional; evaluate on these attributes, as literals)
//! <rendered diagnostics, or the result / the rendered runtime error>
//! ```
//!
//! `UPDATE_GOLDEN=1 cargo test -p mesh-expr --test golden` rewrites the expected output; review
//! the diff before committing it.

use std::fmt::Write as _;
use std::path::Path;

use mesh_expr::docs::{example_attributes, example_now};
use mesh_expr::{EvalContext, Example, Schema, compile, compile_filter, to_literal};
use mesh_model::{AttributeName, ValueKind};

fn kind(name: &str) -> Option<ValueKind> {
    Some(match name {
        "null" => ValueKind::Null,
        "bool" => ValueKind::Bool,
        "integer" => ValueKind::Integer,
        "decimal" => ValueKind::Decimal,
        "string" => ValueKind::String,
        "timestamp" => ValueKind::Timestamp,
        "list" => ValueKind::List,
        _ => return None,
    })
}

fn run(header: &[&str]) -> String {
    let mut source_lines = Vec::new();
    let mut schema: Option<Schema> = None;
    let mut filter = false;
    let mut attrs: Vec<(&'static str, &'static str)> = Vec::new();
    for line in header {
        if let Some(s) = line.strip_prefix("# source: ") {
            source_lines.push(s.to_owned());
        } else if let Some(s) = line.strip_prefix("# schema: ") {
            let mut declared = Schema::new();
            for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (name, k) = match entry.split_once(':') {
                    Some((n, k)) => (n, kind(k.trim())),
                    None => (entry, None),
                };
                declared.insert(AttributeName::parse(name.trim()).unwrap(), k);
            }
            schema = Some(declared);
        } else if *line == "# filter" {
            filter = true;
        } else if let Some(s) = line.strip_prefix("# attr: ") {
            let (name, value) = s
                .split_once(" = ")
                .expect("attr lines are `name = literal`");
            attrs.push((leak(name), leak(value)));
        }
    }
    let source = source_lines.join("\n");
    let compiled = if filter {
        compile_filter(&source, schema.as_ref())
    } else {
        compile(&source, schema.as_ref())
    };
    let program = match compiled {
        Err(diagnostics) => return diagnostics.render(&source, "golden"),
        Ok(program) => program,
    };
    let mut out = program.warnings().render(&source, "golden");
    if attrs.is_empty() {
        if out.is_empty() {
            out.push_str("ok\n");
        }
        return out;
    }
    let example = Example {
        source: leak(&source),
        attributes: leak_slice(attrs),
        result: Ok(""),
    };
    let attributes = example_attributes(&example).unwrap();
    match program.eval(&attributes, &EvalContext::new(example_now())) {
        Ok(value) => {
            let _ = writeln!(out, "= {}", to_literal(&value));
        }
        Err(error) => out.push_str(&error.render(&source, "golden")),
    }
    out
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

#[test]
fn diagnostics_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 20, "only {} golden files", entries.len());
    let mut failures = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        let expected: String = text
            .lines()
            .skip(header.len())
            .map(|l| format!("{l}\n"))
            .collect();
        let actual = run(&header);
        if actual != expected {
            if update {
                let mut new = header.join("\n");
                new.push('\n');
                new.push_str(&actual);
                std::fs::write(&path, new).unwrap();
            } else {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}--- actual\n{actual}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(UPDATE_GOLDEN=1 rewrites the files)",
        failures.join("\n")
    );
}
