//! The daemon's state store: an append-only journal (`STATE_DIR/journal`)
//! of records (whole at a sandbox's first save after each compaction, then
//! only what changed of its progress: state, pids, exit, the destroy's
//! mark), and one JSON record file per sandbox under
//! `STATE_DIR/sandboxes/<id>/record.json`, written by rename (a temp file
//! renamed over it), so a reader never sees a torn one. A save appends the
//! record to the journal; a durable one then waits for one `fdatasync`
//! shared with every concurrent save (group commit, see [`Journal`]). The
//! journal holds a record's newest state until the next compaction, which
//! writes the record files of everything saved since, makes every record
//! file durable and empties the journal: when the journal outgrows
//! [`JOURNAL_LIMIT`], and at start, after the journal is replayed over the
//! files (after a power loss they may be stale or torn; the journal is
//! not). So a sandbox that lives and goes between two compactions costs
//! journal appends only, no record file: on a filesystem that pays for
//! every inode made and deleted (ext4 without a journal scans past every
//! recently deleted one), those were four of a sandbox's nine inodes.
//! Records are reached from the `sandboxes` directory's
//! descriptor with `*at` calls and O_NOFOLLOW: a symlink planted in the
//! store is never written or read through.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use serde::{Deserialize, Serialize};

use crate::capability::IsolationReport;
use crate::spec::SandboxSpec;
use crate::validate::is_id;

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Being set up.
    Creating,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Ended.
    Exited,
}

/// Why something ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Exited on its own.
    Exited,
    /// Killed by a signal.
    Signaled,
    /// OOM-killed under the memory limit.
    OomKilled,
    /// Killed for exceeding another limit.
    LimitKilled,
    /// Killed by a timeout.
    Timeout,
    /// Setup failed.
    SetupFailed,
    /// Lost track (supervisor died).
    Lost,
}

/// How something ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Why.
    pub reason: ExitReason,
    /// Shell-style exit code.
    pub code: i32,
    /// Terminating signal (0 if none).
    pub signal: i32,
    /// Detail.
    pub message: String,
    /// When (ms since epoch).
    pub finished_at_ms: i64,
}

/// One sandbox as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// Id (16 hex).
    pub id: String,
    /// Creating identity.
    pub owner: String,
    /// Idempotency key, if any.
    pub request_id: String,
    /// Validated spec with defaults.
    pub spec: SandboxSpec,
    /// Effective isolation.
    pub report: IsolationReport,
    /// State.
    pub state: SandboxState,
    /// Supervisor pid (0 if none).
    pub supervisor_pid: i32,
    /// Main process pid (0 if none).
    pub main_pid: i32,
    /// Host pid of the sandbox's first process (Linux: pid 1, whose
    /// namespaces a child joins); 0 if none or unknown.
    #[serde(default)]
    pub init_pid: i32,
    /// Exit, once ended.
    pub exit: Option<ExitRecord>,
    /// Creation time (ms since epoch).
    pub created_at_ms: i64,
    /// Network leases (RESTRICTED); rebuilt into the lease table at start.
    #[serde(default)]
    pub lease: crate::net::NetLease,
    /// A destroy has begun: the journal entry that makes the next start
    /// finish it if the daemon dies midway.
    #[serde(default)]
    pub destroying: bool,
}

/// State-store failures, named after the step.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating a directory.
    #[error("creating state directory {path}: {source}")]
    CreateDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Writing the temp file.
    #[error("writing {path}: {source}")]
    Write {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Renaming into place.
    #[error("renaming {from} to {to}: {source}")]
    Rename {
        /// Temp path.
        from: PathBuf,
        /// Final path.
        to: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// fsync of a directory.
    #[error("syncing directory {path}: {source}")]
    SyncDir {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Reading a record.
    #[error("reading {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A record that does not parse.
    #[error("parsing {path}: {source}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// Removing a record.
    #[error("removing {path}: {source}")]
    Remove {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Opening, appending to, syncing or replaying the journal.
    #[error("journal {path}: {source}")]
    Journal {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// An id that is not 16 hex characters (never joined into a path).
    #[error("refusing state path for malformed id {0:?}")]
    BadId(String),
}

/// A directory opened for `*at` calls: never through a symlink in its last
/// component, and only if it is a directory.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn errno(e: nix::Error) -> io::Error {
    io::Error::from(e)
}

/// Opens directory `name` in `dir` without following a symlink there.
fn open_dir_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(errno)
}

/// Writes `bytes` to `path` atomically: its directory is opened without
/// following a symlink there, then [`write_atomic_at`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (fd, dir, name) = open_parent(path)?;
    write_atomic_at(fd.as_fd(), dir, name, bytes)
}

/// `path`'s directory, opened without following a symlink there, its
/// path, and the file's name in it.
fn open_parent(path: &Path) -> Result<(OwnedFd, &Path, &Path), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| StoreError::Write {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let fd = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()).map_err(|e| StoreError::Write {
        path: path.to_owned(),
        source: errno(e),
    })?;
    Ok((fd, dir, Path::new(name)))
}

/// Writes `bytes` to `path` by rename, like [`write_atomic`], without the
/// file and directory syncs: a reader never sees a torn file and a process
/// crash loses nothing (the page cache survives), but a power loss may lose
/// the write. For files that only bridge a daemon that is away (the
/// helper's `exit.json`), not the durable record of anything.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (fd, dir, name) = open_parent(path)?;
    write_replace_at(fd.as_fd(), dir, name, bytes, false)
}

/// Writes `bytes` to `name` in the directory `dir` (named `dir_path` in
/// errors) atomically: a new temp file in the same directory (O_EXCL and
/// O_NOFOLLOW: nothing planted there is written through), fsync, rename
/// over `name` (which replaces a symlink there rather than following it),
/// fsync of the directory. Every step is relative to `dir`, so a directory
/// swapped for a symlink on the way cannot redirect it.
pub fn write_atomic_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &Path,
    bytes: &[u8],
) -> Result<(), StoreError> {
    write_replace_at(dir, dir_path, name, bytes, true)
}

/// [`write_atomic_at`], with the file and directory syncs only if `sync`
/// (without: readers never see a torn file, but a power loss may lose or
/// tear it; the store's journal covers that).
fn write_replace_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &Path,
    bytes: &[u8],
    sync: bool,
) -> Result<(), StoreError> {
    // Unique per call, not just per process: two threads saving the same
    // record at once (an exit and a destroy) must not share a temp file,
    // or one's rename finds it gone.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = name.as_os_str().to_os_string();
    tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let write = || -> io::Result<()> {
        let fd = openat(
            dir,
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(errno)?;
        let mut f = File::from(fd);
        f.write_all(bytes)?;
        if sync { f.sync_all() } else { Ok(()) }
    };
    if let Err(source) = write() {
        let _ = unlinkat(dir, &tmp, UnlinkatFlags::NoRemoveDir);
        return Err(StoreError::Write {
            path: dir_path.join(&tmp),
            source,
        });
    }
    if let Err(e) = renameat(dir, &tmp, dir, name) {
        let _ = unlinkat(dir, &tmp, UnlinkatFlags::NoRemoveDir);
        return Err(StoreError::Rename {
            from: dir_path.join(&tmp),
            to: dir_path.join(name),
            source: errno(e),
        });
    }
    if !sync {
        return Ok(());
    }
    nix::unistd::fsync(dir).map_err(|e| StoreError::SyncDir {
        path: dir_path.to_owned(),
        source: errno(e),
    })
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StoreError::SyncDir {
            path: dir.to_owned(),
            source,
        })
}

