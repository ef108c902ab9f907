//! Forwarding to the host's resolvers, and reading them from a resolv.conf.
//!
//! A query goes to each upstream in order until one answers: over UDP from a fresh socket
//! (a random source port) under a random id of the server's own, the client's id put back
//! into the answer, which is otherwise relayed byte for byte. A truncated UDP answer is
//! asked again over TCP and relayed if it fits the client's UDP size (else the truncated
//! one is, so the client asks us over TCP). A client that came over TCP is forwarded over
//! TCP, and over UDP when the upstream refuses TCP connections. SERVFAIL, REFUSED and
//! NOTIMP answers, timeouts and errors move on to the next upstream; when none is left the
//! client gets SERVFAIL.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Header, MessageType, Metadata, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::DnsError;
use super::handle::{ForwardQuery, Transport};

/// The DNS port.
const DNS_PORT: u16 = 53;

/// The nameservers of a resolv.conf, in order and without repeats, on port 53: IPv4 and
/// IPv6 addresses, and IPv6 ones with a numeric zone (`fe80::1%2`). A zone given as an
/// interface name is skipped (turning it into an index needs the host), as are unparsable
/// addresses.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = fields.next().and_then(parse_nameserver) else {
            continue;
        };
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    let (addr, zone) = s.split_once('%')?;
    let ip: Ipv6Addr = addr.parse().ok()?;
    let scope_id: u32 = zone.parse().ok()?;
    Some(SocketAddrV6::new(ip, DNS_PORT, 0, scope_id).into())
}

/// What forwarding a query came to.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// The answer for the client (its id).
    pub(crate) bytes: Vec<u8>,
    /// The upstream that gave it; `None`: the server's own SERVFAIL.
    pub(crate) upstream: Option<SocketAddr>,
    /// The answer's response code (its header's four bits).
    pub(crate) rcode: ResponseCode,
}

/// Forwards a query to the upstreams in order, each attempt (UDP, the TCP retry) bounded by
/// `timeout`.
pub(crate) async fn forward(
    query: &ForwardQuery,
    upstreams: &[SocketAddr],
    transport: Transport,
    timeout: Duration,
) -> Forwarded {
    let mut packet = query.packet.clone();
    for &upstream in upstreams {
        let id = random_id();
        packet[..2].copy_from_slice(&id.to_be_bytes());
        let exchange = Exchange {
            upstream,
            packet: &packet,
            id,
            query: &query.query,
            timeout,
        };
        let result = match transport {
            Transport::Udp => exchange.udp_then_tcp(query.udp_limit).await,
            Transport::Tcp => exchange.tcp_then_udp().await,
        };
        match result {
            Ok((mut bytes, answer)) if !moves_on(answer.response_code) => {
                bytes[..2].copy_from_slice(&query.metadata.id.to_be_bytes());
                return Forwarded {
                    bytes,
                    upstream: Some(upstream),
                    rcode: answer.response_code,
                };
            }
            Ok((_, answer)) => {
                debug!(%upstream, rcode = %answer.response_code, "upstream failed the query, trying the next");
            }
            Err(error) => debug!(%error, "trying the next upstream"),
        }
    }
    Forwarded {
        bytes: query.servfail(),
        upstream: None,
        rcode: ResponseCode::ServFail,
    }
}

/// Answers that say this upstream cannot help, as stub resolvers treat them.
fn moves_on(rcode: ResponseCode) -> bool {
    matches!(
        rcode,
        ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
    )
}

/// A random 16-bit id (std's per-process random hash keys, fresh for each `RandomState`).
fn random_id() -> u16 {
    let hash = RandomState::new().hash_one(SystemTime::now());
    (hash & u64::from(u16::MAX)) as u16
}

/// One query to one upstream.
struct Exchange<'a> {
    upstream: SocketAddr,
    /// The query under the server's id.
    packet: &'a [u8],
    id: u16,
    query: &'a Query,
    timeout: Duration,
}

