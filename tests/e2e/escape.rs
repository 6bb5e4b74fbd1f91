//! Escape attempts from a red-team pass and the published runc/crun/youki
//! CVE classes, each written as a client would try it: a hostile working
//! directory or program path that resolves through a magic link
//! (`/proc/self/fd/N`, `/dev/fd/N`, `/proc/thread-self/fd/N`,
//! `/proc/<pid>/cwd|root|exe`; CVE-2024-21626, CVE-2019-5736), a bind-mount
//! target that reaches `/proc` through an image symlink (CVE-2025-31133
//! class), and limits that must hold for every process of an IDLE sandbox.
//!
//! Every attempt must either fail with a status or land inside the sandbox's
//! root; none may see (or touch) the host canary.

use std::path::{Path, PathBuf};

use sandboxd_proto::v1 as pb;

use crate::harness::{
    Clients, Daemon, SourceDir, argv, chroot_backend, code, linux_backend, out, sh_in,
};

/// Working directories that name a descriptor or another process's
/// directories through /proc's magic links.
fn magic_cwds() -> Vec<String> {
    let mut cwds = Vec::new();
    for n in 3..=12 {
        cwds.push(format!("/proc/self/fd/{n}"));
        cwds.push(format!("/dev/fd/{n}"));
        cwds.push(format!("/proc/thread-self/fd/{n}"));
    }
    for pid in ["1", "self", "thread-self"] {
        cwds.push(format!("/proc/{pid}/cwd"));
        cwds.push(format!("/proc/{pid}/root"));
    }
    cwds
}

/// A shell script that walks up from its cwd (physically, not through
/// $PWD) and reports whether the host canary is reachable from there.
fn walk_up_script(canary: &Path) -> String {
    let rel = canary
        .strip_prefix("/")
        .expect("canary path is absolute")
        .display();
    format!(
        "i=0; while [ $i -lt 40 ]; do cd -P .. 2>/dev/null; i=$((i+1)); done; \
         if [ -e {rel} ] || [ -e /{rel} ]; then echo ESCAPED; exit 42; else echo contained; fi"
    )
}

/// The identities an attempt runs as: the default user, and uid 0.
fn users() -> Vec<(&'static str, Option<pb::User>)> {
    vec![
        ("default user", None),
        (
            "uid 0",
            Some(pb::User {
                uid: Some(0),
                gid: Some(0),
                additional_gids: vec![],
            }),
        ),
    ]
}

fn plant_canary(d: &Daemon) -> PathBuf {
    let canary = d.dir.join("escape-canary");
    std::fs::write(&canary, "host only").expect("canary");
    canary
}

/// Runs every magic cwd through ExecSync as `user` in sandbox `id`.
async fn exec_with_magic_cwds(c: &mut Clients, id: &str, user: Option<pb::User>, canary: &Path) {
    for cwd in magic_cwds() {
        let mut p = argv(&["/bin/sh", "-c", &walk_up_script(canary)]);
        p.cwd = cwd.clone();
        p.user = user.clone();
        let r = c
            .processes
            .exec_sync(pb::ExecSyncRequest {
                sandbox_id: id.into(),
                process: Some(p),
                timeout_ms: 20_000,
                ..Default::default()
            })
            .await;
        match r {
            // Refused: the cwd could not be entered. Good.
            Err(status) => assert!(
                !status.message().is_empty(),
                "cwd {cwd}: refused without a message"
            ),
            Ok(r) => {
                let r = r.into_inner();
                assert_ne!(
                    out(&r),
                    "ESCAPED\n",
                    "cwd {cwd} reached the host's root (exit {})",
                    code(&r)
                );
                assert_eq!(
                    code(&r),
                    0,
                    "cwd {cwd}: {} {}",
                    out(&r),
                    String::from_utf8_lossy(&r.stderr)
                );
            }
        }
    }
}

