//! Service containers through the Docker executor on the real Docker
//! Engine (`ferry-local/busybox`, built by `scripts/busybox-image`): a
//! service reached by its name, one that never gets ready and one that
//! exits fail the action naming them, a stop while waiting, service output
//! in the action's log (prefixed, masked), the same hardening as the
//! action's container, and the start-up clean-up of what a crashed agent
//! left. After each, nothing with Ferry's label of the attempt remains.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use ferry_engine::executor::{Executor, LABEL, SERVICE_LABEL};
use ferry_engine::runner::{
    ActionContext, ActionError, ActionRunner, ActionSpec, Attempt, AttemptId, Cancel, LogSink,
    Outcome, Secrets, ServiceSpec,
};
use ferry_engine::store::Store;
use ferry_pipeline::mask::Masker;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const IMAGE: &str = "ferry-local/busybox";

/// A secret of the actions here, which services print.
const SECRET: &str = "s3cr3t-value-42";

fn ensure_busybox_image() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let status = std::process::Command::new(script).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "building {IMAGE} failed (is the Docker Engine running?)"
    );
}

/// The log as an agent keeps it: masked with the action's secrets, shared
/// with the test while the attempt runs.
#[derive(Clone)]
struct Log {
    bytes: Arc<Mutex<Vec<u8>>>,
    masker: Arc<Mutex<Masker>>,
}

impl Log {
    fn new(secrets: &Secrets) -> Log {
        Log {
            bytes: Arc::default(),
            masker: Arc::new(Mutex::new(Masker::new(secrets.values().cloned()))),
        }
    }

    fn text(&self) -> String {
        let mut bytes = self.bytes.lock().map(|b| b.clone()).unwrap_or_default();
        if let Ok(mut m) = self.masker.lock() {
            bytes.extend(m.finish());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl LogSink for Log {
    fn write(&mut self, bytes: &[u8]) {
        let masked = self
            .masker
            .lock()
            .map(|mut m| m.push(bytes))
            .unwrap_or_default();
        if let Ok(mut b) = self.bytes.lock() {
            b.extend(masked);
        }
    }
}

/// One executor of an agent with a name of its own (so tests running at
/// the same time never see each other's containers).
struct Setup {
    _dir: tempfile::TempDir,
    executor: Executor,
    docker: Docker,
    agent: String,
}

fn setup() -> Result<Setup, Box<dyn std::error::Error>> {
    static N: AtomicU64 = AtomicU64::new(0);
    ensure_busybox_image();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("store"))?;
    let docker = Docker::connect_with_local_defaults()?;
    let agent = format!(
        "svctest{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    Ok(Setup {
        _dir: dir,
        executor: Executor::new(docker.clone(), store, agent.clone()),
        docker,
        agent,
    })
}

fn service(name: &str, command: &str, ready: &str, timeout: Duration) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: IMAGE.into(),
        env: BTreeMap::from([("LEAK".to_string(), SECRET.to_string())]),
        command: vec!["/bin/sh".into(), "-c".into(), command.into()],
        ready_command: ready.into(),
        ready_timeout: timeout,
    }
}

fn spec(epoch: u64, commands: &[&str], services: Vec<ServiceSpec>) -> ActionSpec {
    ActionSpec {
        attempt: AttemptId {
            id: format!("e/s/unit#{epoch}"),
            epoch,
        },
        context: ActionContext {
            pipeline: "p".into(),
            action: "unit".into(),
            stage: "test".into(),
            ..Default::default()
        },
        image: IMAGE.into(),
        commands: commands.iter().map(|c| c.to_string()).collect(),
        timeout: Duration::from_secs(300),
        services,
        ..Default::default()
    }
}

fn secrets() -> Secrets {
    BTreeMap::from([("TOKEN".to_string(), SECRET.as_bytes().to_vec())])
}

/// Runs `spec` to its end with `cancel`; the outcome and the log.
async fn run(s: &Setup, spec: &ActionSpec, cancel: Cancel) -> (Outcome, String) {
    let secrets = secrets();
    let mut log = Log::new(&secrets);
    let outcome = s
        .executor
        .run(Attempt {
            spec,
            inputs: &[],
            secrets: &secrets,
            log: &mut log,
            cancel,
        })
        .await;
    (outcome, log.text())
}

