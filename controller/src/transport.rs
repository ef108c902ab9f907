//! gRPC over TCP with mutual TLS: the only way berth serves on the network.
//!
//! Server side, [`MtlsListener`] accepts TCP connections, runs the TLS handshake with a rustls
//! [`ServerConfig`] (from [`crate::pki::server_config`], which requires a client certificate
//! from the cluster CA), reads the client's [`Identity`] from its certificate and only then
//! hands the stream to tonic. A connection whose handshake fails, times out or whose
//! certificate names no identity is logged and dropped; it never reaches a handler. Each
//! handshake runs in its own task, so a slow client cannot hold up the others. Handlers find
//! the caller in the request's extensions as a [`PeerInfo`] ([`peer_info`],
//! [`authorize_peer`]).
//!
//! The one exception is a controller's join listener ([`MtlsListener::serve_join`], with
//! [`crate::pki::join_server_config`]): it lets a client without a certificate through, to
//! call nothing but `Join`; its requests carry a [`JoinPeer`] (an address), never a
//! [`PeerInfo`], so [`authorize_peer`] refuses them everywhere else.
//!
//! Client side, [`MtlsConnector`] builds tonic [`Channel`]s whose connector dials TCP and runs
//! the TLS handshake with a rustls [`ClientConfig`] (from [`crate::pki::client_config`]),
//! checking the server's certificate against the host of the address dialled.
//!
//! The channel's URI uses the `http` scheme on purpose: tonic refuses `https` unless its own
//! TLS feature is built in, and here TLS is done by the connector, below tonic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, Router};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};
use tracing::{debug, info, warn};

use crate::pki::{Identity, Role, authorize, peer_identity_from_certs};

/// How long a client may take to finish the TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the TCP connection and the TLS handshake together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How many handshaken connections may wait for tonic to pick them up.
const ACCEPT_QUEUE: usize = 64;
/// How long the accept loop pauses after `accept` fails (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why a mutual-TLS listener or channel could not be set up, or a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The listener's local address could not be read.
    #[error("cannot read the listener's local address")]
    LocalAddr(#[source] io::Error),
    /// An address to dial is not `host:port`.
    #[error("invalid peer address `{addr}`: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The gRPC server failed while serving.
    #[error("the gRPC server on {addr} failed")]
    Serve {
        /// The listener's address.
        addr: SocketAddr,
        /// What tonic said.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Who is on the other end of a mutual-TLS connection: put into every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's TCP address.
    pub addr: SocketAddr,
    /// The identity its certificate names (verified against the cluster CA).
    pub identity: Identity,
}

/// The caller of `request`, if it came through an [`MtlsListener`].
pub fn peer_info<T>(request: &Request<T>) -> Option<&PeerInfo> {
    request.extensions().get::<PeerInfo>()
}

/// Allows `request` if its caller's certificate has one of the roles in `allowed`; returns
/// the caller's identity. A request that did not come through mutual TLS is
/// `unauthenticated`, a caller of another role `permission_denied`.
pub fn authorize_peer<T>(request: &Request<T>, allowed: &[Role]) -> Result<Identity, Status> {
    let peer = peer_info(request).ok_or_else(|| {
        Status::unauthenticated("no verified client certificate on this connection")
    })?;
    authorize(&peer.identity, allowed)
        .map_err(|e| Status::permission_denied(format!("{e} (peer {})", peer.addr)))?;
    Ok(peer.identity.clone())
}

/// Who is on the other end of a connection to a join listener: maybe a client without a
/// certificate. Put into every request's extensions instead of a [`PeerInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinPeer {
    /// The peer's TCP address.
    pub addr: SocketAddr,
}

/// A server-side TLS stream after the handshake, with what is known of the peer (`P`):
/// tonic reads it through [`Connected`].
#[derive(Debug)]
pub struct TlsServerStream<P> {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: P,
}

/// A stream whose client presented a valid certificate.
pub type MtlsStream = TlsServerStream<PeerInfo>;

impl<P> TlsServerStream<P> {
    /// The peer on the other end.
    pub fn peer(&self) -> &P {
        &self.peer
    }
}

