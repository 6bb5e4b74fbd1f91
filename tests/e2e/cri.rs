//! Kubernetes' path into sandboxd: containerd's CRI plugin with the runtime
//! handler `sandboxd` (runtime type io.containerd.sandboxd.v1), driven over
//! the CRI socket by a client generated from the CRI v1 protos (the
//! `k8s-cri` crate) in kubelet's order: RunPodSandbox → CreateContainer →
//! StartContainer → ExecSync → StopPodSandbox → RemovePodSandbox.
//! docs/containerd.md#pods-cri has the mapping this checks.
//!
//! `cri_pod_lifecycle_through_the_cri_socket` runs a pod on the node's
//! network (NamespaceMode NODE, no CNI); `cri_pod_with_cni_networking` one
//! in the network namespace the CRI plugin prepares and configures through
//! CNI (bridge + host-local), which its sandbox joins (mode NAMESPACE).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::containerd::{
    Containerd, RUNTIME, assert_no_mounts, eventually, oci_image, sandboxes, summary, tail, verify,
};
use crate::harness::{Daemon, ScratchDir};

/// The runtime handler name kubelet's RuntimeClass would use.
const HANDLER: &str = "sandboxd";
/// The pause-like image the CRI plugin starts as each pod's sandbox container.
const PAUSE: &str = "docker.io/library/sandboxd-pause:e2e";
/// The containers' image.
const BUSYBOX: &str = "docker.io/library/sandboxd-cri-busybox:e2e";

async fn connect(socket: &Path) -> RuntimeServiceClient<Channel> {
    let socket = socket.to_owned();
    let channel = Endpoint::try_from("http://[::]")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to the CRI socket");
    RuntimeServiceClient::new(channel)
}

/// The pod a sandbox belongs to, by the shim's label.
fn pod_label(sb: &sandboxd_proto::v1::Sandbox) -> Option<&String> {
    sb.spec
        .as_ref()
        .and_then(|s| s.labels.get("io.kubernetes.cri.sandbox-id"))
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .expect("hostname")
        .to_string_lossy()
        .into_owned()
}

