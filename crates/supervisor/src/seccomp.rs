//! The default seccomp filter every Linux payload gets (a deny list in the
//! spirit of Docker's default profile): system calls that reach kernel state
//! no sandbox should touch (io_uring among them), or that create new
//! namespaces from inside, fail with EPERM; clone3 fails with ENOSYS so libc
//! falls back to clone, whose flags the filter can inspect, and so does every
//! call of the x32 ABI, which would otherwise go around the list. It is one BPF program (each installed
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
/// libc use clone instead, whose flags the deny list checks. On x86_64 the
/// x32 ABI's system calls (the same numbers with bit 30 set, under the same
/// `AUDIT_ARCH_X86_64`) get ENOSYS too, as from a kernel built without
/// x32: the deny list compares plain numbers, so on a kernel with
/// CONFIG_X86_X32_ABI they would otherwise be a way around every entry of
/// it (libseccomp refuses them likewise). These few instructions go in
/// front of the deny list (seccompiler compiles one action per filter);
/// every other system call, and one of another architecture (which the
/// deny list's own check then refuses), falls through to it.
fn clone3_enosys(audit_arch: u32) -> Vec<sock_filter> {
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    // __X32_SYSCALL_BIT of asm/unistd.h.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let op = |code: u32| u16::try_from(code).unwrap_or(u16::MAX);
    let load = |k: u32| sock_filter {
        code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |test: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: op(libc::BPF_JMP | test | libc::BPF_K),
        jt,
        jf,
        k,
    };
    let enosys = sock_filter {
        code: op(libc::BPF_RET | libc::BPF_K),
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap_or(u32::MAX),
    };
    // SYS_clone3 is 435 on both architectures (fits in u32).
    let clone3 = u32::try_from(libc::SYS_clone3).unwrap_or(u32::MAX);
    if audit_arch == AUDIT_ARCH_X86_64 {
        vec![
            load(ARCH),
            // Another architecture: on to the deny list (instruction 6).
            jump(libc::BPF_JEQ, audit_arch, 0, 4),
            load(NR),
            // x32: ENOSYS (instruction 5).
            jump(libc::BPF_JGE, X32_SYSCALL_BIT, 1, 0),
            jump(libc::BPF_JEQ, clone3, 0, 1),
            enosys,
        ]
    } else {
        vec![
            load(ARCH),
            jump(libc::BPF_JEQ, audit_arch, 0, 3),
            load(NR),
            jump(libc::BPF_JEQ, clone3, 0, 1),
            enosys,
        ]
    }
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

    /// Runs `program` as the kernel would for one system call (the classic
    /// BPF subset seccompiler and [`super::clone3_enosys`] emit) and returns
    /// the action word.
    fn evaluate(program: &[super::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        // struct seccomp_data: nr, arch, instruction_pointer, args[6].
        let load = |k: u32| -> u32 {
            match k {
                0 => nr,
                4 => arch,
                16..=63 => {
                    let arg = args[((k - 16) / 8) as usize];
                    if (k - 16) % 8 == 0 {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                other => panic!("load of seccomp_data offset {other}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            let code = u32::from(insn.code);
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => acc = load(insn.k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= insn.k,
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += insn.k as usize,
                c => {
                    let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                        x if x == libc::BPF_JEQ => acc == insn.k,
                        x if x == libc::BPF_JGT => acc > insn.k,
                        x if x == libc::BPF_JGE => acc >= insn.k,
                        x if x == libc::BPF_JSET => acc & insn.k != 0,
                        _ => panic!("unexpected BPF opcode {c:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
            }
        }
    }

    /// What the default filter answers, system call by system call: the
    /// deny list, clone3, namespace flags, another architecture, and the
    /// x32 ABI (x86_64's numbers with bit 30 set, under the same
    /// AUDIT_ARCH_X86_64), which must not be a way around the list on a
    /// kernel built with CONFIG_X86_X32_ABI.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_filter_answers_each_system_call_as_intended() {
        const X32: u32 = 0x4000_0000;
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
        let nr = |n: i64| u32::try_from(n).expect("syscall number");
        let p = super::default_filter().expect("filter");
        let x86_64 = super::AUDIT_ARCH_X86_64;
        let newuser = libc::CLONE_NEWUSER as u64;
        let cases: &[(&str, u32, u32, u64, u32)] = &[
            (
                "getpid",
                x86_64,
                nr(libc::SYS_getpid),
                0,
                libc::SECCOMP_RET_ALLOW,
            ),
            ("mount", x86_64, nr(libc::SYS_mount), 0, errno(libc::EPERM)),
            ("setns", x86_64, nr(libc::SYS_setns), 0, errno(libc::EPERM)),
            (
                "io_uring_setup",
                x86_64,
                nr(libc::SYS_io_uring_setup),
                0,
                errno(libc::EPERM),
            ),
            (
                "clone3",
                x86_64,
                nr(libc::SYS_clone3),
                0,
                errno(libc::ENOSYS),
            ),
            (
                "clone, no flags",
                x86_64,
                nr(libc::SYS_clone),
                0,
                libc::SECCOMP_RET_ALLOW,
            ),
            (
                "clone NEWUSER",
                x86_64,
                nr(libc::SYS_clone),
                newuser,
                errno(libc::EPERM),
            ),
            (
                "unshare NEWUSER",
                x86_64,
                nr(libc::SYS_unshare),
                newuser,
                errno(libc::EPERM),
            ),
            (
                "x32 mount",
                x86_64,
                X32 | nr(libc::SYS_mount),
                0,
                errno(libc::ENOSYS),
            ),
            ("x32 keyctl", x86_64, X32 | 250, 0, errno(libc::ENOSYS)),
            (
                "x32 clone3",
                x86_64,
                X32 | nr(libc::SYS_clone3),
                0,
                errno(libc::ENOSYS),
            ),
            (
                "x32 getpid",
                x86_64,
                X32 | nr(libc::SYS_getpid),
                0,
                errno(libc::ENOSYS),
            ),
            (
                "i386 getpid",
                AUDIT_ARCH_I386,
                20,
                0,
                libc::SECCOMP_RET_KILL_PROCESS,
            ),
        ];
        for (what, arch, number, arg0, want) in cases {
            let got = evaluate(&p, *arch, *number, [*arg0, 0, 0, 0, 0, 0]);
            assert_eq!(got, *want, "{what}: got {got:#x}, want {want:#x}");
        }
    }

    /// One program: the clone3 (and x32) check, then the deny list, which
    /// starts with its own architecture check; every jump out of the check
    /// lands on it or on the check's ENOSYS.
    #[test]
    fn one_program_the_clone3_check_then_the_deny_list() {
        let p = super::default_filter().expect("filter");
        for arch in [super::AUDIT_ARCH_X86_64, super::AUDIT_ARCH_AARCH64] {
            let prefix = super::clone3_enosys(arch);
            let ret = prefix.len() - 1;
            assert_eq!(prefix[ret].k, libc::SECCOMP_RET_ERRNO | 38, "ENOSYS last");
            for (at, insn) in prefix.iter().enumerate() {
                if u32::from(insn.code) & 0x07 == libc::BPF_JMP {
                    for target in [at + 1 + usize::from(insn.jt), at + 1 + usize::from(insn.jf)] {
                        assert!(target == ret || target == prefix.len() || target == at + 1);
                    }
                }
            }
        }
        let prefix = super::clone3_enosys(super::AUDIT_ARCH_X86_64);
        assert!(p.len() > prefix.len() + 10, "{}", p.len());
        assert_eq!(p[..prefix.len()], prefix[..]);
        assert_eq!(
            p[prefix.len()],
            prefix[0],
            "the deny list starts with its arch load"
        );
    }
}
