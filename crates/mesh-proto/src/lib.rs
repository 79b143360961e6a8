//! Identity Mesh wire contract: the Rust code generated from `proto/identitymesh/v1/*.proto`
//! and the conversions between it and the domain types of `mesh-model`.
//!
//! Position in the pipeline: `mesh-model <- mesh-proto <- mesh-bus`, and the gRPC services
//! (query, risk) and `meshctl`. The pure crates never depend on this one; only adapters turn
//! domain events into bytes.
//!
//! # What is here
//!
//! - [`v1`]: every message, enum and service of package `identitymesh.v1`, generated at build
//!   time by protox (a pure-Rust protobuf compiler: no system `protoc`) and tonic-prost-build.
//!   gRPC clients are `v1::mesh_query_client::MeshQueryClient`,
//!   `v1::rule_admin_client::RuleAdminClient` and
//!   `v1::access_decision_client::AccessDecisionClient`; servers are the `*_server` modules
//!   (`v1::mesh_query_server::{MeshQuery, MeshQueryServer}`, ...). Every message implements
//!   `prost::Name`; map fields are `BTreeMap`s so that encoding is deterministic.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set of the package, for
//!   `tonic-reflection`.
//! - Conversions: `From<mesh_model::X> for v1::X` (infallible) and
//!   `TryFrom<v1::X> for mesh_model::X` (checks every field) for every event and its parts,
//!   and [`attributes_to_pb`] / [`attributes_from_pb`] for attribute maps. Failures are a
//!   [`ConversionError`] naming the field path, such as
//!   `ChangeEvent.object.connector: connector id "A.B" has an invalid character 'A': ...`.
//! - [`WireEvent`] on the domain events (`into_wire`, `from_wire`, `SCHEMA`) and
//!   [`MeshMessage`] on the generated event messages (`SCHEMA`): the `Mesh-Schema` header.
//!
//! # Evolving the contract
//!
//! Messages sit in JetStream streams for days and services are upgraded one at a time, so a
//! new consumer reads old messages and an old consumer reads new ones. Therefore:
//!
//! - **Field numbers are never reused** and never change type. To remove a field, delete it
//!   and add `reserved <number>; reserved "<name>";` to its message.
//! - Add fields, enum values, oneof members, messages and RPCs freely. A new field must be
//!   optional in meaning: an old producer does not send it. Give it a default that keeps the
//!   old behaviour when absent, and map that in the conversion here.
//! - Decoding refuses an enum value or oneof member it does not know (and `_UNSPECIFIED`), so a
//!   new enum value must be deployed to consumers before producers send it.
//! - Renaming a field is wire compatible but changes generated code and JSON; renaming a
//!   message changes its `Mesh-Schema`. Do neither without a migration note.
//! - Anything that cannot follow these rules is a new package, `identitymesh.v2`, published
//!   alongside v1 until v1's streams are drained.
//!
//! # Fixtures
//!
//! `tests/fixtures/<Message>[.<variant>].bin` holds an encoded message per event type (and per
//! oneof member where it matters), built from fixed, realistic domain values in
//! `tests/fixtures.rs`. The test decodes each committed file and asserts that it equals the
//! expected domain value, so a change that would misread messages already in the streams fails. The normal test never writes them; `UPDATE_FIXTURES=1 cargo
//! test -p mesh-proto --test fixtures` (re)writes them. Regenerate an existing fixture only for
//! a deliberate, documented break (a new package); when the contract grows, keep the old file
//! and let its expected value show what an old message decodes to, and add a new fixture
//! (`<Message>.<variant>.bin`) that exercises the new fields.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod convert;
mod schema;

pub use convert::{
    ConversionError, attributes_from_pb, attributes_to_pb, timestamp_to_pb, timestamp_to_time,
};
pub use schema::{DecodeError, EVENT_SCHEMAS, MeshMessage, WireEvent};

/// Package `identitymesh.v1`: messages, enums, and gRPC clients and servers, generated from
/// `proto/identitymesh/v1`.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/identitymesh.v1.rs"));
}

/// The encoded `google.protobuf.FileDescriptorSet` of `identitymesh.v1` (with its imports),
/// for `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/identitymesh_v1_descriptor.bin"));