/// The on-disk store.
#[derive(Debug, Clone)]
pub struct StateStore {
    sandboxes: PathBuf,
    /// `sandboxes`, opened once: every record is reached from it by `*at`
    /// calls that never follow a symlink.
    dir: Arc<OwnedFd>,
    /// The journal that makes record writes durable.
    journal: Arc<Journal>,
    /// Its path (for errors).
    journal_path: PathBuf,
    /// `trash/` in the state directory: [`Self::remove_unsynced`] renames a
    /// sandbox's directory in here and deletes it on a thread of its own.
    trash: Arc<OwnedFd>,
    /// Its path.
    trash_path: PathBuf,
    /// Emptied sandbox directories kept for reuse (`spare/`).
    spares: Arc<Spares>,
}

/// `spare/` in the state directory: sandbox directories a destroy emptied
/// (all but `root/`, the Linux and FreeBSD root's mount point, emptied
/// too) instead of deleting them, which [`StateStore::create_sandbox_dir`]
/// renames into place. A directory is an inode made and freed on the state disk, and on
/// ext4 the allocator skips recently freed inodes one by one: under a
/// steady stream of creates and destroys, two fewer per sandbox are
/// measurable (bench/README.md, tenth round).
#[derive(Debug)]
struct Spares {
    dir: OwnedFd,
    /// The names of the spares in `dir`, each taken by one create.
    names: Mutex<Vec<String>>,
    /// The next spare's name.
    next: std::sync::atomic::AtomicU64,
}

/// The record file inside a sandbox's directory.
const RECORD: &str = "record.json";

/// The state directory's subdirectory that removed sandbox directories are
/// renamed into, to be deleted off the destroy's path.
const TRASH: &str = "trash";

/// The state directory's subdirectory of emptied sandbox directories.
const SPARE: &str = "spare";

/// About this many spares are kept (two destroys retiring at once may
/// both take the last place); a destroy deletes the rest. A busy daemon
/// needs about as many as destroys overlap creates.
const MAX_SPARES: usize = 32;

/// The entries a spare keeps, emptied, if they are directories (not
/// symlinks): a sandbox's root mount point, which nothing holds open once
/// the sandbox is gone. Not its log directory: a Logs stream that follows
/// a sandbox holds that directory open and lists it again for new files
/// (a rotation's) until it sees the sandbox ended, so, reused, it could show
/// the next sandbox's output to the last one's reader.
const SPARE_KEEPS: [&str; 1] = ["root"];

