//! Label selectors (ListSandboxes' `label_selector`).

use sandboxd_core::spec::SandboxSpec;
use sandboxd_core::validate;

use crate::error::{ApiError, ApiResult};

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorTerm {
    /// `key=value`.
    Equals(String, String),
    /// `key!=value` (also matches when the key is absent).
    NotEquals(String, String),
    /// `key`: the label is present.
    Exists(String),
}

/// Parses a label selector: comma-separated `k=v`, `k!=v` or `k` terms.
pub fn parse_selector(selector: &str) -> ApiResult<Vec<SelectorTerm>> {
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
    };
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                SelectorTerm::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once('=') {
                SelectorTerm::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else {
                SelectorTerm::Exists(term.to_owned())
            };
            let key = match &parsed {
                SelectorTerm::Equals(k, _)
                | SelectorTerm::NotEquals(k, _)
                | SelectorTerm::Exists(k) => k,
            };
            if key_ok(key) {
                Ok(parsed)
            } else {
                Err(ApiError::Invalid(validate::ValidationError::one(
                    "label_selector",
                    format!("{term:?} is not key=value, key!=value or key"),
                )))
            }
        })
        .collect()
}

/// Whether a spec's labels satisfy every term.
pub fn matches_selector(spec: &SandboxSpec, terms: &[SelectorTerm]) -> bool {
    terms.iter().all(|t| match t {
        SelectorTerm::Equals(k, v) => spec.labels.get(k) == Some(v),
        SelectorTerm::NotEquals(k, v) => spec.labels.get(k) != Some(v),
        SelectorTerm::Exists(k) => spec.labels.contains_key(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let mut spec = SandboxSpec::default();
        spec.labels.insert("team".into(), "a".into());
        let cases: &[(&str, Option<bool>)] = &[
            ("", Some(true)),
            ("team=a", Some(true)),
            ("team=b", Some(false)),
            ("team!=b", Some(true)),
            ("team", Some(true)),
            ("other", Some(false)),
            ("team=a, other!=x", Some(true)),
            ("(", None),
            ("=a", None),
        ];
        for (sel, want) in cases {
            let got = parse_selector(sel)
                .ok()
                .map(|t| matches_selector(&spec, &t));
            assert_eq!(got, *want, "{sel}");
        }
    }
}