fn pod_config(logs: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "e2e-pod".into(),
            uid: "e2e-pod-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // A host-network pod is named after the node (kubelet does so too).
        hostname: host_name(),
        log_directory: logs.to_str().expect("utf-8").into(),
        labels: HashMap::from([("app".into(), "e2e".into())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What kubelet asks of a host-network pod with `shareProcessNamespace:
/// true`, for the pod and (in each container's security context, which is
/// what the CRI plugin reads) its containers: the node's network, the
/// pod's IPC and pid namespaces.
fn pod_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Pod as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The cpu weight file of process `pid`'s cgroup on the host and its
/// value: v1 `cpu.shares` where a v1 hierarchy holds the cpu controller,
/// else v2 `cpu.weight` (from `/proc/<pid>/cgroup` and mountinfo).
fn cpu_weight_file(pid: &str) -> (String, String) {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let v1 = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == "cpu")
            .then(|| path.to_owned())
    });
    let (path, fstype, file) = match v1 {
        Some(path) => (path, "cgroup", "cpu.shares"),
        None => (
            cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a v2 line")
                .to_owned(),
            "cgroup2",
            "cpu.weight",
        ),
    };
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let right: Vec<&str> = right.split(' ').collect();
            let cpu = fstype == "cgroup2" || right.get(2)?.split(',').any(|o| o == "cpu");
            (right.first() == Some(&fstype) && cpu)
                .then(|| left.split(' ').nth(4).map(str::to_owned))?
        })
        .expect("the cpu hierarchy's mount");
    let file = format!("{mount}{path}/{file}");
    let value = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    (file, value.trim().to_owned())
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)"
)]
#[tokio::test]
async fn cri_pod_lifecycle_through_the_cri_socket() {
    let dir = ScratchDir::new(format!("/tmp/sandboxd-e2e-cri-{}", std::process::id()));
    let ctd_dir = dir.join("ctd");
    let tasks = ctd_dir.join("state/io.containerd.runtime.v2.task");
    // The CRI plugin bind-mounts each pod's /etc/hosts, /etc/resolv.conf,
    // /etc/hostname (root) and its /dev/shm (state) into the containers:
    // sandboxd binds them only from directories it is told to allow.
    let cri_root = ctd_dir.join("root/io.containerd.grpc.v1.cri/sandboxes");
    let cri_state = ctd_dir.join("state/io.containerd.grpc.v1.cri/sandboxes");
    for d in [&tasks, &cri_root, &cri_state] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let daemon = Daemon::start_with(&[
        "--allow-rootfs-source",
        tasks.to_str().expect("utf-8"),
        "--allow-mount-source",
        cri_root.to_str().expect("utf-8"),
        "--allow-mount-source",
        cri_state.to_str().expect("utf-8"),
        // The pod is on the node's network (see the module comment).
        "--allow-host-network",
    ]);
    let cri_config = format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # sandboxd applies its own confinement; an AppArmor profile would be refused.
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    # No runc here: the only runtime is sandboxd.
    default_runtime_name = "{HANDLER}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "{RUNTIME}"
"#,
        cni = dir.join("cni").display(),
    );
    let mut ctd = Containerd::start_config(&ctd_dir, &daemon, Some(&cri_config));
    for (name, cmd) in [
        (PAUSE, &["/bin/sleep", "2147483647"][..]),
        (BUSYBOX, &["/bin/sh"][..]),
    ] {
        let image = oci_image(&dir, name, cmd);
        ctd.ctr_ok(&["image", "import", image.to_str().expect("utf-8")]);
    }
    let logs = dir.join("pod-logs");
    std::fs::create_dir_all(&logs).expect("logs");

    let mut rt = connect(&ctd.socket).await;
    let version = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(version.runtime_api_version, "v1", "{version:?}");

    let fail = |what: &str, e: tonic::Status, ctd: &Containerd| -> ! {
        panic!(
            "{what}: {e}\ncontainerd log tail:\n{}",
            tail(&ctd.log_text(), 60)
        )
    };
    let config = pod_config(&logs);
    let pod = match rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
    {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => fail("RunPodSandbox", e, &ctd),
    };
    // The pod's sandbox container is one sandbox, labelled with the pod.
    let sbs = sandboxes(&daemon).await;
    assert_eq!(sbs.len(), 1, "the pod's sandbox: {sbs:?}");
    assert_eq!(pod_label(&sbs[0]), Some(&pod), "{sbs:?}");

    let container = match rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into()],
                args: vec!["-c".into(), "echo started; exec sleep 1000".into()],
                log_path: "main/0.log".into(),
                // kubelet's OOM score for a Burstable pod; a 64 MiB limit;
                // the CPU shares of a 500m request (kubelet: 1024 per CPU).
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        oom_score_adj: 1000,
                        memory_limit_in_bytes: 64 << 20,
                        cpu_shares: 512,
                        ..Default::default()
                    }),
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(pod_namespaces()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        })
        .await
    {
        Ok(r) => r.into_inner().container_id,
        Err(e) => fail("CreateContainer", e, &ctd),
    };
    if let Err(e) = rt
        .start_container(cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
    {
        fail("StartContainer", e, &ctd);
    }
    // One shim serves the whole pod (containerd's grouping by the pod's
    // id, as with runc's shim): the container's task joined the pause's.
    let shims = ctd.shims();
    assert_eq!(shims.len(), 1, "one shim process for the pod: {shims:?}");
    // The container is its own sandbox, labelled with the same pod.
    let sbs = sandboxes(&daemon).await;
    assert_eq!(sbs.len(), 2, "pod and container: {sbs:?}");
    for sb in &sbs {
        assert_eq!(pod_label(sb), Some(&pod), "{sb:?}");
    }
    let main = sbs
        .iter()
        .find(|sb| {
            sb.spec
                .as_ref()
                .is_some_and(|s| s.labels.get("io.containerd.id") == Some(&container))
        })
        .expect("the container's sandbox");
    // It is a child of the pod's sandbox (spec.join): it shares the pod's
    // IPC namespace (a host-network pod's network and hostname are the
    // host's, so those are not joined).
    let pause = sbs
        .iter()
        .find(|sb| sb.id != main.id)
        .expect("the pod's sandbox");
    assert_eq!(
        main.spec.as_ref().and_then(|s| s.join.clone()),
        Some(sandboxd_proto::v1::SandboxJoin {
            sandbox_id: pause.id.clone(),
            network: false,
            ipc: true,
            uts: false,
            // shareProcessNamespace: the pause process's pid namespace.
            pid: true,
        }),
        "{main:?}"
    );
    let limits = main.spec.as_ref().and_then(|s| s.limits).expect("limits");
    assert_eq!(limits.memory_bytes.map(|l| l.value), Some(64 << 20));
    // CPU shares 512 → weight 1 + (510 × 9999) / 262142 = 20 (runc's
    // conversion); the pod's sandbox container has kubelet's minimum, 2 → 1.
    assert_eq!(limits.cpu_weight.map(|l| l.value), Some(20), "{limits:?}");
    let pause = sbs
        .iter()
        .find(|sb| sb.id != main.id)
        .expect("the pod's sandbox");
    let pause_weight = pause
        .spec
        .as_ref()
        .and_then(|s| s.limits)
        .and_then(|l| l.cpu_weight)
        .map(|l| l.value);
    assert_eq!(pause_weight, Some(1), "{pause:?}");
    // The OOM score is the container process's (set on the supervisor,
    // inherited by what it forks).
    let ps = ctd.ctr_ok(&["task", "ps", &container]);
    let pid = ps
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("the container's pid")
        .to_owned();
    let score = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).expect("score");
    assert_eq!(score.trim(), "1000", "the container's process {pid}");
    // The weight, read back from the host's cgroup of the container's
    // process: v2 cpu.weight 20, or v1 cpu.shares 20 × 1024 / 100 = 204.
    let (file, value) = cpu_weight_file(&pid);
    let want = if file.ends_with("cpu.shares") {
        "204"
    } else {
        "20"
    };
    assert_eq!(value, want, "{file} of the container's process {pid}");
    assert!(file.contains(&format!("/sandboxd/{}/", main.id)), "{file}");
    // Its isolation: VerifySandbox holds, and equals that of the same spec
    // created directly.
    let mut c = daemon.clients().await;
    let v = verify(&mut c, &main.id).await;
    assert!(v.consistent, "{v:#?}");
    assert!(!v.properties.is_empty() && !v.checks.is_empty(), "{v:#?}");
    for p in &v.properties {
        assert!(p.agrees, "{p:?}");
        if p.requested == sandboxd_proto::v1::Requirement::Required as i32 {
            assert_ne!(
                p.observed,
                sandboxd_proto::v1::ObservedResult::Violated as i32,
                "{p:?}"
            );
        }
    }
    let mut direct = main.spec.clone().expect("spec");
    direct.labels.clear();
    let direct = c.create(direct).await;
    let dv = verify(&mut c, &direct.id).await;
    assert_eq!(summary(&v), summary(&dv), "CRI-made vs direct");
    assert!(c.destroy(&direct.id).await);
    // The shared IPC namespace: a POSIX message queue the container makes
    // is in the pod's sandbox, not on the host.
    let made = c.sh(&main.id, "touch /dev/mqueue/cri-pod-queue").await;
    assert_eq!(made.exit.as_ref().map(|e| e.exit_code), Some(0), "{made:?}");
    let seen = c.sh(&pause.id, "ls /dev/mqueue").await;
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "cri-pod-queue\n");
    assert!(!std::path::Path::new("/dev/mqueue/cri-pod-queue").exists());
    drop(c);
    // The shared pid namespace (through the CRI socket, as kubectl exec):
    // the container sees the pause process, and its own shell is not pid 1.
    let seen = match rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["sh".into(), "-c".into(), "ps; echo pid=$$".into()],
            timeout: 10,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => fail("ExecSync ps", e, &ctd),
    };
    let listing = String::from_utf8_lossy(&seen.stdout);
    assert!(
        listing.contains("sleep 2147483647") && !listing.contains("pid=1\n"),
        "{seen:?}"
    );

    let exec = match rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo from-exec; cat /etc/hostname; echo err >&2; exit 3".into(),
            ],
            timeout: 10,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => fail("ExecSync", e, &ctd),
    };
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        format!("from-exec\n{}\n", host_name()),
        "{exec:?}"
    );
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "err\n");
    assert_eq!(exec.exit_code, 3);
    // The container's output reached the CRI log (through the shim's FIFOs).
    let log = logs.join("main/0.log");
    eventually("the container's log has its output", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("stdout F started"))
    })
    .await;

    // A field sandboxd cannot honour is refused naming it, and leaves no
    // sandbox: a cpuset (sandboxd does not pin CPUs).
    let pinned = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "pinned".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "1000".into()],
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        cpu_shares: 102,
                        cpuset_cpus: "0".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        })
        .await
        .expect("CreateContainer (the task is made at start)")
        .into_inner()
        .container_id;
    let err = rt
        .start_container(cri::StartContainerRequest {
            container_id: pinned,
        })
        .await
        .expect_err("a cpuset is refused");
    // The shim's INVALID_ARGUMENT, passed through by the CRI plugin.
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("linux.resources.cpu.cpus"),
        "{err:?}"
    );
    assert_eq!(sandboxes(&daemon).await.len(), 2, "no sandbox for it");

    if let Err(e) = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
    {
        fail("StopPodSandbox", e, &ctd);
    }
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    assert_eq!(
        status.status.as_ref().map(|s| s.state),
        Some(cri::PodSandboxState::SandboxNotready as i32),
        "{status:?}"
    );
    if let Err(e) = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
    {
        fail("RemovePodSandbox", e, &ctd);
    }
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner();
    assert!(pods.items.is_empty(), "pods left: {pods:?}");

    // Nothing left: no sandbox, no shim, no mount.
    let left = sandboxes(&daemon).await;
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    eventually("the shims exit", || ctd.shims().is_empty()).await;
    ctd.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_no_mounts(&dir);
    drop(ctd);
}

