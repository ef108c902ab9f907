//! The pure core of the service mesh (see the [parent module](super#the-service-mesh) for
//! what each rule is for): the mesh's own rules for a [`MeshConfig`], one service's rules as
//! a [`ServicePlan`], and the `iptables-restore --noflush` input ([`Batch`]) that goes from
//! one plan to the next ([`change`], trusting the caller) or from the current `iptables-save`
//! state to the plans ([`sync`], exact). No I/O here.
//!
//! A service's rules live in its own chains, `BERTH-SVC-<h>` and one `BERTH-SEP-<h>` per
//! endpoint, written whole (declaring a chain flushes it), and in a few rules in the mesh's
//! shared chains (`BERTH-SERVICES`, `BERTH-INGRESS`, `BERTH-NO-ENDPOINTS`), added and
//! deleted one by one. Every one of them carries the comment `berth:/svc/<name>`, which is
//! how the exact path finds a service's rules and chains after a restart.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::rules::{
    self, Batch, COMMENT_PREFIX, FORWARD_CHAIN, JUMP_OWNER, MAX_OWNER_LEN, Op, POSTROUTING_CHAIN,
    Rule, State, Table,
};
use super::{FirewallError, IngressPort, MeshConfig, ServiceRules};

/// The `nat` chain of the VIP jumps (from `PREROUTING` and `OUTPUT`).
pub const SERVICES_CHAIN: &str = "BERTH-SERVICES";
/// The `nat` chain of the ingress ports' jumps (for local destinations).
pub const INGRESS_CHAIN: &str = "BERTH-INGRESS";
/// The `nat` chain deciding which mesh connections get the gateway as their source.
pub const MESH_POSTROUTING_CHAIN: &str = "BERTH-MESH-POSTROUTING";
/// The `filter` chain accepting the mesh's forwarded traffic.
pub const MESH_FORWARD_CHAIN: &str = "BERTH-MESH-FORWARD";
/// The `filter` chain refusing connections to services without endpoints.
pub const NO_ENDPOINTS_CHAIN: &str = "BERTH-NO-ENDPOINTS";
/// A service's chain: `BERTH-SVC-` and 16 hex digits.
pub const SVC_CHAIN_PREFIX: &str = "BERTH-SVC-";
/// An endpoint's chain: `BERTH-SEP-` and 16 hex digits.
pub const SEP_CHAIN_PREFIX: &str = "BERTH-SEP-";
/// The owner of the mesh's own rules (`berth:/mesh`).
pub const MESH_OWNER: &str = "/mesh";
/// A service's rules are owned by `/svc/<name>` (`berth:/svc/<name>`).
pub const SERVICE_OWNER_PREFIX: &str = "/svc/";

/// The mesh's fixed chains, in the order they are declared.
pub const MESH_CHAINS: [(Table, &str); 5] = [
    (Table::Nat, SERVICES_CHAIN),
    (Table::Nat, INGRESS_CHAIN),
    (Table::Nat, MESH_POSTROUTING_CHAIN),
    (Table::Filter, MESH_FORWARD_CHAIN),
    (Table::Filter, NO_ENDPOINTS_CHAIN),
];

/// What `REJECT` is printed with by `iptables-save` (its default).
const REJECT: &str = "-j REJECT --reject-with icmp-port-unreachable";

/// Whether `chain` is one of the mesh's (fixed, or a service's or an endpoint's).
pub fn is_mesh_chain(chain: &str) -> bool {
    is_service_chain(chain) || MESH_CHAINS.iter().any(|(_, c)| *c == chain)
}

/// Whether `chain` is a service's or an endpoint's chain.
pub fn is_service_chain(chain: &str) -> bool {
    chain.starts_with(SVC_CHAIN_PREFIX) || chain.starts_with(SEP_CHAIN_PREFIX)
}

/// The chain of the service `name`: 26 characters (iptables allows 28).
pub fn svc_chain(name: &str) -> String {
    format!("{SVC_CHAIN_PREFIX}{}", short_hash(name))
}

