//! The application layer in process: a real one-member Raft node in a temp
//! dir, a CA made there, and an agent hub with no agent connected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_certs::{CertAuthority, Identity, IdentityKind};

use super::page::PageRequest;
use super::{OpError, Ops, RequestId};
use crate::app::{CertLifetimes, Ctx};
use crate::git::Git;
use crate::hub::{AgentHub, LogHub};
use crate::raft::{self, NodeConfig, PeerTls};
use crate::views::now_ms;
use ferry_state::{Command, Reason, Rejection, Role};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const PIPELINE: &str = r#"
name: app
source: {git: /tmp/app.git}
stages:
  - name: build
    actions:
      - {name: compile, type: build, image: img, commands: [true]}
"#;

/// The same pipeline, with an approval its starter may decide: only an
/// admin may apply it.
const RELAXED: &str = r#"
name: app
source: {git: /tmp/app.git}
stages:
  - name: build
    actions:
      - {name: compile, type: build, image: img, commands: [true]}
  - name: ship
    actions:
      - {name: ok, type: approval, allow_self_approval: true}
"#;

/// A one-member cluster led by this process, bootstrapped with `alice` as
/// admin. The temp dir must outlive the node.
async fn cluster(dir: &std::path::Path) -> Result<Ops, Box<dyn std::error::Error>> {
    let tls = dir.join("tls");
    let ca = CertAuthority::init(&tls, "ferry")?;
    let identity = ca.issue_coordinator(1, &[])?;
    let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    std::fs::create_dir_all(dir.join("data"))?;
    let (handle, _thread) = raft::start(
        NodeConfig {
            id: 1,
            peers: peers.clone(),
            join: false,
            data_dir: dir.join("data"),
            snapshot_every: 1000,
            tick: Duration::from_millis(10),
            tls: PeerTls {
                ca_pem: ca.ca_pem().to_string(),
                identity: ferry_certs::tls::SharedIdentity::new(identity.clone()),
            },
            force_new_cluster: false,
        },
        tokio::runtime::Handle::current(),
    )?;
    let ops = Ops::new(Arc::new(Ctx {
        raft: handle,
        ca,
        identity: ferry_certs::tls::SharedIdentity::new(identity),
        agents: AgentHub::default(),
        logs: LogHub::default(),
        git: Git::new(dir.join("git")),
        heartbeat_seconds: 5,
        agent_lease: Duration::from_secs(15),
        artifact_replicas: 1,
        artifact_retention: 10,
        execution_retention: 10,
        secrets: None,
        metrics: crate::metrics::Metrics::new(),
        cert_lifetimes: CertLifetimes::default(),
        notify_attempts: 3,
        notify_policy: Default::default(),
        console_url: None,
    }));
    if !ops
        .wait_for_status(Duration::from_secs(10), |s| s.is_leader)
        .await
    {
        return Err("the one member did not become leader".into());
    }
    assert!(ops.bootstrap(Some("alice".into()), peers).await?);
    Ok(ops)
}

