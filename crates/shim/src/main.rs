//! `containerd-shim-sandboxd-v1`: containerd starts it for runtime
//! `io.containerd.sandboxd.v1` (see docs/containerd.md).

#[tokio::main]
async fn main() {
    containerd_shim::asynchronous::run::<containerd_shim_sandboxd::task::Shim>(
        "io.containerd.sandboxd.v1",
        None,
    )
    .await;
}
