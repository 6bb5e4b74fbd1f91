//! The supervisor's blocking end of the daemon ↔ supervisor socket: frames
//! from [`sandboxd_core::wire`], descriptors via SCM_RIGHTS.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use sandboxd_core::wire::{self, Decoder, Event, Message, Request, WireError};

use crate::sys;

/// One end of the socketpair.
#[derive(Debug)]
pub struct Channel {
    sock: OwnedFd,
    decoder: Decoder,
    fds: VecDeque<OwnedFd>,
    /// The peer closed or a write hit EPIPE: the daemon is gone.
    closed: bool,
    /// Where reads land, reused: a fresh zeroed 64 KiB array per read
    /// would write every page of it, and after each fork of a payload the
    /// supervisor pays a copy-on-write fault for every page it writes.
    buf: Vec<u8>,
}

/// The most one read takes.
const READ_SIZE: usize = 64 * 1024;

/// What one read produced.
#[derive(Debug)]
pub enum RecvOutcome {
    /// Complete requests, each with the descriptors it carried.
    Requests(Vec<(Request, Vec<OwnedFd>)>),
    /// The daemon closed its end.
    Closed,
}

impl Channel {
    /// Wraps a connected socket.
    pub fn new(sock: OwnedFd) -> Self {
        Self {
            sock,
            decoder: Decoder::default(),
            fds: VecDeque::new(),
            closed: false,
            buf: vec![0; READ_SIZE],
        }
    }

    /// Whether the daemon has gone away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stops listening (after a corrupt frame): the sandbox keeps running
    /// without a daemon, as if it had gone away.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Reads once (the socket is readable) and returns complete requests.
    pub fn recv(&mut self) -> Result<RecvOutcome, WireError> {
        let mut new_fds = Vec::new();
        let n = loop {
            match sys::recv_with_fds(self.sock.as_fd(), &mut self.buf, &mut new_fds) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(RecvOutcome::Requests(Vec::new()));
                }
                Err(_) => {
                    self.closed = true;
                    return Ok(RecvOutcome::Closed);
                }
            }
        };
        self.fds.extend(new_fds);
        if n == 0 {
            self.closed = true;
            return Ok(RecvOutcome::Closed);
        }
        self.decoder.push(&self.buf[..n]);
        self.buffered()
    }

    /// Requests already read but not yet decoded: the daemon may send one
    /// right behind the launch configuration, in the same read, and poll
    /// would never report it again.
    pub fn buffered(&mut self) -> Result<RecvOutcome, WireError> {
        let mut out = Vec::new();
        while let Some(msg) = self.decoder.next_message::<Request>()? {
            let req = match msg {
                Message::Known(req) => req,
                // A newer daemon's request (it should have known better:
                // it gates requests on this supervisor's protocol).
                Message::Unknown { variant } => {
                    eprintln!("sandboxd supervisor: skipping unknown request {variant:?}");
                    continue;
                }
            };
            let count = req.fd_count();
            if self.fds.len() < count {
                return Err(WireError::Malformed(serde::de::Error::custom(format!(
                    "request carries {count} descriptors but {} arrived",
                    self.fds.len()
                ))));
            }
            let fds = self.fds.drain(..count).collect();
            out.push((req, fds));
        }
        Ok(RecvOutcome::Requests(out))
    }

    /// Blocks until one complete frame of type `T` arrives (the launch
    /// configuration, which the daemon sends first).
    pub fn recv_first<T: for<'de> serde::Deserialize<'de>>(&mut self) -> Result<T, WireError> {
        loop {
            if let Some(frame) = self.decoder.next_frame::<T>()? {
                return Ok(frame);
            }
            let mut fds = Vec::new();
            match sys::recv_with_fds(self.sock.as_fd(), &mut self.buf, &mut fds) {
                Ok(0) => {
                    return Err(WireError::Malformed(serde::de::Error::custom(
                        "daemon closed the channel before sending the launch configuration",
                    )));
                }
                Ok(n) => {
                    self.decoder.push(&self.buf[..n]);
                    // Descriptors that ride on the launch frames (a
                    // network namespace to join): kept for take_launch_fds.
                    self.fds.extend(fds);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireError::Malformed(serde::de::Error::custom(e))),
            }
        }
    }

    /// The descriptors the daemon attached to the launch frames, in order;
    /// called once after both were read, so no request's descriptors are
    /// taken.
    pub fn take_launch_fds(&mut self) -> Vec<OwnedFd> {
        self.fds.drain(..).collect()
    }

    /// Sends one event. A vanished daemon is not an error: the sandbox keeps
    /// running and its exit is persisted to the exit file instead.
    pub fn send(&mut self, event: &Event) {
        self.send_with_fds(event, &[]);
    }

    /// Sends one event with descriptors attached (to its first bytes).
    pub fn send_with_fds(&mut self, event: &Event, fds: &[BorrowedFd<'_>]) {
        if self.closed {
            return;
        }
        let Ok(bytes) = wire::encode(event) else {
            return;
        };
        let mut sent = 0;
        while sent < bytes.len() {
            let attach = if sent == 0 { fds } else { &[] };
            match sys::send_with_fds(self.sock.as_fd(), &bytes[sent..], attach) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