/// The chain of the endpoint `address` of the service `name`.
pub fn sep_chain(name: &str, address: Ipv4Addr) -> String {
    format!(
        "{SEP_CHAIN_PREFIX}{}",
        short_hash(&format!("{name}/{address}"))
    )
}

fn short_hash(text: &str) -> String {
    hex::encode_upper(&Sha256::digest(text.as_bytes())[..8])
}

/// `1/n` as `-m statistic --probability` stores it (a multiple of 2^-31) and `iptables-save`
/// prints it (11 decimals), so that a written chain compares equal to the saved one.
pub fn probability(n: usize) -> String {
    const ONE: f64 = 2_147_483_648.0;
    let stored = (ONE / n.max(1) as f64).round();
    format!("{:.11}", stored / ONE)
}

fn comment(owner: &str) -> String {
    rules::comment(owner)
}

fn service_owner(name: &str) -> String {
    format!("{SERVICE_OWNER_PREFIX}{name}")
}

fn top(table: Table, chain: &str, spec: String) -> Rule {
    Rule {
        top: true,
        ..Rule::new(table, chain, spec)
    }
}

/// The service a rule belongs to, from its `berth:/svc/<name>` comment.
fn service_of(words: &[String]) -> Option<&str> {
    rules::comment_of(words)?
        .strip_prefix(COMMENT_PREFIX)?
        .strip_prefix(SERVICE_OWNER_PREFIX)
}

fn is_mesh_owned(words: &[String]) -> bool {
    rules::comment_of(words)
        .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
        .is_some_and(|o| o == MESH_OWNER || o.starts_with(SERVICE_OWNER_PREFIX))
}

/// Checks a service name: 1 to [`MAX_OWNER_LEN`] characters of `[A-Za-z0-9_.-]`.
pub fn check_service_name(name: &str) -> Result<(), FirewallError> {
    let reason = if name.is_empty() || name.len() > MAX_OWNER_LEN {
        "must be 1 to 200 characters long"
    } else if !rules::valid_name(name) {
        "may only contain ASCII letters, digits, '_', '.' and '-'"
    } else {
        return Ok(());
    };
    Err(FirewallError::Invalid {
        what: "service",
        value: name.to_owned(),
        reason,
    })
}

/// Checks a mesh configuration: the node subnet inside the cluster range, with room for a
/// gateway and a container.
pub fn check_mesh(mesh: &MeshConfig) -> Result<(), FirewallError> {
    let reason = if !mesh.cluster_range.contains(&mesh.node_subnet.trunc()) {
        "is not inside the cluster range"
    } else if mesh.node_subnet.prefix_len() > 30 {
        "has no room for a gateway and a container (at most a /30)"
    } else {
        return Ok(());
    };
    Err(FirewallError::Invalid {
        what: "node subnet",
        value: format!("{} in {}", mesh.node_subnet, mesh.cluster_range),
        reason,
    })
}

/// The rules the mesh adds to chains that are not its own, each inserted at the top: the
/// networks' shared jumps into `BERTH-POSTROUTING` and `BERTH-FORWARD` (the same text as
/// [`rules::network_rules`]'), then the mesh's hooks.
pub fn hook_rules() -> Vec<Rule> {
    let jump = comment(JUMP_OWNER);
    let m = comment(MESH_OWNER);
    vec![
        top(
            Table::Nat,
            "POSTROUTING",
            format!("{jump} -j {POSTROUTING_CHAIN}"),
        ),
        top(
            Table::Filter,
            "FORWARD",
            format!("{jump} -j {FORWARD_CHAIN}"),
        ),
        top(Table::Nat, "PREROUTING", format!("{m} -j {SERVICES_CHAIN}")),
        top(Table::Nat, "OUTPUT", format!("{m} -j {SERVICES_CHAIN}")),
        top(
            Table::Nat,
            SERVICES_CHAIN,
            format!("-m addrtype --dst-type LOCAL {m} -j {INGRESS_CHAIN}"),
        ),
        top(
            Table::Nat,
            POSTROUTING_CHAIN,
            format!("{m} -j {MESH_POSTROUTING_CHAIN}"),
        ),
        top(
            Table::Filter,
            FORWARD_CHAIN,
            format!("{m} -j {MESH_FORWARD_CHAIN}"),
        ),
        top(
            Table::Filter,
            "INPUT",
            format!("-m conntrack --ctstate NEW {m} -j {NO_ENDPOINTS_CHAIN}"),
        ),
        top(
            Table::Filter,
            "OUTPUT",
            format!("-m conntrack --ctstate NEW {m} -j {NO_ENDPOINTS_CHAIN}"),
        ),
    ]
}

