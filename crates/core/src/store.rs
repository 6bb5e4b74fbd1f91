//! The daemon's state store: one JSON record per sandbox under
//! `STATE_DIR/sandboxes/<id>/record.json`, each written atomically (temp
//! file, fsync, rename, fsync of the directory), so a crash leaves either the
//! old or the new record, never a torn one. Records are reached from the
//! `sandboxes` directory's descriptor with `*at` calls and O_NOFOLLOW: a
//! symlink planted in the store is never written or read through.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| StoreError::Write {
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let fd = nix::fcntl::open(dir, DIR_FLAGS, Mode::empty()).map_err(|e| StoreError::Write {
        path: path.to_owned(),
        source: errno(e),
    })?;
    write_atomic_at(fd.as_fd(), dir, Path::new(name), bytes)
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
        f.sync_all()
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
}

/// The record file inside a sandbox's directory.
const RECORD: &str = "record.json";

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
        Ok(Self {
            sandboxes,
            dir: Arc::new(dir),
        })
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
    /// real directory, not a symlink).
    pub fn create_sandbox_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.sandbox_dir(id)?;
        make_private_dir_at(self.dir.as_fd(), &self.sandboxes, Path::new(id))?;
        Ok(dir)
    }

    /// Persists a record atomically, through the sandbox's directory opened
    /// without following symlinks.
    pub fn save(&self, record: &SandboxRecord) -> Result<(), StoreError> {
        let dir = self.sandbox_dir(&record.id)?;
        let path = dir.join(RECORD);
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Parse {
            path: path.clone(),
            source,
        })?;
        let fd = open_dir_at(self.dir.as_fd(), Path::new(&record.id))
            .map_err(|source| StoreError::Write { path, source })?;
        write_atomic_at(fd.as_fd(), &dir, Path::new(RECORD), &bytes)
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
    /// returned by id in the second list, for the caller to clean up).
    pub fn load_all(&self) -> Result<(Vec<SandboxRecord>, Vec<String>), StoreError> {
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
        records.sort_by(|a: &SandboxRecord, b| {
            (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id))
        });
        Ok((records, orphans))
    }

    /// Removes a sandbox's directory and everything in it (a symlink there
    /// is removed, not followed). Missing is fine.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.sandbox_dir(id)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => nix::unistd::fsync(self.dir.as_fd()).map_err(|e| StoreError::SyncDir {
                path: self.sandboxes.clone(),
                source: errno(e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove { path: dir, source }),
        }
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
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());

        // A record read through a symlink is not a record: a copy of a
        // valid one planted elsewhere is not loaded.
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
