//! The zygote (Linux): supervisors are forked by one long-lived
//! `sandboxd __zygote`, not exec'd per sandbox. A forked supervisor must be
//! indistinguishable where it matters: the daemon's child (it waits for it
//! and, after a restart, finds it by its arguments `<exe> __supervise
//! <id>`), with the helpers' environment only. A dead zygote is reaped and
//! replaced, and creates keep working.

use std::time::{Duration, Instant};

use crate::harness::{Daemon, process_exists, runs_supervisor_of};

/// The `/proc/<pid>/stat` parent pid.
fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The daemon's children whose second argument is `__zygote`.
fn zygotes_of(daemon: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| ppid_of(*pid) == Some(daemon))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|a| a.split(|b| *b == 0).nth(1) == Some(b"__zygote".as_slice()))
        })
        .collect()
}

/// Where the binary's first mapping starts: a forked process keeps its
/// parent's (one exec, one randomised layout); an exec'd one gets its own.
fn image_base(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .next()
        .and_then(|l| l.split('-').next())
        .expect("first mapping")
        .to_owned()
}

/// Waits for the daemon to have exactly one zygote and returns it.
async fn the_zygote(d: &Daemon, not: Option<u32>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let z = zygotes_of(d.pid());
        if let [one] = z[..] {
            if Some(one) != not {
                return one;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon's zygotes: {z:?} (not {not:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A supervisor is forked by the zygote, is the daemon's child, names
/// itself as an exec'd one does, and has only the helpers' environment.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the zygote is Linux-only (PR_SET_MM, pidfds); elsewhere helpers are exec'd"
)]
#[tokio::test]
async fn supervisors_are_forked_by_the_zygote_as_the_daemons_named_children() {
    let d = Daemon::start();
    let zygote = the_zygote(&d, None).await;
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let sup = u32::try_from(sb.supervisor_pid).expect("pid");
    assert_eq!(ppid_of(sup), Some(d.pid()), "the supervisor's parent");
    assert!(runs_supervisor_of(sup, &sb.id), "its arguments name it");
    assert_eq!(
        image_base(sup),
        image_base(zygote),
        "forked from the zygote, not exec'd"
    );
    let environ = std::fs::read(format!("/proc/{sup}/environ")).expect("environ");
    for var in environ.split(|b| *b == 0).filter(|v| !v.is_empty()) {
        let var = String::from_utf8_lossy(var);
        assert!(
            var.starts_with("SANDBOXD_"),
            "the supervisor inherited {var:?}"
        );
    }
    assert!(c.destroy(&sb.id).await);
    // Its teardown may finish just after the reply.
    let reaped = crate::harness::settled(|| {
        if process_exists(sup) {
            vec![format!("supervisor {sup}")]
        } else {
            Vec::new()
        }
    });
    assert!(reaped.is_empty(), "the supervisor was reaped: {reaped:?}");
    drop(c);
    d.finish().await;
}

/// A killed zygote is reaped and replaced; creates still work, through
/// the new one.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the zygote is Linux-only (PR_SET_MM, pidfds); elsewhere helpers are exec'd"
)]
#[tokio::test]
async fn a_dead_zygote_is_reaped_and_replaced() {
    let d = Daemon::start();
    let old = the_zygote(&d, None).await;
    // Past the restart-at-once age (a zygote that dies young is replaced
    // at the next create instead).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(old).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the zygote");
    let new = the_zygote(&d, Some(old)).await;
    assert!(!process_exists(old), "the old zygote was reaped");
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let sup = u32::try_from(sb.supervisor_pid).expect("pid");
    assert_eq!(image_base(sup), image_base(new), "forked by the new zygote");
    assert!(c.destroy(&sb.id).await);

    // One that dies young is replaced by the next create.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(new).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the new zygote");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(new) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process_exists(new), "the young zygote was reaped");
    let sb = c.idle("host").await;
    let third = the_zygote(&d, Some(new)).await;
    let sup = u32::try_from(sb.supervisor_pid).expect("pid");
    assert_eq!(
        image_base(sup),
        image_base(third),
        "forked by a third zygote"
    );
    assert!(c.destroy(&sb.id).await);
    drop(c);
    d.finish().await;
}
