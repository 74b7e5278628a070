//! Reads one object by name with a LIST narrowed by a `metadata.name` field selector, so that nkvm
//! needs only `list` (granted for the inventory) and never `get` on pods and workload controllers.

use std::fmt::Debug;

use kube::Api;
use kube::api::{ListParams, PartialObjectMeta};
use serde::de::DeserializeOwned;

fn by_name(name: &str) -> ListParams {
    ListParams::default().fields(&format!("metadata.name={name}"))
}

/// The object called `name`, or `None` when there is none.
pub async fn object<K>(api: &Api<K>, name: &str) -> kube::Result<Option<K>>
where
    K: Clone + DeserializeOwned + Debug,
{
    let list = api.list(&by_name(name)).await?;
    Ok(list.items.into_iter().next())
}

/// The metadata of the object called `name`, or `None` when there is none.
pub async fn metadata<K>(api: &Api<K>, name: &str) -> kube::Result<Option<PartialObjectMeta<K>>>
where
    K: Clone + DeserializeOwned + Debug,
{
    let list = api.list_metadata(&by_name(name)).await?;
    Ok(list.items.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use k8s_openapi::api::core::v1::Pod;
    use kube::Client;
    use kube::client::Body;
    use serde_json::json;

    /// A fake apiserver answering pod lists: the pod `web-0` when the field selector names it,
    /// nothing otherwise; it records every query.
    fn client() -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let queries = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = queries.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                seen.lock().unwrap().push(format!(
                    "{} {}?{query}",
                    request.method(),
                    request.uri().path()
                ));
                let items = if query.contains("fieldSelector=metadata.name%3Dweb-0") {
                    vec![
                        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}),
                    ]
                } else {
                    Vec::new()
                };
                let body = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items});
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(service, "default"), queries)
    }

    #[tokio::test]
    async fn reads_one_object_or_none_with_a_list() {
        let (client, queries) = client();
        let api: Api<Pod> = Api::namespaced(client, "shop");
        let found = object(&api, "web-0").await.unwrap().unwrap();
        assert_eq!(found.metadata.name.as_deref(), Some("web-0"));
        assert!(object(&api, "web-1").await.unwrap().is_none());
        let meta = metadata(&api, "web-0").await.unwrap().unwrap();
        assert_eq!(meta.metadata.name.as_deref(), Some("web-0"));
        // Only LIST calls, never a GET of a single object.
        let queries = queries.lock().unwrap();
        assert_eq!(queries.len(), 3);
        assert!(
            queries
                .iter()
                .all(|q| q.starts_with("GET /api/v1/namespaces/shop/pods?")),
            "{queries:?}"
        );
    }

    #[test]
    fn selects_exactly_one_name() {
        let params = by_name("web-7d9f");
        assert_eq!(
            params.field_selector.as_deref(),
            Some("metadata.name=web-7d9f")
        );
        assert_eq!(params.label_selector, None);
    }
}
