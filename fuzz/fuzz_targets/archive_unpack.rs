//! Fuzzes the agent's input re-packer (`engine/src/archive.rs` and the rules
//! it shares with `engine/src/unpack.rs`, compiled in as modules): arbitrary bytes as an input tar, and tars built from
//! fuzzer-chosen entries (paths, kinds, link targets) so that valid header
//! checksums do not stand between the fuzzer and the path checks. Whatever
//! the re-packer accepts must extract only inside `workspace/`; see
//! `ferry_fuzz::archive_oracle`.
#![no_main]

#[path = "../../engine/src/archive.rs"]
#[allow(dead_code)]
mod archive;
// The path and symlink rules archive.rs shares with the unpacker.
#[path = "../../engine/src/unpack.rs"]
#[allow(dead_code)]
mod unpack;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tar::{Builder, EntryType, Header};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let inputs: Vec<Vec<u8>> = if mode & 1 == 0 {
        vec![rest.to_vec()]
    } else {
        let mut u = Unstructured::new(rest);
        match built_tars(&mut u) {
            Ok(tars) => tars,
            Err(_) => return,
        }
    };
    let Ok(mut out) = archive::WorkspaceTar::new(Vec::new()) else {
        return;
    };
    for (i, input) in inputs.iter().enumerate() {
        if out
            .append_input(&format!("input{i}"), input.as_slice())
            .is_err()
        {
            return;
        }
    }
    let packed = out.into_inner().expect("finishing the re-packed tar");
    ferry_fuzz::archive_oracle::check_workspace_tar(&packed);
});

/// Path pieces the fuzzer combines: enough to spell links, `..` and nesting.
const PIECES: [&str; 10] = [
    "a",
    "b",
    "..",
    ".",
    "",
    "workspace",
    "/",
    "a/b",
    "../..",
    "x",
];

fn path(u: &mut Unstructured<'_>) -> Result<String> {
    let parts = u.int_in_range(1..=4)?;
    let mut text = String::new();
    if u.ratio(1, 8)? {
        text.push('/');
    }
    for i in 0..parts {
        if i > 0 {
            text.push('/');
        }
        text.push_str(u.choose(&PIECES)?);
    }
    Ok(text)
}

/// One or two input tars of up to 8 entries each.
fn built_tars(u: &mut Unstructured<'_>) -> Result<Vec<Vec<u8>>> {
    let count = u.int_in_range(1..=2)?;
    let mut tars = Vec::new();
    for _ in 0..count {
        let mut b = Builder::new(Vec::new());
        for _ in 0..u.int_in_range(1..=8)? {
            let kind = *u.choose(&[
                EntryType::Regular,
                EntryType::Directory,
                EntryType::Symlink,
                EntryType::Link,
                EntryType::Char,
                EntryType::Fifo,
            ])?;
            let name = path(u)?;
            let mut h = Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            let data: &[u8] = if kind == EntryType::Regular {
                b"hi"
            } else {
                b""
            };
            h.set_size(data.len() as u64);
            // Raw names: the builder's own path checks would refuse `..`.
            let Some(gnu) = h.as_gnu_mut() else { continue };
            let bytes = name.as_bytes();
            if bytes.len() > gnu.name.len() {
                continue;
            }
            gnu.name[..bytes.len()].copy_from_slice(bytes);
            if matches!(kind, EntryType::Symlink | EntryType::Link) {
                let target = path(u)?;
                let bytes = target.as_bytes();
                if bytes.len() > gnu.linkname.len() {
                    continue;
                }
                gnu.linkname[..bytes.len()].copy_from_slice(bytes);
            }
            h.set_cksum();
            if b.append(&h, data).is_err() {
                return Ok(tars);
            }
        }
        tars.push(b.into_inner().unwrap_or_default());
    }
    Ok(tars)
}
