//! Deployment reports as the state keeps them: the bytes the agent sent,
//! protobuf-encoded (`ferry.internal.v1.DeploymentReport`), decoded here
//! into the plain [`DeploymentReport`] through the state's own copy of the
//! message. The copy is frozen: its field numbers are those of the agent
//! protocol, and the log and snapshots already hold such bytes, so a field
//! is only ever added, never renumbered or retyped (the coordinator's tests
//! check that the agent's encoding decodes here unchanged).
//!
//! `apply` refuses exactly what every earlier version refused, bytes that
//! do not decode, or members of two versions would disagree during an
//! upgrade; so a word this version does not know reads as the failure of
//! its kind instead of refusing the report.

use ferry_pipeline::spec::{
    DeployOutcome, DeploymentReport, HookPhase, HookReport, HostOutcome, HostReport,
};
use prost::Message as _;
use thiserror::Error;

/// Why a report's bytes are not a report.
#[derive(Debug, Error)]
#[error("the deployment report does not decode: {0}")]
pub struct ReportError(#[from] prost::DecodeError);

#[derive(Clone, PartialEq, prost::Message)]
struct StoredReport {
    #[prost(string, tag = "1")]
    environment: String,
    #[prost(string, tag = "2")]
    release: String,
    #[prost(string, tag = "3")]
    artifact_digest: String,
    #[prost(string, tag = "4")]
    outcome: String,
    #[prost(string, tag = "5")]
    summary: String,
    #[prost(string, tag = "6")]
    strategy: String,
    #[prost(message, repeated, tag = "7")]
    hosts: Vec<StoredHost>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StoredHost {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(string, tag = "2")]
    outcome: String,
    #[prost(string, tag = "3")]
    release: String,
    #[prost(string, tag = "4")]
    previous: String,
    #[prost(uint32, tag = "5")]
    batch: u32,
    #[prost(string, tag = "6")]
    error: String,
    #[prost(message, repeated, tag = "7")]
    hooks: Vec<StoredHook>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StoredHook {
    #[prost(string, tag = "1")]
    hook: String,
    #[prost(string, tag = "2")]
    phase: String,
    #[prost(bool, tag = "3")]
    success: bool,
    #[prost(int32, tag = "4")]
    exit_code: i32,
    #[prost(uint64, tag = "5")]
    duration_ms: u64,
    #[prost(bytes = "vec", tag = "6")]
    output: Vec<u8>,
}

/// The report `bytes` hold; bytes that do not decode are an error (`apply`
/// refuses such a result).
pub fn decode(bytes: &[u8]) -> Result<DeploymentReport, ReportError> {
    let r = StoredReport::decode(bytes)?;
    let mut hosts = Vec::with_capacity(r.hosts.len());
    for h in r.hosts {
        let mut hooks = Vec::with_capacity(h.hooks.len());
        for k in h.hooks {
            hooks.push(HookReport {
                phase: HookPhase::parse(&k.phase).unwrap_or(HookPhase::Deploy),
                hook: k.hook,
                success: k.success,
                exit_code: k.exit_code,
                duration_ms: k.duration_ms,
                output: k.output,
            });
        }
        hosts.push(HostReport {
            outcome: HostOutcome::parse(&h.outcome).unwrap_or(HostOutcome::Failed),
            host: h.host,
            release: h.release,
            previous: h.previous,
            batch: h.batch,
            error: h.error,
            hooks,
        });
    }
    Ok(DeploymentReport {
        outcome: DeployOutcome::parse(&r.outcome).unwrap_or(DeployOutcome::Failed),
        environment: r.environment,
        release: r.release,
        artifact_digest: r.artifact_digest,
        summary: r.summary,
        strategy: r.strategy,
        hosts,
    })
}

/// `report` in the stored form, as an agent sends it (for tests and tools
/// that make reports without an agent).
pub fn encode(report: &DeploymentReport) -> Vec<u8> {
    StoredReport {
        environment: report.environment.clone(),
        release: report.release.clone(),
        artifact_digest: report.artifact_digest.clone(),
        outcome: report.outcome.as_str().to_string(),
        summary: report.summary.clone(),
        strategy: report.strategy.clone(),
        hosts: report
            .hosts
            .iter()
            .map(|h| StoredHost {
                host: h.host.clone(),
                outcome: h.outcome.as_str().to_string(),
                release: h.release.clone(),
                previous: h.previous.clone(),
                batch: h.batch,
                error: h.error.clone(),
                hooks: h
                    .hooks
                    .iter()
                    .map(|k| StoredHook {
                        hook: k.hook.clone(),
                        phase: k.phase.as_str().to_string(),
                        success: k.success,
                        exit_code: k.exit_code,
                        duration_ms: k.duration_ms,
                        output: k.output.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DeploymentReport {
        DeploymentReport {
            environment: "prod".into(),
            outcome: DeployOutcome::RolledBack,
            hosts: vec![HostReport {
                host: "web-1".into(),
                outcome: HostOutcome::RollbackFailed,
                batch: 2,
                hooks: vec![HookReport {
                    hook: "validate".into(),
                    phase: HookPhase::Rollback,
                    exit_code: 1,
                    output: b"no".to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_report_round_trips() {
        assert_eq!(decode(&encode(&report())).ok(), Some(report()));
    }

    #[test]
    fn only_bad_bytes_refuse_a_report_and_unknown_words_read_as_failures() {
        let mut stored =
            StoredReport::decode(encode(&report()).as_slice()).unwrap_or_else(|e| panic!("{e}"));
        stored.outcome = "Sideways".into();
        stored.hosts[0].outcome = "Sideways".into();
        let read = decode(&stored.encode_to_vec()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.outcome, DeployOutcome::Failed);
        assert_eq!(read.hosts[0].outcome, HostOutcome::Failed);
        assert!(decode(&[0xff, 0xff]).is_err());
    }
}
