//! The planning glue every backend shares, written once: a backend's pure
//! plan module implements [`Planner`] (its capability rows, how it builds
//! its executable plan, how that plan renders for display) and gets the
//! rest from here — the capability matrix, the refusal rule before an
//! executable plan is handed out ([`Planner::build`]), the display plan
//! with its refusals ([`Planner::plan`]) and the mapping of its errors to
//! [`BackendError`].
//!
//! The one rule: a spec that asks for a REQUIRED property the rows do not
//! satisfy never yields an executable plan, so a caller cannot run a
//! weaker sandbox by forgetting to check; PlanSandbox still shows what the
//! host would run with the unavailable properties left out.

use crate::backend::{BackendError, SandboxPaths};
use crate::capability::{self, BackendKind, Capabilities, Enforcement};
use crate::plan::{NativePlan, Plan};
use crate::validate::ValidatedSpec;

/// Why no executable plan was handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError<E> {
    /// REQUIRED properties this host cannot give ("property: why").
    #[error("the {} backend cannot enforce REQUIRED properties: {}", .backend.as_str(), .refusals.join("; "))]
    Refused {
        /// The backend that refused.
        backend: BackendKind,
        /// One line per property.
        refusals: Vec<String>,
    },
    /// The backend cannot plan this spec at all (its own error).
    #[error("{0}")]
    Plan(E),
}

impl<E: std::fmt::Display> From<BuildError<E>> for BackendError {
    fn from(e: BuildError<E>) -> Self {
        match e {
            BuildError::Refused { refusals, .. } => BackendError::Refused(refusals),
            BuildError::Plan(e) => BackendError::Unsupported(e.to_string()),
        }
    }
}

/// A backend's pure planner: host facts in, plans out. Implement the
/// required items; [`capabilities`](Planner::capabilities),
/// [`build`](Planner::build) and [`plan`](Planner::plan) are provided.
pub trait Planner {
    /// Which backend this plans for.
    const KIND: BackendKind;
    /// The executable plan the backend's supervisor runs.
    type Native;
    /// Why a spec cannot be planned at all (as opposed to a refused
    /// property).
    type Error: std::fmt::Display;

    /// What this host enforces in general (GetCapabilities).
    fn matrix(&self) -> Vec<Enforcement>;

    /// What this host enforces for `spec`: the matrix, except where the
    /// spec changes the answer.
    fn rows(&self, spec: &ValidatedSpec) -> Vec<Enforcement>;