#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives the Linux paths of the Linux and chroot backends (magic links, openat2)"
)]
#[tokio::test]
async fn exec_cwd_through_a_magic_link_stays_inside() {
    let d = Daemon::start();
    let canary = plant_canary(&d);
    let mut c = d.clients().await;
    d.make_busybox_image("busybox");
    for image in ["host", "busybox"] {
        let sb = c.idle(image).await;
        for (who, user) in users() {
            eprintln!("exec cwd attempts: image {image}, {who}");
            exec_with_magic_cwds(&mut c, &sb.id, user, &canary).await;
        }
        c.destroy(&sb.id).await;
    }
    if linux_backend() {
        // Root inside a user namespace, too.
        let sb = c
            .create(pb::SandboxSpec {
                mode: pb::SandboxMode::Idle as i32,
                isolation: Some(pb::Isolation {
                    user: pb::Requirement::Required as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        for (who, user) in users() {
            eprintln!("exec cwd attempts: user namespace, {who}");
            exec_with_magic_cwds(&mut c, &sb.id, user, &canary).await;
        }
        c.destroy(&sb.id).await;
    }
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary"),
        "host only"
    );
    d.finish().await;
}

/// A PROCESS or INIT main process with a magic cwd: the create fails, or
/// the main process exits 0 having found no canary.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives the Linux paths of the Linux and chroot backends (magic links, openat2)"
)]
#[tokio::test]
async fn main_process_cwd_through_a_magic_link_stays_inside() {
    let d = Daemon::start();
    let canary = plant_canary(&d);
    let mut c = d.clients().await;
    let mut modes = vec![pb::SandboxMode::Process];
    if linux_backend() {
        modes.push(pb::SandboxMode::Init);
    }
    for mode in modes {
        for n in 3..=10 {
            for prefix in ["/proc/self/fd", "/dev/fd"] {
                let cwd = format!("{prefix}/{n}");
                let mut p = argv(&["/bin/sh", "-c", &walk_up_script(&canary)]);
                p.cwd = cwd.clone();
                p.user = users()[1].1.clone();
                let created = c
                    .try_create(pb::SandboxSpec {
                        mode: mode as i32,
                        process: Some(p),
                        ..Default::default()
                    })
                    .await;
                let Ok(created) = created else {
                    continue;
                };
                let id = created.id;
                let exit = c.wait(&id).await;
                assert_ne!(
                    exit.exit_code, 42,
                    "{mode:?} main process with cwd {cwd} reached the host's root"
                );
                c.destroy(&id).await;
            }
        }
    }
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary"),
        "host only"
    );
    d.finish().await;
}

/// argv[0] through a magic link must not run the host's sandboxd binary
/// (CVE-2019-5736 runs the runtime's own binary this way), nor anything a
/// descriptor names.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives the Linux paths of the Linux and chroot backends (magic links, openat2)"
)]
#[tokio::test]
async fn argv0_through_a_magic_link_does_not_run_the_daemon() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let mut programs: Vec<String> = ["/proc/self/exe", "/proc/1/exe", "/proc/thread-self/exe"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for n in 3..=8 {
        programs.push(format!("/proc/self/fd/{n}"));
        programs.push(format!("/dev/fd/{n}"));
    }
    for (who, user) in users() {
        for program in &programs {
            let mut p = argv(&[program, "--help"]);
            p.user = user.clone();
            let r = c
                .processes
                .exec_sync(pb::ExecSyncRequest {
                    sandbox_id: sb.id.clone(),
                    process: Some(p),
                    timeout_ms: 20_000,
                    ..Default::default()
                })
                .await;
            if let Ok(r) = r {
                let r = r.into_inner();
                let text = format!("{}{}", out(&r), String::from_utf8_lossy(&r.stderr));
                assert!(
                    !text.contains("sandboxd") && !text.contains("--state-dir"),
                    "{who}: argv0 {program} ran the daemon's binary: {text}"
                );
                assert_ne!(code(&r), 0, "{who}: argv0 {program} ran something");
            }
        }
    }
    // An ordinary program still runs, by name and by path, and so does a
    // script (its interpreter found through the shebang).
    let r = c.sh(&sb.id, "echo ok").await;
    assert_eq!(out(&r), "ok\n");
    let r = c.exec_sync(&sb.id, argv(&["/bin/echo", "ok"]), 0).await;
    assert_eq!(out(&r), "ok\n");
    let r = c
        .sh(
            &sb.id,
            "printf '#!/bin/sh\\necho script \"$@\"\\n' > /tmp/s; chmod 755 /tmp/s; echo written",
        )
        .await;
    assert_eq!(out(&r), "written\n");
    let r = c.exec_sync(&sb.id, argv(&["/tmp/s", "a"]), 0).await;
    assert_eq!(
        out(&r),
        "script a\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    d.finish().await;
}

/// Nothing but 0-2 is open in a payload: not the supervisor's channel, the
/// cgroup directory, the daemon's log, or anything the daemon inherited.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives the Linux paths of the Linux and chroot backends (magic links, openat2)"
)]
#[tokio::test]
async fn payloads_start_with_only_stdio_open() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    d.make_busybox_image("busybox");
    for image in ["host", "busybox"] {
        let sb = c.idle(image).await;
        for (who, user) in users() {
            let mut p = argv(&["/bin/ls", "/proc/self/fd/"]);
            p.user = user;
            let r = c.exec_sync(&sb.id, p, 20_000).await;
            if chroot_backend() && out(&r).is_empty() {
                // The chroot backend mounts no /proc: nothing to list.
                eprintln!(
                    "{image}, {who}: no /proc in this chroot sandbox; descriptors not listed"
                );
                continue;
            }
            // ls itself opens one descriptor for the directory it lists.
            let mut fds: Vec<u32> = out(&r)
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            fds.sort_unstable();
            assert!(
                fds.len() <= 4 && fds.starts_with(&[0, 1, 2]),
                "{image}, {who}: open descriptors {fds:?} (stderr {})",
                String::from_utf8_lossy(&r.stderr)
            );
        }
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}

