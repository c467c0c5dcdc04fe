//! The gRPC API changes only by addition (issue 23 item 3): the `.proto`
//! files as they are now are compared with the descriptor set of the last
//! release (`proto/compat/*.binpb`, written by `scripts/release` when a
//! version is tagged), public and internal packages alike. Breaking is:
//! a message, enum, service or method that is gone; a field or enum value
//! number that is gone without being `reserved`, or that now has another
//! type, label or message type; a reserved number used again; a method whose
//! request, response or streaming changed.
//!
//! `FERRY_PROTO_BASELINE_WRITE=FILE cargo test -p ferry-tests --test
//! proto_compat` writes the current descriptor set to FILE instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The descriptor set of the `.proto` files now.
fn current() -> FileDescriptorSet {
    let protos = root().join("proto/proto");
    let mut files = Vec::new();
    for dir in ["ferry/v1", "ferry/internal/v1"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(protos.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "proto"))
            .collect();
        found.sort();
        files.extend(found);
    }
    protox::compile(&files, [&protos]).unwrap_or_else(|e| panic!("the protos compile: {e}"))
}

/// Every message (nested ones too), enum and service by full name.
#[derive(Default)]
struct Index {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
    /// service.method → (request, response, client streaming, server streaming)
    methods: BTreeMap<String, (String, String, bool, bool)>,
}

