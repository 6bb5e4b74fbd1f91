//! The unix socket's header-block rewriter (crates/daemon/src/unix_authority)
//! on arbitrary client byte streams, fed in arbitrary pieces.
//!
//! Input: one byte `n`, then `n` piece lengths (one byte each, 0 read as
//! 1), then the client's byte stream (connection preface first).
//! Invariants:
//! - no panic; the same output and verdict however the stream is split;
//! - bounded: what the rewriter holds back, and each header block it writes
//!   (at most MAX_LIST), whatever the input;
//! - every frame other than HEADERS/CONTINUATION passes byte for byte;
//! - header frames written are at most 16 KiB, and each block decodes with
//!   a fresh decoder (no dynamic state of ours reaches the server) to the
//!   list an independent decoder (fluke-hpack, following the client's
//!   table) reads from the client's block, except an `:authority` that is
//!   UTF-8 but not a URI authority, which becomes `localhost`;
//! - a block the independent decoder refuses is never written.

#![no_main]

use fluke_hpack::decoder::DecoderError;
use libfuzzer_sys::fuzz_target;
use sandboxd::unix_authority::{MAX_LIST, Rewriter};

const PREFACE_LEN: usize = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const MAX_FRAME: usize = 16_384;

/// A parsed stream: header blocks and the other frames, in order.
#[derive(Debug, Default)]
struct Parsed {
    /// Each complete header block: stream, END_STREAM, priority bytes,
    /// the block's bytes.
    blocks: Vec<(u32, bool, Vec<u8>, Vec<u8>)>,
    /// Every other frame, raw (a last one possibly cut short).
    others: Vec<Vec<u8>>,
    /// Header frames longer than MAX_FRAME.
    oversized: usize,
}

/// An HTTP/2 frame parser of its own (RFC 9113, 4.1, 6.2, 6.10), not the
/// rewriter's: stops at the first thing it cannot frame.
fn parse(stream: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let Some(mut rest) = stream.get(PREFACE_LEN..) else {
        return p;
    };
    let mut open: Option<(u32, bool, Vec<u8>, Vec<u8>)> = None;
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        let Some(payload) = rest.get(9..9 + len) else {
            if kind != HEADERS && kind != CONTINUATION {
                p.others.push(rest.to_vec());
            }
            return p;
        };
        let frame = &rest[..9 + len];
        rest = &rest[9 + len..];
        let header_frame = kind == HEADERS || (kind == CONTINUATION && open.is_some());
        if !header_frame {
            p.others.push(frame.to_vec());
            continue;
        }
        if len > MAX_FRAME {
            p.oversized += 1;
        }
        if kind == HEADERS {
            let mut body = payload;
            let mut pad = 0;
            if flags & 0x8 != 0 {
                let Some((&n, b)) = body.split_first() else {
                    return p;
                };
                pad = usize::from(n);
                body = b;
            }
            let mut priority = Vec::new();
            if flags & 0x20 != 0 {
                let Some((pr, b)) = body.split_at_checked(5) else {
                    return p;
                };
                priority = pr.to_vec();
                body = b;
            }
            let Some(end) = body.len().checked_sub(pad) else {
                return p;
            };
            open = Some((id, flags & 0x1 != 0, priority, body[..end].to_vec()));
        } else if let Some(block) = &mut open {
            block.3.extend_from_slice(payload);
        }
        if flags & 0x4 != 0 {
            p.blocks.extend(open.take());
        }
    }
    p
}

type List = Vec<(Vec<u8>, Vec<u8>)>;

fn expected(list: List) -> List {
    list.into_iter()
        .map(|(n, v)| {
            let replace = n == b":authority"
                && std::str::from_utf8(&v).is_ok()
                && http::uri::Authority::try_from(&v[..]).is_err();
            (n, if replace { b"localhost".to_vec() } else { v })
        })
        .collect()
}

fn run(input: &[u8], pieces: &[usize]) -> (Result<(), String>, Vec<u8>) {
    let mut r = Rewriter::default();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let n = if pieces.is_empty() {
            rest.len()
        } else {
            sizes.next().unwrap_or(1).min(rest.len())
        };
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let result = r.push(piece, &mut out);
        // Held back: at most a header block and one header frame, however
        // the input is split.
        assert!(
            r.buffered() <= 7 * MAX_FRAME + 9 + MAX_FRAME,
            "{} bytes held back",
            r.buffered()
        );
        if let Err(e) = result {
            // Failed for good.
            assert!(r.push(b"x", &mut out).is_err());
            return (Err(e.to_string()), out);
        }
    }
    (Ok(()), out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let Some((split, input)) = rest.split_at_checked(usize::from(n)) else {
        return;
    };
    let pieces: Vec<usize> = split.iter().map(|&b| usize::from(b).max(1)).collect();

    let (verdict, out) = run(input, &pieces);
    let (whole_verdict, whole) = run(input, &[]);
    assert_eq!(verdict, whole_verdict, "the verdict depends on the split");
    assert_eq!(out, whole, "the output depends on the split");

    // The preface passes untouched.
    let k = PREFACE_LEN.min(input.len());
    assert_eq!(out.get(..k), input.get(..k));

    let sent = parse(input);
    let written = parse(&out);
    assert_eq!(
        written.oversized, 0,
        "a header frame above MAX_FRAME written"
    );
    assert!(written.others.len() <= sent.others.len());
    for (i, (w, s)) in written.others.iter().zip(&sent.others).enumerate() {
        assert_eq!(w, s, "frame {i} other than a header block changed");
    }
    assert!(written.blocks.len() <= sent.blocks.len());
    if sent.oversized > 0 {
        assert!(verdict.is_err(), "an oversized header frame was accepted");
    }

    let mut client = fluke_hpack::Decoder::new();
    client.set_max_allowed_table_size(4096);
    for (i, (s, w)) in sent.blocks.iter().zip(&written.blocks).enumerate() {
        assert_eq!(
            (s.0, s.1, &s.2),
            (w.0, w.1, &w.2),
            "block {i}: stream, END_STREAM or priority changed"
        );
        assert!(
            w.3.len() <= MAX_LIST,
            "block {i}: {} bytes written",
            w.3.len()
        );
        let mut theirs = Vec::new();
        match client.decode_with_cb(&s.3, |n, v| theirs.push((n.into_owned(), v.into_owned()))) {
            // fluke-hpack refuses a block that ends with a size update,
            // which RFC 7541 allows; it has read the whole block then.
            Ok(()) | Err(DecoderError::SizeUpdateAtEnd) => {}
            Err(e) => panic!("block {i}: written, but the client's block does not decode: {e:?}"),
        }
        let ours = fluke_hpack::Decoder::new()
            .decode(&w.3)
            .unwrap_or_else(|e| {
                panic!("block {i}: the written block does not decode alone: {e:?}")
            });
        assert_eq!(ours, expected(theirs), "block {i}: header list changed");
    }
});
