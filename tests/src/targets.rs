//! Deployment targets for tests and benchmarks: real OpenSSH servers, each in
//! its own network namespace with its own deploy directory, grouped into
//! environments whose files pin each host's key and name its key secret.
//! A sample application (a static page served by Python's http.server) is
//! what the deployment tests ship; `serves` reads it back over HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Cluster;
use crate::net::Net;
use crate::sshd::SshHost;

pub struct Targets {
    pub hosts: Vec<SshHost>,
    /// Deploy directories live under here (namespaces share the filesystem).
    root: tempfile::TempDir,
    // Dropped last: the namespaces outlive the servers in them.
    pub net: Net,
}

impl Targets {
    /// `n` SSH hosts in network namespaces (1-based `i`).
    pub fn start(n: u32) -> Targets {
        let mut net = Net::new();
        let hosts = (1..=n).map(|i| SshHost::start(&mut net, i)).collect();
        Targets {
            hosts,
            root: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            net,
        }
    }

    /// Host `i` (1-based).
    pub fn host(&self, i: u32) -> &SshHost {
        &self.hosts[i as usize - 1]
    }

    /// The deploy directory of host `i`.
    pub fn path(&self, i: u32) -> PathBuf {
        self.root.path().join(format!("h{i}"))
    }

    /// Stores each host's client key as secret `ssh-h<i>` (as admin).
    pub fn set_key_secrets(&self, c: &Cluster) {
        for i in 1..=self.hosts.len() as u32 {
            c.set_secret(&format!("ssh-h{i}"), self.host(i).client_key.as_bytes());
        }
    }

    /// An environment file for hosts `members`, named `<prefix><n>`; odd
    /// hosts are pinned by public key, even ones by fingerprint.
    pub fn environment(&self, name: &str, prefix: &str, members: &[u32]) -> String {
        self.environment_in(name, prefix, members, "")
    }

    /// Like [`Targets::environment`], deploying to `<path of host>/<subdir>`.
    pub fn environment_in(
        &self,
        name: &str,
        prefix: &str,
        members: &[u32],
        subdir: &str,
    ) -> String {
        let mut yaml = format!("name: {name}\nhosts:\n");
        for (n, &i) in members.iter().enumerate() {
            let h = self.host(i);
            let pin = if i % 2 == 1 {
                format!("\"{}\"", h.host_key)
            } else {
                h.fingerprint.clone()
            };
            yaml.push_str(&format!(
                "  - name: {prefix}{}\n    ssh:\n      address: {}:22\n      user: root\n      \
                 host_key: {pin}\n      key_secret: ssh-h{i}\n      path: {}\n",
                n + 1,
                h.ip,
                self.path(i).join(subdir).display()
            ));
        }
        yaml
    }

    /// Applies an environment file as admin.
    pub fn apply_environment(&self, c: &Cluster, yaml: &str) {
        let file = c.path().join("environment.yml");
        std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("{e}"));
        c.ferry_ok(
            Some("admin"),
            &["env", "apply", "-f", &file.display().to_string()],
        );
    }

    /// The page host `i` serves on port 8080, if any.
    pub fn serves(&self, i: u32) -> Option<String> {
        let out = std::process::Command::new("curl")
            .args(["-fsS", "--max-time", "3"])
            .arg(format!("http://{}:{APP_PORT}/", self.host(i).ip))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until host `i` serves a page containing `text`.
    pub fn wait_serves(&self, i: u32, text: &str) {
        crate::wait_for(
            &format!("host {i} to serve {text:?}"),
            Duration::from_secs(20),
            || self.serves(i).filter(|p| p.contains(text)),
        );
    }

    /// Stops the sample app on every host (tests leave nothing running).
    pub fn stop_apps(&self) {
        for i in 1..=self.hosts.len() as u32 {
            let pid = self.path(i).join("http.pid");
            if let Ok(pid) = std::fs::read_to_string(&pid) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        self.stop_apps();
    }
}

/// Port the sample application listens on in every namespace.
pub const APP_PORT: u16 = 8080;

/// The sample application's repository files: a revision spec whose hooks
/// stop, start and validate a static site served by `python3 -m http.server`.
/// `validate` fails on a host whose deploy directory holds `FAIL_VALIDATE`
/// with the page of the release being validated, and hangs for a minute
/// (after creating `HOLDING`) where it holds `HOLD_VALIDATE` (empty, or
/// with that page).
pub fn sample_app(version: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VERSION", format!("{version}\n")),
        ("ferry-deploy.yml", SAMPLE_SPEC.to_string()),
        ("bin/start.sh", SAMPLE_START.to_string()),
        ("bin/stop.sh", SAMPLE_STOP.to_string()),
        ("bin/validate.sh", SAMPLE_VALIDATE.to_string()),
    ]
}

const SAMPLE_SPEC: &str = r#"files: [ferry-deploy.yml, bin, www]
hook_timeout: 30s
hooks:
  stop: sh bin/stop.sh
  before_install: echo "before install of $FERRY_RELEASE on $FERRY_HOST at $FERRY_REVISION"
  after_install: test -L "$FERRY_DEPLOY_PATH/current"
  start:
    - echo "token=$API_TOKEN"
    - sh bin/start.sh
  validate: sh bin/validate.sh
"#;

const SAMPLE_START: &str = r#"cd "$FERRY_RELEASE_DIR/www"
nohup /usr/bin/python3 -m http.server 8080 > "$FERRY_DEPLOY_PATH/http.log" 2>&1 < /dev/null &
echo $! > "$FERRY_DEPLOY_PATH/http.pid"
"#;

const SAMPLE_STOP: &str = r#"pidfile="$FERRY_DEPLOY_PATH/http.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$pidfile"
fi
"#;

const SAMPLE_VALIDATE: &str = r#"hold="$FERRY_DEPLOY_PATH/HOLD_VALIDATE"
if [ -e "$hold" ] && { [ ! -s "$hold" ] || [ "$(cat "$hold")" = "$(cat www/index.html)" ]; }; then
  touch "$FERRY_DEPLOY_PATH/HOLDING"
  sleep 60
fi
fail="$FERRY_DEPLOY_PATH/FAIL_VALIDATE"
if [ -e "$fail" ] && [ "$(cat "$fail")" = "$(cat www/index.html)" ]; then
  echo "validation failed on purpose on $FERRY_HOST" >&2
  exit 3
fi
ip=$(hostname -I | cut -d' ' -f1)
want=$(cat "$FERRY_RELEASE_DIR/www/index.html")
for i in $(seq 1 50); do
  if [ "$(curl -fsS --max-time 2 "http://$ip:8080/" 2>/dev/null)" = "$want" ]; then
    echo "serving: $want"
    exit 0
  fi
  sleep 0.2
done
echo "not serving $want" >&2
exit 1
"#;

/// Whether `path` (a deploy directory) has `current` pointing at `release`.
pub fn current_release(path: &Path) -> Option<String> {
    std::fs::read_link(path.join("current"))
        .ok()
        .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()))
}
