//! The main process's output capture: two pipes whose write ends become
//! the main process's stdout and stderr, read in the supervisor's poll loop
//! and written to the sandbox's log files (format and rotation:
//! [`sandboxd_core::logs`]).
//!
//! The supervisor owns the capture, not the daemon: it outlives a daemon
//! restart, so nothing the main process writes meanwhile is lost.
//!
//! Memory stays bounded whatever the process writes: the supervisor reads
//! at most [`READ_CHUNK`] bytes from a pipe per turn of its loop, writes
//! them to the file before reading more, and never buffers beyond that.
//! When the disk is slower than the process, the supervisor's write blocks,
//! the pipe fills, and the process blocks in its own write: backpressure,
//! as Docker's default (blocking) log mode. Nothing is dropped on the
//! writing side unless the file cannot be written at all (a full disk):
//! then the output is read and discarded, counted, and reported once on the
//! supervisor's stderr, so the process is never blocked forever.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use sandboxd_core::logs::{self, LogConfig, LogDir, Stream};

use crate::step::Step;
use crate::supervisor::StepError;
use crate::sys;

/// Bytes read from a pipe per turn of the loop.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The write ends, for the main process's stdout and stderr.
#[derive(Debug)]
pub struct MainOutput {
    /// Becomes fd 1.
    pub stdout: OwnedFd,
    /// Becomes fd 2.
    pub stderr: OwnedFd,
}

/// The supervisor's side of the capture.
#[derive(Debug)]
pub(crate) struct Capture {
    dir: LogDir,
    config: LogConfig,
    generation: u64,
    file: File,
    size: u64,
    /// Read ends (non-blocking): stdout, stderr; `None` once at EOF.
    pipes: [Option<OwnedFd>; 2],
    buf: Vec<u8>,
    records: Vec<u8>,
    /// Bytes read but not written (the file could not be written).
    discarded: u64,
    sandbox_id: String,
}

impl Capture {
    /// Opens (creates) the log directory in `sandbox_dir`, starts a new
    /// generation after any left there, and makes the two pipes.
    pub(crate) fn new(
        sandbox_dir: &Path,
        config: LogConfig,
        sandbox_id: &str,
    ) -> Result<(Self, MainOutput), StepError> {
        let step = Step::OpenTheLogFiles;
        let dir = LogDir::open(sandbox_dir, true)
            .map_err(|e| StepError::new(step, e))?
            .ok_or_else(|| StepError::new(step, "the log directory vanished"))?;
        let generation = dir
            .generations()
            .map_err(|e| StepError::new(step, e))?
            .last()
            .map_or(0, |g| g + 1);
        let file = dir
            .create(generation)
            .map_err(|e| StepError::new(step, e))?;
        let pipe =
            || sys::pipe_nonblocking_read().map_err(|e| StepError::new(Step::CreateTheLogPipes, e));
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        Ok((
            Self {
                dir,
                config,
                generation,
                file,
                size: 0,
                pipes: [Some(out_r), Some(err_r)],
                buf: vec![0; READ_CHUNK],
                records: Vec::with_capacity(READ_CHUNK + READ_CHUNK / 4),
                discarded: 0,
                sandbox_id: sandbox_id.to_owned(),
            },
            MainOutput {
                stdout: out_w,
                stderr: err_w,
            },
        ))
    }

    /// The pipes still open, with their index for [`Capture::read_one`].
    pub(crate) fn open_pipes(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.pipes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|fd| (i, fd.as_fd())))
    }

    /// Reads once from pipe `index` and logs what came. Returns false when
    /// there was nothing to read (EAGAIN, or EOF, which closes the pipe).
    pub(crate) fn read_one(&mut self, index: usize) -> bool {
        let Some(fd) = self.pipes.get(index).and_then(Option::as_ref) else {
            return false;
        };
        let stream = if index == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        match sys::read(fd.as_fd(), &mut self.buf) {
            Ok(0) => {
                self.pipes[index] = None;
                false
            }
            Ok(n) => {
                self.log(stream, n);
                true
            }
            Err(Errno::EINTR) => true,
            Err(Errno::EAGAIN) => false,
            Err(e) => {
                eprintln!(
                    "sandboxd supervisor {}: reading the main process's {stream:?}: {e}",
                    self.sandbox_id
                );
                self.pipes[index] = None;
                false
            }
        }
    }

    /// Reads everything buffered in both pipes (the writers are gone, or
    /// the sandbox is ending): until EOF or nothing more is there.
    pub(crate) fn drain(&mut self) {
        for index in 0..self.pipes.len() {
            while self.read_one(index) {}
        }
        if self.discarded > 0 {
            eprintln!(
                "sandboxd supervisor {}: {} bytes of the main process's output could not be written to {}",
                self.sandbox_id,
                self.discarded,
                self.dir.path().display()
            );
        }
    }

    /// Writes the first `n` bytes of the read buffer as records, rotating
    /// before a record would push the file past its cap.
    fn log(&mut self, stream: Stream, n: usize) {
        let time_ns = now_ns();
        self.records.clear();
        let max = self.config.max_file_bytes;
        // Taken out for the loop (flush and rotate need `self`); put back
        // below, so no allocation per read.
        let buf = std::mem::take(&mut self.buf);
        for piece in logs::split_lines(&buf[..n]) {
            let len = (logs::HEADER + piece.len()) as u64;
            if self.size + (self.records.len() as u64) + len > max
                && self.size + self.records.len() as u64 > 0
            {
                self.flush();
                self.rotate();
            }
            logs::encode(&mut self.records, stream, time_ns, piece);
        }
        self.buf = buf;
        self.flush();
    }

    fn flush(&mut self) {
        if self.records.is_empty() {
            return;
        }
        match self.file.write_all(&self.records) {
            Ok(()) => self.size += self.records.len() as u64,
            Err(e) => {
                if self.discarded == 0 {
                    eprintln!(
                        "sandboxd supervisor {}: writing {}: {e}; output is discarded until it can be written",
                        self.sandbox_id,
                        self.dir.path().display()
                    );
                }
                self.discarded += self.records.len() as u64;
            }
        }
        self.records.clear();
    }

    /// Starts the next generation and removes the ones past `max_files`.
    fn rotate(&mut self) {
        let next = self.generation + 1;
        match self.dir.create(next) {
            Ok(file) => {
                self.file = file;
                self.generation = next;
                self.size = 0;
            }
            Err(e) => {
                // Keep writing the old file rather than lose output; its cap
                // is exceeded until a rotation succeeds.
                eprintln!("sandboxd supervisor {}: rotating: {e}", self.sandbox_id);
                return;
            }
        }
        let gens = self.dir.generations().unwrap_or_default();
        for old in logs::expired(&gens, self.generation, self.config.max_files) {
            if let Err(e) = self.dir.remove(old) {
                eprintln!("sandboxd supervisor {}: {e}", self.sandbox_id);
            }
        }
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
