//! Stock gRPC clients on the unix socket send an `:authority` that is not a
//! URI authority: grpcio ≥ 1.57 the percent-encoded socket path
//! (`tmp%2Frun%2Fs.sock`), grpcurl and grpc-java the path itself
//! (`/run/sandboxd/sandboxd.sock`). h2 refuses such a request with
//! RST_STREAM(PROTOCOL_ERROR) before tonic sees it (hyperium/h2#487, open),
//! so every call of those clients failed.
//!
//! [`AuthorityFix`] sits between a unix connection and the HTTP/2 server
//! and re-encodes the client's header blocks on the way in: it decodes each
//! HEADERS (+ CONTINUATION) block with the client's HPACK state, replaces
//! an `:authority` that does not parse as a URI authority with `localhost`
//! (what grpc-go sends on a unix socket), and writes the block again as
//! literals without indexing, so the server's decoder never depends on
//! state of ours. Every other frame and the server's direction pass through
//! untouched. The authority carries nothing on a unix socket: the peer is
//! who the socket's permissions let in. TLS connections are not rewritten
//! (their clients name a host).

mod hpack;
mod huffman_table;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface ("PRI * HTTP/2.0…"), passed through.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames we write stay within the smallest SETTINGS_MAX_FRAME_SIZE.
const MAX_FRAME: usize = 16_384;
/// A header block (all its frames, compressed) larger than this ends the
/// connection: it bounds what one client can make the daemon buffer.
pub(crate) const MAX_BLOCK: usize = 256 * 1024;
/// The HPACK dynamic table limit: the server does not advertise
/// SETTINGS_HEADER_TABLE_SIZE, so the protocol default.
const TABLE_LIMIT: usize = 4096;
/// What replaces an authority that is not one.
const LOCALHOST: &[u8] = b"localhost";

/// Why a client's byte stream could not be rewritten (the connection ends,
/// as h2 would end it for the same input).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewriteError {
    /// A header block did not decode.
    #[error("decoding a header block of stream {stream}: {source}")]
    Decode {
        /// The frame's stream.
        stream: u32,
        /// What was wrong.
        source: hpack::HpackError,
    },
    /// A header block grew past [`MAX_BLOCK`].
    #[error("header block of stream {0} larger than {MAX_BLOCK} bytes")]
    BlockTooLarge(u32),
    /// A frame other than CONTINUATION of the same stream inside a block.
    #[error("frame type {kind} on stream {stream} inside the header block of stream {open}")]
    Interleaved {
        /// The frame's type.
        kind: u8,
        /// Its stream.
        stream: u32,
        /// The stream whose block was open.
        open: u32,
    },
    /// A HEADERS frame whose padding or priority does not fit it.
    #[error("malformed HEADERS frame on stream {0}")]
    BadHeaders(u32),
}

/// A header block being collected.
#[derive(Debug)]
struct Block {
    stream: u32,
    /// END_STREAM and PRIORITY of the HEADERS frame.
    flags: u8,
    /// The 5 priority bytes, when PRIORITY is set.
    priority: Vec<u8>,
    fragment: Vec<u8>,
}

/// The client → server byte stream's rewriter: bytes in, bytes out.
#[derive(Debug)]
pub(crate) struct Rewriter {
    pending: Vec<u8>,
    /// Preface bytes still to pass.
    preface: usize,
    /// Bytes of a passed-through frame's payload still to come.
    passing: usize,
    block: Option<Block>,
    decoder: hpack::Decoder,
    /// How many authorities were replaced.
    replaced: u64,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            preface: PREFACE_LEN,
            passing: 0,
            block: None,
            decoder: hpack::Decoder::new(TABLE_LIMIT),
            replaced: 0,
        }
    }
}

