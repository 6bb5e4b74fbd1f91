//! The main process's log files: their on-disk format, names and rotation
//! rule, shared by the writer (the supervisor, which owns the capture so a
//! daemon restart loses nothing) and the reader (the daemon's Logs RPC).
//!
//! The files live in `<sandbox dir>/logs/`, beside `record.json` and outside
//! the sandbox's root, so no sandbox process can reach or change them. The
//! directory is opened without following a symlink, and every file in it is
//! created with `O_EXCL | O_NOFOLLOW` and opened with `O_NOFOLLOW`.
//!
//! Each file is a sequence of records: a 13-byte header (stream: 1 byte,
//! 1 = stdout, 2 = stderr; time: 8 bytes big-endian, nanoseconds since the
//! Unix epoch; length: 4 bytes big-endian) and up to [`MAX_RECORD`] bytes of
//! output. The writer splits what it reads at newlines, so a record is
//! normally one line (with its newline); a longer line, or the tail of a
//! read that ended mid-line, is its own record. Files are named
//! `main-<generation>.log`; the writer starts a new generation when the
//! next record would push the current file past its size cap, then removes
//! generations older than the newest `max_files`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// The directory's name inside the sandbox's state directory.
pub const DIR: &str = "logs";
/// Largest output chunk in one record.
pub const MAX_RECORD: usize = 16 * 1024;
/// Bytes of a record's header.
pub const HEADER: usize = 13;
/// A file's size cap when a spec sets none.
pub const DEFAULT_FILE_BYTES: u64 = 8 << 20;
/// How many files are kept when a spec sets none.
pub const DEFAULT_FILES: u32 = 3;
/// Smallest size cap a spec may set for one file.
pub const MIN_FILE_BYTES: u64 = 64 * 1024;
/// Most files a spec may keep.
pub const MAX_FILES: u32 = 16;
/// The daemon's default cap on one sandbox's log (file size × files).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 << 20;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn byte(self) -> u8 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Stdout),
            2 => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// The size cap and rotation of one sandbox's log, as the supervisor
/// applies it (validation has filled in the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// A file is rotated before it would grow past this many bytes.
    pub max_file_bytes: u64,
    /// Files kept, the one being written included.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_FILE_BYTES,
            max_files: DEFAULT_FILES,
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its stream.
    pub stream: Stream,
    /// When the supervisor read it, in nanoseconds since the epoch.
    pub time_ns: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Appends one record (header and bytes) to `out`; `bytes` must be at most
/// [`MAX_RECORD`] long (the writer's chunks are).
pub fn encode(out: &mut Vec<u8>, stream: Stream, time_ns: u64, bytes: &[u8]) {
    let len = u32::try_from(bytes.len().min(MAX_RECORD)).unwrap_or(u32::MAX);
    out.push(stream.byte());
    out.extend_from_slice(&time_ns.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..bytes.len().min(MAX_RECORD)]);
}

/// Splits `buf` into record-sized pieces: each line with its newline, the
/// remainder (a line cut by the read) last, none over [`MAX_RECORD`].
pub fn split_lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split_inclusive(|b| *b == b'\n')
        .flat_map(|line| line.chunks(MAX_RECORD))
}

/// A header that cannot be a record's: the file is not a log file (or is
/// corrupt), and reading it stops there.
#[derive(Debug, thiserror::Error)]
#[error("corrupt log record header at byte {offset}")]
pub struct Corrupt {
    /// Where, in the file.
    pub offset: u64,
}

/// The outcome of reading one record.
#[derive(Debug)]
pub enum Next {
    /// A whole record, and the bytes it took in the file.
    Entry(Entry, u64),
    /// The end of what has been written so far (possibly in the middle of
    /// a record the writer is still writing: read again from the same
    /// place).
    End,
}

