//! Listeners and connections: unix sockets for local clients, TCP only
//! with TLS 1.3 and a verified client certificate (rustls). Every
//! connection carries a [`Peer`] that handlers read from the request's
//! extensions: local, or the identity its certificate names.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::Tls;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A unix-socket client: someone the socket's permissions let in.
    Local,
    /// A TLS client whose certificate chained to the client CA.
    Remote {
        /// The certificate's first SAN URI, else its subject CN.
        identity: String,
        /// Its address.
        addr: SocketAddr,
    },
}

/// One accepted connection.
#[derive(Debug)]
pub enum Conn {
    /// Over the unix socket.
    Unix(UnixStream),
    /// Over TLS.
    Tls(Box<TlsStream<TcpStream>>, Peer),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Self::Unix(_) => Peer::Local,
            Self::Tls(_, peer) => peer.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The rustls server configuration: TLS 1.3 only, a client certificate
/// required and verified against the client CA (chain, validity period and
/// the clientAuth extended key usage), h2 only.
pub fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = read_certs(&tls.client_ca).context("tls.client_ca")?;
    if ca.is_empty() {
        anyhow::bail!(
            "tls.client_ca {}: no certificate in it",
            tls.client_ca.display()
        );
    }
    for cert in ca {
        roots
            .add(cert)
            .with_context(|| format!("tls.client_ca {}", tls.client_ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("building the client certificate verifier")?;
    let chain = read_certs(&tls.cert).context("tls.cert")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("tls.key {}", tls.key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("tls.cert and tls.key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}", path.display()))
}

/// The identity a client certificate names: its first SAN URI, else its
/// subject CN.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                return Some((*uri).to_owned());
            }
        }
    }
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// A bound listener.
pub enum Bound {
    /// A unix socket.
    Unix(UnixListener),
    /// A TCP socket, with the TLS acceptor and handshake timeout.
    Tcp(TcpListener, TlsAcceptor, Duration),
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // TlsAcceptor has no Debug; its configuration is not worth printing.
        match self {
            Self::Unix(l) => f.debug_tuple("Unix").field(l).finish(),
            Self::Tcp(l, _, t) => f.debug_tuple("Tcp").field(l).field(t).finish(),
        }
    }
}

/// Accepts on every listener and yields ready connections: TLS handshakes
/// run concurrently, each bounded by its timeout, and a failed one is
/// logged and dropped without touching anything else.
pub fn incoming(listeners: Vec<Bound>) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    for listener in listeners {
        let tx = tx.clone();
        tokio::spawn(async move {
            match listener {
                Bound::Unix(l) => loop {
                    let conn = l.accept().await.map(|(s, _)| Conn::Unix(s));
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                },
                Bound::Tcp(l, acceptor, timeout) => loop {
                    let (stream, addr) = match l.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a TCP connection");
                            continue;
                        }
                    };
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let identity = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(identity_of);
                                let Some(identity) = identity else {
                                    tracing::warn!(%addr, "client certificate names no identity (no SAN URI, no CN)");
                                    return;
                                };
                                let peer = Peer::Remote { identity, addr };
                                let _ = tx.send(Ok(Conn::Tls(Box::new(tls), peer))).await;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(%addr, error = %e, "TLS handshake refused");
                            }
                            Err(_) => {
                                tracing::warn!(%addr, ?timeout, "TLS handshake timed out");
                            }
                        }
                    });
                },
            }
        });
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
