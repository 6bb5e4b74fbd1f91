//! Writes the seed corpora under `corpus/`. Run once from this directory
//! with `cargo run --example gen_corpus`; the output is committed.
//! The text corpora (ids, paths) are written here too, so that everything
//! in `corpus/` comes from one place.

use std::fs;
use std::path::Path;

use prost::Message;
use sandboxd_proto::v1 as pb;

fn process(argv: &[&str]) -> Option<pb::ProcessSpec> {
    Some(pb::ProcessSpec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    })
}

fn mount(source: &str, target: &str, read_only: bool) -> pb::Mount {
    pb::Mount {
        source: source.to_owned(),
        target: target.to_owned(),
        read_only,
    }
}

fn limit(value: u64) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: pb::Requirement::Required as i32,
    })
}

fn specs() -> Vec<(&'static str, pb::SandboxSpec)> {
    vec![
        (
            "minimal-process",
            pb::SandboxSpec {
                process: process(&["/bin/true"]),
                ..Default::default()
            },
        ),
        (
            "idle-with-mount",
            pb::SandboxSpec {
                name: "builder".to_owned(),
                mode: pb::SandboxMode::Idle as i32,
                mounts: vec![mount("/srv/src", "/src", true)],
                ..Default::default()
            },
        ),
        (
            "full",
            pb::SandboxSpec {
                name: "web-1".to_owned(),
                image: "host".to_owned(),
                mode: pb::SandboxMode::Init as i32,
                hostname: "web-1.example".to_owned(),
                process: Some(pb::ProcessSpec {
                    argv: vec![
                        "/bin/sh".to_owned(),
                        "-c".to_owned(),
                        "exec sleep 1".to_owned(),
                    ],
                    env: vec!["PATH=/usr/bin:/bin".to_owned(), "LANG=C".to_owned()],
                    cwd: "/tmp".to_owned(),
                    user: Some(pb::User {
                        uid: Some(1000),
                        gid: Some(1000),
                        additional_gids: vec![27],
                    }),
                    tty: false,
                }),
                isolation: Some(pb::Isolation {
                    filesystem: pb::Requirement::Required as i32,
                    pid: pb::Requirement::Required as i32,
                    hostname: pb::Requirement::Preferred as i32,
                    ipc: pb::Requirement::Preferred as i32,
                    user: pb::Requirement::Preferred as i32,
                    cgroup: pb::Requirement::Preferred as i32,
                }),
                network: Some(pb::NetworkPolicy {
                    mode: pb::NetworkMode::Restricted as i32,
                    requirement: pb::Requirement::Required as i32,
                    addresses: vec!["10.88.0.2".to_owned(), "fd00::2".to_owned()],
                    outbound_nat: true,
                    port_forwards: vec![pb::PortForward {
                        protocol: pb::Protocol::Tcp as i32,
                        host_port: 8080,
                        sandbox_port: 80,
                    }],
                    dns_servers: vec!["10.88.0.1".to_owned()],
                    dns_search: vec!["example.".to_owned()],
                    namespace_path: "/var/run/netns/cni-1".to_owned(),
                }),
                limits: Some(pb::Limits {
                    memory_bytes: limit(256 << 20),
                    pids: limit(128),
                    cpu_millis: limit(500),
                    open_files: limit(1024),
                    address_space_bytes: limit(1 << 32),
                    disk_bytes: limit(512 << 20),
                    tmp_bytes: 64 << 20,
                    shm_bytes: 16 << 20,
                    cpu_weight: limit(400),
                }),
                mounts: vec![
                    mount("/srv/www", "/var/www", true),
                    mount("/var/lib/sandboxd-data/cache", "/cache", false),
                ],
                labels: [("app".to_owned(), "web".to_owned())].into_iter().collect(),
                readonly_rootfs: true,
                stop_signal: 2,
                rootfs: String::new(),
                logs: Some(pb::LogLimits {
                    max_file_bytes: 1 << 20,
                    max_files: 2,
                }),
                join: None,
            },
        ),
        (
            "child",
            pb::SandboxSpec {
                mode: pb::SandboxMode::Idle as i32,
                join: Some(pb::SandboxJoin {
                    sandbox_id: "0123456789abcdef".to_owned(),
                    network: true,
                    ipc: true,
                    uts: true,
                    pid: false,
                }),
                ..Default::default()
            },
        ),
        (
            "bad-mounts",
            pb::SandboxSpec {
                process: process(&["/bin/true"]),
                mounts: vec![
                    mount("/srv/../etc", "/etc", false),
                    mount("/home/x", "/", false),
                    mount("/srv/a", "/a//b", true),
                ],
                ..Default::default()
            },
        ),
        (
            "bad-enums",
            pb::SandboxSpec {
                mode: 42,
                process: process(&["/bin/true"]),
                network: Some(pb::NetworkPolicy {
                    mode: -1,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ]
}

const IDS: &[(&str, &str)] = &[
    ("id", "0123456789abcdef"),
    ("name", "my-sandbox-1"),
    ("upper-id", "0123456789ABCDEF"),
    ("traversal", "../etc/passwd"),
    ("request-id", "req-2024.01_a"),
];

const PATHS: &[(&str, &str)] = &[
    ("ok", "/srv/data\n/data"),
    ("two-roots", "/srv\n/a\n/var/lib/sandboxd-data/x/y\n/a/b"),
    ("dotdot", "/srv/../etc\n/mnt/../../x"),
    ("root-and-dup", "/srv/a\n/\n/srv/b\n/x\n/srv/c\n/x"),
    ("not-normal", "srv/a\n/x/./y\n/srvx/a\n/x/\n/srv//a\n//x"),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write corpus file");
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, spec) in specs() {
        write(&corpus.join("spec_validation"), name, &spec.encode_to_vec());
    }
    for (name, s) in IDS {
        write(&corpus.join("id_validation"), name, s.as_bytes());
    }
    for (name, s) in PATHS {
        write(&corpus.join("path_resolution"), name, s.as_bytes());
    }
    println!("wrote {}", corpus.display());
}
