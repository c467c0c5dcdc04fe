//! The Raft driver's fatal paths: a committed entry it cannot decode stops
//! the member with an error naming the entry, instead of being skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

use super::storage::LogStore;
use super::{NodeConfig, NodeError, PeerTls, StartError, start};
use ferry_state::ClusterState;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A member 1 whose data dir holds the founding snapshot at index 1, then
/// `entries` committed after it.
fn member_with_log(dir: &std::path::Path, snapshot: Vec<u8>, entries: &[Entry]) -> TestResult {
    let store = LogStore::open(&dir.join("raft.redb"))?.store;
    let cs = ConfState {
        voters: vec![1],
        ..Default::default()
    };
    let mut snap = Snapshot {
        data: snapshot.into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 1;
    snap.mut_metadata().term = 1;
    snap.mut_metadata().set_conf_state(cs.clone());
    store.install_snapshot(&snap)?;
    store.set_conf_state(&cs)?;
    let commit = entries.last().map_or(1, |e| e.index);
    let hs = HardState {
        term: 1,
        commit,
        ..Default::default()
    };
    store.persist(entries, Some(&hs))?;
    Ok(())
}

fn config(dir: &std::path::Path) -> Result<NodeConfig, Box<dyn std::error::Error>> {
    let ca = ferry_certs::CertAuthority::init(&dir.join("tls"), "ferry")?;
    Ok(NodeConfig {
        id: 1,
        peers: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
        join: false,
        data_dir: dir.join("data"),
        snapshot_every: 1000,
        tick: Duration::from_millis(10),
        tls: PeerTls {
            ca_pem: ca.ca_pem().to_string(),
            identity: ferry_certs::tls::SharedIdentity::new(ca.issue_coordinator(1, &[])?),
        },
        force_new_cluster: false,
    })
}

#[test]
fn an_undecodable_committed_entry_stops_the_member() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path())?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let garbage = Entry {
        index: 2,
        term: 1,
        data: b"{\"NoSuchCommand\":{}}".to_vec().into(),
        ..Default::default()
    };
    member_with_log(
        &cfg.data_dir,
        ClusterState::default().to_snapshot()?,
        &[garbage],
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (_handle, thread) = start(cfg, runtime.handle().clone())?;
    match thread.join() {
        Ok(Err(NodeError::Command { index: 2, .. })) => Ok(()),
        Ok(other) => panic!("expected the entry to stop the member, got {other:?}"),
        Err(_) => panic!("the Raft thread panicked"),
    }
}

#[test]
fn a_stored_snapshot_that_does_not_decode_refuses_to_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path())?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    member_with_log(&cfg.data_dir, b"not a state".to_vec(), &[])?;
    let runtime = tokio::runtime::Runtime::new()?;
    match start(cfg, runtime.handle().clone()) {
        Err(StartError::Snapshot(e)) => {
            assert!(e.to_string().contains("does not decode"), "{e}");
            Ok(())
        }
        Err(e) => panic!("expected a snapshot error, got {e}"),
        Ok(_) => panic!("a member with an undecodable snapshot must not start"),
    }
}
