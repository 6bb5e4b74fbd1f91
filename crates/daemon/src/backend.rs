//! The one place that selects the backend, at compile time. Each backend
//! crate exports the same two entry points: `new_backend` (the daemon side)
//! and `supervisor_main` (the helper side).

use std::sync::Arc;

use sandboxd_core::Backend;
use sandboxd_core::backend::BackendOptions;

cfg_if::cfg_if! {
    if #[cfg(feature = "force-chroot")] {
        use sandboxd_backend_chroot as selected;
        /// Why this backend was compiled in.
        pub const REASON: &str = "chroot backend forced by the `force-chroot` build feature (not a security boundary against root)";
    } else if #[cfg(target_os = "linux")] {
        use sandboxd_backend_linux as selected;
        /// Why this backend was compiled in.
        pub const REASON: &str = "Linux build: namespaces + pivot_root + cgroups";
    } else if #[cfg(target_os = "freebsd")] {
        use sandboxd_backend_freebsd as selected;
        /// Why this backend was compiled in.
        pub const REASON: &str = "FreeBSD build: jails (jail_set/jail_attach, nullfs/devfs, rctl); this runtime has been run by hand on a FreeBSD 15.1 kernel, but its test suite has not run on one";
    } else {
        use sandboxd_backend_chroot as selected;
        /// Why this backend was compiled in.
        pub const REASON: &str = "no native backend for this OS: chroot backend (not a security boundary against root)";
    }
}

/// Builds the compiled-in backend.
pub fn new(options: &BackendOptions) -> Arc<dyn Backend> {
    Arc::new(selected::new_backend(options, REASON))
}

/// The compiled-in backend's supervisor helper.
pub fn supervisor_main() -> i32 {
    selected::supervisor_main()
}

/// Cargo features this daemon was built with.
pub fn build_features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "force-chroot") {
        f.push("force-chroot".to_owned());
    }
    f
}
