//! The leader's scheduler: gives queued build and test actions to connected
//! agents whose labels cover the action's `runs_on`, within each agent's
//! capacity, least-loaded first. An assignment is committed (which fixes its
//! fencing epoch) before it is sent. The secrets it carries are sealed to the
//! assigned agent's wrapping key; a plain value is never kept or logged here.
//! An agent without one (enrolled before wrapping keys, holding a copy of the
//! cluster's key) gets no secrets at all: nothing is sealed under the
//! cluster's key for an agent, and the action fails naming the agent and
//! saying to enroll it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferry_proto as pb;

use crate::ops::Ops;
use crate::views::{self, now_ms};
use ferry_state::ClusterState;
use ferry_state::version::Version;

/// The assignment message for the attempt with fencing epoch `epoch`.
pub fn assignment(state: &ClusterState, epoch: u64) -> Option<pb::internal::Assignment> {
    let loc = state.attempts.get(&epoch)?;
    let exec = state.executions.get(&loc.execution)?;
    let pipeline = state.pipeline_of(exec)?;
    let action = pipeline.stages.get(loc.stage)?.actions.get(loc.action)?;
    let run = exec.state.action(loc.stage, loc.action)?;
    let produced = exec.state.produced();
    let inputs = action
        .inputs
        .iter()
        .map(|name| match produced.get(name.as_str()) {
            Some(art) => pb::internal::InputArtifact {
                name: name.clone(),
                digest: art.digest.clone(),
                size: art.size,
                holders: views::holder_addresses(state, &art.digest),
            },
            None => pb::internal::InputArtifact {
                name: name.clone(),
                ..Default::default()
            },
        })
        .collect();
    // The one spec `ferry exec` also runs, with the texts its references
    // resolved to when it started (recorded in the state, so every leader
    // sends the same text).
    let mut spec = ferry_pipeline::spec::action_spec(
        pipeline,
        (loc.stage, loc.action),
        run,
        (&exec.id, &exec.revision),
        epoch,
    )?;
    spec.caches = state.cache_plans(exec, loc);
    Some(pb::internal::Assignment {
        inputs,
        git_url: pipeline.source.git.clone(),
        ..pb::internal::Assignment::from(spec)
    })
}

/// The assignment for `epoch` with the secrets its action (and its deploy
/// hosts) name, sealed again to the agent's wrapping key alone: only the
/// agent that runs it opens them. An agent without a wrapping key gets none
/// ([`withhold_from_legacy_agent`]).
///
/// A local read: it runs on the leader (the scheduler, the agent session)
/// for an attempt this member just assigned or the agent reported.
pub fn assignment_with_secrets(ops: &Ops, epoch: u64) -> Option<pb::internal::Assignment> {
    let (mut a, agent, wrapping_key) = ops.local_read(|s| {
        let mut a = assignment(s, epoch)?;
        let (loc, exec, action) = s.attempt_action(epoch)?;
        let wrapping_key = s
            .agents
            .get(&loc.agent)
            .and_then(|r| r.wrapping_key.clone());
        if let Some(deploy) = &action.deploy {
            let attempt = exec
                .state
                .action(loc.stage, loc.action)
                .map_or(1, |r| r.attempt);
            a.deploy = Some(crate::deployments::deploy_spec(s, exec, deploy, attempt));
        }
        for (var, name) in &action.secrets {
            match crate::deployments::sealed(s, name) {
                Some(sealed) => {
                    a.sealed_env.insert(var.clone(), sealed);
                }
                None => a.missing_secrets.push(name.clone()),
            }
        }
        Some((a, loc.agent.clone(), wrapping_key))
    })?;
    match wrapping_key {
        Some(key) => reseal_for_agent(&mut a, ops.ctx().secrets.as_ref(), &key),
        None => withhold_from_legacy_agent(&mut a, &agent),
    }
    Some(a)
}

