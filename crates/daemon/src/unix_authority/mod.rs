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

pub mod hpack;
mod huffman_table;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface ("PRI * HTTP/2.0…"), passed through.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
// The limits below are h2's as the daemon's server runs it (hyper's
// defaults, which server.rs does not change; tests/e2e/unix_h2.rs checks
// the SETTINGS the daemon sends). The rewriter must be at least as strict
// as h2: everything it lets through is what h2 would have accepted.

/// The server's SETTINGS_MAX_FRAME_SIZE (the protocol's default): a longer
/// HEADERS or CONTINUATION frame ends the connection (h2: FRAME_SIZE_ERROR)
/// rather than being re-split into frames h2 would accept. Frames we write
/// stay within it too.
const MAX_FRAME: usize = 16_384;
/// CONTINUATION frames without END_HEADERS allowed in one block: h2's limit
/// against the CONTINUATION flood (RUSTSEC-2024-0332) for a 16 KiB header
/// list and 16 KiB frames. We swallow these frames, so h2 cannot count
/// them: we do.
pub(crate) const MAX_CONTINUATIONS: usize = 5;
/// A header block (all its frames, compressed) is at most this long.
pub(crate) const MAX_BLOCK: usize = (MAX_CONTINUATIONS + 2) * MAX_FRAME;
/// A decoded header list (name + value + 32 per field) larger than this
/// ends the connection: h2 ends it past four times its
/// SETTINGS_MAX_HEADER_LIST_SIZE (hyper's 16 KiB), with ENHANCE_YOUR_CALM.
/// It bounds what a block costs us: a one-byte reference can name a 4 KB
/// entry of the dynamic table (an HPACK bomb).
pub const MAX_LIST: usize = 4 * 16 * 1024;
/// The HPACK dynamic table limit: the server does not advertise
/// SETTINGS_HEADER_TABLE_SIZE, so the protocol default.
const TABLE_LIMIT: usize = 4096;
/// What replaces an authority that is not one.
const LOCALHOST: &[u8] = b"localhost";

/// Why a client's byte stream could not be rewritten (the connection ends,
/// as h2 would end it for the same input).
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
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
    /// A HEADERS or CONTINUATION frame longer than SETTINGS_MAX_FRAME_SIZE.
    #[error("frame type {kind} on stream {stream} of {len} bytes, above {MAX_FRAME}")]
    FrameTooLarge {
        /// The frame's type.
        kind: u8,
        /// Its stream.
        stream: u32,
        /// Its length.
        len: usize,
    },
    /// More than [`MAX_CONTINUATIONS`] CONTINUATION frames in one block.
    #[error("more than {MAX_CONTINUATIONS} CONTINUATION frames in the header block of stream {0}")]
    TooManyContinuations(u32),
    /// A PUSH_PROMISE from the client (RFC 9113, 8.4: a connection error).
    #[error("PUSH_PROMISE from a client on stream {0}")]
    PushPromise(u32),
    /// The stream already failed; nothing more is read from it.
    #[error("the connection's byte stream already failed")]
    Failed,
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
    /// CONTINUATION frames so far.
    continuations: usize,
}

/// The client → server byte stream's rewriter: bytes in, bytes out.
#[derive(Debug)]
pub struct Rewriter {
    /// Bytes not handled yet, from `at` (a frame boundary): at most one
    /// header frame and the last read.
    pending: Vec<u8>,
    at: usize,
    /// Preface bytes still to pass.
    preface: usize,
    /// Bytes of a passed-through frame's payload still to come.
    passing: usize,
    block: Option<Block>,
    decoder: hpack::Decoder,
    /// How many authorities were replaced.
    replaced: u64,
    /// An error ended the stream.
    failed: bool,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            at: 0,
            preface: PREFACE_LEN,
            passing: 0,
            block: None,
            decoder: hpack::Decoder::new(TABLE_LIMIT, MAX_LIST),
            replaced: 0,
            failed: false,
        }
    }
}

