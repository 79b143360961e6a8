//! Rule-by-rule comparison of two rule sets (DiffRuleVersions).
//!
//! Each file is cut into its YAML documents at `---` lines; a document is named by its `kind`
//! and `metadata.name`, so moving a rule to another file or reordering documents is no
//! change, and a changed rule shows as a unified diff of its own text.

use std::collections::BTreeMap;

use mesh_engine::yaml::{NodeKind, parse_documents};
use mesh_store::rules::RuleFile;

/// One rule that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The document's kind.
    pub kind: String,
    /// Its `metadata.name`.
    pub name: String,
    /// Its text before; empty when added.
    pub before: String,
    /// Its text after; empty when removed.
    pub after: String,
}

impl Change {
    /// A unified diff of `before` and `after`, three lines of context.
    pub fn unified(&self, from: &str, to: &str) -> String {
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(from, to)
            .to_string()
    }
}

/// The rules whose text differs between `before` and `after`, in kind then name order.
pub fn changes(before: &[RuleFile], after: &[RuleFile]) -> Vec<Change> {
    let before = documents(before);
    let mut after = documents(after);
    let mut out = Vec::new();
    for (key, old) in before {
        match after.remove(&key) {
            Some(new) if new == old => {}
            Some(new) => out.push(change(key, old, new)),
            None => out.push(change(key, old, String::new())),
        }
    }
    out.extend(
        after
            .into_iter()
            .map(|(key, new)| change(key, String::new(), new)),
    );
    out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    out
}

fn change((kind, name): (String, String), before: String, after: String) -> Change {
    Change {
        kind,
        name,
        before,
        after,
    }
}

/// Every document of every file by (kind, name), its text trimmed of blank edges.
fn documents(files: &[RuleFile]) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for file in files {
        for (i, text) in split(&file.content).into_iter().enumerate() {
            let (kind, name) = identify(&text)
                .unwrap_or_else(|| ("Document".to_owned(), format!("{}#{}", file.path, i + 1)));
            // A name given twice is an invalid set; keep both apart rather than lose one.
            let mut key = (kind, name.clone());
            for n in 2.. {
                if !out.contains_key(&key) {
                    break;
                }
                key.1 = format!("{name} ({n})");
            }
            out.insert(key, text);
        }
    }
    out
}

/// The documents of a YAML stream, without the separators; empty ones are left out.
fn split(content: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in content.lines() {
        let separator = line == "---" || line.starts_with("--- ") || line == "...";
        if separator {
            push(&mut docs, std::mem::take(&mut current));
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push(&mut docs, current);
    docs
}

fn push(docs: &mut Vec<String>, text: String) {
    let meaningful = text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    });
    if meaningful {
        docs.push(format!("{}\n", text.trim_matches('\n').trim_end()));
    }
}

fn identify(text: &str) -> Option<(String, String)> {
    let node = parse_documents(text).ok()?.into_iter().next()?;
    let NodeKind::Map(entries) = node.kind else {
        return None;
    };
    let get = |entries: &[(mesh_engine::yaml::Key, mesh_engine::yaml::Node)], key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v.kind.clone())
    };
    let Some(NodeKind::String(kind)) = get(&entries, "kind") else {
        return None;
    };
    let name = match get(&entries, "metadata") {
        Some(NodeKind::Map(meta)) => match get(&meta, "name") {
            Some(NodeKind::String(name)) => name,
            _ => return None,
        },
        _ => return None,
    };
    Some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> RuleFile {
        RuleFile {
            path: path.into(),
            content: content.into(),
        }
    }

    const A: &str = "kind: FlowRule\nmetadata: { name: a }\nspec: { confidence: 80 }\n";
    const B: &str = "kind: JoinRule\nmetadata:\n  name: b\nspec: {}\n";

    #[test]
    fn moving_and_reordering_rules_is_no_change() {
        let before = [file("one.yaml", &format!("{A}---\n{B}"))];
        let after = [
            file("b.yaml", B),
            file("a.yaml", &format!("# moved\n---\n{A}")),
        ];
        assert_eq!(changes(&before, &after), Vec::new());
    }

    #[test]
    fn added_removed_and_modified_rules_are_named() {
        let before = [file("r.yaml", &format!("{A}---\n{B}"))];
        let modified = A.replace("80", "90");
        let c = "kind: ProjectionRule\nmetadata: { name: c }\nspec: {}\n";
        let after = [file("r.yaml", &format!("{modified}---\n{c}"))];
        let found = changes(&before, &after);
        let summary: Vec<(&str, &str, bool, bool)> = found
            .iter()
            .map(|c| {
                (
                    c.kind.as_str(),
                    c.name.as_str(),
                    c.before.is_empty(),
                    c.after.is_empty(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("FlowRule", "a", false, false),
                ("JoinRule", "b", false, true),
                ("ProjectionRule", "c", true, false),
            ]
        );
        let diff = found[0].unified("v1", "v2");
        assert!(diff.contains("-spec: { confidence: 80 }"), "{diff}");
        assert!(diff.contains("+spec: { confidence: 90 }"), "{diff}");
    }
}