/// Takes every sealed secret out of `a`, for `agent`, which has no wrapping
/// key: it enrolled before them and holds a copy of the cluster's secrets
/// key. Sealing under that key would keep a stolen agent disk able to open
/// the whole state, so the action fails instead, saying why and what to do
/// (`secrets_problem`; a deploy's `problem`; older agents read
/// `missing_secrets`).
fn withhold_from_legacy_agent(a: &mut pb::internal::Assignment, agent: &str) {
    let mut withheld: Vec<String> = std::mem::take(&mut a.sealed_env)
        .into_values()
        .map(|s| s.name)
        .collect();
    let mut host_withheld = false;
    if let Some(d) = a.deploy.as_mut() {
        for h in &mut d.hosts {
            if let Some(sealed) = h.sealed_credentials.take() {
                withheld.push(sealed.name);
                host_withheld = true;
            }
        }
    }
    if withheld.is_empty() {
        return;
    }
    withheld.sort();
    withheld.dedup();
    let problem = format!(
        "agent `{agent}` enrolled before per-agent wrapping keys and holds a copy of the \
         cluster's secrets key, so no secret is sent to it ({}); re-enroll it: `ferry agents \
         remove {agent}`, wipe its state dir, and start it with a new join token",
        withheld.join(", ")
    );
    if let Some(d) = a.deploy.as_mut()
        && host_withheld
        && d.problem.is_empty()
    {
        d.problem = problem.clone();
    }
    for name in &withheld {
        if !a.missing_secrets.contains(name) {
            a.missing_secrets.push(name.clone());
        }
    }
    tracing::error!(%agent, secrets = ?withheld, attempt = ?a.attempt.as_ref().map(|r| &r.attempt_id), "secrets not sent: the agent holds the cluster's key from before wrapping keys and must be enrolled again");
    a.secrets_problem = problem;
}

/// Opens each sealed secret of `a` with the cluster's key and seals it to
/// the agent's wrapping key (hex). A secret that cannot be re-sealed is not
/// sent: the action fails on it as on a secret that is not set (a deploy
/// host's, with the reason in the deploy `problem`), and the coordinator's
/// log says why.
fn reseal_for_agent(
    a: &mut pb::internal::Assignment,
    cluster: Option<&ferry_certs::SecretBox>,
    wrapping_key_hex: &str,
) {
    let recipient: Option<[u8; 32]> = hex::decode(wrapping_key_hex)
        .ok()
        .and_then(|b| b.try_into().ok());
    let attempt = a.attempt.as_ref().map(|r| r.attempt_id.clone());
    let reseal = |s: &pb::internal::SealedSecret| -> Result<pb::internal::SealedSecret, String> {
        let cluster = cluster.ok_or(
            "this coordinator has no secrets key (secrets.key in --tls-dir) to open it with",
        )?;
        let recipient = recipient.ok_or("the agent's recorded wrapping key is not 32 bytes")?;
        let w = ferry_certs::reseal_to(cluster, &recipient, &s.name, &s.nonce, &s.ciphertext)
            .map_err(|e| e.to_string())?;
        Ok(pb::internal::SealedSecret {
            name: s.name.clone(),
            nonce: w.nonce.to_vec(),
            ciphertext: w.ciphertext,
            ephemeral_public_key: w.ephemeral_public.to_vec(),
        })
    };
    let mut failed = Vec::new();
    for (var, sealed) in std::mem::take(&mut a.sealed_env) {
        match reseal(&sealed) {
            Ok(resealed) => {
                a.sealed_env.insert(var, resealed);
            }
            Err(e) => failed.push((sealed.name, e)),
        }
    }
    for (name, _) in &failed {
        a.missing_secrets.push(name.clone());
    }
    if let Some(d) = a.deploy.as_mut() {
        for h in &mut d.hosts {
            let Some(sealed) = h.sealed_credentials.take() else {
                continue;
            };
            match reseal(&sealed) {
                Ok(resealed) => h.sealed_credentials = Some(resealed),
                Err(e) => {
                    if d.problem.is_empty() {
                        d.problem = format!(
                            "secret `{}` of host `{}` could not be sealed to the agent: {e}",
                            sealed.name, h.name
                        );
                    }
                    failed.push((sealed.name, e));
                }
            }
        }
    }
    for (name, error) in failed {
        tracing::error!(secret = %name, attempt = ?attempt, %error, "secret not sent: it could not be sealed to the agent's wrapping key");
    }
}

/// A queued action: (execution, stage, action).
type Queued = (String, usize, usize);

/// What an agent must offer to run an action: its `runs_on` labels, sorted,
/// and the `MAJOR.MINOR` version it uses ([`ferry_pipeline::Action::needs_version`]).
type Needs = (Vec<String>, (u32, u32));

