//! What the FreeBSD jail backend enforces, observed from inside the jail
//! and from the host (jls, rctl, ifconfig, mount -p): isolation (hostname,
//! process visibility, securelevel and the allow.* privileges, no mounts),
//! networking (NONE, LOOPBACK, HOST, RESTRICTED), limits (rctl, rlimits),
//! exit codes, and that destroy leaves nothing behind, even after the
//! supervisor was SIGKILLed.
//!
//! Written to run as root on a FreeBSD 14 host (see "Build and run on
//! FreeBSD 14" in docs/backend-freebsd.md). Elsewhere every test returns
//! early and prints why. The bodies are compiled on every OS, so a change
//! to the harness or the API breaks this module's build on Linux too.

use std::process::Command;
use std::time::Duration;

use sandboxd_proto::v1 as pb;

use crate::harness::{Clients, Daemon, argv, code, freebsd_backend, out};

/// Prints why a test does nothing on this host, instead of skipping
/// silently. True when the test must return.
fn skip_unless_freebsd(test: &str) -> bool {
    if freebsd_backend() {
        return false;
    }
    if cfg!(target_os = "freebsd") {
        eprintln!(
            "SKIPPED {test}: this build uses the chroot backend (force-chroot); the jail suite runs in the default build"
        );
    } else {
        eprintln!(
            "SKIPPED {test}: needs a FreeBSD host (jails); this host is {}",
            std::env::consts::OS
        );
    }
    true
}

/// The jail's name, as the backend gives it (`plan::jail_name`).
fn jail_name(id: &str) -> String {
    format!("sandboxd-{id}")
}

/// Runs a host command: (exit status 0, stdout and stderr).
fn host(program: &str, args: &[&str]) -> (bool, String) {
    match Command::new(program).args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("{program}: {e}")),
    }
}

/// `jls -n -j NAME`: the jail's parameters as `name=value` words (a
/// boolean appears as its name, or its `no` name when false). Empty when
/// there is no such jail.
fn jail_params(name: &str) -> Vec<String> {
    let (ok, text) = host("/usr/sbin/jls", &["-n", "-j", name]);
    if !ok {
        return Vec::new();
    }
    text.split_whitespace().map(str::to_owned).collect()
}

/// The value of `key` in [`jail_params`]' words.
fn param<'a>(params: &'a [String], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A boolean sysctl of the host is 1.
fn host_sysctl_on(name: &str) -> bool {
    let (ok, text) = host("/sbin/sysctl", &["-n", name]);
    ok && text.trim() == "1"
}

fn limit(value: u64, requirement: pb::Requirement) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: requirement as i32,
    })
}

