//! The pure parts of talking to a registry (docs/images.md, "Registry
//! authentication"): its `WWW-Authenticate` challenges, the token
//! server's answer, and the URLs a pull may be sent to (the registry, a
//! token realm, a blob redirect) with the rules for each.

use serde::Deserialize;

/// A registry's authentication challenge (the first scheme of a
/// `WWW-Authenticate` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// The distribution token protocol: ask `realm` for a token.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` to name to it.
        service: Option<String>,
        /// The scopes the registry wants (space-separated in the header).
        scopes: Vec<String>,
    },
}

/// A challenge, token answer or URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A `WWW-Authenticate` header that does not parse or names another
    /// scheme.
    #[error("challenge {header:?}: {why}")]
    Challenge {
        /// The header.
        header: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A token server's answer without a usable token.
    #[error("token answer: {0}")]
    Token(String),
    /// A URL that is not `http(s)://authority/path` or may not be used.
    #[error("URL {url:?}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Parses a `WWW-Authenticate` header: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"` (parameter values quoted or
/// bare tokens; unknown parameters such as `error` are ignored).
pub fn parse_challenge(header: &str) -> Result<Challenge, AuthError> {
    let bad = |why| AuthError::Challenge {
        header: header.to_owned(),
        why,
    };
    let h = header.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad(
            "unsupported scheme (HTTP basic and bearer tokens are implemented)",
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (key, after) = s
            .split_once('=')
            .ok_or_else(|| bad("a parameter without '='"))?;
        let key = key.trim().to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().ok_or_else(|| bad("unterminated quote"))?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("unterminated quote"))?;
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.push((key, value));
        let after = after.trim_start();
        s = match after.strip_prefix(',') {
            Some(a) => a.trim_start(),
            None if after.is_empty() => after,
            None => return Err(bad("parameters must be separated by ','")),
        };
    }
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    let realm = get("realm")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("a bearer challenge without a realm"))?;
    Ok(Challenge::Bearer {
        realm,
        service: get("service").filter(|s| !s.is_empty()),
        scopes: get("scope")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// A token server's answer: `token` or OAuth2's `access_token`, and how
/// long it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What goes after `Authorization: Bearer`.
    pub token: String,
    /// Seconds it may be used for (from `expires_in`, with a margin).
    pub lifetime_secs: u64,
}

/// Lifetime when the answer says none (the token spec's default).
pub const DEFAULT_TOKEN_SECS: u64 = 60;
/// Seconds before its end that a cached token is no longer used, so that
/// it does not expire between being picked and reaching the registry.
pub const TOKEN_MARGIN_SECS: u64 = 10;

/// Parses a token server's JSON answer.
pub fn parse_token(bytes: &[u8]) -> Result<Token, AuthError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let a: Answer =
        serde_json::from_slice(bytes).map_err(|e| AuthError::Token(format!("not JSON: {e}")))?;
    let token = a
        .token
        .filter(|t| !t.is_empty())
        .or(a.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| AuthError::Token("neither token nor access_token".into()))?;
    // A header value: anything that could split or end it is refused.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Token(
            "the token has characters a header cannot carry".into(),
        ));
    }
    let expires = a.expires_in.unwrap_or(DEFAULT_TOKEN_SECS);
    Ok(Token {
        token,
        lifetime_secs: expires.saturating_sub(TOKEN_MARGIN_SECS),
    })
}

/// An `http(s)://authority/path?query` URL, split as a request needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` (TLS) or `http`.
    pub https: bool,
    /// `host[:port]` (no user information).
    pub authority: String,
    /// Path and query, starting with '/'.
    pub target: String,
}

impl Url {
    /// Parses an absolute URL (a fragment is dropped).
    pub fn parse(url: &str) -> Result<Self, AuthError> {
        let bad = |why| AuthError::Url {
            url: url.to_owned(),
            why,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("not an absolute URL"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad("only http and https URLs are followed"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad("user information in a URL is refused"));
        }
        if !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        {
            return Err(bad("the host has characters a host name cannot have"));
        }
        if !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the path has characters a request cannot carry"));
        }
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(Self {
            https,
            authority: authority.to_ascii_lowercase(),
            target,
        })
    }