impl Rewriter {
    /// Takes `input` and appends to `out` everything that can be passed on
    /// so far; a partial frame header or header block waits for more.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        // `pending` always starts at a frame boundary. The preface and the
        // payload of a frame passed through go straight out, unbuffered.
        if self.pending.is_empty() {
            for direct in [&mut self.preface, &mut self.passing] {
                let n = (*direct).min(input.len());
                out.extend_from_slice(&input[..n]);
                *direct -= n;
                input = &input[n..];
            }
        }
        self.pending.extend_from_slice(input);
        // A frame passed through in part leaves `pending` empty and the
        // rest of its payload to come.
        while self.passing == 0 && self.frame(out)? {}
        Ok(())
    }

    /// Handles the frame at the start of `pending`, if enough of it is
    /// there: false when more bytes are needed.
    fn frame(&mut self, out: &mut Vec<u8>) -> Result<bool, RewriteError> {
        let Some(header) = self.pending.get(..FRAME_HEADER_LEN) else {
            return Ok(false);
        };
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if let Some(open) = &self.block {
            if kind != CONTINUATION || stream != open.stream {
                return Err(RewriteError::Interleaved {
                    kind,
                    stream,
                    open: open.stream,
                });
            }
        }
        if kind != HEADERS && kind != CONTINUATION {
            out.extend_from_slice(&self.pending[..FRAME_HEADER_LEN]);
            self.pending.drain(..FRAME_HEADER_LEN);
            self.passing = len;
            let n = len.min(self.pending.len());
            out.extend_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            self.passing -= n;
            return Ok(true);
        }
        let collected = self.block.as_ref().map_or(0, |b| b.fragment.len());
        if len > MAX_BLOCK || collected + len > MAX_BLOCK {
            return Err(RewriteError::BlockTooLarge(stream));
        }
        if self.pending.len() < FRAME_HEADER_LEN + len {
            return Ok(false);
        }
        let payload: Vec<u8> = self
            .pending
            .drain(..FRAME_HEADER_LEN + len)
            .skip(FRAME_HEADER_LEN)
            .collect();
        if kind == HEADERS {
            let mut body = &payload[..];
            let mut pad = 0;
            if flags & PADDED != 0 {
                let (&p, rest) = body.split_first().ok_or(RewriteError::BadHeaders(stream))?;
                pad = usize::from(p);
                body = rest;
            }
            let mut priority = Vec::new();
            if flags & PRIORITY != 0 {
                let p = body.get(..5).ok_or(RewriteError::BadHeaders(stream))?;
                priority = p.to_vec();
                body = &body[5..];
            }
            let end = body
                .len()
                .checked_sub(pad)
                .ok_or(RewriteError::BadHeaders(stream))?;
            self.block = Some(Block {
                stream,
                flags: flags & (END_STREAM | PRIORITY),
                priority,
                fragment: body[..end].to_vec(),
            });
        } else if let Some(block) = &mut self.block {
            block.fragment.extend_from_slice(&payload);
        } else {
            // A CONTINUATION outside a block: h2 ends the connection for
            // it; pass it on so it does.
            write_frame(out, CONTINUATION, flags, stream, &payload);
            return Ok(true);
        }
        if flags & END_HEADERS != 0 {
            if let Some(block) = self.block.take() {
                self.finish(block, out)?;
            }
        }
        Ok(true)
    }

    /// Decodes a complete block, fixes its authority and writes it again.
    fn finish(&mut self, block: Block, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let stream = block.stream;
        let mut fields = self
            .decoder
            .decode(&block.fragment)
            .map_err(|source| RewriteError::Decode { stream, source })?;
        for f in &mut fields {
            if f.name == b":authority" && !is_authority(&f.value) {
                tracing::trace!(
                    stream,
                    sent = %String::from_utf8_lossy(&f.value),
                    "unix client's :authority replaced with localhost"
                );
                f.value = LOCALHOST.to_vec();
                self.replaced += 1;
            }
        }
        let mut encoded = block.priority;
        hpack::encode(&fields, &mut encoded);
        let mut chunks = encoded.chunks(MAX_FRAME).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next().or(first.then_some(&[][..])) {
            let last = chunks.peek().is_none();
            let (kind, mut flags) = if first {
                (HEADERS, block.flags)
            } else {
                (CONTINUATION, 0)
            };
            if last {
                flags |= END_HEADERS;
            }
            write_frame(out, kind, flags, stream, chunk);
            first = false;
            if last {
                break;
            }
        }
        Ok(())
    }
}

