//! sandboxd's platform-neutral core.
//!
//! Pure code that compiles on every OS: the spec model ([`spec`]), validation
//! that reports every problem at once and produces the [`ValidatedSpec`] that
//! backends accept ([`validate`]), capability-matrix and isolation-report
//! types ([`capability`]), network leases ([`net`]), the [`Backend`] trait,
//! the [`Planner`] trait whose generic `plan()`/`build()` every backend's
//! pure plan module uses ([`planner`]), the display form of native plans
//! ([`plan`]), the daemon ↔ supervisor protocol ([`wire`]), the
//! verification rule ([`verify`]), the atomic state store ([`store`]) and the
//! mountinfo reading behind "nothing is mounted below" ([`mountinfo`]). No
//! tokio, no tonic, no `unsafe`.

#![forbid(unsafe_code)]

pub mod backend;
pub mod capability;
pub mod fault;
pub mod logs;
pub mod mountinfo;
pub mod net;
pub mod oci;
pub mod plan;
pub mod planner;
pub mod spec;
pub mod store;
pub mod validate;
pub mod verify;
pub mod weaken;
pub mod wire;

pub use backend::{Backend, BackendError, Prepared, SandboxPaths, Usage};
pub use capability::{BackendKind, Capabilities, Enforcement, IsolationReport, Level, Property};
pub use plan::{NativePlan, Plan};
pub use planner::{BuildError, Planner};
pub use validate::{Policy, ValidatedProcess, ValidatedSpec, ValidationError};
