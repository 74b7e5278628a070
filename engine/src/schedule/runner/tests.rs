//! The scheduler driven by a test clock against a fake cluster: selectors pick the matching PVCs
//! only, PVCs created later are picked up, missed firings run once across a restart and never
//! twice, paused schedules do not fire, a firing is skipped while the previous one still runs, a
//! schedule's concurrency is kept, a refused PVC does not stop the others, and annotations declare
//! schedules (invalid ones reported).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::domain::ResultStatus;
use crate::schedule::Definition;

#[derive(Default)]
struct Fake {
    records: Mutex<Vec<PvcRecord>>,
    /// (target, destination, started_by) of every start, in order.
    started: Mutex<Vec<(String, Option<String>, String)>>,
    /// PVC names whose start is refused.
    refuse: Mutex<BTreeSet<String>>,
    /// While set, runs wait for it to be notified.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    scans: AtomicUsize,
}

#[derive(Clone, Default)]
struct Shared(Arc<Fake>);

impl Backend for Shared {
    async fn scan(&self) -> Result<Scan, String> {
        self.0.scans.fetch_add(1, Ordering::SeqCst);
        Ok(Scan {
            records: self.0.records.lock().unwrap().clone(),
            namespaces: vec![],
            namespaces_unread: None,
        })
    }

    async fn start(
        &self,
        target: PvcRef,
        destination: Option<String>,
        requester: Requester,
    ) -> Result<StartedRun, Box<BackupResult>> {
        let fake = &self.0;
        fake.started.lock().unwrap().push((
            target.to_string(),
            destination.clone(),
            requester.started_by.clone(),
        ));
        let now = Timestamp::now();
        if fake.refuse.lock().unwrap().contains(&target.name) {
            return Err(Box::new(BackupResult::refused(&target, now, "refused")));
        }
        let gate = fake.gate.lock().unwrap().clone();
        let (running, most) = (fake.running.clone(), fake.most_running.clone());
        let run_id = format!("r-{}", target.name);
        let handle = tokio::spawn(async move {
            let now_running = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now_running, Ordering::SeqCst);
            if let Some(gate) = gate {
                drop(gate.acquire().await);
            }
            running.fetch_sub(1, Ordering::SeqCst);
            BackupResult::new(&target, now, now)
        });
        Ok(StartedRun {
            run_id,
            destination: destination.unwrap_or_else(|| "local".to_owned()),
            handle,
        })
    }

    fn active_runs(&self) -> usize {
        self.0.running.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn set_records(&self, records: Vec<PvcRecord>) {
        *self.0.records.lock().unwrap() = records;
    }

    fn started(&self) -> Vec<(String, Option<String>, String)> {
        self.0.started.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.started().into_iter().map(|s| s.0).collect();
        targets.sort();
        targets
    }

    fn clear(&self) {
        self.0.started.lock().unwrap().clear();
    }
}

