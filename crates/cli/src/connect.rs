//! Turning `--host` into a gRPC channel: a unix socket, or TCP with TLS
//! 1.3, the daemon's certificate verified against `--cacert` for the host's
//! name, and this client's certificate presented (the daemon refuses TCP
//! without one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cli::TlsArgs;
use crate::error::CliError;

/// The daemon's default socket, as a `--host` value.
pub(crate) const DEFAULT_HOST: &str = "unix:///run/sandboxd/sandboxd.sock";

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over TLS; `host` is also the name checked by default.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

/// Parses a `--host` value: `unix://PATH` (or a bare absolute path, as a
/// convenience) or `tcp://HOST:PORT`.
pub(crate) fn parse_host(host: &str) -> Result<Target, CliError> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(CliError::Usage(format!(
                "--host {host}: missing socket path (use unix:///path/to/sandboxd.sock)"
            )));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = host.strip_prefix("tcp://") {
        let bad = || CliError::Usage(format!("--host {host}: expected tcp://HOST:PORT"));
        let (name, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if name.is_empty() {
            return Err(bad());
        }
        return Ok(Target::Tcp {
            host: name.to_owned(),
            port,
        });
    }
    if host.starts_with('/') {
        return Ok(Target::Unix(PathBuf::from(host)));
    }
    Err(CliError::Usage(format!(
        "--host {host}: expected unix://PATH or tcp://HOST:PORT"
    )))
}

/// The rustls client configuration: TLS 1.3, the daemon verified against
/// `--cacert`, this client's certificate if given (the daemon requires it;
/// leaving it out only makes sense to see the refusal).
fn client_config(tls: &TlsArgs) -> Result<rustls::ClientConfig, CliError> {
    let cacert = tls.cacert.as_deref().ok_or_else(|| {
        CliError::Usage(
            "--host tcp://…: needs --cacert FILE (the CA that signed the daemon's certificate)"
                .into(),
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs("--cacert", cacert)? {
        roots
            .add(cert)
            .map_err(|e| CliError::Usage(format!("--cacert {}: {e}", cacert.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CliError::Connect(format!("TLS 1.3: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("--cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| CliError::Usage(format!("--key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| CliError::Usage(format!("--cert/--key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(CliError::Usage("--cert and --key go together".into()));
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag} {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Connects to the daemon named by `host`, eagerly, so that a daemon that is
/// not running (or refuses us) is reported before any request is built.
pub(crate) async fn connect(host: &str, tls: &TlsArgs) -> Result<Channel, CliError> {
    // The URI is a placeholder required by HTTP/2 (`:authority`); the
    // connectors ignore it and dial the target themselves.
    let endpoint = Endpoint::from_static("http://localhost");
    match parse_host(host)? {
        Target::Unix(path) => endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .map_err(|err| connect_error(host, &err)),
        Target::Tcp { host: name, port } => {
            let config = Arc::new(client_config(tls)?);
            let server_name = tls.tls_server_name.clone().unwrap_or_else(|| name.clone());
            let server_name = ServerName::try_from(server_name.clone()).map_err(|_| {
                CliError::Usage(format!("{server_name:?} is not a DNS name or IP address"))
            })?;
            endpoint
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let (config, server_name, addr) =
                        (config.clone(), server_name.clone(), (name.clone(), port));
                    async move {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        let tls = tokio_rustls::TlsConnector::from(config)
                            .connect(server_name, tcp)
                            .await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                    }
                }))
                .await
                .map_err(|err| connect_error(host, &err))
        }
    }
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
        assert_eq!(
            parse_host("tcp://daemon.example.test:7443").ok(),
            Some(Target::Tcp {
                host: "daemon.example.test".into(),
                port: 7443
            })
        );
        assert_eq!(
            parse_host("tcp://[2001:db8::1]:7443").ok(),
            Some(Target::Tcp {
                host: "2001:db8::1".into(),
                port: 7443
            })
        );
        assert!(matches!(parse_host("tcp://x"), Err(CliError::Usage(_))));
        assert!(matches!(parse_host("tcp://:80"), Err(CliError::Usage(_))));
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