/// One of the mesh's chains whose whole content it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnChain {
    /// The table.
    pub table: Table,
    /// The chain.
    pub chain: &'static str,
    /// All its rules, in order.
    pub rules: Vec<Rule>,
}

/// The mesh's chains whose whole content it writes: `BERTH-MESH-POSTROUTING` and
/// `BERTH-MESH-FORWARD`.
pub fn mesh_chain_rules(mesh: &MeshConfig) -> Result<Vec<OwnChain>, FirewallError> {
    check_mesh(mesh)?;
    let m = comment(MESH_OWNER);
    let (cluster, node) = (mesh.cluster_range.trunc(), mesh.node_subnet.trunc());
    let gw = mesh.gateway();
    let post = |spec: String| Rule::new(Table::Nat, MESH_POSTROUTING_CHAIN, spec);
    let fwd = |spec: String| Rule::new(Table::Filter, MESH_FORWARD_CHAIN, spec);
    Ok(vec![
        OwnChain {
            table: Table::Nat,
            chain: MESH_POSTROUTING_CHAIN,
            rules: vec![
                post(format!("-d {node} {m} -j RETURN")),
                post(format!("! -d {cluster} {m} -j RETURN")),
                post(format!("-s {node} {m} -j ACCEPT")),
                post(format!("! -s {cluster} {m} -j SNAT --to-source {gw}")),
                post(format!(
                    "-m conntrack --ctstate DNAT {m} -j SNAT --to-source {gw}"
                )),
            ],
        },
        OwnChain {
            table: Table::Filter,
            chain: MESH_FORWARD_CHAIN,
            rules: vec![
                fwd(format!(
                    "-m conntrack --ctstate NEW {m} -j {NO_ENDPOINTS_CHAIN}"
                )),
                fwd(format!("-s {cluster} -d {cluster} {m} -j ACCEPT")),
                fwd(format!(
                    "-m conntrack --ctstate DNAT --ctreplsrc {cluster} {m} -j ACCEPT"
                )),
            ],
        },
    ])
}

/// What [`ServiceFirewall::setup_mesh`](super::ServiceFirewall::setup_mesh) must do, given
/// the current state: declare the missing chains, rewrite the mesh's own chains if they
/// differ, delete `berth:/mesh` rules elsewhere that are not the hooks, add missing hooks.
pub fn setup(mesh: &MeshConfig, current: &State) -> Result<Batch, FirewallError> {
    let content = mesh_chain_rules(mesh)?;
    let index = Index::new(current);
    let mut ops = Vec::new();
    let shared = [
        (Table::Nat, POSTROUTING_CHAIN),
        (Table::Filter, FORWARD_CHAIN),
    ];
    for (t, c) in shared.iter().chain(&MESH_CHAINS) {
        if !index.has_chain(*t, c) {
            ops.push(Op::Chain(*t, (*c).to_owned()));
        }
    }
    for own in &content {
        if !index.same_chain(own.table, own.chain, &own.rules) {
            if index.has_chain(own.table, own.chain) {
                ops.push(Op::Chain(own.table, own.chain.to_owned()));
            }
            ops.extend(own.rules.iter().cloned().map(Op::Add));
        }
    }
    let hooks = hook_rules();
    for table in [Table::Nat, Table::Filter] {
        let stale: Vec<Op> = current
            .saved(table)
            .filter(|(chain, _, words)| {
                !content.iter().any(|own| own.chain == *chain)
                    && rules::comment_of(words)
                        .is_some_and(|c| c.strip_prefix(COMMENT_PREFIX) == Some(MESH_OWNER))
                    && !hooks.iter().any(|h| {
                        h.table == table && h.chain == *chain && rules::words(&h.spec) == *words
                    })
            })
            .map(|(chain, raw, _)| Op::Delete(Rule::new(table, chain, raw.to_owned())))
            .collect();
        ops.extend(stale.into_iter().rev());
    }
    ops.extend(
        hooks
            .into_iter()
            .filter(|h| !index.has_rule(h))
            .map(Op::Add),
    );
    Ok(Batch { ops })
}