/// A bind-mount target that reaches `/proc` through an image symlink
/// (`/pp -> /proc`, target `/pp/sys`) is checked where it resolves, not by
/// its string: refused, and `/proc/sys` stays the kernel's read-only view.
#[tokio::test]
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the chroot backend mounts no /proc or /sys to protect; the Linux backend's check"
)]
async fn mount_target_through_an_image_symlink_cannot_cover_proc() {
    let allowed = SourceDir::new("symlink-target");
    let d = Daemon::start_with(&allowed.flag());
    let img = d.make_busybox_image("linky");
    std::os::unix::fs::symlink("/proc", img.join("pp")).expect("image symlink");
    std::os::unix::fs::symlink("../dev", img.join("dd")).expect("image symlink");
    let src = allowed.join("escape-src");
    std::fs::create_dir_all(&src).expect("bind source");
    let mut c = d.clients().await;
    for target in ["/pp/sys", "/pp", "/dd/shm", "/dd"] {
        let r = c
            .try_create(pb::SandboxSpec {
                image: "linky".into(),
                mode: pb::SandboxMode::Idle as i32,
                mounts: vec![pb::Mount {
                    source: src.display().to_string(),
                    target: target.into(),
                    read_only: false,
                }],
                ..Default::default()
            })
            .await;
        match r {
            Err(status) => assert!(
                status.message().contains(target)
                    && (status.message().contains("/proc") || status.message().contains("/dev")),
                "target {target}: {status:?}"
            ),
            Ok(r) => {
                let id = r.id;
                let probe = c
                    .sh(
                        &id,
                        "ls /proc/sys/kernel/hostname /dev/null >/dev/null && echo intact",
                    )
                    .await;
                c.destroy(&id).await;
                panic!(
                    "target {target} through a symlink was mounted (probe: {})",
                    out(&probe)
                );
            }
        }
    }
    d.finish().await;
}