/// Names of containers and networks with Ferry's label of attempt `epoch`.
async fn leftovers(s: &Setup, epoch: u64) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let filters = HashMap::from([
        ("label".to_string(), vec![format!("{LABEL}={epoch}")]),
        ("name".to_string(), vec![format!("ferry-{}-", s.agent)]),
    ]);
    let containers = s
        .docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await?;
    let networks = s
        .docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await?;
    Ok(containers
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .chain(networks.into_iter().filter_map(|n| n.name))
        .collect())
}

const WEB: &str = "mkdir -p /www && echo hello-from-web > /www/index.html \
                   && echo the token is $LEAK && exec httpd -f -v -p 8080 -h /www";

#[tokio::test]
async fn an_action_reaches_its_service_by_name_and_sees_its_output_masked() -> TestResult {
    let s = setup()?;
    let spec = spec(
        1,
        &[
            "wget -q -O- http://web:8080/",
            "wget -q -O /dev/null http://web:8080/nope || true",
        ],
        vec![
            service(
                "web",
                WEB,
                "wget -q -O /dev/null http://127.0.0.1:8080/",
                Duration::from_secs(30),
            ),
            // One without a ready command: ready once it runs.
            service(
                "idle",
                "echo idle up; exec sleep 3600",
                "",
                Duration::from_secs(5),
            ),
        ],
    );
    let (_cancel, rx) = Cancel::new();
    let (outcome, log) = run(&s, &spec, rx).await;
    assert!(outcome.success(), "{:?}\n{log}", outcome.result);
    assert!(log.contains("hello-from-web"), "{log}");
    assert!(log.contains("[ferry] service web is ready after"), "{log}");
    // Service output is in the action's log under the service's name, with
    // the action's secrets masked as in its own output.
    assert!(log.contains("[web] the token is ***"), "{log}");
    assert!(log.contains("[idle] idle up"), "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert_eq!(leftovers(&s, 1).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_service_that_never_gets_ready_fails_the_action_within_its_timeout() -> TestResult {
    let s = setup()?;
    let spec = spec(
        2,
        &["echo never runs"],
        vec![service(
            "db",
            "echo starting db with $LEAK; exec sleep 3600",
            "echo not yet; exit 1",
            Duration::from_secs(4),
        )],
    );
    let (_cancel, rx) = Cancel::new();
    let (outcome, log) = run(&s, &spec, rx).await;
    // The service's own timeout ended it, not the action's (300 s).
    let Err(e @ ActionError::ServiceNotReady { .. }) = &outcome.result else {
        panic!("{:?}\n{log}", outcome.result);
    };
    let message = e.to_string();
    assert!(
        message.starts_with("service `db` was not ready within 4s (its ready command "),
        "{message}"
    );
    assert!(
        message.contains("last exited with code 1: not yet); its last log lines:\n"),
        "{message}"
    );
    assert!(message.contains("starting db with"), "{message}");
    assert!(!log.contains("never runs"), "{log}");
    assert_eq!(outcome.exit_code(), None);
    assert_eq!(leftovers(&s, 2).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_service_that_exits_before_it_is_ready_fails_the_action() -> TestResult {
    let s = setup()?;
    let spec = spec(
        3,
        &["echo never runs"],
        vec![service(
            "db",
            "echo giving up; sleep 1; exit 3",
            "test -e /nothing",
            Duration::from_secs(60),
        )],
    );
    let (_cancel, rx) = Cancel::new();
    let (outcome, log) = run(&s, &spec, rx).await;
    let Err(e @ ActionError::ServiceExited { code: 3, .. }) = &outcome.result else {
        panic!("{:?}\n{log}", outcome.result);
    };
    let message = e.to_string();
    assert!(
        message.starts_with(
            "service `db` exited with code 3 before it was ready; its last log lines:\n"
        ),
        "{message}"
    );
    assert!(message.contains("giving up"), "{message}");
    assert!(log.contains("[db] giving up"), "{log}");
    assert_eq!(leftovers(&s, 3).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_service_whose_program_does_not_exist_fails_the_action() -> TestResult {
    let s = setup()?;
    let mut broken = service("db", "", "", Duration::from_secs(5));
    broken.command = vec!["/no/such/program".into()];
    let spec = spec(4, &["echo never runs"], vec![broken]);
    let (_cancel, rx) = Cancel::new();
    let (outcome, log) = run(&s, &spec, rx).await;
    // The container's init says why, and exits 127.
    let Err(e @ ActionError::ServiceExited { code: 127, .. }) = &outcome.result else {
        panic!("{:?}\n{log}", outcome.result);
    };
    assert!(e.to_string().contains("/no/such/program"), "{e}");
    assert_eq!(leftovers(&s, 4).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_missing_service_image_is_the_missing_image_error() -> TestResult {
    let s = setup()?;
    let mut missing = service("db", "true", "", Duration::from_secs(5));
    missing.image = "ferry-local/no-such-image-for-services".into();
    let spec = spec(5, &["echo never runs"], vec![missing]);
    let (_cancel, rx) = Cancel::new();
    let (outcome, log) = run(&s, &spec, rx).await;
    let Err(e @ ActionError::Image { .. }) = &outcome.result else {
        panic!("{:?}\n{log}", outcome.result);
    };
    assert!(
        e.to_string().starts_with(
            "image `ferry-local/no-such-image-for-services` is not present on this agent and \
             could not be pulled"
        ),
        "{e}"
    );
    assert_eq!(leftovers(&s, 5).await?, Vec::<String>::new());
    Ok(())
}

/// While a service is being waited for: its container has the action's
/// limits and hardening, on an internal network of the attempt's own; a
/// stop then ends the attempt and removes it all.
#[tokio::test]
async fn a_stop_while_waiting_removes_everything() -> TestResult {
    let s = Arc::new(setup()?);
    let mut spec = spec(
        6,
        &["echo never runs"],
        vec![service(
            "db",
            "exec sleep 3600",
            "exit 1",
            Duration::from_secs(300),
        )],
    );
    spec.resources.pids = Some(77);
    spec.resources.memory_bytes = Some(64 << 20);
    let (cancel, rx) = Cancel::new();
    let running = tokio::spawn({
        let s = s.clone();
        async move { run(&s, &spec, rx).await }
    });
    let name = s.executor.service_container_name(6, "db");
    let mut inspected = None;
    for _ in 0..300 {
        if let Ok(c) = s
            .docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            && c.state.as_ref().and_then(|st| st.running) == Some(true)
        {
            inspected = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = inspected.ok_or("the service never ran")?;
    let host = c.host_config.unwrap_or_default();
    assert_eq!(host.pids_limit, Some(77));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    assert_eq!(host.privileged, Some(false));
    let network = s.executor.network_name(6);
    assert_eq!(host.network_mode.as_deref(), Some(network.as_str()));
    let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get(SERVICE_LABEL).map(String::as_str), Some("db"));
    assert_eq!(labels.get(LABEL).map(String::as_str), Some("6"));
    let net = s
        .docker
        .inspect_network(
            &network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await?;
    assert_eq!(net.internal, Some(true));
    assert_eq!(
        net.labels
            .unwrap_or_default()
            .get(LABEL)
            .map(String::as_str),
        Some("6")
    );
    // The action's container is on it too, as `workspace` and `unit`, and
    // keeps its way out through the default bridge.
    let action = s
        .docker
        .inspect_container(
            &s.executor.container_name(6),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await?;
    let networks = action
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let aliases = networks
        .get(&network)
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default();
    assert!(
        aliases.iter().any(|a| a == "workspace") && aliases.iter().any(|a| a == "unit"),
        "{aliases:?}"
    );
    assert!(networks.contains_key("bridge"), "{:?}", networks.keys());
    cancel.stop("stopped by ann");
    let (outcome, log) = running.await?;
    assert!(
        outcome.cancelled_with("stopped by ann"),
        "{:?}\n{log}",
        outcome.result
    );
    assert_eq!(leftovers(&s, 6).await?, Vec::<String>::new());
    Ok(())
}

/// An agent that crashed mid-attempt left a service container and the
/// attempt's network; the executor's start-up clean-up (the agent runs it
/// before it takes work) removes both.
#[tokio::test]
async fn start_up_removes_the_services_and_networks_a_crash_left() -> TestResult {
    let s = setup()?;
    let epoch = 99;
    let network = s.executor.network_name(epoch);
    let container = s.executor.service_container_name(epoch, "db");
    let label = format!("{LABEL}={epoch}");
    let docker = |args: &[&str]| -> TestResult {
        let out = std::process::Command::new("docker").args(args).output()?;
        if !out.status.success() {
            return Err(
                format!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        Ok(())
    };
    docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        &label,
        &network,
    ])?;
    docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--label",
        &label,
        "--network",
        &network,
        IMAGE,
        "sleep",
        "3600",
    ])?;
    assert_eq!(leftovers(&s, epoch).await?.len(), 2);
    s.executor.remove_stale().await;
    assert_eq!(leftovers(&s, epoch).await?, Vec::<String>::new());
    Ok(())
}
