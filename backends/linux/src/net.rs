//! The daemon side of RESTRICTED networking: creates what a
//! [`RoutedNetwork`] describes before the supervisor starts, and removes it
//! by the sandbox id alone (after a crash nothing else may be known).
//!
//! Netlink goes through rtnetlink on a throwaway thread per namespace: a
//! thread that `setns()`es changes only itself, so no daemon thread ever
//! leaves the host's network namespace. The namespace is pinned by a bind
//! mount at `<sandbox dir>/netns`, created first and removed last, so its
//! presence is the journal that says "something may need removing".

use std::fs::File;
use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use futures_util::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::address::AddressHeaderFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use sandboxd_core::fault;

use crate::plan::{NETNS_FILE, RoutedNetwork, host_link, nft_script, nft_table};
use crate::sys;

/// A failed network step.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request.
    #[error("{step}: {source}")]
    Netlink {
        /// The step.
        step: String,
        /// Cause.
        source: rtnetlink::Error,
    },
    /// A system call or file operation.
    #[error("{step}: {source}")]
    Io {
        /// The step.
        step: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `nft` failed or is missing.
    #[error("nft {action}: {message}")]
    Nft {
        /// "-f" (load) or "delete table".
        action: &'static str,
        /// nft's own message.
        message: String,
    },
}

impl NetError {
    /// The step that failed, for the API error.
    pub fn step(&self) -> String {
        match self {
            Self::Netlink { step, .. } | Self::Io { step, .. } => step.clone(),
            Self::Nft { action, .. } => format!("nft {action}"),
        }
    }
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let step = step.into();
    move |source| NetError::Io { step, source }
}

fn errno(step: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> NetError {
    let step = step.into();
    move |e| NetError::Io {
        step,
        source: std::io::Error::from(e),
    }
}

fn netlink(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let step = step.into();
    move |source| NetError::Netlink { step, source }
}

/// Where `nft` is installed, if it is.
pub fn nft_binary() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs `f` with a netlink handle bound to `netns` (the host's namespace
/// when `None`), on its own thread and current-thread runtime.
fn in_netns<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetError>>,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            if let Some(path) = netns {
                let ns = File::open(path).map_err(io(format!("open {}", path.display())))?;
                sys::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(errno(format!("setns {}", path.display())))?;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(io("start netlink runtime"))?;
            runtime.block_on(async move {
                // The socket is bound to this thread's namespace now.
                let (connection, handle, _) =
                    rtnetlink::new_connection().map_err(io("open netlink socket"))?;
                tokio::spawn(connection);
                f(handle).await
            })
        });
        worker.join().unwrap_or_else(|_| {
            Err(NetError::Io {
                step: "netlink thread".into(),
                source: std::io::Error::other("panicked"),
            })
        })
    })
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(netlink(format!("find link {name}"))(e)),
    }
}

async fn require_link(handle: &Handle, name: &str) -> Result<u32, NetError> {
    link_index(handle, name).await?.ok_or_else(|| NetError::Io {
        step: format!("find link {name}"),
        source: std::io::Error::from_raw_os_error(libc::ENODEV),
    })
}

async fn link_up(handle: &Handle, name: &str, index: u32) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("set {name} up")))
}

/// A /32 or /128, without duplicate address detection (nothing else on a
/// veth can hold it, and DAD would leave IPv6 unusable for a second).
async fn add_host_address(
    handle: &Handle,
    index: u32,
    a: IpAddr,
    link: &str,
) -> Result<(), NetError> {
    let prefix = if a.is_ipv4() { 32 } else { 128 };
    let mut req = handle.address().add(index, a, prefix);
    if a.is_ipv6() {
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
    }
    req.execute()
        .await
        .map_err(netlink(format!("add address {a}/{prefix} to {link}")))
}

/// Which route [`add_route`] adds.
#[derive(Clone, Copy)]
enum Route {
    /// To one address, on the link (scope link).
    To(IpAddr),
    /// Everything, via a gateway.
    DefaultVia(IpAddr),
}

async fn add_route(handle: &Handle, index: u32, route: Route, link: &str) -> Result<(), NetError> {
    let (message, what) = match route {
        Route::To(IpAddr::V4(a)) => (
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .scope(RouteScope::Link)
                .output_interface(index)
                .build(),
            format!("{a}"),
        ),
        Route::To(IpAddr::V6(a)) => (
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .output_interface(index)
                .build(),
            format!("{a}"),
        ),
        Route::DefaultVia(IpAddr::V4(gw)) => (
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            format!("default via {gw}"),
        ),
        Route::DefaultVia(IpAddr::V6(gw)) => (
            RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            format!("default via {gw}"),
        ),
    };
    handle
        .route()
        .add(message)
        .execute()
        .await
        .map_err(netlink(format!("add route {what} dev {link}")))
}

/// Creates the network namespace and pins it at `path`.
fn create_netns(path: &Path) -> Result<(), NetError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sys::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(errno("unshare network namespace"))?;
                // create_new: a leftover from an earlier sandbox is an error,
                // never silently reused.
                File::options()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io(format!("create {}", path.display())))?;
                sys::mount_fs(
                    Some(Path::new("/proc/thread-self/ns/net")),
                    path,
                    None,
                    nix::mount::MsFlags::MS_BIND,
                    None,
                )
                .map_err(errno(format!(
                    "pin network namespace at {}",
                    path.display()
                )))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetError::Io {
                    step: "network namespace thread".into(),
                    source: std::io::Error::other("panicked"),
                })
            })
    })
}

