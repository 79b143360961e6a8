//! "Did you mean" suggestions.

/// Names authors bring from other tools (Excel, MIM, Entra ID, SQL) mapped to ours.
const ALIASES: &[(&str, &str)] = &[
    ("lower", "ToLower"),
    ("lcase", "ToLower"),
    ("lowercase", "ToLower"),
    ("upper", "ToUpper"),
    ("ucase", "ToUpper"),
    ("uppercase", "ToUpper"),
    ("mid", "Substring"),
    ("substr", "Substring"),
    ("iif", "If"),
    ("isnull", "Coalesce"),
    ("nvl", "Coalesce"),
    ("ifnull", "Coalesce"),
    ("case", "Switch"),
    ("formatdatetime", "Format"),
    ("datetimeformat", "Format"),
    ("append", "Concat"),
    ("concatenate", "Concat"),
    ("strip", "Trim"),
    ("now_utc", "Now"),
    ("utcnow", "Now"),
];

/// Returns the candidate closest to `name`, if it is close enough to be a plausible typo or a
/// known alias. Comparison ignores case.
pub(crate) fn did_you_mean<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = name.to_lowercase();
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if let Some((_, target)) = ALIASES.iter().find(|(alias, _)| *alias == lower)
        && let Some(found) = candidates.iter().find(|c| c.eq_ignore_ascii_case(target))
    {
        return Some(found);
    }
    let budget = (lower.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Returns the optimal string alignment distance (Levenshtein plus adjacent transpositions),
/// counted in characters. Inputs are names, so the quadratic cost is negligible; very long
/// inputs are cut off early since they are no typo of a short name.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        if let Some(cell) = d.get_mut(at(i, 0)) {
            *cell = i;
        }
    }
    for j in 0..=b.len() {
        if let Some(cell) = d.get_mut(at(0, j)) {
            *cell = j;
        }
    }
    let get = |d: &Vec<usize>, i: usize, j: usize| d.get(at(i, j)).copied().unwrap_or(usize::MAX);
    for (i, ca) in a.iter().enumerate() {
        for (j, cb) in b.iter().enumerate() {
            let (i1, j1) = (i + 1, j + 1);
            let cost = usize::from(ca != cb);
            let mut best = (get(&d, i, j1).saturating_add(1))
                .min(get(&d, i1, j).saturating_add(1))
                .min(get(&d, i, j).saturating_add(cost));
            if i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca) {
                best = best.min(get(&d, i - 1, j - 1).saturating_add(1));
            }
            if let Some(cell) = d.get_mut(at(i1, j1)) {
                *cell = best;
            }
        }
    }
    get(&d, a.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_and_aliases() {
        let names = ["ToLower", "ToUpper", "Trim", "Substring"];
        assert_eq!(did_you_mean("ToLowr", names), Some("ToLower"));
        assert_eq!(did_you_mean("TOlwoer", names), Some("ToLower"));
        assert_eq!(did_you_mean("Mid", names), Some("Substring"));
        assert_eq!(did_you_mean("LCase", names), Some("ToLower"));
        assert_eq!(did_you_mean("Frobnicate", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ab", "ba"), 1);
    }
}