fn idle(network: pb::NetworkMode) -> pb::SandboxSpec {
    pb::SandboxSpec {
        mode: pb::SandboxMode::Idle as i32,
        network: Some(pb::NetworkPolicy {
            mode: network as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn root_sh(c: &mut Clients, id: &str, script: &str) -> pb::ExecSyncResponse {
    let mut p = argv(&["/bin/sh", "-c", script]);
    p.user = Some(pb::User {
        uid: Some(0),
        gid: Some(0),
        additional_gids: vec![],
    });
    c.exec_sync(id, p, 20_000).await
}

async fn create_err(c: &mut Clients, spec: pb::SandboxSpec) -> tonic::Status {
    c.sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(spec),
            request_id: String::new(),
            verify: false,
        })
        .await
        .expect_err("create should fail")
}

/// The host's capability row for `property`.
async fn capability(c: &mut Clients, property: pb::IsolationProperty) -> pb::PropertyEnforcement {
    c.host
        .get_capabilities(pb::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner()
        .matrix
        .into_iter()
        .find(|r| r.property == property as i32)
        .expect("row")
}

/// A listener on `addr:port` inside the jail, then a connection to it
/// from inside: prints "hello" if both worked, then "end".
fn self_connect(addr: &str, port: u16) -> String {
    format!(
        "rm -f /tmp/got; (nc -l {addr} {port} >/tmp/got 2>/dev/null &); sleep 0.5; \
         echo hello | nc -N -w 2 {addr} {port} >/dev/null 2>&1; sleep 0.3; \
         cat /tmp/got 2>/dev/null; echo end"
    )
}

/// Whether a listener on `addr` can be started inside (bind succeeds).
fn can_listen(addr: &str, port: u16) -> String {
    format!(
        "nc -l {addr} {port} >/dev/null 2>&1 & p=$!; sleep 0.5; \
         kill $p 2>/dev/null && echo listening; echo end"
    )
}

/// What a destroyed sandbox may not leave: its jail, its mounts, its rctl
/// rules.
fn leftovers(d: &Daemon, id: &str) -> Vec<String> {
    let name = jail_name(id);
    let mut left = Vec::new();
    if !jail_params(&name).is_empty() {
        left.push(format!("jail {name}"));
    }
    let dir = d.state.join("sandboxes").join(id);
    let dir = dir.display().to_string();
    let (_, mounts) = host("/sbin/mount", &["-p"]);
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount {l}")),
    );
    let (_, rules) = host("/usr/bin/rctl", &[&format!("jail:{name}")]);
    left.extend(
        rules
            .lines()
            .filter(|l| l.starts_with("jail:"))
            .map(|l| format!("rctl {l}")),
    );
    left
}

#[tokio::test]
async fn jail_hides_the_host_and_withholds_privileges() {
    if skip_unless_freebsd("jail_hides_the_host_and_withholds_privileges") {
        return;
    }
    let d = Daemon::start();
    let secret = d.dir.join("host-secret");
    std::fs::write(&secret, "host only").expect("canary");
    // A host process of ours, which the jail must not see.
    let mut bystander = Command::new("/bin/sleep")
        .arg("60")
        .spawn()
        .expect("host sleep");
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            hostname: "web".into(),
            ..idle(pb::NetworkMode::None)
        })
        .await;
    let name = jail_name(&sb.id);

    // From the host: the jail has the plan's parameters.
    let params = jail_params(&name);
    assert!(!params.is_empty(), "jls does not know {name}");
    for (key, want) in [
        ("host.hostname", "web"),
        ("securelevel", "2"),
        ("enforce_statfs", "2"),
        ("children.max", "0"),
        ("devfs_ruleset", "4"),
        ("ip4", "disable"),
        ("ip6", "disable"),
    ] {
        assert_eq!(param(&params, key), Some(want), "{key}: {params:?}");
    }
    for flag in [
        "persist",
        "allow.nomount",
        "allow.noset_hostname",
        "allow.noraw_sockets",
    ] {
        assert!(params.iter().any(|p| p == flag), "{flag}: {params:?}");
    }

    // UTS: its own hostname.
    assert_eq!(out(&c.sh(&sb.id, "hostname").await), "web\n");
    // Processes: only the jail's own (this exec: sh and ps).
    let r = c.sh(&sb.id, "ps -ax -o pid=").await;
    let pids: Vec<u32> = out(&r)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        !pids.contains(&bystander.id()),
        "host pid visible: {pids:?}"
    );
    assert!(!pids.contains(&d.pid()), "the daemon is visible: {pids:?}");
    assert!(
        pids.len() <= 3,
        "{} processes visible: {pids:?}",
        pids.len()
    );
    // The jail's privileges, as the kernel reports them inside.
    let r = c
        .sh(
            &sb.id,
            "for s in security.jail.jailed security.jail.mount_allowed \
             security.jail.set_hostname_allowed security.jail.allow_raw_sockets \
             security.jail.sysvipc_allowed security.jail.enforce_statfs kern.securelevel; \
             do echo \"$s=$(sysctl -n $s)\"; done",
        )
        .await;
    assert_eq!(
        out(&r),
        "security.jail.jailed=1\nsecurity.jail.mount_allowed=0\n\
         security.jail.set_hostname_allowed=0\nsecurity.jail.allow_raw_sockets=0\n\
         security.jail.sysvipc_allowed=0\nsecurity.jail.enforce_statfs=2\nkern.securelevel=2\n",
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Root inside can neither mount, rename the jail, lower the
    // securelevel, nor reach host files or devices.
    let probes: &[(&str, &str)] = &[
        ("mount tmpfs", "mount -t tmpfs tmpfs /tmp"),
        ("mount nullfs", "mount_nullfs /bin /tmp"),
        ("mount devfs", "mount -t devfs devfs /tmp"),
        ("set the hostname", "hostname evil"),
        ("lower the securelevel", "sysctl kern.securelevel=0"),
        ("read a host file", &format!("cat {}", secret.display())),
        ("open /dev/mem", "test -e /dev/mem"),
        ("open /dev/kmem", "test -e /dev/kmem"),
        ("open /dev/bpf", "test -e /dev/bpf"),
        (
            "create a child jail",
            "jail -c path=/ command=/usr/bin/true",
        ),
        ("raw socket (ping)", "ping -c 1 -t 1 127.0.0.1"),
    ];
    for (what, script) in probes {
        let r = root_sh(&mut c, &sb.id, &format!("{script} >/dev/null 2>&1")).await;
        assert_ne!(code(&r), 0, "{what} succeeded as root inside");
    }
    assert_eq!(out(&c.sh(&sb.id, "hostname").await), "web\n");
    // Mounts made inside are impossible; mounts made for it are invisible
    // beyond its root (enforce_statfs=2): every mount point it sees is
    // inside the jail.
    let r = c.sh(&sb.id, "mount -p | awk '{print $2}'").await;
    for on in out(&r).lines() {
        assert!(
            !on.contains("/sandboxes/"),
            "a host path shows in the jail: {on}"
        );
    }

    c.destroy(&sb.id).await;
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    let _ = bystander.kill();
    let _ = bystander.wait();
    d.finish().await;
}

