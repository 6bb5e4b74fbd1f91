//! Which sandboxd the shim talks to. containerd starts the shim with its
//! own environment, so the choice is a file: `$SANDBOXD_SHIM_CONFIG`, else
//! `/etc/sandboxd/shim.toml`, else the local daemon's default socket.
//!
//! ```toml
//! # local daemon (the default)
//! endpoint = "unix:///run/sandboxd/sandboxd.sock"
//! # or a remote one, TLS 1.3 with a client certificate
//! endpoint = "tcp://sandboxd.example:7443"
//! ca = "/etc/sandboxd/ca.pem"
//! cert = "/etc/sandboxd/shim.pem"
//! key = "/etc/sandboxd/shim.key"
//! ```
//!
//! A remote daemon cannot see the host directory containerd prepared as the
//! task's root, so with a `tcp://` endpoint that rootfs must lie on storage
//! both hosts share at the same path (and below the remote daemon's
//! `allow_rootfs_sources`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/sandboxd/shim.toml";
/// The environment variable naming another config file.
pub const ENV: &str = "SANDBOXD_SHIM_CONFIG";
/// The local daemon's default socket.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/sandboxd/sandboxd.sock";

/// The shim's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `unix:///path` or `tcp://host:port`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The CA that signed the daemon's certificate (`tcp://`).
    pub ca: Option<PathBuf>,
    /// This shim's client certificate (`tcp://`).
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// The name checked in the daemon's certificate (default: the host).
    pub server_name: Option<String>,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: default_endpoint(),
            ca: None,
            cert: None,
            key: None,
            server_name: None,
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file.
    #[error("reading the shim config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Parsing it.
    #[error("parsing the shim config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl Config {
    /// Parses a config file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// `$SANDBOXD_SHIM_CONFIG`, else the default file if it exists, else
    /// the defaults.
    pub fn load() -> Result<Self, ConfigError> {
        let (path, must_exist) = match std::env::var_os(ENV) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text),
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn forms() {
        let p = Path::new("/x.toml");
        assert_eq!(Config::parse(p, "").unwrap(), Config::default());
        let c = Config::parse(
            p,
            "endpoint = \"tcp://h:1\"\nca = \"/ca\"\ncert = \"/c\"\nkey = \"/k\"\n",
        )
        .unwrap();
        assert_eq!(c.endpoint, "tcp://h:1");
        assert_eq!(c.key.as_deref(), Some(Path::new("/k")));
        // Unknown keys are errors, not ignored.
        assert!(Config::parse(p, "endpiont = \"x\"").is_err());
    }
}
