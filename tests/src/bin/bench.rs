//! `ferry-bench`: Ferry's benchmarks, each beside a baseline from the same run.
//!
//! ```text
//! ferry-bench trivial-action [ROUNDS]      one action through Ferry vs `docker run`
//! ferry-bench failover [KILLS]             leader kill → new leader / next dispatch, vs etcd
//! ferry-bench throughput [SECS]            committed writes/s and latency, vs etcd
//! ferry-bench scale [AGENTS] [EXECUTIONS]  simulated agents: RSS/CPU, dispatch vs commit latency, actions/s
//! ferry-bench artifact [MIB] [ROUNDS]      a blob agent to agent vs a plain TCP copy
//! ferry-bench deploy [MIB] [ROUNDS]        an artifact to 4 SSH hosts by a deploy action vs scp
//! ferry-bench triggers [ROUNDS]            webhook → execution vs `ferry run`/curl; event → notification vs a plain POST
//! ferry-bench console [ROUNDS]             console pages of a pipeline with 1,000 executions vs `GET /healthz`
//! ferry-bench source [MIB]                 an agent's memory archiving a commit of MIB MiB of zeros vs git archive
//! ferry-bench cache [ROUNDS]               a Rust crate built cold and warm with a build cache vs `docker run`
//! ferry-bench all                          all of the above but scale and cache, with defaults
//! ```
//! Build with `cargo build --release --bins` first; results are Markdown for BENCHMARKS.md.
//!
//! Without arguments, or with `--help`/`-h`, it prints its usage and exits 0;
//! an argument it does not take is a one-line error and the usage, exit 2.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ferry_tests::bench;

/// Ferry's benchmarks, each printing Ferry's figure beside a baseline
/// measured in the same run, as Markdown for BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(
    name = "ferry-bench",
    after_help = "Build with `cargo build --release --bins` first."
)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
enum Bench {
    /// One action through Ferry vs `docker run`
    TrivialAction {
        #[arg(default_value_t = 10)]
        rounds: usize,
    },
    /// Leader kill → new leader / next dispatch, vs etcd
    Failover {
        #[arg(default_value_t = 10)]
        kills: usize,
    },
    /// Committed writes/s and latency, vs etcd
    Throughput {
        #[arg(default_value_t = 10)]
        secs: u64,
    },
    /// Simulated agents: RSS/CPU, dispatch vs commit latency, actions/s
    Scale {
        #[arg(default_value_t = 10_000)]
        agents: usize,
        #[arg(default_value_t = 100)]
        executions: usize,
    },
    /// A blob agent to agent vs a plain TCP copy
    Artifact {
        #[arg(default_value_t = 1024)]
        mib: u64,
        #[arg(default_value_t = 5)]
        rounds: usize,
    },
    /// An artifact to 4 SSH hosts by a deploy action vs scp
    Deploy {
        #[arg(default_value_t = 10)]
        mib: u64,
        #[arg(default_value_t = 5)]
        rounds: usize,
    },
    /// Webhook → execution vs `ferry run`/curl; event → notification vs a plain POST
    Triggers {
        #[arg(default_value_t = 20)]
        rounds: usize,
    },
    /// Console pages of a pipeline with 1,000 executions vs `GET /healthz`
    Console {
        #[arg(default_value_t = 50)]
        rounds: usize,
    },
    /// An agent's memory archiving a commit of MIB MiB of zeros vs git archive
    Source {
        #[arg(default_value_t = 768)]
        mib: u64,
    },
    /// A Rust crate built cold and warm with a build cache vs `docker run` and a host target dir
    Cache {
        #[arg(default_value_t = 1)]
        rounds: usize,
    },
    /// All of the above but scale and cache, with their defaults
    All,
}

