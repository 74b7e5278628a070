//! The inventory table's view state (text filter, namespace and owner-kind filters, sort column and
//! direction, how many rows to show) as URL query parameters, and the pure function that turns rows
//! plus that state into the ordered list of rows to display. Shared by the server render and the
//! browser, so both show the same rows for the same URL.

use std::cmp::Ordering;

use crate::filter::{Filter, haystack};
use crate::format::parse_rfc3339_unix;
use crate::model::{FirstScreen, PvcRecord};

/// Rows shown per step: the first page, and each "show more".
pub const PAGE_ROWS: usize = 200;

nkvm_engine::text_enum! {
    /// A sortable column, by its name in the URL.
    #[derive(Default)]
    pub enum SortKey("sort column") {
        #[default]
        Namespace => "namespace",
        Name => "name",
        Phase => "phase",
        Capacity => "capacity",
        StorageClass => "class",
        Owner => "owner",
        LastBackup => "backup",
    }
}

impl SortKey {
    /// The column named `text`, if any.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// Everything that decides which rows are displayed, in which order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableState {
    /// Free text (see [`Filter`]).
    pub query: String,
    /// Only this namespace (empty: all).
    pub namespace: String,
    /// Only PVCs whose owner kind is this (`Deployment`, `StatefulSet`, `None`, `Multiple`, …;
    /// empty: all).
    pub owner_kind: String,
    pub sort: SortKey,
    pub descending: bool,
    /// Rows displayed (a multiple of [`PAGE_ROWS`]).
    pub limit: usize,
}

impl TableState {
    /// Reads `q`, `ns`, `kind`, `sort`, `dir` and `show` from query parameters; unknown or bad
    /// values fall back to the defaults.
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> Self {
        let limit = get("show")
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(PAGE_ROWS, |n| n.clamp(PAGE_ROWS, 1_000_000));
        Self {
            query: get("q").unwrap_or_default(),
            namespace: get("ns").unwrap_or_default(),
            owner_kind: get("kind").unwrap_or_default(),
            sort: get("sort")
                .and_then(|s| SortKey::parse(&s))
                .unwrap_or_default(),
            descending: get("dir").is_some_and(|d| d == "desc"),
            limit,
        }
    }

