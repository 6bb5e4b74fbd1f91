//! `containerd-shim-sandboxd-v1`: containerd starts it for runtime
//! `io.containerd.sandboxd.v1` (see docs/containerd.md).

#[cfg(target_os = "linux")]
#[tokio::main]
async fn main() {
    containerd_shim::asynchronous::run::<containerd_shim_sandboxd::task::Shim>(
        "io.containerd.sandboxd.v1",
        None,
    )
    .await;
}

/// containerd's ttrpc crate does not build here yet: say so instead of
/// pretending to be a shim.
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!(
        "containerd-shim-sandboxd-v1: the ttrpc task service is built only on Linux for now (containerd's ttrpc crate does not support this OS); see docs/containerd.md"
    );
    std::process::exit(1);
}