/// One service's rules: its own `nat` chains and its rules in the mesh's shared chains.
/// Equal services give equal plans (endpoints and ports are sorted and deduplicated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    /// The service's name.
    pub name: String,
    /// Its `nat` chains with their rules: `BERTH-SVC-<h>` first, then its endpoints'
    /// `BERTH-SEP-<h>`. None for a service without a VIP and ingress ports.
    pub chains: Vec<(String, Vec<Rule>)>,
    /// Its rules in `BERTH-SERVICES`, `BERTH-INGRESS` and `BERTH-NO-ENDPOINTS`.
    pub shared: Vec<Rule>,
}

impl ServicePlan {
    /// No rules at all for the service `name` (what a removed service goes to).
    pub fn empty(name: &str) -> ServicePlan {
        ServicePlan {
            name: name.to_owned(),
            chains: Vec::new(),
            shared: Vec::new(),
        }
    }
}

/// The ingress ports sorted, duplicates dropped; a port 0, or a published port going to two
/// targets, is refused.
fn ingress_ports(s: &ServiceRules) -> Result<Vec<IngressPort>, FirewallError> {
    let ports: BTreeSet<IngressPort> = s.ingress.iter().copied().collect();
    let mut seen = HashSet::new();
    for p in &ports {
        let reason = if p.published == 0 || p.target == 0 {
            "port 0 cannot be published"
        } else if !seen.insert((p.protocol, p.published)) {
            "published twice, to different target ports"
        } else {
            continue;
        };
        return Err(FirewallError::Invalid {
            what: "ingress port",
            value: format!("{} {p:?}", s.name),
            reason,
        });
    }
    Ok(ports.into_iter().collect())
}

