//! The files a container sees under `/etc` (`hosts`, `resolv.conf`) and Docker's legacy link
//! environment variables, as pure functions of their inputs.
//!
//! Everything here follows moby/moby's current sources, read for this module:
//!
//! - `daemon/links/links.go`, `Link.ToEnv` (the single-pass version with `withTCPPriority`;
//!   the separate `getDefaultPort` of older releases is gone): ports are de-duplicated and
//!   sorted TCP first, then by protocol name (`sctp` before `udp`), then by number;
//!   `<ALIAS>_PORT` names the first port after that sort; every port gets
//!   `<ALIAS>_PORT_<n>_<PROTO>`, `_ADDR`, `_PORT` and `_PROTO`; a run of two or more
//!   consecutive numbers of one protocol also gets `_START`, `_PORT_START`, `_END` and
//!   `_PORT_END` under its first port's prefix, emitted after the per-port variables of the
//!   port that ends the run (or of the port that breaks it); then `<ALIAS>_NAME=/<parent>/<alias>`;
//!   then `<ALIAS>_ENV_<KEY>=<value>` for each `KEY=value` of the target's environment except
//!   `HOME` and `PATH` (split at the first `=`, entries without `=` skipped). The alias is
//!   upper-cased and `-` becomes `_`.
//! - `daemon/container_operations.go`, `buildSandboxOptions`, legacy links loop: the hosts
//!   record is `alias + " " + child.Config.Hostname`, plus `" " + child name` when the alias
//!   differs from the name.
//! - `libnetwork/etchosts/etchosts.go`: records are `"%s\t%s\n"` (address, tab, names); the
//!   default block is `127.0.0.1 localhost`, then `::1 localhost ip6-localhost ip6-loopback`,
//!   `fe00:: ip6-localnet`, `ff00:: ip6-mcastprefix`, `ff02::1 ip6-allnodes`,
//!   `ff02::2 ip6-allrouters` (the addresses are `netip.Addr` now, printed as `fe00::` and
//!   `ff00::`; releases before the switch printed `fe00::0` and `ff00::0`). Extra records
//!   follow; the container's own record is appended last (`Sandbox.updateHostsFile`), as
//!   `fqdn` plus the bare hostname when the name holds a dot.
//! - `libnetwork/internal/resolvconf/resolvconf.go`, `Parse`/`processLine`,
//!   `TransformForLegacyNw(ipv6 = false)` and `Generate`: blank lines and comments (`#` or
//!   `;` first) are dropped; `nameserver` lines with an unparsable address are dropped;
//!   `domain` is the obsolete spelling of `search` and only the last `search`/`domain` line
//!   counts; `options` accumulate; any other directive is kept verbatim; loopback and IPv6
//!   nameservers are removed and, if none is left, `8.8.8.8` and `8.8.4.4` are used. The
//!   output is `nameserver` lines, then `search`, then `options`, then the other lines.
//! - `libnetwork/resolvconf/resolvconf.go`, `Path`: `/run/systemd/resolve/resolv.conf` is
//!   used instead of `/etc/resolv.conf` when the latter's only nameserver is `127.0.0.53`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// One exposed port of a linked container, e.g. 80/tcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExposedPort {
    /// The port number inside the container.
    pub port: u16,
    /// The transport protocol.
    pub proto: LinkProto,
}

impl fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

/// The transport protocol of an [`ExposedPort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl LinkProto {
    /// The lower-case name Docker uses: `tcp`, `udp` or `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkProto::Tcp => "tcp",
            LinkProto::Udp => "udp",
            LinkProto::Sctp => "sctp",
        }
    }

    /// Docker's link sort order (`withTCPPriority`): TCP first, the others by name.
    fn link_rank(self) -> u8 {
        match self {
            LinkProto::Tcp => 0,
            LinkProto::Sctp => 1,
            LinkProto::Udp => 2,
        }
    }
}

