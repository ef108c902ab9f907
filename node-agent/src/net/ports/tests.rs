use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use super::assign::{TakenPort, assign_with, ephemeral_range, parse_port_range};
use super::{PortError, PortHolder, PortMapping, PortSpec, Protocol, assign, parse_publish};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn spec(ip: Option<Ipv4Addr>, host: Option<u16>, container: u16, p: Protocol) -> PortSpec {
    PortSpec {
        host_ip: ip,
        host_port: host,
        container_port: container,
        protocol: p,
    }
}

fn err(s: &str) -> PortError {
    parse_publish(s).expect_err(s)
}

// ---- parsing ----

#[test]
fn parses_each_syntax() {
    use Protocol::*;
    let cases: &[(&str, Vec<PortSpec>)] = &[
        ("80", vec![spec(None, None, 80, Tcp)]),
        ("8080:80", vec![spec(None, Some(8080), 80, Tcp)]),
        (
            "127.0.0.1:8080:80",
            vec![spec(Some(LO), Some(8080), 80, Tcp)],
        ),
        ("127.0.0.1::80", vec![spec(Some(LO), None, 80, Tcp)]),
        ("0.0.0.0:8080:80", vec![spec(None, Some(8080), 80, Tcp)]),
        ("53:53/udp", vec![spec(None, Some(53), 53, Udp)]),
        ("80/tcp", vec![spec(None, None, 80, Tcp)]),
        (
            "8080-8081:80-81",
            vec![
                spec(None, Some(8080), 80, Tcp),
                spec(None, Some(8081), 81, Tcp),
            ],
        ),
        (
            "10.0.0.1:9000-9001:53-54/udp",
            vec![
                spec(Some(Ipv4Addr::new(10, 0, 0, 1)), Some(9000), 53, Udp),
                spec(Some(Ipv4Addr::new(10, 0, 0, 1)), Some(9001), 54, Udp),
            ],
        ),
        (
            "80-82",
            vec![
                spec(None, None, 80, Tcp),
                spec(None, None, 81, Tcp),
                spec(None, None, 82, Tcp),
            ],
        ),
        ("8000-8000:80", vec![spec(None, Some(8000), 80, Tcp)]),
        ("65535:1", vec![spec(None, Some(65535), 1, Tcp)]),
    ];
    for (text, want) in cases {
        assert_eq!(&parse_publish(text).unwrap(), want, "{text}");
    }
}

#[test]
fn bad_numbers_are_named() {
    for (s, bad) in [
        ("abc", "abc"),
        ("8080:x", "x"),
        ("x:80", "x"),
        ("80-", ""),
        ("+80", "+80"),
        (" 80", " 80"),
    ] {
        let e = err(s);
        assert!(
            matches!(e, PortError::InvalidPort { ref text, .. } if text == bad),
            "{s}: {e:?}"
        );
        assert!(e.to_string().contains("not a port number"), "{e}");
    }
}

#[test]
fn port_zero_and_above_65535_are_refused() {
    let e = err("0");
    assert!(
        e.to_string().contains("\"0\"") && e.to_string().contains("1 to 65535"),
        "{e}"
    );
    let e = err("8080:65536");
    assert!(e.to_string().contains("\"65536\" is above 65535"), "{e}");
    let e = err("99999999999:80");
    assert!(e.to_string().contains("above 65535"), "{e}");
    assert!(matches!(err("0:80"), PortError::InvalidPort { .. }));
}

#[test]
fn range_length_mismatch_is_refused() {
    let e = err("8080-8082:80-81");
    assert!(matches!(e, PortError::RangeMismatch { .. }), "{e:?}");
    assert!(
        e.to_string().contains("8080-8082") && e.to_string().contains("80-81"),
        "{e}"
    );
    assert!(matches!(err("8080:80-81"), PortError::RangeMismatch { .. }));
}

#[test]
fn host_range_for_one_container_port_is_refused() {
    let e = err("8000-8010:80");
    assert!(matches!(e, PortError::HostRangeUnsupported { .. }), "{e:?}");
    assert!(
        e.to_string().contains("8000-8010") && e.to_string().contains("not supported"),
        "{e}"
    );
}