/// Open-file and address-space limits apply to every process of an IDLE
/// sandbox (the mode `sandboxctl run` uses), not only to a main process.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives the Linux paths of the Linux and chroot backends (magic links, openat2)"
)]
#[tokio::test]
async fn idle_sandbox_execs_get_the_rlimits() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let limit = |value| {
        Some(pb::Limit {
            value,
            requirement: 0,
        })
    };
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            limits: Some(pb::Limits {
                open_files: limit(64),
                address_space_bytes: limit(256 << 20),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    for row in &sb.isolation.clone().expect("report").properties {
        if row.property == pb::IsolationProperty::OpenFilesLimit as i32
            || row.property == pb::IsolationProperty::AddressSpaceLimit as i32
        {
            assert_eq!(row.level, pb::EnforcementLevel::Enforced as i32, "{row:?}");
        }
    }
    let r = c.sh(&sb.id, "ulimit -n; ulimit -v").await;
    assert_eq!(
        out(&r),
        format!("64\n{}\n", 256 << 10),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    d.finish().await;
}

/// uid 0 without a user namespace cannot change the host's device nodes:
/// the sandbox's /dev nodes are its own (mknod in its tmpfs), not binds of
/// the host's inodes.
#[tokio::test]
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the chroot backend is not a boundary against root (docs/security.md); the Linux backend's check"
)]
async fn root_cannot_chmod_the_hosts_device_nodes() {
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let before: Vec<(u32, u32, u32)> = ["/dev/null", "/dev/full", "/dev/zero", "/dev/tty"]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).expect("host device");
            (m.mode(), m.uid(), m.gid())
        })
        .collect();
    // The default user can use them.
    let r = c
        .sh(&sb.id, "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
        .await;
    assert_eq!(
        out(&r).trim(),
        "3",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let mut p = argv(&[
        "/bin/sh",
        "-c",
        "chmod 600 /dev/null /dev/full /dev/zero /dev/tty && chown 65534:65534 /dev/full && echo changed; \
         stat -c '%t:%T %a' /dev/full",
    ]);
    p.user = users()[1].1.clone();
    let r = c.exec_sync(&sb.id, p, 20_000).await;
    // Inside, root may change its own nodes; they are real devices.
    assert_eq!(
        out(&r),
        "changed\n1:7 600\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let after: Vec<(u32, u32, u32)> = ["/dev/null", "/dev/full", "/dev/zero", "/dev/tty"]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).expect("host device");
            (m.mode(), m.uid(), m.gid())
        })
        .collect();
    if before != after {
        // Put the host back before failing: a broken /dev/null breaks
        // everything else on this machine.
        for (path, (mode, uid, gid)) in ["/dev/null", "/dev/full", "/dev/zero", "/dev/tty"]
            .iter()
            .zip(&before)
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode));
            let _ = std::os::unix::fs::chown(path, Some(*uid), Some(*gid));
        }
    }
    assert_eq!(before, after, "the host's device nodes changed");
    d.finish().await;
}

