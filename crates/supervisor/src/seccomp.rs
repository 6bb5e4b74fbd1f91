//! The default seccomp filter every Linux payload gets (a deny list in the
//! spirit of Docker's default profile): system calls that reach kernel state
//! no sandbox should touch (io_uring among them), or that create new
//! namespaces from inside, fail with EPERM; clone3 fails with ENOSYS so libc
//! falls back to clone, whose flags the filter can inspect, and so does every
//! call of the x32 ABI, which would otherwise go around the list. A call of
//! another architecture kills the process.
//!
//! It is one classic BPF program, built here as a binary search over the
//! system-call numbers rather than a chain of comparisons: installing a
//! filter, the kernel runs it for every system-call number to fill its
//! action cache (with interrupts off, on the path of every exec), and a
//! search walks ~12 instructions per number where a chain walks ~40. It is
//! installed after no_new_privs, right before exec, and it stays for the
//! process and its descendants.

use libc::sock_filter;

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

/// Offsets in `struct seccomp_data`: the number, the architecture, and the
/// low half of the first argument (little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// `__X32_SYSCALL_BIT` of asm/unistd.h: x32 calls are x86_64's numbers
/// with it set, under the same `AUDIT_ARCH_X86_64`.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The longest run of numbers the search compares one by one.
const LEAF: usize = 3;

/// A classic BPF program, as `seccomp(2)` takes it.
pub type Program = Vec<sock_filter>;

/// What the filter does with one system call of its architecture (every
/// other one is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Fails with this errno.
    Errno(i32),
    /// Fails with EPERM when its first argument has `CLONE_NEWUSER`
    /// (unshare, clone): a new user namespace from inside would hand the
    /// payload capabilities over fresh namespaces and a large kernel
    /// surface.
    NewUserDenied,
}

/// The filter's entries, sorted by number.
fn entries() -> Result<Vec<(u32, Action)>, String> {
    let nr = |n: i64| u32::try_from(n).map_err(|_| format!("system call number {n}"));
    let mut all = vec![
        // clone3 takes its flags in a struct the filter cannot read: ENOSYS
        // makes libc use clone instead, whose flags are checked.
        (nr(libc::SYS_clone3)?, Action::Errno(libc::ENOSYS)),
        (nr(libc::SYS_clone)?, Action::NewUserDenied),
        (nr(libc::SYS_unshare)?, Action::NewUserDenied),
    ];
    for n in DENIED {
        all.push((nr(*n)?, Action::Errno(libc::EPERM)));
    }
    all.sort_unstable_by_key(|(n, _)| *n);
    Ok(all)
}

fn op(code: u32) -> u16 {
    // Every BPF opcode fits in 16 bits.
    u16::try_from(code).unwrap_or(u16::MAX)
}

fn load(offset: u32) -> sock_filter {
    sock_filter {
        code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
        jt: 0,
        jf: 0,
        k: offset,
    }
}

/// Compares the accumulator with `k`; skips `jt` instructions if the test
/// holds, `jf` if not.
fn jump(test: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: op(libc::BPF_JMP | test | libc::BPF_K),
        jt,
        jf,
        k,
    }
}

fn ret(action: u32) -> sock_filter {
    sock_filter {
        code: op(libc::BPF_RET | libc::BPF_K),
        jt: 0,
        jf: 0,
        k: action,
    }
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e.unsigned_abs() & libc::SECCOMP_RET_DATA)
}

/// Builds the filter for this architecture.
pub fn default_filter() -> Result<Program, String> {
    let audit_arch = if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        return Err("no seccomp filter for this architecture".into());
    };
    build(audit_arch, &entries()?)
}

