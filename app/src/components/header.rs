//! The page header: product name, navigation and the cluster this browser session uses, always
//! visible.

use leptos::prelude::*;

use crate::api::{cluster_info, user_message, whoami};

/// Header with the active cluster (auth source, context, API server) from `cluster_info`.
#[component]
pub fn ClusterHeader() -> impl IntoView {
    let info = Resource::new(|| (), |()| cluster_info());
    let user = Resource::new(|| (), |()| whoami());
    view! {
        <header class="site-header">
            <a class="brand" href="/">
                "nkvm"
            </a>
            <nav aria-label="Main">
                <ul>
                    <li>
                        <a href="/">"Inventory"</a>
                    </li>
                    <li>
                        <a href="/history">"History"</a>
                    </li>
                    <li>
                        <a href="/schedules">"Schedules"</a>
                    </li>
                    <li>
                        <a href="/connect">"Connection"</a>
                    </li>
                    <li>
                        <a href="/audit">"Audit"</a>
                    </li>
                </ul>
            </nav>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    user.await
                        .ok()
                        .map(|user| {
                            view! {
                                <form class="user" method="post" action="/auth/logout">
                                    <span data-testid="user-name">{user.name}</span>
                                    " ("
                                    <span data-testid="user-role">{user.role}</span>
                                    ") "
                                    <button type="submit">"Log out"</button>
                                </form>
                            }
                        })
                })}
            </Suspense>
            <Suspense fallback=|| {
                view! { <p class="cluster">"Connecting to the cluster…"</p> }
            }>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(info) => {
                            let context = info.context.unwrap_or_else(|| "—".to_owned());
                            view! {
                                <section class="cluster" aria-label="Active cluster">
                                    <dl>
                                        <div>
                                            <dt>"API server"</dt>
                                            <dd data-testid="cluster-server">{info.server}</dd>
                                        </div>
                                        <div>
                                            <dt>"Context"</dt>
                                            <dd data-testid="cluster-context">{context}</dd>
                                        </div>
                                        <div>
                                            <dt>"Credentials"</dt>
                                            <dd data-testid="cluster-source">{info.source}</dd>
                                        </div>
                                    </dl>
                                </section>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <p class="cluster error" role="alert">
                                    "No cluster connection: "
                                    {user_message(&error)}
                                    " "
                                    <a href="/connect">"Connect"</a>
                                </p>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </header>
    }
}
