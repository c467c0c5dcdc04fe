//! The deploy action's settings: which environment, how many hosts change at
//! once (the strategy), how many must end up healthy, and whether changed
//! hosts return to their previous release when a batch fails. Also the
//! arithmetic that turns a strategy into batches for a given host count.

use serde::{Deserialize, Serialize};

/// Releases kept on each host when `keep_releases` is not given.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;

/// Largest accepted `keep_releases`.
pub const MAX_KEEP_RELEASES: u32 = 100;

/// Time limit of one lifecycle hook when neither the action nor the
/// revision spec sets one (5 minutes), in milliseconds.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 5 * 60 * 1_000;

/// Time allowed to reach and authenticate to a host (10 s), in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10 * 1_000;

/// Default timeout of a whole deploy action (1 hour), in milliseconds.
pub const DEFAULT_DEPLOY_TIMEOUT_MS: u64 = 60 * 60 * 1_000;

/// Where and how a deploy action deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    /// Name of the environment whose hosts receive the artifact.
    pub environment: String,
    pub strategy: Strategy,
    /// Hosts that must end on the new release; `None` means every host.
    pub min_healthy: Option<Count>,
    /// `rollback: auto` (the default): when the deployment fails, every host
    /// it changed returns to its previous release.
    pub rollback: bool,
    /// Releases kept in `releases/` on each host (the current and previous
    /// ones are always kept).
    pub keep_releases: u32,
    /// Default time limit of each hook; the revision spec may set its own.
    pub hook_timeout_ms: u64,
    /// Time allowed to reach and authenticate to each host.
    pub connect_timeout_ms: u64,
}

/// How many hosts change at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    AllAtOnce,
    OneAtATime,
    HalfAtATime,
    Batch(Count),
}

/// A number of hosts, absolute or as a share of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    Hosts(u32),
    /// 1 to 100.
    Percent(u32),
}

impl Count {
    /// Parses `3` or `25%`.
    pub fn parse(text: &str) -> Result<Count, String> {
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            match number.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Count::Percent(p)),
                _ => Err(format!(
                    "a percentage must be a whole number from 1% to 100%, found {text:?}"
                )),
            }
        } else {
            match text.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Count::Hosts(n)),
                _ => Err(format!(
                    "expected a number of hosts (at least 1) or a percentage such as 25%, found {text:?}"
                )),
            }
        }
    }

    /// The number of hosts out of `hosts`: percentages round up, and the
    /// result is between 1 and `hosts` (for at least one host).
    pub fn of(self, hosts: usize) -> usize {
        let n = match self {
            Count::Hosts(n) => n as usize,
            Count::Percent(p) => (hosts * p as usize).div_ceil(100),
        };
        n.clamp(1, hosts.max(1))
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::Hosts(n) => write!(f, "{n}"),
            Count::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Strategy::AllAtOnce => f.write_str("all_at_once"),
            Strategy::OneAtATime => f.write_str("one_at_a_time"),
            Strategy::HalfAtATime => f.write_str("half_at_a_time"),
            Strategy::Batch(c) => write!(f, "batch {c}"),
        }
    }
}

impl Strategy {
    /// Parses the single-word strategies.
    pub fn named(text: &str) -> Option<Strategy> {
        match text {
            "all_at_once" => Some(Strategy::AllAtOnce),
            "one_at_a_time" => Some(Strategy::OneAtATime),
            "half_at_a_time" => Some(Strategy::HalfAtATime),
            _ => None,
        }
    }

    /// Hosts per batch for an environment of `hosts` hosts.
    pub fn batch_size(self, hosts: usize) -> usize {
        match self {
            Strategy::AllAtOnce => hosts.max(1),
            Strategy::OneAtATime => 1,
            Strategy::HalfAtATime => hosts.div_ceil(2).max(1),
            Strategy::Batch(c) => c.of(hosts),
        }
    }
}

impl Deploy {
    /// Settings with every default, for `environment`.
    pub fn new(environment: String) -> Deploy {
        Deploy {
            environment,
            strategy: Strategy::AllAtOnce,
            min_healthy: None,
            rollback: true,
            keep_releases: DEFAULT_KEEP_RELEASES,
            hook_timeout_ms: DEFAULT_HOOK_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }

    /// Hosts that must end on the new release, out of `hosts`.
    pub fn min_healthy_of(&self, hosts: usize) -> usize {
        self.min_healthy.map_or(hosts, |c| c.of(hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_and_round_up() {
        assert_eq!(Count::parse("3"), Ok(Count::Hosts(3)));
        assert_eq!(Count::parse("25%"), Ok(Count::Percent(25)));
        assert!(Count::parse("0").is_err());
        assert!(Count::parse("0%").is_err());
        assert!(Count::parse("101%").is_err());
        assert!(Count::parse("x").is_err());
        assert_eq!(Count::Percent(25).of(4), 1);
        assert_eq!(Count::Percent(30).of(4), 2);
        assert_eq!(Count::Percent(100).of(4), 4);
        assert_eq!(Count::Hosts(9).of(4), 4);
    }

    #[test]
    fn strategies_give_batch_sizes() {
        assert_eq!(Strategy::AllAtOnce.batch_size(4), 4);
        assert_eq!(Strategy::OneAtATime.batch_size(4), 1);
        assert_eq!(Strategy::HalfAtATime.batch_size(5), 3);
        assert_eq!(Strategy::Batch(Count::Hosts(2)).batch_size(5), 2);
        assert_eq!(Strategy::Batch(Count::Percent(50)).batch_size(3), 2);
    }

    #[test]
    fn min_healthy_defaults_to_every_host() {
        let mut d = Deploy::new("prod".into());
        assert_eq!(d.min_healthy_of(4), 4);
        d.min_healthy = Some(Count::Percent(75));
        assert_eq!(d.min_healthy_of(4), 3);
    }
}