impl fmt::Display for LinkProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors from this module.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// An exposed-port spec that is not `PORT[-PORT][/PROTO]`.
    #[error("invalid exposed port {spec:?}: {reason}")]
    InvalidExposedPort {
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses Docker's exposed-port notation "80", "80/tcp", "53/udp", "8000-8002/tcp" (a range
/// expands to each port). Errors name the offending text.
///
/// The protocol defaults to `tcp` when absent or empty (`"80/"`, as Docker's
/// `nat.SplitProtoPort`), is matched case-insensitively, and must be `tcp`, `udp` or `sctp`.
/// Port 0 and reversed ranges are refused.
pub fn parse_exposed(s: &str) -> Result<Vec<ExposedPort>, FilesError> {
    let bad = |reason: &str| FilesError::InvalidExposedPort {
        spec: s.to_string(),
        reason: reason.to_string(),
    };
    let (ports, proto) = match s.split_once('/') {
        Some((ports, proto)) => (ports, proto),
        None => (s, ""),
    };
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" | "tcp" => LinkProto::Tcp,
        "udp" => LinkProto::Udp,
        "sctp" => LinkProto::Sctp,
        _ => return Err(bad("protocol must be tcp, udp or sctp")),
    };
    let number = |text: &str| -> Result<u16, FilesError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("port must be a number"));
        }
        match text.parse::<u16>() {
            Ok(0) => Err(bad("port must be between 1 and 65535")),
            Ok(n) => Ok(n),
            Err(_) => Err(bad("port must be between 1 and 65535")),
        }
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(ports)?;
            (n, n)
        }
    };
    if start > end {
        return Err(bad("range start is above its end"));
    }
    Ok((start..=end)
        .map(|port| ExposedPort { port, proto })
        .collect())
}

/// What a linking container knows about one link target.
#[derive(Debug, Clone, Copy)]
pub struct LinkTarget<'a> {
    /// The linking container's name, e.g. "web".
    pub parent_name: &'a str,
    /// The link alias, e.g. "db" (from `--link name:alias`; defaults to the target's name).
    pub alias: &'a str,
    /// The target container's name.
    pub target_name: &'a str,
    /// The target container's hostname.
    pub target_hostname: &'a str,
    /// The target's address on the bridge.
    pub ip: Ipv4Addr,
    /// The target's exposed ports (image EXPOSE and its published container ports).
    pub exposed: &'a [ExposedPort],
    /// The target's configured environment, `KEY=VALUE`.
    pub env: &'a [String],
}

