//! The default seccomp filter every Linux payload gets (a deny list in the
//! spirit of Docker's default profile): system calls that reach kernel state
//! no sandbox should touch (io_uring among them), or that create new
//! namespaces from inside, fail with EPERM; clone3 fails with ENOSYS so libc falls back to clone, whose
//! flags the filter can inspect. It is one BPF program (each installed
//! filter is compiled by the kernel's JIT, with a TLB flush on every CPU,
//! and run on every system call), installed after no_new_privs, right
//! before exec, and it stays for the process and its descendants.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
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

/// `AUDIT_ARCH_*` of linux/audit.h (`EM_*` | 64-bit | little-endian), which
/// `seccomp_data.arch` holds.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// Builds the filter for this architecture: clone3 -> ENOSYS, then the
/// EPERM deny list.
pub fn default_filter() -> Result<BpfProgram, String> {
    let (arch, audit_arch) = if cfg!(target_arch = "x86_64") {
        (seccompiler::TargetArch::x86_64, AUDIT_ARCH_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        (seccompiler::TargetArch::aarch64, AUDIT_ARCH_AARCH64)
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
    let deny_list: BpfProgram = eperm
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut program = clone3_enosys(audit_arch);
    program.extend(deny_list);
    Ok(program)
}

/// clone3 takes its flags in a struct the filter cannot read: ENOSYS makes
/// libc use clone instead, whose flags the deny list checks. Five
/// instructions in front of the deny list (seccompiler compiles one action
/// per filter); every other system call, and one of another architecture
/// (which the deny list's own check then refuses), falls through to it.
fn clone3_enosys(audit_arch: u32) -> Vec<sock_filter> {
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let op = |code: u32| u16::try_from(code).unwrap_or(u16::MAX);
    let load = |k: u32| sock_filter {
        code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
        jt: 0,
        jf: 0,
        k,
    };
    // Falls through when equal, else skips `skip` instructions.
    let unless_eq = |k: u32, skip: u8| sock_filter {
        code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
        jt: 0,
        jf: skip,
        k,
    };
    // SYS_clone3 is 435 on both architectures (fits in u32).
    let clone3 = u32::try_from(libc::SYS_clone3).unwrap_or(u32::MAX);
    vec![
        load(ARCH),
        unless_eq(audit_arch, 3),
        load(NR),
        unless_eq(clone3, 1),
        sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap_or(u32::MAX),
        },
    ]
}

/// The default filter, compiled once per supervisor (every fork inherits
/// it) instead of once per process.
static DEFAULT: std::sync::OnceLock<Result<BpfProgram, String>> = std::sync::OnceLock::new();

/// Compiles the default filter now, so forked children only install it.
pub fn prepare_default() {
    DEFAULT.get_or_init(default_filter);
}

/// Installs the default filter on the calling thread (no_new_privs must be
/// set).
pub fn install_default() -> Result<(), String> {
    let filter = DEFAULT
        .get_or_init(default_filter)
        .as_ref()
        .map_err(Clone::clone)?;
    seccompiler::apply_filter(filter).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    /// What the supervisor does before it forks any payload: the program is
    /// then there for every fork to install, compiled once.
    #[test]
    fn prepare_compiles_the_filter_once_for_the_forks() {
        super::prepare_default();
        let p = super::DEFAULT
            .get()
            .expect("compiled")
            .as_ref()
            .expect("ok");
        assert_eq!(p, &super::default_filter().expect("filter"));
    }

    /// One program: the clone3 check, then the deny list, which starts
    /// with its own architecture check; the check's jumps land on it.
    #[test]
    fn one_program_the_clone3_check_then_the_deny_list() {
        let p = super::default_filter().expect("filter");
        let prefix = super::clone3_enosys(super::AUDIT_ARCH_X86_64);
        assert_eq!(prefix.len(), 5);
        assert!(p.len() > prefix.len() + 10, "{}", p.len());
        // Both conditional jumps skip to instruction 5, the deny list's
        // first (a load of seccomp_data.arch, as ours).
        assert_eq!(1 + 1 + usize::from(prefix[1].jf), 5);
        assert_eq!(3 + 1 + usize::from(prefix[3].jf), 5);
        assert_eq!(p[5], prefix[0], "the deny list starts with its arch load");
        assert_eq!(prefix[4].k, libc::SECCOMP_RET_ERRNO | 38);
    }
}
