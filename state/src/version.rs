//! The cluster version: the lowest `MAJOR.MINOR` among the members, kept in
//! the replicated state (as etcd keeps its cluster version). A command that
//! members of an older version could not apply is not proposed until every
//! member runs a version that can ([`Command::since`]); the leader raises
//! the cluster version as members are upgraded (`SetClusterVersion`), never
//! lowers it, and a member older than it is not added.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::apply::Applied;
use crate::{ClusterState, Command, Output, Rejection};

/// A `MAJOR.MINOR` version (patch releases never change what members speak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// The first version that kept a cluster version: a cluster whose state
    /// names none runs at least this.
    pub const FIRST: Version = Version { major: 0, minor: 1 };

    /// Test summaries, outputs kept on failure and the pipeline keys of
    /// builds as teams write them.
    pub const V0_2: Version = Version { major: 0, minor: 2 };

    /// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH[-pre]`; None otherwise.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version { major, minor })
    }

    /// This build's version.
    pub fn this_build() -> Version {
        Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version::FIRST)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Command {
    /// The version that introduced this command: members older than it
    /// cannot decode it. Every command is listed, so a new one must say. A
    /// pipeline using keys of 0.2 (services, matrices, reports) needs
    /// [`Version::V0_2`].
    pub fn since(&self) -> Version {
        let of = |(major, minor): (u32, u32)| Version { major, minor };
        match self {
            // Content that 0.1 members would drop when they decode it.
            Command::ApplyPipeline { spec, .. } => of(spec.needs_version()),
            Command::FinishAttempt { tests: Some(_), .. } => Version::V0_2,
            Command::FinishAttempt { caches, .. } if !caches.is_empty() => Version::V0_2,
            Command::CachesDropped { .. } | Command::RemoveCaches { .. } => Version::V0_2,
            Command::Requested { command, .. } => command.since().max(Version::V0_2),
            Command::Bootstrap { .. }
            | Command::ApplyEnvironment { .. }
            | Command::StartExecution { .. }
            | Command::Redeploy { .. }
            | Command::Assign { .. }
            | Command::FinishAttempt { tests: None, .. }
            | Command::Decide { .. }
            | Command::ExpireApproval { .. }
            | Command::AgentLost { .. }
            | Command::PruneExecutions { .. }
            | Command::ForgetArtifacts { .. }
            | Command::ArtifactHeld { .. }
            | Command::SourceSeen { .. }
            | Command::ArmSchedule { .. }
            | Command::NotifyAttempted { .. }
            | Command::RegisterAgent { .. }
            | Command::RenewAgentCertificate { .. }
            | Command::Enroll { .. }
            | Command::CreateToken { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::RevokeCertificate { .. }
            | Command::SetSecret { .. }
            | Command::RemoveSecret { .. }
            | Command::SetNotifyTarget { .. }
            | Command::RemoveNotifyTarget { .. }
            | Command::SetDraining { .. }
            | Command::SetAgentLabels { .. }
            | Command::RemoveAgent { .. }
            | Command::CreateLoginLink { .. }
            | Command::OpenSession { .. }
            | Command::EndSession { .. }
            | Command::RevokeSession { .. }
            | Command::StopExecution { .. }
            | Command::RetryStage { .. }
            | Command::SetTransition { .. }
            | Command::SetClusterVersion { .. } => Version::FIRST,
        }
    }
}

impl ClusterState {
    /// The version every member runs at least.
    pub fn cluster_version(&self) -> Version {
        self.cluster_version.unwrap_or(Version::FIRST)
    }

    /// Whether every member can apply `cmd`: a proposal that is not is
    /// refused before it reaches the log.
    pub fn can_propose(&self, cmd: &Command) -> Result<(), Rejection> {
        let needs = cmd.since();
        let runs = self.cluster_version();
        if needs > runs {
            return Err(Rejection::FailedPrecondition(format!(
                "this needs every coordinator at version {needs} or later, and the cluster \
                 runs {runs}: upgrade the other members first (`ferry cluster status` shows \
                 each member's version)"
            )));
        }
        Ok(())
    }

    /// The leader saw every member at `version` or later: raise the
    /// cluster version to it (never lower).
    pub(crate) fn set_cluster_version(&mut self, version: Version) -> Applied {
        if version > self.cluster_version() {
            self.cluster_version = Some(version);
        }
        Ok(Output::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_order() {
        assert_eq!(Version::parse("0.1.0"), Some(Version::FIRST));
        assert_eq!(
            Version::parse("1.12.3-rc.1").map(|v| v.to_string()),
            Some("1.12".into())
        );
        assert_eq!(Version::parse("1"), None);
        assert_eq!(Version::parse("x.y"), None);
        assert!(
            Version {
                major: 0,
                minor: 10
            } > Version { major: 0, minor: 9 }
        );
        assert!(
            Version { major: 1, minor: 0 }
                > Version {
                    major: 0,
                    minor: 99
                }
        );
    }

    #[test]
    fn the_cluster_version_only_rises_and_gates_proposals() {
        let mut s = ClusterState::default();
        assert_eq!(s.cluster_version(), Version::FIRST);
        let newer = Version { major: 0, minor: 2 };
        s.apply(Command::SetClusterVersion { version: newer })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.cluster_version(), newer);
        s.apply(Command::SetClusterVersion {
            version: Version::FIRST,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.cluster_version(), newer, "never lowered");
        // Every command of this version may be proposed to a cluster at it.
        assert!(
            ClusterState::default()
                .can_propose(&Command::SetClusterVersion { version: newer })
                .is_ok()
        );
    }

    #[test]
    fn a_pipeline_with_services_waits_for_every_member_to_know_them() {
        let apply = |yaml: &str| Command::ApplyPipeline {
            spec: ferry_pipeline::parse(yaml).unwrap_or_else(|e| panic!("{e:?}")),
            yaml: yaml.to_string(),
            by: crate::By::operator("root"),
            at: 1,
        };
        let plain = "name: p\nsource: {git: /x}\nstages:\n  - name: s\n    actions:\n      \
                     - {name: a, type: test, image: i, commands: [make]}\n";
        let with_services = plain.replace(
            "commands: [make]}",
            "commands: [make], services: [{name: db, image: i}]}",
        );
        let old = ClusterState::default();
        assert!(old.can_propose(&apply(plain)).is_ok());
        let refused = old.can_propose(&apply(&with_services));
        assert!(
            matches!(&refused, Err(Rejection::FailedPrecondition(m)) if m.contains("version 0.2 or later")),
            "{refused:?}"
        );
        let upgraded = ClusterState {
            cluster_version: Some(Version::V0_2),
            ..Default::default()
        };
        assert!(upgraded.can_propose(&apply(&with_services)).is_ok());
    }

    #[test]
    fn a_command_newer_than_the_cluster_is_not_proposed() {
        // No command needs more than 0.1 yet; the rule, with a cluster that
        // says it runs less.
        let s = ClusterState {
            cluster_version: Some(Version { major: 0, minor: 0 }),
            ..Default::default()
        };
        let refused = s.can_propose(&Command::SetClusterVersion {
            version: Version::FIRST,
        });
        assert!(
            matches!(&refused, Err(Rejection::FailedPrecondition(m)) if m.contains("version 0.1 or later")),
            "{refused:?}"
        );
    }

    #[test]
    fn pipelines_and_results_using_0_2_keys_wait_for_a_0_2_cluster() {
        let plain = "name: p\nsource: {git: x}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [true]}\n";
        let with_reports = plain.replace(
            "commands: [true]",
            "commands: [true], reports: {junit: r.xml}",
        );
        let apply = |yaml: &str| Command::ApplyPipeline {
            spec: ferry_pipeline::parse(yaml).unwrap_or_else(|d| panic!("{d:?}")),
            yaml: yaml.to_string(),
            by: crate::By::operator("root"),
            at: 1,
        };
        let old = ClusterState::default();
        assert!(old.can_propose(&apply(plain)).is_ok());
        let refused = old.can_propose(&apply(&with_reports));
        assert!(
            matches!(&refused, Err(Rejection::FailedPrecondition(m)) if m.contains("version 0.2")),
            "{refused:?}"
        );
        let new = ClusterState {
            cluster_version: Some(Version::V0_2),
            ..Default::default()
        };
        assert!(new.can_propose(&apply(&with_reports)).is_ok());
    }
}
