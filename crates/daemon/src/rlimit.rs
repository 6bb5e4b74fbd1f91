//! The daemon's open-files limit: raised to the hard limit at start (every
//! connection, exec pipe and supervisor channel is a descriptor), and put
//! back for the supervisor helpers, so sandbox processes start with the
//! limit the daemon was started with, not the raised one.

use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};

/// The environment variable that hands a helper the soft limit to restore.
const HELPER_ENV: &str = "SANDBOXD_NOFILE_SOFT";

/// The soft limit before [`raise`], for [`helper_env`].
static ORIGINAL_SOFT: std::sync::OnceLock<rlim_t> = std::sync::OnceLock::new();

/// rlim_t is u64 on Linux and i64 on FreeBSD (where a negative value never
/// comes back from getrlimit).
#[allow(clippy::useless_conversion)]
fn to_u64(value: rlim_t) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The open-files limits after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit the daemon was started with.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. A failure leaves the
/// limit as it was and is reported: the connection caps are then cut to fit
/// the smaller limit.
pub fn raise() -> Result<Nofile, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let _ = ORIGINAL_SOFT.set(soft);
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(Nofile {
        before: to_u64(soft),
        now: to_u64(soft.max(hard)),
    })
}

/// The current soft limit.
pub fn current() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| to_u64(soft))
}

/// The variable to pass a supervisor helper (whose environment is
/// otherwise empty), if the daemon raised its limit.
pub fn helper_env() -> Option<(&'static str, String)> {
    let original = *ORIGINAL_SOFT.get()?;
    (to_u64(original) < current()).then(|| (HELPER_ENV, original.to_string()))
}

/// In a supervisor helper, before anything else: lowers the soft limit back
/// to what the daemon started with. Sandbox processes inherit it unless
/// their spec sets their own.
pub fn restore_in_helper() {
    let Some(soft) = std::env::var(HELPER_ENV)
        .ok()
        .and_then(|v| v.parse::<rlim_t>().ok())
    else {
        return;
    };
    if let Ok((current, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < current {
            // Only lowering: nothing to fail on but a bogus value, which
            // leaves the limit as inherited.
            let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
        }
    }
}