/// The rules of one service (see the [parent module](super#the-service-mesh)).
pub fn service_plan(s: &ServiceRules) -> Result<ServicePlan, FirewallError> {
    check_service_name(&s.name)?;
    let ports = ingress_ports(s)?;
    if s.vip.is_none() && ports.is_empty() {
        return Ok(ServicePlan::empty(&s.name));
    }
    let endpoints: BTreeSet<Ipv4Addr> = s.endpoints.iter().copied().collect();
    let c = comment(&service_owner(&s.name));
    let svc = svc_chain(&s.name);

    let mut shared = Vec::new();
    if let Some(vip) = s.vip {
        shared.push(Rule::new(
            Table::Nat,
            SERVICES_CHAIN,
            format!("-d {vip}/32 {c} -j {svc}"),
        ));
    }
    for p in &ports {
        let proto = p.protocol.as_str();
        shared.push(Rule::new(
            Table::Nat,
            INGRESS_CHAIN,
            format!("-p {proto} -m {proto} --dport {} {c} -j {svc}", p.published),
        ));
    }
    if endpoints.is_empty() {
        if let Some(vip) = s.vip {
            shared.push(Rule::new(
                Table::Filter,
                NO_ENDPOINTS_CHAIN,
                format!("-d {vip}/32 {c} {REJECT}"),
            ));
        }
        for p in &ports {
            let proto = p.protocol.as_str();
            shared.push(Rule::new(
                Table::Filter,
                NO_ENDPOINTS_CHAIN,
                format!(
                    "-p {proto} -m addrtype --dst-type LOCAL -m {proto} --dport {} {c} {REJECT}",
                    p.published
                ),
            ));
        }
    }

    let n = endpoints.len();
    let mut svc_rules = Vec::with_capacity(n);
    let mut chains = Vec::with_capacity(n + 1);
    for (i, &address) in endpoints.iter().enumerate() {
        let sep = sep_chain(&s.name, address);
        let pick = if i + 1 < n {
            format!(
                "{c} -m statistic --mode random --probability {} -j {sep}",
                probability(n - i)
            )
        } else {
            format!("{c} -j {sep}")
        };
        svc_rules.push(Rule::new(Table::Nat, &svc, pick));
        let mut sep_rules = Vec::with_capacity(ports.len() + 1);
        if let Some(vip) = s.vip {
            sep_rules.push(Rule::new(
                Table::Nat,
                &sep,
                format!("-d {vip}/32 {c} -j DNAT --to-destination {address}"),
            ));
        }
        for p in &ports {
            let proto = p.protocol.as_str();
            sep_rules.push(Rule::new(
                Table::Nat,
                &sep,
                format!(
                    "-p {proto} -m {proto} --dport {} {c} -j DNAT --to-destination {address}:{}",
                    p.published, p.target
                ),
            ));
        }
        chains.push((sep, sep_rules));
    }
    chains.insert(0, (svc, svc_rules));
    Ok(ServicePlan {
        name: s.name.clone(),
        chains,
        shared,
    })
}

/// The batch from `prev` to `next` without looking at the current state, touching nothing
/// else: the shared rules that go (last first), the chains that are new or differ (declared,
/// which flushes an existing one, and written whole), the shared rules that come, then the
/// chains that go (flushed, then deleted). Empty when the plans are equal. Fails as a whole
/// (in iptables) if a rule to delete or a chain to delete is missing.
pub fn change(prev: &ServicePlan, next: &ServicePlan) -> Batch {
    let mut ops = Vec::new();
    for r in prev.shared.iter().rev() {
        if !next.shared.contains(r) {
            ops.push(Op::Delete(r.clone()));
        }
    }
    let before: HashMap<&str, &Vec<Rule>> =
        prev.chains.iter().map(|(c, r)| (c.as_str(), r)).collect();
    for (chain, rules) in &next.chains {
        if before.get(chain.as_str()) != Some(&rules) {
            ops.push(Op::Chain(Table::Nat, chain.clone()));
            ops.extend(rules.iter().cloned().map(Op::Add));
        }
    }
    for r in &next.shared {
        if !prev.shared.contains(r) {
            ops.push(Op::Add(r.clone()));
        }
    }
    let after: HashSet<&str> = next.chains.iter().map(|(c, _)| c.as_str()).collect();
    let gone: Vec<&String> = prev
        .chains
        .iter()
        .map(|(c, _)| c)
        .filter(|c| !after.contains(c.as_str()))
        .collect();
    ops.extend(gone.iter().map(|c| Op::Flush(Table::Nat, (*c).clone())));
    ops.extend(
        gone.iter()
            .map(|c| Op::DeleteChain(Table::Nat, (*c).clone())),
    );
    Batch { ops }
}

/// Which services [`sync`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The service of this name only: its rules (by comment) and chains (its
    /// `BERTH-SVC-` chain, the `BERTH-SEP-` chains it jumps to or whose rules carry its
    /// comment).
    Service(&'a str),
    /// Every service: every rule with a `berth:/svc/` comment and every `BERTH-SVC-` and
    /// `BERTH-SEP-` chain.
    All,
}

