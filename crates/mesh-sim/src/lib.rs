//! Identity Mesh simulator: an in-memory world that runs the pure engine end to end.
//!
//! [`World`] holds connector objects, mesh objects and target states in ordered maps,
//! implements the engine's search ports, and runs every change through correlate → flow,
//! compose, resolve and lifecycle → project → disconnector retries, in the order the services
//! do. It is deterministic: the same rules and events give the same report, byte for byte.
//! `meshctl simulate`, `meshd demo` ([`demo::run`]), the scenario goldens and the benchmark all
//! run through it. Only [`files`] touches the file system, with `std::fs`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod data;
pub mod demo;
pub mod files;
pub mod report;
pub mod scenario;
pub mod synthetic;
pub mod world;

pub use data::{TimedEvent, parse_events, parse_records};
pub use report::Report;
pub use scenario::simulate;
pub use world::{SimEvent, World, WorldError};
