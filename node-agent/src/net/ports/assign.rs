//! Choosing host ports for specs without one and checking every requested port is free.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use super::{PortError, PortHolder, PortMapping, PortSpec, Protocol};

/// The kernel's ephemeral port range, where random host ports come from.
const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// The range used when [`LOCAL_PORT_RANGE`] cannot be read: Linux's default.
const DEFAULT_RANGE: (u16, u16) = (32768, 60999);

/// A published port as berth records it: (host address or every address, port, protocol).
pub type TakenPort = (Option<Ipv4Addr>, u16, Protocol);

/// Picks host ports for specs without one from the ephemeral range (read from
/// `/proc/sys/net/ipv4/ip_local_port_range`, default 32768-60999), avoiding `taken` (ports
/// berth already publishes) and each other; checks every requested port is not in `taken`
/// and can be bound on the host right now (a listener or socket is bound on the host address,
/// or `0.0.0.0`, and dropped at once). Mappings come back in the order of `specs`.
///
/// A port published on every address conflicts with the same port on any one address, and the
/// other way round.
pub fn assign(
    specs: &[PortSpec],
    taken: &HashSet<TakenPort>,
) -> Result<Vec<PortMapping>, PortError> {
    assign_with(specs, taken, ephemeral_range(), &mut probe_bind)
}

/// [`assign`] with the range and the bind check passed in.
pub(crate) fn assign_with(
    specs: &[PortSpec],
    taken: &HashSet<TakenPort>,
    (low, high): (u16, u16),
    probe: &mut dyn FnMut(Option<Ipv4Addr>, u16, Protocol) -> io::Result<()>,
) -> Result<Vec<PortMapping>, PortError> {
    let mut claimed: HashSet<TakenPort> = HashSet::new();
    let mut ports: Vec<Option<u16>> = vec![None; specs.len()];

    // Requested ports first, so random ones avoid them.
    for (slot, spec) in ports.iter_mut().zip(specs) {
        let Some(port) = spec.host_port else { continue };
        let key = (spec.host_ip, port, spec.protocol);
        if conflicts(taken, key) || conflicts(&claimed, key) {
            return Err(in_use(key, PortHolder::Berth));
        }
        probe(spec.host_ip, port, spec.protocol).map_err(|e| bind_error(key, e))?;
        claimed.insert(key);
        *slot = Some(port);
    }

    let size = u32::from(high - low) + 1;
    for (slot, spec) in ports.iter_mut().zip(specs) {
        if slot.is_some() {
            continue;
        }
        let start = (RandomState::new().hash_one(spec) % u64::from(size)) as u32;
        let mut found = None;
        for i in 0..size {
            let port = (u32::from(low) + (start + i) % size) as u16;
            let key = (spec.host_ip, port, spec.protocol);
            if conflicts(taken, key) || conflicts(&claimed, key) {
                continue;
            }
            match probe(spec.host_ip, port, spec.protocol) {
                Ok(()) => {
                    found = Some(port);
                    claimed.insert(key);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(bind_error(key, e)),
            }
        }
        let Some(port) = found else {
            return Err(PortError::NoFreePort {
                ip: spec.host_ip,
                protocol: spec.protocol,
                low,
                high,
            });
        };
        *slot = Some(port);
    }

    Ok(specs
        .iter()
        .zip(ports)
        .filter_map(|(spec, port)| {
            port.map(|host_port| PortMapping {
                host_ip: spec.host_ip,
                host_port,
                container_port: spec.container_port,
                protocol: spec.protocol,
            })
        })
        .collect())
}

/// Whether `key` clashes with a port in `set`: the same address, or every address on one side.
fn conflicts(set: &HashSet<TakenPort>, (ip, port, protocol): TakenPort) -> bool {
    match ip {
        Some(_) => set.contains(&(ip, port, protocol)) || set.contains(&(None, port, protocol)),
        None => set.iter().any(|&(_, p, pr)| p == port && pr == protocol),
    }
}

fn in_use((ip, port, protocol): TakenPort, holder: PortHolder) -> PortError {
    PortError::InUse {
        ip,
        port,
        protocol,
        holder,
    }
}

fn bind_error(key: TakenPort, source: io::Error) -> PortError {
    let (ip, port, protocol) = key;
    match (source.kind(), ip) {
        (io::ErrorKind::AddrInUse, _) => in_use(key, PortHolder::Host),
        (io::ErrorKind::AddrNotAvailable, Some(ip)) => PortError::HostIpUnavailable { ip, source },
        _ => PortError::Bind {
            ip,
            port,
            protocol,
            source,
        },
    }
}

/// Binds `port` on `ip` (or every address) for `protocol` and lets go at once.
fn probe_bind(ip: Option<Ipv4Addr>, port: u16, protocol: Protocol) -> io::Result<()> {
    let addr = (ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    }
}

/// The kernel's ephemeral port range, or Linux's default if it cannot be read.
pub(crate) fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string(LOCAL_PORT_RANGE)
        .ok()
        .and_then(|s| parse_port_range(&s))
        .unwrap_or(DEFAULT_RANGE)
}

/// Parses `ip_local_port_range`'s "low<TAB>high".
pub(crate) fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(low)), Some(Ok(high)), None) if 0 < low && low <= high => Some((low, high)),
        _ => None,
    }
}
