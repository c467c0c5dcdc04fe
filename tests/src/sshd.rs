//! Target hosts for deployment tests: Debian's real OpenSSH server, one per
//! network namespace, each with its own host key and an authorized client key.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::Net;
use crate::wait_for;

pub struct SshHost {
    pub ip: String,
    /// The host's public key line (`ssh-ed25519 AAAA...`).
    pub host_key: String,
    /// Its `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// A private key sshd accepts for root (OpenSSH PEM).
    pub client_key: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e} (install openssh-client)"));
    assert!(ok.success(), "ssh-keygen failed");
}

impl SshHost {
    /// Starts sshd in a new namespace host `i` of `net`.
    pub fn start(net: &mut Net, i: u32) -> SshHost {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd missing: install openssh-server"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        keygen(&d.join("host"));
        keygen(&d.join("client"));
        let read =
            |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        std::fs::write(d.join("authorized_keys"), read("client.pub"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (ns, ip) = net.host(i);
        let config = format!(
            "Port 22\nListenAddress {ip}\nHostKey {d}/host\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
        wait_for("sshd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect_timeout(
                &format!("{ip}:22").parse().unwrap_or_else(|e| panic!("{e}")),
                Duration::from_millis(200),
            )
            .ok()
        });
        let host_key = read("host.pub").trim().to_string();
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(d.join("host.pub"))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let fingerprint = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        SshHost {
            ip,
            host_key,
            fingerprint,
            client_key: read("client"),
            child: Some(child),
            _dir: dir,
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
