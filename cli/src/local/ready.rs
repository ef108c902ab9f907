//! Waiting for the embedded cluster: a leader elected, then the node registered and ready,
//! asked over the Control API with the admin certificate.

use std::time::{Duration, Instant};

use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1::{self, control_client::ControlClient};
use tonic::transport::Channel;

use super::{Credentials, Daemon, LocalError, Options};

/// How long a membership change may take (the controller gives itself 12 s).
const MEMBER_CHANGE_WAIT: Duration = Duration::from_secs(15);

/// What the node agent logs once its session is registered (`berth_agent::node::session`).
const REGISTERED: &str = " registered controller=";

/// A Control client with its own small runtime.
pub struct Client {
    rt: tokio::runtime::Runtime,
    control: ControlClient<Channel>,
}

impl Client {
    /// A client of `creds`' controller (it connects on first use).
    pub fn new(creds: &Credentials) -> Result<Self, LocalError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| LocalError::io("read", p, e))
        };
        let own = IssuedCert {
            cert_pem: read(&creds.cert)?,
            key_pem: read(&creds.key)?,
        };
        let config = client_config(&read(&creds.ca)?, &own).map_err(|e| LocalError::Step {
            step: "loading the admin certificate",
            status: "invalid".into(),
            output: e.to_string(),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LocalError::io("start", "a tokio runtime", e))?;
        let channel = {
            let _guard = rt.enter();
            MtlsConnector::new(config)
                .with_connect_timeout(Duration::from_secs(1))
                .channel(&creds.endpoint)
                .map_err(|e| LocalError::Step {
                    step: "connecting to the controller",
                    status: "bad address".into(),
                    output: e.to_string(),
                })?
        };
        Ok(Client {
            rt,
            control: ControlClient::new(channel),
        })
    }

    /// The controller's `Status`.
    pub fn status(&self) -> Result<v1::ControlStatus, tonic::Status> {
        self.call(async |mut c| c.status(v1::Empty {}).await)
    }

    /// `RemoveMember` of `id`.
    pub fn remove_member(&self, id: u64) -> Result<v1::ControlStatus, tonic::Status> {
        self.call_for(MEMBER_CHANGE_WAIT, async |mut c| {
            c.remove_member(v1::RemoveMemberRequest { id }).await
        })
    }

    /// `RemoveNode` of `id`, forced (the node is leaving, its agent about to stop).
    pub fn remove_node(&self, id: &str) -> Result<v1::RemoveNodeResponse, tonic::Status> {
        let request = v1::RemoveNodeRequest {
            node: id.to_owned(),
            force: true,
        };
        self.call_for(Duration::from_secs(5), async |mut c| {
            c.remove_node(request).await
        })
    }

    fn call<T>(
        &self,
        f: impl AsyncFnOnce(ControlClient<Channel>) -> Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        self.call_for(Duration::from_secs(2), f)
    }

    fn call_for<T>(
        &self,
        wait: Duration,
        f: impl AsyncFnOnce(ControlClient<Channel>) -> Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        let c = self.control.clone();
        self.rt.block_on(async {
            match tokio::time::timeout(wait, f(c)).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {wait:?}"
                ))),
            }
        })
    }
}

fn not_ready(opts: &Options, why: String) -> LocalError {
    LocalError::NotReady {
        waited: opts.timeout,
        why,
        controller_log: opts.data_dir.join("controller.log"),
        agent_log: opts.data_dir.join("agent.log"),
    }
}

/// Waits until the controller answers with a leader.
pub fn wait_leader(
    client: &Client,
    controller: &Daemon,
    opts: &Options,
    started: Instant,
) -> Result<(), LocalError> {
    loop {
        controller.check_alive()?;
        let why = match client.call(async |mut c| c.status(v1::Empty {}).await) {
            Ok(s) if s.leader_id.is_some() => return Ok(()),
            Ok(_) => "the controller has no leader yet".to_owned(),
            Err(e) => format!("the controller does not answer: {}", e.message()),
        };
        if started.elapsed() > opts.timeout {
            return Err(not_ready(opts, why));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the node `node_id` is ready and answers its hostname. When this `berth`
/// started the agent, also until the agent says it registered: the node's record may still
/// say ready from before the restart.
pub fn wait_node(
    client: &Client,
    node_id: &str,
    agent: &Daemon,
    controller: &Daemon,
    opts: &Options,
    started: Instant,
) -> Result<String, LocalError> {
    loop {
        agent.check_alive()?;
        controller.check_alive()?;
        let why = match client
            .call(async |mut c| c.list_nodes(v1::ListNodesRequest { stale: false }).await)
        {
            Ok(r) => {
                let ready = r
                    .nodes
                    .iter()
                    .find(|n| n.id == node_id && n.status == v1::NodeStatus::Ready as i32);
                if let Some(n) = ready
                    && agent.logged_since_start(REGISTERED)
                {
                    return Ok(n.hostname.clone());
                }
                match ready {
                    Some(_) => "the node agent has not registered yet".to_owned(),
                    None => format!("node {node_id} is not ready yet"),
                }
            }
            Err(e) => format!("the controller does not answer: {}", e.message()),
        };
        if started.elapsed() > opts.timeout {
            return Err(not_ready(opts, why));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the node agent this `berth` started says it registered with a controller
/// (on a host without an admin certificate, that is all there is to ask).
pub fn wait_registered(agent: &Daemon, opts: &Options, started: Instant) -> Result<(), LocalError> {
    while !agent.logged_since_start(REGISTERED) {
        agent.check_alive()?;
        if started.elapsed() > opts.timeout {
            return Err(not_ready(
                opts,
                "the node agent has not registered with a controller".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until member `id` is a voter of the membership, as the controller answers.
pub fn wait_member(
    client: &Client,
    id: u64,
    controller: &Daemon,
    opts: &Options,
    started: Instant,
) -> Result<(), LocalError> {
    loop {
        controller.check_alive()?;
        let why = match client.status() {
            Ok(s) if s.voters.iter().any(|m| m.id == id) => return Ok(()),
            Ok(s) => format!(
                "member {id} is not a voter yet (voters {:?}, learners {:?})",
                s.voters.iter().map(|m| m.id).collect::<Vec<_>>(),
                s.learners.iter().map(|m| m.id).collect::<Vec<_>>()
            ),
            Err(e) => format!("the controller does not answer: {}", e.message()),
        };
        if started.elapsed() > opts.timeout {
            return Err(not_ready(opts, why));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
