//! Reading a sandbox's main-process log (the LogService): the files the
//! supervisor writes (format: [`sandboxd_core::logs`]), oldest first, with
//! `tail`, `since`, stream selection and `follow`.
//!
//! Runs on a blocking thread per call and hands entries one at a time to
//! `send`, which blocks while the client's stream is full: a slow client
//! slows its reader, never the writer, and the daemon holds at most the
//! stream's small queue of entries (each ≤ 16 KiB) per call. A follower
//! that falls behind by more than the rotation keeps loses the oldest
//! files (they are removed under it) and is told how many it skipped.

use std::io::{BufReader, Seek, SeekFrom};
use std::time::Duration;

use sandboxd_core::logs::{self, Entry, LogDir, LogDirError, Next, Stream};

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// What a Logs call asks for.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// Keep reading new output until the sandbox ends.
    pub follow: bool,
    /// Only the last this many matching entries of what is there.
    pub tail: Option<u64>,
    /// Only entries at or after this time (ns since the epoch).
    pub since_ns: u64,
    /// Stdout entries.
    pub stdout: bool,
    /// Stderr entries.
    pub stderr: bool,
}

impl Query {
    fn wants(&self, e: &Entry) -> bool {
        e.time_ns >= self.since_ns
            && match e.stream {
                Stream::Stdout => self.stdout,
                Stream::Stderr => self.stderr,
            }
    }
}

/// Why reading stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The directory or a file could not be read.
    #[error(transparent)]
    Dir(#[from] LogDirError),
    /// A file could not be read or is corrupt.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the reader is.
struct Cursor {
    generation: u64,
    file: BufReader<std::fs::File>,
    pos: u64,
}

/// Streams the log in `dir` to `send` (an entry and the number of files
/// skipped before it); stops when `send` returns false (the client is
/// gone), at the end without `follow`, or with it once `ended()` was true
/// before the end was reached, or `stop()` (the daemon shuts down).
pub fn read(
    dir: &LogDir,
    query: Query,
    ended: impl Fn() -> bool,
    stop: impl Fn() -> bool,
    mut send: impl FnMut(Entry, u64) -> bool,
) -> Result<(), ReadError> {
    // `tail`: count what matches now, then skip all but the last `tail`.
    let mut skip = match query.tail {
        Some(tail) => count(dir, &query)?.saturating_sub(tail),
        None => 0,
    };
    let mut cursor: Option<Cursor> = None;
    let mut skipped_files = 0u64;
    loop {
        // Read before looking: an exit recorded now means the supervisor
        // had logged everything before this pass starts.
        let was_ended = ended();
        if let Some(c) = &mut cursor {
            loop {
                match logs::read_record(&mut c.file, c.pos) {
                    Ok(Next::Entry(entry, n)) => {
                        c.pos += n;
                        if !query.wants(&entry) {
                            continue;
                        }
                        if skip > 0 {
                            skip -= 1;
                            continue;
                        }
                        if !send(entry, std::mem::take(&mut skipped_files)) {
                            return Ok(());
                        }
                    }
                    Ok(Next::End) => {
                        // Perhaps mid-record: the next look starts at the
                        // record's beginning.
                        c.file
                            .seek(SeekFrom::Start(c.pos))
                            .map_err(|source| ReadError::Read {
                                path: dir
                                    .path()
                                    .join(logs::file_name(c.generation))
                                    .display()
                                    .to_string(),
                                source,
                            })?;
                        break;
                    }
                    Err(source) => {
                        return Err(ReadError::Read {
                            path: dir
                                .path()
                                .join(logs::file_name(c.generation))
                                .display()
                                .to_string(),
                            source,
                        });
                    }
                }
            }
        }
        // The next file, if the writer has rotated (or this is the start).
        let after = cursor.as_ref().map(|c| c.generation);
        let next = dir
            .generations()?
            .into_iter()
            .find(|g| after.is_none_or(|a| *g > a));
        if let Some(generation) = next {
            if let Some(file) = dir.open_file(generation)? {
                if let Some(a) = after {
                    skipped_files += generation - a - 1;
                }
                cursor = Some(Cursor {
                    generation,
                    file: BufReader::with_capacity(logs::MAX_RECORD + logs::HEADER, file),
                    pos: 0,
                });
            }
            // Removed between the listing and the open: list again.
            continue;
        }
        if !query.follow || was_ended || stop() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// How many entries match `query` now, over every file.
fn count(dir: &LogDir, query: &Query) -> Result<u64, ReadError> {
    let mut n = 0;
    for generation in dir.generations()? {
        let Some(file) = dir.open_file(generation)? else {
            continue;
        };
        let mut file = BufReader::with_capacity(logs::MAX_RECORD + logs::HEADER, file);
        let mut pos = 0;
        loop {
            match logs::read_record(&mut file, pos) {
                Ok(Next::Entry(e, len)) => {
                    pos += len;
                    n += u64::from(query.wants(&e));
                }
                Ok(Next::End) => break,
                Err(source) => {
                    return Err(ReadError::Read {
                        path: dir
                            .path()
                            .join(logs::file_name(generation))
                            .display()
                            .to_string(),
                        source,
                    });
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn write(dir: &LogDir, generation: u64, entries: &[(Stream, u64, &str)]) {
        let mut buf = Vec::new();
        for (s, t, b) in entries {
            logs::encode(&mut buf, *s, *t, b.as_bytes());
        }
        dir.create(generation).unwrap().write_all(&buf).unwrap();
    }

    fn all(dir: &LogDir, q: Query) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        read(
            dir,
            q,
            || true,
            || false,
            |e, skipped| {
                out.push((String::from_utf8(e.bytes).unwrap(), skipped));
                true
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn tail_since_and_streams_select_across_files() {
        let base = std::env::temp_dir().join(format!("sbx-logread-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let dir = LogDir::open(&base, true).unwrap().unwrap();
        use Stream::{Stderr as E, Stdout as O};
        write(&dir, 2, &[(O, 1, "a"), (E, 2, "b"), (O, 3, "c")]);
        write(&dir, 4, &[(E, 4, "d"), (O, 5, "e")]);
        let q = Query {
            follow: false,
            tail: None,
            since_ns: 0,
            stdout: true,
            stderr: true,
        };
        let texts = |v: Vec<(String, u64)>| v.into_iter().map(|(s, _)| s).collect::<String>();
        let rows: [(Query, &str); 7] = [
            (q, "abcde"),
            (Query { tail: Some(2), ..q }, "de"),
            (Query { tail: Some(0), ..q }, ""),
            (
                Query {
                    tail: Some(99),
                    ..q
                },
                "abcde",
            ),
            (Query { stderr: false, ..q }, "ace"),
            (
                Query {
                    stdout: false,
                    tail: Some(1),
                    ..q
                },
                "d",
            ),
            (
                Query {
                    since_ns: 3,
                    stderr: false,
                    ..q
                },
                "ce",
            ),
        ];
        for (query, want) in rows {
            assert_eq!(texts(all(&dir, query)), want, "{query:?}");
        }
        // Generation 3 was rotated away: the first entry after the gap says
        // so (the reader starts at 2 and finds 4 next).
        assert_eq!(all(&dir, q)[3], ("d".to_owned(), 1));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