/// Picks an agent for each queued action: (execution, stage, action, agent).
/// Least-loaded first (most free slots) among agents whose labels cover
/// `runs_on`; one heap of free slots per distinct label set, the sets with
/// the fewest eligible agents first, so a round costs
/// O((actions + agents × label sets) log agents).
///
/// An action goes only to an agent of a version that runs everything it
/// uses ([`ferry_pipeline::Action::needs_version`]: services, reports,
/// outputs kept on failure, plugins): an older agent ignores what it does not know and
/// would run the commands without it. Such an action waits for an agent that
/// runs it; an agent whose version does not read counts as 0.1.
///
/// An action waits while every agent holding one of its inputs is `away`
/// (shutting down, or disconnected but heard from within its lease:
/// restarting, say, for an upgrade): sent now, it could fetch the input from
/// no one, or from an address the holder no longer serves. It goes once a
/// holder is back or another holds a replica. Holders gone longer than a lease
/// are not waited for; the fetch then fails naming the input.
pub fn plan(
    state: &ClusterState,
    connected: &[String],
    away: &BTreeSet<&str>,
) -> Vec<(String, usize, usize, String)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let running = state.running_counts();
    let mut free: BTreeMap<&str, i64> = connected
        .iter()
        .filter_map(|n| state.agents.get(n))
        .filter(|a| !a.draining)
        .map(|a| {
            let busy = running.get(a.name.as_str()).copied().unwrap_or(0) as i64;
            (a.name.as_str(), a.capacity as i64 - busy)
        })
        .filter(|(_, slots)| *slots > 0)
        .collect();
    // Queued actions grouped by the labels and the agent version they need,
    // oldest first within each.
    let mut groups: BTreeMap<Needs, Vec<Queued>> = BTreeMap::new();
    // One deployment per environment at a time; the oldest waiting goes first.
    // Which environments are busy is looked up only when a deploy waits.
    let mut deploying = None;
    for (exec_id, si, ai) in state.queued() {
        let Some(exec) = state.executions.get(&exec_id) else {
            continue;
        };
        let Some(action) = state
            .pipeline_of(exec)
            .and_then(|p| p.stages.get(si))
            .and_then(|s| s.actions.get(ai))
        else {
            continue;
        };
        if !away.is_empty() && inputs_held_only_by(state, exec, &action.inputs, away) {
            continue;
        }
        if let Some(d) = &action.deploy
            && !deploying
                .get_or_insert_with(|| state.environments_deploying())
                .insert(d.environment.as_str())
        {
            continue;
        }
        let mut labels = action.runs_on.clone();
        labels.sort();
        groups
            .entry((labels, action.needs_version()))
            .or_default()
            .push((exec_id, si, ai));
    }
    // The most constrained label sets choose first: otherwise actions that
    // run anywhere could take the only slots of the agents that can run the
    // labelled ones, while other agents sit idle.
    // Which agents may run each label set is worked out once, here.
    // An agent older than what an action uses would drop that part of it
    // (a report, an output kept on failure): it is not eligible.
    let mut groups: Vec<(Vec<&str>, Vec<String>, Vec<Queued>)> = groups
        .into_iter()
        .map(|((labels, (major, minor)), actions)| {
            let needs = Version { major, minor };
            let eligible = free
                .keys()
                .copied()
                .filter(|name| {
                    state.agents.get(*name).is_some_and(|a| {
                        labels.iter().all(|l| a.labels.contains(l))
                            && Version::parse(&a.version).unwrap_or(Version::FIRST) >= needs
                    })
                })
                .collect();
            (eligible, labels, actions)
        })
        .collect();
    groups.sort_by(|a, b| (a.0.len(), &a.1).cmp(&(b.0.len(), &b.1)));
    let mut out = Vec::new();
    for (eligible, _, actions) in groups {
        // Free slots as earlier groups left them.
        let mut heap: BinaryHeap<(i64, Reverse<&str>)> = eligible
            .into_iter()
            .map(|name| (free.get(name).copied().unwrap_or(0), Reverse(name)))
            .collect();
        for (exec_id, si, ai) in actions {
            let Some((slots, Reverse(name))) = heap.pop() else {
                break;
            };
            if slots <= 0 {
                break;
            }
            out.push((exec_id, si, ai, name.to_string()));
            if let Some(f) = free.get_mut(name) {
                *f -= 1;
            }
            if slots > 1 {
                heap.push((slots - 1, Reverse(name)));
            }
        }
    }
    out
}