/// A container name without Docker's leading `/`, if the caller kept it.
fn bare(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

/// Docker's legacy link environment variables, with exactly the names, values and order that
/// Docker (moby `daemon/links/links.go`, `Link.ToEnv`) produces; see the module docs.
pub fn link_env(link: &LinkTarget<'_>) -> Vec<String> {
    let alias = link.alias.to_uppercase().replace('-', "_");
    let ip = link.ip;

    let mut ports: Vec<ExposedPort> = link.exposed.to_vec();
    ports.sort_by_key(|p| (p.proto.link_rank(), p.port));
    ports.dedup();

    let mut env = Vec::with_capacity(2 + ports.len() * 4 + link.env.len());
    let Some(&first) = ports.first() else {
        push_name_and_env(&mut env, &alias, link);
        return env;
    };
    env.push(format!(
        "{alias}_PORT={}://{ip}:{}",
        first.proto, first.port
    ));

    let (mut start, mut end) = (first, first);
    let last = ports.len() - 1;
    for (i, &p) in ports.iter().enumerate() {
        let prefix = format!(
            "{alias}_PORT_{}_{}",
            p.port,
            p.proto.as_str().to_uppercase()
        );
        env.push(format!("{prefix}={}://{ip}:{}", p.proto, p.port));
        env.push(format!("{prefix}_ADDR={ip}"));
        env.push(format!("{prefix}_PORT={}", p.port));
        env.push(format!("{prefix}_PROTO={}", p.proto));

        let follows = end.port.checked_add(1) == Some(p.port) && p.proto == end.proto;
        if follows {
            end = p;
            if i < last {
                continue;
            }
        }
        if end != start {
            let prefix = format!(
                "{alias}_PORT_{}_{}",
                start.port,
                start.proto.as_str().to_uppercase()
            );
            env.push(format!(
                "{prefix}_START={}://{ip}:{}",
                start.proto, start.port
            ));
            env.push(format!("{prefix}_PORT_START={}", start.port));
            env.push(format!("{prefix}_END={}://{ip}:{}", end.proto, end.port));
            env.push(format!("{prefix}_PORT_END={}", end.port));
        }
        start = p;
        end = p;
    }
    push_name_and_env(&mut env, &alias, link);
    env
}

/// The `_NAME` variable and the target's environment as `_ENV_` variables.
fn push_name_and_env(env: &mut Vec<String>, alias: &str, link: &LinkTarget<'_>) {
    env.push(format!(
        "{alias}_NAME=/{}/{}",
        bare(link.parent_name),
        link.alias
    ));
    for kv in link.env {
        let Some((key, value)) = kv.split_once('=') else {
            continue;
        };
        if key == "HOME" || key == "PATH" {
            continue;
        }
        env.push(format!("{alias}_ENV_{key}={value}"));
    }
}

/// The /etc/hosts line Docker writes for a legacy link: "<ip>\t<alias> <target hostname>
/// <target name>", the target name only when it differs from the alias (moby
/// `daemon/container_operations.go`, `buildSandboxOptions`). No trailing newline.
pub fn link_hosts_line(link: &LinkTarget<'_>) -> String {
    let name = bare(link.target_name);
    let mut names = vec![link.alias];
    if !link.target_hostname.is_empty() {
        names.push(link.target_hostname);
    }
    if link.alias != name {
        names.push(name);
    }
    format!("{}\t{}", link.ip, names.join(" "))
}

/// The fixed records at the top of every container's `/etc/hosts` (moby
/// `libnetwork/etchosts`, `defaultContentIPv4` then `defaultContentIPv6`).
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n\
    ::1\tlocalhost ip6-localhost ip6-loopback\n\
    fe00::\tip6-localnet\n\
    ff00::\tip6-mcastprefix\n\
    ff02::1\tip6-allnodes\n\
    ff02::2\tip6-allrouters\n";

/// A container's /etc/hosts, in the layout Docker (libnetwork/etchosts) writes: the default
/// block, then `extra` lines (links) in order, each ended by a newline, then, when `own` is
/// `Some((ip, hostname))`, "<ip>\t<hostname>" — followed by " <bare hostname>" when the
/// hostname holds a dot, as Docker does for a fully qualified name.
pub fn render_hosts(own: Option<(Ipv4Addr, &str)>, extra: &[String]) -> String {
    let mut out = String::from(DEFAULT_HOSTS);
    for line in extra {
        out.push_str(line.trim_end_matches(['\n', '\r']));
        out.push('\n');
    }
    if let Some((ip, hostname)) = own {
        out.push_str(&format!("{ip}\t{hostname}"));
        if let Some((short, _)) = hostname.split_once('.') {
            out.push(' ');
            out.push_str(short);
        }
        out.push('\n');
    }
    out
}

/// Docker's fallback nameservers when none usable is left (IPv4 only, as berth has no IPv6).
const DEFAULT_NAMESERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// systemd-resolved's stub listener.
const SYSTEMD_STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// A resolv.conf parsed the way moby's `internal/resolvconf` `Parse` does.
#[derive(Debug, Default)]
struct ResolvConf<'a> {
    nameservers: Vec<IpAddr>,
    search: Vec<&'a str>,
    options: Vec<&'a str>,
    other: Vec<&'a str>,
}

