//! "Did you mean …?" for mistyped names: the closest existing name, if it is close enough.

/// The name in `candidates` nearest to `wanted` by edit distance, when it is a plausible typo
/// (at most a third of the name's length, and at least one edit allowed).
pub fn closest<'a>(wanted: &str, candidates: &'a [String]) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(wanted, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_only() {
        let names = vec![
            "web".to_string(),
            "checkout".to_string(),
            "payments".to_string(),
        ];
        assert_eq!(
            closest("wbe", &names),
            None,
            "two edits in a three-letter name is too far"
        );
        assert_eq!(closest("wep", &names), Some("web"));
        assert_eq!(closest("chekout", &names), Some("checkout"));
        assert_eq!(closest("payment", &names), Some("payments"));
        assert_eq!(closest("billing", &names), None);
    }
}