    /// The plan without the REQUIRED check: what the runtime would do, with
    /// PREFERRED properties the host cannot give left out.
    fn build_unchecked(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<Self::Native, Self::Error>;

    /// Checks only a plan about to run must pass (say, a lease the daemon
    /// gives only at create time); the display plan skips them.
    fn check_executable(&self, _native: &Self::Native) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The display form of an executable plan.
    fn render(native: &Self::Native) -> NativePlan;

    /// The capability matrix as GetCapabilities reports it; `reason` says
    /// why this backend was selected.
    fn capabilities(&self, reason: &str) -> Capabilities {
        Capabilities {
            backend: Self::KIND,
            reason: reason.to_owned(),
            matrix: self.matrix(),
        }
    }

    /// The executable plan for `spec`, or why there is none: every
    /// REQUIRED property satisfied first, so the result is always safe to
    /// execute.
    fn build(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<Self::Native, BuildError<Self::Error>> {
        let (_, refusals) = capability::assess(Self::KIND, spec, self.rows(spec));
        if !refusals.is_empty() {
            return Err(BuildError::Refused {
                backend: Self::KIND,
                refusals,
            });
        }
        let native = self
            .build_unchecked(spec, sandbox)
            .map_err(BuildError::Plan)?;
        self.check_executable(&native).map_err(BuildError::Plan)?;
        Ok(native)
    }

    /// The display plan (PlanSandbox): the effective report for this spec,
    /// the refusals, and the native translation. A refused spec still shows
    /// the plan the host would run with the unavailable properties left
    /// out; a spec that cannot be planned at all gets the reason as a
    /// refusal and an empty translation.
    fn plan(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.plan_rendered(spec, sandbox, true)
    }

    /// [`Self::plan`] without the display translation (`native` left
    /// empty): the report and the refusals, all a create needs, without
    /// rendering the plan for display (PlanSandbox's), the larger part of
    /// a plan's cost.
    fn assess(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.plan_rendered(spec, sandbox, false)
    }

    /// [`Self::plan`], its translation rendered only if `render`.
    fn plan_rendered(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths, render: bool) -> Plan {
        let (report, mut refusals) = capability::assess(Self::KIND, spec, self.rows(spec));
        let native = match self.build_unchecked(spec, sandbox) {
            Ok(native) if render => Self::render(&native),
            Ok(_) => NativePlan::empty(Self::KIND),
            Err(e) => {
                refusals.push(e.to_string());
                NativePlan::empty(Self::KIND)
            }
        };
        Plan {
            report,
            refusals,
            native,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{Level, Property};
    use crate::plan::Step;
    use crate::spec::{ProcessSpec, Requirement, SandboxSpec};
    use crate::validate::{Policy, validate};

    /// A planner whose host gives the PID property at `pid`, and whose
    /// builds fail with `unplannable` or (executable only) `unleased`.
    struct Fake {
        pid: Level,
        unplannable: bool,
        unleased: bool,
    }

    impl Planner for Fake {
        const KIND: BackendKind = BackendKind::Chroot;
        type Native = Vec<&'static str>;
        type Error = &'static str;

        fn matrix(&self) -> Vec<Enforcement> {
            vec![Enforcement::new(Property::Pid, self.pid, "fake", "")]
        }
        fn rows(&self, _spec: &ValidatedSpec) -> Vec<Enforcement> {
            self.matrix()
        }
        fn build_unchecked(
            &self,
            _spec: &ValidatedSpec,
            sandbox: &SandboxPaths,
        ) -> Result<Self::Native, Self::Error> {
            if self.unplannable {
                return Err("spec.image: cannot plan");
            }
            Ok(vec![
                "chroot",
                if sandbox.id.is_empty() { "?" } else { "id" },
            ])
        }
        fn check_executable(&self, _native: &Self::Native) -> Result<(), Self::Error> {
            if self.unleased {
                return Err("network: no lease");
            }
            Ok(())
        }
        fn render(native: &Self::Native) -> NativePlan {
            NativePlan::Chroot {
                steps: native.iter().map(|op| Step::new(op, &[], "")).collect(),
                mounts: Vec::new(),
            }
        }
    }

    fn spec(pid: Requirement) -> ValidatedSpec {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        s.isolation.pid = pid;
        validate(s, &Policy::default()).expect("valid")
    }

    fn rendered(ops: &[&str]) -> NativePlan {
        NativePlan::Chroot {
            steps: ops.iter().map(|op| Step::new(op, &[], "")).collect(),
            mounts: Vec::new(),
        }
    }

    /// One row of the table below.
    struct Case {
        what: &'static str,
        /// What the host gives the PID property.
        gives: Level,
        /// What the spec asks of it.
        asks: Requirement,
        unplannable: bool,
        unleased: bool,
        /// The display plan's refusals and translation.
        refusals: &'static [&'static str],
        native: NativePlan,
        /// What `build` hands out.
        built: Result<Vec<&'static str>, BuildError<&'static str>>,
    }

    #[test]
    fn plan_and_build_follow_the_rows() {
        use Level::{Enforced, NotEnforced};
        let sandbox = SandboxPaths {
            id: "id".into(),
            ..Default::default()
        };
        const REFUSED: &str = "pid: REQUIRED but the chroot backend gives NotEnforced (fake)";
        let refused = || BuildError::Refused {
            backend: BackendKind::Chroot,
            refusals: vec![REFUSED.to_owned()],
        };
        let cases = [
            Case {
                what: "buildable: the native plan is rendered",
                gives: Enforced,
                asks: Requirement::Required,
                unplannable: false,
                unleased: false,
                refusals: &[],
                native: rendered(&["chroot", "id"]),
                built: Ok(vec!["chroot", "id"]),
            },
            Case {
                what: "PREFERRED and not given: degraded, not refused",
                gives: NotEnforced,
                asks: Requirement::Preferred,
                unplannable: false,
                unleased: false,
                refusals: &[],
                native: rendered(&["chroot", "id"]),
                built: Ok(vec!["chroot", "id"]),
            },
            Case {
                what: "REQUIRED and not given: refused, the partial plan still shown",
                gives: NotEnforced,
                asks: Requirement::Required,
                unplannable: false,
                unleased: false,
                refusals: &[REFUSED],
                native: rendered(&["chroot", "id"]),
                built: Err(refused()),
            },
            Case {
                what: "refused and unplannable: both listed, empty translation",
                gives: NotEnforced,
                asks: Requirement::Required,
                unplannable: true,
                unleased: false,
                refusals: &[REFUSED, "spec.image: cannot plan"],
                native: NativePlan::empty(BackendKind::Chroot),
                built: Err(refused()),
            },
            Case {
                what: "unplannable: the reason is a refusal, empty translation",
                gives: Enforced,
                asks: Requirement::Unspecified,
                unplannable: true,
                unleased: false,
                refusals: &["spec.image: cannot plan"],
                native: NativePlan::empty(BackendKind::Chroot),
                built: Err(BuildError::Plan("spec.image: cannot plan")),
            },
            Case {
                what: "executable-only check: shown, but never handed out",
                gives: Enforced,
                asks: Requirement::Unspecified,
                unplannable: false,
                unleased: true,
                refusals: &[],
                native: rendered(&["chroot", "id"]),
                built: Err(BuildError::Plan("network: no lease")),
            },
        ];
        for c in cases {
            let what = c.what;
            let fake = Fake {
                pid: c.gives,
                unplannable: c.unplannable,
                unleased: c.unleased,
            };
            let s = spec(c.asks);
            let plan = fake.plan(&s, &sandbox);
            // A create's assessment: the same report and refusals, no
            // translation.
            let assessed = fake.assess(&s, &sandbox);
            assert_eq!(assessed.refusals, c.refusals, "{what}");
            assert_eq!(assessed.report, plan.report, "{what}");
            assert_eq!(
                assessed.native,
                NativePlan::empty(BackendKind::Chroot),
                "{what}"
            );
            assert_eq!(plan.refusals, c.refusals, "{what}");
            assert_eq!(plan.native, c.native, "{what}");
            assert_eq!(plan.report.backend, BackendKind::Chroot, "{what}");
            let row = &plan.report.properties[0];
            assert_eq!(row.requested, c.asks, "{what}");
            assert_eq!(
                row.degraded,
                c.asks == Requirement::Preferred && c.gives == NotEnforced,
                "{what}"
            );
            assert_eq!(fake.build(&s, &sandbox), c.built, "{what}");
        }
    }

    #[test]
    fn errors_map_to_backend_errors() {
        let refused = BackendError::from(BuildError::<&str>::Refused {
            backend: BackendKind::Linux,
            refusals: vec!["pid: no".into()],
        });
        assert!(matches!(&refused, BackendError::Refused(r) if r == &["pid: no"]));
        let plan = BackendError::from(BuildError::Plan("rootfs: needs overlayfs"));
        assert_eq!(plan.to_string(), "unsupported: rootfs: needs overlayfs");
        assert_eq!(
            BuildError::<&str>::Refused {
                backend: BackendKind::Freebsd,
                refusals: vec!["a".into(), "b".into()],
            }
            .to_string(),
            "the freebsd backend cannot enforce REQUIRED properties: a; b"
        );
    }

    #[test]
    fn capabilities_are_the_matrix() {
        let fake = Fake {
            pid: Level::BestEffort,
            unplannable: false,
            unleased: false,
        };
        let caps = fake.capabilities("chosen");
        assert_eq!(caps.backend, BackendKind::Chroot);
        assert_eq!(caps.reason, "chosen");
        assert_eq!(caps.matrix, fake.matrix());
    }
}
