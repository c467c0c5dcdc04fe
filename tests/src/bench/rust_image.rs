//! The local image `ferry-bench/rust`: a Debian root with gcc and the C
//! library's headers (debootstrap `--variant=minbase`, from the host's own
//! Debian mirror) and this host's Rust toolchain (`rustc` and `cargo` from
//! `rustc --print sysroot`, with the host target's standard library) under
//! `/usr/local/rust`, imported with `docker import`: no container registry.
//! Built once per machine, and again when the host's `rustc --version`
//! differs from the image's. It never changes the host's toolchain and
//! never pulls an image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// The image's name.
pub const IMAGE: &str = "ferry-bench/rust";

/// Where the toolchain lives in the image.
const RUST_HOME: &str = "/usr/local/rust";

/// Makes sure [`IMAGE`] exists with the host's toolchain; the `rustc
/// --version` and `cargo --version` it prints, one line each.
pub fn ensure() -> anyhow::Result<String> {
    let host = output(Command::new("rustc").arg("--version"))?;
    let host = host.trim();
    if let Some(inside) = versions_inside()? {
        if inside.lines().next() == Some(host) {
            return Ok(inside);
        }
        eprintln!("{IMAGE} has another toolchain ({inside:?}, host: {host}): building it again");
    }
    build()?;
    let inside = versions_inside()?.ok_or_else(|| anyhow::anyhow!("{IMAGE} was not built"))?;
    anyhow::ensure!(
        inside.lines().next() == Some(host),
        "{IMAGE} runs {inside:?}, not the host's {host}"
    );
    Ok(inside)
}

/// `rustc --version` and `cargo --version` in the image, without a network;
/// None when there is no such image.
fn versions_inside() -> anyhow::Result<Option<String>> {
    let exists = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run docker (is the Docker Engine running?)")?
        .success();
    if !exists {
        return Ok(None);
    }
    let versions = output(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "ferry.bench=rust-image",
        IMAGE,
        "sh",
        "-c",
        "rustc --version && cargo --version",
    ]))
    .with_context(|| format!("rustc or cargo does not run in {IMAGE}"))?;
    Ok(Some(versions.trim().to_string()))
}

fn build() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    if Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| !s.success())
    {
        eprintln!("installing debootstrap (Debian) to build {IMAGE}");
        output(Command::new("apt-get").args(["update", "-qq"]))?;
        output(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "debootstrap"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let sysroot = PathBuf::from(output(Command::new("rustc").args(["--print", "sysroot"]))?.trim());
    let verbose = output(Command::new("rustc").arg("-vV"))?;
    let triple = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| anyhow::anyhow!("`rustc -vV` names no host target:\n{verbose}"))?
        .trim()
        .to_string();
    for needed in [
        sysroot.join("bin/rustc"),
        sysroot.join("bin/cargo"),
        sysroot.join("lib/rustlib").join(&triple),
    ] {
        anyhow::ensure!(
            needed.exists(),
            "{} is missing: the host's toolchain ({}) has no cargo or no standard library for {triple}",
            needed.display(),
            sysroot.display()
        );
    }

    let mirror = std::env::var("FERRY_DEBIAN_MIRROR")
        .ok()
        .or_else(host_mirror)
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string());
    let suite = std::env::var("FERRY_DEBIAN_SUITE")
        .ok()
        .or_else(host_suite)
        .unwrap_or_else(|| "bookworm".to_string());
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-rust-")
        .tempdir()?;
    let root = dir.path().join("root");
    eprintln!(
        "building {IMAGE}: debootstrap --variant=minbase {suite} from {mirror}, then {}",
        sysroot.display()
    );
    let log = dir.path().join("debootstrap.log");
    let file = std::fs::File::create(&log)?;
    let ok = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=gcc,libc6-dev,ca-certificates",
            &suite,
        ])
        .arg(&root)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("cannot run debootstrap")?
        .success();
    if !ok {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        anyhow::bail!(
            "debootstrap of {suite} from {mirror} failed (is the mirror reachable? \
             FERRY_DEBIAN_MIRROR sets another):\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    // Only what building for the host needs: no documentation, no sources,
    // no other tools (1.4 GB become about 0.5 GB).
    let home = root.join(RUST_HOME.trim_start_matches('/'));
    let lib = home.join("lib");
    std::fs::create_dir_all(home.join("bin"))?;
    std::fs::create_dir_all(lib.join("rustlib"))?;
    copy(
        &[sysroot.join("bin/rustc"), sysroot.join("bin/cargo")],
        &home.join("bin"),
    )?;
    let shared: Vec<PathBuf> = std::fs::read_dir(sysroot.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".so"))
        })
        .collect();
    copy(&shared, &lib)?;
    copy(
        &[sysroot.join("lib/rustlib").join(&triple)],
        &lib.join("rustlib"),
    )?;
    for leftover in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = root.join(leftover);
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_file() {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(root.join("debootstrap"));

    let path =
        format!("{RUST_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    output(
        Command::new("sh")
            .args([
                "-c",
                "tar -C \"$1\" --numeric-owner -c . | docker import \
                 --change \"ENV PATH=$2\" --change 'ENV LANG=C.UTF-8' \
                 --change 'LABEL ferry.bench=rust' --change 'CMD [\"/bin/bash\"]' - \"$3\"",
                "sh",
            ])
            .arg(&root)
            .arg(&path)
            .arg(IMAGE),
    )
    .with_context(|| format!("docker import of {IMAGE} failed"))?;
    eprintln!("built {IMAGE} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `cp -a SOURCES... DEST` (keeps the toolchain's symbolic links).
fn copy(sources: &[PathBuf], dest: &Path) -> anyhow::Result<()> {
    output(Command::new("cp").arg("-a").args(sources).arg(dest)).map(drop)
}

/// The host's Debian mirror from its apt sources (one-line or deb822
/// form), Debian's main archive only, as `packaging/debian-image` finds it.
fn host_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .flat_map(|l| {
                    let words: Vec<String> = l.split_whitespace().map(str::to_string).collect();
                    match words.first().map(String::as_str) {
                        Some("URIs:") => words[1..].to_vec(),
                        Some("deb") => words[1..]
                            .iter()
                            .find(|w| w.contains("://"))
                            .cloned()
                            .into_iter()
                            .collect(),
                        _ => Vec::new(),
                    }
                })
                .collect::<Vec<_>>()
        })
        .find(|uri| {
            (uri.starts_with("http://") || uri.starts_with("https://"))
                && uri.trim_end_matches('/').ends_with("/debian")
        })
}

/// The host's Debian release name (`VERSION_CODENAME` of /etc/os-release).
fn host_suite() -> Option<String> {
    std::fs::read_to_string("/etc/os-release")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Runs `cmd`; its standard output, or an error with its standard error.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
