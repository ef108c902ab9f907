//! HTTP to one repository of one registry: HTTPS (or plain HTTP when the registry is marked
//! insecure) over hyper's HTTP/1 client connection, authentication (Basic, or Bearer tokens
//! from the registry's token service, cached per scope), redirects for GET and HEAD, and
//! errors that carry the registry's own error codes.
//!
//! Each request opens its own connection: a pull or push makes a few dozen requests at most
//! and the time goes into the blobs, not the handshakes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::RegistryConfig;
use super::auth::{Challenge, TokenAnswer, basic_header, parse_challenge, query_escape};
use super::body::{Body, ReadError, ReqBody, read_capped};
use super::error::{ApiErrors, RegistryError};
use super::tls::client_config;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// How long a TCP connect (and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest error body or token answer read.
const SMALL_BODY_CAP: u64 = 1024 * 1024;
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// One request; sent again (with credentials) after a challenge.
pub(crate) struct Request {
    pub method: Method,
    /// A path on the registry (`/v2/...`) or an absolute URL (an upload's `Location`).
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body,
    /// What is asked, for errors: `manifest v1`, `blob sha256:...`.
    pub what: String,
}

impl Request {
    pub(crate) fn new(method: Method, target: impl Into<String>, what: impl Into<String>) -> Self {
        Request {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Body::Empty,
            what: what.into(),
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// A client for one repository.
pub(crate) struct Client {
    registry: String,
    repository: String,
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    insecure: bool,
    tls: TlsConnector,
    credentials: Option<(String, String)>,
    /// The scope every request of this client needs.
    scope: String,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
    /// The registry asked for Basic credentials: send them with every request.
    basic: AtomicBool,
}

impl Client {
    /// A client for `repository` on `registry` (`host[:port]`), reached at `endpoint` (the
    /// same, except Docker Hub's API host for `docker.io`), for requests needing `scope`.
    pub(crate) fn new(
        registry: &str,
        endpoint: &str,
        repository: &str,
        scope: String,
        config: &RegistryConfig,
    ) -> Result<Self, RegistryError> {
        let tls = client_config(registry, config.ca_pem.as_deref())?;
        Ok(Client {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            base: format!(
                "{}://{endpoint}",
                if config.insecure { "http" } else { "https" }
            ),
            insecure: config.insecure,
            tls: TlsConnector::from(tls),
            credentials: config
                .credentials()
                .map(|(u, p)| (u.to_owned(), p.to_owned())),
            scope,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
        })
    }

    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    /// `https://host[:port]` (or `http://` for an insecure registry).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends `req`, answering one authentication challenge, following redirects of GET and
    /// HEAD. Any status comes back; see [`Client::check`].
    pub(crate) async fn send(&self, req: &Request) -> Result<Response<Incoming>, RegistryError> {
        let mut answered = false;
        loop {
            let auth = self.authorization();
            let resp = self.follow(req, auth.as_deref(), &self.base).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            let challenge = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            match challenge {
                Some(Challenge::Basic) if self.credentials.is_some() => {
                    self.basic.store(true, Ordering::Relaxed);
                }
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let token = self
                        .fetch_token(&realm, service.as_deref(), scope.as_deref())
                        .await?;
                    self.lock_tokens().insert(self.scope.clone(), token);
                }
                _ => return Ok(resp),
            }
        }
    }

    /// Returns `resp` if `ok` accepts its status; otherwise the error it stands for, with the
    /// registry's error body.
    pub(crate) async fn check(
        &self,
        resp: Response<Incoming>,
        what: &str,
        ok: impl Fn(StatusCode) -> bool,
    ) -> Result<Response<Incoming>, RegistryError> {
        let status = resp.status();
        if ok(status) {
            return Ok(resp);
        }
        let errors = match read_capped(resp.into_body(), SMALL_BODY_CAP).await {
            Ok(body) => ApiErrors::parse(&body),
            Err(_) => ApiErrors::default(),
        };
        let what = what.to_owned();
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                registry,
                repository,
                what,
                reason: self.refusal(status, None),
                status: status.as_u16(),
                errors,
            },
            _ => RegistryError::Status {
                registry,
                repository,
                what,
                status: status.as_u16(),
                errors,
            },
        })
    }

    /// Sends `req` and checks its status with `ok`.
    pub(crate) async fn send_ok(
        &self,
        req: &Request,
        ok: impl Fn(StatusCode) -> bool,
    ) -> Result<Response<Incoming>, RegistryError> {
        let resp = self.send(req).await?;
        self.check(resp, &req.what, ok).await
    }

    /// Reads a whole small body (a manifest, a config), refusing more than `cap` bytes.
    pub(crate) async fn read_body(
        &self,
        resp: Response<Incoming>,
        what: &str,
        cap: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        read_capped(resp.into_body(), cap)
            .await
            .map_err(|e| match e {
                ReadError::TooLong => RegistryError::Status {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    what: format!("{what} (larger than the {cap}-byte limit)"),
                    status: 200,
                    errors: ApiErrors::default(),
                },
                ReadError::Http(e) => self.http_error(&Method::GET, what, e),
            })
    }

    /// An exchange that broke off.
    pub(crate) fn http_error(
        &self,
        method: &Method,
        url: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> RegistryError {
        RegistryError::Http {
            registry: self.registry.clone(),
            method: method.to_string(),
            url: url.to_owned(),
            source: Box::new(e),
        }
    }

    /// Why a 401 or 403 happened, in words.
    fn refusal(&self, status: StatusCode, service: Option<&str>) -> String {
        let by = service.map_or_else(String::new, |s| format!(" by the token service {s}"));
        match (&self.credentials, status) {
            (None, _) => format!(
                "refused{by}: no credentials were given (the registry may need a user name and password)"
            ),
            (Some((user, _)), StatusCode::FORBIDDEN) => {
                format!("refused{by}: user {user:?} is not allowed this")
            }
            (Some((user, _)), _) => {
                format!("refused{by}: the credentials of user {user:?} were not accepted")
            }
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorization(&self) -> Option<String> {
        if let Some(token) = self.lock_tokens().get(&self.scope) {
            return Some(format!("Bearer {token}"));
        }
        if self.basic.load(Ordering::Relaxed) {
            return self.credentials.as_ref().map(|(u, p)| basic_header(u, p));
        }
        None
    }

    /// Asks the token service `realm` for a token for this client's scope (and the one the
    /// challenge named), with Basic credentials when configured.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let auth_err = |reason: String| RegistryError::Auth {
            registry: self.registry.clone(),
            reason,
        };
        let uri: Uri = realm.parse().map_err(|e| {
            auth_err(format!(
                "the token service realm {realm:?} is not a URL: {e}"
            ))
        })?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if self.insecure => {}
            _ => {
                return Err(auth_err(format!(
                    "the token service realm {realm:?} is not an https URL (plain HTTP only for a registry marked insecure)"
                )));
            }
        }
        let mut query = Vec::new();
        if let Some(service) = service {
            query.push(format!("service={}", query_escape(service)));
        }
        query.push(format!("scope={}", query_escape(&self.scope)));
        if let Some(scope) = challenge_scope.filter(|s| *s != self.scope) {
            query.push(format!("scope={}", query_escape(scope)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let req = Request::new(Method::GET, url.clone(), format!("token from {realm}"));
        let basic = self.credentials.as_ref().map(|(u, p)| basic_header(u, p));
        let resp = self.follow(&req, basic.as_deref(), realm).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let errors = read_capped(resp.into_body(), SMALL_BODY_CAP)
                .await
                .map(|b| ApiErrors::parse(&b))
                .unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: format!("token for {}", self.scope),
                reason: self.refusal(status, Some(realm)),
                status: status.as_u16(),
                errors,
            });
        }
        if !status.is_success() {
            return Err(auth_err(format!(
                "the token service {realm} answered HTTP {status}"
            )));
        }
        let body = read_capped(resp.into_body(), SMALL_BODY_CAP)
            .await
            .map_err(|e| auth_err(format!("reading the token service's answer: {e:?}")))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            auth_err(format!(
                "the token service {realm} answered something that is not a token: {e}"
            ))
        })?;
        debug!(registry = %self.registry, scope = %self.scope, "got a registry token");
        answer.into_token().ok_or_else(|| {
            auth_err(format!(
                "the token service {realm} answered without a token"
            ))
        })
    }

    /// Sends `req`, following redirects of GET and HEAD. `auth` goes only to the origin of
    /// `auth_url` (a blob's storage gets its own credentials in the redirect URL, and an
    /// upload URL elsewhere gets none).
    async fn follow(
        &self,
        req: &Request,
        auth: Option<&str>,
        auth_url: &str,
    ) -> Result<Response<Incoming>, RegistryError> {
        let mut url = if req.target.starts_with('/') {
            format!("{}{}", self.base, req.target)
        } else {
            req.target.clone()
        };
        let redirect_err = |reason: String| RegistryError::Redirect {
            registry: self.registry.clone(),
            what: req.what.clone(),
            reason,
        };
        let origin = Origin::of(&self.parse_url(auth_url, &req.what)?);
        for _ in 0..=MAX_REDIRECTS {
            let uri = self.parse_url(&url, &req.what)?;
            let same_origin = Origin::of(&uri) == origin;
            let resp = self.once(req, &uri, auth.filter(|_| same_origin)).await?;
            let follows = matches!(req.method, Method::GET | Method::HEAD)
                && resp.status().is_redirection()
                && resp.status() != StatusCode::NOT_MODIFIED;
            if !follows {
                return Ok(resp);
            }
            let Some(location) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Err(redirect_err(format!(
                    "HTTP {} without a Location",
                    resp.status()
                )));
            };
            let next = resolve(&uri, location);
            if next.starts_with("http://") && !self.insecure {
                return Err(redirect_err(format!(
                    "redirected to plain HTTP ({next}); allowed only for a registry marked insecure"
                )));
            }
            debug!(registry = %self.registry, from = %uri, to = %next, "following a redirect");
            url = next;
        }
        Err(redirect_err(format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn parse_url(&self, url: &str, what: &str) -> Result<Uri, RegistryError> {
        let uri: Uri = url.parse().map_err(|e| RegistryError::Redirect {
            registry: self.registry.clone(),
            what: what.to_owned(),
            reason: format!("{url:?} is not a URL: {e}"),
        })?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(uri),
            _ => Err(RegistryError::Redirect {
                registry: self.registry.clone(),
                what: what.to_owned(),
                reason: format!("{url:?} is not an http or https URL"),
            }),
        }
    }

    /// One exchange on a new connection.
    async fn once(
        &self,
        req: &Request,
        uri: &Uri,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, RegistryError> {
        let url = uri.to_string();
        let mut sender = self.connect(uri, &url).await?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut builder = hyper::Request::builder()
            .method(req.method.clone())
            .uri(path)
            .header(header::HOST, uri.authority().map_or("", |a| a.as_str()))
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(auth) = auth {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if !matches!(req.method, Method::GET | Method::HEAD) || req.body.len() > 0 {
            builder = builder.header(header::CONTENT_LENGTH, req.body.len());
        }
        let request = builder
            .body(req.body.build())
            .map_err(|e| self.http_error(&req.method, &url, e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.http_error(&req.method, &url, e))
    }

    async fn connect(
        &self,
        uri: &Uri,
        url: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>, RegistryError> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect_err = |source: std::io::Error| RegistryError::Connect {
            registry: self.registry.clone(),
            url: url.to_owned(),
            source,
        };
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| connect_err(timed_out()))?
            .map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let handshake_err = |e: hyper::Error| self.http_error(&Method::GET, url, e);
        if https {
            let tls_err = |source: std::io::Error| RegistryError::Tls {
                registry: self.registry.clone(),
                host: format!("{host}:{port}"),
                source,
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| tls_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
                .await
                .map_err(|_| tls_err(timed_out()))?
                .map_err(tls_err)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(handshake_err)?;
            tokio::spawn(conn);
            Ok(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(handshake_err)?;
            tokio::spawn(conn);
            Ok(sender)
        }
    }
}

/// Scheme, host and port of a URL.
#[derive(PartialEq, Eq)]
struct Origin(String, String, u16);

impl Origin {
    fn of(uri: &Uri) -> Self {
        let scheme = uri.scheme_str().unwrap_or_default().to_owned();
        let default = if scheme == "https" { 443 } else { 80 };
        Origin(
            scheme,
            uri.host().unwrap_or_default().to_ascii_lowercase(),
            uri.port_u16().unwrap_or(default),
        )
    }
}

/// Resolves a `Location` against the URL it came from: absolute, `//host/...`, `/path`, or
/// relative to the current path.
pub(crate) fn resolve(base: &Uri, location: &str) -> String {
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base: Uri = "https://reg:5000/v2/app/blobs/uploads/?x=1"
            .parse()
            .unwrap();
        assert_eq!(resolve(&base, "https://s3/x"), "https://s3/x");
        assert_eq!(resolve(&base, "//cdn/x"), "https://cdn/x");
        assert_eq!(
            resolve(&base, "/v2/app/blobs/uploads/u1?_state=s"),
            "https://reg:5000/v2/app/blobs/uploads/u1?_state=s"
        );
        assert_eq!(
            resolve(&base, "u2"),
            "https://reg:5000/v2/app/blobs/uploads/u2"
        );
    }
}
