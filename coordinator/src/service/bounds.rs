//! Bounds on what an agent sends over its session, checked before anything
//! is held, logged or proposed: counts and sizes of every field of
//! `Register`, `Heartbeat`, `LogLines`, `AttemptResult`, `AttemptStarted`
//! and `Held`. An enrolled agent is authenticated, not trusted: a rogue one
//! must not grow the replicated state or the leader's memory without bound.
//! Pure functions; `session.rs` refuses (and closes the session on) a
//! message that breaks one, and records an over-bound result as failed.

use ferry_proto as pb;

/// Most actions an agent says it runs at once (its capacity, and the
/// attempts it reports at registration and in heartbeats).
pub const MAX_CAPACITY: u32 = 256;
/// Longest version string (`ferry-agent --version`).
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest peer address, `HOST:PORT` (a DNS name is at most 253 bytes).
pub const MAX_ADDRESS_BYTES: usize = 261;
/// Longest attempt id an agent echoes back.
pub const MAX_ATTEMPT_ID_BYTES: usize = 512;
/// Most log bytes in one message (an agent replays at most 4 MiB of a log
/// after a reconnect; tonic refuses larger messages anyway).
pub const MAX_LOG_CHUNK: usize = 4 * 1024 * 1024;
/// Longest result message kept (the rest is cut, with a note).
pub const MAX_RESULT_MESSAGE: usize = 4 * 1024;
/// Most output artifacts one result names.
pub const MAX_OUTPUTS: usize = 64;
/// Largest deployment report (it goes into the Raft log).
pub const MAX_DEPLOYMENT_REPORT: usize = 1024 * 1024;

/// Why `digest` is not a blob digest (`sha256:` and 64 lowercase hex digits).
pub fn check_digest(digest: &str) -> Result<(), String> {
    if ferry_pipeline::execution::is_blob_digest(digest) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a digest (sha256: and 64 lowercase hex digits)",
            clip(digest, 80)
        ))
    }
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

