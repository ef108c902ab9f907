//! The end-to-end tests' cluster: the harness hosts, the controllers and the node agents,
//! with the Control calls the tests make (retried through elections) and a polling wait.
//! Dropping it kills the daemons first (so that none starts a container while the agents'
//! containers are killed), then the containers and cgroups, then the hosts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_proto::v1;

use crate::TestAgent;
use crate::cluster::Cluster;
use crate::control_plane::{Control, ControlPlane};

/// How long a call is retried, and a wait waits, before the test fails.
pub const WAIT: Duration = Duration::from_secs(40);

/// Hosts, controllers and agents (by host index).
pub struct Env {
    /// The node agents, by host index.
    pub agents: BTreeMap<usize, TestAgent>,
    /// The harness hosts.
    pub cluster: Cluster,
    /// The controllers.
    pub cp: ControlPlane,
}

impl Drop for Env {
    fn drop(&mut self) {
        for h in &self.cluster.hosts {
            h.kill("agent");
        }
        for h in &self.cluster.hosts {
            h.kill("controller");
        }
    }
}

impl Env {
    /// The controllers of `cp` on `cluster`, no agent yet.
    pub fn new(cluster: Cluster, cp: ControlPlane) -> Env {
        Env {
            agents: BTreeMap::new(),
            cluster,
            cp,
        }
    }

    /// Joins the agent of host `i` with `args` and starts its daemon.
    pub fn start_agent(&mut self, i: usize, args: &[&str]) {
        let agent = self
            .cp
            .start_agent(&self.cluster, i, args)
            .unwrap_or_else(|e| panic!("the agent of h{i}: {e:#}"));
        self.agents.insert(i, agent);
    }

    /// Runs `f` with a Control client of a controller that knows a leader, from host 0's
    /// network (a follower forwards writes to the leader).
    pub fn control<T: Send>(
        &self,
        f: impl AsyncFnOnce(&mut Control) -> Result<T, tonic::Status> + Send,
    ) -> Result<T, tonic::Status> {
        self.cluster.host(0).run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let mut last = tonic::Status::unavailable("no controller answered");
                for a in &self.cp.addrs {
                    let mut c = self.cp.client(a).expect("a client");
                    match tokio::time::timeout(Duration::from_secs(1), c.status(v1::Empty {})).await
                    {
                        Ok(Ok(s)) if s.get_ref().leader_id.is_some() => return f(&mut c).await,
                        Ok(Err(e)) => last = e,
                        _ => {}
                    }
                }
                Err(last)
            })
        })
    }

    /// Retries a call while no controller can serve it (an election), up to [`WAIT`].
    pub fn retry<T>(&self, what: &str, mut f: impl FnMut() -> Result<T, tonic::Status>) -> T {
        let until = Instant::now() + WAIT;
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if Instant::now() < until => {
                    eprintln!("{what}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
    }

    /// Applies `spec` (any version); the service as stored.
    pub fn apply(&self, spec: v1::ServiceSpec) -> v1::Service {
        let name = spec.name.clone();
        self.retry(&format!("apply {name}"), || {
            let spec = spec.clone();
            self.control(async move |c| {
                c.apply_service(v1::ApplyServiceRequest {
                    spec: Some(spec),
                    expected_version: None,
                })
                .await
                .map(|r| r.into_inner().service.expect("the service"))
            })
        })
    }

    /// Scales the service `name` to `replicas`.
    pub fn scale(&self, name: &str, replicas: u32) {
        self.retry(&format!("scale {name}"), || {
            self.control(async |c| {
                c.scale_service(v1::ScaleServiceRequest {
                    name: name.to_owned(),
                    replicas,
                    expected_version: None,
                })
                .await
                .map(|_| ())
            })
        });
    }

    /// Removes the service `name`.
    pub fn remove(&self, name: &str) {
        self.retry(&format!("remove {name}"), || {
            self.control(async |c| {
                c.remove_service(v1::RemoveServiceRequest {
                    name: name.to_owned(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            })
        });
    }

    /// The service `name` as stored (retried through elections).
    pub fn service(&self, name: &str) -> v1::Service {
        self.retry(&format!("get {name}"), || {
            self.control(async |c| {
                c.get_service(v1::GetServiceRequest {
                    name: name.to_owned(),
                    stale: false,
                })
                .await
                .map(|r| r.into_inner().service.unwrap_or_default())
            })
        })
    }

    /// Every node (none while no controller answers).
    pub fn nodes(&self) -> Vec<v1::Node> {
        self.control(async |c| {
            c.list_nodes(v1::ListNodesRequest::default())
                .await
                .map(|r| r.into_inner().nodes)
        })
        .unwrap_or_default()
    }

    /// The tasks of `service` (every service's for `""`), current and past (none while no
    /// controller answers).
    pub fn tasks(&self, service: &str) -> Vec<v1::Task> {
        self.control(async |c| {
            c.list_tasks(v1::ListTasksRequest {
                service: service.to_owned(),
                stale: true,
            })
            .await
            .map(|r| r.into_inner().tasks)
        })
        .unwrap_or_default()
    }

    /// Polls `check` until it holds, for up to [`WAIT`]; prints and returns how long it took.
    pub fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < WAIT, "never: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{what}: {:.2} s", started.elapsed().as_secs_f64());
        started.elapsed()
    }
}
