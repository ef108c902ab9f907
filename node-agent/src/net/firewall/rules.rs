//! The pure core of the iptables back-end: which rules a network and a container's published
//! ports need (see the [parent module](super) for what each is for), the current state read
//! from `iptables-save` ([`State`]), and the exact `iptables-restore --noflush` input
//! ([`Batch`]) that takes one to the other. No I/O here.
//!
//! Every plan only adds what is missing and only deletes what exists, so applying it twice,
//! or after a crash half-way, is safe. Declaring an existing user chain in
//! `iptables-restore --noflush` input flushes it, so chains are declared only when missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{FirewallError, NetworkRules, Publish};

/// The `nat` chain holding the published ports' DNAT rules.
pub const DNAT_CHAIN: &str = "BERTH-DNAT";
/// The `nat` chain holding berth's MASQUERADE rules.
pub const POSTROUTING_CHAIN: &str = "BERTH-POSTROUTING";
/// The `filter` chain accepting berth's forwarded traffic.
pub const FORWARD_CHAIN: &str = "BERTH-FORWARD";
/// Every chain berth owns starts with this; teardown removes all of them.
pub const CHAIN_PREFIX: &str = "BERTH-";
/// Every rule berth adds carries `-m comment --comment "berth:<owner>"`.
pub const COMMENT_PREFIX: &str = "berth:";
/// The owner of the jump rules into berth's chains (shared by every network).
pub const JUMP_OWNER: &str = "/jump";

/// berth's chains, in the order they are declared.
pub const CHAINS: [(Table, &str); 3] = [
    (Table::Nat, DNAT_CHAIN),
    (Table::Nat, POSTROUTING_CHAIN),
    (Table::Filter, FORWARD_CHAIN),
];

/// The longest owner string accepted (a comment holds at most 255 bytes).
pub const MAX_OWNER_LEN: usize = 200;

/// An iptables table berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `nat`.
    Nat,
    /// `filter`.
    Filter,
}

impl Table {
    /// The table's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }

    fn from_name(name: &str) -> Option<Table> {
        match name {
            "nat" => Some(Table::Nat),
            "filter" => Some(Table::Filter),
            _ => None,
        }
    }
}

/// One rule: a chain and the rule specification, written exactly as `iptables-save`
/// prints it (so that it can be compared with the saved state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The table.
    pub table: Table,
    /// The chain.
    pub chain: String,
    /// Everything after `-A <chain> `.
    pub spec: String,
    /// Inserted at the top of the chain (`-I <chain> 1`) rather than appended.
    pub top: bool,
}

impl Rule {
    pub(super) fn new(table: Table, chain: &str, spec: String) -> Rule {
        Rule {
            table,
            chain: chain.to_owned(),
            spec,
            top: false,
        }
    }
}

/// One line of `iptables-restore` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `:<chain> - [0:0]`: create a user chain (flushes it if it exists, so only for missing ones).
    Chain(Table, String),
    /// `-A` (or `-I <chain> 1` when [`Rule::top`]).
    Add(Rule),
    /// `-D <chain> <spec>`.
    Delete(Rule),
    /// `-F <chain>`.
    Flush(Table, String),
    /// `-X <chain>`.
    DeleteChain(Table, String),
}

impl Op {
    fn table(&self) -> Table {
        match self {
            Op::Chain(t, _) | Op::Flush(t, _) | Op::DeleteChain(t, _) => *t,
            Op::Add(r) | Op::Delete(r) => r.table,
        }
    }

    fn line(&self) -> String {
        match self {
            Op::Chain(_, c) => format!(":{c} - [0:0]"),
            Op::Add(r) if r.top => format!("-I {} 1 {}", r.chain, r.spec),
            Op::Add(r) => format!("-A {} {}", r.chain, r.spec),
            Op::Delete(r) => format!("-D {} {}", r.chain, r.spec),
            Op::Flush(_, c) => format!("-F {c}"),
            Op::DeleteChain(_, c) => format!("-X {c}"),
        }
    }
}

/// A list of changes, applied as one `iptables-restore --noflush` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The changes, in order (per table).
    pub ops: Vec<Op>,
}