#[test]
fn reversed_range_is_refused() {
    let e = err("81-80");
    assert!(
        matches!(e, PortError::ReversedRange { ref range, .. } if range == "81-80"),
        "{e:?}"
    );
    assert!(matches!(
        err("9000-8000:80-1080"),
        PortError::ReversedRange { .. }
    ));
}

#[test]
fn unknown_protocol_is_refused() {
    for (s, p) in [
        ("80/sctp", "sctp"),
        ("80/", ""),
        ("80/TCP", "TCP"),
        ("80/tcp/udp", "udp/"),
    ] {
        let e = parse_publish(s);
        if s == "80/tcp/udp" {
            // rsplit takes "udp" as the protocol and "80/tcp" as the port.
            assert!(
                matches!(e, Err(PortError::InvalidPort { .. })),
                "{s}: {e:?}"
            );
            continue;
        }
        let e = e.expect_err(s);
        assert!(
            matches!(e, PortError::UnknownProtocol { ref protocol, .. } if protocol == p),
            "{s}: {e:?}"
        );
        assert!(e.to_string().contains("tcp or udp"), "{e}");
    }
}

#[test]
fn ipv6_is_refused_as_not_supported_yet() {
    for (s, ip) in [
        ("[::1]:8080:80", "[::1]"),
        ("::1:8080:80", "::1"),
        ("fe80::1:8080:80", "fe80::1"),
        ("[2001:db8::1]::80", "[2001:db8::1]"),
    ] {
        let e = err(s);
        assert!(
            matches!(e, PortError::Ipv6Unsupported { ip: ref i, .. } if i == ip),
            "{s}: {e:?}"
        );
        assert!(e.to_string().contains("not supported yet"), "{e}");
    }
}

#[test]
fn other_malformed_specs_are_refused() {
    assert!(matches!(err(""), PortError::Empty));
    assert!(matches!(err("1.2.3:80:80"), PortError::InvalidIp { ref ip, .. } if ip == "1.2.3"));
    assert!(matches!(err("1:2:3:4"), PortError::Malformed { .. }));
    assert!(matches!(err("8080:"), PortError::Malformed { .. }));
    let e = err("127.0.0.1:8080:");
    assert!(e.to_string().contains("container port is missing"), "{e}");
}

#[test]
fn protocol_displays_lowercase() {
    assert_eq!(Protocol::Tcp.to_string(), "tcp");
    assert_eq!(Protocol::Udp.to_string(), "udp");
}

// ---- assignment, pure ----

fn never_busy(_: Option<Ipv4Addr>, _: u16, _: Protocol) -> io::Result<()> {
    Ok(())
}

#[test]
fn random_ports_avoid_taken_and_busy_ports() {
    let taken: HashSet<TakenPort> = (40000..=40009)
        .filter(|p| *p != 40004 && *p != 40007)
        .map(|p| (None, p, Protocol::Tcp))
        .collect();
    // 40004 is bound by someone on the host; only 40007 is left.
    let mut probe = |_: Option<Ipv4Addr>, port: u16, _: Protocol| {
        if port == 40004 {
            Err(io::ErrorKind::AddrInUse.into())
        } else {
            Ok(())
        }
    };
    for _ in 0..20 {
        let got = assign_with(
            &[spec(Some(LO), None, 80, Protocol::Tcp)],
            &taken,
            (40000, 40009),
            &mut probe,
        )
        .unwrap();
        assert_eq!(got[0].host_port, 40007);
    }
    // The same ports for udp are free.
    let got = assign_with(
        &[spec(None, None, 53, Protocol::Udp)],
        &taken,
        (40000, 40009),
        &mut never_busy,
    )
    .unwrap();
    assert!((40000..=40009).contains(&got[0].host_port));
}

