//! Definitions: validation of every field, targets matching records, declared names.

use super::*;

#[test]
fn definitions_compile_or_say_what_is_wrong() {
    let mut ok = Definition::new("nightly", "0 3 * * *");
    ok.namespaces = vec!["shop".into()];
    ok.selector = "app=db".into();
    ok.owner_kind = Some("StatefulSet".into());
    let (cron, target) = ok.compile().unwrap();
    assert_eq!(cron.zone_name(), "UTC");
    assert_eq!(
        target.describe(),
        "namespaces shop; labels app=db; owner StatefulSet"
    );
    let mut pvcs = Definition::new("two", "@hourly");
    pvcs.pvcs = vec!["shop/b".into(), "shop/a".into(), "shop/a".into()];
    assert_eq!(pvcs.compile().unwrap().1.describe(), "shop/a, shop/b");
    assert_eq!(
        Definition::new("all", "@daily")
            .compile()
            .unwrap()
            .1
            .describe(),
        "all namespaces"
    );

    let refuse = |change: &dyn Fn(&mut Definition)| {
        let mut d = Definition::new("x", "0 3 * * *");
        change(&mut d);
        d.compile().unwrap_err().to_string()
    };
    assert!(refuse(&|d| d.name = "Nightly".into()).contains("invalid schedule name"));
    assert!(refuse(&|d| d.name = "@".into()).contains("invalid schedule name"));
    assert!(refuse(&|d| d.cron = "0 3 * *".into()).contains("invalid cron expression"));
    assert!(refuse(&|d| d.timezone = "Nowhere/Land".into()).contains("unknown time zone"));
    assert!(refuse(&|d| d.concurrency = 0).contains("concurrency 0"));
    assert!(refuse(&|d| d.namespaces = vec!["Bad_NS".into()]).contains("invalid namespace"));
    assert!(refuse(&|d| d.selector = "app=web!".into()).contains("invalid label selector"));
    assert!(refuse(&|d| d.pvcs = vec!["nope".into()]).contains("NAMESPACE/PVC"));
    assert!(
        refuse(&|d| {
            d.pvcs = vec!["a/b".into()];
            d.namespaces = vec!["a".into()];
        })
        .contains("not both")
    );
    assert!(refuse(&|d| d.destination = Some("Off Site".into())).contains("destination"));
    assert!(refuse(&|d| d.owner_kind = Some("Stateful Set".into())).contains("owner kind"));
    assert!(refuse(&|d| d.rpo_seconds = Some(0)).contains("RPO"));
}

#[test]
fn declared_names_and_started_by() {
    assert!(is_declared_name("@shop"));
    assert!(is_declared_name("@shop/data"));
    assert!(!is_declared_name("shop"));
    assert!(!is_declared_name("@Shop"));
    assert!(!is_declared_name("@shop/"));
    assert_eq!(
        Definition::new("nightly", "@daily").started_by(),
        "schedule:nightly"
    );
}

#[test]
fn schedules_know_their_next_run_and_pause() {
    let since: Timestamp = "2026-11-29T10:00:30Z".parse().unwrap();
    let mut schedule = Schedule::new(
        Definition::new("m", "* * * * *"),
        Source::Stored {
            created_by: "t".into(),
        },
        false,
        since,
        None,
    )
    .unwrap();
    let now: Timestamp = "2026-11-29T10:00:40Z".parse().unwrap();
    assert_eq!(
        schedule.next_run(now),
        Some("2026-11-29T10:01:00Z".parse().unwrap())
    );
    // Nothing before its creation is due.
    assert_eq!(schedule.due(now), None);
    let later: Timestamp = "2026-11-29T10:01:02Z".parse().unwrap();
    assert_eq!(
        schedule.due(later).unwrap().scheduled_at,
        "2026-11-29T10:01:00Z".parse().unwrap()
    );
    assert_eq!(schedule.rpo(now), Some(SignedDuration::from_mins(2)));
    schedule.paused = true;
    assert_eq!(schedule.next_run(now), None);
    assert_eq!(schedule.due(later), None);
    let mut with_rpo = schedule.definition.clone();
    with_rpo.rpo_seconds = Some(600);
    let s = Schedule::new(
        with_rpo,
        Source::Stored {
            created_by: "t".into(),
        },
        false,
        since,
        None,
    )
    .unwrap();
    assert_eq!(s.rpo(now), Some(SignedDuration::from_mins(10)));
}
