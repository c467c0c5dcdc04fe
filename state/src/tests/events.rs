//! Triggers, events and the notification outbox in the replicated state:
//! what starts an execution only once (a delivery, a schedule slot, a
//! head), which events a run makes and which targets they are queued for,
//! and how the notifier's reports move deliveries on.

use ferry_pipeline::notify::{NotificationTarget, NotifyFormat};

use super::applied;
use crate::{By, ClusterState, Command, DeliveryResult, Once, Rejection, Role, ScheduleState};

const YAML: &str = r#"
name: app
source: {git: /tmp/app.git}
execution_mode: parallel
notifications:
  - {name: team, url: "http://127.0.0.1:9/hook", events: ["approval.*"]}
stages:
  - name: gate
    actions:
      - {name: ok, type: approval}
"#;

fn start(s: &mut ClusterState, id: &str, once: Option<Once>) -> Result<(), Rejection> {
    s.apply(Command::StartExecution {
        id: id.into(),
        pipeline: "app".into(),
        revision: "a".repeat(40),
        trigger: "test".into(),
        started_by: None,
        variables: Default::default(),
        source: None,
        once,
        at: 10,
    })
    .map(drop)
}

fn kinds(s: &ClusterState) -> Vec<&'static str> {
    s.events.recent.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn a_delivery_a_slot_and_a_head_each_start_one_execution() {
    let mut s = applied(YAML);
    start(&mut s, "e1", Some(Once::Delivery("d-1".into()))).unwrap_or_else(|e| panic!("{e}"));
    let again = start(&mut s, "e2", Some(Once::Delivery("d-1".into())));
    assert!(
        matches!(again, Err(Rejection::AlreadyExists(ref m)) if m.contains("e1")),
        "{again:?}"
    );
    assert_eq!(
        s.pipelines["app"]
            .delivery("d-1")
            .map(|d| d.execution.as_str()),
        Some("e1")
    );

    // A slot fires once, and only the one the schedule is armed with.
    let not_armed = start(
        &mut s,
        "e3",
        Some(Once::Slot {
            slot: 1000,
            next: Some(2000),
        }),
    );
    assert!(matches!(not_armed, Err(Rejection::FailedPrecondition(_))));
    s.apply(Command::ArmSchedule {
        pipeline: "app".into(),
        schedule: Some(ScheduleState {
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            next: Some(1000),
        }),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    start(
        &mut s,
        "e4",
        Some(Once::Slot {
            slot: 1000,
            next: Some(2000),
        }),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let twice = start(
        &mut s,
        "e5",
        Some(Once::Slot {
            slot: 1000,
            next: Some(2000),
        }),
    );
    assert!(matches!(twice, Err(Rejection::FailedPrecondition(_))));
    assert_eq!(
        s.pipelines["app"].schedule.as_ref().and_then(|x| x.next),
        Some(2000)
    );
    assert_eq!(s.due_schedules(1999).len(), 0);

    // A polled head: once.
    start(&mut s, "e6", Some(Once::Head("b".repeat(40)))).unwrap_or_else(|e| panic!("{e}"));
    let again = start(&mut s, "e7", Some(Once::Head("b".repeat(40))));
    assert!(matches!(again, Err(Rejection::AlreadyExists(_))));
    let started: Vec<&String> = s.executions.keys().collect();
    assert_eq!(started, ["e1", "e4", "e6"]);
}

#[test]
fn a_run_makes_events_and_queues_them_for_the_targets_that_take_them() {
    let mut s = applied(YAML);
    s.apply(Command::Grant {
        subject: "ann".into(),
        role: Role::Approver,
        by: By::operator("root"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let everything = NotificationTarget {
        name: "all".into(),
        url: "https://chat.example.invalid/hook".into(),
        url_secret: None,
        secret: None,
        format: NotifyFormat::Slack,
        events: Vec::new(),
    };
    // Cluster-wide targets are the admin's.
    let denied = s.apply(Command::SetNotifyTarget {
        target: everything.clone(),
        by: By::operator("ann"),
        at: 5,
    });
    assert!(
        matches!(denied, Err(Rejection::PermissionDenied(..))),
        "{denied:?}"
    );
    s.apply(Command::SetNotifyTarget {
        target: everything,
        by: By::operator("root"),
        at: 5,
    })
    .unwrap_or_else(|e| panic!("{e}"));

    start(&mut s, "e1", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&s), ["execution.started", "approval.waiting"]);
    let waiting = &s.events.recent[1];
    assert_eq!(
        waiting.command.as_deref(),
        Some("ferry approve app --execution e1 --action gate/ok")
    );
    // `team` takes approval events only; `all` takes both.
    let queued: Vec<(u64, &str)> = s
        .outbox
        .deliveries
        .values()
        .map(|d| (d.event.id, d.target.name.as_str()))
        .collect();
    assert_eq!(queued, [(1, "all"), (2, "team"), (2, "all")]);

    s.apply(Command::Decide {
        execution: "e1".into(),
        stage: 0,
        action: 0,
        by: "ann".into(),
        approve: true,
        comment: "fine".into(),
        at: 20,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&s),
        [
            "execution.started",
            "approval.waiting",
            "approval.decided",
            "execution.succeeded"
        ]
    );
    assert_eq!(s.events.recent[2].by.as_deref(), Some("ann"));
    let ids: Vec<u64> = s.events.recent.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);

    // Resuming after an id, for one pipeline.
    let (after, gap) = s.events_after(2, "app", 10);
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4]);
    assert!(!gap);
    assert!(s.events_after(0, "other", 10).0.is_empty());
}

#[test]
fn the_notifier_reports_deliver_retry_or_give_up() {
    let mut s = applied(YAML);
    start(&mut s, "e1", None).unwrap_or_else(|e| panic!("{e}"));
    // Only `team` (approval events): one delivery, due at once.
    let due = s.due_deliveries(10, 10);
    assert_eq!(due.len(), 1);
    let id = due[0].id;
    let report = |error: Option<&str>, retry_at: Option<i64>| Command::NotifyAttempted {
        results: vec![DeliveryResult {
            id,
            error: error.map(str::to_string),
            retry_at,
        }],
        at: 50,
    };
    s.apply(report(Some("HTTP 503"), Some(1000)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.due_deliveries(999, 10).is_empty());
    assert_eq!(s.due_deliveries(1000, 10).len(), 1);
    assert_eq!(s.outbox.deliveries[&id].attempts, 1);
    s.apply(report(Some("HTTP 503"), None))
        .unwrap_or_else(|e| panic!("{e}"));
    let given_up = &s.outbox.deliveries[&id];
    assert_eq!(given_up.gave_up_at, Some(50));
    assert_eq!(given_up.last_error.as_deref(), Some("HTTP 503"));
    assert!(s.due_deliveries(i64::MAX, 10).is_empty());

    // A second run's delivery is delivered: it leaves the outbox; a
    // duplicate report changes nothing.
    start(&mut s, "e2", None).unwrap_or_else(|e| panic!("{e}"));
    let next = s.due_deliveries(10, 10)[0].id;
    let delivered = Command::NotifyAttempted {
        results: vec![DeliveryResult {
            id: next,
            error: None,
            retry_at: Some(0),
        }],
        at: 60,
    };
    s.apply(delivered.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!s.outbox.deliveries.contains_key(&next));
    let before = s.clone();
    s.apply(delivered).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s, before);
}
