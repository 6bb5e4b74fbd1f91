//! Bearer-token registry authentication (issue 18), as Docker Hub, ghcr.io
//! and quay ask for it: the real distribution registry configured with
//! `auth: token`, a small token server on 127.0.0.1 that signs ES256 JWTs
//! with a key made here (the x5c header carries its self-signed
//! certificate, the registry's rootcertbundle trusts it), and a front that
//! redirects blob downloads to another host, as registries backed by S3 or
//! a CDN do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::harness::Daemon;
use crate::images::{Registry, busybox_layer, oci_files, pull, store_entries};

const SERVICE: &str = "sandboxd-test-registry";
const ISSUER: &str = "sandboxd-test-issuer";
const USER: (&str, &str) = ("tester", "s3cret");

/// One request the token server answered.
#[derive(Debug, Clone)]
struct TokenRequest {
    /// The Authorization header, if any.
    authorization: Option<String>,
    /// The `scope` parameters.
    scopes: Vec<String>,
    /// The `service` parameter.
    service: String,
}

/// A token server: anonymous callers get `pull` on repositories whose name
/// starts with "public" (and a token without access elsewhere, as Docker
/// Hub answers), `USER` gets every action it asks for, wrong credentials
/// get 401.
struct TokenServer {
    listener: Option<TcpListener>,
    /// "127.0.0.1:PORT".
    addr: String,
    /// The signing certificate (the registry's rootcertbundle).
    bundle: PathBuf,
    key: Arc<rcgen::KeyPair>,
    cert_der: Vec<u8>,
    log: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    /// Binds a port and makes the signing key; `serve` starts answering.
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sandboxd test token signer");
        let cert = params.self_signed(&key).unwrap();
        let bundle = dir.join("token-signer.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        Self {
            listener: Some(listener),
            addr,
            bundle,
            key: Arc::new(key),
            cert_der: cert.der().to_vec(),
            log: Arc::default(),
        }
    }

    /// The registry's `auth: token` block, with the realm on `scheme`.
    fn registry_auth(&self, scheme: &str) -> String {
        format!(
            "    realm: {scheme}://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.addr,
            self.bundle.display()
        )
    }

    /// Answers on its own thread (the tests block on skopeo), over TLS with
    /// `tls` (certificate and key PEM files) or plain HTTP.
    fn serve(&mut self, tls: Option<(&Path, &Path)>) {
        let listener = self.listener.take().unwrap();
        let tls = tls.map(|(cert, key)| server_config(cert, key));
        let (key, cert, log) = (self.key.clone(), self.cert_der.clone(), self.log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (key, cert, log, tls) = (key.clone(), cert.clone(), log.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = match tls {
                        None => answer_token(conn, &key, &cert, &log),
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            answer_token(rustls::StreamOwned::new(sc, conn), &key, &cert, &log)
                        }
                    };
                });
            }
        });
    }

    fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().unwrap().clone()
    }
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    )
}