fn pvc(ns: &str, name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PvcRecord {
    crate::schedule::test_record(ns, name, labels, annotations)
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn scheduler(backend: &Shared, store: &Store) -> Scheduler<Shared> {
    let dir = std::env::temp_dir();
    Scheduler::new(
        backend.clone(),
        store.clone(),
        Destinations::load(None, &dir).unwrap(),
        SchedulerOptions {
            refresh: Duration::from_secs(30),
            ..SchedulerOptions::default()
        },
        Metrics::new(),
        Notifier::new(vec![]).unwrap(),
    )
}

async fn add(store: &Store, definition: &Definition, created: &str) {
    definition.compile().unwrap();
    assert!(
        store
            .insert_schedule(definition, "test", at(created))
            .await
            .unwrap()
    );
}

fn every_minute_over(name: &str, namespace: &str, selector: &str) -> Definition {
    let mut d = Definition::new(name, "* * * * *");
    d.namespaces = vec![namespace.into()];
    d.selector = selector.into();
    d
}

#[tokio::test]
async fn a_selector_backs_up_matching_pvcs_and_later_ones_too() {
    let backend = Shared::default();
    backend.set_records(vec![
        pvc("shop", "db", &[("tier", "db")], &[]),
        pvc("shop", "cache", &[("tier", "cache")], &[]),
        pvc("other", "db", &[("tier", "db")], &[]),
    ]);
    let store = Store::open_in_memory().await.unwrap();
    let mut d = every_minute_over("dbs", "shop", "tier=db");
    d.destination = Some("local".into());
    add(&store, &d, "2026-11-29T10:00:30Z").await;
    let s = scheduler(&backend, &store).await;

    // Not due before the first minute after its creation.
    let report = s.tick(at("2026-11-29T10:00:45Z")).await;
    assert!(report.fired.is_empty());
    let report = s.tick(at("2026-11-29T10:01:02Z")).await;
    s.settle().await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].scheduled_at, at("2026-11-29T10:01:00Z"));
    assert_eq!(
        backend.started(),
        [(
            "shop/db".to_owned(),
            Some("local".to_owned()),
            "schedule:dbs".to_owned()
        )]
    );
    // The same minute is never fired twice.
    assert!(s.tick(at("2026-11-29T10:01:30Z")).await.fired.is_empty());

    // A PVC created later that matches is picked up at the next firing.
    backend.clear();
    backend.set_records(vec![
        pvc("shop", "db", &[("tier", "db")], &[]),
        pvc("shop", "db-2", &[("tier", "db")], &[]),
        pvc("shop", "cache", &[("tier", "cache")], &[]),
    ]);
    s.tick(at("2026-11-29T10:02:01Z")).await;
    s.settle().await;
    assert_eq!(backend.targets(), ["shop/db", "shop/db-2"]);
}

#[tokio::test]
async fn missed_firings_run_once_after_a_restart_and_never_again() {
    let backend = Shared::default();
    backend.set_records(vec![pvc("shop", "db", &[], &[])]);
    let store = Store::open_in_memory().await.unwrap();
    add(
        &store,
        &every_minute_over("m", "shop", ""),
        "2026-11-29T10:00:00Z",
    )
    .await;
    let first = scheduler(&backend, &store).await;
    first.tick(at("2026-11-29T10:01:01Z")).await;
    first.settle().await;
    assert_eq!(backend.started().len(), 1);
    drop(first);

    // "Down" from 10:01:05 to 10:05:20: a new scheduler on the same database runs 10:05 once.
    backend.clear();
    let second = scheduler(&backend, &store).await;
    let report = second.tick(at("2026-11-29T10:05:20Z")).await;
    second.settle().await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].scheduled_at, at("2026-11-29T10:05:00Z"));
    assert_eq!(report.fired[0].missed, 3);
    assert_eq!(backend.started().len(), 1);
    // Restarted again within the same minute: nothing runs twice.
    let third = scheduler(&backend, &store).await;
    assert!(
        third
            .tick(at("2026-11-29T10:05:40Z"))
            .await
            .fired
            .is_empty()
    );
    // Realigned: the next minute fires on time.
    let report = third.tick(at("2026-11-29T10:06:00Z")).await;
    assert_eq!(report.fired[0].missed, 0);
    third.settle().await;
}

#[tokio::test]
async fn paused_schedules_do_not_fire_until_resumed() {
    let backend = Shared::default();
    backend.set_records(vec![pvc("shop", "db", &[], &[])]);
    let store = Store::open_in_memory().await.unwrap();
    add(
        &store,
        &every_minute_over("m", "shop", ""),
        "2026-11-29T10:00:00Z",
    )
    .await;
    assert!(
        store
            .set_schedule_paused("m", true, at("2026-11-29T10:00:10Z"))
            .await
            .unwrap()
    );
    let s = scheduler(&backend, &store).await;
    assert!(s.tick(at("2026-11-29T10:03:00Z")).await.fired.is_empty());
    assert!(
        store
            .set_schedule_paused("m", false, at("2026-11-29T10:03:10Z"))
            .await
            .unwrap()
    );
    // Resumed: the firings missed while paused count as missed, one runs.
    let report = s.tick(at("2026-11-29T10:03:30Z")).await;
    s.settle().await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(backend.started().len(), 1);
}