impl StateStore {
    /// Opens (creating) the store under `state_dir`. `sandboxes` inside it
    /// must be a real directory, not a symlink.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let sandboxes = state_dir.join("sandboxes");
        create_private_dir(state_dir)?;
        let state = nix::fcntl::open(
            state_dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StoreError::CreateDir {
            path: state_dir.to_owned(),
            source: errno(e),
        })?;
        let dir = make_private_dir_at(state.as_fd(), state_dir, Path::new("sandboxes"))?;
        let journal = Journal::open(state.as_fd(), state_dir)?;
        let trash = make_private_dir_at(state.as_fd(), state_dir, Path::new(TRASH))?;
        let trash_path = state_dir.join(TRASH);
        let spare = make_private_dir_at(state.as_fd(), state_dir, Path::new(SPARE))?;
        let spare_path = state_dir.join(SPARE);
        // What a previous daemon renamed there and had not deleted yet, and
        // its spares (cheaper to make again than to prove empty).
        for dir in [&trash_path, &spare_path] {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(Self {
            sandboxes,
            dir: Arc::new(dir),
            journal: Arc::new(journal),
            journal_path: state_dir.join(JOURNAL),
            trash: Arc::new(trash),
            trash_path,
            spares: Arc::new(Spares {
                dir: spare,
                names: Mutex::new(Vec::new()),
                next: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    fn journal_error(&self, source: io::Error) -> StoreError {
        StoreError::Journal {
            path: self.journal_path.clone(),
            source,
        }
    }

    /// The directory of one sandbox (its record, exit file, rootfs mount
    /// point). Only well-formed ids map to a path.
    pub fn sandbox_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_id(id) {
            return Err(StoreError::BadId(id.to_owned()));
        }
        Ok(self.sandboxes.join(id))
    }

    /// Creates the directory of a new sandbox (an existing one must be a
    /// real directory, not a symlink): a spare renamed into place when
    /// there is one ([`Self::retire`]; it may hold an empty `root/`, which
    /// its maker takes as it is), else a new one.
    pub fn create_sandbox_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.sandbox_dir(id)?;
        let spare = lock(&self.spares.names).pop();
        if let Some(name) = spare {
            // Onto an existing directory of that id this fails (unless it
            // is empty, which the spare then replaces): the spare stays.
            if renameat(
                self.spares.dir.as_fd(),
                Path::new(&name),
                self.dir.as_fd(),
                Path::new(id),
            )
            .is_err()
            {
                lock(&self.spares.names).push(name);
            }
        }
        make_private_dir_at(self.dir.as_fd(), &self.sandboxes, Path::new(id))?;
        Ok(dir)
    }

    /// Persists a record durably: journaled and synced (with whatever
    /// other saves are under way: group commit). Its file is written by the
    /// next compaction; until then the journal is its copy on disk.
    pub fn save(&self, record: &SandboxRecord) -> Result<(), StoreError> {
        self.save_with(record, true)
    }

    /// Persists a record for a restarted daemon without waiting for the
    /// disk: journaled like [`Self::save`], but durable only once a later
    /// durable save or removal syncs the journal. For states that only
    /// matter after a daemon crash, not after a power loss (which ends
    /// every sandbox anyway): a create's CREATING and RUNNING records and a
    /// destroy's mark.
    pub fn save_unsynced(&self, record: &SandboxRecord) -> Result<(), StoreError> {
        self.save_with(record, false)
    }

    fn save_with(&self, record: &SandboxRecord, durable: bool) -> Result<(), StoreError> {
        self.check_sandbox_dir(&record.id)?;
        let over = {
            let _gate = self
                .journal
                .gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (seq, over) = {
                // Held from the choice of entry to its append, so the
                // journal's entries for a sandbox are in the order of the
                // versions they were chosen against.
                let mut unwritten = lock(&self.journal.unwritten);
                match self.append_progress(&mut unwritten, record) {
                    Some(appended) => appended?,
                    None => {
                        let appended = self
                            .journal
                            .append(&JournalEntry::Save(Box::new(record.clone())))
                            .map_err(|e| self.journal_error(e))?;
                        unwritten.insert(record.id.clone(), record.clone());
                        appended
                    }
                }
            };
            if durable {
                self.journal
                    .commit(seq)
                    .map_err(|e| self.journal_error(e))?;
            }
            over
        };
        if over {
            self.compact()?;
        }
        Ok(())
    }

    /// [`Self::save_unsynced`] where it cannot wait: only a progress entry
    /// (the record is in the journal whole since the last compaction and
    /// only its progress changed), appended unless a compaction is under
    /// way or due. `None`: nothing was done, and the caller saves on a
    /// thread that may wait. A few microseconds, so an async task may call
    /// it in place of two thread hand-offs.
    pub fn try_save_progress(&self, record: &SandboxRecord) -> Option<Result<(), StoreError>> {
        let _gate = self.journal.gate.try_read().ok()?;
        if lock(&self.journal.file).bytes > JOURNAL_LIMIT {
            return None;
        }
        if let Err(e) = self.check_sandbox_dir(&record.id) {
            return Some(Err(e));
        }
        let mut unwritten = lock(&self.journal.unwritten);
        self.append_progress(&mut unwritten, record)
            .map(|appended| appended.map(drop))
    }

    /// That sandbox `id`'s directory is there, and a real directory (a
    /// planted symlink fails a save, not only the compaction).
    fn check_sandbox_dir(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.sandbox_dir(id)?;
        open_dir_at(self.dir.as_fd(), Path::new(id))
            .map(drop)
            .map_err(|source| StoreError::Write {
                path: dir.join(RECORD),
                source,
            })
    }

    /// Appends `record`'s progress to the journal (the caller holds the
    /// gate shared, and `unwritten`) where the journal has it whole since
    /// the last compaction and only its progress changed: ~150 bytes, where
    /// the whole record, report included, is ~4 KiB. `None` otherwise
    /// (nothing appended). Its sequence number and whether the journal has
    /// outgrown [`JOURNAL_LIMIT`].
    fn append_progress(
        &self,
        unwritten: &mut std::collections::BTreeMap<String, SandboxRecord>,
        record: &SandboxRecord,
    ) -> Option<Result<(u64, bool), StoreError>> {
        let base = unwritten
            .get_mut(&record.id)
            .filter(|base| same_but_progress(base, record))?;
        let progress = Progress::of(record);
        let appended = self.journal.append(&JournalEntry::Progress {
            id: record.id.clone(),
            progress: progress.clone(),
        });
        if appended.is_ok() {
            progress.apply(base);
        }
        Some(appended.map_err(|e| self.journal_error(e)))
    }

    /// Writes the record file of everything saved since the last
    /// compaction, makes every record file durable (file and directory
    /// syncs) and then empties the journal, which no longer holds anything
    /// they do not. Writers wait meanwhile. On failure the journal is kept
    /// whole (and the unwritten records listed), so nothing is lost.
    pub fn compact(&self) -> Result<(), StoreError> {
        let _gate = self
            .journal
            .gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unwritten = lock(&self.journal.unwritten).clone();
        for (id, record) in &unwritten {
            self.write_record(id, record, false)?;
        }
        let read_fail = |source| StoreError::Read {
            path: self.sandboxes.clone(),
            source,
        };
        for entry in fs::read_dir(&self.sandboxes).map_err(read_fail)? {
            let entry = entry.map_err(read_fail)?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_id(&id) {
                continue;
            }
            let sync_fail = |source| StoreError::SyncDir {
                path: self.sandboxes.join(&id),
                source,
            };
            let Ok(dir) = open_dir_at(self.dir.as_fd(), Path::new(&id)) else {
                continue;
            };
            match openat(
                dir.as_fd(),
                RECORD,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => File::from(fd).sync_all().map_err(sync_fail)?,
                // None, or a planted symlink (not a record; never followed).
                Err(nix::Error::ENOENT | nix::Error::ELOOP) => {}
                Err(e) => return Err(sync_fail(errno(e))),
            }
            nix::unistd::fsync(&dir).map_err(|e| sync_fail(errno(e)))?;
        }
        nix::unistd::fsync(self.dir.as_fd()).map_err(|e| StoreError::SyncDir {
            path: self.sandboxes.clone(),
            source: errno(e),
        })?;
        self.journal.truncate().map_err(|e| self.journal_error(e))?;
        lock(&self.journal.unwritten).clear();
        Ok(())
    }

    /// Writes record `id`'s file (making its directory if it is gone, as
    /// after a power loss), synced when `sync`.
    fn write_record(&self, id: &str, record: &SandboxRecord, sync: bool) -> Result<(), StoreError> {
        self.create_sandbox_dir(id)?;
        let dir = self.sandbox_dir(id)?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Parse {
            path: dir.join(RECORD),
            source,
        })?;
        let fd =
            open_dir_at(self.dir.as_fd(), Path::new(id)).map_err(|source| StoreError::Write {
                path: dir.join(RECORD),
                source,
            })?;
        if sync {
            write_atomic_at(fd.as_fd(), &dir, Path::new(RECORD), &bytes)
        } else {
            write_replace_at(fd.as_fd(), &dir, Path::new(RECORD), &bytes, false)
        }
    }

    /// Reads one record without following a symlink at its directory or
    /// at the record itself.
    fn read_record(&self, id: &str) -> io::Result<Vec<u8>> {
        let dir = open_dir_at(self.dir.as_fd(), Path::new(id))?;
        let fd = openat(
            dir.as_fd(),
            RECORD,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut bytes = Vec::new();
        File::from(fd).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Loads every record (directories without a readable record are
    /// returned by id in the second list, for the caller to clean up): the
    /// record files, with the journal replayed over them (its last entry
    /// for an id wins: a saved record is rewritten to its file, a removed
    /// one's directory, if it is back, is an orphan). Then every record is
    /// made durable and the journal emptied ([`Self::compact`]).
    pub fn load_all(&self) -> Result<(Vec<SandboxRecord>, Vec<String>), StoreError> {
        let (files, mut orphans) = self.load_files()?;
        let mut by_id: std::collections::BTreeMap<String, SandboxRecord> =
            files.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut last: std::collections::BTreeMap<String, Option<SandboxRecord>> =
            std::collections::BTreeMap::new();
        for entry in self.journal.entries().map_err(|e| self.journal_error(e))? {
            match entry {
                JournalEntry::Save(r) if is_id(&r.id) => {
                    last.insert(r.id.clone(), Some(*r));
                }
                // Always after a whole record of the same journal (a save
                // writes one first after every compaction): applied to it.
                JournalEntry::Progress { id, progress } => {
                    if let Some(Some(r)) = last.get_mut(&id) {
                        progress.apply(r);
                    }
                }
                JournalEntry::Remove { id } if is_id(&id) => {
                    last.insert(id, None);
                }
                _ => {}
            }
        }
        for (id, state) in last {
            match state {
                Some(record) => {
                    if by_id.get(&id) != Some(&record) {
                        // Stale, torn or lost with its directory: write it
                        // back durably.
                        self.write_record(&id, &record, true)?;
                    }
                    orphans.retain(|o| *o != id);
                    by_id.insert(id, record);
                }
                None => {
                    if by_id.remove(&id).is_some() && !orphans.contains(&id) {
                        orphans.push(id);
                    }
                }
            }
        }
        self.compact()?;
        let mut records: Vec<SandboxRecord> = by_id.into_values().collect();
        records.sort_by(|a: &SandboxRecord, b| {
            (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id))
        });
        Ok((records, orphans))
    }

    /// The record files as they are, and the ids of directories without a
    /// readable one.
    fn load_files(&self) -> Result<(Vec<SandboxRecord>, Vec<String>), StoreError> {
        let mut records = Vec::new();
        let mut orphans = Vec::new();
        let entries = fs::read_dir(&self.sandboxes).map_err(|source| StoreError::Read {
            path: self.sandboxes.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Read {
                path: self.sandboxes.clone(),
                source,
            })?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_id(&id) {
                continue;
            }
            match self.read_record(&id) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(r) => records.push(r),
                    Err(_) => orphans.push(id),
                },
                Err(_) => orphans.push(id),
            }
        }
        Ok((records, orphans))
    }

    /// Removes a sandbox's directory and everything in it (a symlink there
    /// is removed, not followed), durably: the removal is journaled and
    /// synced (group commit) first. Missing is fine.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.remove_with(id, true).map(|_| ())
    }

    /// [`Self::remove`] without waiting for the disk: journaled, so a
    /// restarted daemon never sees the record after a daemon crash, but
    /// durable only once a later durable save, removal or compaction syncs
    /// the journal. For a destroy: after a power loss (which ends every
    /// sandbox anyway) a sandbox destroyed just before it may come back as
    /// EXITED, which the next destroy removes. The directory is renamed
    /// into `trash/` (one rename instead of an unlink per file on the
    /// caller's path); the caller deletes the returned path off its own
    /// path ([`Self::retire`]), and [`Self::open`] deletes whatever a
    /// previous daemon left there. `None`: nothing is left to delete.
    pub fn remove_unsynced(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        self.remove_with(id, false)
    }

    fn remove_with(&self, id: &str, durable: bool) -> Result<Option<PathBuf>, StoreError> {
        let dir = self.sandbox_dir(id)?;
        if fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Ok(None);
        }
        let (over, trashed) = {
            let _gate = self
                .journal
                .gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (seq, over) = self
                .journal
                .append(&JournalEntry::Remove { id: id.to_owned() })
                .map_err(|e| self.journal_error(e))?;
            lock(&self.journal.unwritten).remove(id);
            if durable {
                self.journal
                    .commit(seq)
                    .map_err(|e| self.journal_error(e))?;
            }
            let trashed = if durable {
                None
            } else {
                self.move_to_trash(id)
            };
            if durable || trashed.is_none() {
                match fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(StoreError::Remove { path: dir, source }),
                }
            }
            (over, trashed)
        };
        if over {
            self.compact()?;
        }
        Ok(trashed)
    }
}