/// The daemon's secrets directory (/etc/sandboxd, where docs/security.md
/// puts the TLS key) is hidden in the "host" image, even from uid 0.
#[tokio::test]
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the chroot backend is not a boundary against root (docs/security.md); the Linux backend's check"
)]
async fn host_image_hides_the_daemons_secrets() {
    let dir = Path::new("/etc/sandboxd");
    let made_dir = !dir.exists();
    std::fs::create_dir_all(dir).expect("/etc/sandboxd");
    let secret = dir.join(format!("e2e-secret-{}", std::process::id()));
    std::fs::write(&secret, "private key").expect("secret");
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let mut p = argv(&[
        "/bin/sh",
        "-c",
        &format!("cat {} 2>&1; ls -A /etc/sandboxd | wc -l", secret.display()),
    ]);
    p.user = users()[1].1.clone();
    let r = c.exec_sync(&sb.id, p, 20_000).await;
    let _ = std::fs::remove_file(&secret);
    if made_dir {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(
        !out(&r).contains("private key"),
        "uid 0 read the daemon's secret: {}",
        out(&r)
    );
    assert!(out(&r).ends_with("0\n"), "{}", out(&r));
    d.finish().await;
}

/// Without a user namespace uid 0 is host root: with a read-write bind it
/// could leave a setuid-root file in a host directory that host users then
/// run. Such a sandbox refuses uid 0 (main process and Exec); a user
/// namespace, a read-only bind or another uid is fine.
#[tokio::test]
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the chroot backend is not a boundary against root (docs/security.md); the Linux backend's check"
)]
async fn root_cannot_plant_setuid_files_in_a_read_write_bind() {
    use std::os::unix::fs::MetadataExt;
    let allowed = SourceDir::new("setuid");
    let d = Daemon::start_with(&allowed.flag());
    let src = allowed.join("out");
    std::fs::create_dir_all(&src).expect("bind source");
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let mut c = d.clients().await;
    let bind = |read_only| pb::Mount {
        source: src.display().to_string(),
        target: "/out".into(),
        read_only,
    };
    let root = users()[1].1.clone();
    let plant = "cp /bin/sh /out/sh && chmod 4755 /out/sh && echo planted";
    // A root main process with a read-write bind: refused at create.
    let mut p = argv(&["/bin/sh", "-c", plant]);
    p.user = root.clone();
    let refused = c
        .try_create(pb::SandboxSpec {
            process: Some(p),
            mounts: vec![bind(false)],
            ..Default::default()
        })
        .await
        .expect_err("uid 0 with a read-write bind and no user namespace");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("spec.mounts[0]"), "{refused:?}");
    // IDLE: an Exec as uid 0 is refused, the default user runs.
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            mounts: vec![bind(false)],
            ..Default::default()
        })
        .await;
    let mut p = argv(&["/bin/sh", "-c", plant]);
    p.user = root.clone();
    let r = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(p),
            timeout_ms: 20_000,
            ..Default::default()
        })
        .await;
    match r {
        Err(status) => assert!(status.message().contains("uid 0"), "{status:?}"),
        Ok(r) => panic!("uid 0 ran: {}", out(&r.into_inner())),
    }
    let r = c.sh(&sb.id, "touch /out/by-nobody && echo ok").await;
    assert_eq!(out(&r), "ok\n", "{}", String::from_utf8_lossy(&r.stderr));
    c.destroy(&sb.id).await;
    // With a user namespace, root may write: what it leaves is owned by an
    // unprivileged host uid, so a setuid bit grants nothing.
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            mounts: vec![bind(false)],
            isolation: Some(pb::Isolation {
                user: pb::Requirement::Required as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let mut p = argv(&["/bin/sh", "-c", plant]);
    p.user = root.clone();
    let r = c.exec_sync(&sb.id, p, 20_000).await;
    assert_eq!(
        out(&r),
        "planted\n",
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let owner = std::fs::metadata(src.join("sh"))
        .expect("planted file")
        .uid();
    assert_ne!(
        owner, 0,
        "a file root left in the bind is owned by host root"
    );
    c.destroy(&sb.id).await;
    d.finish().await;
}

/// An image whose kernel-filesystem mount points are symlinks (`/proc ->
/// /etc`, `/dev -> /proc`, `/sys -> /proc/sys`, `/tmp -> /proc/sys/kernel`)
/// tries to make the sandbox's own mounts land elsewhere: over the proc
/// mount, or with /proc/sys writable (runc CVE-2019-19921 and the
/// CVE-2025-31133/52565/52881 masked-path races are this class). The
/// create is refused, naming the symlink, and the host's kernel settings
/// stay as they were.
#[tokio::test]
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the chroot backend mounts no /proc or /sys; the Linux backend's check"
)]
async fn image_symlinks_cannot_redirect_the_sandboxs_own_mounts() {
    let d = Daemon::start();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read");
    let layouts: &[(&str, &[(&str, &str)])] = &[
        ("proc-to-etc", &[("proc", "/etc")]),
        ("dev-to-proc", &[("dev", "/proc")]),
        ("sys-to-proc-sys", &[("sys", "/proc/sys")]),
        ("tmp-to-kernel", &[("tmp", "/proc/sys/kernel")]),
    ];
    let mut c = d.clients().await;
    for (name, links) in layouts {
        let img = d.make_busybox_image(name);
        for (path, target) in *links {
            let p = img.join(path);
            let _ = std::fs::remove_dir_all(&p);
            std::os::unix::fs::symlink(target, &p).expect("image symlink");
        }
        let mut p = argv(&[
            "/bin/sh",
            "-c",
            "echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern && echo written",
        ]);
        p.user = users()[1].1.clone();
        let r = c
            .try_create(pb::SandboxSpec {
                image: (*name).into(),
                process: Some(p),
                ..Default::default()
            })
            .await;
        match r {
            Err(status) => assert!(
                status.message().contains("symlink"),
                "{name}: refused without naming the symlink: {status:?}"
            ),
            Ok(r) => {
                let id = r.id;
                let _ = c
                    .sandboxes
                    .wait_sandbox(pb::WaitSandboxRequest { id: id.clone() })
                    .await;
                c.destroy(&id).await;
                let now = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read");
                if now != core_pattern {
                    let _ = std::fs::write("/proc/sys/kernel/core_pattern", &core_pattern);
                }
                panic!("{name}: created on an image that redirects /proc, /dev, /sys or /tmp");
            }
        }
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read"),
        core_pattern
    );
    d.finish().await;
}

