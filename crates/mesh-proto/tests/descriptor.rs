//! The descriptor set served by gRPC reflection describes the whole package, and the generated
//! clients and servers exist under their documented paths.

use std::collections::HashSet;

use mesh_proto::{FILE_DESCRIPTOR_SET, v1};
use prost::Message as _;

#[test]
fn descriptor_set_holds_every_file_and_service() {
    let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let files: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
    for file in [
        "identitymesh/v1/values.proto",
        "identitymesh/v1/events.proto",
        "identitymesh/v1/query.proto",
        "identitymesh/v1/rules.proto",
        "identitymesh/v1/access.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/struct.proto",
    ] {
        assert!(files.contains(&file), "{file} missing from {files:?}");
    }
    let services: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    assert_eq!(
        services,
        [
            "identitymesh.v1.AccessDecision",
            "identitymesh.v1.MeshQuery",
            "identitymesh.v1.RuleAdmin",
        ]
    );
}

/// Every enum starts with `<ENUM>_UNSPECIFIED = 0`, and every message, field, oneof, enum,
/// enum value, service and method carries a comment, as the contract promises.
#[test]
fn contract_conventions_hold() {
    let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut missing = Vec::new();
    for file in fds.file.iter().filter(|f| f.package() == "identitymesh.v1") {
        let documented: HashSet<Vec<i32>> = file
            .source_code_info
            .as_ref()
            .unwrap()
            .location
            .iter()
            .filter(|l| {
                l.leading_comments
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty())
            })
            .map(|l| l.path.clone())
            .collect();
        let mut check = |path: Vec<i32>, what: String| {
            if !documented.contains(&path) {
                missing.push(format!("{}: {what}", file.name()));
            }
        };
        // Field numbers of FileDescriptorProto / DescriptorProto / EnumDescriptorProto /
        // ServiceDescriptorProto in descriptor.proto.
        for (i, m) in file.message_type.iter().enumerate() {
            check_message(m, vec![4, i as i32], &mut check);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            check_enum(e, vec![5, i as i32], &mut check);
        }
        for (i, s) in file.service.iter().enumerate() {
            check(vec![6, i as i32], format!("service {}", s.name()));
            for (j, m) in s.method.iter().enumerate() {
                check(vec![6, i as i32, 2, j as i32], format!("rpc {}", m.name()));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

fn check_message(
    m: &prost_types::DescriptorProto,
    path: Vec<i32>,
    check: &mut impl FnMut(Vec<i32>, String),
) {
    if m.options.as_ref().is_some_and(|o| o.map_entry()) {
        return; // synthesized for a map field
    }
    check(path.clone(), format!("message {}", m.name()));
    let sub = |tag: i32, i: usize| {
        let mut p = path.clone();
        p.extend([tag, i as i32]);
        p
    };
    for (i, f) in m.field.iter().enumerate() {
        check(sub(2, i), format!("field {}.{}", m.name(), f.name()));
    }
    for (i, n) in m.nested_type.iter().enumerate() {
        check_message(n, sub(3, i), check);
    }
    for (i, e) in m.enum_type.iter().enumerate() {
        check_enum(e, sub(4, i), check);
    }
    for (i, o) in m.oneof_decl.iter().enumerate() {
        // proto3 `optional` fields get a synthetic oneof named `_<field>`; it has no comment.
        if !o.name().starts_with('_') {
            check(sub(8, i), format!("oneof {}.{}", m.name(), o.name()));
        }
    }
}

fn check_enum(
    e: &prost_types::EnumDescriptorProto,
    path: Vec<i32>,
    check: &mut impl FnMut(Vec<i32>, String),
) {
    let first = &e.value[0];
    assert_eq!(first.number(), 0, "{}", e.name());
    assert!(first.name().ends_with("_UNSPECIFIED"), "{}", e.name());
    check(path.clone(), format!("enum {}", e.name()));
    for (i, v) in e.value.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        check(p, format!("enum value {}", v.name()));
    }
}

#[test]
fn clients_and_servers_are_generated() {
    type _QueryClient = v1::mesh_query_client::MeshQueryClient<tonic::transport::Channel>;
    type _RulesClient = v1::rule_admin_client::RuleAdminClient<tonic::transport::Channel>;
    type _AccessClient =
        v1::access_decision_client::AccessDecisionClient<tonic::transport::Channel>;
    fn _servers<Q, R, A>(q: Q, r: R, a: A)
    where
        Q: v1::mesh_query_server::MeshQuery,
        R: v1::rule_admin_server::RuleAdmin,
        A: v1::access_decision_server::AccessDecision,
    {
        let _ = v1::mesh_query_server::MeshQueryServer::new(q);
        let _ = v1::rule_admin_server::RuleAdminServer::new(r);
        let _ = v1::access_decision_server::AccessDecisionServer::new(a);
    }
}