impl Batch {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `iptables-restore` input: a `*nat` then a `*filter` section (each only if it has
    /// changes), chain declarations first, then the other lines in order, then `COMMIT`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in [Table::Nat, Table::Filter] {
            let ops: Vec<&Op> = self.ops.iter().filter(|o| o.table() == table).collect();
            if ops.is_empty() {
                continue;
            }
            let _ = writeln!(out, "*{}", table.as_str());
            let (chains, rest): (Vec<&Op>, Vec<&Op>) =
                ops.into_iter().partition(|o| matches!(o, Op::Chain(..)));
            for op in chains.into_iter().chain(rest) {
                let _ = writeln!(out, "{}", op.line());
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// Each change as a batch of its own (to carry on past a failing one).
    pub fn split(&self) -> Vec<Batch> {
        self.ops
            .iter()
            .map(|op| Batch {
                ops: vec![op.clone()],
            })
            .collect()
    }
}

/// A rule as read from `iptables-save`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SavedRule {
    chain: String,
    /// The text after `-A <chain> `, as printed.
    raw: String,
    /// `raw` split into words (quotes removed), for comparison.
    words: Vec<String>,
}

/// The `nat` and `filter` tables as `iptables-save` printed them (other tables are
/// ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    tables: BTreeMap<Table, TableState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TableState {
    chains: Vec<String>,
    rules: Vec<SavedRule>,
}

impl State {
    /// Reads `iptables-save` output.
    pub fn parse(save: &str) -> State {
        let mut state = State::default();
        let mut table = None;
        for line in save.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('*') {
                table = Table::from_name(name);
                if let Some(t) = table {
                    state.tables.entry(t).or_default();
                }
                continue;
            }
            let Some(t) = table else { continue };
            let ts = state.tables.entry(t).or_default();
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(name) = decl.split_whitespace().next() {
                    ts.chains.push(name.to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let (chain, raw) = rest.split_once(' ').unwrap_or((rest, ""));
                ts.rules.push(SavedRule {
                    chain: chain.to_owned(),
                    raw: raw.to_owned(),
                    words: words(raw),
                });
            }
        }
        state
    }

    /// Whether `chain` exists in `table`.
    pub fn has_chain(&self, table: Table, chain: &str) -> bool {
        self.tables
            .get(&table)
            .is_some_and(|t| t.chains.iter().any(|c| c == chain))
    }

    /// Whether `rule` exists (wherever it stands in its chain).
    pub fn has_rule(&self, rule: &Rule) -> bool {
        let w = words(&rule.spec);
        self.tables.get(&rule.table).is_some_and(|t| {
            t.rules
                .iter()
                .any(|r| r.chain == rule.chain && r.words == w)
        })
    }

    /// The rule lines (`-A …`) of `table`, in order, as printed.
    pub fn rule_lines(&self, table: Table) -> Vec<String> {
        self.tables.get(&table).map_or_else(Vec::new, |t| {
            t.rules
                .iter()
                .map(|r| format!("-A {} {}", r.chain, r.raw))
                .collect()
        })
    }

    /// The rules of `table` as `(chain, text after "-A <chain> ", words)`, in order.
    pub(super) fn saved(&self, table: Table) -> impl Iterator<Item = (&str, &str, &[String])> {
        self.tables
            .get(&table)
            .into_iter()
            .flat_map(|t| &t.rules)
            .map(|r| (r.chain.as_str(), r.raw.as_str(), r.words.as_slice()))
    }

    /// The chains of `table`, in order.
    pub fn chains(&self, table: Table) -> Vec<String> {
        self.tables
            .get(&table)
            .map_or_else(Vec::new, |t| t.chains.clone())
    }