#[tokio::test]
async fn overlapping_firings_are_skipped_and_concurrency_is_kept() {
    let backend = Shared::default();
    backend.set_records(
        (0..4)
            .map(|i| pvc("shop", &format!("p{i}"), &[], &[]))
            .collect(),
    );
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *backend.0.gate.lock().unwrap() = Some(gate.clone());
    let store = Store::open_in_memory().await.unwrap();
    let mut d = every_minute_over("m", "shop", "");
    d.concurrency = 2;
    add(&store, &d, "2026-11-29T10:00:00Z").await;
    let s = scheduler(&backend, &store).await;
    s.tick(at("2026-11-29T10:01:00Z")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(backend.started().len(), 2, "two at a time");
    // The next minute comes while the first firing's runs still go: skipped.
    let report = s.tick(at("2026-11-29T10:02:00Z")).await;
    assert_eq!(report.skipped, ["m"]);
    assert!(report.fired.is_empty());
    gate.add_permits(100);
    s.settle().await;
    assert_eq!(backend.started().len(), 4);
    assert_eq!(backend.0.most_running.load(Ordering::SeqCst), 2);
    // Skipped means handled: 10:02 does not fire later.
    assert!(s.tick(at("2026-11-29T10:02:30Z")).await.fired.is_empty());
}

#[tokio::test]
async fn a_refused_pvc_does_not_stop_the_others() {
    let backend = Shared::default();
    backend.set_records(vec![
        pvc("shop", "a", &[], &[]),
        pvc("shop", "b", &[], &[]),
        pvc("shop", "c", &[], &[]),
    ]);
    backend.0.refuse.lock().unwrap().insert("a".into());
    let store = Store::open_in_memory().await.unwrap();
    add(
        &store,
        &every_minute_over("m", "shop", ""),
        "2026-11-29T10:00:00Z",
    )
    .await;
    let s = scheduler(&backend, &store).await;
    s.tick(at("2026-11-29T10:01:00Z")).await;
    s.settle().await;
    assert_eq!(backend.targets(), ["shop/a", "shop/b", "shop/c"]);
    let _ = ResultStatus::Failed;
}

#[tokio::test]
async fn annotations_declare_schedules_and_bad_ones_are_reported() {
    let backend = Shared::default();
    backend.set_records(vec![
        pvc(
            "shop",
            "db",
            &[],
            &[
                ("nkvm.io/schedule", "*/5 * * * *"),
                ("nkvm.io/keep-last", "3"),
            ],
        ),
        pvc("shop", "broken", &[], &[("nkvm.io/schedule", "at noon")]),
        pvc("shop", "plain", &[], &[]),
    ]);
    let store = Store::open_in_memory().await.unwrap();
    let s = scheduler(&backend, &store).await;
    // First seen at 10:02: its first firing is 10:05.
    let report = s.tick(at("2026-11-29T10:02:00Z")).await;
    assert!(report.fired.is_empty());
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].object, "PVC shop/broken");
    let declared = store.declared_schedules().await.unwrap();
    assert_eq!(declared.len(), 1);
    assert_eq!(declared[0].definition.name, "@shop/db");
    let report = s.tick(at("2026-11-29T10:05:01Z")).await;
    s.settle().await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(
        backend.started(),
        [("shop/db".to_owned(), None, "schedule:@shop/db".to_owned())]
    );
    // The annotation removed: the schedule is forgotten at the next scan.
    backend.set_records(vec![pvc("shop", "db", &[], &[])]);
    s.tick(at("2026-11-29T10:06:00Z")).await;
    assert!(store.declared_schedules().await.unwrap().is_empty());
}
