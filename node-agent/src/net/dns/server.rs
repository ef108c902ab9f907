//! The sockets: one UDP socket and one TCP listener on the same address, each served by
//! a task that owns the tasks it starts (forwards, TCP connections), so stopping it stops
//! them all and frees the port.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::Query;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

use super::DnsError;
use super::handle::{Handling, Outcome, Transport, handle};
use super::records::DnsRecords;
use super::upstream::{Forwarded, forward, read_frame, write_frame};

/// Limits and timeouts of a [`DnsServer`]; [`Default`] is what the agent uses.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// How long one upstream gets to answer one attempt (UDP, or the TCP retry).
    pub upstream_timeout: Duration,
    /// Most forwards in flight (at least 1); a UDP query over the limit is dropped (the
    /// client asks again), a TCP one waits.
    pub max_forwards: usize,
    /// Most client TCP connections at once (at least 1); more are closed at once.
    pub max_tcp_connections: usize,
    /// How long a client TCP connection may stay silent before it is closed.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(2),
            max_forwards: 256,
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// What the serving tasks share.
#[derive(Debug)]
struct Shared {
    records: DnsRecords,
    upstreams: RwLock<Arc<Vec<SocketAddr>>>,
    local_addr: SocketAddr,
    config: DnsConfig,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
}

impl Shared {
    fn upstreams(&self) -> Arc<Vec<SocketAddr>> {
        self.upstreams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The node's resolver, serving UDP and TCP on one address until it is shut down or
/// dropped.
#[derive(Debug)]
pub struct DnsServer {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds `listen` (UDP and TCP; port 0 picks one port free for both) and serves with
    /// the default [`DnsConfig`]. Must be called inside a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        records: DnsRecords,
        upstreams: Vec<SocketAddr>,
    ) -> Result<DnsServer, DnsError> {
        Self::start_with(listen, records, upstreams, DnsConfig::default()).await
    }

    /// [`DnsServer::start`] with explicit limits and timeouts.
    pub async fn start_with(
        listen: SocketAddr,
        records: DnsRecords,
        upstreams: Vec<SocketAddr>,
        config: DnsConfig,
    ) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind(listen).await?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            proto: "udp",
            addr: listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            records,
            upstreams: RwLock::new(Arc::new(Vec::new())),
            local_addr,
            forwards: Arc::new(Semaphore::new(permits(config.max_forwards))),
            connections: Arc::new(Semaphore::new(permits(config.max_tcp_connections))),
            config,
        });
        let (stop, _) = watch::channel(false);
        let server = DnsServer {
            tasks: vec![
                tokio::spawn(serve_udp(shared.clone(), udp, stop.subscribe())),
                tokio::spawn(serve_tcp(shared.clone(), tcp, stop.subscribe())),
            ],
            shared,
            stop,
        };
        server.set_upstreams(upstreams);
        debug!(addr = %local_addr, "DNS server listening");
        Ok(server)
    }

    /// The address served (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The records answered locally (a clone shares the table).
    pub fn records(&self) -> &DnsRecords {
        &self.shared.records
    }

    /// Replaces the upstream resolvers (for queries that start from now on). Repeats are
    /// kept once; the server's own address is left out, as a loop guard (as is a loopback
    /// address on its port when it listens on an unspecified address).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        let local = self.shared.local_addr;
        let mut kept: Vec<SocketAddr> = Vec::with_capacity(upstreams.len());
        for upstream in upstreams {
            let is_self = upstream == local
                || (local.ip().is_unspecified()
                    && upstream.ip().is_loopback()
                    && upstream.port() == local.port());
            if is_self {
                debug!(%upstream, "not forwarding to the DNS server itself");
            } else if !kept.contains(&upstream) {
                kept.push(upstream);
            }
        }
        *self
            .shared
            .upstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(kept);
    }

    /// The upstream resolvers in use.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.shared.upstreams().to_vec()
    }

    /// Stops serving: pending forwards and TCP connections are abandoned, and the sockets
    /// are closed (the port free) when this returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            // A serving task ends on the signal; one that panicked has nothing left open.
            let _ = task.await;
        }
        debug!(addr = %self.shared.local_addr, "DNS server stopped");
    }
}

impl Drop for DnsServer {
    /// Stops serving without waiting: the sockets close as the tasks wind down.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A limit as a semaphore can hold it: at least 1, at most tokio's maximum.
fn permits(limit: usize) -> usize {
    limit.clamp(1, Semaphore::MAX_PERMITS)
}

/// Binds UDP then TCP on the same port; with port 0, the port the UDP socket got (tried
/// again a few times when TCP finds it taken).
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| DnsError::Bind {
                proto: "udp",
                addr: listen,
                source,
            })?;
        let udp_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            proto: "udp",
            addr: listen,
            source,
        })?;
        match TcpListener::bind(udp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source)
                if listen.port() == 0
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < ATTEMPTS =>
            {
                continue;
            }
            Err(source) => {
                return Err(DnsError::Bind {
                    proto: "tcp",
                    addr: udp_addr,
                    source,
                });
            }
        }
    }
}