type Answer = (Vec<u8>, Metadata);

impl Exchange<'_> {
    async fn udp_then_tcp(&self, udp_limit: usize) -> Result<Answer, DnsError> {
        let (bytes, header) = self.udp().await?;
        if !header.truncation {
            return Ok((bytes, header));
        }
        match self.tcp().await {
            Ok(full) if full.0.len() <= udp_limit => Ok(full),
            Ok(full) => {
                debug!(upstream = %self.upstream, size = full.0.len(), udp_limit,
                    "the full answer is larger than the client takes over UDP, relaying the truncated one");
                Ok((bytes, header))
            }
            Err(error) => {
                debug!(%error, "relaying the truncated answer");
                Ok((bytes, header))
            }
        }
    }

    async fn tcp_then_udp(&self) -> Result<Answer, DnsError> {
        match self.tcp().await {
            Err(DnsError::Upstream { source, .. })
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                debug!(upstream = %self.upstream, "TCP refused, asking over UDP");
                self.udp().await
            }
            other => other,
        }
    }

    async fn udp(&self) -> Result<Answer, DnsError> {
        let attempt = async {
            let local: SocketAddr = match self.upstream {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(self.upstream).await?;
            socket.send(self.packet).await?;
            let mut buf = vec![0; usize::from(u16::MAX)];
            loop {
                // A connected socket only hears from the upstream; anything that is not
                // the answer (a late one to an earlier query, a spoof) is skipped.
                let n = socket.recv(&mut buf).await?;
                match check_answer(&buf[..n], self.id, self.query) {
                    Ok(header) => return Ok((buf[..n].to_vec(), header)),
                    Err(why) => debug!(upstream = %self.upstream, why, "skipped a datagram"),
                }
            }
        };
        self.bounded("udp", attempt).await
    }

    async fn tcp(&self) -> Result<Answer, DnsError> {
        let attempt = async {
            let mut stream = TcpStream::connect(self.upstream).await?;
            write_frame(&mut stream, self.packet).await?;
            let bytes = read_frame(&mut stream).await?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "closed without an answer")
            })?;
            let header = check_answer(&bytes, self.id, self.query)
                .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
            Ok((bytes, header))
        };
        self.bounded("tcp", attempt).await
    }

    async fn bounded(
        &self,
        proto: &'static str,
        attempt: impl Future<Output = io::Result<Answer>>,
    ) -> Result<Answer, DnsError> {
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.timeout),
            )),
        };
        result.map_err(|source| DnsError::Upstream {
            upstream: self.upstream,
            proto,
            source,
        })
    }
}

/// Checks that `bytes` answer the query sent under `id`: a response, that id, and the same
/// question (or none, on an error answer). Returns its header.
fn check_answer(bytes: &[u8], id: u16, query: &Query) -> Result<Metadata, &'static str> {
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).map_err(|_| "shorter than a DNS header")?;
    let meta = header.metadata;
    if meta.message_type != MessageType::Response {
        return Err("not a response");
    }
    if meta.id != id {
        return Err("the id of another query");
    }
    match header.counts.queries {
        0 if meta.response_code != ResponseCode::NoError => Ok(meta),
        1 => {
            let asked = Query::read(&mut decoder).map_err(|_| "an unreadable question")?;
            // Names compare ignoring case (upstreams may randomize it, draft 0x20).
            if asked.name() == query.name()
                && asked.query_type() == query.query_type()
                && asked.query_class() == query.query_class()
            {
                Ok(meta)
            } else {
                Err("another question")
            }
        }
        _ => Err("not one question"),
    }
}

/// Reads one length-prefixed DNS message from a TCP stream; `None` at a clean end of
/// stream before a message.
pub(crate) async fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Writes one DNS message with its length prefix.
pub(crate) async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65,535 bytes"))?;
    let mut frame = Vec::with_capacity(2 + bytes.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await
}
