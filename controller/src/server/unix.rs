//! Serving on a Unix socket.

use std::fs::Permissions;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use super::{ServeError, Services};

/// Only the socket's owner may connect.
const SOCKET_MODE: u32 = 0o600;

/// A bound Unix socket, ready to serve; the socket file is removed when it is dropped
/// or when [`UnixEndpoint::serve`] returns.
#[derive(Debug)]
pub struct UnixEndpoint {
    listener: StdUnixListener,
    socket: SocketFile,
}

impl UnixEndpoint {
    /// Creates the socket at `path`, readable and writable by its owner only.
    ///
    /// An existing file at `path` is an error and is left alone: it may belong to a
    /// running controller.
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, ServeError> {
        let path = path.into();
        let listener = StdUnixListener::bind(&path).map_err(|source| ServeError::Listen {
            path: path.clone(),
            source,
        })?;
        // From here on the file is ours, and the guard removes it on any early return.
        let socket = SocketFile { path };
        let listen_error = |source| ServeError::Listen {
            path: socket.path.clone(),
            source,
        };
        std::fs::set_permissions(&socket.path, Permissions::from_mode(SOCKET_MODE))
            .map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        Ok(Self { listener, socket })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Serves `services` until `shutdown` completes, then finishes the calls in flight
    /// and removes the socket file.
    pub async fn serve(
        self,
        services: Services,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Self { listener, socket } = self;
        let listener = UnixListener::from_std(listener).map_err(|source| ServeError::Listen {
            path: socket.path.clone(),
            source,
        })?;
        info!(socket = %socket.path.display(), "serving gRPC on a Unix socket");
        let result = services
            .into_router()
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await
            .map_err(|source| ServeError::Serve {
                path: socket.path.clone(),
                source,
            });
        info!(socket = %socket.path.display(), "stopped serving");
        result
    }
}

/// Binds `path` and serves every controller service there until `shutdown` completes.
pub async fn serve_on_unix(
    path: impl Into<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    UnixEndpoint::bind(path)?
        .serve(Services::default(), shutdown)
        .await
}

/// A socket file this process created; removed on drop, idempotently.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            // Drop cannot return it; this is the only place it is reported.
            Err(err) => {
                warn!(socket = %self.path.display(), error = %err, "cannot remove the socket file")
            }
        }
    }
}
