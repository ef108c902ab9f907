//! The multi-host harness itself: processes on hosts, SIGKILL and restart, partition and
//! heal, logs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use berth_tests::cluster::{Cluster, Host};

/// `GET /` from `from` to `to:port`; the body, or why it failed.
fn get(from: &Host, to: std::net::Ipv4Addr, port: u16) -> Result<String, String> {
    from.run(|| {
        let addr = SocketAddr::from((to, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut r = String::new();
        s.read_to_string(&mut r).map_err(|e| e.to_string())?;
        Ok(r.split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_string())
            .unwrap_or(r))
    })
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hosts_run_processes_that_can_be_killed_restarted_and_partitioned() {
    if !berth_tests::require_root_and_busybox(
        "hosts_run_processes_that_can_be_killed_restarted_and_partitioned",
    ) {
        return;
    }
    let bb = berth_tests::busybox().unwrap();
    let c = Cluster::new(3);
    let (h0, h1, h2) = (c.host(0), c.host(1), c.host(2));
    for h in [h0, h2] {
        std::fs::write(h.dir.join("index.html"), format!("hello from {}\n", h.name)).unwrap();
        h.spawn(
            "web",
            &bb,
            &[
                "httpd",
                "-f",
                "-v",
                "-p",
                "7000",
                "-h",
                h.dir.to_str().unwrap(),
            ],
        );
    }
    eventually("h0's server", || get(h1, h0.ip, 7000).is_ok());
    assert_eq!(get(h1, h0.ip, 7000).unwrap(), "hello from h0");
    assert!(h0.log("web").contains("response:200"), "{}", h0.log("web"));

    // h0 cut off: unreachable from h1; h1 and h2 still talk.
    c.partition(&[0]);
    assert!(get(h1, h0.ip, 7000).is_err());
    assert!(get(h0, h2.ip, 7000).is_err());
    eventually("h2's server", || get(h1, h2.ip, 7000).is_ok());
    c.heal();
    eventually("h0 after healing", || get(h1, h0.ip, 7000).is_ok());

    // SIGKILL, then restart with the same command.
    h0.kill("web");
    assert!(!h0.is_running("web"));
    assert!(get(h1, h0.ip, 7000).is_err());
    h0.restart("web");
    assert!(h0.is_running("web"));
    assert_eq!(h0.starts("web"), 2);
    eventually("h0's restarted server", || get(h1, h0.ip, 7000).is_ok());
    assert!(h2.stop("web", Duration::from_secs(2)) || !h2.is_running("web"));
}