fn index(set: &FileDescriptorSet) -> Index {
    fn walk(ix: &mut Index, prefix: &str, m: &DescriptorProto) {
        let name = format!("{prefix}.{}", m.name());
        for n in &m.nested_type {
            walk(ix, &name, n);
        }
        for e in &m.enum_type {
            ix.enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        ix.messages.insert(name, m.clone());
    }
    let mut ix = Index::default();
    for f in &set.file {
        let pkg = format!(".{}", f.package());
        for m in &f.message_type {
            walk(&mut ix, &pkg, m);
        }
        for e in &f.enum_type {
            ix.enums.insert(format!("{pkg}.{}", e.name()), e.clone());
        }
        for s in &f.service {
            for m in &s.method {
                ix.methods.insert(
                    format!("{pkg}.{}.{}", s.name(), m.name()),
                    (
                        m.input_type().to_string(),
                        m.output_type().to_string(),
                        m.client_streaming(),
                        m.server_streaming(),
                    ),
                );
            }
        }
    }
    ix
}

fn reserved(m: &DescriptorProto, number: i32) -> bool {
    m.reserved_range
        .iter()
        .any(|r| r.start() <= number && number < r.end())
}

/// What makes a field's wire meaning: label, type and message/enum type.
fn shape(f: &FieldDescriptorProto) -> (Option<i32>, Option<i32>, String, bool) {
    (
        f.label,
        f.r#type,
        f.type_name().to_string(),
        f.proto3_optional(),
    )
}

/// The breaking changes from `old` to `new`, one line each.
fn breaking(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (index(old), index(new));
    let mut out = Vec::new();
    for (name, om) in &old.messages {
        let Some(nm) = new.messages.get(name) else {
            out.push(format!("message {name} is gone"));
            continue;
        };
        for of in &om.field {
            match nm.field.iter().find(|f| f.number() == of.number()) {
                None if reserved(nm, of.number()) => {}
                None => out.push(format!(
                    "{name}: field {} `{}` is gone without `reserved {}`",
                    of.number(),
                    of.name(),
                    of.number()
                )),
                Some(nf) => {
                    // `int32` → `optional int32` keeps the encoding of a set value.
                    let (a, b) = (shape(of), shape(nf));
                    if (a.0, a.1, &a.2) != (b.0, b.1, &b.2) {
                        out.push(format!(
                            "{name}: field {} `{}` changed type or label (`{}` now)",
                            of.number(),
                            of.name(),
                            nf.name()
                        ));
                    }
                }
            }
        }
        for nf in &nm.field {
            if reserved(om, nf.number()) {
                out.push(format!(
                    "{name}: field {} `{}` reuses a reserved number",
                    nf.number(),
                    nf.name()
                ));
            }
        }
    }
    for (name, oe) in &old.enums {
        let Some(ne) = new.enums.get(name) else {
            out.push(format!("enum {name} is gone"));
            continue;
        };
        for v in &oe.value {
            let kept = ne.value.iter().any(|n| n.number() == v.number())
                || ne
                    .reserved_range
                    .iter()
                    .any(|r| r.start() <= v.number() && v.number() <= r.end());
            if !kept {
                out.push(format!(
                    "{name}: value {} `{}` is gone",
                    v.number(),
                    v.name()
                ));
            }
        }
    }
    for (name, shape) in &old.methods {
        match new.methods.get(name) {
            None => out.push(format!("method {name} is gone")),
            Some(n) if n != shape => out.push(format!(
                "method {name} changed its request, response or streaming"
            )),
            Some(_) => {}
        }
    }
    out
}

/// The newest baseline in proto/compat (by file name: `v0.N.M.binpb`).
fn baseline() -> (PathBuf, FileDescriptorSet) {
    let dir = root().join("proto/compat");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "binpb"))
        .collect();
    found.sort_by_key(|p| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .map(|s| {
                s.trim_start_matches('v')
                    .split('.')
                    .map(|n| n.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    let path = found
        .pop()
        .unwrap_or_else(|| panic!("no release baseline in {}", dir.display()));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let set = FileDescriptorSet::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, set)
}

#[test]
fn the_api_changes_only_by_addition_since_the_last_release() {
    let now = current();
    if let Some(out) = std::env::var_os("FERRY_PROTO_BASELINE_WRITE") {
        // Comments and positions are not part of the API.
        let mut stripped = now.clone();
        for f in &mut stripped.file {
            f.source_code_info = None;
        }
        std::fs::write(&out, stripped.encode_to_vec()).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let (path, released) = baseline();
    let found = breaking(&released, &now);
    assert!(
        found.is_empty(),
        "breaking changes to the API since {}:\n  {}",
        path.display(),
        found.join("\n  ")
    );
}

#[test]
fn the_check_finds_each_kind_of_break() {
    // Made by editing the current descriptor set the way a careless change would.
    let base = current();
    let edit = |f: &dyn Fn(&mut FileDescriptorSet)| {
        let mut s = base.clone();
        f(&mut s);
        breaking(&base, &s)
    };
    let message = |s: &mut FileDescriptorSet, name: &str| -> Option<usize> {
        s.file
            .iter()
            .position(|f| f.message_type.iter().any(|m| m.name() == name))
    };
    // A field removed without `reserved`.
    let found = edit(&|s| {
        if let Some(i) = message(s, "CreateTokenRequest")
            && let Some(m) = s.file[i]
                .message_type
                .iter_mut()
                .find(|m| m.name() == "CreateTokenRequest")
        {
            m.field.retain(|f| f.name() != "uses");
        }
    });
    assert!(
        found.iter().any(|l| l.contains("`uses` is gone")),
        "{found:?}"
    );
    // A field retyped in place.
    let found = edit(&|s| {
        for f in &mut s.file {
            for m in f.message_type.iter_mut().filter(|m| m.name() == "Event") {
                for field in m.field.iter_mut().filter(|x| x.name() == "message") {
                    field.r#type = Some(prost_types::field_descriptor_proto::Type::Bytes as i32);
                }
            }
        }
    });
    assert!(
        found.iter().any(|l| l.contains("`message` changed type")),
        "{found:?}"
    );
    // A reserved number used again.
    let found = edit(&|s| {
        for f in &mut s.file {
            for m in f.message_type.iter_mut().filter(|m| m.name() == "Event") {
                for field in m.field.iter_mut().filter(|x| x.name() == "kind") {
                    field.number = Some(2);
                }
            }
        }
    });
    assert!(
        found.iter().any(|l| l.contains("reuses a reserved number")),
        "{found:?}"
    );
    // A method gone.
    let found = edit(&|s| {
        for f in &mut s.file {
            for svc in &mut f.service {
                svc.method.retain(|m| m.name() != "Backup");
            }
        }
    });
    assert!(
        found.iter().any(|l| l.contains("Cluster.Backup is gone")),
        "{found:?}"
    );
    assert!(breaking(&base, &base).is_empty());
}
