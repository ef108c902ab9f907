//! The connection to the cluster: a `Control` client over mutual TLS to the first
//! controller of the context that answers, and gRPC errors turned into messages that say
//! what to do.
//!
//! Any controller serves any call (a follower forwards writes and linearizable reads to
//! the leader), so the client tries the context's endpoints in order and keeps the first
//! that answers a `Status` call. A call that fails with UNAVAILABLE (no leader elected,
//! a controller restarting) is retried for up to [`RETRY_FOR`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_controller::pki::{IssuedCert, PkiError, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1::Empty;
use berth_proto::v1::control_client::ControlClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::context::Resolved;

/// A `Control` client.
pub type Control = ControlClient<Channel>;

/// How long one endpoint has to answer before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a call failing with UNAVAILABLE is retried.
pub const RETRY_FOR: Duration = Duration::from_secs(10);
/// The largest response accepted (a listing of a big cluster).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Why the cluster could not be reached or refused a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A certificate or key file cannot be read.
    #[error(
        "cannot read the {what} {} of context `{context}`; fix the path with `berth context add {context} ...`",
        path.display()
    )]
    ReadCert {
        /// The context.
        context: String,
        /// "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificates do not make a TLS configuration.
    #[error("the certificates of context `{context}` cannot be used")]
    Tls {
        /// The context.
        context: String,
        /// Why.
        #[source]
        source: PkiError,
    },
    /// No endpoint answered.
    #[error(
        "cannot reach any controller of context `{context}` ({}); is the cluster up? try `berth up`, or check the endpoints with `berth context ls`",
        tried.iter().map(|(a, why)| format!("{a}: {why}")).collect::<Vec<_>>().join("; ")
    )]
    Unreachable {
        /// The context.
        context: String,
        /// Each endpoint with why it failed.
        tried: Vec<(String, String)>,
    },
    /// A controller refused the client's certificate.
    #[error(
        "the controller at {addr} refused the certificate of context `{context}` ({message}); use an admin certificate of this cluster"
    )]
    Refused {
        /// The context.
        context: String,
        /// The controller.
        addr: String,
        /// What it said.
        message: String,
    },
    /// A call failed.
    #[error("{what}: {}", describe(*code, message))]
    Call {
        /// What was being done ("apply web").
        what: String,
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// The error of a failed call.
    pub fn call(what: impl Into<String>, status: &Status) -> Self {
        ClientError::Call {
            what: what.into(),
            code: status.code(),
            message: status_reason(status),
        }
    }

    /// The gRPC code, for a failed call.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A gRPC error as a sentence saying what went wrong and what to do.
fn describe(code: Code, message: &str) -> String {
    match code {
        Code::InvalidArgument => format!("the cluster refused it: {message}"),
        Code::NotFound => format!("{message}; `berth ls` lists the services"),
        Code::AlreadyExists => message.to_owned(),
        Code::FailedPrecondition => {
            format!("{message}; it changed meanwhile: read it again and retry")
        }
        Code::Aborted => format!("{message}; concurrent changes kept winning: retry"),
        Code::PermissionDenied | Code::Unauthenticated => {
            format!("{message}; use an admin certificate of this cluster")
        }
        Code::Unavailable => format!(
            "no controller could serve it ({message}); the controllers may be electing a leader or have lost their majority: retry, and check that most controllers run"
        ),
        Code::DeadlineExceeded => format!("{message}; the cluster did not answer in time: retry"),
        Code::Unimplemented => format!(
            "the controller does not know this call ({message}); it may run an older berth: upgrade it"
        ),
        Code::ResourceExhausted => format!("{message}; the request or answer is too large"),
        Code::DataLoss => format!("{message}; start again"),
        _ => format!("{message} (gRPC {code:?}); this is a bug in berth if it happens again"),
    }
}

/// A status's message with its innermost cause (e.g. "connection refused"), when it has
/// one.
pub fn status_reason(status: &Status) -> String {
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(e) = cause {
        innermost = Some(e.to_string());
        cause = e.source();
    }
    let message = status.message().trim();
    match innermost {
        Some(inner) if message.is_empty() => inner,
        Some(inner) if !message.contains(&inner) => format!("{message}: {inner}"),
        _ if message.is_empty() => format!("{:?}", status.code()),
        _ => message.to_owned(),
    }
}

/// A connection to one controller of a context.
#[derive(Debug, Clone)]
pub struct Client {
    /// The context's name.
    pub context: String,
    /// The controller that answered.
    pub addr: String,
    control: Control,
}

fn read(context: &str, what: &'static str, path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|source| ClientError::ReadCert {
        context: context.to_owned(),
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl Client {
    /// Connects to the first endpoint of `resolved` that answers.
    pub async fn connect(resolved: &Resolved) -> Result<Client, ClientError> {
        let name = &resolved.name;
        let ctx = &resolved.context;
        let ca = read(name, "CA certificate", &ctx.ca)?;
        let own = IssuedCert {
            cert_pem: read(name, "client certificate", &ctx.cert)?,
            key_pem: read(name, "client key", &ctx.key)?,
        };
        let config = client_config(&ca, &own).map_err(|source| ClientError::Tls {
            context: name.clone(),
            source,
        })?;
        let connector = MtlsConnector::new(config).with_connect_timeout(CONNECT_TIMEOUT);
        let mut tried = Vec::new();
        for addr in &ctx.endpoints {
            let channel = match connector.channel(addr) {
                Ok(c) => c,
                Err(e) => {
                    tried.push((addr.clone(), crate::error::render(&e)));
                    continue;
                }
            };
            let mut control =
                ControlClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
            match tokio::time::timeout(CONNECT_TIMEOUT, control.status(Empty {})).await {
                Ok(Ok(_)) => {
                    return Ok(Client {
                        context: name.clone(),
                        addr: addr.clone(),
                        control,
                    });
                }
                Ok(Err(s))
                    if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) =>
                {
                    return Err(ClientError::Refused {
                        context: name.clone(),
                        addr: addr.clone(),
                        message: status_reason(&s),
                    });
                }
                Ok(Err(s)) => tried.push((addr.clone(), status_reason(&s))),
                Err(_) => tried.push((addr.clone(), format!("no answer in {CONNECT_TIMEOUT:?}"))),
            }
        }
        Err(ClientError::Unreachable {
            context: name.clone(),
            tried,
        })
    }

    /// A handle on the `Control` client (cheap: it shares the connection).
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Runs `f` with a `Control` client, again while it fails with UNAVAILABLE, for up to
    /// [`RETRY_FOR`]; `what` names the call in the error.
    pub async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(Control) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let until = Instant::now() + RETRY_FOR;
        loop {
            match f(self.control()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unavailable && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => return Err(ClientError::call(what, &s)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_says_what_and_what_to_do() {
        let err = ClientError::call("scale web", &Status::not_found("no service `web`"));
        assert_eq!(
            err.to_string(),
            "scale web: no service `web`; `berth ls` lists the services"
        );
        let err = ClientError::call("apply web", &Status::unavailable("no leader"));
        assert!(err.to_string().contains("electing a leader"), "{err}");
    }

    #[test]
    fn unreachable_names_each_endpoint() {
        let err = ClientError::Unreachable {
            context: "default".into(),
            tried: vec![("10.0.0.1:7443".into(), "connection refused".into())],
        };
        assert_eq!(
            err.to_string(),
            "cannot reach any controller of context `default` (10.0.0.1:7443: connection refused); is the cluster up? try `berth up`, or check the endpoints with `berth context ls`"
        );
    }
}
