//! The native plan of a spec, as plain data for display (PlanSandbox). Each
//! backend's pure `plan.rs` computes its own executable plan and renders it
//! into this shape.

use serde::{Deserialize, Serialize};

use crate::capability::{BackendKind, IsolationReport};

/// One ordered operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Operation, e.g. "chroot".
    pub op: String,
    /// Arguments as text.
    pub args: Vec<String>,
    /// Why.
    pub why: String,
}

impl Step {
    /// Builds a step.
    pub fn new(op: &str, args: &[&dyn std::fmt::Display], why: &str) -> Self {
        Self {
            op: op.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            why: why.to_owned(),
        }
    }
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMount {
    /// Source.
    pub source: String,
    /// Target.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Options.
    pub options: Vec<String>,
}

/// The native translation, per backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NativePlan {
    /// chroot steps.
    Chroot {
        /// Ordered steps.
        steps: Vec<Step>,
        /// Mounts building the root.
        mounts: Vec<PlanMount>,
    },
    /// Linux namespaces.
    Linux {
        /// Clone flags.
        clone_flags: Vec<String>,
        /// Mounts in order.
        mounts: Vec<PlanMount>,
        /// cgroup file writes (file, value).
        cgroup_writes: Vec<(String, String)>,
        /// Other steps.
        steps: Vec<Step>,
    },
    /// FreeBSD jail.
    Jail {
        /// jail_set parameters (name, value).
        params: Vec<(String, String)>,
        /// Mounts.
        mounts: Vec<PlanMount>,
        /// rctl rules.
        rctl_rules: Vec<String>,
        /// Other steps.
        steps: Vec<Step>,
    },
}

impl NativePlan {
    /// The translation of a spec `backend` cannot plan at all: nothing.
    pub fn empty(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Chroot => Self::Chroot {
                steps: Vec::new(),
                mounts: Vec::new(),
            },
            BackendKind::Linux => Self::Linux {
                clone_flags: Vec::new(),
                mounts: Vec::new(),
                cgroup_writes: Vec::new(),
                steps: Vec::new(),
            },
            BackendKind::Freebsd => Self::Jail {
                params: Vec::new(),
                mounts: Vec::new(),
                rctl_rules: Vec::new(),
                steps: Vec::new(),
            },
        }
    }
}

/// A plan: the report, refusals and native steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Effective isolation.
    pub report: IsolationReport,
    /// REQUIRED properties the backend cannot give.
    pub refusals: Vec<String>,
    /// Native translation.
    pub native: NativePlan,
}