/// The exact batch from `current` to `plans`, for the services in `scope` (plans outside
/// it are ignored): shared rules of those services that are not planned (or are there
/// twice) are deleted, planned ones that are missing added; planned chains that are missing
/// or differ are declared and written whole; those services' chains that are not planned go.
/// Empty when the state is already the plans. Fails with [`FirewallError::NotSetUp`] if a
/// shared chain a plan needs is missing.
pub fn sync(
    plans: &[ServicePlan],
    scope: Scope<'_>,
    current: &State,
) -> Result<Batch, FirewallError> {
    let index = Index::new(current);
    let plans: Vec<&ServicePlan> = plans
        .iter()
        .filter(|p| match scope {
            Scope::Service(name) => p.name == name,
            Scope::All => true,
        })
        .collect();
    let in_scope = |name: &str| match scope {
        Scope::Service(n) => name == n,
        Scope::All => true,
    };
    for r in plans.iter().flat_map(|p| &p.shared) {
        if !index.has_chain(r.table, &r.chain) {
            let (table, chain) = MESH_CHAINS
                .iter()
                .find(|(t, c)| *t == r.table && *c == r.chain)
                .copied()
                .unwrap_or((r.table, SERVICES_CHAIN));
            return Err(FirewallError::NotSetUp {
                table: table.as_str(),
                chain,
            });
        }
    }

    // The chains of the services in scope that exist now.
    let mut owned: Vec<String> = Vec::new();
    match scope {
        Scope::All => owned.extend(
            current
                .chains(Table::Nat)
                .into_iter()
                .filter(|c| is_service_chain(c)),
        ),
        Scope::Service(name) => {
            let svc = svc_chain(name);
            let mut set = BTreeSet::new();
            if index.has_chain(Table::Nat, &svc) {
                for (_, words) in index.rules_of(Table::Nat, &svc) {
                    if let Some(t) = rules::jump_target(words)
                        && t.starts_with(SEP_CHAIN_PREFIX)
                    {
                        set.insert(t);
                    }
                }
                set.insert(svc);
            }
            for (chain, _, words) in current.saved(Table::Nat) {
                if chain.starts_with(SEP_CHAIN_PREFIX) && service_of(words) == Some(name) {
                    set.insert(chain.to_owned());
                }
            }
            owned.extend(set.into_iter().filter(|c| index.has_chain(Table::Nat, c)));
        }
    }

    let mut ops = Vec::new();
    // Shared rules in scope that are not planned, or planned and there twice.
    let planned: HashSet<(Table, &str, Vec<String>)> = plans
        .iter()
        .flat_map(|p| &p.shared)
        .map(|r| (r.table, r.chain.as_str(), rules::words(&r.spec)))
        .collect();
    for table in [Table::Nat, Table::Filter] {
        let mut kept = HashSet::new();
        let mut delete = Vec::new();
        for (chain, raw, words) in current.saved(table) {
            if is_service_chain(chain) || !service_of(words).is_some_and(in_scope) {
                continue;
            }
            let key = (table, chain, words.to_vec());
            if planned.contains(&key) && kept.insert(key) {
                continue;
            }
            delete.push(Op::Delete(Rule::new(table, chain, raw.to_owned())));
        }
        ops.extend(delete.into_iter().rev());
    }
    // Planned chains that are missing or differ.
    let mut wanted = HashSet::new();
    for (chain, rules) in plans.iter().flat_map(|p| &p.chains) {
        wanted.insert(chain.as_str());
        if !index.same_chain(Table::Nat, chain, rules) {
            ops.push(Op::Chain(Table::Nat, chain.clone()));
            ops.extend(rules.iter().cloned().map(Op::Add));
        }
    }
    // Missing shared rules.
    ops.extend(
        plans
            .iter()
            .flat_map(|p| &p.shared)
            .filter(|r| !index.has_rule(r))
            .cloned()
            .map(Op::Add),
    );
    // Chains that go.
    let gone: Vec<String> = owned
        .into_iter()
        .filter(|c| !wanted.contains(c.as_str()))
        .collect();
    ops.extend(gone.iter().map(|c| Op::Flush(Table::Nat, c.clone())));
    ops.extend(gone.into_iter().map(|c| Op::DeleteChain(Table::Nat, c)));
    Ok(Batch { ops })
}