    /// The URL a `Location` header names from this one: absolute, or
    /// scheme-relative (`//host/path`), or absolute-path (`/path`).
    pub fn join(&self, location: &str) -> Result<Self, AuthError> {
        if location.starts_with("//") {
            let scheme = if self.https { "https:" } else { "http:" };
            Self::parse(&format!("{scheme}{location}"))
        } else if location.starts_with('/') {
            let scheme = if self.https { "https://" } else { "http://" };
            Self::parse(&format!("{scheme}{}{location}", self.authority))
        } else {
            Self::parse(location)
        }
    }

    /// The host without the port (and without an IPv6 literal's
    /// brackets): the TLS server name.
    pub fn host(&self) -> &str {
        let a = self.authority.as_str();
        if let Some(v6) = a.strip_prefix('[') {
            return v6.split(']').next().unwrap_or_default();
        }
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    }

    /// `host:port`, with the scheme's default port when none is given.
    pub fn socket_addr(&self) -> String {
        let a = &self.authority;
        let has_port = match a.rfind(']') {
            Some(i) => a[i..].contains(':'),
            None => a.contains(':'),
        };
        if has_port {
            a.clone()
        } else {
            format!("{a}:{}", if self.https { 443 } else { 80 })
        }
    }

    /// Same scheme and authority: where a registry's credentials may go.
    pub fn same_origin(&self, other: &Self) -> bool {
        self.https == other.https && self.authority == other.authority
    }