/// Commits one assignment (fixing its epoch) and sends it to the agent.
async fn assign(ops: &Ops, (execution, stage, action, agent): (String, usize, usize, String)) {
    let ctx = ops.ctx();
    // Read before the Assign overwrites started_at.
    let queued_at = ops.local_read(|s| {
        let e = s.executions.get(&execution)?;
        crate::metrics::queued_since(e.state.action(stage, action)?)
    });
    match ops.assign(execution, stage, action, &agent).await {
        Ok(Some(epoch)) => {
            let Some(a) = assignment_with_secrets(ops, epoch) else {
                return;
            };
            tracing::debug!(%agent, attempt = ?a.attempt.as_ref().map(|r| &r.attempt_id), epoch, "assigned");
            let msg = pb::internal::CoordinatorMessage {
                kind: Some(pb::internal::coordinator_message::Kind::Assign(a)),
            };
            if !ctx.agents.send(&agent, msg).await {
                tracing::warn!(%agent, epoch, "agent left before its assignment was sent; re-sent when it reconnects");
            } else if let Some(q) = queued_at {
                ctx.metrics.observe_dispatch(q, now_ms());
            }
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "assignment not made"),
    }
}

/// Whether some input of `inputs` is held only by agents in `away` (none
/// of its holders is here to serve it).
fn inputs_held_only_by(
    state: &ClusterState,
    exec: &ferry_state::Execution,
    inputs: &[String],
    away: &BTreeSet<&str>,
) -> bool {
    if inputs.is_empty() {
        return false;
    }
    let produced = exec.state.produced();
    inputs.iter().any(|name| {
        produced
            .get(name.as_str())
            .and_then(|art| state.artifacts.get(&art.digest))
            .is_some_and(|held| {
                !held.holders.is_empty() && held.holders.iter().all(|h| away.contains(h.as_str()))
            })
    })
}

