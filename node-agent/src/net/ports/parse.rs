//! Docker's `-p` syntax: `[ip:][host:]container[/tcp|udp]`, each port possibly a `low-high`
//! range.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{PortError, PortSpec, Protocol};

/// Parses `[ip:][host:]container[/tcp|udp]` into one [`PortSpec`] per container port.
///
/// Accepted: `80` (random host port), `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`,
/// `53:53/udp`, `8080-8081:80-81`, `80-81` (random host ports). `0.0.0.0` as the address means
/// every address and is returned as `None`. Refused, naming the offending text: bad numbers,
/// port 0 or above 65535, reversed ranges, ranges of different lengths, unknown protocols, IPv6
/// addresses (not supported yet), and a host range for one container port (Docker's "any port
/// in the range", not supported).
pub fn parse_publish(s: &str) -> Result<Vec<PortSpec>, PortError> {
    if s.is_empty() {
        return Err(PortError::Empty);
    }
    let spec = || s.to_owned();
    let (rest, protocol) = match s.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some((_, other)) => {
            return Err(PortError::UnknownProtocol {
                spec: spec(),
                protocol: other.to_owned(),
            });
        }
        None => (s, Protocol::Tcp),
    };

    let (ip, host, container) = split_parts(s, rest)?;
    let host_ip = parse_ip(s, ip)?;
    if container.is_empty() {
        return Err(PortError::Malformed {
            spec: spec(),
            reason: "the container port is missing",
        });
    }
    let (c_low, c_high) = parse_range(s, container)?;
    let host = host.filter(|h| !h.is_empty());
    let host_ports: Vec<Option<u16>> = match host {
        None => vec![None; usize::from(c_high - c_low) + 1],
        Some(h) => {
            let (h_low, h_high) = parse_range(s, h)?;
            if h_high - h_low == c_high - c_low {
                (h_low..=h_high).map(Some).collect()
            } else if c_low == c_high {
                return Err(PortError::HostRangeUnsupported {
                    spec: spec(),
                    host: h.to_owned(),
                    container: container.to_owned(),
                });
            } else {
                return Err(PortError::RangeMismatch {
                    spec: spec(),
                    host: h.to_owned(),
                    container: container.to_owned(),
                });
            }
        }
    };
    Ok((c_low..=c_high)
        .zip(host_ports)
        .map(|(container_port, host_port)| PortSpec {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
        .collect())
}

/// Splits `[ip:][host:]container` into its parts, recognising IPv6 addresses to refuse them.
fn split_parts<'a>(
    spec: &str,
    rest: &'a str,
) -> Result<(Option<&'a str>, Option<&'a str>, &'a str), PortError> {
    let colons = rest.matches(':').count();
    if colons > 2 || rest.starts_with('[') {
        // Everything before the last two colons would be the address.
        let ip = rest
            .rsplitn(3, ':')
            .nth(2)
            .filter(|_| colons >= 2)
            .unwrap_or(rest);
        let bare = ip.trim_start_matches('[').trim_end_matches(']');
        if ip.starts_with('[') || bare.parse::<Ipv6Addr>().is_ok() {
            return Err(PortError::Ipv6Unsupported {
                spec: spec.to_owned(),
                ip: ip.to_owned(),
            });
        }
        return Err(PortError::Malformed {
            spec: spec.to_owned(),
            reason: "too many ':' (expected [ip:][host-port:]container-port)",
        });
    }
    let parts: Vec<&'a str> = rest.split(':').collect();
    match parts.as_slice() {
        [container] => Ok((None, None, container)),
        [host, container] => Ok((None, Some(host), container)),
        [ip, host, container] => Ok((Some(ip), Some(host), container)),
        _ => Err(PortError::Malformed {
            spec: spec.to_owned(),
            reason: "too many ':' (expected [ip:][host-port:]container-port)",
        }),
    }
}

/// Parses the host address; empty and `0.0.0.0` mean every address.
fn parse_ip(spec: &str, ip: Option<&str>) -> Result<Option<Ipv4Addr>, PortError> {
    let Some(text) = ip.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<Ipv4Addr>() {
        Ok(ip) if ip.is_unspecified() => Ok(None),
        Ok(ip) => Ok(Some(ip)),
        Err(_) if text.parse::<Ipv6Addr>().is_ok() => Err(PortError::Ipv6Unsupported {
            spec: spec.to_owned(),
            ip: text.to_owned(),
        }),
        Err(_) => Err(PortError::InvalidIp {
            spec: spec.to_owned(),
            ip: text.to_owned(),
        }),
    }
}

/// Parses `port` or `low-high`.
fn parse_range(spec: &str, text: &str) -> Result<(u16, u16), PortError> {
    let Some((low, high)) = text.split_once('-') else {
        let port = parse_port(spec, text)?;
        return Ok((port, port));
    };
    let (low, high) = (parse_port(spec, low)?, parse_port(spec, high)?);
    if low > high {
        return Err(PortError::ReversedRange {
            spec: spec.to_owned(),
            range: text.to_owned(),
        });
    }
    Ok((low, high))
}

/// Parses one port number, 1 to 65535.
fn parse_port(spec: &str, text: &str) -> Result<u16, PortError> {
    let invalid = |reason| PortError::InvalidPort {
        spec: spec.to_owned(),
        text: text.to_owned(),
        reason,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("is not a port number"));
    }
    match text.parse::<u32>() {
        Ok(0) => Err(invalid("is not a valid port (ports run from 1 to 65535)")),
        Ok(n) => u16::try_from(n).map_err(|_| invalid("is above 65535")),
        // All digits but too long for a u32.
        Err(_) => Err(invalid("is above 65535")),
    }
}