fn operator(name: &str) -> Result<Identity, Box<dyn std::error::Error>> {
    Ok(Identity::new("ferry", IdentityKind::Operator, name)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_applies_once_and_refuses_another_request() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    let alice = operator("alice")?;
    let id = |yaml: &str| RequestId::new("req-1", "ApplyPipeline", &["app.yml", yaml]);
    let first = ops
        .apply_pipeline(&alice, "app.yml", PIPELINE.into(), id(PIPELINE)?.as_ref())
        .await?;
    assert_eq!(first.version, 1);
    // The same request again, after another version was applied meanwhile:
    // the first answer, not "unchanged" nor a version 3.
    ops.apply_pipeline(&alice, "app.yml", RELAXED.into(), None)
        .await
        .ok();
    let again = ops
        .apply_pipeline(&alice, "app.yml", PIPELINE.into(), id(PIPELINE)?.as_ref())
        .await?;
    assert_eq!((again.version, again.unchanged), (1, false));
    // The id with another file: refused with its reason.
    match ops
        .apply_pipeline(&alice, "app.yml", RELAXED.into(), id(RELAXED)?.as_ref())
        .await
    {
        Err(e) => {
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            assert_eq!(
                crate::service::status::reason_of(&status),
                Reason::RequestIdReused
            );
        }
        Ok(a) => panic!("a reused request id applied {a:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_execution_reads_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    let alice = operator("alice")?;
    let applied = ops
        .apply_pipeline(&alice, "app.yml", PIPELINE.into(), None)
        .await?;
    assert_eq!((applied.name.as_str(), applied.version), ("app", 1));
    assert!(!applied.unchanged);
    let again = ops
        .apply_pipeline(&alice, "app.yml", PIPELINE.into(), None)
        .await?;
    assert!(again.unchanged);

    let rev = "0123456789abcdef0123456789abcdef01234567";
    let id = ops
        .start_at(
            "app",
            rev.into(),
            "test".into(),
            Some(super::access::acting(&alice)),
            (Default::default(), None),
        )
        .await?;
    let (pipeline, revision, started_by) = ops
        .get_execution("app", &id, |_, e| {
            (e.pipeline.clone(), e.revision.clone(), e.started_by.clone())
        })
        .await?;
    assert_eq!((pipeline.as_str(), revision.as_str()), ("app", rev));
    assert_eq!(started_by.as_deref(), Some("alice"));
    // An empty id is the latest; the list is newest first.
    assert_eq!(ops.get_execution("app", "", |_, e| e.id.clone()).await?, id);
    let first = PageRequest::with_limit(0, 0, "")?;
    let (listed, next) = ops
        .list_executions("app", &first, |_, e| e.id.clone())
        .await?;
    assert_eq!(listed, vec![id.clone()]);
    assert_eq!(next, "");
    match ops.get_execution("other", &id, |_, _| ()).await {
        Err(OpError::NotFound(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match PageRequest::with_limit(0, 5_000, "") {
        Err(OpError::Invalid(m)) => assert!(m.contains("--limit"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_new_id_counts_as_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    let alice = operator("alice")?;
    ops.apply_pipeline(&alice, "app.yml", PIPELINE.into(), None)
        .await?;
    let start = || Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: "retried0001".into(),
        pipeline: "app".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        trigger: "test".into(),
        started_by: None,
        at: now_ms(),
    };
    assert!(ops.write_new(start()).await?.is_some());
    // The same proposal again (a retry that had committed): success, no output.
    assert!(ops.write_new(start()).await?.is_none());
    // A plain write reports it.
    match ops.write(start()).await {
        Err(OpError::Rejected(Rejection::AlreadyExists(_))) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let count = ops.read(|s| s.executions.len()).await?;
    assert_eq!(count, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_sees_a_write() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    let alice = operator("alice")?;
    assert!(ops.who_am_i(&operator("bob")?).is_empty());
    let bindings = ops.grant_role(&alice, "bob", Role::Operator).await?;
    assert!(bindings.contains(&("bob".to_string(), Role::Operator)));
    assert_eq!(ops.read(|s| s.roles_of("bob")).await?, vec![Role::Operator]);
    assert_eq!(ops.who_am_i(&operator("bob")?), vec![Role::Operator]);
    assert!(
        ops.list_role_bindings(&PageRequest::all(0, "")?)
            .await?
            .0
            .contains(&("bob".to_string(), Role::Operator))
    );
    match ops.grant_role(&alice, "bob/../x", Role::Operator).await {
        Err(OpError::Invalid(m)) => assert!(m.contains("subject"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    Ok(())
}

/// `result` is `apply`'s MISSING_ROLE refusal, and its status says so.
fn missing_role<T: std::fmt::Debug>(result: Result<T, OpError>) {
    match result {
        Err(e @ OpError::Rejected(Rejection::PermissionDenied(Reason::MissingRole, _))) => {
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert_eq!(
                crate::service::status::reason_of(&status),
                Reason::MissingRole
            );
        }
        other => panic!("expected MISSING_ROLE, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_refusals_surface_as_permission_denied() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    let alice = operator("alice")?;
    ops.grant_role(&alice, "bob", Role::Operator).await?;
    let bob = operator("bob")?;
    // The early check (on fresh state) refuses a relaxed approval to a non-admin.
    missing_role(
        ops.apply_pipeline(&bob, "app.yml", RELAXED.into(), None)
            .await,
    );
    // `apply` refuses a caller with no role at all.
    missing_role(
        ops.apply_pipeline(&operator("carol")?, "app.yml", PIPELINE.into(), None)
            .await,
    );
    // Nothing was applied; an admin may apply it.
    assert!(ops.read(|s| s.pipelines.is_empty()).await?);
    ops.apply_pipeline(&alice, "app.yml", RELAXED.into(), None)
        .await?;
    // A bad file is refused before anything is proposed.
    match ops
        .apply_pipeline(&alice, "bad.yml", "name: [".into(), None)
        .await
    {
        Err(OpError::Lint { summary, problems }) => {
            assert!(summary.starts_with("pipeline is invalid"), "{summary}");
            assert_eq!((problems[0].line, problems[0].column), (2, 1));
        }
        other => panic!("expected a lint failure, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_only_calls_run_here_on_the_leader() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ops = cluster(dir.path()).await?;
    assert!(matches!(ops.leader()?, super::Leader::Here));
    // No agent is connected to the hub: every enrolled agent is listed, none connected.
    assert!(
        ops.list_agents(&PageRequest::all(0, "")?)
            .await?
            .0
            .is_empty()
    );
    let status = ops.cluster_status().await;
    assert_eq!(status.own.leader_id, 1);
    assert_eq!(status.members.len(), 1);
    match ops.transfer_leader(7).await {
        Err(OpError::NotFound(m)) => assert!(m.contains("member 7"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    Ok(())
}