#[test]
fn random_ports_avoid_requested_ones_and_each_other() {
    let specs: Vec<PortSpec> = (0..4)
        .map(|i| spec(None, None, 80 + i, Protocol::Tcp))
        .chain([spec(None, Some(50001), 90, Protocol::Tcp)])
        .collect();
    let got = assign_with(&specs, &HashSet::new(), (50000, 50004), &mut never_busy).unwrap();
    let ports: HashSet<u16> = got.iter().map(|m| m.host_port).collect();
    assert_eq!(ports, (50000..=50004).collect());
    assert_eq!(got[4].host_port, 50001);
    assert_eq!(
        got.iter().map(|m| m.container_port).collect::<Vec<_>>(),
        [80, 81, 82, 83, 90]
    );

    let e = assign_with(
        &[spec(None, None, 80, Protocol::Tcp); 6],
        &HashSet::new(),
        (50000, 50004),
        &mut never_busy,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            PortError::NoFreePort {
                low: 50000,
                high: 50004,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn taken_ports_conflict_across_any_address() {
    use Protocol::Tcp;
    let taken: HashSet<TakenPort> = [(Some(LO), 18080, Tcp), (None, 18081, Tcp)].into();
    for s in [
        spec(Some(LO), Some(18080), 80, Tcp),
        spec(None, Some(18080), 80, Tcp),
        spec(Some(LO), Some(18081), 80, Tcp),
        spec(Some(Ipv4Addr::new(10, 0, 0, 1)), Some(18081), 80, Tcp),
    ] {
        let e = assign_with(&[s], &taken, (40000, 40001), &mut never_busy).unwrap_err();
        assert!(
            matches!(
                e,
                PortError::InUse {
                    holder: PortHolder::Berth,
                    ..
                }
            ),
            "{s:?}: {e:?}"
        );
    }
    // Other address, other protocol: fine.
    let ok = [
        spec(Some(Ipv4Addr::new(10, 0, 0, 1)), Some(18080), 80, Tcp),
        spec(None, Some(18080), 80, Protocol::Udp),
    ];
    assert_eq!(
        assign_with(&ok, &taken, (40000, 40001), &mut never_busy)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn one_request_cannot_publish_a_port_twice() {
    let specs = [
        spec(None, Some(18090), 80, Protocol::Tcp),
        spec(Some(LO), Some(18090), 81, Protocol::Tcp),
    ];
    let e = assign_with(&specs, &HashSet::new(), (40000, 40001), &mut never_busy).unwrap_err();
    assert!(matches!(e, PortError::InUse { port: 18090, .. }), "{e:?}");
}

#[test]
fn parses_the_kernel_port_range() {
    assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
    assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
    assert_eq!(parse_port_range("60999 32768"), None);
    assert_eq!(parse_port_range("0 10"), None);
    assert_eq!(parse_port_range("x"), None);
    assert_eq!(parse_port_range("1 2 3"), None);
}

// ---- assignment against the host (loopback only) ----

#[test]
fn held_tcp_port_is_in_use() {
    let held = TcpListener::bind((LO, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let e = assign(
        &[spec(Some(LO), Some(port), 80, Protocol::Tcp)],
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            PortError::InUse {
                holder: PortHolder::Host,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/tcp")) && msg.contains("omit it"),
        "{msg}"
    );
    drop(held);
}

#[test]
fn held_udp_port_is_in_use() {
    let held = UdpSocket::bind((LO, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let e = assign(
        &[spec(Some(LO), Some(port), 53, Protocol::Udp)],
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{port}/udp")),
        "{e}"
    );
}

#[test]
fn free_requested_port_is_assigned() {
    // Find a free port, let go, then ask for it.
    let port = TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let got = assign(
        &[spec(Some(LO), Some(port), 80, Protocol::Tcp)],
        &HashSet::new(),
    )
    .unwrap();
    assert_eq!(
        got,
        [PortMapping {
            host_ip: Some(LO),
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp
        }]
    );
}

#[test]
fn random_port_lands_in_the_ephemeral_range() {
    let (low, high) = ephemeral_range();
    let specs = parse_publish("127.0.0.1::80-83").unwrap();
    let got = assign(&specs, &HashSet::new()).unwrap();
    let ports: HashSet<u16> = got.iter().map(|m| m.host_port).collect();
    assert_eq!(ports.len(), 4);
    assert!(
        ports.iter().all(|p| (low..=high).contains(p)),
        "{ports:?} not in {low}-{high}"
    );
}

#[test]
fn foreign_host_ip_is_refused() {
    // 192.0.2.1 (TEST-NET-1) is not on this host; binding it fails locally, no traffic.
    let ip = Ipv4Addr::new(192, 0, 2, 1);
    let e = assign(
        &[spec(Some(ip), Some(18000), 80, Protocol::Tcp)],
        &HashSet::new(),
    )
    .unwrap_err();
    assert!(matches!(e, PortError::HostIpUnavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("192.0.2.1"), "{e}");
}
