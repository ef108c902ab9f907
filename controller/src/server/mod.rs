//! Runs the controller's gRPC services on a listener.
//!
//! [`Services`] assembles the handlers of [`crate::api`] into one router; each listener
//! kind has its own file. Only a Unix socket exists for now ([`UnixEndpoint`]), for
//! in-process tests and tools on the same host; the TCP listener will come with mutual
//! TLS, since berth has no plaintext network listener.

mod unix;

use std::path::PathBuf;

use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::api::InfoService;

pub use unix::{UnixEndpoint, serve_on_unix};

/// The gRPC services one controller serves.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// `berth.v1.Info`.
    pub info: InfoService,
}

impl Services {
    /// A tonic router that serves every service.
    pub fn into_router(self) -> Router {
        Server::builder().add_service(self.info.into_server())
    }
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be created, or not registered with the runtime.
    #[error("cannot listen on the Unix socket {}", path.display())]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the gRPC server on {} failed", path.display())]
    Serve {
        /// The socket's path.
        path: PathBuf,
        /// What tonic said.
        #[source]
        source: tonic::transport::Error,
    },
}
