//! HTTPS requests to a member's listener (webhooks, the console), sent
//! with curl and trusting the cluster's CA.

use std::process::Command;

use super::Cluster;

/// An HTTPS answer: status, raw header lines and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Cluster {
    /// POSTs `body` with `headers` to member `id`'s HTTPS listener at
    /// `path` (curl, trusting the cluster's CA); the status and the answer.
    pub fn post_https(
        &self,
        id: u64,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let r = self.https(id, "POST", path, headers, Some(body));
        (r.status, r.body)
    }

    /// One HTTPS request to `url` (curl over HTTP/1.1, as git hosts and
    /// simple clients speak it, trusting the cluster's CA; redirects not
    /// followed).
    pub fn https_url(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpAnswer {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let head = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--http1.1",
            "-X",
            method,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--cacert")
        .arg(self.tls.join("ca.pem"))
        .arg("-D")
        .arg(head.path());
        if let Some(body) = body {
            std::fs::write(file.path(), body).unwrap_or_else(|e| panic!("{e}"));
            cmd.arg("--data-binary")
                .arg(format!("@{}", file.path().display()));
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(url);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (answer, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        if code.trim() == "000" {
            panic!(
                "curl got no answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl gave no status: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        HttpAnswer {
            status,
            headers: std::fs::read_to_string(head.path()).unwrap_or_default(),
            body: answer.to_string(),
        }
    }

    /// [`Cluster::https_url`] to `path` on member `id`.
    pub fn https(
        &self,
        id: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpAnswer {
        let url = format!("https://{}{path}", self.http_addr(id));
        self.https_url(method, &url, headers, body)
    }
}