/// The bridge the CNI test's `bridge` plugin makes on the host, unique to
/// it; deleted when the test ends, however it ends.
const CNI_BRIDGE: &str = "sbxcni0";
/// The pod addresses: a documentation range no other test uses (the
/// network tests lease from 203.0.113.0/24 and keep their test hosts below
/// 198.51.100.192; their check that 198.51.100.0/24 is not on the host
/// leaves out `sbx*` links such as this bridge).
const CNI_SUBNET: &str = "198.51.100.192/27";
/// Debian's containernetworking-plugins (.ci/run installs it).
const CNI_BIN: &str = "/usr/lib/cni";
/// Where the CRI plugin (containerd 1.6/1.7) pins each pod's namespace,
/// and so the daemon's --allow-netns-source.
const NETNS_DIR: &str = "/var/run/netns";

/// Deletes a test's bridge (and its host address) on drop.
struct BridgeGuard(&'static str);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", self.0])
            .status();
    }
}

fn in_subnet(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| a.octets()[..3] == [198, 51, 100] && (192..224).contains(&a.octets()[3]))
}

/// A pod on the cluster network (network namespace mode POD: the CRI
/// plugin makes its namespace and configures it through CNI).
fn cni_pod_config(logs: &Path, hostname: &str) -> cri::PodSandboxConfig {
    let mut config = pod_config(logs);
    config.hostname = hostname.into();
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.network = cri::NamespaceMode::Pod as i32;
    }
    config
}

