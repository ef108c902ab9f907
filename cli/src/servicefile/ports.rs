//! `ports:` (short `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]` and long syntax) and
//! `expose:`.

use std::net::IpAddr;

use super::ctx::Ctx;
use super::diag::Kind;
use super::keys;
use super::model::{Expose, Port, PortMode, PortRange, Protocol};
use super::node::{Node, Value};

/// Why a port text does not parse: the message and the part of the text to point at.
struct PortError {
    message: String,
    part: String,
}

fn port_err(message: impl Into<String>, part: &str) -> PortError {
    PortError {
        message: message.into(),
        part: part.to_owned(),
    }
}

/// One port number, 1–65535.
fn port_number(s: &str) -> Result<u16, PortError> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| port_err(format!("`{s}` is not a port number"), s))?;
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(port_err(format!("port {n} is outside 1–65535"), s)),
    }
}

/// `80` or `8000-8010`.
fn port_range(s: &str) -> Result<PortRange, PortError> {
    match s.split_once('-') {
        None => port_number(s).map(PortRange::one),
        Some((a, b)) => {
            let (start, end) = (port_number(a)?, port_number(b)?);
            if start > end {
                return Err(port_err(
                    format!("the range `{s}` ends before it starts"),
                    s,
                ));
            }
            Ok(PortRange { start, end })
        }
    }
}

fn protocol(s: &str) -> Result<Protocol, PortError> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(port_err(
            format!("protocol `{s}` is not supported (berth publishes tcp and udp)"),
            s,
        )),
    }
}

/// Parses the short syntax.
fn parse_short(text: &str) -> Result<Port, PortError> {
    let t = text.trim();
    let (rest, proto) = match t.rsplit_once('/') {
        Some((r, p)) => (r, protocol(p)?),
        None => (t, Protocol::Tcp),
    };
    // A bracketed IPv6 host address first, else split on ':'.
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or_else(|| port_err("`[` without `]` around the host address", rest))?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| port_err("expected `:` after the host address", tail))?;
        (Some(ip), tail)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [_] | [_, _] => (None, rest),
            [ip, _, _] => (Some(*ip), rest.get(ip.len() + 1..).unwrap_or("")),
            _ => {
                return Err(port_err(
                    "expected [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL] (write an IPv6 address in brackets)",
                    rest,
                ));
            }
        }
    };
    let host_ip = match host_ip {
        None => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| port_err(format!("`{ip}` is not an IP address"), ip))?,
        ),
    };
    let (published, target) = match rest.split_once(':') {
        None => (None, port_range(rest)?),
        Some(("", t)) => (None, port_range(t)?),
        Some((p, t)) => (Some(port_range(p)?), port_range(t)?),
    };
    Ok(Port {
        target,
        published,
        host_ip,
        protocol: proto,
        mode: PortMode::Ingress,
    })
}

fn check_lengths(port: &Port) -> Result<(), PortError> {
    if let Some(p) = port.published
        && p.len() != port.target.len()
    {
        return Err(port_err(
            format!(
                "the published range has {} ports and the target range {}; berth needs ranges of equal length",
                p.len(),
                port.target.len()
            ),
            "",
        ));
    }
    Ok(())
}

const SHORT_HELP: &str = "write [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL] with ports in 1–65535, e.g. \"8080:80\", \"127.0.0.1:53:53/udp\", \"8000-8010:8000-8010\"";