async fn serve_udp(shared: Arc<Shared>, socket: UdpSocket, mut stop: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let mut forwards = JoinSet::new();
    // Room for any datagram: a longer query than the buffer would be cut and misread.
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, client)) => udp_query(&shared, &socket, &buf[..n], client, &mut forwards).await,
                // e.g. an ICMP error for an earlier answer; the socket is still usable.
                Err(error) => debug!(%error, "DNS UDP receive failed"),
            },
        }
    }
    forwards.shutdown().await;
}

async fn udp_query(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    packet: &[u8],
    client: SocketAddr,
    forwards: &mut JoinSet<()>,
) {
    match handle(packet, &shared.records, Transport::Udp) {
        Handling::Reply { bytes, outcome } => {
            log_reply(client, Transport::Udp, outcome);
            if let Err(error) = socket.send_to(&bytes, client).await {
                debug!(%client, %error, "DNS answer not sent");
            }
        }
        Handling::Drop(why) => debug!(%client, proto = "udp", why, "DNS packet dropped"),
        Handling::Forward(query) => {
            let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                debug!(%client, name = %query.query.name(), "DNS query dropped: too many forwards in flight");
                return;
            };
            let (shared, socket) = (shared.clone(), socket.clone());
            forwards.spawn(async move {
                let upstreams = shared.upstreams();
                let answer = forward(
                    &query,
                    &upstreams,
                    Transport::Udp,
                    shared.config.upstream_timeout,
                )
                .await;
                drop(permit);
                log_forwarded(client, Transport::Udp, &query.query, &answer);
                if let Err(error) = socket.send_to(&answer.bytes, client).await {
                    debug!(%client, %error, "DNS answer not sent");
                }
            });
        }
    }
}

async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                        debug!(%client, "DNS TCP connection closed: too many open");
                        continue;
                    };
                    let shared = shared.clone();
                    connections.spawn(async move {
                        serve_connection(&shared, stream, client).await;
                        drop(permit);
                    });
                }
                // e.g. out of file descriptors: wait a little rather than spin.
                Err(error) => {
                    debug!(%error, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Answers the queries of one TCP connection in order, until it closes, stays idle too
/// long or sends something that is not a query.
async fn serve_connection(shared: &Shared, mut stream: TcpStream, client: SocketAddr) {
    let idle = shared.config.tcp_idle_timeout;
    loop {
        let packet = match tokio::time::timeout(idle, read_frame(&mut stream)).await {
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) => break,
            Ok(Err(error)) => {
                debug!(%client, %error, "DNS TCP read failed");
                break;
            }
            Err(_) => {
                debug!(%client, "DNS TCP connection idle, closed");
                break;
            }
        };
        let bytes = match handle(&packet, &shared.records, Transport::Tcp) {
            Handling::Reply { bytes, outcome } => {
                log_reply(client, Transport::Tcp, outcome);
                bytes
            }
            Handling::Drop(why) => {
                debug!(%client, proto = "tcp", why, "DNS packet dropped, connection closed");
                break;
            }
            Handling::Forward(query) => {
                // Waits for room: a TCP client is slowed down rather than dropped.
                let Ok(_permit) = shared.forwards.acquire().await else {
                    break;
                };
                let upstreams = shared.upstreams();
                let answer = forward(
                    &query,
                    &upstreams,
                    Transport::Tcp,
                    shared.config.upstream_timeout,
                )
                .await;
                log_forwarded(client, Transport::Tcp, &query.query, &answer);
                answer.bytes
            }
        };
        match tokio::time::timeout(idle, write_frame(&mut stream, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(%client, %error, "DNS TCP write failed");
                break;
            }
            Err(_) => {
                debug!(%client, "DNS TCP write timed out");
                break;
            }
        }
    }
}

fn log_reply(client: SocketAddr, transport: Transport, outcome: Outcome) {
    let proto = transport.as_str();
    match outcome {
        Outcome::Local(q, answers) => {
            debug!(%client, proto, name = %q.name(), qtype = %q.query_type(), answers, "DNS query answered locally");
        }
        Outcome::FormErr => debug!(%client, proto, "DNS query malformed: FORMERR"),
        Outcome::NotImp => debug!(%client, proto, "DNS opcode not implemented: NOTIMP"),
    }
}

fn log_forwarded(client: SocketAddr, transport: Transport, query: &Query, answer: &Forwarded) {
    let proto = transport.as_str();
    match answer.upstream {
        Some(upstream) => debug!(%client, proto, name = %query.name(), qtype = %query.query_type(),
            %upstream, rcode = %answer.rcode, "DNS query forwarded"),
        None => debug!(%client, proto, name = %query.name(), qtype = %query.query_type(),
            "DNS query forwarded, no upstream answered: SERVFAIL"),
    }
}
