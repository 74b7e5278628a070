//! `nkvm inventory`: one scan of the PVCs in scope, printed as a table or as the JSON contract.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use nkvm_engine::domain::format::access_mode_short;
use nkvm_engine::domain::{Flag, PvcRecord};
use nkvm_engine::inventory::{self, Inventory, Scope};

use super::Output;
use super::table::{self, Column, Layout, col, wide};
use crate::config::GlobalOptions;

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Namespace to scan (repeatable) [default: every allowed namespace]
    #[arg(short = 'n', long = "namespace", value_name = "NS", value_parser = crate::config::namespace_arg)]
    pub namespaces: Vec<String>,

    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Print tables without their header line
    #[arg(long)]
    pub no_headers: bool,

    /// Flag a PVC `stale-backup` when its last successful backup is older than this many hours
    /// (0 disables the flag)
    #[arg(
        long,
        env = "NKVM_STALE_AFTER_HOURS",
        value_name = "HOURS",
        default_value_t = 24
    )]
    pub stale_after_hours: u64,
}

pub async fn run(global: &GlobalOptions, args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let options = global.inventory_options(args.namespaces);
    // Checked before connecting, so that a bad filter fails fast without touching the cluster.
    let scope = inventory::resolve_scope(&options)?;
    let cluster = super::connect(global).await?;
    let store = super::read_history(global).await?.map(|(_, store)| store);
    let stale_after = (args.stale_after_hours > 0)
        .then(|| std::time::Duration::from_secs(args.stale_after_hours.saturating_mul(3600)));
    let history = inventory::HistoryJoin {
        store: store.as_ref(),
        stale_after,
        now: jiff::Timestamp::now(),
    };
    let inventory = inventory::scan_with_history(&cluster.client, &options, history)
        .await
        .context("inventory failed");
    if let Some(store) = store {
        store.close().await;
    }
    let inventory = inventory?;
    tracing::info!(
        pvcs = inventory.pvcs.len(),
        refused = inventory.refused.len(),
        api_requests = inventory.api_requests,
        "inventory done"
    );
    for refusal in &inventory.refused {
        eprintln!(
            "warning: namespace {} not readable: {}",
            refusal.namespace, refusal.message
        );
    }
    if nothing_readable(&scope, &inventory) {
        bail!(
            "no namespace could be read ({} refused); see the warnings above",
            inventory.refused.len()
        );
    }
    match args.output {
        Output::Json => super::emit_json(&inventory.pvcs)?,
        Output::Table | Output::Wide => super::emit(&render_table(
            &inventory.pvcs,
            args.output.layout(args.no_headers),
            jiff::Timestamp::now(),
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// True when every namespace in scope was refused (an all-namespaces scan fails instead of refusing).
fn nothing_readable(scope: &Scope, inventory: &Inventory) -> bool {
    match scope {
        Scope::AllNamespaces => false,
        Scope::Namespaces(names) => !names.is_empty() && inventory.refused.len() >= names.len(),
    }
}

const COLUMNS: [Column; 13] = [
    col("NAMESPACE"),
    col("NAME"),
    col("PHASE"),
    col("CAPACITY"),
    wide("STORAGECLASS"),
    wide("ACCESS"),
    wide("VOLUME"),
    col("OWNER"),
    col("CONSUMERS"),
    col("LAST BACKUP"),
    wide("LAST SUCCESS AT"),
    col("FLAGS"),
    wide("UID"),
];

fn render_table(records: &[PvcRecord], layout: Layout, now: jiff::Timestamp) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let modes: Vec<&str> = r
                .pvc
                .access_modes
                .iter()
                .map(|m| access_mode_short(m))
                .collect();
            let flags: Vec<&str> = r.flags.iter().map(|f| f.as_str()).collect();
            let owner = if r.owner_kind == r.owner_name {
                r.owner_kind.clone()
            } else {
                format!("{}/{}", r.owner_kind, r.owner_name)
            };
            let consumers = if layout.wide {
                table::list(&r.consumers)
            } else {
                table::short_list(&r.consumers, 1)
            };
            let last_backup = match &r.last_success_at {
                Some(at) => {
                    super::age_of(at, now).map_or_else(|| at.clone(), |age| format!("{age} ago"))
                }
                None if r.has_flag(Flag::NeverBackedUp) => "never".to_owned(),
                None => "unknown".to_owned(),
            };
            vec![
                r.pvc.namespace.clone(),
                r.pvc.name.clone(),
                r.pvc.phase.clone(),
                table::or_dash(r.pvc.capacity.as_deref()),
                table::or_dash(r.pvc.storage_class.as_deref()),
                table::list(&modes),
                table::or_dash(r.pvc.volume_name.as_deref()),
                if layout.wide {
                    owner
                } else {
                    table::shorten(&owner, 40)
                },
                consumers,
                last_backup,
                table::or_dash(r.last_success_at.as_deref()),
                table::list(&flags),
                r.pvc.uid.clone(),
            ]
        })
        .collect();
    table::render_columns(&COLUMNS, &rows, layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nkvm_engine::domain::{NamespaceRefusal, Owner, PvcSummary};

    fn record(name: &str) -> PvcRecord {
        PvcRecord {
            pvc: PvcSummary {
                namespace: "shop".to_owned(),
                name: name.to_owned(),
                uid: "u".to_owned(),
                phase: "Bound".to_owned(),
                capacity: Some("1Gi".to_owned()),
                capacity_bytes: Some(1 << 30),
                storage_class: None,
                access_modes: vec!["ReadWriteOnce".to_owned(), "ReadWriteOncePod".to_owned()],
                volume_name: Some("pv-1".to_owned()),
            },
            owner_kind: "Deployment".to_owned(),
            owner_name: "web".to_owned(),
            owners: vec![Owner::new("Deployment", "web")],
            consumers: vec!["web-1".to_owned(), "web-2".to_owned()],
            consumer_nodes: vec![],
            last_success_at: None,
            last_verified_at: None,
            flags: vec![],
            labels: std::collections::BTreeMap::new(),
            annotations: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn table_shows_one_aligned_row_per_pvc() {
        let now: jiff::Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let mut backed_up = record("data");
        backed_up.last_success_at = Some("2026-11-30T09:00:00Z".to_owned());
        let mut never = record("cache-long-name");
        never.flags = vec![Flag::NeverBackedUp];
        let records = [backed_up, never, record("no-history")];
        let text = render_table(&records, Layout::default(), now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("NAMESPACE  NAME             PHASE"));
        assert_eq!(
            lines[1],
            "shop       data             Bound  1Gi       Deployment/web  web-1,+1   3h ago       -"
        );
        assert!(lines[2].contains(" never "), "{}", lines[2]);
        assert!(lines[3].contains(" unknown "), "{}", lines[3]);

        let all = render_table(
            &records,
            Layout {
                wide: true,
                no_headers: false,
            },
            now,
        );
        let header = all.lines().next().unwrap();
        for column in ["STORAGECLASS", "ACCESS", "VOLUME", "LAST SUCCESS AT", "UID"] {
            assert!(header.contains(column), "{header}");
        }
        assert!(all.contains("RWO,RWOP"), "{all}");
        assert!(all.contains("web-1,web-2"), "{all}");
    }

    #[test]
    fn nothing_readable_only_when_every_scoped_namespace_is_refused() {
        let refusal = |ns: &str| NamespaceRefusal {
            namespace: ns.to_owned(),
            status: Some(403),
            message: String::new(),
        };
        let inventory = |refused: Vec<NamespaceRefusal>| Inventory {
            pvcs: vec![],
            refused,
            api_requests: 0,
        };
        let two = Scope::Namespaces(vec!["a".to_owned(), "b".to_owned()]);
        assert!(!nothing_readable(&two, &inventory(vec![refusal("a")])));
        assert!(nothing_readable(
            &two,
            &inventory(vec![refusal("a"), refusal("b")])
        ));
        assert!(!nothing_readable(&Scope::AllNamespaces, &inventory(vec![])));
        assert!(!nothing_readable(
            &Scope::Namespaces(vec![]),
            &inventory(vec![])
        ));
    }
}
