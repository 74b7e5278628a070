//! Pure client-side filtering of inventory rows: a query of whitespace-separated terms, each of which
//! must appear (case-insensitively) in one of the row's displayed fields.

use crate::model::PvcRecord;

/// A parsed filter query: lowercase terms, all of which must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<String>,
}

impl Filter {
    /// Parses the text of the filter box. An empty or blank query matches every row.
    #[must_use]
    pub fn parse(query: &str) -> Self {
        Self {
            terms: query.split_whitespace().map(str::to_lowercase).collect(),
        }
    }

    /// True when the query has no terms (every row matches).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// True when every term occurs in `haystack` (as built by [`haystack`]).
    #[must_use]
    pub fn matches(&self, haystack: &str) -> bool {
        self.terms
            .iter()
            .all(|term| haystack.contains(term.as_str()))
    }
}

/// The lowercase text a row is searched in: namespace, name, `namespace/name`, phase, storage class,
/// access modes, volume, owner kind and name, every resolved owner (`Kind/name`), consumers and flags.
/// Fields are separated by a newline so a term never matches across two fields.
#[must_use]
pub fn haystack(row: &PvcRecord) -> String {
    let mut parts: Vec<&str> = vec![
        &row.pvc.namespace,
        &row.pvc.name,
        &row.pvc.phase,
        &row.owner_kind,
        &row.owner_name,
    ];
    parts.extend(row.pvc.storage_class.as_deref());
    parts.extend(row.pvc.volume_name.as_deref());
    parts.extend(row.pvc.capacity.as_deref());
    parts.extend(row.pvc.access_modes.iter().map(String::as_str));
    parts.extend(row.consumers.iter().map(String::as_str));
    parts.extend(row.flags.iter().map(|f| f.as_str()));
    let mut text = parts.join("\n");
    text.push('\n');
    text.push_str(&format!("{}/{}", row.pvc.namespace, row.pvc.name));
    for owner in &row.owners {
        text.push('\n');
        text.push_str(&format!("{}/{}", owner.kind, owner.name));
    }
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use nkvm_engine::domain::{Flag, Owner, PvcSummary};

    use super::*;

    fn row(namespace: &str, name: &str) -> PvcRecord {
        PvcRecord {
            pvc: PvcSummary {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid: "uid-1".to_owned(),
                phase: "Bound".to_owned(),
                capacity: Some("1Gi".to_owned()),
                capacity_bytes: Some(1 << 30),
                storage_class: Some("local-path".to_owned()),
                access_modes: vec!["ReadWriteOnce".to_owned()],
                volume_name: Some("pv-1".to_owned()),
            },
            owner_kind: "Deployment".to_owned(),
            owner_name: "web".to_owned(),
            owners: vec![Owner::new("Deployment", "web")],
            consumers: vec!["web-7d9c-abcde".to_owned()],
            consumer_nodes: vec!["node-1".to_owned()],
            last_success_at: None,
            last_verified_at: None,
            flags: vec![Flag::NeverBackedUp],
            labels: std::collections::BTreeMap::new(),
            annotations: std::collections::BTreeMap::new(),
        }
    }

    fn hit(query: &str, row: &PvcRecord) -> bool {
        Filter::parse(query).matches(&haystack(row))
    }

    #[test]
    fn blank_query_matches_everything() {
        let r = row("shop", "data-web");
        assert!(Filter::parse("   ").is_empty());
        assert!(hit("", &r));
        assert!(hit(" \t ", &r));
    }

    #[test]
    fn terms_are_case_insensitive_and_all_required() {
        let r = row("shop", "data-web");
        assert!(hit("SHOP", &r));
        assert!(hit("shop deployment", &r));
        assert!(!hit("shop statefulset", &r));
    }

    #[test]
    fn matches_each_displayed_field() {
        let r = row("shop", "data-web");
        for query in [
            "data-web",
            "bound",
            "local-path",
            "readwriteonce",
            "pv-1",
            "web-7d9c",
            "never-backed",
            "1gi",
            "shop/data-web",
            "deployment/web",
        ] {
            assert!(hit(query, &r), "{query}");
        }
        assert!(
            !hit("node-1", &r),
            "nodes are not displayed, so not searched"
        );
    }

    #[test]
    fn a_term_never_spans_two_fields() {
        let r = row("shop", "data-web");
        // "shop" then "data-web" are adjacent fields; joined without a separator they would match.
        assert!(!hit("shopdata", &r));
    }

    #[test]
    fn namespace_slash_name_is_exact_about_the_pair() {
        let a = row("shop", "data-web");
        let b = row("blog", "data-web");
        assert!(hit("shop/data-web", &a));
        assert!(!hit("shop/data-web", &b));
    }
}
