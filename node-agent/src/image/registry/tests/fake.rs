//! A small fake registry for what docker-registry cannot show without a signing token
//! server: the Bearer token flow (a token service asking for Basic credentials), redirects of
//! blobs to "storage", an index with several platforms, and a slow blob (to make two pulls
//! overlap). Plain HTTP on 127.0.0.1, a thread per connection, one request per connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::super::auth::basic_header;

/// What the fake serves.
#[derive(Default)]
pub(crate) struct Content {
    /// Manifests by tag or digest: (media type, bytes).
    pub manifests: HashMap<String, (String, Vec<u8>)>,
    /// Blobs by digest.
    pub blobs: HashMap<String, Vec<u8>>,
    /// Require a Bearer token from `/token`, which wants these Basic credentials.
    pub token_credentials: Option<(String, String)>,
    /// Answer blob GETs with a redirect to `/storage/<digest>`.
    pub redirect_blobs: bool,
    /// Wait this long before serving a blob.
    pub blob_delay: Duration,
}

pub(crate) struct Fake {
    pub host: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    content: Content,
    /// Request lines seen (`GET /v2/... `), with the Authorization scheme they carried.
    requests: Mutex<Vec<String>>,
    tokens_issued: AtomicUsize,
}

impl Fake {
    pub(crate) fn start(content: Content) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("address").to_string();
        let state = Arc::new(State {
            content,
            requests: Mutex::new(Vec::new()),
            tokens_issued: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, host) = (state.clone(), stop.clone(), host.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, host) = (state.clone(), host.clone());
                    std::thread::spawn(move || {
                        let _ = serve(&state, &host, conn);
                    });
                }
            })
        };
        Fake {
            host,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Request lines seen so far.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests asked for `path` exactly.
    pub(crate) fn count(&self, method: &str, path: &str) -> usize {
        let prefix = format!("{method} {path} ");
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&prefix))
            .count()
    }

    pub(crate) fn tokens_issued(&self) -> usize {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(state: &State, host: &str, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = v.trim().to_owned();
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let scheme = match auth.split(' ').next() {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "none".to_owned(),
    };
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {target} auth={scheme}"));
    let (status, headers, body) = route(state, host, method, target, &auth);
    let mut out = conn;
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&body)?;
    }
    out.flush()
}

type Answer = (&'static str, Vec<(String, String)>, Vec<u8>);

fn route(state: &State, host: &str, method: &str, target: &str, auth: &str) -> Answer {
    let c = &state.content;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/token" {
        let Some((user, pass)) = &c.token_credentials else {
            return ("404 Not Found", vec![], vec![]);
        };
        if auth != basic_header(user, pass) {
            return (
                "401 Unauthorized",
                vec![],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_vec(),
            );
        }
        assert!(
            query.contains("service=fake"),
            "the service is passed on: {query}"
        );
        let n = state.tokens_issued.fetch_add(1, Ordering::SeqCst);
        return (
            "200 OK",
            vec![],
            format!(r#"{{"access_token":"tok-{n}","expires_in":300}}"#).into_bytes(),
        );
    }
    if let Some(digest) = path.strip_prefix("/storage/") {
        return blob(c, digest);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return ("404 Not Found", vec![], vec![]);
    };
    if c.token_credentials.is_some() && !auth.starts_with("Bearer tok-") {
        let repo = rest.split("/manifests/").next().unwrap_or("");
        let repo = repo.split("/blobs/").next().unwrap_or("");
        return (
            "401 Unauthorized",
            vec![(
                "WWW-Authenticate".to_owned(),
                format!(
                    r#"Bearer realm="http://{host}/token",service="fake",scope="repository:{repo}:pull""#
                ),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        );
    }
    if let Some((_, reference)) = rest.split_once("/manifests/") {
        return match c.manifests.get(reference) {
            Some((mt, bytes)) if method == "GET" || method == "HEAD" => (
                "200 OK",
                vec![("Content-Type".to_owned(), mt.clone())],
                bytes.clone(),
            ),
            _ => (
                "404 Not Found",
                vec![],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            ),
        };
    }
    if let Some((_, digest)) = rest.split_once("/blobs/") {
        if c.redirect_blobs {
            return (
                "307 Temporary Redirect",
                vec![("Location".to_owned(), format!("/storage/{digest}"))],
                vec![],
            );
        }
        return blob(c, digest);
    }
    ("404 Not Found", vec![], vec![])
}

fn blob(c: &Content, digest: &str) -> Answer {
    std::thread::sleep(c.blob_delay);
    match c.blobs.get(digest) {
        Some(b) => ("200 OK", vec![], b.clone()),
        None => (
            "404 Not Found",
            vec![],
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#.to_vec(),
        ),
    }
}
