//! Kubernetes name and label syntax.

/// RFC 1123 label: lower-case alphanumerics and `-`, starting and ending alphanumeric,
/// at most 63 characters (container, port-less Service and namespace names).
pub fn is_dns1123_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (object names).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns1123_label)
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Some(format!(
            "prefix {prefix:?} of key {key:?} must be a DNS subdomain"
        ));
    }
    if !is_qualified_name_part(name) {
        return Some(format!(
            "key {key:?} must be at most 63 alphanumeric characters, '-', '_' or '.', \
             starting and ending with an alphanumeric character"
        ));
    }
    None
}

/// A label value: empty, or like the name part of a key.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || is_qualified_name_part(value) {
        None
    } else {
        Some(format!(
            "label value {value:?} must be at most 63 alphanumeric characters, '-', '_' or \
             '.', starting and ending with an alphanumeric character"
        ))
    }
}

fn is_qualified_name_part(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| alnum(b) || b == b'-' || b == b'_' || b == b'.')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
}

/// IANA service name (container port names): at most 15 lower-case alphanumerics and `-`,
/// at least one letter, no leading, trailing or double `-`.
pub fn is_iana_svc_name(name: &str) -> bool {
    is_dns1123_label(name)
        && name.len() <= 15
        && !name.contains("--")
        && name.bytes().any(|b| b.is_ascii_lowercase())
}

/// The closest of `candidates` to `word` when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::levenshtein(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("rollouts-demo"));
        assert!(!is_dns1123_label("Rollouts"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(label_key_problem("app.kubernetes.io/name").is_none());
        assert!(label_key_problem("bad key").is_some());
        assert!(label_value_problem("").is_none());
        assert!(label_value_problem("v1.2_x").is_none());
        assert!(label_value_problem("-x").is_some());
        assert!(is_iana_svc_name("http"));
        assert!(!is_iana_svc_name("8080"));
        assert!(!is_iana_svc_name("a-very-long-port-name"));
    }

    #[test]
    fn suggests_close_names() {
        let fields = ["setWeight", "pause", "analysis"];
        assert_eq!(did_you_mean("setWieght", fields), Some("setWeight"));
        assert_eq!(did_you_mean("paus", fields), Some("pause"));
        assert_eq!(did_you_mean("experimentation", fields), None);
    }
}