/// uid 0 cannot make a read-only root writable again: no remount (in place
/// or as a bind), no new mount over `/`, in the Linux backend (no
/// CAP_SYS_ADMIN in the payload's bounding set) and the chroot backend
/// (capabilities cut to Docker's default set), so READONLY_ROOTFS carries no
/// "root could remount it" caveat.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives Linux mount(8) syntax on the Linux and chroot backends"
)]
#[tokio::test]
async fn root_cannot_remount_a_read_only_root_writable() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            readonly_rootfs: true,
            ..Default::default()
        })
        .await;
    let row = sb
        .isolation
        .clone()
        .expect("report")
        .properties
        .into_iter()
        .find(|r| r.property == pb::IsolationProperty::ReadonlyRootfs as i32)
        .expect("READONLY_ROOTFS row");
    assert_eq!(row.level, pb::EnforcementLevel::Enforced as i32, "{row:?}");
    let attempts = [
        "mount -o remount,rw /",
        "mount -o remount,bind,rw /",
        "mount -t tmpfs none /",
        "mount -t tmpfs none /etc",
    ];
    let script = attempts
        .iter()
        .map(|a| {
            format!(
                "{a} 2>/dev/null; touch /etc/sandboxd-remounted 2>/dev/null && echo '{a}: writable'"
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut p = argv(&["/bin/sh", "-c", &format!("{script}; id -u")]);
    p.user = users()[1].1.clone();
    let r = c.exec_sync(&sb.id, p, 20_000).await;
    assert_eq!(
        out(&r),
        "0\n",
        "root made the read-only root writable ({row:?}); stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        !Path::new("/etc/sandboxd-remounted").exists(),
        "a file reached the host's /etc"
    );
    c.destroy(&sb.id).await;
    d.finish().await;
}

/// The capability drop must not take its bounds from inside the sandbox:
/// an image that plants `/proc/sys/kernel/cap_last_cap` saying `0` (the
/// chroot backend mounts no /proc over it) must not leave a uid-0 payload
/// with every capability above 0 in its bounding set: CAP_SYS_NICE (not
/// in Docker's default set) to raise its priority, CAP_SYS_ADMIN, ...
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "drives Linux capabilities and mount(8) on the Linux and chroot backends"
)]
#[tokio::test]
async fn an_image_cannot_choose_which_capabilities_are_dropped() {
    let d = Daemon::start();
    let image = d.make_busybox_image("fake-cap-last-cap");
    let kernel = image.join("proc/sys/kernel");
    std::fs::create_dir_all(&kernel).expect("fake /proc/sys/kernel");
    std::fs::write(kernel.join("cap_last_cap"), "0\n").expect("fake cap_last_cap");
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            image: "fake-cap-last-cap".into(),
            ..Default::default()
        })
        .await;
    // Unmounted at once if it worked, so a failure leaves no mount behind.
    let mut p = argv(&[
        "/bin/sh",
        "-c",
        "busybox renice -n -5 -p $$ >/dev/null 2>&1 && echo reniced; \
         busybox setpriv --dump | busybox grep -o sys_admin; \
         mount -t tmpfs sandboxd-cap /tmp 2>/dev/null && umount /tmp && echo mounted; id -u",
    ]);
    p.user = users()[1].1.clone();
    let r = c.exec_sync(&sb.id, p, 20_000).await;
    assert_eq!(
        out(&r),
        "0\n",
        "uid 0 kept capabilities it must not have; stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    c.destroy(&sb.id).await;
    d.finish().await;
}

