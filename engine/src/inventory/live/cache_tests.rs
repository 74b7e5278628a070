//! Property test of the live inventory's caches: after any sequence of watch events (with lost
//! events repaired by a re-list, as after a watch expiry), joining the cached facts gives the same
//! records as joining the facts of a full list of the objects.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Container, EphemeralVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource, Pod, PodCondition, PodSpec,
    PodStatus, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference,
};
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::Event;

use super::KindCache;
use crate::backup::pod::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::inventory::facts::{ClaimFacts, ControllerFacts, Keyed, PodFacts};
use crate::inventory::join::{Sources, join};
use crate::inventory::list::Listed;

/// xorshift64*: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMESPACES: [&str; 2] = ["shop", "ops"];
const CLAIMS: [&str; 5] = ["data-0", "data-1", "logs", "cache", "orphan"];

fn meta(rng: &mut Rng, namespace: &str, name: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(format!("uid-{namespace}-{name}")),
        resource_version: Some(rng.next().to_string()),
        owner_references: (!owners.is_empty()).then_some(owners),
        annotations: Some(BTreeMap::from([
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
                "{}".repeat(20),
            ),
            ("nkvm.io/schedule".to_owned(), "daily".to_owned()),
        ])),
        labels: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
        managed_fields: Some(vec![ManagedFieldsEntry::default()]),
        ..ObjectMeta::default()
    }
}

fn reference(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        controller: Some(controller),
        ..OwnerReference::default()
    }
}

fn random_owner(rng: &mut Rng) -> Vec<OwnerReference> {
    match rng.below(6) {
        0 => vec![],
        1 => {
            let name = rng.pick(&["rs-a", "rs-b", "rs-c"]);
            vec![reference("apps/v1", "ReplicaSet", name, true)]
        }
        2 => {
            let name = rng.pick(&["job-a", "job-b"]);
            vec![reference("batch/v1", "Job", name, true)]
        }
        3 => vec![reference("apps/v1", "StatefulSet", "db", true)],
        4 => vec![
            reference("v1", "ConfigMap", "cm", false),
            reference("apps/v1", "ReplicaSet", "rs-a", true),
        ],
        _ => vec![reference("example.com/v1", "Widget", "w", false)],
    }
}

fn pvc(rng: &mut Rng, namespace: &str, name: &str) -> PersistentVolumeClaim {
    let mode = rng.pick(&["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]);
    PersistentVolumeClaim {
        metadata: meta(rng, namespace, name, vec![]),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![mode.to_owned()]),
            storage_class_name: Some("local".to_owned()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("1Gi".to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(rng.pick(&["Bound", "Pending"]).to_owned()),
            capacity: if rng.chance(50) {
                Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("2Gi".to_owned()),
                )]))
            } else {
                None
            },
            conditions: Some(vec![]),
            ..PersistentVolumeClaimStatus::default()
        }),
    }
}

fn pod(rng: &mut Rng, namespace: &str, name: &str) -> Pod {
    let owners = random_owner(rng);
    let mut metadata = meta(rng, namespace, name, owners);
    if rng.chance(15) {
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    }
    let mut volumes = vec![Volume {
        name: "config".to_owned(),
        ..Volume::default()
    }];
    for _ in 0..rng.below(3) {
        volumes.push(Volume {
            name: format!("v{}", rng.below(9)),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: rng.pick(&CLAIMS).to_owned(),
                read_only: Some(rng.chance(50)),
            }),
            ..Volume::default()
        });
    }
    if rng.chance(20) {
        // A generic ephemeral volume: its claim is named `<pod>-<volume>`.
        volumes.push(Volume {
            name: "scratch".to_owned(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        });
    }
    Pod {
        metadata,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some("busybox".to_owned()),
                ..Container::default()
            }],
            node_name: if rng.chance(80) {
                Some(rng.pick(&["node-1", "node-2"]).to_owned())
            } else {
                None
            },
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some(
                rng.pick(&["Running", "Pending", "Succeeded", "Failed"])
                    .to_owned(),
            ),
            conditions: Some(vec![PodCondition::default()]),
            ..PodStatus::default()
        }),
    }
}

fn controller<K>(
    rng: &mut Rng,
    namespace: &str,
    name: &str,
    owner: Option<OwnerReference>,
) -> PartialObjectMeta<K> {
    let owners = owner.filter(|_| rng.chance(75)).into_iter().collect();
    PartialObjectMeta {
        types: None,
        metadata: meta(rng, namespace, name, owners),
        _phantom: std::marker::PhantomData,
    }
}

/// One kind's objects as the API server holds them, and the cache of their facts the watch
/// events build.
struct Kind<K, F> {
    truth: HashMap<(String, String), K>,
    cache: KindCache<F>,
    /// An event was lost: only a re-list makes the cache right again.
    lost: bool,
}