/// Whether h2 accepts `value` as an `:authority`.
fn is_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    // Payloads here are at most MAX_FRAME (or a frame read with a 24-bit
    // length), so the length fits 24 bits.
    let len = payload.len().to_be_bytes();
    out.extend_from_slice(&len[len.len() - 3..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A unix connection whose incoming bytes go through a [`Rewriter`].
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes not yet read, from `at`.
    ready: Vec<u8>,
    at: usize,
}

impl<S> AuthorityFix<S> {
    /// Wraps a client connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            at: 0,
        }
    }

    /// The connection, e.g. to read its peer's credentials.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.at);
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; MAX_FRAME];
            let mut raw_buf = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf))?;
            let got = raw_buf.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rewriter
                .push(got, &mut this.ready)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn field(name: &str, value: &str) -> hpack::Field {
        hpack::Field {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            sensitive: false,
        }
    }

    /// A literal with incremental indexing of `:authority` (static name 1),
    /// as grpc-c sends it, then the same header by its new dynamic index.
    fn indexed_authority(value: &str) -> Vec<u8> {
        let mut b = vec![0x83, 0x86, 0x41, value.len() as u8];
        b.extend_from_slice(value.as_bytes());
        b
    }

    /// Splits `out` into frames after the preface and decodes each header
    /// block with a fresh decoder (what we write needs no dynamic state).
    fn frames(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert_eq!(&out[..24], PREFACE);
        let mut rest = &out[24..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            frames.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        frames
    }

    fn values(block: &[u8], name: &str) -> Vec<String> {
        hpack::Decoder::new(0)
            .decode(block)
            .unwrap()
            .into_iter()
            .filter(|f| f.name == name.as_bytes())
            .map(|f| String::from_utf8(f.value).unwrap())
            .collect()
    }

    fn input(blocks: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, 0x4, 0, 0, &[]); // SETTINGS
        for (flags, stream, block) in blocks {
            write_frame(&mut v, HEADERS, *flags, *stream, block);
            write_frame(&mut v, 0x0, END_STREAM, *stream, b"\0\0\0\0\x05hello");
        }
        v
    }

    #[test]
    fn authorities_are_kept_or_replaced() {
        let cases = [
            ("localhost", "localhost"),
            ("example.com:50051", "example.com:50051"),
            ("[::1]:1", "[::1]:1"),
            // grpcio >= 1.57: the percent-encoded path.
            ("tmp%2Frun%2Fs.sock", "localhost"),
            // grpcurl, grpc-java: the path itself.
            ("/run/sandboxd/sandboxd.sock", "localhost"),
            ("unix:/run/s.sock", "localhost"),
        ];
        for (sent, seen) in cases {
            let data = input(&[(END_HEADERS, 1, indexed_authority(sent))]);
            // Byte by byte, and all at once: the same output.
            let mut whole = Vec::new();
            let mut once = Rewriter::default();
            once.push(&data, &mut whole).unwrap();
            assert_eq!(once.replaced, u64::from(sent != seen), "{sent}");
            let mut bytewise = Vec::new();
            let mut r = Rewriter::default();
            for b in &data {
                r.push(std::slice::from_ref(b), &mut bytewise).unwrap();
            }
            assert_eq!(whole, bytewise, "{sent}");
            let f = frames(&whole);
            assert_eq!(f.len(), 3, "{sent}: SETTINGS, HEADERS, DATA");
            assert_eq!(
                (f[0].0, f[2].0, &f[2].3[..]),
                (0x4, 0x0, &b"\0\0\0\0\x05hello"[..])
            );
            assert_eq!((f[1].0, f[1].1, f[1].2), (HEADERS, END_HEADERS, 1));
            assert_eq!(values(&f[1].3, ":authority"), [seen], "{sent}");
            assert_eq!(values(&f[1].3, ":method"), ["POST"]);
        }
    }

    /// The second request names the authority by the dynamic index the first
    /// created in the client's table: the rewriter must follow that table.
    #[test]
    fn dynamic_table_references_are_resolved() {
        let second = vec![0x83, 0x86, 0x80 | 62];
        let data = input(&[
            (END_HEADERS, 1, indexed_authority("/run/s.sock")),
            (END_HEADERS, 3, second),
        ]);
        let mut out = Vec::new();
        Rewriter::default().push(&data, &mut out).unwrap();
        let f = frames(&out);
        assert_eq!(values(&f[3].3, ":authority"), ["localhost"]);
        assert_eq!(f[3].2, 3);
    }

    #[test]
    fn continuation_padding_and_priority_are_handled() {
        let mut block = indexed_authority("/run/s.sock");
        block.extend(std::iter::repeat_n(0x86, 10));
        let mut v = PREFACE.to_vec();
        // HEADERS with padding and priority, then a CONTINUATION.
        let mut payload = vec![3];
        payload.extend_from_slice(&[0, 0, 0, 0, 15]);
        payload.extend_from_slice(&block[..4]);
        payload.extend_from_slice(&[0, 0, 0]);
        write_frame(&mut v, HEADERS, PADDED | PRIORITY | END_STREAM, 5, &payload);
        write_frame(&mut v, CONTINUATION, END_HEADERS, 5, &block[4..]);
        let mut out = Vec::new();
        Rewriter::default().push(&v, &mut out).unwrap();
        let f = frames(&out);
        assert_eq!(f.len(), 1);
        let (kind, flags, stream, payload) = &f[0];
        assert_eq!(
            (*kind, *flags, *stream),
            (HEADERS, PRIORITY | END_STREAM | END_HEADERS, 5)
        );
        assert_eq!(&payload[..5], &[0, 0, 0, 0, 15]);
        assert_eq!(values(&payload[5..], ":authority"), ["localhost"]);
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let mut block = Vec::new();
        let mut fields = vec![field(":authority", "/s.sock")];
        for i in 0..40 {
            fields.push(field(&format!("x-{i}"), &"v".repeat(1000)));
        }
        hpack::encode(&fields, &mut block);
        let mut v = PREFACE.to_vec();
        let (a, b) = block.split_at(block.len() / 2);
        write_frame(&mut v, HEADERS, 0, 7, a);
        write_frame(&mut v, CONTINUATION, END_HEADERS, 7, b);
        let mut out = Vec::new();
        Rewriter::default().push(&v, &mut out).unwrap();
        let f = frames(&out);
        assert!(f.len() >= 3, "{} frames", f.len());
        assert!(f.iter().all(|x| x.3.len() <= MAX_FRAME && x.2 == 7));
        assert_eq!(f[0].0, HEADERS);
        assert!(f[1..].iter().all(|x| x.0 == CONTINUATION));
        assert!(f[..f.len() - 1].iter().all(|x| x.1 & END_HEADERS == 0));
        assert_eq!(f[f.len() - 1].1, END_HEADERS);
        let joined: Vec<u8> = f.iter().flat_map(|x| x.3.clone()).collect();
        assert_eq!(values(&joined, ":authority"), ["localhost"]);
        assert_eq!(values(&joined, "x-39"), ["v".repeat(1000)]);
    }

    #[test]
    fn bad_input_ends_the_connection() {
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, 0, 1, &[0x82]);
        write_frame(&mut v, 0x0, 0, 1, b"x");
        assert!(matches!(
            Rewriter::default().push(&v, &mut Vec::new()),
            Err(RewriteError::Interleaved { .. })
        ));
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, END_HEADERS, 1, &[0xbe]);
        assert!(matches!(
            Rewriter::default().push(&v, &mut Vec::new()),
            Err(RewriteError::Decode { stream: 1, .. })
        ));
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, PADDED | END_HEADERS, 1, &[9, 0x82]);
        assert!(matches!(
            Rewriter::default().push(&v, &mut Vec::new()),
            Err(RewriteError::BadHeaders(1))
        ));
        // An endless CONTINUATION chain is cut off at MAX_BLOCK.
        let mut r = Rewriter::default();
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, 0, 1, &[0x82]);
        r.push(&v, &mut Vec::new()).unwrap();
        let mut result = Ok(());
        for _ in 0..=MAX_BLOCK / MAX_FRAME {
            let mut c = Vec::new();
            write_frame(&mut c, CONTINUATION, 0, 1, &[0x82; MAX_FRAME]);
            result = r.push(&c, &mut Vec::new());
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(RewriteError::BlockTooLarge(1))));
    }
}