/// A device node in a directory image (the images dir is the operator's,
/// but an unpacked tarball can carry one) must not be a way to the host's
/// device: the writable root is mounted nodev on every backend, so root in
/// the sandbox cannot open it even though the file is there.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "mknod of a Linux char device (1:5)"
)]
#[tokio::test]
async fn a_device_node_in_an_image_cannot_be_opened() {
    let d = Daemon::start();
    let image = d.make_busybox_image("with-dev-node");
    // A read-only root needs every mount point in the image.
    std::fs::create_dir_all(image.join("sys")).expect("sys mount point");
    // Linux's /dev/zero (the test is ignored elsewhere).
    #[cfg(target_os = "linux")]
    let zero = nix::sys::stat::makedev(1, 5);
    #[cfg(not(target_os = "linux"))]
    let zero = 0;
    nix::sys::stat::mknod(
        &image.join("zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        zero,
    )
    .expect("mknod in the image");
    // World-usable, as a careless tarball might carry it: the default
    // (unprivileged) user is the first to try.
    std::fs::set_permissions(
        image.join("zero"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod the node");
    let mut c = d.clients().await;
    // A writable root (an overlay) and a read-only one (a bind).
    for readonly_rootfs in [false, true] {
        let sb = c
            .create(pb::SandboxSpec {
                mode: pb::SandboxMode::Idle as i32,
                image: "with-dev-node".into(),
                readonly_rootfs,
                ..Default::default()
            })
            .await;
        for (who, user) in users() {
            let mut p = argv(&[
                "/bin/sh",
                "-c",
                "ls -l /zero >&2; head -c 4 /zero >/dev/null && echo opened; echo done",
            ]);
            p.user = user;
            let r = c.exec_sync(&sb.id, p, 20_000).await;
            assert_eq!(
                out(&r),
                "done\n",
                "{who} in the sandbox opened the image's device node (readonly_rootfs {readonly_rootfs}); stderr: {}",
                String::from_utf8_lossy(&r.stderr)
            );
        }
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}

/// The main process's missing working directory is made inside the
/// sandbox's root: through an image symlink that climbs out of it
/// (`/up -> /../../../../tmp`) it is made in the sandbox's own /tmp, and
/// nothing appears on the host.
#[tokio::test]
async fn a_missing_working_directory_is_made_inside_the_root_only() {
    let d = Daemon::start();
    let img = d.make_busybox_image("cwdlink");
    std::os::unix::fs::symlink("/../../../../../../tmp", img.join("up")).expect("image symlink");
    let name = format!("sandboxd-cwd-escape-{}", std::process::id());
    let host = Path::new("/tmp").join(&name);
    let _ = std::fs::remove_dir_all(&host);
    let mut c = d.clients().await;
    let sb = c
        .create(sh_in("cwdlink", "exec sleep 60", &format!("/up/{name}/x")))
        .await;
    let r = c
        .sh(&sb.id, &format!("test -d /tmp/{name}/x && echo inside"))
        .await;
    let inside = out(&r);
    assert!(c.destroy(&sb.id).await);
    let on_host = host.exists();
    let _ = std::fs::remove_dir_all(&host);
    assert!(!on_host, "{} was made on the host", host.display());
    assert_eq!(inside, "inside\n");
    d.finish().await;
}

/// Before a destroy deletes a sandbox's directory, the backend proves from
/// mountinfo that nothing is mounted below it, or it deletes nothing: a host
/// mount there (a bind of host data, say) is never deleted through. The
/// state directory's name has a space, which mountinfo writes as `\040`.
#[cfg_attr(
    any(not(target_os = "linux"), feature = "force-chroot"),
    ignore = "the Linux backend mounts only in pid 1's namespace, so a host mount below a sandbox is foreign to it (the chroot backend unmounts what is below its sandboxes)"
)]
#[tokio::test]
async fn a_destroy_never_deletes_through_a_host_mount_below_the_sandbox() {
    let mut d = Daemon::start_with_state_dir("state dir");
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let below = d.state.join("sandboxes").join(&sb.id).join("root");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&below)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs on {}", below.display());
    let canary = below.join("canary");
    std::fs::write(&canary, "host data").expect("canary");
    // The reply comes once the sandbox is dead; the host cleanup follows.
    assert!(c.destroy(&sb.id).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log_text().contains("host cleanup failed") && canary.exists() {
        assert!(std::time::Instant::now() < deadline, "no cleanup outcome");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = std::fs::read_to_string(&canary);
    // Wherever the mount is now (a destroy that went wrong moved it into
    // the state directory's trash with the sandbox's directory).
    for m in crate::harness::mounts_under(&d.state) {
        let _ = std::process::Command::new("umount").arg(&m).status();
    }
    assert_eq!(
        kept.ok().as_deref(),
        Some("host data"),
        "the destroy deleted through the mount below its directory"
    );
    assert!(
        d.log_text().contains("still mounted"),
        "the cleanup names the mount"
    );
    // Kept marked for destruction: the next start finishes it.
    drop(c);
    d.kill_and_restart();
    let dir = d.state.join("sandboxes").join(&sb.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while dir.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stays",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    d.finish().await;
}
