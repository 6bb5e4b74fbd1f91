//! The per-sandbox supervisor: a single-threaded helper process.
//!
//! The tokio daemon never enters a namespace, chroot or jail itself (those
//! calls act on the whole multi-threaded process, or fail). Instead it
//! re-executes its own binary in helper mode, handing it one end of a
//! socketpair. That helper runs [`supervise`]: it builds the sandbox through a
//! backend's [`Isolation`] (mounts, jail, namespaces), starts the main process
//! and every Exec'd process in forked children that enter the sandbox, drop
//! privileges and exec, reaps them all (as a subreaper where the OS has one),
//! and reports every start and exit to the daemon as framed
//! [`sandboxd_core::wire`] messages. It keeps the sandbox alive if the daemon
//! goes away and persists the sandbox's exit status to the state dir.
//!
//! [`channel`] also gives the daemon the descriptor-passing send/receive it
//! uses on its end of the socketpair. Every system call (nix or libc) lives
//! in [`sys`], one function per kernel operation; the other modules call
//! those. The process must stay single-threaded: [`supervise`] checks it
//! and forks with [`sys::fork_unchecked`].

mod cgroup_weight;
mod channel;
pub mod images;
mod launch;
mod logs;
pub mod procs;
mod report;
#[cfg(target_os = "linux")]
pub mod seccomp;
mod step;
mod supervisor;
pub mod sys;
pub mod timing;
pub mod zygote;

pub use channel::{Channel, RecvOutcome};
pub use launch::{DEFAULT_PATH, ExecPlan, die_with, exec_main_in_place};
pub use logs::MainOutput;
pub use procs::SUPERVISE_ARG;
pub use step::Step;
pub use supervisor::{
    CONTROL_SOCKET, CommonConfig, ExitFile, Isolation, LaunchConfig, Rlimit, RlimitKind, StepError,
    helper_main, now_ms, supervise,
};