    /// Applies `iptables-restore --noflush` input produced by [`Batch::render`], all or
    /// nothing, failing as iptables would (deleting a missing rule, adding to a missing chain,
    /// deleting a chain that is not empty or still referenced). A model for tests.
    pub fn apply(&mut self, input: &str) -> Result<(), String> {
        let mut next = self.clone();
        let mut table = None;
        for (n, line) in input.lines().enumerate() {
            let fail = |why: &str| Err(format!("line {}: {why}: {line}", n + 1));
            if let Some(name) = line.strip_prefix('*') {
                table = Table::from_name(name);
                if table.is_none() {
                    return fail("unknown table");
                }
                continue;
            }
            if line == "COMMIT" || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(t) = table else {
                return fail("no table");
            };
            let ts = next.tables.entry(t).or_default();
            let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            let exists = |ts: &TableState, c: &str| ts.chains.iter().any(|x| x == c);
            match cmd {
                _ if line.starts_with(':') => {
                    let name = &cmd[1..];
                    if exists(ts, name) {
                        ts.rules.retain(|r| r.chain != name);
                    } else {
                        ts.chains.push(name.to_owned());
                    }
                }
                "-A" | "-I" | "-D" if !exists(ts, chain) && !is_builtin(chain) => {
                    return fail("no such chain");
                }
                "-A" | "-I" => {
                    let spec = if cmd == "-I" {
                        spec.strip_prefix("1 ").unwrap_or(spec)
                    } else {
                        spec
                    };
                    if let Some(target) = jump_target(&words(spec))
                        && target.starts_with(CHAIN_PREFIX)
                        && !exists(ts, &target)
                    {
                        return fail("no such target chain");
                    }
                    let rule = SavedRule {
                        chain: chain.to_owned(),
                        raw: spec.to_owned(),
                        words: words(spec),
                    };
                    if cmd == "-I" {
                        let at = ts.rules.iter().position(|r| r.chain == chain);
                        ts.rules.insert(at.unwrap_or(ts.rules.len()), rule);
                    } else {
                        ts.rules.push(rule);
                    }
                }
                "-D" => {
                    let w = words(spec);
                    match ts
                        .rules
                        .iter()
                        .position(|r| r.chain == chain && r.words == w)
                    {
                        Some(i) => {
                            ts.rules.remove(i);
                        }
                        None => return fail("no such rule"),
                    }
                }
                "-F" => ts.rules.retain(|r| r.chain != chain),
                "-X" => {
                    let used = ts.rules.iter().any(|r| {
                        r.chain == chain || jump_target(&r.words).as_deref() == Some(chain)
                    });
                    if used || !exists(ts, chain) {
                        return fail("chain missing, not empty or still referenced");
                    }
                    ts.chains.retain(|c| c != chain);
                }
                _ => return fail("unknown command"),
            }
        }
        *self = next;
        Ok(())
    }
}

fn is_builtin(chain: &str) -> bool {
    matches!(
        chain,
        "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
    )
}

/// Splits a rule into words the way iptables' own parser does: on blanks, with `"…"`
/// grouping and `\` escaping inside quotes.
pub(super) fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

pub(super) fn jump_target(words: &[String]) -> Option<String> {
    words
        .windows(2)
        .find(|w| w[0] == "-j" || w[0] == "-g")
        .map(|w| w[1].clone())
}

pub(super) fn comment_of(words: &[String]) -> Option<&str> {
    words
        .windows(2)
        .find(|w| w[0] == "--comment")
        .map(|w| w[1].as_str())
}

pub(super) fn comment(owner: &str) -> String {
    format!("-m comment --comment \"{COMMENT_PREFIX}{owner}\"")
}

pub(super) fn valid_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks an owner string: 1 to [`MAX_OWNER_LEN`] characters of `[A-Za-z0-9_.-]`.
pub fn check_owner(owner: &str) -> Result<(), FirewallError> {
    let reason = if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        "must be 1 to 200 characters long"
    } else if !valid_name(owner) {
        "may only contain ASCII letters, digits, '_', '.' and '-'"
    } else {
        return Ok(());
    };
    Err(FirewallError::Invalid {
        what: "owner",
        value: owner.to_owned(),
        reason,
    })
}

fn check_bridge(bridge: &str) -> Result<(), FirewallError> {
    let reason = if bridge.is_empty() || bridge.len() > 15 {
        "an interface name is 1 to 15 characters long"
    } else if !valid_name(bridge) {
        "may only contain ASCII letters, digits, '_', '.' and '-'"
    } else {
        return Ok(());
    };
    Err(FirewallError::Invalid {
        what: "bridge",
        value: bridge.to_owned(),
        reason,
    })
}

