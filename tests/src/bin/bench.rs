//! `ferry-bench`: Ferry's benchmarks, each beside a baseline from the same run.
//!
//! ```text
//! ferry-bench trivial-action [ROUNDS]      one action through Ferry vs `docker run`
//! ferry-bench failover [KILLS]             leader kill → new leader / next dispatch, vs etcd
//! ferry-bench throughput [SECS]            committed writes/s and latency, vs etcd
//! ferry-bench scale [AGENTS] [EXECUTIONS]  simulated agents: RSS/CPU, dispatch vs commit latency, actions/s
//! ferry-bench artifact [MIB]               a blob agent to agent vs a plain TCP copy
//! ferry-bench deploy [MIB] [ROUNDS]        an artifact to 4 SSH hosts by a deploy action vs scp
//! ferry-bench triggers [ROUNDS]            webhook → execution vs `ferry run`/curl; event → notification vs a plain POST
//! ferry-bench console [ROUNDS]             console pages of a pipeline with 1,000 executions vs `GET /healthz`
//! ferry-bench source [MIB]                 an agent's memory archiving a commit of MIB MiB of zeros vs git archive
//! ferry-bench all                          all of the above with defaults
//! ```
//! Build with `cargo build --release --bins` first; results are Markdown for BENCHMARKS.md.

use ferry_tests::bench;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    ferry_certs::install_crypto_provider();
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let rt = tokio::runtime::Runtime::new()?;
    let mut out = String::new();
    if what == "trivial-action" || what == "all" {
        out.push_str(&bench::trivial::run(arg(2, 10) as usize)?);
        out.push('\n');
    }
    if what == "failover" || what == "all" {
        out.push_str(&rt.block_on(bench::failover::run(arg(2, 10) as usize))?);
        out.push('\n');
    }
    if what == "scale" {
        let agents = arg(2, 10_000) as usize;
        out.push_str(&rt.block_on(bench::scale::run(agents, 10, 1000, arg(3, 100) as usize))?);
        out.push('\n');
    }
    if what == "artifact" || what == "all" {
        out.push_str(&rt.block_on(bench::scale::artifact(arg(2, 1024), arg(3, 5) as usize))?);
        out.push('\n');
    }
    if what == "deploy" || what == "all" {
        out.push_str(&bench::deploy::run(arg(2, 10), arg(3, 5) as usize)?);
        out.push('\n');
    }
    if what == "triggers" || what == "all" {
        out.push_str(&bench::triggers::run(arg(2, 20) as usize)?);
        out.push('\n');
    }
    if what == "console" || what == "all" {
        out.push_str(&bench::console::run(arg(2, 50) as usize)?);
        out.push('\n');
    }
    if what == "source" || what == "all" {
        out.push_str(&bench::source::run(arg(2, 768))?);
        out.push('\n');
    }
    if what == "throughput" || what == "all" {
        out.push_str(&rt.block_on(bench::throughput::run(arg(2, 10), 4, 64))?);
        out.push('\n');
    }
    anyhow::ensure!(
        !out.is_empty(),
        "unknown benchmark `{what}`; see the module docs"
    );
    print!("{out}");
    Ok(())
}