/// What a CNI pod test runs on: the host bridge (deleted on drop), its
/// directory, the CNI plugins' lease directory, the daemon, a private
/// containerd with the CRI plugin configured for CNI, and a CRI client.
struct CniSetup {
    _bridge: BridgeGuard,
    dir: ScratchDir,
    ipam: std::path::PathBuf,
    daemon: Daemon,
    ctd: Containerd,
    logs: std::path::PathBuf,
    rt: RuntimeServiceClient<Channel>,
}

/// A private CNI configuration (`bridge` on `bridge` with `subnet`,
/// `host-local`), a daemon (with `--allow-netns-source` for the CRI
/// plugin's namespaces when `allow_netns`), containerd's CRI plugin on it,
/// and the pause and busybox images imported.
async fn cni_setup(tag: &str, bridge: &'static str, subnet: &str, allow_netns: bool) -> CniSetup {
    assert!(
        Path::new(CNI_BIN).join("bridge").exists()
            && Path::new(CNI_BIN).join("host-local").exists(),
        "containernetworking-plugins is installed ({CNI_BIN}; .ci/run installs it)"
    );
    let _bridge = BridgeGuard(bridge);
    let dir = ScratchDir::new(format!(
        "/tmp/sandboxd-e2e-cri-{tag}-{}",
        std::process::id()
    ));
    let ctd_dir = dir.join("ctd");
    let tasks = ctd_dir.join("state/io.containerd.runtime.v2.task");
    let cri_root = ctd_dir.join("root/io.containerd.grpc.v1.cri/sandboxes");
    let cri_state = ctd_dir.join("state/io.containerd.grpc.v1.cri/sandboxes");
    let conf = dir.join("cni/conf");
    let ipam = dir.join("cni/ipam");
    for d in [&tasks, &cri_root, &cri_state, &conf, &ipam] {
        std::fs::create_dir_all(d).expect("dir");
    }
    std::fs::create_dir_all(NETNS_DIR).expect("netns dir");
    // bridge + host-local (private data dir), no masquerade: the pod's
    // address reaches the host's bridge and nothing beyond it. The CRI
    // plugin adds the loopback plugin itself.
    std::fs::write(
        conf.join("10-sbxcni.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "sbxcni",
            "plugins": [{
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": ipam,
                }
            }]
        })
        .to_string(),
    )
    .expect("cni conf");
    let mut flags = vec![
        "--allow-rootfs-source",
        tasks.to_str().expect("utf-8"),
        "--allow-mount-source",
        cri_root.to_str().expect("utf-8"),
        "--allow-mount-source",
        cri_state.to_str().expect("utf-8"),
    ];
    // The CRI plugin's CNI namespaces; no --allow-host-network.
    if allow_netns {
        flags.extend(["--allow-netns-source", NETNS_DIR]);
    }
    let daemon = Daemon::start_with(&flags);
    let cri_config = format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{HANDLER}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "{RUNTIME}"