/// Reads the record at the reader's position. On [`Next::End`] after a
/// partial record, the caller must seek back to where the record began.
pub fn read_record(r: &mut impl Read, offset: u64) -> Result<Next, io::Error> {
    let mut header = [0u8; HEADER];
    if !read_full(r, &mut header)? {
        return Ok(Next::End);
    }
    let stream = Stream::from_byte(header[0]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&header[1..9]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[9..13]);
    let len = u32::from_be_bytes(len) as usize;
    let Some(stream) = stream.filter(|_| len <= MAX_RECORD) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            Corrupt { offset },
        ));
    };
    let mut bytes = vec![0u8; len];
    if !read_full(r, &mut bytes)? {
        return Ok(Next::End);
    }
    Ok(Next::Entry(
        Entry {
            stream,
            time_ns: u64::from_be_bytes(time),
            bytes,
        },
        (HEADER + len) as u64,
    ))
}

/// Fills `buf`; false if the input ended first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A log file's name for `generation`.
pub fn file_name(generation: u64) -> String {
    format!("main-{generation}.log")
}

/// The generation a log file's name stands for; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("main-")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The generations that rotation removes once `newest` is being written.
pub fn expired(generations: &[u64], newest: u64, max_files: u32) -> Vec<u64> {
    let keep_from = newest.saturating_sub(u64::from(max_files.max(1)) - 1);
    generations
        .iter()
        .copied()
        .filter(|g| *g < keep_from)
        .collect()
}