/// Schedules while this member leads (`leader::supervise` starts and cancels
/// it). All assignments
/// of a round are proposed at once, so the Raft driver batches them into one
/// Ready (one fsync) instead of one round trip each.
pub async fn run(ops: Ops) {
    let ctx = ops.ctx().clone();
    let mut applied = ops.applied();
    let mut hub = ctx.agents.subscribe();
    loop {
        tokio::select! {
            _ = applied.changed() => {}
            _ = hub.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Agents shutting down, drained or silent take no new work.
        let connected = ctx.agents.accepting(ctx.agent_lease);
        // Heard from lately, but shutting down or disconnected: leaving or
        // restarting (an upgrade), so not to be fetched from now.
        let heard = ctx.agents.heard_within(ctx.agent_lease);
        let away: BTreeSet<&str> = heard
            .iter()
            .filter(|name| !connected.contains(*name))
            .map(String::as_str)
            .collect();
        // A local read on the leader: `apply` checks every assignment again.
        let decisions = ops.local_read(|s| plan(s, &connected, &away));
        futures::future::join_all(decisions.into_iter().map(|d| assign(&ops, d))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_state::{AgentRecord, Command};

    const PLAN_YAML: &str = r#"
name: fan
source: {git: /tmp/fan.git}
stages:
  - name: build
    actions:
      - {name: linux, type: build, image: img, runs_on: [builder], commands: [true]}
      - {name: docs, type: build, image: img, commands: [true]}
      - {name: lint, type: build, image: img, commands: [true]}
"#;

    /// One execution of `PLAN_YAML` waiting, and `agents` (name, labels,
    /// capacity, draining) enrolled.
    fn waiting(agents: &[(&str, &[&str], u32, bool)]) -> ClusterState {
        let mut s = ferry_state::testing::applied(PLAN_YAML);
        start_e1(&mut s, "fan");
        for (name, labels, capacity, draining) in agents {
            s.agents.insert(
                name.to_string(),
                AgentRecord {
                    name: name.to_string(),
                    labels: labels.iter().map(|l| l.to_string()).collect(),
                    capacity: *capacity,
                    draining: *draining,
                    ..Default::default()
                },
            );
        }
        s
    }

    /// Starts execution `e1` of `pipeline` by hand.
    fn start_e1(s: &mut ClusterState, pipeline: &str) {
        s.apply(Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: "e1".into(),
            pipeline: pipeline.into(),
            revision: "abc".into(),
            trigger: "t".into(),
            started_by: Some(ferry_state::By::operator("root")),
            at: 2,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }

    /// Which agent each action of the build stage went to, by action index.
    fn placed(plan: &[(String, usize, usize, String)]) -> BTreeMap<usize, String> {
        plan.iter()
            .map(|(_, _, a, agent)| (*a, agent.clone()))
            .collect()
    }

    #[test]
    fn labels_pick_the_agent_and_load_spreads_the_rest() {
        let s = waiting(&[("b1", &["builder"], 1, false), ("plain", &[], 2, false)]);
        let plan = plan(&s, &names(&["b1", "plain"]), &BTreeSet::new());
        let got = placed(&plan);
        assert_eq!(got.get(&0).map(String::as_str), Some("b1"), "{plan:?}");
        assert_eq!(got.get(&1).map(String::as_str), Some("plain"));
        assert_eq!(got.get(&2).map(String::as_str), Some("plain"));
    }

    #[test]
    fn the_agent_with_the_most_free_slots_goes_first() {
        // `big` stays the freer one after each of three actions.
        let s = waiting(&[("big", &["builder"], 5, false), ("small", &[], 1, false)]);
        let got = placed(&plan_of(&s, &["big", "small"]));
        assert!(got.values().all(|a| a == "big"), "{got:?}");
        assert_eq!(got.len(), 3);
        // Equal agents share the work.
        let s = waiting(&[("a", &["builder"], 3, false), ("b", &["builder"], 3, false)]);
        let got = placed(&plan_of(&s, &["a", "b"]));
        let on_a = got.values().filter(|n| n.as_str() == "a").count();
        assert_eq!((got.len(), on_a), (3, 2), "{got:?}");
    }

    #[test]
    fn capacity_drained_and_absent_agents_bound_the_plan() {
        let s = waiting(&[
            ("busy", &["builder"], 1, false),
            ("draining", &[], 8, true),
            ("away", &[], 8, false),
        ]);
        let plan = plan(&s, &names(&["busy", "draining"]), &BTreeSet::new());
        // One slot, on the only connected agent that takes work.
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert_eq!(plan[0].3, "busy");
        // Nobody covers `builder`: that action waits, the others run.
        let s = waiting(&[("plain", &[], 8, false)]);
        let got = placed(&plan_of(&s, &["plain"]));
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn an_action_using_reports_goes_only_to_an_agent_that_reads_them() {
        let yaml = r#"
name: fan
source: {git: /tmp/fan.git}
stages:
  - name: build
    actions:
      - {name: unit, type: test, image: img, commands: [true], reports: {junit: [r.xml]}}
"#;
        only_a_new_agent_takes(yaml, "fan", "a 0.1 agent would drop the report");
    }

    /// Pipeline `name` of `yaml`'s first action is placed on the 0.2 agent
    /// and never on the 0.1 one, which would not run it right (`why`).
    fn only_a_new_agent_takes(yaml: &str, name: &str, why: &str) {
        let mut s = ferry_state::testing::applied(yaml);
        start_e1(&mut s, name);
        for (name, version) in [("old", "0.1.0"), ("new", "0.2.0")] {
            s.agents.insert(
                name.to_string(),
                AgentRecord {
                    name: name.to_string(),
                    capacity: 4,
                    version: version.to_string(),
                    ..Default::default()
                },
            );
        }
        assert!(plan_of(&s, &["old"]).is_empty(), "{why}");
        let got = placed(&plan_of(&s, &["old", "new"]));
        assert_eq!(got.get(&0).map(String::as_str), Some("new"));
    }

    #[test]
    fn a_plugin_action_goes_only_to_an_agent_that_runs_plugins() {
        let yaml = r#"
name: plug
source: {git: /tmp/plug.git}
stages:
  - name: ship
    actions:
      - {name: publish, type: plugin, image: img, settings: {repo: web}}
"#;
        only_a_new_agent_takes(yaml, "plug", "a 0.1 agent would run no command and succeed");
    }

    #[test]
    fn an_action_with_services_goes_only_to_an_agent_that_runs_them() {
        let mut s = ferry_state::testing::applied(
            "name: svc\nsource: {git: /tmp/svc.git}\nstages:\n  - name: test\n    actions:\n      \
             - {name: it, type: test, image: img, commands: [true], services: [{name: db, image: img}]}\n      \
             - {name: unit, type: test, image: img, commands: [true]}\n",
        );
        start_e1(&mut s, "svc");
        for (name, version) in [("old", "0.1.0"), ("unknown", "")] {
            s.agents.insert(
                name.to_string(),
                AgentRecord {
                    name: name.to_string(),
                    capacity: 1,
                    version: version.to_string(),
                    ..Default::default()
                },
            );
        }
        // Agents of v0.1 ignore `services`: only the plain action goes.
        let got = placed(&plan_of(&s, &["old", "unknown"]));
        assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1], "{got:?}");
        s.agents.insert(
            "new".to_string(),
            AgentRecord {
                name: "new".to_string(),
                capacity: 1,
                version: "0.2.0".to_string(),
                ..Default::default()
            },
        );
        let got = placed(&plan_of(&s, &["old", "unknown", "new"]));
        assert_eq!(got.get(&0).map(String::as_str), Some("new"), "{got:?}");
    }

    const INPUT_YAML: &str = r#"
name: chain
source: {git: /tmp/chain.git}
stages:
  - name: build
    actions:
      - {name: make, type: build, image: img, commands: [true], outputs: {app: [out]}}
  - name: test
    actions:
      - {name: check, type: test, image: img, inputs: [app], commands: [true]}
"#;

    #[test]
    fn an_action_waits_while_the_only_holders_of_its_input_are_away() {
        let mut s = ferry_state::testing::applied(INPUT_YAML);
        let apply =
            |s: &mut ClusterState, cmd: Command| s.apply(cmd).unwrap_or_else(|e| panic!("{e}"));
        start_e1(&mut s, "chain");
        for name in ["maker", "tester"] {
            s.agents.insert(
                name.into(),
                AgentRecord {
                    name: name.into(),
                    capacity: 2,
                    ..Default::default()
                },
            );
        }
        let assigned = apply(
            &mut s,
            Command::Assign {
                execution: "e1".into(),
                stage: 0,
                action: 0,
                agent: "maker".into(),
                at: 3,
            },
        );
        let ferry_state::Output::Assigned { epoch, .. } = assigned else {
            panic!("not assigned: {assigned:?}");
        };
        let app = ferry_pipeline::execution::ArtifactRef {
            digest: "sha256:aa".into(),
            size: 1,
        };
        apply(
            &mut s,
            Command::FinishAttempt {
                epoch,
                agent: "maker".into(),
                success: true,
                exit_code: Some(0),
                message: String::new(),
                outputs: BTreeMap::from([("app".to_string(), app)]),
                log: None,
                deployment: None,
                variables: Default::default(),
                tests: None,
                caches: Vec::new(),
                at: 4,
            },
        );
        apply(
            &mut s,
            Command::ArtifactHeld {
                digest: "sha256:aa".into(),
                size: 1,
                agent: "maker".into(),
            },
        );
        // `maker`, the only holder, is restarting: `check` waits for it.
        let away = BTreeSet::from(["maker"]);
        assert!(plan(&s, &names(&["tester"]), &away).is_empty());
        // It is back: `check` runs.
        assert_eq!(
            plan(&s, &names(&["tester", "maker"]), &BTreeSet::new()).len(),
            1
        );
        // It has been gone longer than a lease: not waited for (the fetch
        // then fails naming the input).
        assert_eq!(plan(&s, &names(&["tester"]), &BTreeSet::new()).len(), 1);
        // Another holder is here: no wait for the one away.
        apply(
            &mut s,
            Command::ArtifactHeld {
                digest: "sha256:aa".into(),
                size: 1,
                agent: "tester".into(),
            },
        );
        assert_eq!(plan(&s, &names(&["tester"]), &away).len(), 1);
    }

    fn plan_of(s: &ClusterState, connected: &[&str]) -> Vec<(String, usize, usize, String)> {
        plan(s, &names(connected), &BTreeSet::new())
    }
    use ferry_certs::{SecretBox, WrappingKey};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// An assignment naming `TOKEN` = secret `tok` and one SSH host whose
    /// key is secret `key`, sealed under `cluster` as the state holds them.
    fn sealed_assignment(
        cluster: &SecretBox,
    ) -> Result<pb::internal::Assignment, Box<dyn std::error::Error>> {
        let seal = |name: &str,
                    value: &[u8]|
         -> Result<pb::internal::SealedSecret, ferry_certs::SecretError> {
            let (nonce, ciphertext) = cluster.seal(name, value)?;
            Ok(pb::internal::SealedSecret {
                name: name.into(),
                nonce,
                ciphertext,
                ..Default::default()
            })
        };
        let mut a = pb::internal::Assignment::default();
        a.sealed_env.insert("TOKEN".into(), seal("tok", b"v1")?);
        a.deploy = Some(pb::internal::DeploySpec {
            hosts: vec![pb::internal::DeployHost {
                name: "web1".into(),
                kind: "ssh".into(),
                sealed_credentials: Some(seal("key", b"PEM")?),
                ..Default::default()
            }],
            ..Default::default()
        });
        Ok(a)
    }

    fn open(
        agent: &WrappingKey,
        s: &pb::internal::SealedSecret,
    ) -> Result<Vec<u8>, ferry_certs::WrapError> {
        agent.open(&s.name, &s.ephemeral_public_key, &s.nonce, &s.ciphertext)
    }

    #[test]
    fn secrets_are_sealed_again_to_the_agent_alone() -> TestResult {
        let cluster = SecretBox::new(&[5u8; 32])?;
        let agent = WrappingKey::generate()?;
        let mut a = sealed_assignment(&cluster)?;
        reseal_for_agent(&mut a, Some(&cluster), &hex::encode(agent.public_bytes()));
        assert!(a.missing_secrets.is_empty());
        let env = a.sealed_env.get("TOKEN").ok_or("TOKEN")?;
        assert_eq!(env.ephemeral_public_key.len(), 32);
        assert_eq!(open(&agent, env)?, b"v1");
        let deploy = a.deploy.as_ref().ok_or("deploy")?;
        assert!(deploy.problem.is_empty());
        let host = deploy.hosts[0].sealed_credentials.as_ref().ok_or("host")?;
        assert_eq!(open(&agent, host)?, b"PEM");
        // The cluster's key no longer opens what is sent.
        assert!(cluster.open("tok", &env.nonce, &env.ciphertext).is_err());
        // Nor does another agent's wrapping key.
        assert!(open(&WrappingKey::generate()?, env).is_err());
        Ok(())
    }

    /// An agent enrolled before wrapping keys (it holds the cluster's key)
    /// gets no secret, not even under the cluster's key: the action fails
    /// naming the agent and saying to enroll it again.
    #[test]
    fn an_agent_holding_the_cluster_key_gets_no_secrets() -> TestResult {
        let cluster = SecretBox::new(&[5u8; 32])?;
        let mut a = sealed_assignment(&cluster)?;
        withhold_from_legacy_agent(&mut a, "old-1");
        assert!(a.sealed_env.is_empty(), "a secret was sent");
        let deploy = a.deploy.as_ref().ok_or("deploy")?;
        assert!(deploy.hosts[0].sealed_credentials.is_none());
        assert!(deploy.hosts[0].private_key.is_empty());
        let mut missing = a.missing_secrets.clone();
        missing.sort();
        assert_eq!(missing, ["key", "tok"]);
        for problem in [&a.secrets_problem, &deploy.problem] {
            assert!(
                problem.contains("agent `old-1`") && problem.contains("re-enroll it"),
                "{problem}"
            );
        }
        // Nothing named: nothing to refuse.
        let mut plain = pb::internal::Assignment::default();
        withhold_from_legacy_agent(&mut plain, "old-1");
        assert!(plain.secrets_problem.is_empty() && plain.missing_secrets.is_empty());
        Ok(())
    }

    #[test]
    fn a_secret_that_cannot_be_resealed_is_not_sent() -> TestResult {
        let cluster = SecretBox::new(&[5u8; 32])?;
        let agent = hex::encode(WrappingKey::generate()?.public_bytes());
        // No cluster key on this coordinator, another cluster's key, or a
        // damaged recorded wrapping key: reported like an unset secret.
        let other = SecretBox::new(&[6u8; 32])?;
        for (key, wrapping) in [
            (None, agent.as_str()),
            (Some(&other), agent.as_str()),
            (Some(&cluster), "abcd"),
        ] {
            let mut a = sealed_assignment(&cluster)?;
            reseal_for_agent(&mut a, key, wrapping);
            assert_eq!(a.missing_secrets, vec!["tok".to_string()]);
            assert!(a.sealed_env.is_empty());
            let deploy = a.deploy.as_ref().ok_or("deploy")?;
            assert!(deploy.hosts[0].sealed_credentials.is_none());
            assert!(
                deploy.problem.contains("secret `key` of host `web1`"),
                "{}",
                deploy.problem
            );
        }
        Ok(())
    }
}
