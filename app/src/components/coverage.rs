//! The backup coverage summary above the inventory table: how many PVCs (and how much capacity) are
//! never backed up, stale, overdue, unbound or ReadWriteOncePod-in-use, each a link that filters the
//! table to them (the flag as the filter text, the rest of the view kept).

use leptos::prelude::*;
use nkvm_engine::domain::format::format_bytes;
use nkvm_engine::domain::pvc::Flag;
use serde::{Deserialize, Serialize};

use crate::model::PvcRecord;
use crate::table::TableState;

/// The flags the summary counts, in the order shown, with their label.
const COUNTED: [(Flag, &str); 5] = [
    (Flag::NeverBackedUp, "never backed up"),
    (Flag::StaleBackup, "stale"),
    (Flag::Overdue, "overdue"),
    (Flag::Unbound, "unbound"),
    (Flag::RwopInUse, "RWOP in use"),
];

/// How many PVCs carry one counted flag, and their summed capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagCount {
    pub flag: Flag,
    pub count: usize,
    pub bytes: u64,
}

/// Count and summed capacity of the rows carrying each counted flag, in the order shown.
#[must_use]
pub fn coverage(rows: &[PvcRecord]) -> Vec<FlagCount> {
    COUNTED
        .iter()
        .map(|&(flag, _)| {
            let flagged = rows.iter().filter(|r| r.flags.contains(&flag));
            let (count, bytes) = flagged.fold((0, 0u64), |(n, b), r| {
                (n + 1, b.saturating_add(r.pvc.capacity_bytes.unwrap_or(0)))
            });
            FlagCount { flag, count, bytes }
        })
        .collect()
}

/// One link per counted flag; a flag no PVC carries is shown without a link.
#[component]
pub fn CoverageSummary(rows: Vec<FlagCount>, state: Memo<TableState>) -> impl IntoView {
    let items = rows
        .into_iter()
        .map(|FlagCount { flag, count, bytes }| {
            let label = COUNTED
                .iter()
                .find_map(|&(counted, label)| (counted == flag).then_some(label))
                .unwrap_or_else(|| flag.as_str());
            let text = if bytes > 0 {
                format!("{count} {label} ({})", format_bytes(bytes))
            } else {
                format!("{count} {label}")
            };
            if count == 0 {
                return view! { <li class="none">{text}</li> }.into_any();
            }
            let href = move || {
                let mut view = state.get();
                flag.as_str().clone_into(&mut view.query);
                view.limit = crate::table::PAGE_ROWS;
                format!("/?{}", view.to_query())
            };
            view! {
                <li>
                    <a href=href data-flag=flag.as_str()>
                        {text}
                    </a>
                </li>
            }
            .into_any()
        })
        .collect_view();
    view! {
        <nav class="coverage" aria-label="Backup coverage" data-testid="coverage">
            <ul>{items}</ul>
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PvcRecord;

    fn row(flags: &[Flag], bytes: Option<u64>) -> PvcRecord {
        let mut record: PvcRecord = serde_json::from_value(serde_json::json!({
            "namespace": "shop", "name": "data", "uid": "u", "phase": "Bound",
            "capacity": null, "capacity_bytes": bytes, "storage_class": null,
            "access_modes": [], "volume_name": null, "owner_kind": "None", "owner_name": "",
            "owners": [], "consumers": [], "consumer_nodes": [], "last_success_at": null,
            "last_verified_at": null, "flags": [], "labels": {}, "annotations": {}
        }))
        .expect("a record");
        record.flags = flags.to_vec();
        record
    }

    #[test]
    fn counts_and_capacity_per_flag() {
        let rows = vec![
            row(&[Flag::NeverBackedUp, Flag::Unbound], Some(1 << 30)),
            row(&[Flag::NeverBackedUp], Some(1 << 30)),
            row(&[Flag::StaleBackup], None),
            row(&[], Some(5)),
        ];
        let summary = coverage(&rows);
        let by_flag = |f: Flag| {
            summary
                .iter()
                .find(|s| s.flag == f)
                .map(|s| (s.count, s.bytes))
                .unwrap()
        };
        assert_eq!(by_flag(Flag::NeverBackedUp), (2, 2 << 30));
        assert_eq!(by_flag(Flag::StaleBackup), (1, 0));
        assert_eq!(by_flag(Flag::Unbound), (1, 1 << 30));
        assert_eq!(by_flag(Flag::Overdue), (0, 0));
        assert_eq!(by_flag(Flag::RwopInUse), (0, 0));
    }
}