    /// This URL with `service` and one `scope` parameter per scope added
    /// to its query (the token request).
    pub fn with_token_query(&self, service: Option<&str>, scopes: &[String]) -> Self {
        let mut t = self.target.clone();
        let mut sep = if t.contains('?') { '&' } else { '?' };
        let params = service
            .map(|s| ("service", s))
            .into_iter()
            .chain(scopes.iter().map(|s| ("scope", s.as_str())));
        for (k, v) in params {
            t.push(sep);
            t.push_str(k);
            t.push('=');
            t.push_str(&percent_encode(v));
            sep = '&';
        }
        Self {
            target: t,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.target)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a token realm may be asked, for a registry reached over
/// `registry_https`: an HTTPS registry's realm must be HTTPS too (its
/// credentials and tokens never travel in clear); a plain-HTTP (insecure)
/// registry may name a plain-HTTP realm.
pub fn check_realm(realm: &Url, registry_https: bool) -> Result<(), AuthError> {
    if registry_https && !realm.https {
        return Err(AuthError::Url {
            url: realm.to_string(),
            why: "the token realm of an HTTPS registry is plain HTTP: no credentials or tokens are sent in clear",
        });
    }
    Ok(())
}

/// Whether a redirect may be followed from a registry reached over
/// `registry_https`: an HTTPS registry's downloads stay on HTTPS.
pub fn check_redirect(to: &Url, registry_https: bool) -> Result<(), AuthError> {
    if registry_https && !to.https {
        return Err(AuthError::Url {
            url: to.to_string(),
            why: "an HTTPS registry redirected to plain HTTP",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scopes: &[&str]) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn challenges() {
        let ok: &[(&str, Challenge)] = &[
            (r#"Basic realm="Registry Realm""#, Challenge::Basic),
            ("basic", Challenge::Basic),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    &["repository:library/busybox:pull"],
                ),
            ),
            (
                r#"Bearer realm="https://ghcr.io/token", service="ghcr.io", scope="repository:a/b:pull repository:c:pull", error="insufficient_scope""#,
                bearer(
                    "https://ghcr.io/token",
                    Some("ghcr.io"),
                    &["repository:a/b:pull", "repository:c:pull"],
                ),
            ),
            (
                r#"bearer realm=https://h/t,service=s"#,
                bearer("https://h/t", Some("s"), &[]),
            ),
            (
                r#"Bearer realm="https://h/t?a=\"b\"""#,
                bearer(r#"https://h/t?a="b""#, None, &[]),
            ),
        ];
        for (h, want) in ok {
            assert_eq!(parse_challenge(h).as_ref(), Ok(want), "{h}");
        }
        for bad in [
            "Digest realm=\"x\"",
            "Negotiate",
            "",
            "Bearer service=\"s\"",
            "Bearer realm=\"",
            "Bearer realm=\"https://h/t\" service=\"s\"",
            "Bearer realm",
        ] {
            assert!(parse_challenge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_answers() {
        let ok: &[(&str, &str, u64)] = &[
            (r#"{"token":"abc","expires_in":300}"#, "abc", 290),
            (r#"{"access_token":"xyz"}"#, "xyz", 50),
            (
                r#"{"token":"","access_token":"xyz","expires_in":5}"#,
                "xyz",
                0,
            ),
            (
                r#"{"token":"t","access_token":"a","issued_at":"2024-01-01T00:00:00Z"}"#,
                "t",
                50,
            ),
        ];
        for (body, token, secs) in ok {
            assert_eq!(
                parse_token(body.as_bytes()),
                Ok(Token {
                    token: (*token).into(),
                    lifetime_secs: *secs
                }),
                "{body}"
            );
        }
        for bad in [
            "",
            "{}",
            r#"{"token":""}"#,
            r#"{"token":"a\r\nX-Evil: 1"}"#,
            r#"{"token":"a b"}"#,
            r#"{"token":1}"#,
        ] {
            assert!(parse_token(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let ok: &[(&str, bool, &str, &str, &str, &str)] = &[
            (
                "https://auth.docker.io/token",
                true,
                "auth.docker.io",
                "/token",
                "auth.docker.io",
                "auth.docker.io:443",
            ),
            (
                "http://127.0.0.1:5001/token?x=1#frag",
                false,
                "127.0.0.1:5001",
                "/token?x=1",
                "127.0.0.1",
                "127.0.0.1:5001",
            ),
            ("HTTPS://Host", true, "host", "/", "host", "host:443"),
            (
                "https://[::1]:8443/t",
                true,
                "[::1]:8443",
                "/t",
                "::1",
                "[::1]:8443",
            ),
            ("http://[::1]?q", false, "[::1]", "/?q", "::1", "[::1]:80"),
        ];
        for (s, https, authority, target, host, addr) in ok {
            let u = Url::parse(s).unwrap();
            assert_eq!(
                (u.https, u.authority.as_str(), u.target.as_str()),
                (*https, *authority, *target),
                "{s}"
            );
            assert_eq!((u.host(), u.socket_addr().as_str()), (*host, *addr), "{s}");
        }
        for bad in [
            "ftp://h/x",
            "/token",
            "https:///token",
            "https://user:pw@h/t",
            "https://h h/t",
            "https://h/t\r\nX: y",
            "file:///etc/passwd",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_against_the_registry() {
        let reg = Url::parse("https://r.example:5000/v2/a/blobs/sha256:x").unwrap();
        let rows: &[(&str, &str, bool)] = &[
            (
                "https://cdn.example/b?sig=1",
                "https://cdn.example/b?sig=1",
                false,
            ),
            ("//cdn.example/b", "https://cdn.example/b", false),
            (
                "/v2/a/blobs/other",
                "https://r.example:5000/v2/a/blobs/other",
                true,
            ),
            ("https://R.example:5000/x", "https://r.example:5000/x", true),
            ("http://r.example:5000/x", "http://r.example:5000/x", false),
        ];
        for (loc, want, same) in rows {
            let u = reg.join(loc).unwrap();
            assert_eq!(u.to_string(), *want, "{loc}");
            assert_eq!(u.same_origin(&reg), *same, "{loc}");
        }
        assert!(reg.join("relative/path").is_err());
        assert!(check_redirect(&reg.join("http://cdn/x").unwrap(), true).is_err());
        assert!(check_redirect(&reg.join("http://cdn/x").unwrap(), false).is_ok());
        assert!(check_redirect(&reg.join("https://cdn/x").unwrap(), true).is_ok());
    }

    #[test]
    fn token_requests_and_realm_rules() {
        let realm = Url::parse("https://auth.example/token?client=x").unwrap();
        let q = realm.with_token_query(
            Some("registry example"),
            &[
                "repository:a/b:pull".into(),
                "repository:c:pull,push".into(),
            ],
        );
        assert_eq!(
            q.target,
            "/token?client=x&service=registry%20example&scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%3Apull%2Cpush"
        );
        let plain = Url::parse("http://auth.example/token").unwrap();
        assert_eq!(
            plain.with_token_query(None, &["s".into()]).target,
            "/token?scope=s"
        );
        for (realm, registry_https, ok) in [
            (&realm, true, true),
            (&realm, false, true),
            (&plain, true, false),
            (&plain, false, true),
        ] {
            assert_eq!(
                check_realm(realm, registry_https).is_ok(),
                ok,
                "{realm} {registry_https}"
            );
        }
    }
}