/// Turns on forwarding for the families the sandbox uses, as Docker does;
/// returns the sysctls it changed.
fn enable_forwarding(r: &RoutedNetwork) -> Result<Vec<&'static str>, NetError> {
    let mut files = vec!["/proc/sys/net/ipv4/ip_forward"];
    if r.has_ipv6() {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    let mut changed = Vec::new();
    for file in files {
        let now = std::fs::read_to_string(file).map_err(io(format!("read {file}")))?;
        if now.trim() != "1" {
            std::fs::write(file, "1").map_err(io(format!("write {file}")))?;
            changed.push(file);
        }
    }
    Ok(changed)
}

fn nft(action: &'static str, args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
    let binary = nft_binary().ok_or_else(|| NetError::Nft {
        action,
        message: "the nft binary (nftables) is not installed".into(),
    })?;
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("start nft"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(io("write nft script"))?;
    }
    let out = child.wait_with_output().map_err(io("wait for nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nft {
            action,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Builds everything `r` describes. On error, [`teardown`] removes
/// whatever part exists.
pub fn setup(r: &RoutedNetwork) -> Result<(), NetError> {
    create_netns(&r.netns)?;
    injected(fault::NETNS)?;
    let ns = File::open(&r.netns).map_err(io(format!("open {}", r.netns.display())))?;
    // 1. The veth pair, its peer born inside the namespace; the gateway
    //    addresses on the host side.
    in_netns(None, |h| async move {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(r.sandbox_link.clone())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let veth = LinkVeth::new(&r.host_link, &r.sandbox_link)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .map_err(netlink(format!("create veth {}", r.host_link)))?;
        let index = require_link(&h, &r.host_link).await?;
        for gw in &r.gateways {
            add_host_address(&h, index, *gw, &r.host_link).await?;
        }
        link_up(&h, &r.host_link, index).await
    })?;
    injected(fault::VETH)?;
    // 2. Inside: lo, the addresses, routes through the gateways.
    in_netns(Some(&r.netns), |h| async move {
        let lo = require_link(&h, "lo").await?;
        link_up(&h, "lo", lo).await?;
        let index = require_link(&h, &r.sandbox_link).await?;
        for a in &r.addresses {
            add_host_address(&h, index, *a, &r.sandbox_link).await?;
        }
        link_up(&h, &r.sandbox_link, index).await?;
        for gw in &r.gateways {
            add_route(&h, index, Route::To(*gw), &r.sandbox_link).await?;
            add_route(&h, index, Route::DefaultVia(*gw), &r.sandbox_link).await?;
        }
        Ok(())
    })?;
    injected(fault::SANDBOX_ADDRESSES)?;
    // 3. The host's routes to the sandbox, forwarding, the firewall table.
    in_netns(None, |h| async move {
        let index = require_link(&h, &r.host_link).await?;
        for a in &r.addresses {
            add_route(&h, index, Route::To(*a), &r.host_link).await?;
        }
        Ok(())
    })?;
    injected(fault::HOST_ROUTES)?;
    for file in enable_forwarding(r)? {
        tracing::info!(
            sysctl = file,
            "turned on IP forwarding for RESTRICTED sandboxes"
        );
    }
    // localhost:PORT forwards (see plan::network): the host link's own
    // switch, gone with the link.
    if let Some(file) = crate::plan::route_localnet_sysctl(r) {
        std::fs::write(&file, "1").map_err(|e| NetError::Io {
            step: "enable route_localnet".to_owned(),
            source: std::io::Error::new(e.kind(), format!("{}: {e}", file.display())),
        })?;
    }
    nft("-f", &["-f", "-"], Some(&nft_script(r)))?;
    injected(fault::NFT)
}

/// A test build's injected failure, as a failed step.
fn injected(step: &'static str) -> Result<(), NetError> {
    fault::check(step).map_err(|e| NetError::Io {
        step: step.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Removes the network of sandbox `id` whose directory is `dir`: its nft
/// table, its host link (the peer dies with it), and the pinned namespace
/// last. Succeeds when there is nothing to remove.
pub fn teardown(id: &str, dir: &Path) -> Result<(), NetError> {
    let netns = dir.join(NETNS_FILE);
    if std::fs::symlink_metadata(&netns).is_err() {
        return Ok(());
    }
    let table = nft_table(id);
    match nft("delete table", &["delete", "table", "inet", &table], None) {
        Err(NetError::Nft { message, .. })
            if message.contains("No such file or directory") || nft_binary().is_none() => {}
        other => other?,
    }
    let link = host_link(id);
    in_netns(None, |h| async move {
        if let Some(index) = link_index(&h, &link).await? {
            h.link()
                .del(index)
                .execute()
                .await
                .map_err(netlink(format!("delete link {link}")))?;
        }
        Ok(())
    })?;
    match sys::detach(&netns) {
        // EINVAL: not a mount point (the create stopped before pinning it).
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(errno(format!("unmount {}", netns.display()))(e)),
    }
    std::fs::remove_file(&netns).map_err(io(format!("remove {}", netns.display())))
}
