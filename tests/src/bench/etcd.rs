//! A real three-member etcd 3.4 cluster on loopback, with mutual TLS from a
//! Ferry-made CA, started and killed like Ferry's coordinators so both are
//! measured on the same layout.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_certs::{CertAuthority, CertifiedKey};
use tonic::transport::Channel;

use crate::etcd::{
    PutRequest, StatusRequest, kv_client::KvClient, maintenance_client::MaintenanceClient,
};
use crate::free_port;

pub struct EtcdMember {
    pub name: String,
    pub client: String,
    peer: String,
    child: Option<Child>,
}

pub struct Etcd {
    dir: tempfile::TempDir,
    pub ca_pem: String,
    pub client_id: CertifiedKey,
    pub members: Vec<EtcdMember>,
    initial: String,
}

impl Etcd {
    pub fn start(n: usize) -> anyhow::Result<Etcd> {
        anyhow::ensure!(
            Command::new("etcd")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "etcd is not installed (apt-get install etcd-server)"
        );
        let dir = tempfile::tempdir()?;
        let ca = CertAuthority::init(&dir.path().join("ca"), "ferry")?;
        let client_id = ca.issue_operator("bench")?;
        ferry_certs::write_pair(&dir.path().join("ca"), "client", &client_id)?;
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("e{i}");
            let pair = ca.issue_coordinator(100 + i as u64, &["127.0.0.1".to_string()])?;
            ferry_certs::write_pair(&dir.path().join("ca"), &name, &pair)?;
            members.push(EtcdMember {
                name,
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                child: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}=https://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut e = Etcd {
            ca_pem: ca.ca_pem().to_string(),
            client_id,
            members,
            initial,
            dir,
        };
        for i in 0..n {
            e.spawn(i)?;
        }
        Ok(e)
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join("ca").join(f)
    }

    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let (name, client, peer) = {
            let m = &self.members[i];
            (m.name.clone(), m.client.clone(), m.peer.clone())
        };
        let s = |p: PathBuf| p.display().to_string();
        let child = Command::new("etcd")
            .args(["--name", &name])
            .args(["--data-dir", &s(self.dir.path().join(&name))])
            .args(["--listen-client-urls", &format!("https://{client}")])
            .args(["--advertise-client-urls", &format!("https://{client}")])
            .args(["--listen-peer-urls", &format!("https://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("https://{peer}")])
            .args([
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--cert-file", &s(self.path(&format!("{name}.pem")))])
            .args(["--key-file", &s(self.path(&format!("{name}-key.pem")))])
            .args([
                "--trusted-ca-file",
                &s(self.path("ca.pem")),
                "--client-cert-auth",
            ])
            .args(["--peer-cert-file", &s(self.path(&format!("{name}.pem")))])
            .args(["--peer-key-file", &s(self.path(&format!("{name}-key.pem")))])
            .args([
                "--peer-trusted-ca-file",
                &s(self.path("ca.pem")),
                "--peer-client-cert-auth",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.members[i].child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        super::channel(&self.ca_pem, &self.client_id, &self.members[i].client).await
    }

    /// (member id, leader id, raft term) as member `i` sees it.
    pub async fn status(&self, i: usize) -> Option<(u64, u64, u64)> {
        let ch = self.channel(i).await.ok()?;
        let mut c = MaintenanceClient::new(ch);
        let r = tokio::time::timeout(Duration::from_millis(300), c.status(StatusRequest {}))
            .await
            .ok()?
            .ok()?
            .into_inner();
        let header = r.header?;
        Some((header.member_id, r.leader, r.raft_term))
    }

    /// Index of the leader once all running members agree on one.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for _ in 0..600 {
            let mut views = Vec::new();
            for i in 0..self.members.len() {
                if self.members[i].child.is_some() {
                    views.push((i, self.status(i).await));
                }
            }
            let leaders: std::collections::BTreeSet<u64> =
                views.iter().filter_map(|(_, v)| v.map(|v| v.1)).collect();
            if views.iter().all(|(_, v)| v.is_some()) && leaders.len() == 1 {
                let leader = *leaders.iter().next().unwrap_or(&0);
                if let Some((i, _)) = views.iter().find(|(_, v)| v.is_some_and(|v| v.0 == leader)) {
                    return Ok(*i);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("etcd elected no leader")
    }

    pub async fn put(
        client: &mut KvClient<Channel>,
        key: String,
        value: Vec<u8>,
    ) -> anyhow::Result<()> {
        client
            .put(PutRequest {
                key: key.into_bytes(),
                value,
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