impl StateStore {
    /// Renames sandbox `id`'s directory into `trash/` under a unique name:
    /// its new path, or `None` if it could not be moved (the caller then
    /// deletes it in place; also when it is gone already, which is fine).
    fn move_to_trash(&self, id: &str) -> Option<PathBuf> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{id}.{}.{n}", std::process::id());
        renameat(
            self.dir.as_fd(),
            Path::new(id),
            self.trash.as_fd(),
            Path::new(&name),
        )
        .ok()
        .map(|()| self.trash_path.join(name))
    }
}

impl StateStore {
    /// Disposes of a directory [`Self::remove_unsynced`] moved into
    /// `trash/`: emptied of everything but `root/`, emptied too (see
    /// [`SPARE_KEEPS`]), and kept as a spare for
    /// [`Self::create_sandbox_dir`], or, past [`MAX_SPARES`] or when it
    /// cannot be emptied, deleted. Best effort: what is left in
    /// `trash/` goes at the next start. The caller has proved nothing is
    /// mounted below it (as for any removal).
    pub fn retire(&self, trashed: &Path) {
        let keep = lock(&self.spares.names).len() < MAX_SPARES && empty(trashed, &SPARE_KEEPS);
        let name = trashed.file_name().filter(|_| keep).and_then(|from| {
            let n = self
                .spares
                .next
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = n.to_string();
            renameat(
                self.trash.as_fd(),
                from,
                self.spares.dir.as_fd(),
                Path::new(&name),
            )
            .ok()
            .map(|()| name)
        });
        match name {
            Some(name) => lock(&self.spares.names).push(name),
            None => {
                let _ = fs::remove_dir_all(trashed);
            }
        }
    }
}

/// Removes every entry of `dir` but the directories named in `keep`, which
/// are emptied (of everything) instead: whether it all went. Never follows
/// a symlink (`remove_dir_all` does not either; a symlink is never taken
/// for a directory to keep).
fn empty(dir: &Path, keep: &[&str]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut emptied = true;
    for entry in entries {
        let Ok(entry) = entry else {
            emptied = false;
            continue;
        };
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && keep.iter().any(|k| entry.file_name() == *k) {
            emptied &= empty(&path, &[]);
            continue;
        }
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        emptied &= removed.is_ok();
    }
    emptied
}

/// The store's journal file, in the state directory.
const JOURNAL: &str = "journal";

/// The journal is compacted (every record file made durable, then the
/// journal emptied) once it grows past this.
const JOURNAL_LIMIT: u64 = 8 << 20;

/// One journal entry: a record as saved, a later save that changed only
/// its progress, or a sandbox removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JournalEntry {
    Save(Box<SandboxRecord>),
    Progress { id: String, progress: Progress },
    Remove { id: String },
}

/// The fields of a record that change after its first save (a create's
/// RUNNING, an exit, a destroy's mark); the rest (spec, report, owner...)
/// is fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    state: SandboxState,
    supervisor_pid: i32,
    main_pid: i32,
    init_pid: i32,
    exit: Option<ExitRecord>,
    destroying: bool,
}

impl Progress {
    fn of(r: &SandboxRecord) -> Self {
        Self {
            state: r.state,
            supervisor_pid: r.supervisor_pid,
            main_pid: r.main_pid,
            init_pid: r.init_pid,
            exit: r.exit.clone(),
            destroying: r.destroying,
        }
    }

    fn apply(self, r: &mut SandboxRecord) {
        r.state = self.state;
        r.supervisor_pid = self.supervisor_pid;
        r.main_pid = self.main_pid;
        r.init_pid = self.init_pid;
        r.exit = self.exit;
        r.destroying = self.destroying;
    }
}

/// Whether `a` and `b` differ at most in their [`Progress`]. Destructured
/// without `..`: a field added to the record must be sorted into one or
/// the other here, or this does not compile.
fn same_but_progress(a: &SandboxRecord, b: &SandboxRecord) -> bool {
    let SandboxRecord {
        id,
        owner,
        request_id,
        spec,
        report,
        state: _,
        supervisor_pid: _,
        main_pid: _,
        init_pid: _,
        exit: _,
        created_at_ms,
        lease,
        destroying: _,
    } = a;
    *id == b.id
        && *owner == b.owner
        && *request_id == b.request_id
        && *created_at_ms == b.created_at_ms
        && *lease == b.lease
        && *spec == b.spec
        && *report == b.report
}