/// The program for `audit_arch`: the architecture check, the x32 check on
/// x86_64, then the search over `entries` (sorted by number).
fn build(audit_arch: u32, entries: &[(u32, Action)]) -> Result<Program, String> {
    let mut program = vec![
        load(ARCH),
        jump(libc::BPF_JEQ, audit_arch, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        load(NR),
    ];
    if audit_arch == AUDIT_ARCH_X86_64 {
        program.push(jump(libc::BPF_JGE, X32_SYSCALL_BIT, 0, 1));
        program.push(ret(errno(libc::ENOSYS)));
    }
    search(entries, &mut program)?;
    Ok(program)
}

/// Emits a search over `entries` (sorted by number) that ends in a return
/// on every path: halves split by `nr >= middle`, runs of at most [`LEAF`]
/// compared one by one, then allowed. Jumps only go forward, over the code
/// of the lower half.
fn search(entries: &[(u32, Action)], out: &mut Program) -> Result<(), String> {
    if entries.len() <= LEAF {
        for (nr, action) in entries {
            match action {
                Action::Errno(e) => {
                    out.push(jump(libc::BPF_JEQ, *nr, 0, 1));
                    out.push(ret(errno(*e)));
                }
                Action::NewUserDenied => {
                    out.push(jump(libc::BPF_JEQ, *nr, 0, 4));
                    // The accumulator no longer holds the number: this
                    // block returns on both paths.
                    out.push(load(ARG0_LOW));
                    let newuser = u32::try_from(libc::CLONE_NEWUSER).unwrap_or(u32::MAX);
                    out.push(jump(libc::BPF_JSET, newuser, 0, 1));
                    out.push(ret(errno(libc::EPERM)));
                    out.push(ret(libc::SECCOMP_RET_ALLOW));
                }
            }
        }
        out.push(ret(libc::SECCOMP_RET_ALLOW));
        return Ok(());
    }
    let middle = entries.len() / 2;
    let mut lower = Program::new();
    search(&entries[..middle], &mut lower)?;
    let over = u8::try_from(lower.len()).map_err(|_| {
        format!(
            "the filter's lower half ({} instructions) is too long to jump over",
            lower.len()
        )
    })?;
    out.push(jump(libc::BPF_JGE, entries[middle].0, over, 0));
    out.extend(lower);
    search(&entries[middle..], out)
}

/// The default filter, built once per supervisor (every fork inherits it)
/// instead of once per process.
static DEFAULT: std::sync::OnceLock<Result<Program, String>> = std::sync::OnceLock::new();

/// Builds the default filter now, so forked children only install it.
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
    crate::sys::install_seccomp_filter(filter).map_err(|e| format!("seccomp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, sock_filter};

    /// What the supervisor does before it forks any payload: the program is
    /// then there for every fork to install, built once.
    #[test]
    fn prepare_builds_the_filter_once_for_the_forks() {
        super::prepare_default();
        let p = super::DEFAULT.get().expect("built").as_ref().expect("ok");
        assert_eq!(p, &super::default_filter().expect("filter"));
    }

    /// Runs `program` as the kernel would for one system call (the classic
    /// BPF subset the builder emits) and returns the action word and how
    /// many instructions ran.
    fn evaluate(program: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> (u32, usize) {
        // struct seccomp_data: nr, arch, instruction_pointer, args[6].
        let load = |k: u32| -> u32 {
            match k {
                0 => nr,
                4 => arch,
                16 => arg0 as u32,
                20 => (arg0 >> 32) as u32,
                other => panic!("load of seccomp_data offset {other}"),
            }
        };
        let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
        loop {
            let insn = program
                .get(pc)
                .expect("a jump or fall-through past the end");
            let code = u32::from(insn.code);
            steps += 1;
            pc += 1;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => acc = load(insn.k),
                c if c == libc::BPF_RET | libc::BPF_K => return (insn.k, steps),
                c => {
                    let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                        x if x == libc::BPF_JEQ => acc == insn.k,
                        x if x == libc::BPF_JGE => acc >= insn.k,
                        x if x == libc::BPF_JSET => acc & insn.k != 0,
                        _ => panic!("unexpected BPF opcode {c:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
            }
        }
    }

    /// What the filter must answer, written plainly.
    fn expected(native: u32, arch: u32, nr: u32, arg0: u64) -> u32 {
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
        let is = |n: i64| i64::from(nr) == n;
        let x32 = native == AUDIT_ARCH_X86_64 && nr >= X32_SYSCALL_BIT;
        let newuser = (is(libc::SYS_clone) || is(libc::SYS_unshare))
            && arg0 & libc::CLONE_NEWUSER as u64 != 0;
        if arch != native {
            libc::SECCOMP_RET_KILL_PROCESS
        } else if x32 || is(libc::SYS_clone3) {
            errno(libc::ENOSYS)
        } else if super::DENIED.iter().any(|n| is(*n)) || newuser {
            errno(libc::EPERM)
        } else {
            libc::SECCOMP_RET_ALLOW
        }
    }

    /// Every system-call number (and the x32 ones, and another
    /// architecture's), with and without CLONE_NEWUSER in the first
    /// argument, gets exactly the answer of [`expected`]: the deny list,
    /// clone3 and x32 as ENOSYS (on a kernel built with CONFIG_X86_X32_ABI
    /// x32 would otherwise go around a list of plain numbers), new user
    /// namespaces refused, another architecture killed.
    #[test]
    fn the_filter_answers_every_system_call_as_intended() {
        let native = if cfg!(target_arch = "x86_64") {
            AUDIT_ARCH_X86_64
        } else {
            AUDIT_ARCH_AARCH64
        };
        let p = super::default_filter().expect("filter");
        let newuser = libc::CLONE_NEWUSER as u64;
        let args = [
            0,
            newuser,
            newuser | libc::CLONE_NEWNS as u64,
            libc::CLONE_NEWNS as u64,
            1 << 40,
        ];
        // AUDIT_ARCH_I386 and AUDIT_ARCH_X86_64's x32 numbers.
        let arches = [native, 3 | 0x4000_0000];
        let numbers = (0..1100)
            .chain((0..1100).map(|n| X32_SYSCALL_BIT | n))
            .chain([u32::MAX]);
        for nr in numbers {
            for arch in arches {
                for arg0 in args {
                    let (got, _) = evaluate(&p, arch, nr, arg0);
                    let want = expected(native, arch, nr, arg0);
                    assert_eq!(
                        got, want,
                        "nr {nr:#x} arch {arch:#x} arg0 {arg0:#x}: got {got:#x}, want {want:#x}"
                    );
                }
            }
        }
        // Spot checks against the table above, should `expected` be wrong.
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let nr = |n: i64| u32::try_from(n).expect("nr");
        assert_eq!(evaluate(&p, native, nr(libc::SYS_mount), 0).0, eperm);
        assert_eq!(
            evaluate(&p, native, nr(libc::SYS_getpid), 0).0,
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            evaluate(&p, native, nr(libc::SYS_unshare), newuser).0,
            eperm
        );
    }

    /// The kernel runs the program for every number when it installs it
    /// (the action cache), with interrupts off: the search keeps each of
    /// those runs short, where a chain of comparisons walked ~40
    /// instructions for most numbers.
    #[test]
    fn each_system_call_walks_a_short_path() {
        let p = super::default_filter().expect("filter");
        let native = if cfg!(target_arch = "x86_64") {
            AUDIT_ARCH_X86_64
        } else {
            AUDIT_ARCH_AARCH64
        };
        let longest = (0..1100)
            .map(|nr| evaluate(&p, native, nr, 0).1)
            .max()
            .expect("numbers");
        assert!(longest <= 16, "{longest} instructions");
        assert!(p.len() < 200, "{} instructions", p.len());
    }
}