/// Reads one HTTP request head: the request line and the headers
/// (lower-cased names).
fn read_head(r: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let request = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Some((request, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn respond(w: &mut impl Write, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    w.flush()
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An ASN.1 ECDSA signature (SEQUENCE of r and s) as JWS's fixed r || s.
fn fixed_signature(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut i = if der[1] & 0x80 != 0 {
        2 + usize::from(der[1] & 0x7f)
    } else {
        2
    };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = usize::from(der[i + 1]);
        let n = &der[i + 2..i + 2 + len];
        let n = &n[n.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - n.len()));
        out.extend_from_slice(n);
        i += 2 + len;
    }
    out
}

fn answer_token<S: Read + Write>(
    stream: S,
    key: &rcgen::KeyPair,
    cert_der: &[u8],
    log: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    use base64::Engine as _;
    use rcgen::SigningKey as _;
    let mut r = BufReader::new(stream);
    let Some((request, headers)) = read_head(&mut r) else {
        return Ok(());
    };
    let target = request.split(' ').nth(1).unwrap_or_default().to_owned();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("scope", v)) => scopes.push(percent_decode(v)),
            Some(("service", v)) => service = percent_decode(v),
            _ => {}
        }
    }
    let authorization = header(&headers, "authorization").map(str::to_owned);
    log.lock().unwrap().push(TokenRequest {
        authorization: authorization.clone(),
        scopes: scopes.clone(),
        service: service.clone(),
    });
    let w = r.get_mut();
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", USER.0, USER.1))
    );
    let user = match authorization {
        None => None,
        Some(a) if a == right => Some(USER.0),
        Some(_) => {
            return respond(
                w,
                "401 Unauthorized",
                r#"{"details":"incorrect username or password"}"#,
            );
        }
    };
    let mut access = Vec::new();
    for s in &scopes {
        let mut parts = s.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| user.is_some() || (name.starts_with("public") && *a == "pull"))
            .collect();
        if !granted.is_empty() {
            access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": service,
        "exp": now + 300,
        "nbf": now - 30,
        "iat": now,
        "jti": format!("{now}-{}", log.lock().unwrap().len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = fixed_signature(&key.sign(signing_input.as_bytes()).unwrap());
    let jwt = format!("{signing_input}.{}", b64url(&sig));
    // Both spellings the spec allows: `token`, and OAuth2's `access_token`.
    let field = if user.is_some() {
        "access_token"
    } else {
        "token"
    };
    respond(
        w,
        "200 OK",
        &serde_json::json!({field: jwt, "expires_in": 300}).to_string(),
    )
}

/// A daemon configured for `reg` (its CA, or insecure) with `creds`.
fn daemon_for(reg: &Registry, host: &str, creds: Option<(&str, &str)>, tag: &str) -> Daemon {
    let dir = reg.storage.parent().unwrap().join(format!("daemon-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut entry = match &reg.ca {
        None => "insecure = true".to_owned(),
        Some(ca) => format!("ca_file = {:?}", ca.display().to_string()),
    };
    if let Some((u, p)) = creds {
        entry.push_str(&format!("\nusername = {u:?}\npassword = {p:?}"));
    }
    let conf = dir.join("sandboxd.toml");
    std::fs::write(&conf, format!("[registries.\"{host}\"]\n{entry}\n")).unwrap();
    Daemon::start_with(&["--config", &conf.to_string_lossy()])
}

fn work_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sandboxd-e2e-{what}-{}", std::process::id()))
}

#[tokio::test]
async fn pull_with_bearer_tokens_anonymous_and_with_credentials() {
    let work = work_dir("registry-token");
    let mut ts = TokenServer::new(&work.join("token"));
    let reg = Registry::start_token(&work.join("reg"), true, &ts.registry_auth("https"), USER);
    let reg_dir = reg.storage.parent().unwrap().to_owned();
    // The token server is served with the registry's certificate (the
    // test CA's, for 127.0.0.1): the daemon checks it with the same CA.
    ts.serve(Some((&reg_dir.join("cert.pem"), &reg_dir.join("key.pem"))));
    let files = oci_files("1", &[busybox_layer()], "{}", None);
    reg.push(&work, &files, "public/app", "1", false);
    reg.push(&work, &files, "private/app", "1", false);
    let public = format!("{}/public/app:1", reg.host);
    let private = format!("{}/private/app:1", reg.host);

    // Anonymous: the token server grants pull on public/*.
    let d = daemon_for(&reg, &reg.host, None, "anon");
    let before = ts.requests().len();
    let (_, image) = pull(&d, &public).await.unwrap();
    let asked: Vec<TokenRequest> = ts.requests()[before..].to_vec();
    assert!(!asked.is_empty(), "the daemon asked the token server");
    for t in &asked {
        assert_eq!(t.authorization, None, "anonymous: {t:?}");
        assert_eq!(t.service, SERVICE, "{t:?}");
        assert_eq!(t.scopes, vec!["repository:public/app:pull"], "{t:?}");
    }
    // The token is cached for its lifetime: a second pull asks no more.
    let n = ts.requests().len();
    let (_, again) = pull(&d, &format!("{}/public/app@{}", reg.host, image.digest))
        .await
        .unwrap();
    assert_eq!(again.digest, image.digest);
    assert_eq!(ts.requests().len(), n, "the cached token was reused");
    // Anonymous on a private repository: the token grants nothing, the
    // registry refuses it: PERMISSION_DENIED naming the registry, nothing
    // kept.
    let d2 = daemon_for(&reg, &reg.host, None, "anon-private");
    let st = pull(&d2, &private).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{}", st.message());
    assert!(st.message().contains(&reg.host), "{}", st.message());
    assert_eq!(store_entries(&d2), Vec::<String>::new());
    d2.finish().await;
    d.finish().await;

    // Wrong credentials: the token server refuses them.
    let d = daemon_for(&reg, &reg.host, Some((USER.0, "wrong")), "wrong");
    let st = pull(&d, &private).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{}", st.message());
    assert!(st.message().contains(&reg.host), "{}", st.message());
    assert!(
        st.message().contains("credentials"),
        "says what was refused: {}",
        st.message()
    );
    assert_eq!(store_entries(&d), Vec::<String>::new());
    d.finish().await;

    // The right ones: the pull works, and they went to the token server.
    let d = daemon_for(&reg, &reg.host, Some(USER), "right");
    let before = ts.requests().len();
    let (_, image) = pull(&d, &private).await.unwrap();
    assert_eq!(image.refs, vec![private.clone()]);
    let asked = ts.requests()[before..].to_vec();
    assert!(
        asked.iter().all(|t| t
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "{asked:?}"
    );
    d.finish().await;
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}

/// What the redirect front and the blob host saw.
#[derive(Debug, Default)]
struct Seen {
    /// Authorization headers of requests forwarded to the registry.
    registry: Vec<Option<String>>,
    /// Authorization headers of requests to the blob host.
    blobs: Vec<Option<String>>,
}

/// A front for `reg` on 127.0.0.1 that forwards every request except
/// authorized blob downloads, which it redirects (307) to a second listener
/// addressed as `localhost` (another host: a CDN), serving the registry's
/// stored blob.
fn redirecting_front(reg: &Registry, seen: Arc<Mutex<Seen>>) -> String {
    let blobs = TcpListener::bind("127.0.0.1:0").unwrap();
    let blob_port = blobs.local_addr().unwrap().port();
    let storage = reg.storage.clone();
    let seen_b = seen.clone();
    std::thread::spawn(move || {
        for conn in blobs.incoming() {
            let Ok(conn) = conn else { return };
            let mut r = BufReader::new(conn);
            let Some((request, headers)) = read_head(&mut r) else {
                continue;
            };
            seen_b
                .lock()
                .unwrap()
                .blobs
                .push(header(&headers, "authorization").map(str::to_owned));
            let path = request.split(' ').nth(1).unwrap_or_default();
            let hex = path.rsplit("sha256:").next().unwrap_or_default();
            let file = storage
                .join("docker/registry/v2/blobs/sha256")
                .join(hex.get(..2).unwrap_or("xx"))
                .join(hex)
                .join("data");
            let w = r.get_mut();
            match std::fs::read(file) {
                Ok(b) => {
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    let _ = w.write_all(&b);
                }
                Err(_) => {
                    let _ = respond(w, "404 Not Found", "{}");
                }
            }
        }
    });
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap().to_string();
    let upstream = reg.host.clone();
    std::thread::spawn(move || {
        for conn in front.incoming() {
            let Ok(conn) = conn else { return };
            let (seen, upstream) = (seen.clone(), upstream.clone());
            std::thread::spawn(move || front_one(conn, &upstream, blob_port, &seen));
        }
    });
    addr
}

fn front_one(conn: TcpStream, upstream: &str, blob_port: u16, seen: &Mutex<Seen>) {
    let mut r = BufReader::new(conn);
    let Some((request, headers)) = read_head(&mut r) else {
        return;
    };
    let path = request.split(' ').nth(1).unwrap_or_default().to_owned();
    // Blob downloads the registry would allow (the caller has a token; the
    // registry itself answers the others: its 401 challenge) are redirected.
    let authorized = header(&headers, "authorization").is_some();
    if request.starts_with("GET ") && path.contains("/blobs/sha256:") && authorized {
        let w = r.get_mut();
        let _ = write!(
            w,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{blob_port}/cdn{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    seen.lock()
        .unwrap()
        .registry
        .push(header(&headers, "authorization").map(str::to_owned));
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    // One request per connection: the registry closes after it.
    let mut head = format!("{request}\r\n");
    for (k, v) in headers.iter().filter(|(k, _)| k != "connection") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() {
        return;
    }
    // GETs have no body: the rest is the answer.
    let mut client = r.into_inner();
    let _ = std::io::copy(&mut up, &mut client);
}

#[tokio::test]
async fn blob_redirects_to_another_host_go_without_the_token_and_realms_must_be_https() {
    let work = work_dir("registry-redirect");
    let mut ts = TokenServer::new(&work.join("token"));
    // A plain-HTTP registry (insecure): a plain-HTTP realm is accepted.
    let reg = Registry::start_token(&work.join("reg"), false, &ts.registry_auth("http"), USER);
    ts.serve(None);
    reg.push(
        &work,
        &oci_files("1", &[busybox_layer()], "{}", None),
        "public/cdn",
        "1",
        false,
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let front = redirecting_front(&reg, seen.clone());
    let d = daemon_for(&reg, &front, None, "front");
    let (_, image) = pull(&d, &format!("{front}/public/cdn:1")).await.unwrap();
    assert_eq!(image.layers.len(), 1);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.registry
            .iter()
            .any(|a| a.as_deref().is_some_and(|a| a.starts_with("Bearer "))),
        "the registry got the token: {seen:?}"
    );
    assert_eq!(
        seen.blobs,
        vec![None, None],
        "config and layer fetched from the other host, without the token"
    );
    d.finish().await;

    // A TLS registry whose realm is plain HTTP: refused before anything is
    // sent to the realm.
    let reg_tls =
        Registry::start_token(&work.join("reg-tls"), true, &ts.registry_auth("http"), USER);
    let d = daemon_for(&reg_tls, &reg_tls.host, Some(USER), "tls");
    let n = ts.requests().len();
    let st = pull(&d, &format!("{}/public/cdn:1", reg_tls.host))
        .await
        .unwrap_err();
    assert_eq!(
        st.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        st.message()
    );
    assert!(st.message().contains("plain HTTP"), "{}", st.message());
    assert_eq!(ts.requests().len(), n, "nothing was sent to the realm");
    d.finish().await;
    drop(reg_tls);
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}