impl<K: kube::Resource + Clone, F: Keyed + From<K>> Kind<K, F> {
    fn new() -> Self {
        Self {
            truth: HashMap::new(),
            cache: KindCache::default(),
            lost: false,
        }
    }

    fn facts(object: &K) -> F {
        F::from(object.clone())
    }

    /// The facts of a full list of the objects.
    fn listed(&self) -> Vec<F> {
        self.truth.values().map(Self::facts).collect()
    }

    fn upsert(&mut self, rng: &mut Rng, object: K) {
        let meta = object.meta();
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        if rng.chance(8) {
            self.lost = true;
        } else {
            self.cache.apply(Event::Apply(Self::facts(&object)));
        }
        self.truth.insert(key, object);
    }

    fn delete(&mut self, rng: &mut Rng) {
        let Some(key) = self
            .truth
            .keys()
            .nth(rng.below(self.truth.len().max(1)))
            .cloned()
        else {
            return;
        };
        let object = self.truth.remove(&key).expect("listed key");
        if rng.chance(8) {
            self.lost = true;
        } else {
            self.cache.apply(Event::Delete(Self::facts(&object)));
        }
    }

    fn relist(&mut self) {
        self.cache.apply(Event::Init);
        for object in self.listed() {
            self.cache.apply(Event::InitApply(object));
        }
        self.cache.apply(Event::InitDone);
        self.lost = false;
    }

    fn repair(&mut self) {
        if self.lost || !self.cache.synced() {
            self.relist();
        }
    }
}

struct World {
    pvcs: Kind<PersistentVolumeClaim, ClaimFacts>,
    pods: Kind<Pod, PodFacts>,
    replica_sets: Kind<PartialObjectMeta<ReplicaSet>, ControllerFacts<ReplicaSet>>,
    jobs: Kind<PartialObjectMeta<Job>, ControllerFacts<Job>>,
    deployments: Kind<PartialObjectMeta<Deployment>, ControllerFacts<Deployment>>,
    cron_jobs: Kind<PartialObjectMeta<CronJob>, ControllerFacts<CronJob>>,
}

impl World {
    fn new() -> Self {
        Self {
            pvcs: Kind::new(),
            pods: Kind::new(),
            replica_sets: Kind::new(),
            jobs: Kind::new(),
            deployments: Kind::new(),
            cron_jobs: Kind::new(),
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let namespace = rng.pick(&NAMESPACES);
        let delete = rng.chance(25);
        match rng.below(7) {
            0 if delete => self.pvcs.delete(rng),
            0 => {
                let name = rng.pick(&CLAIMS);
                let object = pvc(rng, namespace, name);
                self.pvcs.upsert(rng, object);
            }
            1 | 2 if delete => self.pods.delete(rng),
            1 | 2 => {
                let name = format!("pod-{}", rng.below(8));
                let object = pod(rng, namespace, &name);
                self.pods.upsert(rng, object);
            }
            3 if delete => self.replica_sets.delete(rng),
            3 => {
                let owner = reference("apps/v1", "Deployment", rng.pick(&["web", "api"]), true);
                let name = rng.pick(&["rs-a", "rs-b", "rs-c"]);
                let object = controller(rng, namespace, name, Some(owner));
                self.replica_sets.upsert(rng, object);
            }
            4 if delete => self.jobs.delete(rng),
            4 => {
                let owner = reference("batch/v1", "CronJob", "nightly", true);
                let name = rng.pick(&["job-a", "job-b"]);
                let object = controller(rng, namespace, name, Some(owner));
                self.jobs.upsert(rng, object);
            }
            5 if delete => self.deployments.delete(rng),
            5 => {
                let name = rng.pick(&["web", "api"]);
                let object = controller(rng, namespace, name, None);
                self.deployments.upsert(rng, object);
            }
            _ if delete => self.cron_jobs.delete(rng),
            _ => {
                let object = controller(rng, namespace, "nightly", None);
                self.cron_jobs.upsert(rng, object);
            }
        }
        // Now and then a watch expires and its kind is listed again.
        if rng.chance(5) {
            match rng.below(6) {
                0 => self.pvcs.relist(),
                1 => self.pods.relist(),
                2 => self.replica_sets.relist(),
                3 => self.jobs.relist(),
                4 => self.deployments.relist(),
                _ => self.cron_jobs.relist(),
            }
        }
    }

    fn repair(&mut self) {
        self.pvcs.repair();
        self.pods.repair();
        self.replica_sets.repair();
        self.jobs.repair();
        self.deployments.repair();
        self.cron_jobs.repair();
    }

    fn cached_sources(&self) -> Sources<'_> {
        Sources {
            pvcs: self.pvcs.cache.values().collect(),
            pods: self.pods.cache.values().collect(),
            replica_sets: Some(self.replica_sets.cache.values().collect()),
            jobs: Some(self.jobs.cache.values().collect()),
            deployments: Some(self.deployments.cache.values().collect()),
            cron_jobs: Some(self.cron_jobs.cache.values().collect()),
        }
    }