/// The append-only journal that makes record writes durable with one
/// `fdatasync` per group of concurrent writers (group commit), instead of
/// the two `fsync`s per record write of a temp-file-and-rename.
///
/// A write appends its entry (a length-prefixed JSON frame) and, when it
/// must be durable, waits for a sync that started after its append: the
/// first waiter syncs everything appended so far, and the others, finding
/// their entry covered, return without syncing. The record files are
/// still written (renamed into place, not synced): after a process crash
/// they are current (the page cache survives); after a power loss the
/// journal, replayed over them at the next start, is the truth. Replay
/// stops at the first entry that does not decode (a write torn by the
/// power loss, never acknowledged).
#[derive(Debug)]
struct Journal {
    /// Appends (and the byte count, for compaction).
    file: Mutex<JournalFile>,
    /// The sequence number synced so far; held while syncing, so
    /// concurrent committers queue behind one sync and then find their
    /// entry covered.
    synced: Mutex<u64>,
    /// Writers hold it shared from their append until their record file
    /// is written; compaction holds it exclusively, so it never empties
    /// the journal between a durable append and the file write it covers.
    gate: RwLock<()>,
    /// A second descriptor of the journal, synced without holding `file`.
    sync_fd: File,
    /// Syncs made (for the group-commit test).
    syncs: std::sync::atomic::AtomicU64,
    /// Records saved since the last compaction, by id: the journal holds
    /// them, their files are written by the next compaction. Changed with
    /// `gate` held shared (after the append), read by compaction with it
    /// held exclusively.
    unwritten: Mutex<std::collections::BTreeMap<String, SandboxRecord>>,
}

#[derive(Debug)]
struct JournalFile {
    file: File,
    /// Entries appended (a sequence number).
    appended: u64,
    /// Its size.
    bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data behind these locks: keep going after a panic elsewhere.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    /// Opens (creating) `JOURNAL` in the state directory `state`, never
    /// through a symlink there.
    fn open(state: BorrowedFd<'_>, state_path: &Path) -> Result<Self, StoreError> {
        let path = state_path.join(JOURNAL);
        let fail = |source: io::Error| StoreError::Journal {
            path: path.clone(),
            source,
        };
        let fd = openat(
            state,
            JOURNAL,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| fail(errno(e)))?;
        let file = File::from(fd);
        let bytes = file.metadata().map_err(fail)?.len();
        let sync_fd = file.try_clone().map_err(fail)?;
        Ok(Self {
            file: Mutex::new(JournalFile {
                file,
                appended: 0,
                bytes,
            }),
            synced: Mutex::new(0),
            gate: RwLock::new(()),
            sync_fd,
            syncs: std::sync::atomic::AtomicU64::new(0),
            unwritten: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    /// Every entry, in order, up to the first that does not decode.
    fn entries(&self) -> Result<Vec<JournalEntry>, io::Error> {
        let mut bytes = Vec::new();
        {
            let f = lock(&self.file);
            let mut file = &f.file;
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut bytes)?;
        }
        let mut decoder = crate::wire::Decoder::default();
        decoder.push(&bytes);
        let mut entries = Vec::new();
        while let Ok(Some(entry)) = decoder.next_frame::<JournalEntry>() {
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Appends an entry; returns its sequence number and whether the
    /// journal has outgrown [`JOURNAL_LIMIT`].
    fn append(&self, entry: &JournalEntry) -> Result<(u64, bool), io::Error> {
        let frame = crate::wire::encode(entry).map_err(io::Error::other)?;
        let mut f = lock(&self.file);
        if let Err(e) = (&f.file).write_all(&frame) {
            // Never leave a torn entry in front of later ones.
            let _ = f.file.set_len(f.bytes);
            return Err(e);
        }
        f.appended += 1;
        f.bytes += frame.len() as u64;
        Ok((f.appended, f.bytes > JOURNAL_LIMIT))
    }

    /// Returns once entry `seq` is durable (group commit).
    fn commit(&self, seq: u64) -> Result<(), io::Error> {
        let mut synced = lock(&self.synced);
        if *synced >= seq {
            return Ok(());
        }
        // Everything appended before the sync starts is covered by it.
        let target = lock(&self.file).appended;
        self.sync_fd.sync_data()?;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *synced = target;
        Ok(())
    }

    /// Empties the journal (durably); the caller has made every record
    /// file durable and holds the gate exclusively.
    fn truncate(&self) -> Result<(), io::Error> {
        let _synced = lock(&self.synced);
        let mut f = lock(&self.file);
        f.file.set_len(0)?;
        f.bytes = 0;
        f.file.sync_data()
    }
}

fn create_private_dir(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(StoreError::CreateDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates directory `name` (mode 0700) in `parent` (named `parent_path`
/// in errors) if it is missing, and opens it: an existing entry must be a
/// real directory, not a symlink to one.
fn make_private_dir_at(
    parent: BorrowedFd<'_>,
    parent_path: &Path,
    name: &Path,
) -> Result<OwnedFd, StoreError> {
    let fail = |e: nix::Error| StoreError::CreateDir {
        path: parent_path.join(name),
        source: errno(e),
    };
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(fail(e)),
    }
    openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(fail)
}

#[cfg(test)]
mod concurrent_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn concurrent_atomic_writes_of_one_file_all_succeed() {
        let dir = std::env::temp_dir().join(format!("sandboxd-store-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("record.json");
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        super::write_atomic(path, format!("{i}").as_bytes()).unwrap();
                    }
                });
            }
        });
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temp files left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::BackendKind;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sandboxd-store-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_load_remove() {
        let dir = tempdir();
        let store = StateStore::open(&dir).expect("open");
        let rec = SandboxRecord {
            id: "0123456789abcdef".into(),
            owner: "local".into(),
            request_id: String::new(),
            spec: SandboxSpec::default(),
            report: IsolationReport {
                backend: BackendKind::Chroot,
                properties: vec![],
            },
            state: SandboxState::Running,
            supervisor_pid: 1,
            main_pid: 2,
            init_pid: 0,
            exit: None,
            created_at_ms: 5,
            lease: Default::default(),
            destroying: false,
        };
        store.create_sandbox_dir(&rec.id).expect("mkdir");
        store.save(&rec).expect("save");
        let (all, orphans) = store.load_all().expect("load");
        assert_eq!(all, vec![rec.clone()]);
        assert!(orphans.is_empty());
        // No temp files left beside the record.
        let names: Vec<_> = fs::read_dir(store.sandbox_dir(&rec.id).expect("dir"))
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
        store.remove(&rec.id).expect("remove");
        store.remove(&rec.id).expect("remove twice");
        assert!(store.load_all().expect("load").0.is_empty());
        assert!(matches!(
            store.sandbox_dir("../x"),
            Err(StoreError::BadId(_))
        ));
        fs::remove_dir_all(dir).expect("cleanup");
    }
}

#[cfg(test)]
mod symlink_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::capability::BackendKind;

    const ID: &str = "00112233445566ff";

    fn record() -> SandboxRecord {
        SandboxRecord {
            id: ID.into(),
            owner: "local".into(),
            request_id: String::new(),
            spec: SandboxSpec::default(),
            report: IsolationReport {
                backend: BackendKind::Chroot,
                properties: vec![],
            },
            state: SandboxState::Running,
            supervisor_pid: 1,
            main_pid: 2,
            init_pid: 0,
            exit: None,
            created_at_ms: 5,
            lease: Default::default(),
            destroying: false,
        }
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "sandboxd-store-symlink-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    /// Every way a planted symlink could redirect a record write or read.
    #[test]
    fn planted_symlinks_are_never_followed() {
        let t = tmp("planted");
        let elsewhere = t.0.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let victim = elsewhere.join("victim");
        fs::write(&victim, "precious").unwrap();
        let state = t.0.join("state");
        let store = StateStore::open(&state).unwrap();
        let sandboxes = state.join("sandboxes");

        // The sandbox's directory is a symlink to somewhere else.
        std::os::unix::fs::symlink(&elsewhere, sandboxes.join(ID)).unwrap();
        assert!(
            store.create_sandbox_dir(ID).is_err(),
            "created through a symlink"
        );
        assert!(store.save(&record()).is_err(), "saved through a symlink");
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            1,
            "something was written through the symlinked sandbox dir"
        );
        fs::remove_file(sandboxes.join(ID)).unwrap();

        // record.json is a symlink: replaced, not written through.
        store.create_sandbox_dir(ID).unwrap();
        let path = sandboxes.join(ID).join(RECORD);
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        store.save(&record()).unwrap();
        // The compaction writes the file.
        store.compact().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());

        // A record read through a symlink is not a record: a copy of a
        // valid one planted elsewhere is not loaded (with the journal
        // emptied first, so only the files speak).
        store.compact().unwrap();
        fs::copy(&path, elsewhere.join("record.json")).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("record.json"), &path).unwrap();
        let (records, orphans) = store.load_all().unwrap();
        assert!(records.is_empty(), "loaded a record through a symlink");
        assert_eq!(orphans, vec![ID.to_owned()]);