impl Ctx<'_> {
    fn host_ip_warning(&mut self, at: super::node::At, key: &str, ip: IpAddr) {
        self.warn(
            Kind::NotApplied,
            at,
            key,
            format!(
                "`{key}`: the host address {ip} is parsed but not yet applied by this berth version"
            ),
            "not applied yet",
            Some(
                "the port is published on every address of the node; use a firewall to restrict it"
                    .into(),
            ),
        );
    }

    fn port_error(&mut self, node: &Node, key: &str, e: PortError) {
        let at = self.narrow(node.at, &e.part);
        self.error(
            Kind::Port,
            at,
            key,
            format!("`{key}`: {}", e.message),
            "bad port",
            Some(SHORT_HELP.to_owned()),
        );
    }

    /// `ports:`.
    pub fn ports(&mut self, node: &Node, key: &str) -> Vec<Port> {
        let mut out = Vec::new();
        let Some(items) = self.seq(node, key) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let port = match &item.value {
                Value::Map(_) => self.long_port(item, &key),
                _ => {
                    let Some(text) = self.string(item, &key) else {
                        continue;
                    };
                    match parse_short(&text).and_then(|p| check_lengths(&p).map(|()| p)) {
                        Ok(p) => {
                            if let Some(ip) = p.host_ip {
                                let at = self.narrow(item.at, &ip.to_string());
                                self.host_ip_warning(at, &key, ip);
                            }
                            Some(p)
                        }
                        Err(e) => {
                            self.port_error(item, &key, e);
                            None
                        }
                    }
                }
            };
            out.extend(port);
        }
        out
    }

    fn long_port(&mut self, node: &Node, key: &str) -> Option<Port> {
        let entries = self.map(node, key)?;
        let mut target = None;
        let mut port = Port {
            target: PortRange::one(1),
            published: None,
            host_ip: None,
            protocol: Protocol::Tcp,
            mode: PortMode::Ingress,
        };
        let mut ok = true;
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            let parsed = |ctx: &mut Self, f: fn(&str) -> Result<PortRange, PortError>| {
                let text = ctx.string(v, &path)?;
                f(&text).map_err(|e| ctx.port_error(v, &path, e)).ok()
            };
            match name.as_str() {
                "target" => {
                    target = parsed(self, port_range);
                    ok &= target.is_some();
                }
                "published" => {
                    port.published = parsed(self, port_range);
                    ok &= port.published.is_some();
                }
                "host_ip" => {
                    let ip = self.string(v, &path);
                    match ip.as_deref().map(str::parse::<IpAddr>) {
                        Some(Ok(ip)) => {
                            port.host_ip = Some(ip);
                            self.host_ip_warning(v.at, &path, ip);
                        }
                        Some(Err(_)) => {
                            self.error(
                                Kind::Invalid,
                                v.at,
                                &path,
                                format!("`{path}` is not an IP address"),
                                "not an IP address",
                                None,
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                "protocol" => match self.string(v, &path).map(|p| protocol(&p)) {
                    Some(Ok(p)) => port.protocol = p,
                    Some(Err(e)) => {
                        self.port_error(v, &path, e);
                        ok = false;
                    }
                    None => ok = false,
                },
                "mode" => match self.string(v, &path).as_deref() {
                    Some("host") => port.mode = PortMode::Host,
                    Some("ingress") => port.mode = PortMode::Ingress,
                    Some(other) => {
                        self.error(
                            Kind::Invalid,
                            v.at,
                            &path,
                            format!("`{path}` is `{other}`; expected `host` or `ingress`"),
                            "unknown mode",
                            None,
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                "name" | "app_protocol" => {
                    self.string(v, &path);
                }
                _ => self.other_key(&keys::PORT, k, &path),
            }
        }
        let Some(target) = target else {
            if ok {
                self.error(
                    Kind::Missing,
                    node.at,
                    key,
                    format!("`{key}` has no `target`"),
                    "no target",
                    Some("give the port inside the container: `target: 80`".into()),
                );
            }
            return None;
        };
        port.target = target;
        if let Err(e) = check_lengths(&port) {
            self.port_error(node, key, e);
            return None;
        }
        ok.then_some(port)
    }

    /// `expose:` (`"3000"`, `"3000-3005"`, `"53/udp"`, or numbers).
    pub fn expose(&mut self, node: &Node, key: &str) -> Vec<Expose> {
        let mut out = Vec::new();
        let Some(items) = self.seq(node, key) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let Some(text) = self.string(item, &key) else {
                continue;
            };
            let parsed = match text.rsplit_once('/') {
                Some((r, p)) => protocol(p).and_then(|p| port_range(r).map(|r| (r, p))),
                None => port_range(&text).map(|r| (r, Protocol::Tcp)),
            };
            match parsed {
                Ok((ports, protocol)) => out.push(Expose { ports, protocol }),
                Err(e) => self.port_error(item, &key, e),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(s: &str) -> Port {
        parse_short(s)
            .and_then(|p| check_lengths(&p).map(|()| p))
            .unwrap_or_else(|e| panic!("{s}: {}", e.message))
    }

    fn short_err(s: &str) -> String {
        match parse_short(s).and_then(|p| check_lengths(&p).map(|()| p)) {
            Ok(p) => panic!("{s} parsed as {p:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn short_syntax() {
        let p = short("80");
        assert_eq!(
            (p.target, p.published, p.protocol),
            (PortRange::one(80), None, Protocol::Tcp)
        );
        let p = short("8080:80");
        assert_eq!(
            (p.target, p.published),
            (PortRange::one(80), Some(PortRange::one(8080)))
        );
        let p = short("127.0.0.1:8080:80");
        assert_eq!(p.host_ip, "127.0.0.1".parse().ok());
        assert_eq!(p.published, Some(PortRange::one(8080)));
        let p = short("8000-8010:8000-8010");
        assert_eq!(
            p.target,
            PortRange {
                start: 8000,
                end: 8010
            }
        );
        assert_eq!(p.published.map(|r| r.len()), Some(11));
        let p = short("53:53/udp");
        assert_eq!(p.protocol, Protocol::Udp);
        let p = short("127.0.0.1::80");
        assert_eq!((p.published, p.target), (None, PortRange::one(80)));
        let p = short("[::1]:8080:80/UDP");
        assert_eq!(p.host_ip, "::1".parse().ok());
        assert_eq!(p.protocol, Protocol::Udp);
        let p = short("9090-9091");
        assert_eq!(p.target.len(), 2);
    }

    #[test]
    fn bad_short_syntax() {
        assert!(short_err("70000").contains("outside 1–65535"));
        assert!(short_err("8080:0").contains("outside 1–65535"));
        assert!(short_err("http").contains("not a port number"));
        assert!(short_err("80/sctp").contains("sctp"));
        assert!(short_err("9-8").contains("ends before"));
        assert!(short_err("8000-8010:80").contains("equal length"));
        assert!(short_err("1.2.3:80:80").contains("not an IP"));
        assert!(short_err("::1:80:80").contains("IPv6"));
        assert!(short_err("[::1:80:80").contains("without"));
        assert!(short_err("").contains("not a port"));
    }
}
