//! A plain HTTP/1.0 GET for tests, over a fresh connection each time (as a client that does
//! not keep connections alive sees a service).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` from `addr`: the body, trimmed, of a 200 answer; anything else is an error
/// saying what happened.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    // busybox httpd ends its own headers with CRLF and a CGI's with LF: the body starts
    // after the first empty line of either kind.
    let end = [
        out.find("\r\n\r\n").map(|i| i + 4),
        out.find("\n\n").map(|i| i + 2),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(out.len());
    let (head, body) = out.split_at(end);
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!(
            "GET {addr}{path}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.trim().to_owned())
}
