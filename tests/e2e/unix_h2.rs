//! The unix socket's header-block rewriter (crates/daemon/src/unix_authority)
//! against the real daemon, with a raw HTTP/2 client: what stock clients
//! send is served, and what an attacker sends ends the connection without
//! costing the daemon memory.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::Daemon;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

type Frame = (u8, u8, u32, Vec<u8>);

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut v = len.to_be_bytes()[1..].to_vec();
    v.extend_from_slice(&[kind, flags]);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The next frame, or None at the end of the connection.
fn read_frame(s: &mut UnixStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e)
            if e.kind() == ErrorKind::UnexpectedEof || e.kind() == ErrorKind::ConnectionReset =>
        {
            return None;
        }
        Err(e) => panic!("reading a frame: {e}"),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).expect("frame payload");
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

fn literal(out: &mut Vec<u8>, first: u8, value: &[u8]) {
    out.push(first);
    assert!(value.len() < 127, "short values only");
    out.push(u8::try_from(value.len()).expect("short"));
    out.extend_from_slice(value);
}

/// A connection past the preface; returns the server's SETTINGS.
fn connect(socket: &Path) -> (UnixStream, Vec<(u16, u32)>) {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(PREFACE).expect("preface");
    s.write_all(&frame(0x4, 0, 0, &[])).expect("settings");
    let (kind, _, _, payload) = read_frame(&mut s).expect("server SETTINGS");
    assert_eq!(kind, 0x4, "the server speaks first with SETTINGS");
    let settings = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    s.write_all(&frame(0x4, 0x1, 0, &[])).expect("settings ack");
    (s, settings)
}

/// Two Health/Check calls the way grpc-c sends them: literals with
/// incremental indexing, the socket's path as `:authority`, the second
/// request made only of references to the first one's table entries.
fn two_health_checks(s: &mut UnixStream, authority: &[u8]) {
    let mut first = vec![0x83, 0x86];
    literal(&mut first, 0x40 | 4, b"/grpc.health.v1.Health/Check");
    literal(&mut first, 0x40 | 1, authority);
    literal(&mut first, 0x40 | 31, b"application/grpc");
    // te: trailers, a literal with a new name.
    first.extend_from_slice(&[0x40, 2, b't', b'e', 8]);
    first.extend_from_slice(b"trailers");
    // Newest first: te 62, content-type 63, :authority 64, :path 65.
    let second = [0x83, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
    let empty_message = [0u8; 5];
    let mut out = Vec::new();
    for (id, block) in [(1u32, &first[..]), (3, &second[..])] {
        out.extend(frame(HEADERS, END_HEADERS, id, block));
        out.extend(frame(0x0, END_STREAM, id, &empty_message));
    }
    s.write_all(&out).expect("requests");
    let serving = [0, 0, 0, 0, 2, 0x08, 0x01];
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let Some((kind, _, id, payload)) = read_frame(s) else {
            panic!("connection ended; answered {answered:?}");
        };
        assert!(
            kind != 0x3 && kind != 0x7,
            "RST_STREAM/GOAWAY {kind} on {id}: {payload:?}"
        );
        if kind == 0x0 && !payload.is_empty() {
            assert_eq!(payload, serving, "stream {id}");
            answered.push(id);
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, [1, 3]);
}

/// The peak resident size of a process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The rewriter's limits are h2's as the daemon runs it: no
/// SETTINGS_HEADER_TABLE_SIZE (so the client's table is 4096 bytes), the
/// default SETTINGS_MAX_FRAME_SIZE, a 16 KiB SETTINGS_MAX_HEADER_LIST_SIZE.
/// If the server's settings change, the rewriter's constants must too.
#[tokio::test]
async fn stock_authorities_and_table_references_are_served_under_the_rewriters_assumptions() {
    let d = Daemon::start();
    let socket = d.socket.clone();
    tokio::task::spawn_blocking(move || {
        let (mut s, settings) = connect(&socket);
        for (id, value) in &settings {
            match id {
                0x1 => assert_eq!(*value, 4096, "SETTINGS_HEADER_TABLE_SIZE"),
                0x5 => assert_eq!(*value, 16_384, "SETTINGS_MAX_FRAME_SIZE"),
                0x6 => assert_eq!(*value, 16_384, "SETTINGS_MAX_HEADER_LIST_SIZE"),
                _ => {}
            }
        }
        assert!(settings.contains(&(0x6, 16_384)), "{settings:?}");
        let path = socket.to_str().expect("utf-8 path").as_bytes().to_vec();
        two_health_checks(&mut s, &path);
        let (mut s, _) = connect(&socket);
        two_health_checks(&mut s, b"tmp%2Fsandboxd.sock");
    })
    .await
    .expect("raw client");
    d.finish().await;
}

/// An HPACK bomb: one 4 KB entry in the client's table, then 16 KB of
/// one-byte references to it (64 MB decoded). The connection ends, the
/// daemon's peak memory does not move by anything like that, and it serves
/// the next client.
#[tokio::test]
async fn an_hpack_bomb_ends_the_connection_without_costing_memory() {
    let d = Daemon::start();
    let (socket, pid) = (d.socket.clone(), d.pid());
    let before = peak_rss_kib(pid);
    tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            let (mut s, _) = connect(&socket);
            let mut seed = vec![0x40 | 58, 0x7f, 0x80 | 0x21, 0x1e];
            seed.extend(std::iter::repeat_n(b'a', 4000));
            let mut out = frame(HEADERS, END_HEADERS, 1, &seed);
            out.extend(frame(HEADERS, END_HEADERS, 3, &[0xbe; 16_384]));
            // The server may close before it has read everything.
            let _ = s.write_all(&out);
            while let Some((kind, _, _, _)) = read_frame(&mut s) {
                assert!(kind != 0x1, "a response to the bomb");
            }
        }
        // A CONTINUATION flood of empty frames ends the connection too.
        let (mut s, _) = connect(&socket);
        let mut out = frame(HEADERS, 0, 1, &[0x83]);
        for _ in 0..100 {
            out.extend(frame(CONTINUATION, 0, 1, &[]));
        }
        let _ = s.write_all(&out);
        while read_frame(&mut s).is_some() {}
        let (mut s, _) = connect(&socket);
        two_health_checks(&mut s, b"/run/sandboxd/sandboxd.sock");
    })
    .await
    .expect("raw client");
    if let (Some(before), Some(after)) = (before, peak_rss_kib(pid)) {
        assert!(
            after < before + 32 * 1024,
            "peak RSS grew from {before} KiB to {after} KiB"
        );
    } else {
        eprintln!("no /proc/PID/status VmHWM on this system: memory not checked");
    }
    d.finish().await;
}