impl<'a> ResolvConf<'a> {
    /// The file with `nameservers` in place of the parsed ones, then `search`, `options` and
    /// the other directives.
    fn render(&self, nameservers: &[Ipv4Addr]) -> String {
        let mut out = String::new();
        for ns in nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        for line in &self.other {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn parse(text: &'a str) -> Self {
        let mut rc = ResolvConf::default();
        // `str::lines` splits on '\n' and drops a trailing '\r', as Go's bufio.ScanLines.
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(&directive) = fields.first() else {
                continue;
            };
            if directive.starts_with('#') || directive.starts_with(';') {
                continue;
            }
            match directive {
                "nameserver" => {
                    // An unparsable address is dropped (Docker only notes it in a comment).
                    if let Some(addr) = fields.get(1).and_then(|a| parse_addr(a)) {
                        rc.nameservers.push(addr);
                    }
                }
                "domain" | "search" => {
                    if fields.len() >= 2 {
                        rc.search = fields[1..].to_vec();
                    }
                }
                "options" => rc.options.extend_from_slice(&fields[1..]),
                _ => rc.other.push(line),
            }
        }
        rc
    }
}

/// Parses an address as Go's `netip.ParseAddr` does: IPv4, or IPv6 with an optional
/// non-empty `%zone`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Some(addr);
    }
    let (addr, zone) = s.split_once('%')?;
    if zone.is_empty() {
        return None;
    }
    addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// resolv.conf for a container from the host's file contents, as Docker's
/// `libnetwork/internal/resolvconf` does for the default bridge (`TransformForLegacyNw` with
/// IPv6 off, then `Generate`): loopback (127.0.0.0/8, ::1) and IPv6 nameservers are dropped;
/// the last `search`/`domain` line becomes `search`; `options` are merged onto one line; other
/// directives are kept verbatim; comments and blank lines are dropped; when no nameserver
/// remains, Docker's defaults (8.8.8.8 and 8.8.4.4) are used. Returns the new contents and
/// whether the defaults were added.
pub fn container_resolv_conf(host: &str) -> (String, bool) {
    let rc = ResolvConf::parse(host);
    let mut nameservers: Vec<Ipv4Addr> = rc
        .nameservers
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) if !v4.is_loopback() => Some(*v4),
            _ => None,
        })
        .collect();
    let defaulted = nameservers.is_empty();
    if defaulted {
        nameservers = DEFAULT_NAMESERVERS.to_vec();
    }

    (rc.render(&nameservers), defaulted)
}

/// resolv.conf for a container whose nameservers are `nameservers` (the node's resolver),
/// keeping the host's search domains, options and other directives (as Docker does with
/// `--dns`).
pub fn resolv_conf_with(host: &str, nameservers: &[Ipv4Addr]) -> String {
    ResolvConf::parse(host).render(nameservers)
}

