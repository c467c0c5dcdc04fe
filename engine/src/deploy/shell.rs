//! The POSIX shell text a deployment runs on target hosts: quoting, the
//! release layout (`<path>/releases/<release>`, `<path>/current`), and the
//! wrapper that runs a hook's script from standard input under a timeout.
//! Scripts travel on stdin, so secret values never appear in a command line.

/// Quotes `s` for a POSIX shell (single quotes; `'` becomes `'\''`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command that runs the script arriving on stdin with `/bin/sh -e`,
/// under `timeout` when the host has it (killing the hook's process group
/// when it runs over), and with stdin closed for the hook itself.
pub fn run_stdin_script(timeout_secs: u64) -> String {
    format!(
        "s=$(cat); if command -v timeout >/dev/null 2>&1; then \
         exec timeout -k 5 {timeout_secs} /bin/sh -ec \"$s\" </dev/null; \
         else exec /bin/sh -ec \"$s\" </dev/null; fi"
    )
}

/// `export NAME='value'` lines.
pub fn exports<'a>(vars: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    vars.into_iter()
        .map(|(k, v)| format!("export {k}={}\n", quote(&String::from_utf8_lossy(v))))
        .collect()
}

/// File beside `current` naming the release a forward switch replaced.
const PREVIOUS_FILE: &str = ".ferry-previous";

/// File in a deploy path naming the environment and pipeline it belongs to.
pub const OWNER_FILE: &str = ".ferry-owner";

/// Exit status of a deploy step refused because the path is not ours.
pub const NOT_OURS: u32 = 3;

/// Who a deploy path belongs to: the text of its [`OWNER_FILE`].
pub fn owner_text(environment: &str, pipeline: &str) -> String {
    format!("environment: {environment}\npipeline: {pipeline}")
}

/// Claims deploy path `path` for `owner` ([`owner_text`]) before anything
/// there is read or changed: a path marked for another environment or
/// pipeline, or a non-empty directory Ferry did not lay out, is refused
/// with exit status [`NOT_OURS`] and one line saying why. A path laid out
/// by an older Ferry (a `releases` directory, `current` a link or absent)
/// is adopted; a missing or empty one is created and marked. `drain`
/// reads standard input to its end before refusing (when an upload is
/// waiting on it).
pub fn claim(path: &str, owner: &str, drain: bool) -> String {
    let p = quote(path);
    let want = quote(owner);
    let refuse = if drain {
        format!("cat >/dev/null; exit {NOT_OURS}")
    } else {
        format!("exit {NOT_OURS}")
    };
    format!(
        "want={want}; \
         if [ -f {p}/{OWNER_FILE} ]; then have=$(head -c 512 {p}/{OWNER_FILE}); \
         if [ \"$have\" != \"$want\" ]; then \
         echo \"ferry: {path_shown} belongs to another deployment ($(printf %s \"$have\" | tr -c 'A-Za-z0-9._:-' ' ')), \
         not to this one ($(printf %s \"$want\" | tr '\\n' ' ')); refusing to touch it\" >&2; {refuse}; fi; \
         elif [ -e {p} ] && [ -n \"$(ls -A {p} 2>/dev/null)\" ] && \
         ! {{ [ -d {p}/releases ] && {{ [ -L {p}/current ] || [ ! -e {p}/current ]; }}; }}; then \
         echo \"ferry: {path_shown} is not empty and was not laid out by Ferry (no {OWNER_FILE}, no releases/); \
         refusing to touch it: name an empty or new directory as the host's path\" >&2; {refuse}; \
         else mkdir -p {p} && printf %s \"$want\" > {p}/{OWNER_FILE}.new && mv -f {p}/{OWNER_FILE}.new {p}/{OWNER_FILE} \\
         || {{ echo \"ferry: cannot create and mark {path_shown}\" >&2; exit 1; }}; fi",
        path_shown = path.replace(['"', '\\', '$', '`', '\n'], "?"),
    )
}

/// [`claim`]s deploy path `path` for `owner`, then prints one line each:
/// the release `current` points at; the digest of `release` if it is already unpacked (a redeploy
/// need not upload it again); the release to roll back to — the current one,
/// or, when `release` is already current (a retried deployment), the one it
/// replaced; then that release's revision spec.
pub fn inspect(path: &str, owner: &str, release: &str, spec_file: &str) -> String {
    inspect_after(claim(path, owner, false), path, release, spec_file)
}

fn inspect_after(claim: String, path: &str, release: &str, spec_file: &str) -> String {
    let p = quote(path);
    let r = quote(release);
    let s = quote(spec_file);
    format!(
        "{claim}\ncur=$(readlink {p}/current 2>/dev/null || true); cur=${{cur##*/}}; echo \"$cur\"; \
         cat {p}/releases/{r}/.ferry-digest 2>/dev/null || true; echo; \
         if [ \"$cur\" = {r} ]; then prev=$(cat {p}/{PREVIOUS_FILE} 2>/dev/null || true); \
         else prev=$cur; fi; echo \"$prev\"; \
         [ -z \"$prev\" ] || cat {p}/releases/\"$prev\"/{s} 2>/dev/null || true"
    )
}

/// Printed on a line of its own between [`inspect`]'s output and what follows
/// when inspection and upload share one session.
pub const INSPECTED: &str = "--ferry-inspected--";

/// [`inspect`], then [`unpack`] of the tar on stdin, in one session (a
/// refused claim reads the tar to its end first, so the upload ends cleanly).
pub fn inspect_and_unpack(
    path: &str,
    owner: &str,
    release: &str,
    spec_file: &str,
    unpack: &str,
) -> String {
    format!(
        "{}\nprintf '\\n%s\\n' {INSPECTED}\n{unpack}",
        inspect_after(claim(path, owner, true), path, release, spec_file)
    )
}

/// What [`inspect`] printed.
pub struct Inspected<'a> {
    pub current: &'a str,
    pub digest: &'a str,
    pub previous: &'a str,
    pub previous_spec: &'a str,
}

pub fn parse_inspect(out: &str) -> Inspected<'_> {
    let mut parts = out.splitn(4, '\n');
    let mut next = || parts.next().unwrap_or_default();
    let (current, digest, previous) = (next().trim(), next().trim(), next().trim());
    Inspected {
        current,
        digest,
        previous,
        previous_spec: next(),
    }
}

