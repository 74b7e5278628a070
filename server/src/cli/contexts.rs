//! `nkvm contexts`: the kubeconfig's contexts, the current one marked.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use nkvm_engine::connection;

use super::{Output, table};
use crate::config::GlobalOptions;

pub fn run(global: &GlobalOptions, output: Output) -> anyhow::Result<ExitCode> {
    if global.in_cluster {
        bail!("--in-cluster uses the pod's service account, which has no kubeconfig contexts");
    }
    let contexts = connection::list_contexts(&global.connection_source()?)
        .context("cannot list kubeconfig contexts")?;
    match output {
        Output::Json => super::emit_json(&contexts)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = contexts
                .contexts
                .iter()
                .map(|c| {
                    let current = contexts.current.as_deref() == Some(c.name.as_str());
                    vec![
                        if current { "*" } else { "" }.to_owned(),
                        c.name.clone(),
                        c.cluster.clone(),
                        table::or_dash(c.user.as_deref()),
                        table::or_dash(c.namespace.as_deref()),
                    ]
                })
                .collect();
            super::emit(&table::render(
                &["CURRENT", "NAME", "CLUSTER", "USER", "NAMESPACE"],
                &rows,
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