#[tokio::test]
async fn the_sandboxd_binary_is_masked_in_host_image_jails() {
    if skip_unless_freebsd("the_sandboxd_binary_is_masked_in_host_image_jails") {
        return;
    }
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_sandboxd")).expect("sandboxd");
    let shown = ["/bin", "/sbin", "/lib", "/libexec", "/usr", "/etc"]
        .iter()
        .any(|d| exe.starts_with(d));
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let path = exe.display().to_string();
    let row = sb
        .isolation
        .clone()
        .expect("report")
        .properties
        .into_iter()
        .find(|r| r.property == pb::IsolationProperty::Filesystem as i32)
        .expect("filesystem row");
    let r = root_sh(
        &mut c,
        &sb.id,
        &format!(
            "if [ -e {path} ]; then stat -f '%z %Lp' {path}; \
             {path} --version >/dev/null 2>&1 && echo ran; \
             else echo absent; fi"
        ),
    )
    .await;
    if !shown {
        // Outside the host image's directories (e.g. a build tree under
        // /root or /tmp): the jail cannot see it at all.
        eprintln!(
            "NOTE the_sandboxd_binary_is_masked_in_host_image_jails: {path} is not under a directory the host image mounts; checking it is absent"
        );
        assert_eq!(out(&r), "absent\n");
    } else if row.caveats.contains("NOT masked") {
        // FreeBSD before 13.2: the report says it, and it is true.
        assert!(out(&r).contains("ran"), "{}: {}", row.caveats, out(&r));
    } else {
        // An empty, mode-000, noexec file: root can neither read nor run
        // anything there.
        assert_eq!(out(&r), "0 0\n", "{path} inside: {}", out(&r));
        let (_, mounts) = host("/sbin/mount", &["-p"]);
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&sb.id) && l.contains(&path)),
            "no mask mount for {path}: {mounts}"
        );
    }
    c.destroy(&sb.id).await;
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn exit_codes_signals_and_output_are_reported() {
    if skip_unless_freebsd("exit_codes_signals_and_output_are_reported") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let r = c.sh(&sb.id, "echo out; echo err >&2; exit 7").await;
    assert_eq!(out(&r), "out\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    let exit = r.exit.expect("exit");
    assert_eq!(
        (exit.reason, exit.exit_code),
        (pb::ExitReason::Exited as i32, 7)
    );
    let r = c.sh(&sb.id, "kill -9 $$").await;
    assert_eq!(
        r.exit.expect("exit").reason,
        pb::ExitReason::Signaled as i32
    );
    // The default user is not root; root is asked for explicitly.
    assert_ne!(out(&c.sh(&sb.id, "id -u").await), "0\n");
    assert_eq!(out(&root_sh(&mut c, &sb.id, "id -u").await), "0\n");
    // A PROCESS sandbox ends with its main process, and says how.
    let main = c
        .create(pb::SandboxSpec {
            process: Some(argv(&["/bin/sh", "-c", "exit 3"])),
            ..Default::default()
        })
        .await;
    let w = tokio::time::timeout(
        Duration::from_secs(30),
        c.sandboxes.wait_sandbox(pb::WaitSandboxRequest {
            id: main.id.clone(),
        }),
    )
    .await
    .expect("the main process ends")
    .expect("wait")
    .into_inner();
    let exit = w.exit.expect("exit");
    assert_eq!(
        (exit.reason, exit.exit_code),
        (pb::ExitReason::Exited as i32, 3)
    );
    for id in [&sb.id, &main.id] {
        c.destroy(id).await;
        assert_eq!(leftovers(&d, id), Vec::<String>::new());
    }
    d.finish().await;
}

#[tokio::test]
async fn none_has_no_network_and_loopback_has_its_own() {
    if skip_unless_freebsd("none_has_no_network_and_loopback_has_its_own") {
        return;
    }
    let vimage = host_sysctl_on("kern.features.vimage");
    let d = Daemon::start();
    let mut c = d.clients().await;

    // NONE: no IPv4 at all, not even 127.0.0.1.
    let none = c.create(idle(pb::NetworkMode::None)).await;
    assert_eq!(
        out(&c.sh(&none.id, &self_connect("127.0.0.1", 7777)).await),
        "end\n"
    );
    assert_eq!(
        out(&c.sh(&none.id, &can_listen("0.0.0.0", 7778)).await),
        "end\n"
    );

    // LOOPBACK: its own 127.0.0.1 works.
    let lo = c.create(idle(pb::NetworkMode::Loopback)).await;
    assert_eq!(
        out(&c.sh(&lo.id, &self_connect("127.0.0.1", 7777)).await),
        "hello\nend\n"
    );
    let params = jail_params(&jail_name(&lo.id));
    let alias = if vimage {
        // A vnet jail: lo0 is its own, with 127.0.0.1.
        assert_eq!(param(&params, "vnet"), Some("new"), "{params:?}");
        let r = c.sh(&lo.id, "ifconfig lo0").await;
        assert!(out(&r).contains("inet 127.0.0.1 "), "{}", out(&r));
        None
    } else {
        // The host's lo0 carries the per-sandbox alias the jail's
        // 127.0.0.1 maps to, and the daemon's record lists it.
        let a = param(&params, "ip4.addr").expect("ip4.addr").to_owned();
        assert!(a.starts_with("127."), "{a}");
        let (_, lo0) = host("/sbin/ifconfig", &["lo0"]);
        assert!(lo0.contains(&format!("inet {a} ")), "{a} not on lo0: {lo0}");
        let record =
            std::fs::read_to_string(d.state.join("sandboxes").join(&lo.id).join("hostnet.json"))
                .expect("hostnet.json");
        assert!(record.contains(&a), "{record}");
        Some(a)
    };
    // A listener inside is not reachable from a NONE sandbox.
    assert_eq!(
        out(&c.sh(&none.id, &self_connect("127.0.0.1", 7779)).await),
        "end\n"
    );
    for id in [&none.id, &lo.id] {
        c.destroy(id).await;
        assert_eq!(leftovers(&d, id), Vec::<String>::new());
    }
    if let Some(a) = alias {
        let (_, lo0) = host("/sbin/ifconfig", &["lo0"]);
        assert!(!lo0.contains(&format!("inet {a} ")), "{a} left on lo0");
    }
    d.finish().await;
}

#[tokio::test]
async fn the_loopback_alias_is_removed_after_a_supervisor_sigkill() {
    if skip_unless_freebsd("the_loopback_alias_is_removed_after_a_supervisor_sigkill") {
        return;
    }
    if host_sysctl_on("kern.features.vimage") {
        eprintln!(
            "SKIPPED the_loopback_alias_is_removed_after_a_supervisor_sigkill: this kernel has VIMAGE, so LOOPBACK is a vnet jail and there is no host alias to leak"
        );
        return;
    }
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.create(idle(pb::NetworkMode::Loopback)).await;
    let params = jail_params(&jail_name(&sb.id));
    let a = param(&params, "ip4.addr").expect("ip4.addr").to_owned();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(sb.supervisor_pid).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill supervisor");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.destroy(&sb.id).await;
    let (_, lo0) = host("/sbin/ifconfig", &["lo0"]);
    assert!(!lo0.contains(&format!("inet {a} ")), "{a} leaked on lo0");
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn host_network_needs_the_daemons_permission() {
    if skip_unless_freebsd("host_network_needs_the_daemons_permission") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.clients().await;
    let err = create_err(&mut c, idle(pb::NetworkMode::Host)).await;
    assert_eq!(
        err.code(),
        tonic::Code::PermissionDenied,
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("--allow-host-network"),
        "{}",
        err.message()
    );
    drop(c);
    d.finish().await;

    let d = Daemon::start_with(&["--allow-host-network"]);
    let mut c = d.clients().await;
    let sb = c.create(idle(pb::NetworkMode::Host)).await;
    let params = jail_params(&jail_name(&sb.id));
    assert_eq!(param(&params, "ip4"), Some("inherit"), "{params:?}");
    // The jail sees the host's addresses.
    let (_, host_if) = host("/sbin/ifconfig", &["-a", "inet"]);
    let first = host_if
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet "))
        .filter_map(|l| l.split_whitespace().next())
        .find(|a| !a.starts_with("127."))
        .map(str::to_owned);
    if let Some(a) = first {
        let r = c.sh(&sb.id, "ifconfig -a inet").await;
        assert!(out(&r).contains(&format!("inet {a} ")), "{a}: {}", out(&r));
    }
    c.destroy(&sb.id).await;
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn restricted_binds_only_its_leased_address() {
    if skip_unless_freebsd("restricted_binds_only_its_leased_address") {
        return;
    }
    if !host("/sbin/ifconfig", &["lo1"]).0 {
        eprintln!(
            "SKIPPED restricted_binds_only_its_leased_address: needs the alias interface lo1 (cloned_interfaces=\"lo1\" in rc.conf, or `ifconfig lo1 create`)"
        );
        return;
    }
    let (_, all) = host("/sbin/ifconfig", &["-a"]);
    assert!(
        !all.contains("inet 203.0.113."),
        "this host uses 203.0.113.0/24: the test needs it to itself"
    );
    // A /28 of 203.0.113.0/24 (TEST-NET-3) of its own for this run.
    let base = (std::process::id() % 15 + 1) * 16;
    let pool = format!("203.0.113.{base}/28");
    let d = Daemon::start_with(&["--net-pool", &pool]);
    let mut c = d.clients().await;
    let sb = c.create(idle(pb::NetworkMode::Restricted)).await;
    let [leased] = sb.addresses.as_slice() else {
        panic!("one leased address: {:?}", sb.addresses);
    };
    assert!(leased.starts_with("203.0.113."), "{leased}");
    let (_, lo1) = host("/sbin/ifconfig", &["lo1"]);
    assert!(lo1.contains(&format!("inet {leased} ")), "{lo1}");
    let params = jail_params(&jail_name(&sb.id));
    assert_eq!(param(&params, "ip4.addr"), Some(leased.as_str()));
    // Its own address works; another one of the pool cannot be bound.
    assert_eq!(
        out(&c.sh(&sb.id, &self_connect(leased, 7777)).await),
        "hello\nend\n"
    );
    let other = format!("203.0.113.{}", base + 9);
    assert_eq!(
        out(&c.sh(&sb.id, &can_listen(&other, 7778)).await),
        "end\n",
        "bound {other}"
    );
    // Inside, only its own address is configured.
    let r = c.sh(&sb.id, "ifconfig -a inet").await;
    let seen: Vec<&str> = out(&r)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|a| if a == leased { "leased" } else { "other" })
        .collect();
    assert_eq!(seen, ["leased"], "{}", out(&r));
    c.destroy(&sb.id).await;
    let (_, lo1) = host("/sbin/ifconfig", &["lo1"]);
    assert!(
        !lo1.contains(&format!("inet {leased} ")),
        "{leased} left on lo1"
    );
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn memory_limit_is_an_rctl_rule_or_reported_not_enforced() {
    if skip_unless_freebsd("memory_limit_is_an_rctl_rule_or_reported_not_enforced") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.clients().await;
    let row = capability(&mut c, pb::IsolationProperty::MemoryLimit).await;
    let limited = |requirement| pb::SandboxSpec {
        limits: Some(pb::Limits {
            memory_bytes: limit(64 << 20, requirement),
            ..Default::default()
        }),
        ..idle(pb::NetworkMode::None)
    };
    if row.level != pb::EnforcementLevel::Enforced as i32 {
        // racct off: the matrix says so, and a REQUIRED limit is refused.
        assert_eq!(
            row.level,
            pb::EnforcementLevel::NotEnforced as i32,
            "{row:?}"
        );
        assert!(row.caveats.contains("kern.racct.enable"), "{row:?}");
        let err = create_err(&mut c, limited(pb::Requirement::Required)).await;
        assert_eq!(
            err.code(),
            tonic::Code::FailedPrecondition,
            "{}",
            err.message()
        );
        eprintln!(
            "NOTE memory_limit_is_an_rctl_rule_or_reported_not_enforced: kern.racct.enable=0, checked the NOT_ENFORCED row and the refusal only"
        );
        drop(c);
        d.finish().await;
        return;
    }
    let sb = c.create(limited(pb::Requirement::Required)).await;
    let name = jail_name(&sb.id);
    let (_, rules) = host("/usr/bin/rctl", &[&format!("jail:{name}")]);
    assert!(
        rules.contains(&format!("jail:{name}:memoryuse:deny=67108864")),
        "{rules}"
    );
    let got = c
        .sandboxes
        .get_sandbox(pb::GetSandboxRequest { id: sb.id.clone() })
        .await
        .expect("get")
        .into_inner()
        .sandbox
        .expect("sb");
    assert!(
        got.usage.and_then(|u| u.memory_bytes).is_some(),
        "usage.memory_bytes from racct"
    );
    // A hog: FreeBSD's memoryuse:deny does not fail allocations, the VM
    // daemon takes pages back from the jail. What must hold is the jail's
    // resident memory, or the hog is gone.
    c.sh(&sb.id, "tail /dev/zero >/dev/null 2>&1 & echo started")
        .await;
    let mut worst = 0u64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, usage) = host("/usr/bin/rctl", &["-u", &format!("jail:{name}")]);
        let used = usage
            .lines()
            .find_map(|l| l.strip_prefix("memoryuse="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        worst = worst.max(used);
    }
    assert!(
        worst <= (64 << 20) + (16 << 20),
        "the jail held {worst} bytes resident under a 64 MiB memoryuse:deny"
    );
    c.destroy(&sb.id).await;
    assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn pids_and_address_space_limits_refuse_the_hog() {
    if skip_unless_freebsd("pids_and_address_space_limits_refuse_the_hog") {
        return;
    }
    let d = Daemon::start();
    let mut c = d.clients().await;
    // RLIMIT_AS needs no racct: a 256 MiB buffer cannot be had under 64.
    let sb = c
        .create(pb::SandboxSpec {
            limits: Some(pb::Limits {
                address_space_bytes: limit(64 << 20, pb::Requirement::Required),
                ..Default::default()
            }),
            ..idle(pb::NetworkMode::None)
        })
        .await;
    let r = c
        .sh(&sb.id, "dd if=/dev/zero of=/dev/null bs=256m count=1")
        .await;
    let exit = r.exit.expect("exit");
    assert_eq!(exit.reason, pb::ExitReason::Exited as i32, "{exit:?}");
    assert_ne!(exit.exit_code, 0, "dd got 256 MiB under RLIMIT_AS=64 MiB");
    c.destroy(&sb.id).await;

    let row = capability(&mut c, pb::IsolationProperty::PidsLimit).await;
    if row.level == pb::EnforcementLevel::Enforced as i32 {
        let sb = c
            .create(pb::SandboxSpec {
                limits: Some(pb::Limits {
                    pids: limit(32, pb::Requirement::Required),
                    ..Default::default()
                }),
                ..idle(pb::NetworkMode::None)
            })
            .await;
        // The shell gives up when fork fails; the sleeps it started stay.
        c.sh(
            &sb.id,
            "i=0; while [ $i -lt 100 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done",
        )
        .await;
        let (_, usage) = host(
            "/usr/bin/rctl",
            &["-u", &format!("jail:{}", jail_name(&sb.id))],
        );
        let procs = usage
            .lines()
            .find_map(|l| l.strip_prefix("maxproc="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("maxproc usage");
        assert!(procs <= 32, "{procs} processes despite maxproc:deny=32");
        assert!(procs >= 20, "the bomb did fork ({procs})");
        c.destroy(&sb.id).await;
        assert_eq!(leftovers(&d, &sb.id), Vec::<String>::new());
    } else {
        assert!(row.caveats.contains("kern.racct.enable"), "{row:?}");
        eprintln!(
            "NOTE pids_and_address_space_limits_refuse_the_hog: kern.racct.enable=0, the pids part checked the NOT_ENFORCED row only"
        );
    }
    d.finish().await;
}
