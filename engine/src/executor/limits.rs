//! What a build container may use and do: the size limits on what an
//! attempt stores ([`Limits`]), the per-container defaults ([`ContainerDefaults`])
//! an action's `resources:` override, the limits a container gets
//! ([`ContainerLimits`]) and the capabilities it keeps.

use bollard::models::HostConfig;

use crate::runner::Resources;

/// Size limits on what an attempt may store on this agent (0 = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_artifact_bytes: u64,
    pub store_limit_bytes: u64,
}

/// What a container gets when its action's `resources:` leave a limit unset
/// (`ferry-agent --default-memory`, `--default-cpus`, `--default-pids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerDefaults {
    pub memory_bytes: u64,
    pub millicpus: u64,
    pub pids: u64,
}

impl Default for ContainerDefaults {
    /// 2 GiB of memory, 2 CPUs, 1024 processes.
    fn default() -> Self {
        ContainerDefaults {
            memory_bytes: 2 << 30,
            millicpus: 2_000,
            pids: 1_024,
        }
    }
}

impl ContainerDefaults {
    /// These defaults on a host with `host_cpus` CPUs: Docker refuses a CPU
    /// limit above the host's count, so the default is lowered to it; the
    /// message says when that happened.
    pub fn fit_host(self, host_cpus: Option<u64>) -> (ContainerDefaults, Option<String>) {
        let Some(most) = host_cpus
            .filter(|&n| n > 0)
            .map(|n| n.saturating_mul(1_000))
        else {
            return (self, None);
        };
        if self.millicpus <= most {
            return (self, None);
        }
        let fitted = ContainerDefaults {
            millicpus: most,
            ..self
        };
        let message = format!(
            "the default CPU limit of {} is more than this host's {} CPUs: containers get {} \
             unless their action's resources say otherwise",
            cpus_text(self.millicpus),
            most / 1_000,
            cpus_text(most)
        );
        (fitted, Some(message))
    }
}

/// Capabilities a container keeps after dropping them all. Docker's default
/// set minus what a build has no use for: MKNOD (device nodes), NET_RAW (raw
/// sockets: spoofing on the bridge network; `ping` as root stops working),
/// SYS_CHROOT, SETPCAP, SETFCAP (file capabilities) and AUDIT_WRITE. Kept,
/// because builds run as root and package managers (apt/dpkg, apk, pip, npm)
/// need them:
/// - CHOWN, FOWNER, FSETID: unpacking files with their owners and modes,
///   setuid/setgid bits included (dpkg chowns then chmods; without FSETID the
///   kernel silently clears a setgid bit for a group root is not in);
/// - DAC_OVERRIDE: root reading and writing files it does not own (caches,
///   files unpacked read-only, workspaces of other users);
/// - SETUID, SETGID: dropping to another user (apt's `_apt` sandbox, `su`,
///   tests run as an unprivileged user);
/// - KILL: signalling processes started under another user (test servers);
/// - NET_BIND_SERVICE: test servers on ports below 1024.
///
/// What is dropped stays out of the bounding set for good; no-new-privileges
/// also stops a command that switched to another user from getting the kept
/// ones back through a setuid binary or file capabilities.
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// `2000` millicpus as `2`, `1500` as `1.5`.
fn cpus_text(millicpus: u64) -> String {
    let (whole, rest) = (millicpus / 1_000, millicpus % 1_000);
    if rest == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{rest:03}").trim_end_matches('0'))
    }
}

/// The limits an attempt's container gets: its action's, else these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    pub memory_bytes: u64,
    pub millicpus: u64,
    pub pids: u64,
}

impl ContainerLimits {
    pub fn of(asked: &Resources, defaults: &ContainerDefaults) -> ContainerLimits {
        ContainerLimits {
            memory_bytes: asked.memory_bytes.unwrap_or(defaults.memory_bytes),
            millicpus: asked.millicpus.unwrap_or(defaults.millicpus),
            pids: asked.pids.unwrap_or(defaults.pids),
        }
    }

    /// The Docker host configuration: these limits, the kept capabilities,
    /// no-new-privileges, not privileged.
    pub fn host_config(&self) -> HostConfig {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        HostConfig {
            init: Some(true),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            nano_cpus: Some(signed(self.millicpus.saturating_mul(1_000_000))),
            memory: Some(signed(self.memory_bytes)),
            pids_limit: Some(signed(self.pids)),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for ContainerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPUs, {} MiB of memory, {} processes",
            cpus_text(self.millicpus),
            self.memory_bytes / (1024 * 1024),
            self.pids
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_unless_the_action_sets_a_limit() {
        let defaults = ContainerDefaults::default();
        let mut a = Resources::default();
        let limits = ContainerLimits::of(&a, &defaults);
        assert_eq!(
            limits,
            ContainerLimits {
                memory_bytes: 2 << 30,
                millicpus: 2_000,
                pids: 1_024,
            }
        );
        assert_eq!(
            limits.to_string(),
            "2 CPUs, 2048 MiB of memory, 1024 processes"
        );
        a.pids = Some(64);
        a.millicpus = Some(1_500);
        let limits = ContainerLimits::of(&a, &defaults);
        assert_eq!((limits.pids, limits.millicpus), (64, 1_500));
        assert_eq!(limits.memory_bytes, 2 << 30);
        let host = limits.host_config();
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(2 << 30));
        a.memory_bytes = Some(u64::MAX);
        let host = ContainerLimits::of(&a, &defaults).host_config();
        assert_eq!(host.memory, Some(i64::MAX));
    }

    #[test]
    fn every_container_drops_capabilities_and_privileges() {
        let host =
            ContainerLimits::of(&Resources::default(), &ContainerDefaults::default()).host_config();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        let kept = host.cap_add.unwrap_or_default();
        assert_eq!(kept.len(), KEPT_CAPABILITIES.len());
        for never in ["SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_PTRACE", "NET_ADMIN"] {
            assert!(!kept.iter().any(|c| c == never), "{never}");
        }
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.privileged, Some(false));
        assert!(host.pids_limit.is_some() && host.memory.is_some() && host.nano_cpus.is_some());
    }

    #[test]
    fn the_cpu_default_fits_the_host() {
        let d = ContainerDefaults::default();
        assert_eq!(d.fit_host(Some(8)), (d, None));
        assert_eq!(d.fit_host(Some(2)), (d, None));
        assert_eq!(d.fit_host(None), (d, None));
        let (fitted, message) = d.fit_host(Some(1));
        assert_eq!(fitted.millicpus, 1_000);
        assert_eq!(fitted.memory_bytes, d.memory_bytes);
        assert!(message.is_some_and(|m| m.contains("1 CPUs")));
        assert_eq!(cpus_text(1_500), "1.5");
        assert_eq!(cpus_text(250), "0.25");
    }
}
