//! Addresses of cluster formation: the join listener next to a controller's address, and
//! the address this host advertises when none is given — the source address of the route
//! to the outside world (the default route's), found without sending anything.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use super::LocalError;

/// The controller's port when `--advertise` gives none.
pub const DEFAULT_PORT: u16 = 7443;

/// Where a routing decision is asked for: an address of TEST-NET-3 (RFC 5737), never
/// routed anywhere specific, so that the kernel answers with the default route's source.
const PROBE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 9);

/// The join listener's address of the controller at `addr`: its host, the next port.
pub fn join_addr(addr: &str) -> Result<String, LocalError> {
    let (host, port) = split(addr)?;
    let next = port
        .checked_add(1)
        .ok_or_else(|| LocalError::BadAddr(addr.to_owned()))?;
    Ok(format!("{host}:{next}"))
}

/// `addr` as host and port: a host name, an IPv4 address or a bracketed IPv6 address, and
/// a port from 1 to 65535.
pub fn split(addr: &str) -> Result<(&str, u16), LocalError> {
    let bad = || LocalError::BadAddr(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && !host.contains(':')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        }
    };
    if !host_ok {
        return Err(bad());
    }
    Ok((host, port))
}

/// The address to advertise: `given` when there is one (checked; a bare host gets the
/// default port), else `detected()`'s address with the default port. A loopback or
/// unspecified address is refused: other hosts could not reach it.
pub fn advertise(
    given: Option<&str>,
    detected: impl FnOnce() -> Result<IpAddr, String>,
) -> Result<String, LocalError> {
    if let Some(g) = given {
        let with_port = if g.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
            || (!g.contains(':') && !g.is_empty())
        {
            format!("{g}:{DEFAULT_PORT}")
        } else {
            g.to_owned()
        };
        split(&with_port)?;
        return Ok(with_port);
    }
    let ip = detected().map_err(LocalError::NoAddress)?;
    if ip.is_loopback() || ip.is_unspecified() {
        return Err(LocalError::NoAddress(format!(
            "the route out of this host leaves from {ip}, which other hosts cannot reach"
        )));
    }
    Ok(match ip {
        IpAddr::V4(v4) => format!("{v4}:{DEFAULT_PORT}"),
        IpAddr::V6(v6) => format!("[{v6}]:{DEFAULT_PORT}"),
    })
}

/// The source address of the default route: a UDP socket "connected" to an outside
/// address (connecting a UDP socket only asks the routing table; nothing is sent).
pub fn default_route_source() -> Result<IpAddr, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("cannot open a socket: {e}"))?;
    socket
        .connect(PROBE)
        .map_err(|e| format!("no default route: {e}"))?;
    socket
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| format!("cannot read the route's source address: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_listener_is_on_the_next_port() {
        assert_eq!(join_addr("127.0.0.1:7443").unwrap(), "127.0.0.1:7444");
        assert_eq!(join_addr("[fd00::1]:7443").unwrap(), "[fd00::1]:7444");
        assert_eq!(join_addr("ctl-1.lan:80").unwrap(), "ctl-1.lan:81");
        for bad in [
            "10.0.0.1:65535",
            "nope",
            "10.0.0.1:0",
            ":7443",
            "fd00::1:7443",
            "http://x:1",
        ] {
            assert!(
                matches!(join_addr(bad), Err(LocalError::BadAddr(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_given_address_wins_and_gets_the_default_port() {
        let never = || -> Result<IpAddr, String> { panic!("not asked") };
        assert_eq!(
            advertise(Some("10.1.2.3:9000"), never).unwrap(),
            "10.1.2.3:9000"
        );
        assert_eq!(advertise(Some("10.1.2.3"), never).unwrap(), "10.1.2.3:7443");
        assert_eq!(advertise(Some("ctl.lan"), never).unwrap(), "ctl.lan:7443");
        assert_eq!(
            advertise(Some("[fd00::1]:1"), never).unwrap(),
            "[fd00::1]:1"
        );
        let e = advertise(Some("10.1.2.3:x"), never)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.1.2.3:x") && e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn the_detected_address_must_be_routable() {
        let v4 = || Ok("192.168.1.20".parse().unwrap());
        assert_eq!(advertise(None, v4).unwrap(), "192.168.1.20:7443");
        let v6 = || Ok("fd00::20".parse().unwrap());
        assert_eq!(advertise(None, v6).unwrap(), "[fd00::20]:7443");
        for (ip, _) in [("127.0.0.1", ()), ("0.0.0.0", ())] {
            let e = advertise(None, || Ok(ip.parse().unwrap()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(ip) && e.contains("--advertise"), "{e}");
        }
        let e = advertise(None, || Err("no default route: unreachable".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no default route") && e.contains("--advertise"),
            "{e}"
        );
    }
}