/// Errors of the log directory.
#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    /// Creating or opening the directory.
    #[error("opening log directory {path}: {source}")]
    OpenDir {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Listing it.
    #[error("listing log directory {path}: {source}")]
    List {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Creating, opening or removing one file.
    #[error("{op} log file {path}: {source}")]
    File {
        /// "create", "open", "remove".
        op: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A sandbox's log directory, opened once: every file is reached from its
/// descriptor, never through a symlink.
#[derive(Debug)]
pub struct LogDir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl LogDir {
    /// The log directory of the sandbox whose state directory is
    /// `sandbox_dir`, created (mode 0700) if `create`; `None` when it does
    /// not exist and `create` is false.
    pub fn open(sandbox_dir: &Path, create: bool) -> Result<Option<Self>, LogDirError> {
        let path = sandbox_dir.join(DIR);
        let fail = |e: nix::Error| LogDirError::OpenDir {
            path: path.clone(),
            source: io::Error::from(e),
        };
        let parent = nix::fcntl::open(sandbox_dir, DIR_FLAGS, Mode::empty()).map_err(fail)?;
        if create {
            match mkdirat(parent.as_fd(), DIR, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        match openat(parent.as_fd(), DIR, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Self { fd, path })),
            Err(nix::Error::ENOENT) if !create => Ok(None),
            Err(e) => Err(fail(e)),
        }
    }

    /// Its path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generations present, oldest first.
    pub fn generations(&self) -> Result<Vec<u64>, LogDirError> {
        let fail = |e: nix::Error| LogDirError::List {
            path: self.path.clone(),
            source: io::Error::from(e),
        };
        let dup = self.fd.try_clone().map_err(|e| LogDirError::List {
            path: self.path.clone(),
            source: e,
        })?;
        let mut dir = nix::dir::Dir::from_fd(dup).map_err(fail)?;
        let mut out: Vec<u64> = dir
            .iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().and_then(parse_file_name))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Creates the file of `generation` (it must not exist).
    pub fn create(&self, generation: u64) -> Result<File, LogDirError> {
        let name = file_name(generation);
        openat(
            self.fd.as_fd(),
            name.as_str(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_APPEND,
            Mode::from_bits_truncate(0o600),
        )
        .map(File::from)
        .map_err(|e| self.file_error("create", &name, e))
    }

    /// Opens the file of `generation` to read; `None` if it is gone.
    pub fn open_file(&self, generation: u64) -> Result<Option<File>, LogDirError> {
        let name = file_name(generation);
        match openat(
            self.fd.as_fd(),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(nix::Error::ENOENT) => Ok(None),
            Err(e) => Err(self.file_error("open", &name, e)),
        }
    }

    /// Removes the file of `generation`; a missing one is fine.
    pub fn remove(&self, generation: u64) -> Result<(), LogDirError> {
        let name = file_name(generation);
        match unlinkat(self.fd.as_fd(), name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
            Err(e) => Err(self.file_error("remove", &name, e)),
        }
    }

    fn file_error(&self, op: &'static str, name: &str, e: nix::Error) -> LogDirError {
        LogDirError::File {
            op,
            path: self.path.join(name),
            source: io::Error::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_names_round_trip_and_nothing_else_parses() {
        for (name, want) in [
            ("main-0.log", Some(0)),
            ("main-17.log", Some(17)),
            ("main-017.log", None),
            ("main-.log", None),
            ("main-1.log.tmp", None),
            ("main--1.log", None),
            ("other-1.log", None),
            ("main-1x.log", None),
            ("main-99999999999999999999999.log", None),
        ] {
            assert_eq!(parse_file_name(name), want, "{name}");
        }
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
    }

    #[test]
    fn rotation_keeps_the_newest_max_files() {
        for (gens, newest, max, want) in [
            (vec![0, 1, 2, 3], 3, 3, vec![0]),
            (vec![0, 1, 2, 3], 3, 1, vec![0, 1, 2]),
            (vec![5], 5, 3, vec![]),
            (vec![0, 1], 1, 0, vec![0]),
            (vec![], 0, 3, vec![]),
        ] {
            assert_eq!(expired(&gens, newest, max), want, "{gens:?} {newest} {max}");
        }
    }

    #[test]
    fn lines_become_records_none_longer_than_the_cap() {
        let long = vec![b'x'; MAX_RECORD + 5];
        for (input, want) in [
            (&b"a\nbc\n"[..], vec![&b"a\n"[..], &b"bc\n"[..]]),
            (&b"a\nbc"[..], vec![&b"a\n"[..], &b"bc"[..]]),
            (&b""[..], vec![]),
            (&long[..], vec![&long[..MAX_RECORD], &long[MAX_RECORD..]]),
        ] {
            assert_eq!(split_lines(input).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn records_round_trip_and_a_partial_one_is_the_end() {
        let mut buf = Vec::new();
        encode(&mut buf, Stream::Stdout, 7, b"hello\n");
        encode(&mut buf, Stream::Stderr, 9, b"oops");
        let mut r = &buf[..];
        let Next::Entry(e, n) = read_record(&mut r, 0).unwrap() else {
            panic!("no first record")
        };
        assert_eq!(
            (e.stream, e.time_ns, &e.bytes[..], n),
            (Stream::Stdout, 7, &b"hello\n"[..], 19)
        );
        let Next::Entry(e, _) = read_record(&mut r, n).unwrap() else {
            panic!("no second record")
        };
        assert_eq!(
            (e.stream, e.time_ns, &e.bytes[..]),
            (Stream::Stderr, 9, &b"oops"[..])
        );
        assert!(matches!(read_record(&mut r, 0).unwrap(), Next::End));
        // Cut anywhere inside a record: the end, not garbage.
        for cut in 1..buf.len() - 17 {
            let mut r = &buf[..cut.min(18)];
            assert!(
                matches!(read_record(&mut r, 0).unwrap(), Next::End),
                "cut {cut}"
            );
        }
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(read_record(&mut &bad[..], 0).is_err());
        let mut huge = Vec::new();
        huge.push(1);
        huge.extend_from_slice(&0u64.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_record(&mut &huge[..], 0).is_err());
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let base = std::env::temp_dir().join(format!("sbx-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join(DIR)).unwrap();
        assert!(LogDir::open(&base, true).is_err());
        std::fs::remove_file(base.join(DIR)).unwrap();
        let dir = LogDir::open(&base, true).unwrap().unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere/x"), base.join(DIR).join(file_name(0)))
            .unwrap();
        assert!(dir.create(0).is_err());
        assert!(dir.open_file(0).is_err());
        assert!(!base.join("elsewhere/x").exists());
        dir.create(1).unwrap();
        assert_eq!(dir.generations().unwrap(), vec![0, 1]);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