    /// What a scan of the objects would list.
    fn listed(&self) -> Listed {
        Listed {
            pvcs: self.pvcs.listed(),
            pods: self.pods.listed(),
            replica_sets: self.replica_sets.listed(),
            jobs: self.jobs.listed(),
            deployments: self.deployments.listed(),
            cron_jobs: self.cron_jobs.listed(),
        }
    }
}

#[test]
fn any_event_sequence_joins_like_a_full_list_of_the_objects() {
    let mut compared = 0;
    let mut nonempty = 0;
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut world = World::new();
        world.repair();
        for step in 0..=rng.below(120) {
            world.step(&mut rng);
            if rng.chance(20) {
                world.repair();
                let live = join(&world.cached_sources());
                let full = join(&Sources::of(&world.listed()));
                assert_eq!(live, full, "seed {seed}, step {step}");
                compared += 1;
                nonempty += usize::from(live.iter().any(|r| !r.consumers.is_empty()));
            }
        }
        world.repair();
        assert_eq!(
            join(&world.cached_sources()),
            join(&Sources::of(&world.listed())),
            "seed {seed}, end"
        );
    }
    // The generator really produced joins with consumers and owners to compare.
    assert!(compared > 1000, "{compared}");
    assert!(nonempty > compared / 4, "{nonempty} of {compared}");
}

#[test]
fn a_lost_delete_is_kept_until_the_relist_replaces_the_kind_at_once() {
    let mut rng = Rng(7);
    let mut cache = KindCache::default();
    let a = ClaimFacts::from(pvc(&mut rng, "shop", "a"));
    let b = ClaimFacts::from(pvc(&mut rng, "shop", "b"));
    assert!(!cache.synced());
    cache.apply(Event::Init);
    cache.apply(Event::InitApply(a.clone()));
    cache.apply(Event::InitApply(b.clone()));
    assert_eq!(cache.len(), 0, "a list in progress is not shown");
    assert!(cache.apply(Event::InitDone));
    assert!(cache.synced());
    assert_eq!(cache.len(), 2);
    // `b` was deleted while the watch was down; the re-list no longer has it.
    cache.apply(Event::Init);
    cache.apply(Event::InitApply(a.clone()));
    assert_eq!(
        cache.len(),
        2,
        "the old state stays until the re-list completes"
    );
    cache.apply(Event::InitDone);
    assert_eq!(cache.len(), 1);
    assert!(
        !cache.apply(Event::Delete(b)),
        "deleting what is gone changes nothing"
    );
    assert!(cache.apply(Event::Delete(a)));
    assert_eq!(cache.len(), 0);
}

#[test]
fn facts_keep_what_the_join_reads() {
    let mut rng = Rng(11);
    let mut object = pod(&mut rng, "shop", "web-1");
    object
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    let spec = object.spec.as_mut().unwrap();
    spec.node_name = Some("node-9".to_owned());
    spec.volumes.as_mut().unwrap().extend([
        Volume {
            name: "b".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "zeta".to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        },
        Volume {
            name: "a".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "zeta".to_owned(),
                read_only: Some(true),
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        },
    ]);
    object.status.as_mut().unwrap().phase = Some("Succeeded".to_owned());
    let owners = object.metadata.owner_references.clone().unwrap_or_default();
    let facts = PodFacts::from(object);
    assert_eq!(
        (facts.namespace.as_str(), facts.name.as_str()),
        ("shop", "web-1")
    );
    assert!(facts.helper);
    assert!(facts.is_terminated());
    assert_eq!(facts.node.as_deref(), Some("node-9"));
    assert_eq!(facts.owner_references, owners);
    // Sorted and distinct; a generic ephemeral volume by its claim's name.
    assert!(
        facts.claims.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        facts.claims
    );
    assert!(facts.claims.contains(&"web-1-tmp".to_owned()));
    assert_eq!(facts.claims.iter().filter(|c| *c == "zeta").count(), 1);

    let claim = ClaimFacts::from(pvc(&mut rng, "shop", "data"));
    assert_eq!(
        claim.annotations.keys().collect::<Vec<_>>(),
        ["nkvm.io/schedule"]
    );
    assert_eq!(claim.labels.get("app").map(String::as_str), Some("data"));
    assert!(claim.summary.capacity_bytes.is_some());
}
