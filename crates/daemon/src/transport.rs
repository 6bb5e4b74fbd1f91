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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::Tls;
use crate::unix_authority::AuthorityFix;

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

/// One accepted connection. It holds its listener's connection slot until
/// it is dropped.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    peer: Peer,
    _slot: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Io {
    /// Over the unix socket; the client's `:authority` made acceptable to
    /// h2 on the way in (stock clients send the socket's path there).
    Unix(Box<AuthorityFix<UnixStream>>),
    /// Over TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Unix(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
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

/// How many connections the listeners hold at once (see [`caps_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCaps {
    /// Unix-socket connections, all unix listeners together.
    pub local: usize,
    /// TCP connections through their handshake, all TCP listeners together.
    pub remote: usize,
    /// TCP connections still in their TLS handshake (also counted in
    /// `remote`).
    pub handshakes: usize,
}

/// The caps as configured, each lowered to its share of the open-files
/// limit `nofile` (unix and TCP connections a quarter each, handshakes a
/// sixteenth) so that neither listener can use up the descriptors the
/// other, the sandboxes and their execs need.
pub fn caps_for(configured: ConnCaps, nofile: u64) -> ConnCaps {
    let share = |value: usize, divisor: u64| {
        let most = usize::try_from(nofile / divisor)
            .unwrap_or(usize::MAX)
            .max(1);
        value.min(most)
    };
    ConnCaps {
        local: share(configured.local, 4),
        remote: share(configured.remote, 4),
        handshakes: share(configured.handshakes, 16),
    }
}

/// Lets a burst of lines through per window, then counts what it drops and
/// says how many when the next window lets a line through: a peer that
/// makes the daemon fail over and over must not fill its log.
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    burst: u32,
    state: std::sync::Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    start: Instant,
    logged: u32,
    dropped: u64,
}

impl Throttle {
    /// At most `burst` lines per `window`.
    pub fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            state: std::sync::Mutex::new(ThrottleState {
                start: Instant::now(),
                logged: 0,
                dropped: 0,
            }),
        }
    }

    /// Whether to log now: `Some(lines dropped since the last one logged)`,
    /// or None to stay quiet.
    pub fn admit(&self) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(s.start) >= self.window {
            s.start = now;
            s.logged = 0;
        }
        if s.logged < self.burst {
            s.logged += 1;
            Some(std::mem::take(&mut s.dropped))
        } else {
            s.dropped += 1;
            None
        }
    }
}

/// Pauses an accept loop after a failed accept, longer while it keeps
/// failing: out of descriptors (EMFILE, ENFILE) nothing changes until a
/// connection closes, and retrying at once only spins.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    log: Throttle,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            delay: Self::FIRST,
            log: Throttle::new(Duration::from_secs(10), 1),
        }
    }

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }

    async fn failed(&mut self, listener: &str, e: &io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if let Some(dropped) = self.log.admit() {
            tracing::warn!(listener, error = %e, exhausted, retry_in = ?self.delay, similar_dropped = dropped, "accepting a connection failed");
        }
        tokio::time::sleep(self.delay).await;
        self.delay = if exhausted {
            (self.delay * 2).min(Self::MOST)
        } else {
            Self::FIRST
        };
    }
}

