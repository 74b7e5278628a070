//! The list calls of a scan: paginated LISTs (one request per page, each under the request
//! timeout, counted), the six kinds of one scope fetched concurrently, and what they returned —
//! reduced page by page to the facts the join reads (`facts`), so that a scan holds one page of
//! full objects at a time instead of the whole cluster's.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, ObjectList};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use super::error::Listing;
use super::facts::{ClaimFacts, ControllerFacts, PodFacts};
use crate::kubeapi;

/// Everything one scope's lists returned.
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub pvcs: Vec<ClaimFacts>,
    pub pods: Vec<PodFacts>,
    pub replica_sets: Vec<ControllerFacts<ReplicaSet>>,
    pub jobs: Vec<ControllerFacts<Job>>,
    pub deployments: Vec<ControllerFacts<Deployment>>,
    pub cron_jobs: Vec<ControllerFacts<CronJob>>,
}

impl Listed {
    pub fn extend(&mut self, other: Listed) {
        self.pvcs.extend(other.pvcs);
        self.pods.extend(other.pods);
        self.replica_sets.extend(other.replica_sets);
        self.jobs.extend(other.jobs);
        self.deployments.extend(other.deployments);
        self.cron_jobs.extend(other.cron_jobs);
    }
}

/// Issues paginated list calls and counts them.
pub(crate) struct Lister<'a> {
    client: &'a Client,
    page_size: u32,
    timeout: Duration,
    requests: AtomicU64,
}

impl<'a> Lister<'a> {
    pub fn new(client: &'a Client, page_size: u32, timeout: Duration) -> Self {
        Self {
            client,
            page_size,
            timeout,
            requests: AtomicU64::new(0),
        }
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Follows `continue` tokens until the last page; each page is one request under the timeout,
    /// and each item is reduced to its facts as its page arrives.
    async fn pages<T, U, F, Fut>(&self, mut list: F) -> kube::Result<Vec<U>>
    where
        T: Clone,
        U: From<T>,
        F: FnMut(ListParams) -> Fut,
        Fut: Future<Output = kube::Result<ObjectList<T>>>,
    {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(self.page_size.max(1));
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let page = kubeapi::timed(self.timeout, list(params)).await?;
            items.extend(page.items.into_iter().map(U::from));
            match page.metadata.continue_ {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(items),
            }
        }
    }

    async fn full<K, U>(&self, namespace: Option<&str>) -> kube::Result<Vec<U>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
        U: From<K>,
    {
        let api = self.api::<K>(namespace);
        self.pages(|params| {
            let api = api.clone();
            async move { api.list(&params).await }
        })
        .await
    }

    async fn metadata<K>(&self, namespace: Option<&str>) -> kube::Result<Vec<ControllerFacts<K>>>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>(namespace);
        self.pages(|params| {
            let api = api.clone();
            async move { api.list_metadata(&params).await }
        })
        .await
    }

    /// Runs the six lists of one scope concurrently; returns what succeeded and every failure.
    pub async fn fetch(&self, namespace: Option<&str>) -> (Listed, Vec<(Listing, kube::Error)>) {
        let (pvcs, pods, replica_sets, jobs, deployments, cron_jobs) = futures::join!(
            self.full::<PersistentVolumeClaim, ClaimFacts>(namespace),
            self.full::<Pod, PodFacts>(namespace),
            self.metadata::<ReplicaSet>(namespace),
            self.metadata::<Job>(namespace),
            self.metadata::<Deployment>(namespace),
            self.metadata::<CronJob>(namespace),
        );
        let mut failures = Vec::new();
        let mut listed = Listed::default();
        keep(&mut listed.pvcs, pvcs, Listing::Pvcs, &mut failures);
        keep(&mut listed.pods, pods, Listing::Pods, &mut failures);
        keep(
            &mut listed.replica_sets,
            replica_sets,
            Listing::ReplicaSets,
            &mut failures,
        );
        keep(&mut listed.jobs, jobs, Listing::Jobs, &mut failures);
        keep(
            &mut listed.deployments,
            deployments,
            Listing::Deployments,
            &mut failures,
        );
        keep(
            &mut listed.cron_jobs,
            cron_jobs,
            Listing::CronJobs,
            &mut failures,
        );
        (listed, failures)
    }
}

/// Stores a list's items, or records its failure.
fn keep<T>(
    into: &mut Vec<T>,
    result: kube::Result<Vec<T>>,
    listing: Listing,
    failures: &mut Vec<(Listing, kube::Error)>,
) {
    match result {
        Ok(items) => *into = items,
        Err(err) => failures.push((listing, err)),
    }
}