"#,
        conf = conf.display(),
    );
    let ctd = Containerd::start_config(&ctd_dir, &daemon, Some(&cri_config));
    for (name, cmd) in [
        (PAUSE, &["/bin/sleep", "2147483647"][..]),
        (BUSYBOX, &["/bin/sh"][..]),
    ] {
        let image = oci_image(&dir, name, cmd);
        ctd.ctr_ok(&["image", "import", image.to_str().expect("utf-8")]);
    }
    let logs = dir.join("pod-logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let rt = connect(&ctd.socket).await;
    CniSetup {
        _bridge,
        dir,
        ipam,
        daemon,
        ctd,
        logs,
        rt,
    }
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "mode NAMESPACE and the shim's snapshots are Linux's: needs the Linux backend"
)]
#[tokio::test]
async fn cri_pod_with_cni_networking() {
    let CniSetup {
        _bridge,
        dir,
        ipam,
        daemon,
        mut ctd,
        logs,
        mut rt,
    } = cni_setup("cni", CNI_BRIDGE, CNI_SUBNET, true).await;
    let fail = |what: &str, e: tonic::Status, ctd: &Containerd| -> ! {
        panic!(
            "{what}: {e}\ncontainerd log tail:\n{}",
            tail(&ctd.log_text(), 60)
        )
    };
    let config = cni_pod_config(&logs, "e2e-cni-pod");
    let pod = match rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
    {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => fail("RunPodSandbox", e, &ctd),
    };
    // The CRI plugin reports the address CNI gave the pod.
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let ip = status
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(in_subnet(&ip), "the pod's IP {ip:?} is CNI's: {status:?}");
    // The pod's sandbox runs in the CRI plugin's namespace (mode NAMESPACE).
    let sbs = sandboxes(&daemon).await;
    assert_eq!(sbs.len(), 1, "the pod's sandbox: {sbs:?}");
    let pause = sbs[0].clone();
    let net = pause
        .spec
        .as_ref()
        .and_then(|s| s.network.clone())
        .expect("network");
    assert_eq!(
        net.mode,
        sandboxd_proto::v1::NetworkMode::Namespace as i32,
        "{pause:?}"
    );
    assert!(
        net.namespace_path.starts_with(&format!("{NETNS_DIR}/cni-")),
        "{net:?}"
    );
    let netns_file = std::path::PathBuf::from(&net.namespace_path);
    assert!(netns_file.exists());

    // Two containers: a web server on the pod's localhost and a client.
    let start = |name: &'static str, script: &'static str| {
        let config = config.clone();
        let pod = pod.clone();
        let rt = rt.clone();
        async move {
            let mut rt = rt;
            let id = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod,
                    config: Some(cri::ContainerConfig {
                        metadata: Some(cri::ContainerMetadata {
                            name: name.into(),
                            attempt: 0,
                        }),
                        image: Some(cri::ImageSpec {
                            image: BUSYBOX.into(),
                            ..Default::default()
                        }),
                        command: vec!["sh".into()],
                        args: vec!["-c".into(), script.into()],
                        log_path: format!("{name}/0.log"),
                        ..Default::default()
                    }),
                    sandbox_config: Some(config),
                })
                .await?
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
            Ok::<_, tonic::Status>(id)
        }
    };
    let web = match start(
        "web",
        "mkdir -p /tmp/www && echo pod-local > /tmp/www/index.html && exec /bin/busybox httpd -f -p 127.0.0.1:18081 -h /tmp/www",
    )
    .await
    {
        Ok(id) => id,
        Err(e) => fail("web container", e, &ctd),
    };
    let client = match start("client", "exec sleep 1000").await {
        Ok(id) => id,
        Err(e) => fail("client container", e, &ctd),
    };
    let _ = web;
    let exec = |cmd: &str| cri::ExecSyncRequest {
        container_id: client.clone(),
        cmd: vec!["sh".into(), "-c".into(), cmd.into()],
        timeout: 10,
    };
    // Inside: the pod's CNI address, and the other container on localhost.
    let r = rt
        .exec_sync(exec("cat /proc/net/fib_trie; /bin/busybox ip -o addr"))
        .await
        .expect("ExecSync")
        .into_inner();
    let inside = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(inside.contains(&ip), "{ip} inside:\n{inside}");
    let mut page = String::new();
    for _ in 0..50 {
        let r = rt
            .exec_sync(exec(
                "/bin/busybox wget -q -O - http://127.0.0.1:18081/index.html",
            ))
            .await
            .expect("ExecSync")
            .into_inner();
        page = String::from_utf8_lossy(&r.stdout).into_owned();
        if page.contains("pod-local") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        page, "pod-local\n",
        "the web container on the pod's localhost"
    );
    // The containers are children sharing the pod sandbox's network.
    let sbs = sandboxes(&daemon).await;
    assert_eq!(sbs.len(), 3, "pod and two containers: {sbs:?}");
    for sb in sbs.iter().filter(|s| s.id != pause.id) {
        let join = sb.spec.as_ref().and_then(|s| s.join.clone()).expect("join");
        assert!(join.network && join.sandbox_id == pause.id, "{sb:?}");
    }
    // VerifySandbox of the pod's sandbox: consistent, its namespace seen.
    let mut c = daemon.clients().await;
    let v = verify(&mut c, &pause.id).await;
    assert!(v.consistent, "{v:#?}");
    let row = v
        .properties
        .iter()
        .find(|p| p.property == sandboxd_proto::v1::IsolationProperty::Network as i32)
        .expect("network row");
    assert_eq!(
        row.observed,
        sandboxd_proto::v1::ObservedResult::Holds as i32,
        "{row:?}"
    );
    drop(c);

    if let Err(e) = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
    {
        fail("StopPodSandbox", e, &ctd);
    }
    if let Err(e) = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
    {
        fail("RemovePodSandbox", e, &ctd);
    }
    // Nothing left: no sandbox, the namespace is gone (the CRI plugin
    // removed it; sandboxd never does), no lease, no shim, no mount.
    let left = sandboxes(&daemon).await;
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    assert!(!netns_file.exists(), "{} left", netns_file.display());
    let leased: Vec<_> = std::fs::read_dir(ipam.join("sbxcni"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| in_subnet(n))
                .collect()
        })
        .unwrap_or_default();
    assert!(leased.is_empty(), "addresses still leased: {leased:?}");
    eventually("the shims exit", || ctd.shims().is_empty()).await;
    ctd.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_no_mounts(&dir);
    drop(ctd);
    daemon.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "mode NAMESPACE and the shim's snapshots are Linux's: needs the Linux backend"
)]
#[tokio::test]
async fn a_cni_pod_is_refused_without_the_flag_and_leaves_nothing() {
    // Its own bridge and addresses (198.51.100.224/27: below neither the
    // other CNI test's /27 nor the network tests' hosts), so both CNI
    // tests can run at once.
    let CniSetup {
        _bridge,
        dir,
        ipam,
        daemon,
        mut ctd,
        logs,
        mut rt,
    } = cni_setup("cni-refused", "sbxcni1", "198.51.100.224/27", false).await;
    let config = cni_pod_config(&logs, "e2e-cni-refused");
    let refused = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: HANDLER.into(),
        })
        .await
        .expect_err("a CNI pod on a daemon without --allow-netns-source");
    // The daemon's refusal, passed on by the shim and the CRI plugin.
    assert!(
        refused.message().contains("--allow-netns-source"),
        "{refused:?}\ncontainerd log tail:\n{}",
        tail(&ctd.log_text(), 40)
    );
    // Nothing left: no sandbox, no pod, no lease, no shim, no mount.
    let left = sandboxes(&daemon).await;
    assert!(left.is_empty(), "sandboxes left: {left:?}");
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner();
    for p in pods.items {
        assert_ne!(
            p.state,
            cri::PodSandboxState::SandboxReady as i32,
            "a pod is ready: {p:?}"
        );
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await;
    }
    let leased: Vec<_> = std::fs::read_dir(ipam.join("sbxcni"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("198.51.100."))
                .collect()
        })
        .unwrap_or_default();
    assert!(leased.is_empty(), "addresses still leased: {leased:?}");
    eventually("the shims exit", || ctd.shims().is_empty()).await;
    ctd.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_no_mounts(&dir);
    drop(ctd);
    daemon.finish().await;
}