        // The exit file's writer too.
        let exit = sandboxes.join(ID).join("exit.json");
        std::os::unix::fs::symlink(&victim, &exit).unwrap();
        write_atomic(&exit, b"{}").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        // ... and through a symlinked parent directory.
        let linked = t.0.join("linked");
        std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
        assert!(write_atomic(&linked.join("exit.json"), b"{}").is_err());
        assert!(!elsewhere.join("exit.json").exists());

        // The sandboxes directory itself.
        let state2 = t.0.join("state2");
        fs::create_dir_all(&state2).unwrap();
        std::os::unix::fs::symlink(&elsewhere, state2.join("sandboxes")).unwrap();
        assert!(
            StateStore::open(&state2).is_err(),
            "opened a symlinked sandboxes dir"
        );
    }
}

#[cfg(test)]
mod journal_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::capability::BackendKind;

    fn tempdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sandboxd-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn record(id: &str, state: SandboxState) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            owner: "local".into(),
            request_id: String::new(),
            spec: SandboxSpec::default(),
            report: IsolationReport {
                backend: BackendKind::Chroot,
                properties: vec![],
            },
            state,
            supervisor_pid: 1,
            main_pid: 2,
            init_pid: 0,
            exit: None,
            created_at_ms: 5,
            lease: Default::default(),
            destroying: false,
        }
    }

    /// What a power loss can leave of unsynced record files: the journal,
    /// replayed at the next open, restores each record's last durable
    /// state: a torn file, a stale one, a lost one (its directory too),
    /// and a removed sandbox's directory that came back (an orphan).
    #[test]
    fn the_journal_restores_what_a_power_loss_tore_or_lost() {
        let dir = tempdir("replay");
        let (torn, stale, lost, removed) = (
            "000000000000000a",
            "000000000000000b",
            "000000000000000c",
            "000000000000000d",
        );
        {
            let store = StateStore::open(&dir).unwrap();
            for id in [torn, stale, lost, removed] {
                store.create_sandbox_dir(id).unwrap();
                store.save(&record(id, SandboxState::Creating)).unwrap();
            }
            for id in [torn, stale, lost] {
                store.save(&record(id, SandboxState::Running)).unwrap();
            }
            store.remove(removed).unwrap();
        }
        let sandboxes = dir.join("sandboxes");
        fs::write(sandboxes.join(torn).join(RECORD), b"{\"id\":").unwrap();
        fs::write(
            sandboxes.join(stale).join(RECORD),
            serde_json::to_vec(&record(stale, SandboxState::Creating)).unwrap(),
        )
        .unwrap();
        fs::remove_dir_all(sandboxes.join(lost)).unwrap();
        fs::create_dir(sandboxes.join(removed)).unwrap();
        fs::write(
            sandboxes.join(removed).join(RECORD),
            serde_json::to_vec(&record(removed, SandboxState::Creating)).unwrap(),
        )
        .unwrap();

        let store = StateStore::open(&dir).unwrap();
        let (records, orphans) = store.load_all().unwrap();
        let states: Vec<_> = records.iter().map(|r| (r.id.as_str(), r.state)).collect();
        assert_eq!(
            states,
            [
                (torn, SandboxState::Running),
                (stale, SandboxState::Running),
                (lost, SandboxState::Running)
            ]
        );
        assert_eq!(orphans, [removed]);
        // The files were written back, and the journal emptied.
        for id in [torn, stale, lost] {
            let bytes = fs::read(sandboxes.join(id).join(RECORD)).unwrap();
            let r: SandboxRecord = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(r.state, SandboxState::Running);
        }
        assert_eq!(fs::metadata(dir.join(JOURNAL)).unwrap().len(), 0);
        fs::remove_dir_all(dir).unwrap();
    }

    /// A write torn at the journal's end (never acknowledged) ends the
    /// replay; what came before it still counts.
    #[test]
    fn a_torn_journal_tail_is_ignored() {
        let dir = tempdir("torn");
        let id = "00000000000000aa";
        {
            let store = StateStore::open(&dir).unwrap();
            store.create_sandbox_dir(id).unwrap();
            store.save(&record(id, SandboxState::Running)).unwrap();
        }
        let mut journal = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))
            .unwrap();
        let whole = crate::wire::encode(&JournalEntry::Remove { id: id.into() }).unwrap();
        journal.write_all(&whole[..whole.len() - 3]).unwrap();
        drop(journal);
        let (records, orphans) = StateStore::open(&dir).unwrap().load_all().unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(orphans.is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    /// A destroy's removal does not wait for the disk, yet a restarted
    /// daemon (the page cache survives a daemon crash) never sees the
    /// record again, and the next durable write syncs the removal too.
    /// A record lives in the journal until a compaction writes its file: a
    /// sandbox saved and removed in between never has one, and a restarted
    /// daemon (a crash: the store dropped unflushed) gets every unwritten
    /// record back, file included.
    #[test]
    fn record_files_are_written_by_compaction_and_restored_from_the_journal() {
        let dir = tempdir("unwritten");
        let (brief, kept) = ("00000000000003aa", "00000000000003bb");
        let file = |id: &str| dir.join("sandboxes").join(id).join(RECORD);
        {
            let store = StateStore::open(&dir).unwrap();
            for id in [brief, kept] {
                store.create_sandbox_dir(id).unwrap();
                store
                    .save_unsynced(&record(id, SandboxState::Creating))
                    .unwrap();
                store
                    .save_unsynced(&record(id, SandboxState::Running))
                    .unwrap();
                assert!(!file(id).exists(), "{id}: a file before any compaction");
            }
            let trashed = store.remove_unsynced(brief).unwrap().expect("trashed");
            assert_eq!(fs::read_dir(&trashed).unwrap().count(), 0, "{trashed:?}");
            store.save(&record(kept, SandboxState::Exited)).unwrap();
            assert!(!file(kept).exists());
        }
        let store = StateStore::open(&dir).unwrap();
        let (records, orphans) = store.load_all().unwrap();
        assert_eq!(records, vec![record(kept, SandboxState::Exited)]);
        assert!(orphans.is_empty(), "{orphans:?}");
        let on_disk: SandboxRecord =
            serde_json::from_slice(&fs::read(file(kept)).unwrap()).unwrap();
        assert_eq!(on_disk, record(kept, SandboxState::Exited));
        assert!(!dir.join("sandboxes").join(brief).exists());
        // And a compaction writes what was saved since.
        store.save(&record(kept, SandboxState::Running)).unwrap();
        store.compact().unwrap();
        let on_disk: SandboxRecord =
            serde_json::from_slice(&fs::read(file(kept)).unwrap()).unwrap();
        assert_eq!(on_disk, record(kept, SandboxState::Running));
        assert_eq!(fs::metadata(dir.join(JOURNAL)).unwrap().len(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unsynced_removal_is_journaled_without_a_sync() {
        let dir = tempdir("rmunsynced");
        let (gone, kept) = ("00000000000002aa", "00000000000002bb");
        let syncs = |store: &StateStore| {
            store
                .journal
                .syncs
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        {
            let store = StateStore::open(&dir).unwrap();
            for id in [gone, kept] {
                store.create_sandbox_dir(id).unwrap();
                store.save(&record(id, SandboxState::Running)).unwrap();
            }
            let before = syncs(&store);
            let trashed = store
                .remove_unsynced(gone)
                .unwrap()
                .expect("moved to trash/");
            assert_eq!(syncs(&store), before, "the removal waited for a sync");
            assert!(!dir.join("sandboxes").join(gone).exists());
            // Renamed into trash/, for the caller to delete.
            assert!(trashed.starts_with(dir.join(TRASH)), "{trashed:?}");
            assert!(trashed.is_dir(), "{trashed:?}");
            store.retire(&trashed);
            assert_eq!(fs::read_dir(dir.join(TRASH)).unwrap().count(), 0);
            assert_eq!(store.remove_unsynced(gone).unwrap(), None, "already gone");
            let pending = lock(&store.journal.file).appended;
            store.save(&record(kept, SandboxState::Exited)).unwrap();
            assert!(
                *lock(&store.journal.synced) > pending,
                "removal not synced by the next save"
            );
        }
        // What a daemon that died meanwhile left in trash/ goes at the next
        // start.
        let left = dir.join(TRASH).join(format!("{gone}.1.1"));
        fs::create_dir_all(left.join("logs")).unwrap();
        fs::write(left.join("record.json"), b"{}").unwrap();
        let (records, orphans) = StateStore::open(&dir).unwrap().load_all().unwrap();
        assert!(!left.exists(), "trash/ not emptied at start");
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [kept], "{records:?}");
        assert!(orphans.is_empty(), "{orphans:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    fn kinds(store: &StateStore) -> Vec<&'static str> {
        store
            .journal
            .entries()
            .unwrap()
            .iter()
            .map(|e| match e {
                JournalEntry::Save(_) => "save",
                JournalEntry::Progress { .. } => "progress",
                JournalEntry::Remove { .. } => "remove",
            })
            .collect()
    }

    /// After its first whole save since a compaction, a record's saves
    /// journal only its progress, which the replay applies in order; a
    /// save that changed more is whole again.
    #[test]
    fn later_saves_journal_only_the_progress() {
        let dir = tempdir("progress");
        let (id, other) = ("00000000000004aa", "00000000000004bb");
        let mut exited = record(id, SandboxState::Exited);
        exited.exit = Some(ExitRecord {
            reason: ExitReason::Exited,
            code: 3,
            signal: 0,
            message: String::new(),
            finished_at_ms: 9,
        });
        let mut renamed = exited.clone();
        renamed.spec.name = "renamed".into();
        let mut marked = renamed.clone();
        marked.destroying = true;
        marked.main_pid = 0;
        {
            let store = StateStore::open(&dir).unwrap();
            for id in [id, other] {
                store.create_sandbox_dir(id).unwrap();
            }
            store
                .save_unsynced(&record(id, SandboxState::Creating))
                .unwrap();
            store
                .save_unsynced(&record(id, SandboxState::Running))
                .unwrap();
            store
                .save_unsynced(&record(other, SandboxState::Running))
                .unwrap();
            store.save(&exited).unwrap();
            assert_eq!(kinds(&store), ["save", "progress", "save", "progress"]);
            store.save(&renamed).unwrap();
            store.save_unsynced(&marked).unwrap();
            assert_eq!(
                kinds(&store)[4..],
                ["save", "progress"],
                "a change beyond the progress is journaled whole"
            );
        }
        let store = StateStore::open(&dir).unwrap();
        let (records, orphans) = store.load_all().unwrap();
        assert_eq!(
            records,
            [marked.clone(), record(other, SandboxState::Running)]
        );
        assert!(orphans.is_empty(), "{orphans:?}");
        // The journal was compacted at the start: the next save of each is
        // whole (its base is the file), then progress again.
        assert!(kinds(&store).is_empty());
        let mut ended = marked.clone();
        ended.state = SandboxState::Stopping;
        store.save(&ended).unwrap();
        ended.supervisor_pid = 0;
        store.save(&ended).unwrap();
        assert_eq!(kinds(&store), ["save", "progress"]);
        drop(store);
        let (records, _) = StateStore::open(&dir).unwrap().load_all().unwrap();
        assert_eq!(records[0], ended);
        fs::remove_dir_all(dir).unwrap();
    }

    /// The in-place save an async task may make: a progress entry, never
    /// synced, and nothing at all where it would have to wait or write the
    /// whole record.
    #[test]
    fn a_progress_save_is_tried_in_place_only_where_it_cannot_wait() {
        let dir = tempdir("tryprogress");
        let id = "00000000000005aa";
        let store = StateStore::open(&dir).unwrap();
        store.create_sandbox_dir(id).unwrap();
        let running = record(id, SandboxState::Running);
        assert!(
            store.try_save_progress(&running).is_none(),
            "not journaled whole yet"
        );
        assert!(kinds(&store).is_empty());
        store
            .save_unsynced(&record(id, SandboxState::Creating))
            .unwrap();
        let syncs = store
            .journal
            .syncs
            .load(std::sync::atomic::Ordering::SeqCst);
        store.try_save_progress(&running).unwrap().unwrap();
        assert_eq!(kinds(&store), ["save", "progress"]);
        let mut renamed = running.clone();
        renamed.spec.name = "renamed".into();
        assert!(store.try_save_progress(&renamed).is_none(), "not progress");
        {
            let _compacting = store.journal.gate.write().unwrap();
            let mut marked = running.clone();
            marked.destroying = true;
            assert!(
                store.try_save_progress(&marked).is_none(),
                "waited for a compaction"
            );
        }
        assert_eq!(kinds(&store).len(), 2);
        assert_eq!(
            store
                .journal
                .syncs
                .load(std::sync::atomic::Ordering::SeqCst),
            syncs,
            "synced"
        );
        fs::remove_dir_all(store.sandbox_dir(id).unwrap()).unwrap();
        assert!(matches!(
            store.try_save_progress(&record(id, SandboxState::Exited)),
            Some(Err(StoreError::Write { .. }))
        ));
        drop(store);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Group commit: saves that wait while a sync is under way are covered
    /// by the next single sync, not one each.
    #[test]
    fn concurrent_saves_share_one_sync() {
        let dir = tempdir("group");
        let store = StateStore::open(&dir).unwrap();
        let ids: Vec<String> = (0..6).map(|i| format!("00000000000001{i:02x}")).collect();
        for id in &ids {
            store.create_sandbox_dir(id).unwrap();
        }
        let before = store
            .journal
            .syncs
            .load(std::sync::atomic::Ordering::SeqCst);
        // Hold the sync lock, as a sync under way does, while every saver
        // appends and queues behind it.
        let held = lock(&store.journal.synced);
        std::thread::scope(|s| {
            for id in &ids {
                let store = &store;
                s.spawn(move || store.save(&record(id, SandboxState::Running)).unwrap());
            }
            while lock(&store.journal.file).appended < ids.len() as u64 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(held);
        });
        let syncs = store
            .journal
            .syncs
            .load(std::sync::atomic::Ordering::SeqCst)
            - before;
        assert_eq!(syncs, 1, "one sync for {} queued saves", ids.len());
        // Durable saves of an unsynced record sync it too.
        let (records, _) = store.load_all().unwrap();
        assert_eq!(records.len(), ids.len());
        fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(test)]
mod spare_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sandboxd-spare-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A destroyed sandbox's directory comes back for the next create with
    /// nothing of what was in it but an empty `root/`; whatever it held is
    /// deleted without following a symlink out of it.
    #[test]
    fn a_reused_directory_carries_nothing_of_the_last_sandbox() {
        // What the previous sandbox left: (setup, what the next one finds).
        type Setup = fn(&Path, &Path);
        let cases: &[(&str, Setup, &[&str])] = &[
            ("an empty root is kept", |_, _| {}, &["root"]),
            (
                "a log directory goes, even empty",
                |d, _| fs::create_dir(d.join("logs")).unwrap(),
                &["root"],
            ),
            (
                "files, logs, a socket's name, an overlay upper",
                |d, _| {
                    fs::write(d.join("record.json"), "{}").unwrap();
                    fs::write(d.join("exit.json"), "{}").unwrap();
                    fs::create_dir_all(d.join("logs")).unwrap();
                    fs::write(d.join("logs/stdout.log"), "secret").unwrap();
                    fs::create_dir_all(d.join("upper/etc")).unwrap();
                    fs::write(d.join("upper/etc/shadow"), "secret").unwrap();
                    fs::create_dir_all(d.join("work/work")).unwrap();
                },
                &["root"],
            ),
            (
                "a root with something in it is emptied",
                |d, _| {
                    fs::create_dir_all(d.join("root/etc")).unwrap();
                    fs::write(d.join("root/etc/left"), "secret").unwrap();
                    fs::write(d.join("root/left"), "secret").unwrap();
                },
                &["root"],
            ),
            (
                "a symlink in root goes, its target stays",
                |d, outside| {
                    symlink(outside, d.join("root/dir")).unwrap();
                    symlink(outside.join("host-file"), d.join("root/file")).unwrap();
                },
                &["root"],
            ),
            (
                "a symlink named root goes, its target stays",
                |d, outside| {
                    fs::remove_dir(d.join("root")).unwrap();
                    symlink(outside, d.join("root")).unwrap();
                },
                &[],
            ),
            (
                "a symlink out of the directory goes, its target stays",
                |d, outside| symlink(outside, d.join("upper")).unwrap(),
                &["root"],
            ),
        ];
        for (i, (what, setup, left)) in cases.iter().enumerate() {
            let dir = tempdir(&format!("reuse{i}"));
            let outside = dir.join("outside");
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("host-file"), "host").unwrap();
            let store = StateStore::open(&dir.join("state")).unwrap();
            let (old, new) = ("00000000000004aa", "00000000000004bb");
            let d = store.create_sandbox_dir(old).unwrap();
            fs::create_dir(d.join("root")).unwrap();
            setup(&d, &outside);
            let ino = fs::metadata(&d).unwrap().ino();
            let trashed = store.remove_unsynced(old).unwrap().expect("trashed");
            store.retire(&trashed);
            let d = store.create_sandbox_dir(new).unwrap();
            assert_eq!(fs::metadata(&d).unwrap().ino(), ino, "{what}: not reused");
            assert_eq!(names(&d), *left, "{what}");
            for kept in *left {
                assert!(names(&d.join(kept)).is_empty(), "{what}: {kept}");
            }
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700, "{what}");
            assert_eq!(names(&outside), ["host-file"], "{what}: followed a symlink");
            assert!(names(&dir.join("state").join(TRASH)).is_empty(), "{what}");
            assert!(names(&dir.join("state").join(SPARE)).is_empty(), "{what}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// At most MAX_SPARES are kept, the rest deleted; a spare never lands
    /// on a directory that exists with something in it; a restarted store
    /// starts without spares.
    #[test]
    fn spares_are_capped_never_replace_a_directory_and_go_at_open() {
        let dir = tempdir("cap");
        let store = StateStore::open(&dir).unwrap();
        for n in 0..=MAX_SPARES {
            let id = format!("{n:016x}");
            store.create_sandbox_dir(&id).unwrap();
            store.remove_unsynced(&id).unwrap().expect("trashed");
        }
        // Retired only once every directory was made: none was reused.
        let trashed: Vec<PathBuf> = fs::read_dir(dir.join(TRASH))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for t in &trashed {
            store.retire(t);
        }
        assert_eq!(names(&dir.join(SPARE)).len(), MAX_SPARES);
        assert!(names(&dir.join(TRASH)).is_empty());

        // A directory of the id exists with a file: it stays as it was.
        let id = "00000000000005aa";
        let existing = dir.join("sandboxes").join(id);
        fs::create_dir_all(&existing).unwrap();
        fs::write(existing.join("kept"), "x").unwrap();
        let ino = fs::metadata(&existing).unwrap().ino();
        store.create_sandbox_dir(id).unwrap();
        assert_eq!(fs::metadata(&existing).unwrap().ino(), ino);
        assert_eq!(names(&existing), ["kept"]);
        assert_eq!(
            names(&dir.join(SPARE)).len(),
            MAX_SPARES,
            "the spare was lost"
        );

        drop(store);
        let _store = StateStore::open(&dir).unwrap();
        assert!(names(&dir.join(SPARE)).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
