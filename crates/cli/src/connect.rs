//! Turning `--host` into a gRPC channel.
//!
//! Only local unix sockets are supported in this build; remote daemons need
//! TCP with mutual TLS, which comes later, and the daemon refuses plain TCP
//! anyway, so `tcp://` is refused here with a message saying why rather than
//! failing later with an obscure transport error.

use std::path::PathBuf;

use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::CliError;

/// The daemon's default socket, as a `--host` value.
pub(crate) const DEFAULT_HOST: &str = "unix:///run/sandboxd/sandboxd.sock";

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A unix socket path.
    Unix(PathBuf),
}

/// Parses a `--host` value: `unix://PATH` (or a bare absolute path, as a
/// convenience). `tcp://` is recognised only to refuse it clearly.
pub(crate) fn parse_host(host: &str) -> Result<Target, CliError> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(CliError::Usage(format!(
                "--host {host}: missing socket path (use unix:///path/to/sandboxd.sock)"
            )));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    if host.starts_with("tcp://") {
        // Not a usage error: the value is well-formed, this build just cannot
        // do it yet. Exit like a connection failure.
        return Err(CliError::Connect(
            "tcp:// needs TLS client certificates, which this build does not support yet".into(),
        ));
    }
    if host.starts_with('/') {
        return Ok(Target::Unix(PathBuf::from(host)));
    }
    Err(CliError::Usage(format!(
        "--host {host}: expected unix://PATH (tcp://ADDR is not supported yet)"
    )))
}

/// Connects to the daemon named by `host`, eagerly, so that a daemon that is
/// not running is reported before any request is built.
pub(crate) async fn connect(host: &str) -> Result<Channel, CliError> {
    let Target::Unix(path) = parse_host(host)?;
    // The URI is a placeholder required by HTTP/2 (`:authority`); the
    // connector ignores it and dials the socket.
    let endpoint = Endpoint::from_static("http://localhost");
    let socket = path.clone();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .map_err(|err| connect_error(host, &err))
}

/// Builds the one-line message for a failed connect, digging the OS error out
/// of tonic's wrapper so the user sees "No such file or directory" rather
/// than "transport error".
fn connect_error(host: &str, err: &(dyn std::error::Error + 'static)) -> CliError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return CliError::Connect(describe_io(host, io));
        }
        cause = e.source();
    }
    CliError::Connect(format!("cannot connect to {host}: {err}"))
}

/// The message for an OS-level connect failure, with a hint fitting the
/// errno.
fn describe_io(host: &str, io: &std::io::Error) -> String {
    let Some(raw) = io.raw_os_error() else {
        return format!("cannot connect to {host}: {io}");
    };
    let errno = nix::errno::Errno::from_raw(raw);
    let hint = match errno {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ECONNREFUSED => " (is sandboxd running?)",
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
            " (the socket is for root or the daemon's configured group)"
        }
        _ => "",
    };
    format!("cannot connect to {host}: {}{hint}", errno.desc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            parse_host(DEFAULT_HOST).ok(),
            Some(Target::Unix("/run/sandboxd/sandboxd.sock".into()))
        );
        assert_eq!(
            parse_host("/tmp/s.sock").ok(),
            Some(Target::Unix("/tmp/s.sock".into()))
        );
        let tcp = parse_host("tcp://192.0.2.1:7443")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            tcp.as_deref(),
            Some("tcp:// needs TLS client certificates, which this build does not support yet")
        );
        assert!(matches!(parse_host("unix://"), Err(CliError::Usage(_))));
        assert!(matches!(parse_host("http://x"), Err(CliError::Usage(_))));
    }

    #[test]
    fn missing_socket_message() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            describe_io(DEFAULT_HOST, &io),
            "cannot connect to unix:///run/sandboxd/sandboxd.sock: \
             No such file or directory (is sandboxd running?)"
        );
    }
}