/// The rules of a network: the jumps into berth's chains (shared by every network, inserted
/// at the top) and the network's own MASQUERADE and ACCEPT rules.
pub fn network_rules(net: &NetworkRules) -> Result<Vec<Rule>, FirewallError> {
    check_bridge(&net.bridge)?;
    let jump = comment(JUMP_OWNER);
    let own = comment(&format!("/net/{}", net.bridge));
    let (br, subnet) = (&net.bridge, net.subnet.trunc());
    let top = |table, chain: &str, spec: String| Rule {
        top: true,
        ..Rule::new(table, chain, spec)
    };
    Ok(vec![
        top(
            Table::Nat,
            "PREROUTING",
            format!("-m addrtype --dst-type LOCAL {jump} -j {DNAT_CHAIN}"),
        ),
        top(
            Table::Nat,
            "OUTPUT",
            format!("-m addrtype --dst-type LOCAL {jump} -j {DNAT_CHAIN}"),
        ),
        top(
            Table::Nat,
            "POSTROUTING",
            format!("{jump} -j {POSTROUTING_CHAIN}"),
        ),
        Rule::new(
            Table::Nat,
            POSTROUTING_CHAIN,
            format!("-s {subnet} ! -o {br} {own} -j MASQUERADE"),
        ),
        Rule::new(
            Table::Nat,
            POSTROUTING_CHAIN,
            format!("-s {subnet} -o {br} -m conntrack --ctstate DNAT {own} -j MASQUERADE"),
        ),
        Rule::new(
            Table::Nat,
            POSTROUTING_CHAIN,
            format!("-s 127.0.0.0/8 -o {br} {own} -j MASQUERADE"),
        ),
        top(
            Table::Filter,
            "FORWARD",
            format!("{jump} -j {FORWARD_CHAIN}"),
        ),
        Rule::new(
            Table::Filter,
            FORWARD_CHAIN,
            format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED {own} -j ACCEPT"),
        ),
        Rule::new(
            Table::Filter,
            FORWARD_CHAIN,
            format!("-o {br} -m conntrack --ctstate DNAT {own} -j ACCEPT"),
        ),
        Rule::new(
            Table::Filter,
            FORWARD_CHAIN,
            format!("-i {br} {own} -j ACCEPT"),
        ),
    ])
}

