//! Finding supervisor processes by their command line, on any OS.
//!
//! The daemon recognises a sandbox's supervisor by its arguments,
//! `<exe> __supervise <id>`: before it signals a recorded pid (which may
//! have been recycled) and when a record does not know the pid yet (a
//! create cut short by a daemon crash). Where the arguments come from is
//! the OS's business, behind [`ProcessTable`]: on Linux `/proc`, on FreeBSD
//! the `kern.proc` sysctls (procfs is not mounted there by default, and a
//! daemon reading `/proc` took every live sandbox for LOST after a
//! restart). The implementations live in [`crate::sys`]; what they return
//! is parsed here, without system calls, so it is tested on every OS.

/// The argument the daemon starts its helper with.
pub const SUPERVISE_ARG: &str = "__supervise";

/// The host's processes, as far as finding supervisors needs them.
pub trait ProcessTable {
    /// The argument vector of `pid` as the kernel keeps it: each argument
    /// followed by a NUL (Linux `/proc/<pid>/cmdline`, FreeBSD
    /// `kern.proc.args.<pid>`). `None`: no such process, or unreadable.
    fn args(&self, pid: i32) -> Option<Vec<u8>>;
    /// Every process id; empty when they cannot be listed.
    fn pids(&self) -> Vec<i32>;
}

/// Whether `args` (NUL-separated, as [`ProcessTable::args`] returns
/// them) are those of sandbox `id`'s supervisor: `<exe> __supervise <id>`,
/// nothing more. The program's own path is not compared: it is the
/// daemon's binary, which may have been replaced or moved since.
pub fn is_supervisor_args(args: &[u8], id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    // A final NUL ends the last argument; it does not start another one.
    let args = args.strip_suffix(&[0]).unwrap_or(args);
    let mut parts = args.split(|b| *b == 0);
    let exe = parts.next().unwrap_or_default();
    !exe.is_empty()
        && parts.next() == Some(SUPERVISE_ARG.as_bytes())
        && parts.next() == Some(id.as_bytes())
        && parts.next().is_none()
}

/// Whether `pid` is (still) sandbox `id`'s supervisor.
pub fn is_supervisor_in(table: &impl ProcessTable, pid: i32, id: &str) -> bool {
    pid > 0
        && table
            .args(pid)
            .is_some_and(|args| is_supervisor_args(&args, id))
}

/// Every process whose arguments are those of sandbox `id`'s supervisor.
pub fn find_supervisors_in(table: &impl ProcessTable, id: &str) -> Vec<i32> {
    table
        .pids()
        .into_iter()
        .filter(|pid| is_supervisor_in(table, *pid, id))
        .collect()
}