/// Unpacks the tar on stdin into `releases/<release>` (through a scratch
/// directory, so a half-written release is never visible), extracting only
/// `files` when given, and records the artifact digest beside it.
pub fn unpack(path: &str, release: &str, digest: &str, files: &[String]) -> String {
    let p = quote(path);
    let incoming = quote(&format!(".incoming-{release}"));
    let r = quote(release);
    let members: String = files.iter().map(|f| format!(" {}", quote(f))).collect();
    format!(
        "set -e; mkdir -p {p}/releases; cd {p}/releases; rm -rf {incoming}; mkdir {incoming}; \
         tar -x -f - -C {incoming}{members}; printf %s {d} > {incoming}/.ferry-digest; \
         rm -rf {r}; mv {incoming} {r}",
        d = quote(digest),
    )
}

/// Points `current` at `release` atomically (a new link renamed over the
/// old one); an empty `release` removes the link. Used to go back.
pub fn switch(path: &str, release: &str) -> String {
    let p = quote(path);
    if release.is_empty() {
        return format!("rm -f {p}/current");
    }
    format!(
        "set -e; cd {p}; ln -sfn {target} .current.new; mv -T .current.new current",
        target = quote(&format!("releases/{release}"))
    )
}

/// [`switch`] forward to `release`, first noting the release it replaces
/// (unless `release` is already current: a retry keeps the first note).
pub fn switch_forward(path: &str, release: &str) -> String {
    let p = quote(path);
    let r = quote(release);
    format!(
        "set -e; cd {p}; old=$(readlink current 2>/dev/null || true); old=${{old##*/}}; \
         if [ \"$old\" != {r} ]; then printf %s \"$old\" > {PREVIOUS_FILE}; fi; {}",
        switch(path, release)
    )
}

/// [`switch`] to `release`, then [`prune`] (whose failure only leaves old
/// releases behind): one round trip instead of two.
pub fn switch_and_prune(path: &str, release: &str, keep: u32, previous: &str) -> String {
    format!(
        "{}\n( {} ) || echo 'old releases were not pruned' >&2",
        switch_forward(path, release),
        prune(path, keep, release, previous)
    )
}

