//! Identity Mesh rule engine: the exact semantics of DESIGN.md §3 as pure functions.
//!
//! Every stage takes a snapshot of what it needs and `now`, and returns its outcome plus an
//! explanation (a [`trace::Trace`]) that lineage, audit and `meshctl simulate` print. The
//! services load the snapshot from PostgreSQL, call the stage, persist the outcome; the
//! simulator (`mesh-sim`) does the same in memory. The engine reads no clock, does no I/O and
//! uses ordered collections wherever order is visible, so the same input always gives the
//! same output.
//!
//! Pipeline order (docs/engine.md): [`load`] rules once; per change event [`correlate`]; per
//! joined change [`flow`] then [`resolve::compose_and_resolve`] and [`lifecycle`]; per mesh
//! object change [`project`] and [`disconnectors::retry_queries`].
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod correlate;
pub mod disconnectors;
pub mod flow;
pub mod lifecycle;
pub mod lineage;
pub mod load;
pub mod port;
pub mod project;
pub mod resolve;
pub mod risk;
pub mod rules;
pub mod trace;
pub mod yaml;

pub use correlate::{CorrelateInput, Correlation, NewMeshObject, correlate, join_queries};
pub use disconnectors::{RetryQuery, retry_queries};
pub use flow::{Contribution, FlowOutcome, Source, TransformError, flow};
pub use lifecycle::{LifecycleDecision, Link, lifecycle};
pub use lineage::LineageMap;
pub use load::{LoadError, Problem, SourceFile, Validation, load, validate};
pub use port::{
    DisconnectorDirectory, Found, JoinLookups, MeshDirectory, join_key, join_key_ref, join_key_text,
};
pub use project::{HeldTargets, ProjectInput, Projection, TargetState, project};
pub use resolve::{
    InPlaceUpdate, Lineage, MeshObjectState, MeshObjectUpdate, Override, Reresolved, StoredSource,
    UpdateInput, UpdateSources, resolve_from_sources, sort_in_resolution_order, update_mesh_object,
    update_mesh_object_in_place,
};
pub use rules::RuleSet;
pub use trace::Trace;