    /// The query string (without `?`) that reproduces this state; defaults are left out.
    #[must_use]
    pub fn to_query(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !self.query.is_empty() {
            pairs.push(("q", self.query.clone()));
        }
        if !self.namespace.is_empty() {
            pairs.push(("ns", self.namespace.clone()));
        }
        if !self.owner_kind.is_empty() {
            pairs.push(("kind", self.owner_kind.clone()));
        }
        if self.sort != SortKey::default() {
            pairs.push(("sort", self.sort.as_str().to_owned()));
        }
        if self.descending {
            pairs.push(("dir", "desc".to_owned()));
        }
        if self.limit > PAGE_ROWS {
            pairs.push(("show", self.limit.to_string()));
        }
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", encode_component(&v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The state after a click on `key`'s header: the same column flips direction, another one
    /// sorts ascending.
    #[must_use]
    pub fn sorted_by(&self, key: SortKey) -> Self {
        let mut next = self.clone();
        if self.sort == key {
            next.descending = !self.descending;
        } else {
            next.sort = key;
            next.descending = false;
        }
        next
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
#[must_use]
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The owner kind used by the kind filter: `Multiple[...]` counts as `Multiple`.
#[must_use]
pub fn owner_kind_group(kind: &str) -> &str {
    if kind.starts_with("Multiple") {
        "Multiple"
    } else {
        kind
    }
}

/// Indices of the rows that pass the filters, in display order (all of them; the caller shows the
/// first `limit`). `haystacks[i]` is [`crate::filter::haystack`] of `rows[i]`.
#[must_use]
pub fn visible_rows(rows: &[PvcRecord], haystacks: &[String], state: &TableState) -> Vec<usize> {
    let filter = Filter::parse(&state.query);
    let mut indices: Vec<usize> = (0..rows.len())
        .filter(|&i| {
            let row = &rows[i];
            (state.namespace.is_empty() || row.pvc.namespace == state.namespace)
                && (state.owner_kind.is_empty()
                    || owner_kind_group(&row.owner_kind) == state.owner_kind)
                && haystacks.get(i).is_none_or(|h| filter.matches(h))
        })
        .collect();
    indices.sort_by(|&a, &b| {
        let order = compare(&rows[a], &rows[b], state.sort);
        let order = if state.descending {
            order.reverse()
        } else {
            order
        };
        // Ties keep namespace/name order, whatever the direction.
        order.then_with(|| by_key(&rows[a], &rows[b]))
    });
    indices
}

fn by_key(a: &PvcRecord, b: &PvcRecord) -> Ordering {
    a.pvc
        .namespace
        .cmp(&b.pvc.namespace)
        .then_with(|| a.pvc.name.cmp(&b.pvc.name))
}

/// Compares on one column. Missing values (no capacity, no class, never backed up) sort first in
/// ascending order.
fn compare(a: &PvcRecord, b: &PvcRecord, key: SortKey) -> Ordering {
    match key {
        SortKey::Namespace => by_key(a, b),
        SortKey::Name => a.pvc.name.cmp(&b.pvc.name),
        SortKey::Phase => a.pvc.phase.cmp(&b.pvc.phase),
        SortKey::Capacity => a.pvc.capacity_bytes.cmp(&b.pvc.capacity_bytes),
        SortKey::StorageClass => a.pvc.storage_class.cmp(&b.pvc.storage_class),
        SortKey::Owner => a
            .owner_kind
            .cmp(&b.owner_kind)
            .then_with(|| a.owner_name.cmp(&b.owner_name)),
        SortKey::LastBackup => {
            let at = |row: &PvcRecord| row.last_success_at.as_deref().and_then(parse_rfc3339_unix);
            at(a).cmp(&at(b))
        }
    }
}

/// The first screen of `rows` for `state`: only the rows `state` shows (filtered, sorted, at most
/// `state.limit`, cloned), in display order, with the counts, filter menus and coverage summary of
/// the whole inventory. This is what the server renders and the page hydrates from, so that the
/// first load carries a screenful of rows instead of every PVC of the cluster; the inventory itself
/// is only borrowed (shared by every page load at the same time).
#[must_use]
pub fn first_screen(rows: &[PvcRecord], state: &TableState) -> (Vec<PvcRecord>, FirstScreen) {
    let haystacks: Vec<String> = rows.iter().map(haystack).collect();
    let order = visible_rows(rows, &haystacks, state);
    let (namespaces, kinds) = facets(rows);
    let screen = FirstScreen {
        total: rows.len(),
        matched: order.len(),
        namespaces,
        kinds,
        coverage: crate::components::coverage::coverage(rows),
    };
    let shown = order
        .iter()
        .take(state.limit)
        .map(|&index| rows[index].clone())
        .collect();
    (shown, screen)
}

/// The distinct namespaces and owner-kind groups of the rows, sorted, for the filter menus.
#[must_use]
pub fn facets(rows: &[PvcRecord]) -> (Vec<String>, Vec<String>) {
    let mut namespaces: Vec<String> = rows.iter().map(|r| r.pvc.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let mut kinds: Vec<String> = rows
        .iter()
        .map(|r| owner_kind_group(&r.owner_kind).to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    (namespaces, kinds)
}

#[cfg(test)]
mod tests {
    use nkvm_engine::domain::PvcSummary;

    use super::*;
    use crate::filter::haystack;

    fn row(
        ns: &str,
        name: &str,
        kind: &str,
        bytes: Option<u64>,
        backup: Option<&str>,
    ) -> PvcRecord {
        PvcRecord {
            pvc: PvcSummary {
                namespace: ns.into(),
                name: name.into(),
                uid: format!("{ns}-{name}"),
                phase: "Bound".into(),
                capacity: bytes.map(|b| b.to_string()),
                capacity_bytes: bytes,
                storage_class: Some("nkvm-local".into()),
                access_modes: vec!["ReadWriteOnce".into()],
                volume_name: None,
            },
            owner_kind: kind.into(),
            owner_name: format!("{name}-owner"),
            owners: vec![],
            consumers: vec![],
            consumer_nodes: vec![],
            last_success_at: backup.map(str::to_owned),
            last_verified_at: None,
            flags: vec![],
            labels: std::collections::BTreeMap::new(),
            annotations: std::collections::BTreeMap::new(),
        }
    }

    fn rows() -> Vec<PvcRecord> {
        vec![
            row(
                "shop",
                "db",
                "StatefulSet",
                Some(10),
                Some("2026-11-01T00:00:00Z"),
            ),
            row("shop", "cache", "Deployment", Some(5), None),
            row(
                "web",
                "assets",
                "Deployment",
                Some(20),
                Some("2026-11-20T00:00:00Z"),
            ),
            row(
                "web",
                "shared",
                "Multiple[Deployment/a, Deployment/b]",
                None,
                None,
            ),
            row("ops", "logs", "None", Some(5), Some("2026-10-01T00:00:00Z")),
        ]
    }

    fn names(rows: &[PvcRecord], state: &TableState) -> Vec<String> {
        let hay: Vec<String> = rows.iter().map(haystack).collect();
        visible_rows(rows, &hay, state)
            .into_iter()
            .map(|i| key(&rows[i]))
            .collect()
    }

    fn key(row: &PvcRecord) -> String {
        format!("{}/{}", row.pvc.namespace, row.pvc.name)
    }

    #[test]
    fn default_order_is_namespace_then_name() {
        let rows = rows();
        assert_eq!(
            names(&rows, &TableState::default()),
            [
                "ops/logs",
                "shop/cache",
                "shop/db",
                "web/assets",
                "web/shared"
            ]
        );
    }

    #[test]
    fn filters_combine() {
        let rows = rows();
        let state = TableState {
            namespace: "web".into(),
            ..TableState::default()
        };
        assert_eq!(names(&rows, &state), ["web/assets", "web/shared"]);
        let state = TableState {
            owner_kind: "Deployment".into(),
            ..TableState::default()
        };
        assert_eq!(names(&rows, &state), ["shop/cache", "web/assets"]);
        let state = TableState {
            owner_kind: "Multiple".into(),
            ..TableState::default()
        };
        assert_eq!(names(&rows, &state), ["web/shared"]);
        let state = TableState {
            owner_kind: "Deployment".into(),
            query: "SHOP".into(),
            ..TableState::default()
        };
        assert_eq!(names(&rows, &state), ["shop/cache"]);
        let state = TableState {
            namespace: "nowhere".into(),
            ..TableState::default()
        };
        assert!(names(&rows, &state).is_empty());
    }

    #[test]
    fn sorts_by_every_column_with_stable_ties() {
        let rows = rows();
        let by = |key, descending| TableState {
            sort: key,
            descending,
            ..TableState::default()
        };
        assert_eq!(
            names(&rows, &by(SortKey::Capacity, false)),
            [
                "web/shared",
                "ops/logs",
                "shop/cache",
                "shop/db",
                "web/assets"
            ]
        );
        // Descending reverses the values but not the namespace/name order of ties.
        assert_eq!(
            names(&rows, &by(SortKey::Capacity, true)),
            [
                "web/assets",
                "shop/db",
                "ops/logs",
                "shop/cache",
                "web/shared"
            ]
        );
        assert_eq!(
            names(&rows, &by(SortKey::LastBackup, true)),
            [
                "web/assets",
                "shop/db",
                "ops/logs",
                "shop/cache",
                "web/shared"
            ]
        );
        assert_eq!(
            names(&rows, &by(SortKey::Name, false)),
            [
                "web/assets",
                "shop/cache",
                "shop/db",
                "ops/logs",
                "web/shared"
            ]
        );
        assert_eq!(
            names(&rows, &by(SortKey::Owner, false)),
            [
                "web/assets",
                "shop/cache",
                "web/shared",
                "ops/logs",
                "shop/db"
            ],
            "kind (Deployment < Multiple < None < StatefulSet), then owner name"
        );
        assert_eq!(names(&rows, &by(SortKey::Phase, false)).len(), 5);
        assert_eq!(names(&rows, &by(SortKey::StorageClass, true)).len(), 5);
    }

    #[test]
    fn state_round_trips_through_the_query_string() {
        let state = TableState {
            query: "a b/c&d".into(),
            namespace: "shop".into(),
            owner_kind: "StatefulSet".into(),
            sort: SortKey::LastBackup,
            descending: true,
            limit: 400,
        };
        let query = state.to_query();
        assert_eq!(
            query,
            "q=a%20b%2Fc%26d&ns=shop&kind=StatefulSet&sort=backup&dir=desc&show=400"
        );
        let pairs: Vec<(String, String)> = query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.to_owned(), decode(v))
            })
            .collect();
        let parsed = TableState::from_query(|key| {
            pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        });
        assert_eq!(parsed, state);
        assert_eq!(TableState::default().to_query(), "");
    }

    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn bad_query_values_fall_back_to_defaults() {
        let state = TableState::from_query(|key| match key {
            "sort" => Some("drop table".into()),
            "show" => Some("-5".into()),
            "dir" => Some("sideways".into()),
            _ => None,
        });
        assert_eq!(
            state,
            TableState {
                limit: PAGE_ROWS,
                ..TableState::default()
            }
        );
        let huge = TableState::from_query(|key| (key == "show").then(|| "99999999999".into()));
        assert_eq!(huge.limit, 1_000_000);
    }

    #[test]
    fn header_clicks_toggle_direction() {
        let state = TableState::default();
        let by_name = state.sorted_by(SortKey::Name);
        assert_eq!((by_name.sort, by_name.descending), (SortKey::Name, false));
        let again = by_name.sorted_by(SortKey::Name);
        assert!(again.descending);
        let other = again.sorted_by(SortKey::Capacity);
        assert_eq!((other.sort, other.descending), (SortKey::Capacity, false));
    }

    #[test]
    fn facets_are_sorted_and_grouped() {
        let (namespaces, kinds) = facets(&rows());
        assert_eq!(namespaces, ["ops", "shop", "web"]);
        assert_eq!(kinds, ["Deployment", "Multiple", "None", "StatefulSet"]);
    }

    fn keys(rows: &[PvcRecord]) -> Vec<String> {
        rows.iter().map(key).collect()
    }

    #[test]
    fn the_first_screen_is_the_rows_the_view_shows_with_totals_of_everything() {
        let mut all = rows();
        all[1].flags = vec![nkvm_engine::domain::Flag::NeverBackedUp];
        let state = TableState {
            sort: SortKey::Capacity,
            descending: true,
            limit: 2,
            ..TableState::default()
        };
        let (shown, info) = first_screen(&all, &state);
        // The rows, in display order and cut at the limit, are what the whole list shows first.
        assert_eq!(keys(&shown), names(&all, &state)[..2]);
        assert_eq!(keys(&shown), ["web/assets", "shop/db"]);
        assert_eq!((info.total, info.matched), (5, 5));
        // Menus and coverage count the whole inventory, not the two rows.
        assert_eq!(info.namespaces, ["ops", "shop", "web"]);
        assert_eq!(
            info.kinds,
            ["Deployment", "Multiple", "None", "StatefulSet"]
        );
        assert_eq!(info.coverage, crate::components::coverage::coverage(&all));
        assert_eq!(info.coverage[0].count, 1);
    }

    #[test]
    fn a_filtered_first_screen_counts_the_matches_and_keeps_every_menu_entry() {
        let state = TableState {
            namespace: "shop".into(),
            limit: PAGE_ROWS,
            ..TableState::default()
        };
        let (shown, info) = first_screen(&rows(), &state);
        assert_eq!(keys(&shown), ["shop/cache", "shop/db"]);
        assert_eq!((info.total, info.matched), (5, 2));
        assert_eq!(info.namespaces, ["ops", "shop", "web"]);
        let (none, info) = first_screen(
            &rows(),
            &TableState {
                query: "zz-nothing".into(),
                limit: PAGE_ROWS,
                ..TableState::default()
            },
        );
        assert!(none.is_empty());
        assert_eq!((info.total, info.matched), (5, 0));
    }
}