/// Accepts on every listener and yields ready connections. Each listener
/// waits for a free slot before it accepts (a connection beyond the cap
/// waits in the kernel's backlog and costs the daemon no descriptor); unix
/// and TCP connections have separate slots, so remote peers, authenticated
/// or not, cannot take the local admins' share. TLS handshakes run
/// concurrently, each under its timeout and holding a handshake slot; a
/// failed one is logged (throttled) and dropped without touching anything
/// else.
pub fn incoming(
    listeners: Vec<Bound>,
    caps: ConnCaps,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let local = Arc::new(Semaphore::new(caps.local));
    let remote = Arc::new(Semaphore::new(caps.remote));
    let handshakes = Arc::new(Semaphore::new(caps.handshakes));
    let refusals = Arc::new(Throttle::new(Duration::from_secs(10), 20));
    for listener in listeners {
        let tx = tx.clone();
        let (local, remote, handshakes, refusals) = (
            local.clone(),
            remote.clone(),
            handshakes.clone(),
            refusals.clone(),
        );
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            match listener {
                Bound::Unix(l) => loop {
                    // The semaphores are never closed.
                    let Ok(slot) = local.clone().acquire_owned().await else {
                        return;
                    };
                    match l.accept().await {
                        Ok((s, _)) => {
                            backoff.succeeded();
                            let conn = Conn {
                                io: Io::Unix(Box::new(AuthorityFix::new(s))),
                                peer: Peer::Local,
                                _slot: slot,
                            };
                            if tx.send(Ok(conn)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => backoff.failed("unix", &e).await,
                    }
                },
                Bound::Tcp(l, acceptor, timeout) => loop {
                    let Ok(slot) = remote.clone().acquire_owned().await else {
                        return;
                    };
                    let Ok(handshake) = handshakes.clone().acquire_owned().await else {
                        return;
                    };
                    let (stream, addr) = match l.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            backoff.failed("tcp", &e).await;
                            continue;
                        }
                    };
                    backoff.succeeded();
                    let (acceptor, tx, refusals) = (acceptor.clone(), tx.clone(), refusals.clone());
                    tokio::spawn(async move {
                        let result = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
                        drop(handshake);
                        let refused = |why: &dyn std::fmt::Display| {
                            if let Some(dropped) = refusals.admit() {
                                tracing::warn!(%addr, similar_dropped = dropped, "TLS handshake refused: {why}");
                            }
                        };
                        match result {
                            Ok(Ok(tls)) => {
                                let identity = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(identity_of);
                                let Some(identity) = identity else {
                                    refused(
                                        &"the client certificate names no identity (no SAN URI, no CN)",
                                    );
                                    return;
                                };
                                let conn = Conn {
                                    io: Io::Tls(Box::new(tls)),
                                    peer: Peer::Remote { identity, addr },
                                    _slot: slot,
                                };
                                let _ = tx.send(Ok(conn)).await;
                            }
                            Ok(Err(e)) => refused(&e),
                            Err(_) => refused(&format_args!("timed out after {timeout:?}")),
                        }
                    });
                },
            }
        });
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_open_files_limit() {
        let configured = ConnCaps {
            local: 256,
            remote: 1024,
            handshakes: 128,
        };
        let cases = [
            (1 << 20, configured),
            (
                4096,
                ConnCaps {
                    local: 256,
                    remote: 1024,
                    handshakes: 128,
                },
            ),
            (
                1024,
                ConnCaps {
                    local: 256,
                    remote: 256,
                    handshakes: 64,
                },
            ),
            (
                256,
                ConnCaps {
                    local: 64,
                    remote: 64,
                    handshakes: 16,
                },
            ),
            (
                3,
                ConnCaps {
                    local: 1,
                    remote: 1,
                    handshakes: 1,
                },
            ),
        ];
        for (nofile, want) in cases {
            let got = caps_for(configured, nofile);
            assert_eq!(got, want, "nofile {nofile}");
            // TCP (handshakes are within `remote`) and unix together leave
            // at least half of the descriptors to everything else.
            assert!(
                got.local + got.remote <= usize::try_from(nofile / 2).unwrap_or(usize::MAX).max(2)
            );
        }
    }

    #[test]
    fn throttle_lets_a_burst_through_then_counts() {
        let t = Throttle::new(Duration::from_millis(200), 3);
        let first: Vec<_> = (0..10).map(|_| t.admit()).collect();
        assert_eq!(
            first,
            vec![
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None,
                None,
                None,
                None,
                None
            ]
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.admit(), Some(7), "the next window says what was dropped");
        assert_eq!(t.admit(), Some(0));
    }
}