/// The rules publishing `ports` for `owner`: one DNAT rule per port, in `ports` order,
/// without duplicates. (No filter rule: the network's `--ctstate DNAT` ACCEPT lets every
/// DNATed connection through to the bridge.)
pub fn port_rules(
    net: &NetworkRules,
    owner: &str,
    ports: &[Publish],
) -> Result<Vec<Rule>, FirewallError> {
    check_bridge(&net.bridge)?;
    check_owner(owner)?;
    let c = comment(owner);
    let mut out: Vec<Rule> = Vec::new();
    for p in ports {
        if p.host_port == 0 || p.container_port == 0 {
            return Err(FirewallError::Invalid {
                what: "port",
                value: format!("{p:?}"),
                reason: "port 0 cannot be published",
            });
        }
        let proto = p.proto.as_str();
        let dst = p
            .host_ip
            .map_or_else(String::new, |ip: Ipv4Addr| format!("-d {ip}/32 "));
        let rule = Rule::new(
            Table::Nat,
            DNAT_CHAIN,
            format!(
                "{dst}-p {proto} -m {proto} --dport {} {c} -j DNAT --to-destination {}:{}",
                p.host_port, p.container_ip, p.container_port
            ),
        );
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

/// What [`Firewall::setup_network`](super::Firewall::setup_network) must do, given the
/// current state: declare the missing chains, add the missing rules.
pub fn setup(net: &NetworkRules, current: &State) -> Result<Batch, FirewallError> {
    let mut ops: Vec<Op> = CHAINS
        .iter()
        .filter(|(t, c)| !current.has_chain(*t, c))
        .map(|(t, c)| Op::Chain(*t, (*c).to_owned()))
        .collect();
    ops.extend(
        network_rules(net)?
            .into_iter()
            .filter(|r| !current.has_rule(r))
            .map(Op::Add),
    );
    Ok(Batch { ops })
}

/// Adds the missing rules of `owner`'s `ports`.
pub fn add(
    net: &NetworkRules,
    owner: &str,
    ports: &[Publish],
    current: &State,
) -> Result<Batch, FirewallError> {
    let ops = port_rules(net, owner, ports)?
        .into_iter()
        .filter(|r| !current.has_rule(r))
        .map(Op::Add)
        .collect();
    Ok(Batch { ops })
}

/// Deletes those of `owner`'s `ports` rules that exist, in the reverse order of [`add`].
pub fn remove(
    net: &NetworkRules,
    owner: &str,
    ports: &[Publish],
    current: &State,
) -> Result<Batch, FirewallError> {
    let ops = port_rules(net, owner, ports)?
        .into_iter()
        .rev()
        .filter(|r| current.has_rule(r))
        .map(Op::Delete)
        .collect();
    Ok(Batch { ops })
}

/// Adds every rule of `owner`'s `ports`, without looking at the current state: the fast
/// path for an owner known to have no rules now. Fails as a whole (in iptables) if berth's
/// chains are missing; adds duplicates if the rules already exist.
pub fn add_new(net: &NetworkRules, owner: &str, ports: &[Publish]) -> Result<Batch, FirewallError> {
    let ops = port_rules(net, owner, ports)?
        .into_iter()
        .map(Op::Add)
        .collect();
    Ok(Batch { ops })
}

/// Deletes every rule of `owner`'s `ports`, in the reverse order of [`add_new`], without
/// looking at the current state: the fast path for rules known to exist. Fails as a whole
/// (in iptables) if one of them is missing.
pub fn remove_known(
    net: &NetworkRules,
    owner: &str,
    ports: &[Publish],
) -> Result<Batch, FirewallError> {
    let ops = port_rules(net, owner, ports)?
        .into_iter()
        .rev()
        .map(Op::Delete)
        .collect();
    Ok(Batch { ops })
}

/// Deletes every rule in `current`, in any chain of `nat` or `filter`, whose comment is
/// exactly `berth:<owner>` for one of `owners`, each table's in reverse order; a rule that
/// is there twice is deleted twice. berth's reserved owners (empty, or starting with `/`)
/// are refused: they are not removed this way.
pub fn remove_owners(current: &State, owners: &BTreeSet<String>) -> Result<Batch, FirewallError> {
    if let Some(o) = owners.iter().find(|o| o.is_empty() || o.starts_with('/')) {
        return Err(FirewallError::Invalid {
            what: "owner",
            value: o.clone(),
            reason: "reserved for berth's own rules",
        });
    }
    let mut ops = Vec::new();
    for (&table, ts) in &current.tables {
        for r in ts.rules.iter().rev() {
            let owned = comment_of(&r.words)
                .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
                .is_some_and(|o| owners.contains(o));
            if owned {
                ops.push(Op::Delete(Rule::new(table, &r.chain, r.raw.clone())));
            }
        }
    }
    Ok(Batch { ops })
}

/// Deletes the rules of one network (those whose comment is `berth:/net/<bridge>`, whatever
/// subnet they were written for), each table's in reverse order: what a bridge re-created
/// with another subnet must drop before [`setup`] adds its new ones. The jumps into berth's
/// chains are shared by every network and stay.
pub fn remove_network(net: &NetworkRules, current: &State) -> Result<Batch, FirewallError> {
    check_bridge(&net.bridge)?;
    let own = format!("{COMMENT_PREFIX}/net/{}", net.bridge);
    let mut ops = Vec::new();
    for (&table, ts) in &current.tables {
        for r in ts.rules.iter().rev() {
            if comment_of(&r.words) == Some(own.as_str()) {
                ops.push(Op::Delete(Rule::new(table, &r.chain, r.raw.clone())));
            }
        }
    }
    Ok(Batch { ops })
}

/// Removes everything berth's: rules outside berth's chains that jump into them or carry a
/// `berth:` comment, then every `BERTH-` chain (flushed, then deleted). Nothing else.
pub fn teardown(current: &State) -> Batch {
    let mut ops = Vec::new();
    for (&table, ts) in &current.tables {
        for r in &ts.rules {
            let ours = r.chain.starts_with(CHAIN_PREFIX);
            let jumps_in = jump_target(&r.words).is_some_and(|t| t.starts_with(CHAIN_PREFIX));
            let marked = comment_of(&r.words).is_some_and(|c| c.starts_with(COMMENT_PREFIX));
            if !ours && (jumps_in || marked) {
                ops.push(Op::Delete(Rule::new(table, &r.chain, r.raw.clone())));
            }
        }
        let chains = ts.chains.iter().filter(|c| c.starts_with(CHAIN_PREFIX));
        ops.extend(chains.clone().map(|c| Op::Flush(table, c.clone())));
        ops.extend(chains.map(|c| Op::DeleteChain(table, c.clone())));
    }
    Batch { ops }
}

/// The owners of the port rules in `current` (berth's own `/…` owners left out).
pub fn owners(current: &State) -> BTreeSet<String> {
    current
        .tables
        .values()
        .flat_map(|t| &t.rules)
        .filter_map(|r| comment_of(&r.words)?.strip_prefix(COMMENT_PREFIX))
        .filter(|o| !o.starts_with('/') && !o.is_empty())
        .map(str::to_owned)
        .collect()
}
