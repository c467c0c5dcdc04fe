//! Certificates, made with the real `ferry certs` commands: the cluster's
//! CA, each coordinator's certificate and an operator certificate per user.

use std::path::PathBuf;

use super::Cluster;

impl Cluster {
    /// Creates the cluster's CA in its TLS folder.
    pub(super) fn init_ca(&self) {
        let tls_s = self.tls.display().to_string();
        self.ferry_ok(None, &["certs", "init", "--dir", &tls_s]);
    }

    /// Issues member `id`'s coordinator certificate for the host names or
    /// addresses `sans`, into the TLS folder.
    pub(super) fn issue_coordinator(&self, id: u64, sans: &[&str]) {
        let tls_s = self.tls.display().to_string();
        let id = id.to_string();
        let mut args = vec![
            "certs",
            "issue",
            "coordinator",
            "--ca-dir",
            &tls_s,
            "--id",
            &id,
        ];
        for san in sans {
            args.extend(["--san", san]);
        }
        args.extend(["--out", &tls_s]);
        self.ferry_ok(None, &args);
    }

    /// Makes an operator certificate for `name` (once).
    pub fn user(&self, name: &str) -> PathBuf {
        let cert = self.users.join(format!("{name}.pem"));
        if !cert.exists() {
            let tls_s = self.tls.display().to_string();
            let users_s = self.users.display().to_string();
            self.ferry_ok(
                None,
                &[
                    "certs", "issue", "operator", "--ca-dir", &tls_s, "--name", name, "--out",
                    &users_s,
                ],
            );
        }
        cert
    }
}