/// Reads the host's resolver config the way Docker picks it: `etc` (normally
/// /etc/resolv.conf), unless its only nameserver is systemd-resolved's stub 127.0.0.53 and
/// `systemd` (normally /run/systemd/resolve/resolv.conf) exists, in which case that file.
/// An error reading `etc`, or reading `systemd` for a reason other than its absence, is
/// returned.
pub fn host_resolv_conf(etc: &Path, systemd: &Path) -> io::Result<String> {
    let etc_text = std::fs::read_to_string(etc)?;
    let only_stub = ResolvConf::parse(&etc_text).nameservers == [IpAddr::V4(SYSTEMD_STUB)];
    if !only_stub {
        return Ok(etc_text);
    }
    match std::fs::read_to_string(systemd) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(etc_text),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(port: u16, proto: LinkProto) -> ExposedPort {
        ExposedPort { port, proto }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_exposed_forms() {
        use LinkProto::*;
        assert_eq!(parse_exposed("80").unwrap(), vec![port(80, Tcp)]);
        assert_eq!(parse_exposed("80/tcp").unwrap(), vec![port(80, Tcp)]);
        assert_eq!(parse_exposed("80/").unwrap(), vec![port(80, Tcp)]);
        assert_eq!(parse_exposed("53/udp").unwrap(), vec![port(53, Udp)]);
        assert_eq!(parse_exposed("53/UDP").unwrap(), vec![port(53, Udp)]);
        assert_eq!(parse_exposed("9/sctp").unwrap(), vec![port(9, Sctp)]);
        assert_eq!(
            parse_exposed("8000-8002/tcp").unwrap(),
            vec![port(8000, Tcp), port(8001, Tcp), port(8002, Tcp)]
        );
        assert_eq!(parse_exposed("7-7/udp").unwrap(), vec![port(7, Udp)]);
        assert_eq!(parse_exposed("65535").unwrap(), vec![port(65535, Tcp)]);
    }

    #[test]
    fn parse_exposed_errors_name_the_text() {
        for bad in [
            "",
            "http",
            "80/icmp",
            "0",
            "65536",
            "+80",
            "80 ",
            "8002-8000",
            "80-",
            "-80",
            "1-2-3",
            "80/tcp/x",
        ] {
            let err = parse_exposed(bad).unwrap_err();
            let FilesError::InvalidExposedPort { spec, .. } = &err;
            assert_eq!(spec, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn link_env_mixed_protocols_and_env() {
        let exposed = [
            port(53, LinkProto::Udp),
            port(6379, LinkProto::Tcp),
            port(5432, LinkProto::Tcp),
        ];
        let env = strings(&[
            "HOME=/root",
            "PATH=/usr/local/bin:/usr/bin",
            "POSTGRES_PASSWORD=a=b=c",
            "NOEQUALS",
            "EMPTY=",
            "LANG=C.UTF-8",
        ]);
        let link = LinkTarget {
            parent_name: "web",
            alias: "db",
            target_name: "postgres",
            target_hostname: "pg-host",
            ip: Ipv4Addr::new(172, 17, 0, 3),
            exposed: &exposed,
            env: &env,
        };
        assert_eq!(
            link_env(&link),
            strings(&[
                "DB_PORT=tcp://172.17.0.3:5432",
                "DB_PORT_5432_TCP=tcp://172.17.0.3:5432",
                "DB_PORT_5432_TCP_ADDR=172.17.0.3",
                "DB_PORT_5432_TCP_PORT=5432",
                "DB_PORT_5432_TCP_PROTO=tcp",
                "DB_PORT_6379_TCP=tcp://172.17.0.3:6379",
                "DB_PORT_6379_TCP_ADDR=172.17.0.3",
                "DB_PORT_6379_TCP_PORT=6379",
                "DB_PORT_6379_TCP_PROTO=tcp",
                "DB_PORT_53_UDP=udp://172.17.0.3:53",
                "DB_PORT_53_UDP_ADDR=172.17.0.3",
                "DB_PORT_53_UDP_PORT=53",
                "DB_PORT_53_UDP_PROTO=udp",
                "DB_NAME=/web/db",
                "DB_ENV_POSTGRES_PASSWORD=a=b=c",
                "DB_ENV_EMPTY=",
                "DB_ENV_LANG=C.UTF-8",
            ])
        );
    }

    #[test]
    fn link_env_ranges_and_alias_spelling() {
        use LinkProto::*;
        // Deliberately unsorted and with a duplicate.
        let exposed = [
            port(8000, Udp),
            port(9000, Tcp),
            port(8002, Tcp),
            port(8000, Tcp),
            port(8001, Tcp),
            port(8001, Tcp),
            port(8001, Udp),
            port(7, Sctp),
        ];
        let link = LinkTarget {
            parent_name: "/app",
            alias: "my-cache",
            target_name: "cache",
            target_hostname: "cache",
            ip: Ipv4Addr::new(10, 0, 0, 9),
            exposed: &exposed,
            env: &[],
        };
        assert_eq!(
            link_env(&link),
            strings(&[
                "MY_CACHE_PORT=tcp://10.0.0.9:8000",
                "MY_CACHE_PORT_8000_TCP=tcp://10.0.0.9:8000",
                "MY_CACHE_PORT_8000_TCP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_8000_TCP_PORT=8000",
                "MY_CACHE_PORT_8000_TCP_PROTO=tcp",
                "MY_CACHE_PORT_8001_TCP=tcp://10.0.0.9:8001",
                "MY_CACHE_PORT_8001_TCP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_8001_TCP_PORT=8001",
                "MY_CACHE_PORT_8001_TCP_PROTO=tcp",
                "MY_CACHE_PORT_8002_TCP=tcp://10.0.0.9:8002",
                "MY_CACHE_PORT_8002_TCP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_8002_TCP_PORT=8002",
                "MY_CACHE_PORT_8002_TCP_PROTO=tcp",
                "MY_CACHE_PORT_9000_TCP=tcp://10.0.0.9:9000",
                "MY_CACHE_PORT_9000_TCP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_9000_TCP_PORT=9000",
                "MY_CACHE_PORT_9000_TCP_PROTO=tcp",
                "MY_CACHE_PORT_8000_TCP_START=tcp://10.0.0.9:8000",
                "MY_CACHE_PORT_8000_TCP_PORT_START=8000",
                "MY_CACHE_PORT_8000_TCP_END=tcp://10.0.0.9:8002",
                "MY_CACHE_PORT_8000_TCP_PORT_END=8002",
                "MY_CACHE_PORT_7_SCTP=sctp://10.0.0.9:7",
                "MY_CACHE_PORT_7_SCTP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_7_SCTP_PORT=7",
                "MY_CACHE_PORT_7_SCTP_PROTO=sctp",
                "MY_CACHE_PORT_8000_UDP=udp://10.0.0.9:8000",
                "MY_CACHE_PORT_8000_UDP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_8000_UDP_PORT=8000",
                "MY_CACHE_PORT_8000_UDP_PROTO=udp",
                "MY_CACHE_PORT_8001_UDP=udp://10.0.0.9:8001",
                "MY_CACHE_PORT_8001_UDP_ADDR=10.0.0.9",
                "MY_CACHE_PORT_8001_UDP_PORT=8001",
                "MY_CACHE_PORT_8001_UDP_PROTO=udp",
                "MY_CACHE_PORT_8000_UDP_START=udp://10.0.0.9:8000",
                "MY_CACHE_PORT_8000_UDP_PORT_START=8000",
                "MY_CACHE_PORT_8000_UDP_END=udp://10.0.0.9:8001",
                "MY_CACHE_PORT_8000_UDP_PORT_END=8001",
                "MY_CACHE_NAME=/app/my-cache",
            ])
        );
    }

    #[test]
    fn link_env_same_number_tcp_and_udp_is_no_range() {
        let exposed = [port(53, LinkProto::Udp), port(53, LinkProto::Tcp)];
        let link = LinkTarget {
            parent_name: "web",
            alias: "dns",
            target_name: "dns",
            target_hostname: "dns",
            ip: Ipv4Addr::new(172, 17, 0, 4),
            exposed: &exposed,
            env: &[],
        };
        assert_eq!(
            link_env(&link),
            strings(&[
                "DNS_PORT=tcp://172.17.0.4:53",
                "DNS_PORT_53_TCP=tcp://172.17.0.4:53",
                "DNS_PORT_53_TCP_ADDR=172.17.0.4",
                "DNS_PORT_53_TCP_PORT=53",
                "DNS_PORT_53_TCP_PROTO=tcp",
                "DNS_PORT_53_UDP=udp://172.17.0.4:53",
                "DNS_PORT_53_UDP_ADDR=172.17.0.4",
                "DNS_PORT_53_UDP_PORT=53",
                "DNS_PORT_53_UDP_PROTO=udp",
                "DNS_NAME=/web/dns",
            ])
        );
    }

    #[test]
    fn link_env_no_ports_and_udp_only() {
        let env = strings(&["A=1"]);
        let mut link = LinkTarget {
            parent_name: "web",
            alias: "db",
            target_name: "db",
            target_hostname: "db",
            ip: Ipv4Addr::new(172, 17, 0, 5),
            exposed: &[],
            env: &env,
        };
        assert_eq!(link_env(&link), strings(&["DB_NAME=/web/db", "DB_ENV_A=1"]));

        let exposed = [port(65535, LinkProto::Udp), port(65534, LinkProto::Udp)];
        link.exposed = &exposed;
        link.env = &[];
        assert_eq!(
            link_env(&link),
            strings(&[
                "DB_PORT=udp://172.17.0.5:65534",
                "DB_PORT_65534_UDP=udp://172.17.0.5:65534",
                "DB_PORT_65534_UDP_ADDR=172.17.0.5",
                "DB_PORT_65534_UDP_PORT=65534",
                "DB_PORT_65534_UDP_PROTO=udp",
                "DB_PORT_65535_UDP=udp://172.17.0.5:65535",
                "DB_PORT_65535_UDP_ADDR=172.17.0.5",
                "DB_PORT_65535_UDP_PORT=65535",
                "DB_PORT_65535_UDP_PROTO=udp",
                "DB_PORT_65534_UDP_START=udp://172.17.0.5:65534",
                "DB_PORT_65534_UDP_PORT_START=65534",
                "DB_PORT_65534_UDP_END=udp://172.17.0.5:65535",
                "DB_PORT_65534_UDP_PORT_END=65535",
                "DB_NAME=/web/db",
            ])
        );
    }

    #[test]
    fn hosts_line_adds_name_only_when_it_differs() {
        let mut link = LinkTarget {
            parent_name: "web",
            alias: "db",
            target_name: "postgres",
            target_hostname: "pg-host",
            ip: Ipv4Addr::new(172, 17, 0, 3),
            exposed: &[],
            env: &[],
        };
        assert_eq!(link_hosts_line(&link), "172.17.0.3\tdb pg-host postgres");
        link.alias = "postgres";
        assert_eq!(link_hosts_line(&link), "172.17.0.3\tpostgres pg-host");
        link.target_name = "/postgres";
        assert_eq!(link_hosts_line(&link), "172.17.0.3\tpostgres pg-host");
    }

    #[test]
    fn hosts_file_layout() {
        let extra = strings(&[
            "172.17.0.3\tdb pg-host postgres",
            "172.17.0.4\tcache cache\n",
        ]);
        assert_eq!(
            render_hosts(Some((Ipv4Addr::new(172, 17, 0, 2), "web")), &extra),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             172.17.0.3\tdb pg-host postgres\n\
             172.17.0.4\tcache cache\n\
             172.17.0.2\tweb\n"
        );
        assert_eq!(
            render_hosts(None, &[]),
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n"
        );
        assert!(
            render_hosts(Some((Ipv4Addr::new(10, 1, 2, 3), "web.example.com")), &[])
                .ends_with("ff02::2\tip6-allrouters\n10.1.2.3\tweb.example.com web\n")
        );
    }

    #[test]
    fn resolv_loopback_only_gets_defaults() {
        let host = "# This is /run/systemd/resolve/stub-resolv.conf\n\
                    nameserver 127.0.0.53\n\
                    options edns0 trust-ad\n\
                    search lan\n";
        assert_eq!(
            container_resolv_conf(host),
            (
                "nameserver 8.8.8.8\n\
                 nameserver 8.8.4.4\n\
                 search lan\n\
                 options edns0 trust-ad\n"
                    .to_string(),
                true
            )
        );
        assert_eq!(
            container_resolv_conf(""),
            ("nameserver 8.8.8.8\nnameserver 8.8.4.4\n".to_string(), true)
        );
    }

    #[test]
    fn resolv_mixed_keeps_routable_ipv4_in_order() {
        let host = "# generated by NetworkManager\n\
                    nameserver 127.0.0.1\n\
                    nameserver 10.0.0.2\n\
                    nameserver ::1\n\
                    nameserver 2001:db8::1\n\
                    nameserver fe80::1%eth0\n\
                    nameserver ::ffff:1.2.3.4\n\
                    nameserver not-an-address\n\
                    nameserver\n\
                    \n\
                    nameserver 1.1.1.1 # trailing comment\n";
        assert_eq!(
            container_resolv_conf(host),
            (
                "nameserver 10.0.0.2\nnameserver 1.1.1.1\n".to_string(),
                false
            )
        );
    }

    #[test]
    fn resolv_ipv6_only_gets_defaults() {
        let host = "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844\n";
        assert_eq!(
            container_resolv_conf(host),
            ("nameserver 8.8.8.8\nnameserver 8.8.4.4\n".to_string(), true)
        );
    }

    #[test]
    fn resolv_search_domain_options_and_other_lines() {
        let host = "domain example.com\r\n\
                    search a.example b.example\r\n\
                    options ndots:2\r\n\
                    ; a semicolon comment\r\n\
                    options timeout:1 rotate\r\n\
                    \tsortlist 10.0.0.0/8\r\n\
                    nameserver 192.168.1.1\r\n\
                    search\r\n";
        assert_eq!(
            container_resolv_conf(host),
            (
                "nameserver 192.168.1.1\n\
                 search a.example b.example\n\
                 options ndots:2 timeout:1 rotate\n\
                 \tsortlist 10.0.0.0/8\n"
                    .to_string(),
                false
            )
        );
        assert_eq!(
            container_resolv_conf("search x.example\ndomain corp.example\nnameserver 10.1.1.1"),
            (
                "nameserver 10.1.1.1\nsearch corp.example\n".to_string(),
                false
            )
        );
    }

    struct Files {
        _dir: tempfile::TempDir,
        etc: std::path::PathBuf,
        systemd: std::path::PathBuf,
    }

    fn files(etc: Option<&str>, systemd: Option<&str>) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let etc_path = dir.path().join("etc-resolv.conf");
        let systemd_path = dir.path().join("run-systemd-resolv.conf");
        if let Some(text) = etc {
            std::fs::write(&etc_path, text).unwrap();
        }
        if let Some(text) = systemd {
            std::fs::write(&systemd_path, text).unwrap();
        }
        Files {
            _dir: dir,
            etc: etc_path,
            systemd: systemd_path,
        }
    }

    #[test]
    fn host_resolv_prefers_systemd_file_behind_the_stub() {
        let stub = "# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
        let upstream = "nameserver 192.168.1.1\nsearch lan\n";

        let f = files(Some(stub), Some(upstream));
        assert_eq!(host_resolv_conf(&f.etc, &f.systemd).unwrap(), upstream);

        let f = files(Some(stub), None);
        assert_eq!(host_resolv_conf(&f.etc, &f.systemd).unwrap(), stub);

        let two = "nameserver 127.0.0.53\nnameserver 9.9.9.9\n";
        let f = files(Some(two), Some(upstream));
        assert_eq!(host_resolv_conf(&f.etc, &f.systemd).unwrap(), two);

        let other_loopback = "nameserver 127.0.0.1\n";
        let f = files(Some(other_loopback), Some(upstream));
        assert_eq!(
            host_resolv_conf(&f.etc, &f.systemd).unwrap(),
            other_loopback
        );

        let plain = "nameserver 10.0.0.1\n";
        let f = files(Some(plain), Some(upstream));
        assert_eq!(host_resolv_conf(&f.etc, &f.systemd).unwrap(), plain);

        let f = files(None, Some(upstream));
        let err = host_resolv_conf(&f.etc, &f.systemd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