impl<P: Clone + Send + Sync + 'static> Connected for TlsServerStream<P> {
    type ConnectInfo = P;

    fn connect_info(&self) -> P {
        self.peer.clone()
    }
}

impl<P: Unpin> AsyncRead for TlsServerStream<P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<P: Unpin> AsyncWrite for TlsServerStream<P> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TCP listener that serves gRPC only over mutual TLS.
#[derive(Debug)]
pub struct MtlsListener {
    listener: TcpListener,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
}

impl MtlsListener {
    /// Binds `addr` (port 0 picks a free port; see [`MtlsListener::local_addr`]).
    pub async fn bind(addr: SocketAddr, config: Arc<ServerConfig>) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind { addr, source })?;
        Self::from_listener(listener, config)
    }

    /// Wraps a bound listener.
    pub fn from_listener(
        listener: TcpListener,
        config: Arc<ServerConfig>,
    ) -> Result<Self, TransportError> {
        let addr = listener.local_addr().map_err(TransportError::LocalAddr)?;
        Ok(Self {
            listener,
            addr,
            config,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `router` until `shutdown` completes, then stops accepting, lets the calls in
    /// flight finish and closes the listener.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TransportError> {
        let addr = self.addr;
        info!(%addr, "serving gRPC over mutual TLS");
        let result = router
            .serve_with_incoming_shutdown(self.incoming(), shutdown)
            .await
            .map_err(|source| TransportError::Serve { addr, source });
        info!(%addr, "stopped serving");
        result
    }

    /// The connections that passed the handshake. A background task accepts and handshakes;
    /// it stops, closing the listener, when the stream is dropped.
    pub fn incoming(self) -> ReceiverStream<Result<MtlsStream, io::Error>> {
        incoming(self, read_peer_info)
    }

    /// Serves like [`serve`](Self::serve), except that the connections of other controllers
    /// (their certificate's role) are served by `peers` on the runtime `peer_rt`: the Raft
    /// RPCs a member receives then never wait behind thousands of agents' sessions on the
    /// main runtime, so heartbeats keep flowing under load. The handshakes still run on the
    /// current runtime; a member's connections to another are few and long-lived. Both
    /// servers stop on `shutdown`.
    pub async fn serve_split(
        self,
        router: Router,
        peers: Router,
        peer_rt: tokio::runtime::Handle,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TransportError> {
        let addr = self.addr;
        info!(%addr, "serving gRPC over mutual TLS (controllers on the Raft runtime)");
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let (peer_tx, peer_rx) = mpsc::channel(ACCEPT_QUEUE);
        let split = Split {
            to: peer_tx,
            wants: |p: &PeerInfo| p.identity.role == Role::Controller,
        };
        tokio::spawn(accept_loop(self, tx, read_peer_info, Some(split)));
        let (stop_peers, peers_stopped) = tokio::sync::oneshot::channel::<()>();
        let peer_server = peer_rt.spawn(peers.serve_with_incoming_shutdown(
            ReceiverStream::new(peer_rx),
            async {
                let _ = peers_stopped.await;
            },
        ));
        let result = router
            .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
            .await
            .map_err(|source| TransportError::Serve { addr, source });
        let _ = stop_peers.send(());
        let peer_result = match peer_server.await {
            Ok(r) => r.map_err(|source| TransportError::Serve { addr, source }),
            // The runtime was shut down under it: nothing left to serve.
            Err(_) => Ok(()),
        };
        info!(%addr, "stopped serving");
        result.and(peer_result)
    }

    /// Serves `router` to clients with or without a certificate (the listener's
    /// configuration must be [`crate::pki::join_server_config`]): requests carry a
    /// [`JoinPeer`], never a [`PeerInfo`], so a handler that asks for a verified certificate
    /// ([`authorize_peer`]) refuses them. For the join listener, which serves nothing but the
    /// `Join` service.
    pub async fn serve_join(
        self,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TransportError> {
        let addr = self.addr;
        info!(%addr, "serving the join listener");
        let incoming = incoming(self, |addr, _| Ok(JoinPeer { addr }));
        let result = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|source| TransportError::Serve { addr, source });
        info!(%addr, "stopped serving");
        result
    }
}

/// What a listener knows of a peer after the handshake, from its address and the
/// certificates it presented (verified by the handshake); an error drops the connection.
type ReadPeer<P> = fn(SocketAddr, Option<&[CertificateDer<'_>]>) -> Result<P, String>;

/// The peer of the main listener: the identity its certificate names.
fn read_peer_info(
    addr: SocketAddr,
    certs: Option<&[CertificateDer<'_>]>,
) -> Result<PeerInfo, String> {
    let identity = peer_identity_from_certs(certs).map_err(|e| e.to_string())?;
    Ok(PeerInfo { addr, identity })
}

/// Where the accept loop sends the connections of some peers instead.
struct Split<P> {
    to: mpsc::Sender<Result<TlsServerStream<P>, io::Error>>,
    wants: fn(&P) -> bool,
}

fn incoming<P: Send + 'static + std::fmt::Display>(
    listener: MtlsListener,
    read_peer: ReadPeer<P>,
) -> ReceiverStream<Result<TlsServerStream<P>, io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(accept_loop(listener, tx, read_peer, None));
    ReceiverStream::new(rx)
}

async fn accept_loop<P: Send + 'static + std::fmt::Display>(
    listener: MtlsListener,
    tx: mpsc::Sender<Result<TlsServerStream<P>, io::Error>>,
    read_peer: ReadPeer<P>,
    split: Option<Split<P>>,
) {
    let acceptor = TlsAcceptor::from(listener.config);
    let split = split.map(Arc::new);
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => break,
            accepted = listener.listener.accept() => accepted,
        };
        let (tcp, addr) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                warn!(listener = %listener.addr, error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let split = split.clone();
        tokio::spawn(async move {
            match handshake(&acceptor, tcp, addr, read_peer).await {
                Ok(stream) => {
                    debug!(peer = %stream.peer, "TLS client accepted");
                    let tx = match split.as_deref() {
                        Some(s) if (s.wants)(&stream.peer) => &s.to,
                        _ => &tx,
                    };
                    // Fails only when the server stopped; the connection is then dropped.
                    let _ = tx.send(Ok(stream)).await;
                }
                Err(reason) => {
                    warn!(peer = %addr, %reason, "dropping a connection: TLS handshake failed");
                }
            }
        });
    }
    debug!(listener = %listener.addr, "accept loop stopped");
}

/// Runs the server side of the handshake and reads what is known of the client.
async fn handshake<P>(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    read_peer: ReadPeer<P>,
) -> Result<TlsServerStream<P>, String> {
    // Best effort: a failure only costs latency.
    let _ = tcp.set_nodelay(true);
    let inner = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| format!("no handshake within {HANDSHAKE_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let peer = read_peer(addr, inner.get_ref().1.peer_certificates())?;
    Ok(TlsServerStream { inner, peer })
}

impl std::fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.addr, self.identity)
    }
}

impl std::fmt::Display for JoinPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (joining)", self.addr)
    }
}

/// Builds tonic channels that dial with mutual TLS.
#[derive(Debug, Clone)]
pub struct MtlsConnector {
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
}

impl MtlsConnector {
    /// A connector presenting the certificate in `config` and trusting its roots.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// The same connector with another limit on TCP connect plus TLS handshake.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A channel to `addr` (`host:port`), connected on first use and reconnected after a
    /// failure. The server's certificate must be valid for `host` (a DNS name or an IP).
    pub fn channel(&self, addr: &str) -> Result<Channel, TransportError> {
        let invalid = |reason: String| TransportError::InvalidAddress {
            addr: addr.to_owned(),
            reason,
        };
        let uri: Uri = format!("http://{addr}")
            .parse()
            .map_err(|e| invalid(format!("{e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| invalid("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri
            .port_u16()
            .ok_or_else(|| invalid("no port".to_owned()))?;
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| invalid(format!("{e}")))?;
        let connector = TlsConnector::from(self.config.clone());
        let dial = tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                // Best effort: a failure only costs latency.
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        });
        let endpoint = Endpoint::from(uri).connect_timeout(self.connect_timeout);
        Ok(endpoint.connect_with_connector_lazy(dial))
    }
}