fn check_attempts<'a>(
    refs: impl ExactSizeIterator<Item = &'a pb::internal::AttemptRef>,
) -> Result<(), String> {
    if refs.len() > MAX_CAPACITY as usize {
        return Err(format!(
            "{} running attempts reported; at most {MAX_CAPACITY}",
            refs.len()
        ));
    }
    for r in refs {
        if r.attempt_id.len() > MAX_ATTEMPT_ID_BYTES {
            return Err(format!(
                "an attempt id is longer than {MAX_ATTEMPT_ID_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

/// Checks a `Register`: labels (as a join token's), capacity, version,
/// address (`HOST:PORT` whose host is one of `cert_hosts` — the host names
/// of the certificate the agent connected with — or a loopback address) and
/// the attempts it still runs.
pub fn check_register(r: &pb::internal::Register, cert_hosts: &[String]) -> Result<(), String> {
    ferry_state::check_labels(&r.labels).map_err(|e| format!("labels: {e}"))?;
    if r.capacity > MAX_CAPACITY {
        return Err(format!(
            "capacity {} is more than {MAX_CAPACITY}",
            r.capacity
        ));
    }
    if r.version.len() > MAX_VERSION_BYTES || r.version.chars().any(char::is_control) {
        return Err(format!(
            "the version must be at most {MAX_VERSION_BYTES} bytes of printable text"
        ));
    }
    check_address(&r.address, cert_hosts)?;
    check_attempts(r.running.iter())
}

/// The peer address an agent registers: `HOST:PORT`, at most
/// [`MAX_ADDRESS_BYTES`], its host one its certificate names or a loopback
/// address (agents on loopback have no host name in their certificates), so
/// an agent cannot send its peers to a host it was not enrolled for.
fn check_address(address: &str, cert_hosts: &[String]) -> Result<(), String> {
    let bad = || {
        format!(
            "address {:?} is not HOST:PORT of at most {MAX_ADDRESS_BYTES} bytes",
            clip(address, 80)
        )
    };
    if address.len() > MAX_ADDRESS_BYTES || address.chars().any(|c| c.is_whitespace()) {
        return Err(bad());
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() {
        return Err(bad());
    }
    let same = |h: &str| match (
        h.parse::<std::net::IpAddr>(),
        host.parse::<std::net::IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a.to_canonical() == b.to_canonical(),
        _ => h
            .trim_end_matches('.')
            .eq_ignore_ascii_case(host.trim_end_matches('.')),
    };
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback());
    if loopback || cert_hosts.iter().any(|h| same(h)) {
        Ok(())
    } else {
        Err(format!(
            "address {:?} is not a host this agent's certificate names ({}); advertise the host \
             it enrolled with, or enroll it again",
            clip(address, 80),
            if cert_hosts.is_empty() {
                "none: it was enrolled on loopback".to_string()
            } else {
                cert_hosts.join(", ")
            }
        ))
    }
}

/// Longest cache scope (`branch:` and a branch name) read off the wire.
const MAX_CACHE_SCOPE: usize = 300;

/// Most digests one `CachesDropped` message may name (an agent sends
/// several messages for more).
pub const MAX_DROPPED_DIGESTS: usize = 1_000;

/// Checks any later message: what `Register` reports, heartbeats' epoch
/// lists, log chunks, the attempt a message names, `Held` claims and
/// `CachesDropped` digests.
/// Results are checked by [`bound_result`] instead, which keeps them.
pub fn check_message(kind: &pb::internal::agent_message::Kind) -> Result<(), String> {
    use pb::internal::agent_message::Kind;
    let attempt = |a: &Option<pb::internal::AttemptRef>| check_attempts(a.iter());
    match kind {
        Kind::Register(_) => Ok(()),
        Kind::Heartbeat(hb) => {
            if hb.running_epochs.len() > MAX_CAPACITY as usize || hb.running > MAX_CAPACITY {
                return Err(format!(
                    "a heartbeat reports {} running attempts; at most {MAX_CAPACITY}",
                    hb.running_epochs.len().max(hb.running as usize)
                ));
            }
            Ok(())
        }
        Kind::Log(lines) => {
            if lines.data.len() > MAX_LOG_CHUNK {
                return Err(format!(
                    "a log message carries {} bytes; at most {MAX_LOG_CHUNK}",
                    lines.data.len()
                ));
            }
            attempt(&lines.attempt)
        }
        Kind::Started(s) => attempt(&s.attempt),
        Kind::Result(r) => attempt(&r.attempt),
        Kind::Held(h) => check_digest(&h.digest).map_err(|e| format!("held: {e}")),
        Kind::CachesDropped(d) => {
            if d.digests.len() > MAX_DROPPED_DIGESTS {
                return Err(format!(
                    "a CachesDropped message names {} blobs; at most {MAX_DROPPED_DIGESTS}",
                    d.digests.len()
                ));
            }
            d.digests
                .iter()
                .try_for_each(|d| check_digest(d).map_err(|e| format!("dropped cache: {e}")))
        }
    }
}

/// A result within bounds: a long message is cut (with a note), and one
/// whose outputs, log digest or deployment report break a bound is kept as a
/// failure saying which, without them (its variables are checked by
/// `ops::agents::finish_attempt`).
pub fn bound_result(r: &mut pb::internal::AttemptResult) {
    if r.message.len() > MAX_RESULT_MESSAGE {
        let cut = r
            .message
            .char_indices()
            .map(|(i, _)| i)
            .take_while(|i| *i <= MAX_RESULT_MESSAGE)
            .last()
            .unwrap_or(0);
        r.message.truncate(cut);
        r.message.push_str(" [ferry: message cut]");
    }
    let problem = if r.outputs.len() > MAX_OUTPUTS {
        Some(format!(
            "{} output artifacts; at most {MAX_OUTPUTS}",
            r.outputs.len()
        ))
    } else if let Some(bad) = r.outputs.iter().find_map(|o| check_output(o).err()) {
        Some(bad)
    } else if !r.log_digest.is_empty()
        && let Err(e) = check_digest(&r.log_digest)
    {
        Some(format!("log: {e}"))
    } else {
        r.deployment
            .as_ref()
            .map(prost::Message::encoded_len)
            .filter(|len| *len > MAX_DEPLOYMENT_REPORT)
            .map(|len| {
                format!("a deployment report of {len} bytes; at most {MAX_DEPLOYMENT_REPORT}")
            })
    };
    // Cache reports are hints checked again in `apply`: the excess and
    // what cannot be a cache entry go.
    r.caches.truncate(ferry_pipeline::cache::MAX_CACHES);
    r.caches.retain(|c| {
        check_digest(&c.digest).is_ok()
            && ferry_pipeline::cache::check_key(&c.key).is_ok()
            && c.scope.len() <= MAX_CACHE_SCOPE
    });
    if let Some(problem) = problem {
        r.success = false;
        r.message = format!("the agent's result was refused: {problem}");
        r.outputs.clear();
        r.log_digest.clear();
        r.log_size = 0;
        r.deployment = None;
    }
}

fn check_output(o: &pb::internal::OutputArtifact) -> Result<(), String> {
    ferry_pipeline::validate_name(&o.name)
        .map_err(|e| format!("output {:?}: {e}", clip(&o.name, 64)))?;
    check_digest(&o.digest).map_err(|e| format!("output `{}`: {e}", o.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::internal::agent_message::Kind;

    const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn register(address: &str) -> pb::internal::Register {
        pb::internal::Register {
            labels: vec!["docker".into()],
            capacity: 2,
            version: "0.1.0".into(),
            address: address.into(),
            running: Vec::new(),
        }
    }

    #[test]
    fn a_register_is_bounded_in_every_field() {
        let hosts = ["10.0.0.7".to_string()];
        check_register(&register("10.0.0.7:7000"), &hosts).expect("within bounds");
        check_register(&register("127.0.0.1:7000"), &[]).expect("loopback, no host name");
        check_register(&register("[::1]:7000"), &[]).expect("IPv6 loopback");
        let mut bad = Vec::new();
        let mut r = register("10.0.0.7:7000");
        r.labels = (0..40).map(|i| format!("l{i}")).collect();
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.labels = vec!["x".repeat(65)];
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.labels = vec!["prod deploy".into()];
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.capacity = MAX_CAPACITY + 1;
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.version = "v".repeat(65);
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.running = (0..300)
            .map(|e| pb::internal::AttemptRef {
                attempt_id: String::new(),
                epoch: e,
            })
            .collect();
        bad.push(r);
        let mut r = register("10.0.0.7:7000");
        r.running = vec![pb::internal::AttemptRef {
            attempt_id: "a".repeat(600),
            epoch: 1,
        }];
        bad.push(r);
        for address in [
            "10.0.0.8:7000",
            "coordinator.example:7400",
            "10.0.0.7",
            "10.0.0.7:http",
            ":7000",
            &format!("{}:7000", "a".repeat(300)),
        ] {
            bad.push(register(address));
        }
        for r in bad {
            assert!(check_register(&r, &hosts).is_err(), "{r:?}");
        }
    }

    #[test]
    fn later_messages_are_bounded() {
        let hb = |n: usize| {
            Kind::Heartbeat(pb::internal::Heartbeat {
                running: 0,
                shutting_down: false,
                running_epochs: (0..n as u64).collect(),
            })
        };
        assert!(check_message(&hb(2)).is_ok());
        assert!(check_message(&hb(10_000)).is_err());
        let log = |n: usize| {
            Kind::Log(pb::internal::LogLines {
                attempt: None,
                data: vec![b'x'; n],
                offset: 0,
            })
        };
        assert!(check_message(&log(1024)).is_ok());
        assert!(check_message(&log(MAX_LOG_CHUNK + 1)).is_err());
        let held = |d: &str| {
            Kind::Held(pb::internal::Held {
                digest: d.into(),
                size: 1,
            })
        };
        assert!(check_message(&held(DIGEST)).is_ok());
        for d in [
            "",
            "sha256:",
            "md5:00",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(check_message(&held(d)).is_err(), "{d}");
        }
        let started = Kind::Started(pb::internal::AttemptStarted {
            attempt: Some(pb::internal::AttemptRef {
                attempt_id: "x".repeat(MAX_ATTEMPT_ID_BYTES + 1),
                epoch: 1,
            }),
        });
        assert!(check_message(&started).is_err());
    }

    #[test]
    fn an_over_bound_result_is_kept_as_a_failure_without_its_outputs() {
        let ok = |name: &str, digest: &str| pb::internal::OutputArtifact {
            name: name.into(),
            digest: digest.into(),
            size: 1,
        };
        let mut r = pb::internal::AttemptResult {
            success: true,
            message: "é".repeat(MAX_RESULT_MESSAGE),
            outputs: vec![ok("app", DIGEST)],
            log_digest: DIGEST.into(),
            ..Default::default()
        };
        bound_result(&mut r);
        assert!(r.success, "{}", r.message);
        assert!(r.message.len() <= MAX_RESULT_MESSAGE + 32);
        assert!(r.message.ends_with("[ferry: message cut]"));
        assert_eq!(r.outputs.len(), 1);
        for outputs in [
            (0..MAX_OUTPUTS + 1)
                .map(|i| ok(&format!("o{i}"), DIGEST))
                .collect::<Vec<_>>(),
            vec![ok("App Name", DIGEST)],
            vec![ok("app", "sha256:../../etc")],
        ] {
            let mut r = pb::internal::AttemptResult {
                success: true,
                outputs,
                log_digest: DIGEST.into(),
                ..Default::default()
            };
            bound_result(&mut r);
            assert!(!r.success);
            assert!(r.message.contains("result was refused"), "{}", r.message);
            assert!(r.outputs.is_empty() && r.log_digest.is_empty());
        }
        let mut r = pb::internal::AttemptResult {
            success: true,
            deployment: Some(pb::internal::DeploymentReport {
                summary: "s".repeat(MAX_DEPLOYMENT_REPORT + 1),
                ..Default::default()
            }),
            ..Default::default()
        };
        bound_result(&mut r);
        assert!(!r.success && r.deployment.is_none(), "{}", r.message);
    }
}