/// Deletes all but the newest `keep` releases, never `current` nor `previous`.
pub fn prune(path: &str, keep: u32, current: &str, previous: &str) -> String {
    format!(
        "cd {p}/releases && ls -1t | grep -v '^\\.incoming-' | tail -n +{from} | \
         while read -r d; do [ \"$d\" = {c} ] || [ \"$d\" = {v} ] || rm -rf -- \"$d\"; done",
        p = quote(path),
        from = keep + 1,
        c = quote(current),
        v = quote(previous),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (i32, String) {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("run /bin/sh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "it's", "$HOME `x` \"y\"", "a\nb", ""] {
            assert_eq!(sh(&format!("printf %s {}", quote(s))), (0, s.to_string()));
        }
        let vars = exports([("A", b"x'y".as_slice())]);
        assert_eq!(sh(&format!("{vars}printf %s \"$A\"")), (0, "x'y".into()));
    }

    const OWNER: &str = "environment: staging\npipeline: shop";

    #[test]
    fn a_deploy_path_is_claimed_once_and_refused_to_anyone_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
        let staging = owner_text("staging", "shop");
        let production = owner_text("production", "shop");
        // A new directory is created and marked; its owner may come back.
        let path = at("app");
        assert_eq!(sh(&claim(&path, &staging, false)).0, 0);
        assert_eq!(
            std::fs::read_to_string(format!("{path}/{OWNER_FILE}")).expect("marker"),
            staging
        );
        assert_eq!(sh(&claim(&path, &staging, false)).0, 0);
        // Another environment, or another pipeline, is refused and changes nothing.
        for other in [production.as_str(), &owner_text("staging", "other")] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(claim(&path, other, false))
                .output()
                .expect("sh");
            assert_eq!(out.status.code(), Some(NOT_OURS as i32));
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("belongs to another deployment"), "{said}");
            assert!(said.contains("environment: staging"), "{said}");
        }
        assert_eq!(
            std::fs::read_to_string(format!("{path}/{OWNER_FILE}")).expect("marker"),
            staging
        );
        // A directory someone else filled belongs to nobody: refused.
        let home = at("home");
        std::fs::create_dir(&home).expect("mkdir");
        std::fs::write(format!("{home}/.bashrc"), "x").expect("write");
        let (code, _) = sh(&claim(&home, &staging, false));
        assert_eq!(code, NOT_OURS as i32);
        assert!(!std::path::Path::new(&format!("{home}/{OWNER_FILE}")).exists());
        // An empty directory is claimed; a layout of an older Ferry adopted.
        let empty = at("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert_eq!(sh(&claim(&empty, &staging, false)).0, 0);
        let old = at("old");
        std::fs::create_dir_all(format!("{old}/releases/r1")).expect("mkdir");
        std::os::unix::fs::symlink("releases/r1", format!("{old}/current")).expect("link");
        assert_eq!(sh(&claim(&old, &staging, false)).0, 0);
        assert_eq!(sh(&claim(&old, &production, false)).0, NOT_OURS as i32);
        // Hostile names stay data.
        let odd = at("it's $(touch pwned) `x`");
        assert_eq!(sh(&claim(&odd, &owner_text("a'b", "$(x)"), false)).0, 0);
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn release_layout_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app");
        let path = path.to_str().expect("utf-8 path");
        let tar = dir.path().join("a.tar");
        std::fs::write(dir.path().join("f"), "one").expect("write");
        assert_eq!(
            sh(&format!(
                "tar -c -f {} -C {} f",
                tar.display(),
                dir.path().display()
            ))
            .0,
            0
        );
        for (release, digest) in [("r1", "d1"), ("r2", "d2"), ("r3", "d3")] {
            let unpack = unpack(path, release, digest, &[]);
            assert_eq!(sh(&format!("( {unpack} ) < {}", tar.display())).0, 0);
            assert_eq!(sh(&switch_forward(path, release)).0, 0);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = |release: &str| {
            let (_, out) = sh(&inspect(path, OWNER, release, "f"));
            let i = parse_inspect(&out);
            (
                i.current.to_string(),
                i.digest.to_string(),
                i.previous.to_string(),
                i.previous_spec.to_string(),
            )
        };
        let s = |a: &str, b: &str, c: &str, d: &str| {
            (a.to_string(), b.to_string(), c.to_string(), d.to_string())
        };
        assert_eq!(seen("r2"), s("r3", "d2", "r3", "one"));
        assert_eq!(seen("r9"), s("r3", "", "r3", "one"));
        // A retry of the current release rolls back to the one it replaced.
        assert_eq!(seen("r3"), s("r3", "d3", "r2", "one"));
        assert_eq!(sh(&switch_forward(path, "r3")).0, 0);
        assert_eq!(seen("r3"), s("r3", "d3", "r2", "one"));
        assert_eq!(sh(&prune(path, 1, "r3", "r1")).0, 0);
        let (_, left) = sh(&format!("ls {path}/releases"));
        assert_eq!(left.split_whitespace().collect::<Vec<_>>(), ["r1", "r3"]);
        assert_eq!(sh(&switch_and_prune(path, "r1", 1, "r3")).0, 0);
        let (_, left) = sh(&format!("ls {path}/releases"));
        assert_eq!(left.split_whitespace().collect::<Vec<_>>(), ["r1", "r3"]);
        assert_eq!(sh(&switch(path, "")).0, 0);
        assert_eq!(seen("r1"), s("", "d1", "", ""));
        // Inspection and upload in one session: the inspection comes first.
        assert_eq!(sh(&switch_forward(path, "r1")).0, 0);
        let both = inspect_and_unpack(path, OWNER, "r4", "f", &unpack(path, "r4", "d4", &[]));
        let (code, out) = sh(&format!("( {both} ) < {}", tar.display()));
        assert_eq!(code, 0, "{out}");
        let (info, _) = out
            .split_once(&format!("\n{INSPECTED}\n"))
            .expect("the marker");
        let i = parse_inspect(info);
        assert_eq!((i.current, i.digest, i.previous), ("r1", "", "r1"));
        assert_eq!(i.previous_spec.trim(), "one");
        assert!(seen("r4").1 == "d4", "unpacked");
    }
}
