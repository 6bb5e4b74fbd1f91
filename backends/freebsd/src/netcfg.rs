//! The daemon side of a sandbox's network on FreeBSD, a thin executor of
//! [`crate::plan::network`] (which decides everything, and says where IP
//! restriction happens): the plan's [`Actor::Daemon`](crate::plan::Actor)
//! steps, run by `Backend::prepare` before the supervisor starts, and
//! their removal by `Backend::cleanup`.
//!
//! Aliases and pf rules are made with ifconfig(8) and pfctl(8), whose
//! interfaces are stable (the `SIOCAIFADDR_IN6` and `DIOCX*` ioctls are
//! not something to hand-build untested). Everything done is recorded in
//! `<sandbox dir>/hostnet.json` before or right after it is done, so
//! cleanup removes exactly what the daemon added, by the sandbox id alone.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::plan::network::{self, HOST_NET_RECORD, HostNetOps, HostNetRecord};
use crate::plan::{self, HostAlias, IFCONFIG, JailPlan, JailStep, PFCTL, ROUTE};

/// A host network step that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    /// A command could not be run, or failed.
    #[error("{step}: {program} {}: {message}", .args.join(" "))]
    Command {
        /// The step.
        step: &'static str,
        /// The program.
        program: &'static str,
        /// Its arguments.
        args: Vec<String>,
        /// Its stderr, or why it did not run.
        message: String,
    },
    /// An address the sandbox needs is missing or taken.
    #[error("{step}: {address}: {why}")]
    Address {
        /// The step.
        step: &'static str,
        /// The address.
        address: IpAddr,
        /// What is wrong.
        why: String,
    },
    /// Undoing a sandbox's host network: every independent part was
    /// tried; these failed, and stay recorded for the next attempt.
    #[error("{}", .0.join("; "))]
    Cleanup(Vec<String>),
    /// The plan gave the daemon a step that is not the daemon's to run.
    #[error("prepare: {0} is not a daemon step")]
    UnexpectedStep(String),
    /// Reading or writing the record.
    #[error("{step} {}: {source}", .path.display())]
    Record {
        /// The step.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Runs `program args`, feeding `stdin`; Ok(stdout) on exit status 0.
fn run(
    step: &'static str,
    program: &'static str,
    args: &[String],
    stdin: Option<&str>,
) -> Result<String, NetError> {
    let err = |message: String| NetError::Command {
        step,
        program,
        args: args.to_vec(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| err(format!("writing stdin: {e}")))?;
        // Dropping the pipe closes it: the program sees EOF.
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether any host interface holds `address` (getifaddrs(3)).
pub(crate) fn address_present(address: IpAddr) -> Result<bool, nix::errno::Errno> {
    Ok(nix::ifaddrs::getifaddrs()?.any(|ifa| {
        let Some(a) = ifa.address else { return false };
        match address {
            IpAddr::V4(v4) => a.as_sockaddr_in().map(|s| s.ip()) == Some(v4),
            IpAddr::V6(v6) => a.as_sockaddr_in6().map(|s| s.ip()) == Some(v6),
        }
    }))
}

/// Whether the host has an interface called `name`.
pub(crate) fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// pf is enabled and pf.conf hooks the sandboxd anchors.
pub(crate) fn pf_anchors() -> bool {
    let show = |what: &str| run("probe pf", PFCTL, &["-s".to_owned(), what.to_owned()], None);
    show("info").is_ok_and(|t| network::pf_enabled(&t))
        && show("nat").is_ok_and(|t| network::pf_has_anchors(&t))
}

/// The interface of the IPv4 default route.
pub(crate) fn egress_interface() -> Option<String> {
    let args = ["-n", "get", "-inet", "default"].map(str::to_owned);
    run("probe default route", ROUTE, &args, None)
        .ok()
        .and_then(|t| network::route_interface(&t))
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join(HOST_NET_RECORD)
}

fn read_record(dir: &Path) -> Result<HostNetRecord, NetError> {
    let path = record_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| NetError::Record {
            step: "read network record",
            path,
            source: e.into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostNetRecord::default()),
        Err(source) => Err(NetError::Record {
            step: "read network record",
            path,
            source,
        }),
    }
}

/// Writes the record atomically (temp file, fsync, rename).
fn write_record(dir: &Path, record: &HostNetRecord) -> Result<(), NetError> {
    let path = record_path(dir);
    let tmp = dir.join(format!("{HOST_NET_RECORD}.tmp"));
    let err = |source: std::io::Error| NetError::Record {
        step: "write network record",
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec(record).map_err(|e| err(e.into()))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// Runs the plan's daemon steps: checks pre-configured addresses, adds the
/// aliases (RESTRICTED's and the LOOPBACK lo0 alias), loads the pf rules. On error, what was done is in the record,
/// and the caller's `cleanup` removes it.
pub(crate) fn prepare(plan: &JailPlan) -> Result<(), NetError> {
    let net = &plan.host_net;
    let dir = plan.sandbox_dir();
    for step in plan::steps_for(&plan.steps, plan::Executor::Prepare) {
        match step {
            JailStep::CheckAddresses => {
                for a in &net.present {
                    let here = address_present(*a).map_err(|e| NetError::Address {
                        step: "check addresses",
                        address: *a,
                        why: format!("getifaddrs: {e}"),
                    })?;
                    if !here {
                        return Err(NetError::Address {
                            step: "check addresses",
                            address: *a,
                            why: "not configured on any host interface, and the daemon has no alias interface to add it to".to_owned(),
                        });
                    }
                }
            }
            JailStep::AddAliases => {
                let mut record = read_record(dir)?;
                for alias in &net.aliases {
                    add_alias(dir, &mut record, alias)?;
                }
            }
            JailStep::AddLoopbackAlias(a) => {
                let mut record = read_record(dir)?;
                add_alias(dir, &mut record, &network::loopback_host_alias(*a))?;
            }
            JailStep::LoadPfRules => {
                let mut record = read_record(dir)?;
                // Recorded first: a half-loaded anchor is flushed too.
                record.pf_anchor = Some(net.pf_anchor.clone());
                write_record(dir, &record)?;
                run(
                    "load pf rules",
                    PFCTL,
                    &network::pfctl_load_args(&net.pf_anchor),
                    Some(&network::pf_rules_text(&net.pf_rules)),
                )?;
            }
            // steps_for yields only the daemon's steps; anything else is a
            // plan this code was not written for.
            other => return Err(NetError::UnexpectedStep(format!("{other:?}"))),
        }
    }
    Ok(())
}

fn add_alias(dir: &Path, record: &mut HostNetRecord, alias: &HostAlias) -> Result<(), NetError> {
    if record.aliases.contains(alias) {
        return Ok(());
    }
    // An address the host already has is not ours to add, nor later to
    // remove: refuse rather than share it.
    let present = address_present(alias.address).map_err(|e| NetError::Address {
        step: "add alias",
        address: alias.address,
        why: format!("getifaddrs: {e}"),
    })?;
    if present {
        return Err(NetError::Address {
            step: "add alias",
            address: alias.address,
            why: "already configured on the host (by the host, or left by a sandbox whose cleanup did not run)".to_owned(),
        });
    }
    run(
        "add alias",
        IFCONFIG,
        &network::ifconfig_alias_args(alias, true),
        None,
    )?;
    record.aliases.push(alias.clone());
    write_record(dir, record)
}

/// The host as [`network::undo_host_net`] sees it: ifconfig(8), pfctl(8),
/// getifaddrs(3) and the record file in the sandbox directory.
struct Host<'a> {
    dir: &'a Path,
}

impl HostNetOps for Host<'_> {
    fn run(&mut self, step: &'static str, program: &str, args: &[String]) -> Result<(), String> {
        let program = match program {
            IFCONFIG => IFCONFIG,
            PFCTL => PFCTL,
            other => return Err(format!("{step}: {other}: not a program cleanup runs")),
        };
        run(step, program, args, None)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn address_present(&mut self, address: IpAddr) -> bool {
        address_present(address).unwrap_or(true)
    }

    fn save(&mut self, record: &HostNetRecord) -> Result<(), String> {
        write_record(self.dir, record).map_err(|e| e.to_string())
    }
}

/// Removes what [`prepare`] recorded for the sandbox in `dir`: flushes its
/// pf anchor and removes its aliases, each tried whatever failed before it
/// (they are independent), then the record, once nothing is left in it.
/// Idempotent. With `anchor` (the id's anchor, on a host with pf), the
/// anchor is flushed even without a record, and a failure to do so is
/// ignored then. Err lists every part that failed; those stay recorded.
pub(crate) fn cleanup(dir: &Path, anchor: Option<&str>) -> Result<(), NetError> {
    let record = read_record(dir)?;
    let (left, errors) = network::undo_host_net(record, anchor, &mut Host { dir });
    if !errors.is_empty() {
        return Err(NetError::Cleanup(errors));
    }
    // No error: everything in it was undone.
    debug_assert_eq!(left, HostNetRecord::default());
    match std::fs::remove_file(record_path(dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::Record {
            step: "remove network record",
            path: record_path(dir),
            source,
        }),
    }
}
