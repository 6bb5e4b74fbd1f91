//! The gRPC connection to sandboxd: a unix socket, or TCP with TLS 1.3
//! and a client certificate (as sandboxctl connects).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::Config;

/// Why the shim could not reach sandboxd.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A bad endpoint or TLS setting.
    #[error("shim config: {0}")]
    Config(String),
    /// The connection itself.
    #[error("connecting to sandboxd at {endpoint}: {message}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        message: String,
    },
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConnectError::Config(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConnectError::Config(format!(
            "{what} {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn tls_config(config: &Config) -> Result<rustls::ClientConfig, ConnectError> {
    let (Some(ca), Some(cert), Some(key)) = (&config.ca, &config.cert, &config.key) else {
        return Err(ConnectError::Config(
            "a tcp:// endpoint needs ca, cert and key (the daemon requires a client certificate)"
                .into(),
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs("ca", ca)? {
        roots
            .add(c)
            .map_err(|e| ConnectError::Config(format!("ca {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConnectError::Config(format!("key {}: {e}", key.display())))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectError::Config(format!("TLS 1.3: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| ConnectError::Config(format!("cert/key: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tls)
}

/// Connects (lazily: the first call dials, and a daemon restart is
/// redialled by the channel).
pub fn connect(config: &Config) -> Result<Channel, ConnectError> {
    let endpoint = Endpoint::from_static("http://localhost");
    let e = config.endpoint.clone();
    if let Some(path) = e.strip_prefix("unix://") {
        let path = path.to_owned();
        return Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            })),
        );
    }
    if let Some(rest) = e.strip_prefix("tcp://") {
        let bad = || ConnectError::Config(format!("endpoint {e}: expected tcp://HOST:PORT"));
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port: u16 = port.parse().map_err(|_| bad())?;
        let tls = Arc::new(tls_config(config)?);
        let name = config.server_name.clone().unwrap_or_else(|| host.clone());
        let name = ServerName::try_from(name.clone())
            .map_err(|_| ConnectError::Config(format!("{name:?} is not a DNS name or address")))?;
        return Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let (tls, name, addr) = (tls.clone(), name.clone(), (host.clone(), port));
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let s = tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            })),
        );
    }
    Err(ConnectError::Config(format!(
        "endpoint {e}: expected unix:///PATH or tcp://HOST:PORT"
    )))
}