/// The process ids in a `kern.proc.proc` sysctl answer: an array of
/// `struct kinfo_proc`, each starting with its own size (`ki_structsize`, a
/// native `int`) and holding the pid (`ki_pid`, a native `int`) at
/// `pid_offset`. Each record is stepped over by the size it states, so a
/// kernel whose structure grew is still read right; a record that states
/// a size too small to hold the pid, or runs past the end, ends the list.
pub fn kinfo_pids(buf: &[u8], pid_offset: usize) -> Vec<i32> {
    let int_at = |at: usize| -> Option<i32> {
        let bytes = buf.get(at..at.checked_add(4)?)?;
        Some(i32::from_ne_bytes(bytes.try_into().ok()?))
    };
    let mut pids = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let Some(size) = int_at(at).and_then(|s| usize::try_from(s).ok()) else {
            break;
        };
        let Some(end) = at.checked_add(size) else {
            break;
        };
        if size < pid_offset.saturating_add(4) || end > buf.len() {
            break;
        }
        if let Some(pid) = at.checked_add(pid_offset).and_then(int_at) {
            pids.push(pid);
        }
        at = end;
    }
    pids
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ID: &str = "abcdef0123456789";

    #[test]
    fn supervisor_arguments_are_recognised_exactly() {
        let cases: &[(&[u8], bool)] = &[
            (
                b"/usr/local/bin/sandboxd\0__supervise\0abcdef0123456789\0",
                true,
            ),
            // kern.proc.args and /proc/<pid>/cmdline both end with a NUL;
            // without it the arguments are the same.
            (
                b"/usr/local/bin/sandboxd\0__supervise\0abcdef0123456789",
                true,
            ),
            // The daemon's path may have changed since (an upgrade).
            (b"/proc/self/exe\0__supervise\0abcdef0123456789\0", true),
            // Another sandbox's supervisor, or a prefix of the id.
            (
                b"/usr/local/bin/sandboxd\0__supervise\0fedcba9876543210\0",
                false,
            ),
            (
                b"/usr/local/bin/sandboxd\0__supervise\0abcdef012345678\0",
                false,
            ),
            (
                b"/usr/local/bin/sandboxd\0__supervise\0abcdef01234567890\0",
                false,
            ),
            // The daemon itself, a shell mentioning it, extra arguments.
            (b"/usr/local/bin/sandboxd\0--listen\0unix:///s\0", false),
            (
                b"/bin/sh\0-c\0sandboxd __supervise abcdef0123456789\0",
                false,
            ),
            (
                b"/usr/local/bin/sandboxd\0__supervise\0abcdef0123456789\0x\0",
                false,
            ),
            // Nothing readable: a zombie, a kernel process, no program.
            (b"", false),
            (b"\0", false),
            (b"\0__supervise\0abcdef0123456789\0", false),
        ];
        for (args, want) in cases {
            assert_eq!(
                is_supervisor_args(args, ID),
                *want,
                "{:?}",
                String::from_utf8_lossy(args)
            );
        }
        assert!(!is_supervisor_args(b"/x\0__supervise\0\0", ""));
    }

    struct Fake(HashMap<i32, Vec<u8>>);

    impl ProcessTable for Fake {
        fn args(&self, pid: i32) -> Option<Vec<u8>> {
            self.0.get(&pid).cloned()
        }
        fn pids(&self) -> Vec<i32> {
            let mut p: Vec<i32> = self.0.keys().copied().collect();
            p.sort_unstable();
            p
        }
    }

    #[test]
    fn supervisors_are_found_and_checked_through_the_table() {
        let sup = |id: &str| format!("/sbin/sandboxd\0__supervise\0{id}\0").into_bytes();
        let table = Fake(HashMap::from([
            (1, b"/sbin/init\0".to_vec()),
            (40, sup(ID)),
            (41, sup("fedcba9876543210")),
            (42, sup(ID)),
            (50, Vec::new()),
        ]));
        assert_eq!(find_supervisors_in(&table, ID), [40, 42]);
        assert!(is_supervisor_in(&table, 40, ID));
        assert!(!is_supervisor_in(&table, 41, ID));
        // A pid that is gone, or was never recorded.
        assert!(!is_supervisor_in(&table, 43, ID));
        assert!(!is_supervisor_in(&table, 0, ID));
        assert!(!is_supervisor_in(&table, -1, ID));
        assert!(find_supervisors_in(&Fake(HashMap::new()), ID).is_empty());
    }

    /// The host's own table (`/proc` here, the sysctls on FreeBSD): a
    /// process started as `/bin/sh __supervise <id>` (sh runs the script
    /// file `__supervise`) is found by its arguments, and only while it
    /// lives.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    #[test]
    fn the_host_table_finds_a_live_process_by_its_arguments() {
        let dir = std::env::temp_dir().join(format!("sandboxd-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(SUPERVISE_ARG), "read _\n").expect("script");
        let id = format!("{:016x}", u64::from(std::process::id()) << 8 | 0xab);
        let mut child = std::process::Command::new("/bin/sh")
            .arg(SUPERVISE_ARG)
            .arg(&id)
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = i32::try_from(child.id()).expect("pid");
        let table = crate::sys::HostProcesses;
        // spawn returns once the exec is past its point of no return; the
        // new arguments are in place a moment later, so wait for them, up
        // to 10 s on a loaded host (one full run failed this assertion
        // after waiting 1 s for any arguments; the cause was not found).
        let mut seen = None;
        for _ in 0..2000 {
            seen = table.args(pid);
            if is_supervisor_in(&table, pid, &id) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            is_supervisor_in(&table, pid, &id),
            "pid {pid}: last read {:?}, exit {:?}",
            seen.map(|a| String::from_utf8_lossy(&a).into_owned()),
            child.try_wait()
        );
        assert_eq!(find_supervisors_in(&table, &id), [pid]);
        assert!(!is_supervisor_in(&table, pid, "fedcba9876543210"));
        assert!(!is_supervisor_in(
            &table,
            i32::try_from(std::process::id()).expect("pid"),
            &id
        ));
        drop(child.stdin.take());
        child.wait().expect("wait");
        assert!(!is_supervisor_in(&table, pid, &id));
        assert!(find_supervisors_in(&table, &id).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A `kinfo_proc`-like record: size first, pid at `pid_at`.
    fn record(size: usize, pid_at: usize, pid: i32) -> Vec<u8> {
        let mut r = vec![0xa5u8; size];
        r[..4].copy_from_slice(&i32::try_from(size).expect("size").to_ne_bytes());
        r[pid_at..pid_at + 4].copy_from_slice(&pid.to_ne_bytes());
        r
    }

    #[test]
    fn kinfo_proc_arrays_give_their_pids() {
        // amd64: ki_pid at 72 in a 1088-byte structure.
        let (size, at) = (1088, 72);
        let mut buf = Vec::new();
        for pid in [0, 1, 812, 99_999] {
            buf.extend(record(size, at, pid));
        }
        assert_eq!(kinfo_pids(&buf, at), [0, 1, 812, 99_999]);
        // A kernel with a larger structure: stepped by the stated size.
        let mut grown = record(1200, at, 7);
        grown.extend(record(1200, at, 8));
        assert_eq!(kinfo_pids(&grown, at), [7, 8]);
        // Truncated, nonsense or empty answers end the list, never panic.
        let mut cut = record(size, at, 5);
        cut.extend(&record(size, at, 6)[..100]);
        assert_eq!(kinfo_pids(&cut, at), [5]);
        assert_eq!(
            kinfo_pids(&record(size, at, 5)[..70], at),
            Vec::<i32>::new()
        );
        assert_eq!(kinfo_pids(&0i32.to_ne_bytes(), at), Vec::<i32>::new());
        assert_eq!(kinfo_pids(&(-1i32).to_ne_bytes(), at), Vec::<i32>::new());
        assert_eq!(kinfo_pids(&[], at), Vec::<i32>::new());
        assert_eq!(kinfo_pids(&[1, 2], at), Vec::<i32>::new());
        let mut small = record(76, at, 3);
        small[..4].copy_from_slice(&8i32.to_ne_bytes());
        assert_eq!(kinfo_pids(&small, at), Vec::<i32>::new());
    }
}