impl Rewriter {
    /// Takes `input` and appends to `out` everything that can be passed on
    /// so far; a partial frame header or header block waits for more. After
    /// an error the stream is dead: every later call fails too.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if self.failed {
            return Err(RewriteError::Failed);
        }
        let result = self.feed(input, out);
        self.failed = result.is_err();
        result
    }

    /// Bytes held back, waiting for the rest of a frame (bounded by a
    /// header frame plus one read).
    pub fn buffered(&self) -> usize {
        self.pending.len() - self.at + self.block.as_ref().map_or(0, |b| b.fragment.len())
    }

    /// How many authorities were replaced so far.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        // `pending[at..]` always starts at a frame boundary. The preface and
        // the payload of a frame passed through go straight out, unbuffered.
        if self.at == self.pending.len() {
            self.pending.clear();
            self.at = 0;
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
        // Consumed bytes go once per call, not once per frame (a read full
        // of tiny frames would otherwise move the buffer once for each).
        self.pending.drain(..self.at);
        self.at = 0;
        Ok(())
    }

    /// Handles the frame at the start of `pending[at..]`, if enough of it
    /// is there: false when more bytes are needed.
    fn frame(&mut self, out: &mut Vec<u8>) -> Result<bool, RewriteError> {
        let rest = &self.pending[self.at..];
        let Some(header) = rest.get(..FRAME_HEADER_LEN) else {
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
        if kind == PUSH_PROMISE {
            return Err(RewriteError::PushPromise(stream));
        }
        if kind != HEADERS && kind != CONTINUATION {
            let n = (FRAME_HEADER_LEN + len).min(rest.len());
            out.extend_from_slice(&rest[..n]);
            self.at += n;
            self.passing = FRAME_HEADER_LEN + len - n;
            return Ok(true);
        }
        if len > MAX_FRAME {
            return Err(RewriteError::FrameTooLarge { kind, stream, len });
        }
        let collected = self.block.as_ref().map_or(0, |b| b.fragment.len());
        if collected + len > MAX_BLOCK {
            return Err(RewriteError::BlockTooLarge(stream));
        }
        let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(false);
        };
        self.at += FRAME_HEADER_LEN + len;
        if kind == HEADERS {
            let mut body = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                let (&p, rest) = body.split_first().ok_or(RewriteError::BadHeaders(stream))?;
                pad = usize::from(p);
                body = rest;
            }
            let mut priority = Vec::new();
            if flags & PRIORITY != 0 {
                let (p, rest) = body
                    .split_at_checked(5)
                    .ok_or(RewriteError::BadHeaders(stream))?;
                priority = p.to_vec();
                body = rest;
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
                continuations: 0,
            });
        } else if let Some(block) = &mut self.block {
            if flags & END_HEADERS == 0 {
                block.continuations += 1;
                if block.continuations > MAX_CONTINUATIONS {
                    return Err(RewriteError::TooManyContinuations(stream));
                }
            }
            block.fragment.extend_from_slice(payload);
        } else {
            // A CONTINUATION outside a block: h2 ends the connection for
            // it; pass it on so it does.
            let frame = &self.pending[self.at - FRAME_HEADER_LEN - len..self.at];
            out.extend_from_slice(frame);
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
            // Only a value h2 would decode (UTF-8) and then refuse as a URI
            // authority (a stream error) is replaced: anything else h2 would
            // refuse on its own, and must still see to refuse.
            if f.name == b":authority"
                && std::str::from_utf8(&f.value).is_ok()
                && !is_authority(&f.value)
            {
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
            // Not zeroed: this runs at every poll, also the ones that find
            // nothing to read, and 16 KiB of memset showed in the profile.
            let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); MAX_FRAME];
            let mut raw_buf = ReadBuf::uninit(&mut raw);
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
        hpack::Decoder::new(0, MAX_LIST)
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

    /// Runs `data` through a fresh rewriter in one push.
    fn rewrite(data: &[u8]) -> (Result<(), RewriteError>, Vec<u8>) {
        let mut out = Vec::new();
        let r = Rewriter::default().push(data, &mut out);
        (r, out)
    }

    /// HPACK bomb: one 4 KB entry in the dynamic table, then a block of
    /// one-byte references to it. 16 KB on the wire would decode (and be
    /// re-encoded) to 64 MB; h2 itself ends the connection past four times
    /// its header list limit.
    #[test]
    fn attack_indexed_references_cannot_blow_up_memory() {
        let mut block = vec![0x40 | 58, 0x7f, 0x80 | 0x21, 0x1e]; // user-agent, 4000-byte value
        block.extend(std::iter::repeat_n(b'a', 4000));
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, END_HEADERS, 1, &block);
        write_frame(&mut v, HEADERS, END_HEADERS, 3, &[0xbe; MAX_FRAME]);
        let (r, out) = rewrite(&v);
        assert!(out.len() < 2 * MAX_LIST, "{} bytes out", out.len());
        assert!(
            matches!(
                r,
                Err(RewriteError::Decode {
                    stream: 3,
                    source: hpack::HpackError::ListTooLarge(_)
                })
            ),
            "{r:?}"
        );
    }

    /// h2 refuses a HEADERS or CONTINUATION frame longer than its
    /// SETTINGS_MAX_FRAME_SIZE (FRAME_SIZE_ERROR): the rewriter must not
    /// re-split it into frames h2 would accept.
    #[test]
    fn attack_oversized_header_frames_are_refused() {
        for kind in [HEADERS, CONTINUATION] {
            let mut v = PREFACE.to_vec();
            let big = [0x82u8; MAX_FRAME + 1];
            if kind == CONTINUATION {
                write_frame(&mut v, HEADERS, 0, 1, &[0x82]);
            }
            write_frame(&mut v, kind, END_HEADERS, 1, &big);
            let (r, out) = rewrite(&v);
            assert!(
                matches!(r, Err(RewriteError::FrameTooLarge { .. })),
                "{kind}: {r:?}"
            );
            assert_eq!(out, PREFACE, "{kind}: nothing of the block passed");
        }
    }

    /// CONTINUATION flood (RUSTSEC-2024-0332): h2 allows 5 CONTINUATION
    /// frames without END_HEADERS per block; the rewriter swallows them, so
    /// it must enforce the same limit itself, empty frames included.
    #[test]
    fn attack_continuation_flood_is_cut_off() {
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, 0, 1, &[0x82]);
        for _ in 0..=MAX_CONTINUATIONS {
            write_frame(&mut v, CONTINUATION, 0, 1, &[]);
        }
        let (r, _) = rewrite(&v);
        assert!(
            matches!(r, Err(RewriteError::TooManyContinuations(1))),
            "{r:?}"
        );
        // Five, then END_HEADERS: fine.
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, 0, 1, &[0x82]);
        for _ in 0..MAX_CONTINUATIONS {
            write_frame(&mut v, CONTINUATION, 0, 1, &[]);
        }
        write_frame(&mut v, CONTINUATION, END_HEADERS, 1, &[0x86]);
        let (r, out) = rewrite(&v);
        r.unwrap();
        assert_eq!(frames(&out).len(), 1);
    }

    /// A client cannot push (RFC 9113, 8.4): h2 would decode the promise's
    /// block into its own table before failing; the rewriter never lets a
    /// raw block through.
    #[test]
    fn attack_push_promise_is_refused() {
        let mut v = PREFACE.to_vec();
        write_frame(
            &mut v,
            0x5,
            END_HEADERS,
            1,
            &[0, 0, 0, 2, 0x40, 1, b'x', 1, b'y'],
        );
        let (r, out) = rewrite(&v);
        assert!(matches!(r, Err(RewriteError::PushPromise(1))), "{r:?}");
        assert_eq!(out, PREFACE);
    }

    /// h2 ends the connection for an `:authority` that is not UTF-8; the
    /// rewriter must not turn that into an accepted `localhost`.
    #[test]
    fn attack_non_utf8_authority_is_not_laundered() {
        let mut block = vec![0x83, 0x86, 0x01, 3];
        block.extend_from_slice(b"\xff/s");
        let data = input(&[(END_HEADERS, 1, block)]);
        let (r, out) = rewrite(&data);
        r.unwrap();
        let f = frames(&out);
        let fields = hpack::Decoder::new(0, MAX_LIST).decode(&f[1].3).unwrap();
        let auth: Vec<_> = fields.iter().filter(|f| f.name == b":authority").collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(
            auth[0].value, b"\xff/s",
            "passed on unchanged, for h2 to refuse"
        );
    }

    /// After an error the rewriter stays failed: a caller that reads again
    /// gets the error, never bytes framed from a half-consumed state.
    #[test]
    fn attack_a_failed_rewriter_stays_failed() {
        let mut v = PREFACE.to_vec();
        write_frame(&mut v, HEADERS, END_HEADERS, 1, &[0xbe]);
        let mut r = Rewriter::default();
        assert!(r.push(&v, &mut Vec::new()).is_err());
        let mut out = Vec::new();
        let mut ping = Vec::new();
        write_frame(&mut ping, 0x6, 0, 0, &[0; 8]);
        assert!(matches!(r.push(&ping, &mut out), Err(RewriteError::Failed)));
        assert!(out.is_empty());
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
        // Sent in 10,000-byte frames, written back in MAX_FRAME ones.
        let parts: Vec<&[u8]> = block.chunks(10_000).collect();
        write_frame(&mut v, HEADERS, 0, 7, parts[0]);
        for (i, p) in parts.iter().enumerate().skip(1) {
            let end = if i == parts.len() - 1 { END_HEADERS } else { 0 };
            write_frame(&mut v, CONTINUATION, end, 7, p);
        }
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
        // An endless CONTINUATION chain is cut off after MAX_CONTINUATIONS.
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
        assert!(matches!(result, Err(RewriteError::TooManyContinuations(1))));
    }
}
