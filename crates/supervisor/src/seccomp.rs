//! The default seccomp filter every Linux payload gets (a deny list in the
//! spirit of Docker's default profile): system calls that reach kernel state
//! no sandbox should touch (io_uring among them), or that create new
//! namespaces from inside, fail with EPERM; clone3 fails with ENOSYS so libc falls back to clone, whose
//! flags the filter can inspect. It is installed after no_new_privs, right
//! before exec, and stays for the process and its descendants.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// System calls refused outright.
const DENIED: &[i64] = &[
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_open_by_handle_at,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_setns,
    libc::SYS_acct,
    libc::SYS_quotactl,
    // io_uring: a large kernel surface with a history of privilege
    // escalations, whose operations bypass this filter (runc, Docker and
    // Google's production kernels refuse it).
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Builds the filters for this architecture: the EPERM deny list, and
/// clone3 -> ENOSYS (the kernel runs every installed filter and the most
/// restrictive answer wins).
pub fn default_filters() -> Result<Vec<BpfProgram>, String> {
    let arch = if cfg!(target_arch = "x86_64") {
        seccompiler::TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        seccompiler::TargetArch::aarch64
    } else {
        return Err("no seccomp filter for this architecture".into());
    };
    let err = |e: seccompiler::BackendError| e.to_string();
    // unshare(flags) / clone(flags, ...) with CLONE_NEWUSER: a new user
    // namespace from inside would hand the payload capabilities over fresh
    // namespaces and a large kernel surface.
    let newuser = libc::CLONE_NEWUSER as u64;
    let flag_rule = || -> Result<Vec<SeccompRule>, String> {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(newuser),
            newuser,
        )
        .map_err(err)?;
        Ok(vec![SeccompRule::new(vec![cond]).map_err(err)?])
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    rules.insert(libc::SYS_unshare, flag_rule()?);
    rules.insert(libc::SYS_clone, flag_rule()?);
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let program: BpfProgram = eperm
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    // clone3 takes its flags in a struct the filter cannot read: ENOSYS
    // makes libc use clone instead.
    let enosys = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    let clone3: BpfProgram = enosys
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    Ok(vec![program, clone3])
}

/// The default filters, compiled once per supervisor (every fork inherits
/// them) instead of once per process.
static DEFAULT: std::sync::OnceLock<Result<Vec<BpfProgram>, String>> = std::sync::OnceLock::new();

/// Compiles the default filters now, so forked children only install them.
pub fn prepare_default() {
    DEFAULT.get_or_init(default_filters);
}

/// Installs the default filters on the calling thread (no_new_privs must be
/// set).
pub fn install_default() -> Result<(), String> {
    let filters = DEFAULT
        .get_or_init(default_filters)
        .as_ref()
        .map_err(Clone::clone)?;
    filters
        .iter()
        .try_for_each(|f| seccompiler::apply_filter(f).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_builds() {
        let p = super::default_filters().expect("filters");
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|f| !f.is_empty()));
    }
}