/// The names of the services with rules in `current`.
pub fn services(current: &State) -> BTreeSet<String> {
    [Table::Nat, Table::Filter]
        .into_iter()
        .flat_map(|t| current.saved(t))
        .filter_map(|(_, _, words)| service_of(words))
        .map(str::to_owned)
        .collect()
}

/// Removes the mesh: rules outside its chains that jump into them or carry a
/// `berth:/mesh` or `berth:/svc/…` comment, then every mesh chain (flushed, then
/// deleted). The networks' chains, rules and jumps stay.
pub fn teardown(current: &State) -> Batch {
    let mut ops = Vec::new();
    for table in [Table::Nat, Table::Filter] {
        for (chain, raw, words) in current.saved(table) {
            if is_mesh_chain(chain) {
                continue;
            }
            let jumps_in = rules::jump_target(words).is_some_and(|t| is_mesh_chain(&t));
            if jumps_in || is_mesh_owned(words) {
                ops.push(Op::Delete(Rule::new(table, chain, raw.to_owned())));
            }
        }
        let chains: Vec<String> = current
            .chains(table)
            .into_iter()
            .filter(|c| is_mesh_chain(c))
            .collect();
        ops.extend(chains.iter().map(|c| Op::Flush(table, c.clone())));
        ops.extend(chains.into_iter().map(|c| Op::DeleteChain(table, c)));
    }
    Batch { ops }
}

/// A chain's rules as saved: `(text after "-A <chain> ", words)`.
type SavedRules<'a> = Vec<(&'a str, &'a [String])>;

/// Lookups into a [`State`] that stay fast with thousands of chains and rules.
struct Index<'a> {
    chains: HashSet<(Table, String)>,
    by_chain: HashMap<Table, HashMap<&'a str, SavedRules<'a>>>,
    rules: HashSet<(Table, &'a str, &'a [String])>,
}

impl<'a> Index<'a> {
    fn new(state: &'a State) -> Index<'a> {
        let mut index = Index {
            chains: HashSet::new(),
            by_chain: HashMap::new(),
            rules: HashSet::new(),
        };
        for table in [Table::Nat, Table::Filter] {
            index
                .chains
                .extend(state.chains(table).into_iter().map(|c| (table, c)));
            for (chain, raw, words) in state.saved(table) {
                index
                    .by_chain
                    .entry(table)
                    .or_default()
                    .entry(chain)
                    .or_default()
                    .push((raw, words));
                index.rules.insert((table, chain, words));
            }
        }
        index
    }

    fn has_chain(&self, table: Table, chain: &str) -> bool {
        // Built-in chains always exist.
        matches!(
            chain,
            "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
        ) || self.chains.contains(&(table, chain.to_owned()))
    }

    fn rules_of(&self, table: Table, chain: &str) -> &[(&'a str, &'a [String])] {
        self.by_chain
            .get(&table)
            .and_then(|m| m.get(chain))
            .map_or(&[], Vec::as_slice)
    }

    fn has_rule(&self, rule: &Rule) -> bool {
        let words = rules::words(&rule.spec);
        self.rules
            .contains(&(rule.table, rule.chain.as_str(), words.as_slice()))
    }

    /// Whether `chain` exists and holds exactly `rules`, in order.
    fn same_chain(&self, table: Table, chain: &str, rules: &[Rule]) -> bool {
        let have = self.rules_of(table, chain);
        self.has_chain(table, chain)
            && have.len() == rules.len()
            && have
                .iter()
                .zip(rules)
                .all(|((_, words), r)| *words == rules::words(&r.spec).as_slice())
    }
}
