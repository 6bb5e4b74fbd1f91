//! The daemon's state store: one JSON record per sandbox under
//! `STATE_DIR/sandboxes/<id>/record.json`, each written atomically (temp
//! file, fsync, rename, fsync of the directory), so a crash leaves either the
//! old or the new record, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Unique per call, not just per process: two threads saving the same
    // record at once (an exit and a destroy) must not share a temp file,
    // or one's rename finds it gone.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let write = |tmp: &Path| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(source) = write(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Write { path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Rename {
            from: tmp,
            to: path.to_owned(),
            source,
        });
    }
    sync_dir(dir)
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
}

/// The record file inside a sandbox's directory.
const RECORD: &str = "record.json";

impl StateStore {
    /// Opens (creating) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let sandboxes = state_dir.join("sandboxes");
        create_private_dir(state_dir)?;
        create_private_dir(&sandboxes)?;
        Ok(Self { sandboxes })
    }

    /// The directory of one sandbox (its record, exit file, rootfs mount
    /// point). Only well-formed ids map to a path.
    pub fn sandbox_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_id(id) {
            return Err(StoreError::BadId(id.to_owned()));
        }
        Ok(self.sandboxes.join(id))
    }

    /// Creates the directory of a new sandbox.
    pub fn create_sandbox_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.sandbox_dir(id)?;
        create_private_dir(&dir)?;
        Ok(dir)
    }

    /// Persists a record atomically.
    pub fn save(&self, record: &SandboxRecord) -> Result<(), StoreError> {
        let path = self.sandbox_dir(&record.id)?.join(RECORD);
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
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
            let path = entry.path().join(RECORD);
            match fs::read(&path) {
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

    /// Removes a sandbox's directory and everything in it. Missing is fine.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.sandbox_dir(id)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.sandboxes),
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