impl Bench {
    /// What `all` runs, in order: every benchmark but `scale` and `cache`
    /// (which builds a Debian image with a Rust toolchain the first time,
    /// and a crate several times), with defaults.
    fn all() -> Vec<Bench> {
        let default = |name: &str| {
            Args::try_parse_from(["ferry-bench", name])
                .map(|a| a.bench)
                .unwrap_or_else(|e| unreachable!("{name}: {e}"))
        };
        [
            "trivial-action",
            "failover",
            "artifact",
            "deploy",
            "triggers",
            "console",
            "source",
            "throughput",
        ]
        .into_iter()
        .map(default)
        .collect()
    }

    /// Runs the benchmark: its Markdown, ending in a blank line.
    fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<String> {
        let out = match self {
            Bench::TrivialAction { rounds } => bench::trivial::run(rounds),
            Bench::Failover { kills } => rt.block_on(bench::failover::run(kills)),
            Bench::Throughput { secs } => rt.block_on(bench::throughput::run(secs, 4, 64)),
            Bench::Scale { agents, executions } => {
                rt.block_on(bench::scale::run(agents, 10, 1000, executions))
            }
            Bench::Artifact { mib, rounds } => rt.block_on(bench::scale::artifact(mib, rounds)),
            Bench::Deploy { mib, rounds } => bench::deploy::run(mib, rounds),
            Bench::Triggers { rounds } => bench::triggers::run(rounds),
            Bench::Console { rounds } => bench::console::run(rounds),
            Bench::Source { mib } => bench::source::run(mib),
            Bench::Cache { rounds } => bench::cache::run(rounds),
            Bench::All => {
                let mut out = String::new();
                for b in Bench::all() {
                    out.push_str(&b.run(rt)?);
                }
                return Ok(out);
            }
        };
        Ok(out? + "\n")
    }
}

fn main() -> ExitCode {
    // No arguments: the usage, as `--help` prints it (clap would call it an error).
    if std::env::args_os().len() <= 1 {
        return match Args::command().print_help() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let args = match Args::try_parse() {
        Ok(args) => args,
        // `--help` and `-h` (also of a benchmark): to stdout, exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{}", wrong_arguments(&e));
            return ExitCode::from(2);
        }
    };
    ferry_certs::install_crypto_provider();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| args.bench.run(&rt));
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A wrong argument: clap's one-line error and the usage of the benchmark
/// it was for (of `ferry-bench` when there is none).
fn wrong_arguments(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("error: wrong arguments");
    let mut command = Args::command();
    command.build();
    let usage = std::env::args()
        .nth(1)
        .and_then(|name| {
            command
                .find_subcommand(&name)
                .map(|c| c.clone().render_usage())
        })
        .unwrap_or_else(|| command.render_usage());
    format!("{line}\n\n{usage}\n\nFor more information, try '--help'.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_as_before() {
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("ferry-bench").chain(args.iter().copied()))
                .map(|a| a.bench)
        };
        assert_eq!(
            parse(&["scale", "500"]).ok(),
            Some(Bench::Scale {
                agents: 500,
                executions: 100
            })
        );
        assert_eq!(
            parse(&["artifact", "1024", "5"]).ok(),
            Some(Bench::Artifact {
                mib: 1024,
                rounds: 5
            })
        );
        assert_eq!(parse(&["all"]).ok(), Some(Bench::All));
        assert_eq!(Bench::all().len(), 8);
        assert!(
            !Bench::all()
                .iter()
                .any(|b| matches!(b, Bench::Scale { .. } | Bench::Cache { .. }))
        );
        assert_eq!(parse(&["cache"]).ok(), Some(Bench::Cache { rounds: 1 }));
        assert_eq!(
            parse(&["cache", "3"]).ok(),
            Some(Bench::Cache { rounds: 3 })
        );
        let wrong = parse(&["nope"]).err().map(|e| e.exit_code());
        assert_eq!(wrong, Some(2));
        let wrong = parse(&["deploy", "ten"]).err().map(|e| e.exit_code());
        assert_eq!(wrong, Some(2));
        let help = parse(&["--help"]).err().map(|e| e.exit_code());
        assert_eq!(help, Some(0));
    }

    #[test]
    fn the_usage_is_consistent() {
        Args::command().debug_assert();
    }
}
