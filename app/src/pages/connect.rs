//! The connect page: which cluster this browser session uses, and how to switch — a context of the
//! server's kubeconfig, a pasted kubeconfig (kept in the server's memory for this session only), the
//! in-cluster service account, or back to the server's own connection. Plain forms: they work
//! without JavaScript (the server redirects back here), and reload the app when hydrated.

use leptos::prelude::*;

use crate::api::{PasteKubeconfig, UseContextFn, UseInCluster, UseServerDefault, connect_view};
use crate::components::alert::{error_alert, error_of};
use crate::model::{ClusterInfo, ConnectView};

/// After a successful switch in the browser: a full reload, so every view uses the new connection.
type Outcome = Option<Result<ClusterInfo, ServerFnError>>;

fn reload_on_success(value: impl Fn() -> Outcome + 'static) {
    Effect::new(move |_| {
        if matches!(value(), Some(Ok(_))) {
            let _ = window().location().set_href("/");
        }
    });
}

/// The connect page at `/connect`.
#[component]
pub fn ConnectPage() -> impl IntoView {
    let view_data = Resource::new(|| (), |()| connect_view());
    view! {
        <section class="connect" aria-labelledby="connect-heading">
            <h1 id="connect-heading">"Cluster connection"</h1>
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view_data.await {
                        Ok(data) => view! { <ConnectForms data /> }.into_any(),
                        Err(error) => error_alert(&error),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Active(active: ClusterInfo) -> impl IntoView {
    view! {
        <dl class="active-connection" data-testid="active-connection">
            <dt>"Credentials"</dt>
            <dd>{active.source}</dd>
            <dt>"Context"</dt>
            <dd>{active.context.unwrap_or_else(|| "—".to_owned())}</dd>
            <dt>"API server"</dt>
            <dd>{active.server}</dd>
        </dl>
    }
}

#[component]
fn ConnectForms(data: ConnectView) -> impl IntoView {
    let ConnectView {
        active,
        contexts,
        contexts_error,
        allow_pasted,
        in_cluster_available,
    } = data;
    let use_context = ServerAction::<UseContextFn>::new();
    let paste = ServerAction::<PasteKubeconfig>::new();
    let in_cluster = ServerAction::<UseInCluster>::new();
    let reset = ServerAction::<UseServerDefault>::new();
    reload_on_success(move || use_context.value().get());
    reload_on_success(move || paste.value().get());
    reload_on_success(move || in_cluster.value().get());
    reload_on_success(move || reset.value().get());

    let active_context = active.context.clone();
    let context_items = contexts
        .into_iter()
        .map(|context| {
            let current = active_context.as_deref() == Some(context.name.as_str())
                && active.source == "kubeconfig";
            let namespace = context
                .namespace
                .map(|ns| format!(", namespace {ns}"))
                .unwrap_or_default();
            view! {
                <li>
                    <ActionForm action=use_context>
                        <input type="hidden" name="context" value=context.name.clone() />
                        <span class="context-name">{context.name.clone()}</span>
                        <span class="hint">{format!(" (cluster {}{namespace})", context.cluster)}</span>
                        " "
                        <button type="submit" disabled=current>
                            {if current { "In use" } else { "Use" }}
                        </button>
                    </ActionForm>
                </li>
            }
        })
        .collect_view();

    view! {
        <h2>"In use by this browser session"</h2>
        <Active active />
        <ActionForm action=reset>
            <button type="submit">"Back to the server’s own connection"</button>
        </ActionForm>
        {error_of(move || reset.value().get())}

        <h2>"Contexts of the server’s kubeconfig"</h2>
        {contexts_error.map(|e| view! { <p class="hint">{e}</p> })}
        <ul class="contexts">{context_items}</ul>
        {error_of(move || use_context.value().get())}

        <h2>"Pasted kubeconfig"</h2>
        {if allow_pasted {
            view! {
                <p class="hint">
                    "Held in the server’s memory for this browser session only, never written to disk. "
                    "Refused when it would run a command (exec, auth-provider) or read a file: paste a "
                    "kubeconfig with embedded certificates or a token."
                </p>
                <ActionForm action=paste attr:class="paste">
                    <label for="kubeconfig-text">"Kubeconfig (YAML)"</label>
                    <textarea
                        id="kubeconfig-text"
                        name="kubeconfig"
                        rows="10"
                        autocomplete="off"
                        spellcheck="false"
                        required
                    ></textarea>
                    <label for="kubeconfig-context">"Context (empty: its current context)"</label>
                    <input id="kubeconfig-context" name="context" autocomplete="off" />
                    <button type="submit">"Connect"</button>
                </ActionForm>
                {error_of(move || paste.value().get())}
            }
                .into_any()
        } else {
            view! {
                <p class="hint">
                    "Disabled on this server. An administrator can allow it with "
                    <code>"--allow-pasted-kubeconfig"</code>
                    " (NKVM_ALLOW_PASTED_KUBECONFIG=true)."
                </p>
            }
                .into_any()
        }}

        <h2>"In-cluster service account"</h2>
        {if in_cluster_available {
            view! {
                <ActionForm action=in_cluster>
                    <button type="submit">"Use the pod’s service account"</button>
                </ActionForm>
                {error_of(move || in_cluster.value().get())}
            }
                .into_any()
        } else {
            view! { <p class="hint">"Not available: this server does not run in a pod."</p> }
                .into_any()
        }}
    }
}
