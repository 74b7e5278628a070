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
