//! A real registry for harness tests and benchmarks: Debian's `docker-registry`
//! (Distribution v2) on a harness host's address, port 5000, its storage and log in the
//! host's directory (it goes with the host).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::cluster::Host;

/// The registry's binary.
pub const BINARY: &str = "/usr/bin/docker-registry";

/// Whether the registry is installed; prints a loud SKIPPED line for `test` when not.
pub fn available(test: &str) -> bool {
    if Path::new(BINARY).exists() {
        return true;
    }
    eprintln!("\n*** SKIPPED: {test}: needs {BINARY} (scripts/lib.sh install_deps) ***\n");
    false
}

/// Starts the registry on `host` (process name `registry`, its log `host.log("registry")`,
/// with the access log when `access_log`); its `ip:5000` once it accepts connections.
pub fn start(host: &Host, access_log: bool) -> String {
    let addr = format!("{}:5000", host.ip);
    let config = host.dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            !access_log,
            host.dir.join("registry-data").display()
        ),
    )
    .expect("write the registry's configuration");
    host.spawn(
        "registry",
        BINARY,
        &["serve", config.to_str().expect("utf8")],
    );
    let target: SocketAddr = addr.parse().expect("an address");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        host.run(|| TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok())
    });
    assert!(up, "the registry did not start: {}", host.log("registry"));
    addr
}
